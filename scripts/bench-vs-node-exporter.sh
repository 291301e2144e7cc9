#!/usr/bin/env bash
# Whole-process comparison of storwatch and node_exporter on this machine, in one run.
#
# Builds the release storwatch, starts it (default collectors) and Debian's prometheus-node-exporter
# (default collectors) on 127.0.0.1, both against the real /proc and /sys, then scrapes each N
# times (default 1000) over one keep-alive HTTP connection, sequentially, timing every scrape.
# CPU is the server's utime+stime from /proc/PID/stat around the scrapes; peak RSS is VmHWM from
# /proc/PID/status at the end.
#
# Usage: scripts/bench-vs-node-exporter.sh [N]
set -euo pipefail

N="${1:-1000}"
NODE_EXPORTER=/usr/bin/prometheus-node-exporter
WARMUP=10

cd "$(dirname "$0")/.."
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [number of scrapes]" >&2; exit 2; }
[[ -x "$NODE_EXPORTER" ]] || {
    echo "$NODE_EXPORTER not found: apt-get install -y --no-install-recommends prometheus-node-exporter" >&2
    exit 1
}

cargo build --release --quiet
STORWATCH="${CARGO_TARGET_DIR:-target}/release/storwatch"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Two distinct free ports on the loopback interface.
read -r SW_PORT NE_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')

"$STORWATCH" --web.listen-address="127.0.0.1:$SW_PORT" >"$WORK/storwatch.log" 2>&1 &
SW_PID=$!
PIDS+=("$SW_PID")
"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NE_PORT" >"$WORK/node_exporter.log" 2>&1 &
NE_PID=$!
PIDS+=("$NE_PID")

# The scrape client: warm-up scrapes, then N timed ones on one keep-alive connection.
# Prints: scrapes cpu_seconds median_ms p99_ms vmhwm_kb exposition_lines window_seconds
cat >"$WORK/client.py" <<'EOF'
import http.client, os, sys, time

pid, port, n, warmup, clk_tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def cpu_seconds():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clk_tck  # utime, stime (fields 14 and 15)

def vmhwm_kb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmHWM for pid {pid}")

conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def scrape():
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    body = r.read()
    if r.status != 200 or r.will_close:
        raise SystemExit(f"port {port}: status {r.status}, keep-alive {not r.will_close}")
    return body

for _ in range(warmup):
    scrape()
times = []
before, start = cpu_seconds(), time.perf_counter()
for _ in range(n):
    t = time.perf_counter()
    body = scrape()
    times.append(time.perf_counter() - t)
cpu, window = cpu_seconds() - before, time.perf_counter() - start
times.sort()
median = (times[(n - 1) // 2] + times[n // 2]) / 2
p99 = times[max(0, -(-99 * n // 100) - 1)]
lines = body.count(b"\n")
print(n, f"{cpu:.2f}", f"{median * 1e3:.3f}", f"{p99 * 1e3:.3f}", vmhwm_kb(), lines, f"{window:.2f}")
EOF

# Answers on /metrics within 30 s; storwatch also has its window gauges (second sample, after 5 s).
wait_for() {
    local name="$1" pid="$2" port="$3" want="$4"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || { echo "$name exited:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
        if python3 - "$port" "$want" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read()
sys.exit(0 if sys.argv[2].encode() in body else 1)
EOF
        sleep 0.1
    done
    echo "$name did not answer on 127.0.0.1:$port within 30 s" >&2
    exit 1
}
wait_for storwatch "$SW_PID" "$SW_PORT" storwatch_disk_window_seconds
wait_for node_exporter "$NE_PID" "$NE_PORT" node_exporter_build_info

CLK_TCK="$(getconf CLK_TCK)"
SW="$(python3 "$WORK/client.py" "$SW_PID" "$SW_PORT" "$N" "$WARMUP" "$CLK_TCK")"
NE="$(python3 "$WORK/client.py" "$NE_PID" "$NE_PORT" "$N" "$WARMUP" "$CLK_TCK")"

echo
echo "machine:       $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
echo "storwatch:     $("$STORWATCH" --version)"
echo "node_exporter: $("$NODE_EXPORTER" --version 2>&1 | head -1) (Debian package $(dpkg-query -W -f='${Version}' prometheus-node-exporter 2>/dev/null || echo '?'))"
echo "client:        python3 http.client, one keep-alive connection, sequential, $WARMUP warm-up scrapes not counted"
echo
printf '%-14s %8s %16s %14s %11s %9s %13s %11s\n' \
    exporter scrapes "CPU s/1000 scr" "CPU ms/scrape" "median ms" "p99 ms" "peak RSS MB" "expo lines"
row() {
    local name="$1" n cpu median p99 hwm lines _
    read -r n cpu median p99 hwm lines _ <<<"$2"
    awk -v name="$name" -v n="$n" -v cpu="$cpu" -v median="$median" -v p99="$p99" -v hwm="$hwm" -v lines="$lines" \
        'BEGIN { printf "%-14s %8d %16.3f %14.3f %11.3f %9.3f %13.1f %11d\n",
                 name, n, cpu * 1000 / n, cpu * 1000 / n, median, p99, hwm / 1024, lines }'
}
row storwatch "$SW"
row node_exporter "$NE"
echo
awk -v sw="$(cut -d' ' -f2 <<<"$SW")" -v ne="$(cut -d' ' -f2 <<<"$NE")" -v tck="$CLK_TCK" 'BEGIN {
    if (sw > 0) printf "CPU ratio node_exporter / storwatch: %.1fx\n", ne / sw
    else printf "CPU ratio node_exporter / storwatch: > %.0fx (storwatch used under one tick)\n", ne * tck
}'
echo
echo "Notes: CPU is utime+stime of the whole server process (all threads) over the timed scrapes, read"
echo "in ticks of 1/$CLK_TCK s (so +-1 tick on each figure). storwatch's collectors sample in the"
echo "background on their own intervals (diskstats every 5 s) whether scraped or not; the samples taken"
echo "during its timed scrapes ($(cut -d' ' -f7 <<<"$SW") s of wall time) are included in its figure."
echo "node_exporter reads /proc and /sys on every scrape ($(cut -d' ' -f7 <<<"$NE") s). Peak RSS is VmHWM."
