#!/usr/bin/env bash
# Whole-process comparison of storwatch and node_exporter on this machine, in one run.
#
# Builds the release storwatch (or takes STORWATCH_BIN), starts it (default collectors) and Debian's
# prometheus-node-exporter (default collectors) on 127.0.0.1, both against the real /proc and /sys,
# then scrapes each N times (default 1000) over one keep-alive HTTP connection, sequentially, timing
# every scrape. CPU is the server's utime+stime from /proc/PID/stat around the scrapes; peak RSS is
# VmHWM and steady RSS is VmRSS from /proc/PID/status right after the timed scrapes.
#
# Then the steady phase: a second storwatch with every collector on a 1 s interval, not scraped
# (its self metrics are read once before and once after the window, outside it), for STEADY_TICKS
# (20) ticks of 1 s. Its CPU over the window divided by the collections run meanwhile, counted per
# collector from storwatch_collector_last_success_timestamp_seconds, gives storwatch's CPU per
# collection of every collector, printed beside node_exporter's CPU per scrape (which is its
# collection: it reads /proc and /sys at scrape time).
#
# Usage: scripts/bench-vs-node-exporter.sh [N]
# Environment:
#   STORWATCH_BIN=/path/to/storwatch   run this prebuilt binary instead of building the checkout
#                                      (to compare two builds); unset: cargo build --release here
#                                      (honouring CARGO_TARGET_DIR)
set -euo pipefail

N="${1:-1000}"
NODE_EXPORTER=/usr/bin/prometheus-node-exporter
WARMUP=10
STEADY_TICKS=20
STEADY_COLLECTORS=(diskstats kmsg queue host fabric nvme sata hwmon docker biolatency)

