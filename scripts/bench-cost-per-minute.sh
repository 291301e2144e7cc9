#!/usr/bin/env bash
# What the agent costs per minute of wall time, not per scrape: storwatch samples on its
# collectors' own intervals whether scraped or not, so its CPU per scrape hides most of its cost.
# Every figure here is CPU (utime+stime of the whole process, from /proc/PID/stat) over a window
# of wall time while the process is scraped every SCRAPE seconds (15, as Prometheus' default),
# given as ms of CPU per minute.
#
# Phase 1 (DURATION s, default 300): in one window, side by side on this machine's /proc and /sys:
#   - storwatch with every collector on its default interval ("all"), and with every one but kmsg;
#   - storwatch with one collector alone (--collector.X, every other --no-collector.Y), one
#     process per collector, and one with no collector at all (the HTTP server and scrapes);
#   - node_exporter (Debian prometheus-node-exporter) on its default collectors.
# Phase 2 (FABRIC_DURATION s each, default 120): storwatch with the fabric collector alone, first
#   with no extra sockets, then with CONNS (18,000) established TCP connections over loopback
#   held open by this script (36,000 sockets: both ends), the host's other traffic that the
#   collector must not pay for.
# Phase 3 (SCALE_DURATION s each, default 120): the synthetic trees of scripts/scale-tree.py
#   (SCALE_SIZES disks, default "1000 10000", 64 NVMe controllers, 1,000 interfaces in a network
#   namespace as scripts/bench-scale.sh makes them): storwatch with the collectors that read the
#   tree (diskstats queue host nvme fabric sata hwmon) on their default intervals, and
#   node_exporter with its matching collectors, both scraped every SCRAPE s.
# Phase 4 (DOCKER_DURATION s, default 300): the Docker engine of this machine holding DOCKER_OBJECTS
#   (default 200) containers made by this script (created, not started), each with a volume of
#   its own: storwatch with the docker collector alone on its default interval, and the engine
#   (dockerd) over the same window, whose CPU for answering the collector is a cost of the agent too.
#
# Each process gets WARMUP s (default 20) after it is ready before its window starts, so start-up
# (eBPF load, kernel log replay, first reads) is not counted. A window that is a whole number of
# minutes holds each 60 s collector's runs the same number of times.
#
# Usage: scripts/bench-cost-per-minute.sh            (as root: phases 1-3)
# Environment:
#   STORWATCH_BIN=/path/to/storwatch  a prebuilt binary (to compare two builds); unset: cargo build --release
#   DURATION=300 FABRIC_DURATION=120 SCALE_DURATION=120 WARMUP=20 SCRAPE=15 CONNS=18000
#   SCALE_SIZES="1000 10000" (empty: no phase 3)   PHASES="1 2 3" (which phases to run; 4 on request)
#   DOCKER_DURATION=300 DOCKER_OBJECTS=200
set -euo pipefail

DURATION=${DURATION:-300}
FABRIC_DURATION=${FABRIC_DURATION:-120}
SCALE_DURATION=${SCALE_DURATION:-120}
WARMUP=${WARMUP:-20}
SCRAPE=${SCRAPE:-15}
CONNS=${CONNS:-18000}
SCALE_SIZES=${SCALE_SIZES-1000 10000}
PHASES=${PHASES:-1 2 3}
DOCKER_DURATION=${DOCKER_DURATION:-300}
DOCKER_OBJECTS=${DOCKER_OBJECTS:-200}
NODE_EXPORTER=/usr/bin/prometheus-node-exporter
COLLECTORS=(diskstats kmsg queue host fabric nvme sata hwmon docker biolatency)
SCALE_COLLECTORS=(diskstats queue host nvme fabric sata hwmon)

