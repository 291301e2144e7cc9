#!/usr/bin/env bash
# Installs the Debian packages the QEMU guest harness (tests/guest/) uses (run as root on Debian 12).
# Idempotent: packages already present are not fetched again.
#   qemu-system-x86    the emulator (TCG; emulated NVMe, AHCI, blkdebug, null-co)
#   linux-image-amd64  the guest kernel and its storage modules (/boot/vmlinuz-*, /lib/modules/*)
#   busybox-static     the guest's /init shell and tools
#   nvme-cli           `nvme` in the guest, the reference for NVMe admin commands
#   smartmontools      `smartctl` in the guest, the reference for SATA SMART over SG_IO
#   e2fsprogs dmsetup  `mkfs.ext4` and `dmsetup` in the guest: ext4 on a device-mapper disk that fails
#   cpio               packs the initramfs
#   xz-utils zstd      unpack compressed kernel modules (.ko.xz / .ko.zst) while packing
set -euo pipefail
packages=(qemu-system-x86 linux-image-amd64 busybox-static nvme-cli smartmontools e2fsprogs dmsetup cpio xz-utils zstd)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-guest-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "install-guest-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Keep package scripts from starting services (smartd) on the test machine.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
