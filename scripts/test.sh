#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: installs what the tests need, then
# checks formatting and lints, and runs every test (unit, property, golden, live kernel).
# Under CI=true a missing tool or privilege fails the tests instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
scripts/install-guest-deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --no-fail-fast