usage() {
    echo "usage: [STORWATCH_BIN=/path/to/storwatch] $0 [number of scrapes, default 1000]" >&2
    exit 2
}
[[ $# -le 1 && "$N" =~ ^[1-9][0-9]*$ ]] || usage
[[ -x "$NODE_EXPORTER" ]] || {
    echo "$NODE_EXPORTER not found: apt-get install -y --no-install-recommends prometheus-node-exporter" >&2
    exit 1
}
if [[ -n "${STORWATCH_BIN:-}" ]]; then
    [[ -f "$STORWATCH_BIN" && -x "$STORWATCH_BIN" ]] || { echo "STORWATCH_BIN=$STORWATCH_BIN is not an executable file" >&2; exit 1; }
    STORWATCH="$(realpath -- "$STORWATCH_BIN")" # before the cd below, so a relative path works
fi

cd "$(dirname "$0")/.."
if [[ -z "${STORWATCH_BIN:-}" ]]; then
    cargo build --release --quiet
    STORWATCH="$(realpath -- "${CARGO_TARGET_DIR:-target}/release/storwatch")"
    BUILT="built from $(pwd)"
else
    BUILT="STORWATCH_BIN, not built"
fi

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

# Three distinct free ports on the loopback interface.
read -r SW_PORT NE_PORT ST_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
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
# Prints: scrapes cpu_seconds median_ms p99_ms vmhwm_kb exposition_lines window_seconds vmrss_kb
# What both meters read of a process: its CPU (utime+stime) and a figure of /proc/PID/status.
cat >"$WORK/procstat.py" <<'EOF'
def cpu_seconds(pid, clk_tck):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clk_tck  # utime, stime (fields 14 and 15)

def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {key} for pid {pid}")
EOF

cat >"$WORK/client.py" <<'EOF'
import http.client, os, sys, time
import procstat

pid, port, n, warmup, clk_tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cpu_seconds = lambda: procstat.cpu_seconds(pid, clk_tck)
status_kb = lambda key: procstat.status_kb(pid, key)

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
print(n, f"{cpu:.2f}", f"{median * 1e3:.3f}", f"{p99 * 1e3:.3f}", status_kb("VmHWM"), lines, f"{window:.2f}",
      status_kb("VmRSS"))
EOF

# The steady-phase meter for the storwatch with every collector on a 1 s interval. Its runs are on a
# 1 s grid and publish storwatch_collector_last_success_timestamp_seconds when they end. The meter
# reads the self metrics (one scrape), then the CPU, at mid-tick (half an interval after the latest
# publish), sleeps a whole number of ticks, and reads the CPU then the self metrics at mid-tick again:
# no run ends between a scrape and its CPU read, and neither scrape is inside the CPU window.
# A collector's runs in the window = its last-success timestamp delta / interval, rounded (ticks
# between its last successful run before the window and its last one in it; runs that failed in
# between are counted, trailing failures and ticks skipped by a run slower than the interval are
# not). A collector with no successful run at either end is counted by ticks passed (and named).
# Prints: cpu_seconds collections_of_every_collector window_s ticks vmrss_kb vmhwm_kb per_collector
# where per_collector is name=runs[,flag] joined by "/" (flags: ticks, failing, slow=<max duration>).
cat >"$WORK/steady.py" <<'EOF'
import http.client, re, sys, time
import procstat

pid, port, ticks, interval, clk_tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
cpu_seconds = lambda: procstat.cpu_seconds(pid, clk_tck)
status_kb = lambda key: procstat.status_kb(pid, key)
collectors = sys.argv[6:]

SAMPLE = re.compile(rb'^storwatch_collector_(last_success_timestamp_seconds|duration_seconds|success)\{collector="([^"]+)"\} (\S+)$', re.M)
def self_metrics():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    body = r.read()
    conn.close()
    if r.status != 200:
        raise SystemExit(f"port {port}: status {r.status}")
    m = {}
    for family, name, value in SAMPLE.findall(body):
        m.setdefault(family.decode(), {})[name.decode()] = float(value)
    return m

def sleep_to_mid_tick(m):
    # Half an interval after the latest publish, on the collectors' grid, at least 50 ms from now.
    target = max(m.get("last_success_timestamp_seconds", {}).values(), default=time.time()) + interval / 2
    while target < time.time() + 0.05:
        target += interval
    time.sleep(target - time.time())

sleep_to_mid_tick(self_metrics())
m0 = self_metrics()
c0, w0 = cpu_seconds(), time.monotonic()
time.sleep(max(0.0, w0 + ticks * interval - time.monotonic()))
c1, w1 = cpu_seconds(), time.monotonic()
m1 = self_metrics()
rss, hwm = status_kb("VmRSS"), status_kb("VmHWM")

passed = round((w1 - w0) / interval)
total, parts = 0, []
for c in collectors:
    t0 = m0.get("last_success_timestamp_seconds", {}).get(c)
    t1 = m1.get("last_success_timestamp_seconds", {}).get(c)
    flags = []
    if t0 is None or t1 is None:
        runs = passed
        flags.append("ticks")
    else:
        runs = round((t1 - t0) / interval)
    if m1.get("success", {}).get(c, 1.0) == 0.0:
        flags.append("failing")
    slowest = max(m0.get("duration_seconds", {}).get(c, 0.0), m1.get("duration_seconds", {}).get(c, 0.0))
    if slowest > interval:
        flags.append(f"slow={slowest:.2f}s")
    total += runs
    parts.append(f"{c}={runs}" + "".join("," + f for f in flags))
print(f"{c1 - c0:.2f}", f"{total / len(collectors):.2f}", f"{w1 - w0:.2f}", passed, rss, hwm, "/".join(parts))
EOF

# Answers 200 on PATH (default /metrics) within 30 s, with WANT in the body (storwatch's window
# gauges need its second diskstats sample, after 5 s; its /-/ready says "Ready" once every collector
# has run).
wait_for() {
    local name="$1" pid="$2" port="$3" want="$4" path="${5:-/metrics}"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || { echo "$name exited:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
        if python3 - "$port" "$want" "$path" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{sys.argv[3]}", timeout=2).read()
sys.exit(0 if sys.argv[2].encode() in body else 1)
EOF
        sleep 0.1
    done
    echo "$name did not answer on 127.0.0.1:$port$path within 30 s" >&2
    exit 1
}
wait_for storwatch "$SW_PID" "$SW_PORT" storwatch_disk_window_seconds
wait_for node_exporter "$NE_PID" "$NE_PORT" node_exporter_build_info

CLK_TCK="$(getconf CLK_TCK)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
SW="$(python3 "$WORK/client.py" "$SW_PID" "$SW_PORT" "$N" "$WARMUP" "$CLK_TCK")"
NE="$(python3 "$WORK/client.py" "$NE_PID" "$NE_PORT" "$N" "$WARMUP" "$CLK_TCK")"

# The steady phase runs alone: the scraped storwatch is stopped first (node_exporter idles).
kill "$SW_PID"
wait "$SW_PID" 2>/dev/null || true
ST_ARGS=(--web.listen-address="127.0.0.1:$ST_PORT")
for c in "${STEADY_COLLECTORS[@]}"; do
    ST_ARGS+=(--collector."$c".interval=1s)
done
"$STORWATCH" "${ST_ARGS[@]}" >"$WORK/storwatch-steady.log" 2>&1 &
ST_PID=$!
PIDS+=("$ST_PID")
# Every collector has run once (ready), then 2 ticks more so that first-run set-up (BPF load, kernel
# log backlog, ...) is not in the window.
wait_for storwatch-steady "$ST_PID" "$ST_PORT" Ready /-/ready
sleep 2
ST="$(python3 "$WORK/steady.py" "$ST_PID" "$ST_PORT" "$STEADY_TICKS" 1 "$CLK_TCK" "${STEADY_COLLECTORS[@]}")"
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "machine:       $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
echo "load average:  $LOAD_START (1/5/15 min) before the timed scrapes, $LOAD_END after the steady phase"
echo "storwatch:     $("$STORWATCH" --version) ($STORWATCH, $BUILT)"
echo "node_exporter: $("$NODE_EXPORTER" --version 2>&1 | head -1) (Debian package $(dpkg-query -W -f='${Version}' prometheus-node-exporter 2>/dev/null || echo '?'))"
echo "client:        python3 http.client, one keep-alive connection, sequential, $WARMUP warm-up scrapes not counted"
echo
printf '%-14s %8s %16s %14s %11s %9s %13s %8s %11s\n' \
    exporter scrapes "CPU s/1000 scr" "CPU ms/scrape" "median ms" "p99 ms" "peak RSS MB" "RSS MB" "expo lines"
row() {
    local name="$1" n cpu median p99 hwm lines rss _
    read -r n cpu median p99 hwm lines _ rss <<<"$2"
    awk -v name="$name" -v n="$n" -v cpu="$cpu" -v median="$median" -v p99="$p99" -v hwm="$hwm" -v lines="$lines" -v rss="$rss" \
        'BEGIN { printf "%-14s %8d %16.3f %14.3f %11.3f %9.3f %13.1f %8.1f %11d\n",
                 name, n, cpu * 1000 / n, cpu * 1000 / n, median, p99, hwm / 1024, rss / 1024, lines }'
}
row storwatch "$SW"
row node_exporter "$NE"
echo
awk -v sw="$(cut -d' ' -f2 <<<"$SW")" -v ne="$(cut -d' ' -f2 <<<"$NE")" -v tck="$CLK_TCK" 'BEGIN {
    if (sw > 0) printf "CPU ratio node_exporter / storwatch: %.1fx\n", ne / sw
    else printf "CPU ratio node_exporter / storwatch: > %.0fx (storwatch used under one tick)\n", ne * tck
}'

read -r ST_CPU ST_COLL ST_WINDOW ST_TICKS ST_RSS ST_HWM ST_RUNS <<<"$ST"
echo
echo "CPU ms per collection of every collector:"
awk -v cpu="$ST_CPU" -v coll="$ST_COLL" -v window="$ST_WINDOW" -v ticks="$ST_TICKS" -v ncoll="${#STEADY_COLLECTORS[@]}" \
    -v ne="$(cut -d' ' -f2 <<<"$NE")" -v nen="$(cut -d' ' -f1 <<<"$NE")" -v tck="$CLK_TCK" 'BEGIN {
    if (coll > 0) printf "  storwatch      %8.2f ms  (%d collectors every 1 s, %.2f s CPU over %.2f s = %d ticks, %.2f collections)\n",
        cpu * 1000 / coll, ncoll, cpu, window, ticks, coll
    else printf "  storwatch      no collection counted in %.2f s\n", window
    printf "  node_exporter  %8.2f ms  (CPU per scrape above: it collects at each scrape)\n", ne * 1000 / nen
    if (coll > 0 && cpu > 0) printf "  ratio node_exporter / storwatch: %.1fx\n", (ne * 1000 / nen) / (cpu * 1000 / coll)
    else if (coll > 0) printf "  ratio node_exporter / storwatch: > %.0fx (storwatch used under one tick)\n", (ne * 1000 / nen) / (1000 / tck / coll)
}'
echo "  runs counted per collector: ${ST_RUNS//\// }"
awk -v rss="$ST_RSS" -v hwm="$ST_HWM" 'BEGIN { printf "  1 s storwatch memory after the window: RSS %.1f MB, peak RSS %.1f MB\n", rss / 1024, hwm / 1024 }'

