#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: installs what the tests need, then
# checks formatting, lints and the dependency policy (deny.toml), runs every test (unit, property,
# golden, live kernel) and fuzzes the parsers for a bounded time.
# Under CI=true a missing tool or privilege fails the tests instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
scripts/install-guest-deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# Licenses, duplicate crate versions and sources against deny.toml. Not advisories: the advisory
# database is a git clone from GitHub, which this machine may not reach (see deny.toml).
cargo deny --locked check licenses bans sources
# The man pages and shell completions, from the clap definitions (the .deb ships target/docs).
cargo run --locked --example docs -- target/docs
cargo test --locked --no-fail-fast
# A bounded fuzzing run of every parser of outside data (longer runs: scripts/fuzz.sh SECONDS).
scripts/fuzz.sh 20