[[ $# -eq 0 ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }
[[ -x $NODE_EXPORTER ]] || {
    echo "$NODE_EXPORTER not found: apt-get install -y --no-install-recommends prometheus-node-exporter" >&2
    exit 1
}
if [[ -n ${STORWATCH_BIN:-} ]]; then
    [[ -f $STORWATCH_BIN && -x $STORWATCH_BIN ]] || { echo "STORWATCH_BIN=$STORWATCH_BIN is not an executable file" >&2; exit 1; }
    BIN=$(realpath -- "$STORWATCH_BIN")
fi
cd "$(dirname "$0")/.."
if [[ -z ${STORWATCH_BIN:-} ]]; then
    cargo build --release --quiet
    BIN=$(realpath -- "${CARGO_TARGET_DIR:-target}/release/storwatch")
    BUILT="built from $(pwd)"
else
    BUILT="STORWATCH_BIN, not built"
fi

WORK=$(mktemp -d)
NS=storwatch-cost
PIDS=()
# The processes are started in command substitutions, so they are not this shell's children:
# stopping one is killing it and waiting until it is gone.
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
BENCH_TAG=storwatch-bench-$$
cleanup() {
    stop_all
    if [[ -n ${MADE_DOCKER:-} ]]; then
        docker ps -aq --filter "label=$BENCH_TAG" | xargs -r docker rm -f -v >/dev/null
        docker volume ls -q --filter "label=$BENCH_TAG" | xargs -r docker volume rm -f >/dev/null
        docker rmi -f "$BENCH_TAG:1" >/dev/null 2>&1 || true
    fi
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The meter: reads each process's CPU, scrapes every one of them every SCRAPE s for the window
# (the first scrape at its start, as a Prometheus with that interval would), reads the CPU again.
# Arguments: duration scrape_interval then name=pid=port triples (port -: CPU only, not scraped).
# Prints one line per process: name cpu_s window_s scrapes failed_scrapes lines failing_collectors
cat >"$WORK/meter.py" <<'EOF'
import http.client, os, re, sys, time

duration, every = float(sys.argv[1]), float(sys.argv[2])
procs = [a.split("=") for a in sys.argv[3:]]
tck = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tck  # utime, stime

def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read()
        return body if r.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()

FAILING = re.compile(rb'^storwatch_collector_success\{collector="([^"]+)"\} 0$', re.M)
state = {name: {"scrapes": 0, "failed": 0, "body": b""} for name, _, _ in procs}
start = time.monotonic()
c0 = {name: cpu(pid) for name, pid, _ in procs}
k = 0
while True:
    due = start + k * every
    if due >= start + duration:
        break
    time.sleep(max(0.0, due - time.monotonic()))
    for name, _, port in procs:
        if port == "-":
            continue
        body = scrape(port)
        s = state[name]
        s["scrapes"] += 1
        if body is None:
            s["failed"] += 1
        else:
            s["body"] = body
    k += 1
time.sleep(max(0.0, start + duration - time.monotonic()))
c1 = {name: cpu(pid) for name, pid, _ in procs}
window = time.monotonic() - start
for name, _, _ in procs:
    s = state[name]
    failing = ",".join(n.decode() for n in FAILING.findall(s["body"])) or "-"
    lines = sum(1 for l in s["body"].split(b"\n") if l and not l.startswith(b"#"))
    print(name, f"{c1[name] - c0[name]:.2f}", f"{window:.1f}", s["scrapes"], s["failed"], lines, failing)
EOF

# Holds N established TCP connections over loopback (client and server ends in this process) until
# it is killed. The listener's port is an ephemeral one, and so are the clients': neither is a
# storage port, so none of these sockets is a storage connection. Prints the sockets it holds.
cat >"$WORK/conns.py" <<'EOF'
import resource, socket, sys, time

n = int(sys.argv[1])
want = 2 * n + 64
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(4096)
srv.setblocking(False)
port = srv.getsockname()[1]
storage = [(3260, 3260), (2049, 2049), (6789, 6789), (3300, 3300), (6800, 7300)]
assert not any(a <= port <= b for a, b in storage), port
clients, servers = [], []
def accept_all():
    while True:
        try:
            s, _ = srv.accept()
        except BlockingIOError:
            return
        servers.append(s)
for i in range(n):
    clients.append(socket.create_connection(("127.0.0.1", port)))
    if i % 512 == 511:
        accept_all()
while len(servers) < n:
    accept_all()
    time.sleep(0.01)
print(len(clients) + len(servers), flush=True)
while True:
    time.sleep(3600)
EOF

# Opens CONNS connections in as many conns.py processes as the open-file limit needs (a process
# holds both ends: two descriptors a connection); SOCKETS is then the number of sockets held.
open_conns() {
    local hard per left n k=0
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=1048576
    per=$(((hard - 64) / 2))
    left=$CONNS
    SOCKETS=0
    while ((left > 0)); do
        n=$((left < per ? left : per))
        python3 "$WORK/conns.py" "$n" >"$WORK/conns.$k.out" 2>"$WORK/conns.$k.log" &
        PIDS+=($!)
        for _ in $(seq 1200); do [[ -s $WORK/conns.$k.out ]] && break; sleep 0.1; done
        [[ -s $WORK/conns.$k.out ]] || { echo "the connections were not opened:" >&2; cat "$WORK/conns.$k.log" >&2; exit 1; }
        SOCKETS=$((SOCKETS + $(cat "$WORK/conns.$k.out")))
        left=$((left - n))
        k=$((k + 1))
    done
}

# Answers 200 on 127.0.0.1:PORT/PATH within 60 s ("$@" prefixes the client, e.g. ip netns exec).
wait_ready() { # pid port path [command prefix]
    local pid=$1 port=$2 path=$3
    shift 3
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || { echo "process $pid exited; logs in $WORK:" >&2; tail -n 5 "$WORK"/*.log >&2; exit 1; }
        "$@" curl -sf -o /dev/null "http://127.0.0.1:$port$path" && return 0
        sleep 0.1
    done
    echo "no answer on 127.0.0.1:$port$path within 60 s" >&2
    exit 1
}

# Free loopback ports, one a line.
free_ports() { # n
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Starts storwatch with the given collectors alone (none: no collector) and extra flags; prints
# its pid. Its log is $WORK/<name>.log.
start_storwatch() { # name port "collectors or all" [prefix...] -- [flags...]
    local name=$1 port=$2 which=$3 args=()
    shift 3
    local prefix=()
    while [[ $# -gt 0 && $1 != -- ]]; do prefix+=("$1"); shift; done
    [[ ${1:-} == -- ]] && shift
    args=(--web.listen-address="127.0.0.1:$port" "$@")
    if [[ $which != all ]]; then
        for c in "${COLLECTORS[@]}"; do
            if [[ " $which " == *" $c "* ]]; then args+=(--collector."$c"); else args+=(--no-collector."$c"); fi
        done
    fi
    "${prefix[@]}" "$BIN" "${args[@]}" >"$WORK/$name.log" 2>&1 &
    echo $!
}

RESULTS="$WORK/results"
: >"$RESULTS"
# Runs the meter over the given name=pid=port triples (after WARMUP) and appends to RESULTS
# with the phase's label; "$prefix" runs the meter inside a namespace.
meter() { # phase duration prefix... -- triples...
    local phase=$1 duration=$2 prefix=()
    shift 2
    while [[ $1 != -- ]]; do prefix+=("$1"); shift; done
    shift
    sleep "$WARMUP"
    "${prefix[@]}" python3 "$WORK/meter.py" "$duration" "$SCRAPE" "$@" | sed "s/^/$phase /" >>"$RESULTS"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "machine:       $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
echo "storwatch:     $("$BIN" --version) ($BIN, $BUILT)"
echo "node_exporter: $("$NODE_EXPORTER" --version 2>&1 | head -1)"
echo "scrapes:       every $SCRAPE s, one new connection each; windows start $WARMUP s after the process is ready"
echo
printf '| phase | process | CPU ms / minute | CPU s | window s | scrapes (failed) | series | collectors failing |\n'
printf '|---|---|---|---|---|---|---|---|\n'
# Prints the rows RESULTS gained since the last call.
SHOWN=0
show_rows() {
    tail -n +$((SHOWN + 1)) "$RESULTS" | while read -r phase name cpu window scrapes failed lines failing; do
        awk -v p="$phase" -v n="$name" -v c="$cpu" -v w="$window" -v s="$scrapes" -v f="$failed" -v l="$lines" -v fl="$failing" \
            'BEGIN { printf "| %s | %s | %.1f | %.2f | %.0f | %d (%d) | %d | %s |\n", p, n, c * 60000 / w, c, w, s, f, l, fl }'
    done
    SHOWN=$(wc -l <"$RESULTS")
}

if [[ " $PHASES " == *" 1 "* ]]; then
    echo "phase 1: every collector, each collector alone, none, node_exporter: ${DURATION} s" >&2
    mapfile -t ports < <(free_ports $((${#COLLECTORS[@]} + 4)))
    triples=()
    pid=$(start_storwatch all "${ports[0]}" all); PIDS+=("$pid"); triples+=("all=$pid=${ports[0]}")
    pid=$(start_storwatch none "${ports[1]}" ""); PIDS+=("$pid"); triples+=("none=$pid=${ports[1]}")
    pid=$(start_storwatch all-but-kmsg "${ports[2]}" "${COLLECTORS[*]/kmsg/}"); PIDS+=("$pid")
    triples+=("all-but-kmsg=$pid=${ports[2]}")
    i=3
    for c in "${COLLECTORS[@]}"; do
        pid=$(start_storwatch "$c" "${ports[$i]}" "$c"); PIDS+=("$pid"); triples+=("$c=$pid=${ports[$i]}")
        i=$((i + 1))
    done
    "$NODE_EXPORTER" --web.listen-address="127.0.0.1:${ports[$i]}" >"$WORK/node_exporter.log" 2>&1 &
    PIDS+=($!); triples+=("node_exporter=$!=${ports[$i]}")
    for t in "${triples[@]}"; do
        IFS== read -r _ pid port <<<"$t"
        path=/-/ready
        [[ $t == node_exporter=* ]] && path=/metrics
        wait_ready "$pid" "$port" "$path"
    done
    meter 1 "$DURATION" -- "${triples[@]}"
    stop_all
    show_rows
fi

if [[ " $PHASES " == *" 2 "* ]]; then
    echo "phase 2: fabric alone without and with $CONNS loopback connections: ${FABRIC_DURATION} s each" >&2
    read -r port < <(free_ports 1)
    pid=$(start_storwatch fabric-none "$port" fabric); PIDS+=("$pid")
    wait_ready "$pid" "$port" /-/ready
    meter 2 "$FABRIC_DURATION" -- "fabric+0=$pid=$port"
    stop_all
    open_conns
    pid=$(start_storwatch fabric-conns "$port" fabric); PIDS+=("$pid")
    wait_ready "$pid" "$port" /-/ready
    meter 2 "$FABRIC_DURATION" -- "fabric+$CONNS=$pid=$port"
    stop_all
    show_rows
fi

if [[ " $PHASES " == *" 3 "* && -n $SCALE_SIZES ]]; then
    for disks in $SCALE_SIZES; do
        ifaces=1000
        echo "phase 3: scale tree of $disks disks, $ifaces interfaces: ${SCALE_DURATION} s" >&2
        tree="$WORK/tree"
        python3 scripts/scale-tree.py "$tree" "$disks" 64 "$ifaces"
        mkdir -p "$tree/dev"
        ip netns del "$NS" 2>/dev/null || true
        ip netns add "$NS"
        {
            for ((i = 0; i < ifaces; i += 2)); do echo "link add eth$i type veth peer name eth$((i + 1))"; done
            for ((i = 0; i < ifaces; i++)); do echo "link set eth$i up"; done
            echo "link set lo up"
        } >"$WORK/links"
        ip -n "$NS" -batch "$WORK/links"
        ns=(ip netns exec "$NS")
        sw_args=(--path.procfs="$tree/proc" --path.sysfs="$tree/sys" --path.dev="$tree/dev")
        pid=$(start_storwatch "scale-$disks" 19811 "${SCALE_COLLECTORS[*]}" "${ns[@]}" -- "${sw_args[@]}"); PIDS+=("$pid")
        "${ns[@]}" "$NODE_EXPORTER" --web.listen-address=127.0.0.1:19812 --path.procfs="$tree/proc" \
            --path.sysfs="$tree/sys" --collector.disable-defaults --collector.diskstats --collector.netdev \
            --collector.netclass --collector.nvme --collector.hwmon --collector.meminfo --collector.netstat \
            >"$WORK/node_exporter-scale.log" 2>&1 &
        ne=$!; PIDS+=("$ne")
        wait_ready "$pid" 19811 /-/ready "${ns[@]}"
        wait_ready "$ne" 19812 /metrics "${ns[@]}"
        meter "3-$disks" "$SCALE_DURATION" "${ns[@]}" -- "storwatch=$pid=19811" "node_exporter=$ne=19812"
        stop_all
        ip netns del "$NS"
        rm -rf "$tree"
        show_rows
    done
fi
if [[ " $PHASES " == *" 4 "* ]]; then
    echo "phase 4: docker alone with $DOCKER_OBJECTS containers and volumes on the engine: ${DOCKER_DURATION} s" >&2
    dockerd=$(pidof dockerd) || { echo "phase 4 needs a running Docker engine (dockerd)" >&2; exit 1; }
    MADE_DOCKER=1
    tar -cf - -T /dev/null | docker import - "$BENCH_TAG:1" >/dev/null
    for ((i = 0; i < DOCKER_OBJECTS; i++)); do
        docker volume create --label "$BENCH_TAG" "$BENCH_TAG-$i" >/dev/null
        docker create -q --label "$BENCH_TAG" --name "$BENCH_TAG-$i" -v "$BENCH_TAG-$i:/data" "$BENCH_TAG:1" /none >/dev/null
    done
    read -r port < <(free_ports 1)
    pid=$(start_storwatch docker-engine "$port" docker); PIDS+=("$pid")
    wait_ready "$pid" "$port" /-/ready
    meter 4 "$DOCKER_DURATION" -- "docker+$DOCKER_OBJECTS=$pid=$port" "dockerd=$dockerd=-"
    stop_all
    show_rows
    # The engine's CPU per request of each kind the collector sends, 50 of each in a row: less
    # exposed to the engine's other work than the window above. /events asks for the last 30 s
    # (one run), as the collector does, with its filter (EVENTS in src/sources/docker/mod.rs); the
    # window is after the objects were made.
    sleep 31
    sock=$(docker context inspect -f '{{.Endpoints.docker.Host}}' 2>/dev/null | sed 's|^unix://||')
    sock=${sock:-/var/run/docker.sock}
    tck=$(getconf CLK_TCK)
    for path in /version /info /volumes "/containers/json?all=1" /events; do
        a=$(awk '{print $14 + $15}' "/proc/$dockerd/stat")
        for _ in $(seq 50); do
            if [[ $path == /events ]]; then
                now=$(date +%s)
                curl -sf -G --unix-socket "$sock" http://docker/events --data-urlencode "since=$((now - 30))" \
                    --data-urlencode "until=$now" --data-urlencode \
                    'filters={"type":["container","volume","daemon"],"event":["create","destroy","start","die","pause","unpause","rename","reload"]}' >/dev/null
            else
                curl -sf --unix-socket "$sock" "http://docker$path" >/dev/null
            fi
        done
        b=$(awk '{print $14 + $15}' "/proc/$dockerd/stat")
        echo "engine CPU per GET $path: $(awk -v d=$((b - a)) -v t="$tck" 'BEGIN { printf "%.1f", d * 1000 / t / 50 }') ms (50 requests, $DOCKER_OBJECTS containers and volumes)" >>"$WORK/engine"
    done
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)


echo
echo "load average:  $LOAD_START (1/5/15 min) at the start, $LOAD_END at the end"
[[ -n ${SOCKETS:-} ]] && echo "phase 2:       $SOCKETS loopback sockets held open ($CONNS connections)"
[[ -s $WORK/engine ]] && sed 's/^/phase 4:       /' "$WORK/engine"
echo "CPU is utime+stime of the whole process (every thread) from /proc/PID/stat, in ticks of"
echo "1/$(getconf CLK_TCK) s: +-1 tick over the window, e.g. +-2 ms/minute over 300 s, +-5 ms/minute over 120 s."
echo "Phase 1 processes ran side by side in one window; each 'alone' row includes the agent's own"
echo "threads and HTTP server (the 'none' row is that alone). Collectors that find no device, engine"
echo "or privilege on this host still run on their interval and are listed as failing."
