#!/usr/bin/env bash
# Installs the Debian packages the test suite uses (run as root on Debian 12). Idempotent: packages
# already present are not fetched again.
#   prometheus   promtool, to lint the exposition (`promtool check metrics`), check and unit-test the
#                alert rules; the prometheus server for the live alerting test (tests/e2e_prometheus.rs)
#   prometheus-alertmanager  amtool (check-config, routes test) and alertmanager for the live
#                alerting and inhibition tests
#   python3      runs dashboards/build.py, which writes the Grafana dashboard (tests/dashboard.rs)
#   sysstat      iostat, the oracle for the disk rates and latencies on a real loop device
#   util-linux   losetup and setpriv (loop devices; running the agent as nobody)
#   iproute2     ip: network namespaces, veth pairs and `ip -s link`, the storage fabric tests
#   iptables     `statistic` random drops in a namespace: packet loss for the fabric tests
#   busybox-static  the root of the tiny image the Docker tests import (no image can be pulled)
#   faketime     libfaketime: the wall clock jumping under the agent (tests/faults.rs)
#   openssl      makes the CA, server and client certificates of the TLS tests (tests/prod.rs)
#   curl         the real HTTP/TLS client of the TLS and basic-auth tests
#   wrk          the load generator of the 200-client /metrics load test
#   apache2-utils  htpasswd: bcrypt hashes made by a tool other than the agent's own crate
#   clang llvm libbpf-dev  rebuild bpf/biolatency.bpf.o (scripts/build-bpf.sh: clang, llvm-strip, <bpf/*.h>)
#   bpftool fio  scripts/bench-biolatency.sh (program run times, 4 KiB random read IOPS)
#   prometheus-node-exporter  the oracle for the hwmon temperatures on the fixture sysfs tree
#   systemd      systemd-analyze verify / security for the unit (tests/prod.rs; Debian's images have it)
#   libfuse3-dev pkg-config fuse3  build and mount tests/data/errfs.c, a FUSE filesystem whose files
#                answer EAGAIN / EIO: a sysfs attribute failing with EAGAIN (tests/faults.rs)
#   man-db zsh fish  render the generated man pages with `man -l` and load the generated
#                completions in each shell (tests/docs.rs); bash is always there
#   debootstrap  the clean Debian 12 image the .deb is installed into (scripts/debian-image.sh,
#                tests/prod.rs)
# and, from crates.io (kept when already installed): cargo-fuzz (scripts/fuzz.sh: libFuzzer on the
# parsers, stable with -s none), cargo-deb (builds the .deb, tests/prod.rs) and cargo-deny (the
# licenses, duplicate versions and sources of Cargo.lock against deny.toml, scripts/test.sh).
set -euo pipefail
packages=(prometheus prometheus-alertmanager python3 sysstat util-linux iproute2 iptables busybox-static faketime
    openssl curl wrk apache2-utils clang llvm libbpf-dev bpftool fio prometheus-node-exporter systemd
    libfuse3-dev pkg-config fuse3 man-db zsh fish debootstrap)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-test-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "install-test-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Keep package scripts from starting services (prometheus) on the test machine.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "install-test-deps: installing cargo-fuzz"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
if ! command -v cargo-deb >/dev/null; then
    echo "install-test-deps: installing cargo-deb"
    cargo install cargo-deb --version 3.8.0 --locked
fi
if ! command -v cargo-deny >/dev/null; then
    echo "install-test-deps: installing cargo-deny"
    cargo install cargo-deny --version 0.20.2 --locked
fi
