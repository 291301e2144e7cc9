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
# The fabric collector reads link state and counters from rtnetlink, so storwatch runs in a network
# namespace holding the tree's interfaces for real: eth0..ethN-1 as veth pairs (the tree gives
# sysfs's side: physical, speed, duplex). node_exporter reads them from the tree's /proc/net/dev.
# Usage: scripts/bench-scale.sh [N=100]   (as root: it makes the namespace)
#        STORWATCH_BIN=/path/to/storwatch scripts/bench-scale.sh [N]   (a prebuilt binary, to compare two)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
NODE_EXPORTER=/usr/bin/prometheus-node-exporter
[[ -x $NODE_EXPORTER ]] || { echo "$NODE_EXPORTER missing: apt-get install prometheus-node-exporter" >&2; exit 1; }
if [[ -n ${STORWATCH_BIN:-} ]]; then
    BIN=$(realpath -- "$STORWATCH_BIN")
else
    cargo build --release --locked -q
    BIN=target/release/storwatch
fi
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
NS=storwatch-bench
ns_exec() { ip netns exec "$NS" "$@"; }
# The namespace with interfaces eth0..eth(N-1), up: N/2 veth pairs.
make_ns() { # interfaces
    ip netns del "$NS" 2>/dev/null || true
    ip netns add "$NS"
    for ((i = 0; i < $1; i += 2)); do
        echo "link add eth$i type veth peer name eth$((i + 1))"
    done > "$tmp/links"
    for ((i = 0; i < $1; i++)); do echo "link set eth$i up"; done >> "$tmp/links"
    echo "link set lo up" >> "$tmp/links"
    ip -n "$NS" -batch "$tmp/links"
}
trap 'cleanup; ip netns del "$NS" 2>/dev/null || true' EXIT

ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
rss() { awk '/VmHWM/{print $2 / 1024}' "/proc/$1/status"; }
wait_http() { # url [command prefix]
    local url=$1
    shift
    for _ in $(seq 100); do "$@" curl -sf "$url" >/dev/null && return; sleep 0.1; done
    echo "no answer from $url" >&2
    exit 1
}
# N scrapes: prints "cpu_per_scrape_ms median_ms p99_ms lines"
scrapes() { # pid url [command prefix]
    local before after pid=$1 url=$2
    shift 2
    before=$(cpu "$pid")
    for _ in $(seq "$N"); do "$@" curl -s -o "$tmp/body" -w '%{time_total}\n' "$url"; done > "$tmp/times"
    after=$(cpu "$pid")
    sort -n "$tmp/times" > "$tmp/sorted"
    echo "$(awk -v a="$after" -v b="$before" -v n="$N" 'BEGIN{printf "%.2f", (a - b) * 1000 / n}')" \
        "$(awk -v n="$N" 'NR==int((n+1)/2){printf "%.2f", $1 * 1000}' "$tmp/sorted")" \
        "$(awk -v n="$N" 'NR==int(n*0.99+0.5){printf "%.2f", $1 * 1000}' "$tmp/sorted")" \
        "$(grep -vc '^#' "$tmp/body")"
}
collectors=(diskstats queue host nvme fabric sata hwmon)
agent() { # tree port interval
    local args=(--web.listen-address="127.0.0.1:$2" --path.procfs="$1/proc" --path.sysfs="$1/sys"
        --path.dev="$1/dev" --no-collector.kmsg --no-collector.docker)
    for c in "${collectors[@]}"; do args+=(--collector."$c".interval="$3"); done
    ip netns exec "$NS" "$BIN" "${args[@]}" >"$tmp/agent.log" 2>&1 &
    pids+=($!)
    echo $!
}

# Steady state: the agent with every collector on the same interval; the CPU it used between two
# scrapes WINDOW seconds apart, divided by the collections run meanwhile (from diskstats' last
# success timestamps). Prints CPU ms per collection of everything.
steady() { # tree port interval_s window_s
    local pid t0 t1 c0 c1
    pid=$(agent "$1" "$2" "$3s")
    wait_http "http://127.0.0.1:$2/-/ready" ns_exec
    sleep "$3"
    stamp() {
        ns_exec curl -s "http://127.0.0.1:$2/metrics" |
            awk '/^storwatch_collector_last_success_timestamp_seconds\{collector="diskstats"\}/{print $2}'
    }
    t0=$(stamp "$1" "$2"); c0=$(cpu "$pid")
    sleep "$4"
    t1=$(stamp "$1" "$2"); c1=$(cpu "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v i="$3" \
        'BEGIN{n = int((t1 - t0) / i + 0.5); printf "%.1f", (n > 0 ? (c1 - c0) * 1000 / n : -1)}'
}

printf '| disks | interfaces | storwatch CPU / collection | steady CPU / collection | sum of collector durations | storwatch CPU / scrape | median scrape | p99 scrape | lines | peak RSS | node_exporter CPU / scrape | median scrape | p99 scrape | lines | peak RSS |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for size in "100 100" "1000 1000" "10000 1000"; do
    read -r disks ifaces <<<"$size"
    tree="$tmp/tree-$disks"
    python3 scripts/scale-tree.py "$tree" "$disks" 64 "$ifaces"
    mkdir -p "$tree/dev"
    make_ns "$ifaces"

    pid=$(agent "$tree" 19802 1h)
    wait_http http://127.0.0.1:19802/-/ready ns_exec
    per_collection=$(awk -v c="$(cpu "$pid")" 'BEGIN{printf "%.1f", c * 1000}')
    durations=$(ns_exec curl -s http://127.0.0.1:19802/metrics |
        awk '/^storwatch_collector_duration_seconds/{s += $2} END{printf "%.1f", s * 1000}')
    read -r sw_cpu sw_med sw_p99 sw_lines <<<"$(scrapes "$pid" http://127.0.0.1:19802/metrics ns_exec)"
    sw_rss=$(rss "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    interval=1
    ((disks >= 10000)) && interval=5
    per_steady=$(steady "$tree" 19804 "$interval" $((interval * 20)))

    "$NODE_EXPORTER" --web.listen-address=127.0.0.1:19803 --path.procfs="$tree/proc" --path.sysfs="$tree/sys" \
        --collector.disable-defaults --collector.diskstats --collector.netdev --collector.netclass \
        --collector.nvme --collector.hwmon --collector.meminfo --collector.netstat >"$tmp/ne.log" 2>&1 &
    pid=$!; pids+=("$pid")
    wait_http http://127.0.0.1:19803/metrics
    read -r ne_cpu ne_med ne_p99 ne_lines <<<"$(scrapes "$pid" http://127.0.0.1:19803/metrics)"
    ne_rss=$(rss "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true

    printf '| %s | %s | %s ms | %s ms | %s ms | %s ms | %s ms | %s ms | %s | %.1f MB | %s ms | %s ms | %s ms | %s | %.1f MB |\n' \
        "$disks" "$ifaces" "$per_collection" "$per_steady" "$durations" "$sw_cpu" "$sw_med" "$sw_p99" "$sw_lines" "$sw_rss" \
        "$ne_cpu" "$ne_med" "$ne_p99" "$ne_lines" "$ne_rss"
    rm -rf "$tree"
done
