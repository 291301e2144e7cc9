#!/usr/bin/env bash
# Fuzzes every parser of outside data with libFuzzer (cargo-fuzz on stable, `-s none`: coverage
# guided, no sanitizer; the parsers have no unsafe code). Each target starts from its committed seed
# corpus in fuzz/corpus/<target> (never written to: new inputs go to a scratch directory) and runs
# for SECONDS (default 20). Prints each target's executions; exits non-zero on the first crash,
# leaving the crashing input in fuzz/artifacts/<target>/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
shift || true
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz missing (scripts/install-test-deps.sh installs it)" >&2; exit 1; }
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list)
cargo +stable fuzz build -s none
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    if ! cargo +stable fuzz run -s none "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz.sh: $t crashed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$t: $runs executions in ${seconds}s, no crash ($(ls "$scratch/$t" | wc -l) new corpus inputs)"
done
