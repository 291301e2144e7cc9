#!/usr/bin/env bash
# Installs the Debian packages the test suite uses (run as root on Debian 12). Idempotent: packages
# already present are not fetched again.
#   prometheus   promtool, to lint the exposition (`promtool check metrics`)
#   sysstat      iostat, the oracle for the disk rates and latencies on a real loop device
#   util-linux   losetup and setpriv (loop devices; running the agent as nobody)
#   iproute2     ip: network namespaces, veth pairs and `ip -s link`, the storage fabric tests
#   iptables     `statistic` random drops in a namespace: packet loss for the fabric tests
#   busybox-static  the root of the tiny image the Docker tests import (no image can be pulled)
#   prometheus-node-exporter  the oracle for the hwmon temperatures on the fixture sysfs tree
set -euo pipefail
packages=(prometheus sysstat util-linux iproute2 iptables busybox-static prometheus-node-exporter)
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
