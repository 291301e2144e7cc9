#!/usr/bin/env bash
# Scale: storwatch and node_exporter side by side on synthetic procfs/sysfs trees of growing size
# (scripts/scale-tree.py): 100, 1,000 and 10,000 disks, 64 NVMe controllers, 100 / 1,000 / 1,000
# physical interfaces. For each size, in one run:
# - storwatch collection: the agent with diskstats, queue, host, nvme and fabric (interval 1h, so
#   each runs once) on the tree; its CPU (utime+stime from /proc/PID/stat) from its start until
#   /-/ready says every collector has run: one collection of everything, start-up included; and
#   the sum of the collectors' own storwatch_collector_duration_seconds (wall time);
# - storwatch scrape: then N scrapes of /metrics: CPU per scrape and the median and p99 time curl
#   measured;
# - node_exporter 1.5 (Debian prometheus-node-exporter) with its matching collectors (diskstats,
#   netdev, netclass, nvme, hwmon, meminfo, netstat) on the same tree: it reads at scrape time, so
#   CPU and time per scrape are its whole cost;
# - peak RSS of both.
# Usage: scripts/bench-scale.sh [N=100]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
NODE_EXPORTER=/usr/bin/prometheus-node-exporter
[[ -x $NODE_EXPORTER ]] || { echo "$NODE_EXPORTER missing: apt-get install prometheus-node-exporter" >&2; exit 1; }
cargo build --release --locked -q
BIN=target/release/storwatch
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
rss() { awk '/VmHWM/{print $2 / 1024}' "/proc/$1/status"; }
wait_http() { for _ in $(seq 100); do curl -sf "$1" >/dev/null && return; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
# N scrapes: prints "cpu_per_scrape_ms median_ms p99_ms lines"
scrapes() { # pid url
    local before after
    before=$(cpu "$1")
    for _ in $(seq "$N"); do curl -s -o "$tmp/body" -w '%{time_total}\n' "$2"; done > "$tmp/times"
    after=$(cpu "$1")
    sort -n "$tmp/times" > "$tmp/sorted"
    echo "$(awk -v a="$after" -v b="$before" -v n="$N" 'BEGIN{printf "%.2f", (a - b) * 1000 / n}')" \
        "$(awk -v n="$N" 'NR==int((n+1)/2){printf "%.2f", $1 * 1000}' "$tmp/sorted")" \
        "$(awk -v n="$N" 'NR==int(n*0.99+0.5){printf "%.2f", $1 * 1000}' "$tmp/sorted")" \
        "$(grep -vc '^#' "$tmp/body")"
}
collectors=(diskstats queue host nvme fabric)
agent() { # tree port interval
    local args=(--web.listen-address="127.0.0.1:$2" --path.procfs="$1/proc" --path.sysfs="$1/sys"
        --path.dev="$1/dev" --no-collector.kmsg --no-collector.docker)
    for c in "${collectors[@]}"; do args+=(--collector."$c".interval="$3"); done
    "$BIN" "${args[@]}" >"$tmp/agent.log" 2>&1 &
    pids+=($!)
    echo $!
}

printf '| disks | interfaces | storwatch CPU / collection | sum of collector durations | storwatch CPU / scrape | median scrape | p99 scrape | lines | peak RSS | node_exporter CPU / scrape | median scrape | p99 scrape | lines | peak RSS |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for size in "100 100" "1000 1000" "10000 1000"; do
    read -r disks ifaces <<<"$size"
    tree="$tmp/tree-$disks"
    python3 scripts/scale-tree.py "$tree" "$disks" 64 "$ifaces"
    mkdir -p "$tree/dev"

    pid=$(agent "$tree" 19802 1h)
    wait_http http://127.0.0.1:19802/-/ready
    per_collection=$(awk -v c="$(cpu "$pid")" 'BEGIN{printf "%.1f", c * 1000}')
    durations=$(curl -s http://127.0.0.1:19802/metrics |
        awk '/^storwatch_collector_duration_seconds/{s += $2} END{printf "%.1f", s * 1000}')
    read -r sw_cpu sw_med sw_p99 sw_lines <<<"$(scrapes "$pid" http://127.0.0.1:19802/metrics)"
    sw_rss=$(rss "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true

    "$NODE_EXPORTER" --web.listen-address=127.0.0.1:19803 --path.procfs="$tree/proc" --path.sysfs="$tree/sys" \
        --collector.disable-defaults --collector.diskstats --collector.netdev --collector.netclass \
        --collector.nvme --collector.hwmon --collector.meminfo --collector.netstat >"$tmp/ne.log" 2>&1 &
    pid=$!; pids+=("$pid")
    wait_http http://127.0.0.1:19803/metrics
    read -r ne_cpu ne_med ne_p99 ne_lines <<<"$(scrapes "$pid" http://127.0.0.1:19803/metrics)"
    ne_rss=$(rss "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true

    printf '| %s | %s | %s ms | %s ms | %s ms | %s ms | %s ms | %s | %.1f MB | %s ms | %s ms | %s ms | %s | %.1f MB |\n' \
        "$disks" "$ifaces" "$per_collection" "$durations" "$sw_cpu" "$sw_med" "$sw_p99" "$sw_lines" "$sw_rss" \
        "$ne_cpu" "$ne_med" "$ne_p99" "$ne_lines" "$ne_rss"
    rm -rf "$tree"
done
