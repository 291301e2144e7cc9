#!/usr/bin/env python3
"""Soak: the agent under steady scraping and churn for a long time, its RSS and open files sampled.

    scripts/soak.py [--minutes 30] [--binary target/release/storwatch]   (as root)

Starts the agent with its default collectors on this machine (the kernel log included), then for
MINUTES:
- scrapes /metrics every 100 ms over one keep-alive connection (a scrape that fails counts);
- every 20 s writes a burst of 500 storage error lines into /dev/kmsg, alternating devices and
  classes (devices `sdsoak0`..`sdsoak9` that exist only in the log);
- every 10 s attaches a loop device to a 64 MiB file, writes to it with O_DIRECT, and detaches it,
  so block devices come and go under the diskstats and queue collectors.
Every minute it prints the agent's RSS (VmRSS), peak RSS (VmHWM), open file descriptors, threads,
scrapes done and failed, and the size of the last scrape. At the end: the first and last samples
and the growth, and a non-zero exit if a scrape failed or the agent died.
Not part of the test suite (it takes half an hour); its figures are reported in the README.
"""
import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import time


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--binary", default="target/release/storwatch")
    ap.add_argument("--port", type=int, default=19870)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak.py: run as root (/dev/kmsg writes, loop devices)")

    agent = subprocess.Popen([args.binary, f"--web.listen-address=127.0.0.1:{args.port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tempfile.mkdtemp()
    backing = os.path.join(work, "loop.img")
    with open(backing, "wb") as f:
        f.truncate(64 << 20)
    conn = None
    scrapes = failed = 0
    size = 0
    samples = []
    start = time.monotonic()
    next_burst = next_loop = start
    next_sample = start
    burst = 0
    try:
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", args.port, timeout=1).request("GET", "/-/ready")
                break
            except OSError:
                time.sleep(0.1)
        while time.monotonic() - start < args.minutes * 60:
            now = time.monotonic()
            if agent.poll() is not None:
                print(f"the agent exited with {agent.returncode}", file=sys.stderr)
                return 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=5)
                conn.request("GET", "/metrics")
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    raise OSError(f"status {r.status}")
                size = len(body)
                scrapes += 1
            except (OSError, http.client.HTTPException) as e:
                failed += 1
                print(f"scrape failed: {e}", file=sys.stderr)
                conn = None
            if now >= next_burst:
                with open("/dev/kmsg", "w") as k:
                    for i in range(500):
                        dev = f"sdsoak{(burst + i) % 10}"
                        line = (f"<3>I/O error, dev {dev}, sector {i * 8} op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2"
                                if i % 2 else f"<3>sd 9:0:0:{i % 10}: [{dev}] tag#3 timing out command, waited 180s")
                        k.write(line + "\n")
                        k.flush()
                burst += 1
                next_burst += 20
            if now >= next_loop:
                loop = subprocess.run(["losetup", "--find", "--show", backing], capture_output=True, text=True)
                dev = loop.stdout.strip()
                if dev:
                    subprocess.run(["dd", "if=/dev/zero", f"of={dev}", "bs=4k", "count=256", "oflag=direct"],
                                   capture_output=True)
                    time.sleep(0.3)
                    subprocess.run(["losetup", "-d", dev])
                next_loop += 10
            if now >= next_sample:
                fds = len(os.listdir(f"/proc/{agent.pid}/fd"))
                s = (round((now - start) / 60), status(agent.pid, "VmRSS"), status(agent.pid, "VmHWM"), fds,
                     status(agent.pid, "Threads"), scrapes, failed, size)
                samples.append(s)
                print("minute %d: RSS %d kB, peak %d kB, fds %d, threads %d, scrapes %d (failed %d), last %d bytes" % s,
                      flush=True)
                next_sample += 60
            time.sleep(max(0.0, 0.1 - (time.monotonic() - now)))
    finally:
        agent.terminate()
        agent.wait()
        os.remove(backing)
        os.rmdir(work)
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    print(f"RSS from minute {first[0]} to {last[0]}: {first[1]} -> {last[1]} kB ({last[1] - first[1]:+d}); "
          f"fds {first[3]} -> {last[3]}; scrapes {scrapes}, failed {failed}")
    return 1 if failed else 0


sys.exit(main())