echo
echo "Notes: CPU is utime+stime of the whole server process (all threads), read in ticks of 1/$CLK_TCK s"
echo "(so +-1 tick on each figure). In the scrape table, storwatch runs its default collectors in the"
echo "background on their own intervals (diskstats every 5 s) whether scraped or not; the samples taken"
echo "during its timed scrapes ($(cut -d' ' -f7 <<<"$SW") s of wall time) are included in its figure. node_exporter reads"
echo "/proc and /sys on every scrape ($(cut -d' ' -f7 <<<"$NE") s). Peak RSS is VmHWM (the high-water mark since start,"
echo "start-up and warm-up included); RSS is VmRSS right after the timed scrapes. Expo lines are the"
echo "lines of the last /metrics body."
echo "CPU per collection of every collector: a second storwatch (the scraped one stopped) with each of"
echo "${STEADY_COLLECTORS[*]} on a 1 s interval, not scraped for"
echo "$STEADY_TICKS ticks (its self metrics are read at mid-tick just before and just after the window, outside"
echo "it). Its CPU over the window, start-up excluded, is divided by the collections: the runs counted per"
echo "collector from its storwatch_collector_last_success_timestamp_seconds (delta / 1 s, rounded; a"
echo "collector that never succeeded is counted by the ticks passed, flagged 'ticks'; 'failing' = its"
echo "last run failed; 'slow' = a run took over 1 s, so ticks were skipped), summed and divided by the"
echo "number of collectors. Every collector that runs costs CPU, those finding no device, socket or"
echo "privilege for their source on this host included, and so do the agent's own threads (supervisor, HTTP)."
echo "node_exporter's default collectors are a different, wider set (cpu, meminfo, netdev, filesystem,"
echo "...) than storwatch's: each figure is that exporter's whole cost of one refresh of its data."
