#!/usr/bin/env bash
# Overhead of the biolatency eBPF programs: fio 4 KiB random direct reads on a fast block device,
# alternately without and with a storwatch agent whose programs are attached; prints the IOPS of
# each run, the medians, the difference, and the kernel memory of the programs' maps. Not a test:
# the figures depend on the machine and what else runs on it. Needs root, fio and bpftool.
# With kernel.bpf_stats_enabled=1 during the runs, it also prints what the programs themselves cost
# per request (bpftool's run_time_ns / run_cnt): a figure the noise of a shared machine does not
# drown the way it drowns an IOPS difference of a few percent.
#   bench-biolatency.sh [SECONDS_PER_RUN] [ROUNDS]     (default 10 s, 3 rounds)
# Device: null_blk (memory-backed, no data) when the module loads, else a loop device over a
# file on tmpfs (/dev/shm). Agent: $STORWATCH, else target/release/storwatch, else target/debug.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
rounds=${2:-3}
bin=${STORWATCH:-}
[[ -z $bin && -x $root/target/release/storwatch ]] && bin=$root/target/release/storwatch
[[ -z $bin ]] && bin=$root/target/debug/storwatch
[[ -x $bin ]] || { echo "bench-biolatency: build storwatch first (cargo build)" >&2; exit 1; }
for t in fio bpftool; do
    command -v $t > /dev/null || { echo "bench-biolatency: $t is not installed" >&2; exit 1; }
done

cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c" || true; done' EXIT
if modprobe null_blk nr_devices=1 queue_mode=2 2> /dev/null && [[ -b /dev/nullb0 ]]; then
    dev=/dev/nullb0 kind="null_blk"
    cleanup+=("modprobe -r null_blk")
else
    img=$(mktemp /dev/shm/bench-biolatency.XXXXXX)
    cleanup+=("rm -f $img")
    truncate -s 1G "$img"
    dev=$(losetup -f --show "$img")
    cleanup+=("losetup -d $dev")
    kind="loop device on tmpfs; no null_blk module for $(uname -r)"
fi
name=${dev#/dev/}
echo "bench-biolatency: $dev ($kind), fio randread 4k direct psync, ${secs} s per run, $rounds rounds"
echo "bench-biolatency: agent $bin"

stats=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
cleanup+=("sysctl -qw kernel.bpf_stats_enabled=$stats")

iops() {
    fio --name=bench --filename="$dev" --rw=randread --bs=4k --direct=1 --ioengine=psync \
        --runtime="$secs" --time_based --size=512M --output-format=json 2> /dev/null |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}

# ns per run of each block_rq_* program; one request runs issue and complete once each, and
# insert too when it is queued.
prog_cost() {
    bpftool prog show -j | python3 -c '
import json, sys
progs = [p for p in json.load(sys.stdin) if p.get("name", "").startswith("block_rq_") and p.get("run_cnt")]
per = {p["name"]: p["run_time_ns"] / p["run_cnt"] for p in progs}
for p in progs:
    print("  %s: %d runs, %.0f ns per run" % (p["name"], p["run_cnt"], per[p["name"]]))
print("  per request (issue + complete): %.0f ns" % sum(v for k, v in per.items() if k != "block_rq_insert"))
'
}

port=19799
without=() with=() map_bytes='' count=''
for r in $(seq "$rounds"); do
    a=$(iops)
    without+=("$a")
    "$bin" --web.listen-address=127.0.0.1:$port --collector.diskstats.device-include="^$name\$" \
        --no-collector.kmsg --no-collector.queue --no-collector.host --no-collector.fabric \
        --no-collector.nvme --no-collector.docker 2> /tmp/bench-biolatency-agent.log &
    agent=$!
    cleanup+=("kill $agent 2> /dev/null")
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null && break; sleep 0.1; done
    up=$(curl -s "http://127.0.0.1:$port/metrics")
    grep -q '^storwatch_collector_success{collector="biolatency"} 1' <<< "$up" ||
        { echo "bench-biolatency: the agent's programs are not attached:" >&2; cat /tmp/bench-biolatency-agent.log >&2; exit 1; }
    b=$(iops)
    with+=("$b")
    cost=$(prog_cost)
    sleep 6 # one more biolatency run, so the count includes the fio reads
    metrics=$(curl -s "http://127.0.0.1:$port/metrics")
    map_bytes=$(grep '^storwatch_disk_io_latency_map_bytes ' <<< "$metrics" | cut -d' ' -f2)
    count=$(grep "^storwatch_disk_io_latency_seconds_count{device=\"$name\",op=\"read\"}" <<< "$metrics" | cut -d' ' -f2)
    kill "$agent"; wait "$agent" 2> /dev/null || true
    echo "round $r: without $a IOPS, with $b IOPS (histogram counted ${count:-0} reads)"
    echo "$cost"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
m0=$(median "${without[@]}") m1=$(median "${with[@]}")
echo "median IOPS: without $m0, with $m1, difference $(python3 -c "print(f'{($m1-$m0)/$m0*100:+.1f} %')")"
echo "map memory (memlock of the programs' maps): $map_bytes bytes"
