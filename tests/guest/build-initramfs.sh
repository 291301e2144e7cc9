#!/usr/bin/env bash
# Builds the guest's initramfs (gzip'd newc cpio):
#   build-initramfs.sh OUT.cpio.gz SCRIPT [BINARY...]
# Contents: static busybox, the storage modules of the installed Debian kernel (nvme, ahci, sd_mod,
# drivetemp, virtio_pci and virtio_scsi for run.sh --scsi-disk, ext4 and dm-mod for a filesystem
# on a device-mapper disk that fails (ext4 needs crc32c), and their dependencies from
# modules.dep, decompressed so busybox insmod loads them),
# /init (below), SCRIPT as /cmd.sh, and each BINARY at its host path with the shared libraries
# `ldd` names (also at their host paths), so the agent, nvme and smartctl run in the guest.
# The kernel is $GUEST_KERNEL (a /boot/vmlinuz-* path), else the newest /boot/vmlinuz-*.
set -euo pipefail
if (($# < 2)); then
    echo "usage: $0 OUT.cpio.gz SCRIPT [BINARY...]" >&2
    exit 2
fi
out=$(realpath -m "$1")
script=$2
shift 2
kernel=${GUEST_KERNEL:-$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)}
[[ -f $kernel ]] || { echo "build-initramfs: no kernel in /boot (install linux-image-amd64)" >&2; exit 1; }
kver=${kernel##*/vmlinuz-}
moddir=/lib/modules/$kver
[[ -f $moddir/modules.dep ]] || { echo "build-initramfs: no $moddir/modules.dep" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# mktemp makes it 0700, which would become the guest's / and lock out every user but root.
chmod 755 "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,lib}
cp /bin/busybox "$root/bin/busybox"
cp "$script" "$root/cmd.sh"

# Modules in load order: for each root module its modules.dep dependencies reversed (depmod lists
# them so that the last one is loaded first), then the module itself; duplicates dropped.
roots=(nvme ahci sd_mod drivetemp virtio_pci virtio_scsi crc32c_generic ext4 dm-mod)
order=()
for m in "${roots[@]}"; do
    line=$(grep -E "(^|/)${m}\.ko(\.[a-z]+)?:" "$moddir/modules.dep") ||
        { echo "build-initramfs: module $m not in $moddir/modules.dep" >&2; exit 1; }
    read -r -a deps <<< "${line#*:}"
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do order+=("${deps[i]}"); done
    order+=("${line%%:*}")
done
: > "$root/modules"
for rel in "${order[@]}"; do
    dst=${rel%.xz}; dst=${dst%.zst}; dst=${dst%.gz}
    grep -qxF "$dst" "$root/modules" && continue
    mkdir -p "$(dirname "$root/lib/modules/$kver/$dst")"
    case $rel in
        *.xz) xz -dc "$moddir/$rel" ;;
        *.zst) zstd -qdc "$moddir/$rel" ;;
        *.gz) gzip -dc "$moddir/$rel" ;;
        *) cat "$moddir/$rel" ;;
    esac > "$root/lib/modules/$kver/$dst"
    echo "$dst" >> "$root/modules"
done

# Extra binaries at their host paths, plus their shared libraries. ELF debug info is stripped when
# `strip` can: the agent's debug build is ~60 MB, and the guest unpacks all of it in emulated RAM.
for bin in "$@"; do
    bin=$(realpath -s "$bin")
    mkdir -p "$root$(dirname "$bin")"
    strip --strip-debug -o "$root$bin" "$bin" 2> /dev/null || cp "$bin" "$root$bin"
    # `ldd` lines: "libx.so.1 => /lib/.../libx.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
    for lib in $(ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+ \(0x' | cut -d' ' -f1); do
        [[ -e $root$lib ]] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
done

cat > "$root/init" << 'EOF'
#!/bin/busybox sh
# Guest init: mount, load the storage modules, wait for the disks, run /cmd.sh, power off (QEMU
# runs with -no-reboot, so it exits).
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The command's output goes to the second serial port, which QEMU writes to a file on the host:
# kernel messages stay on the console (ttyS0) and cannot interleave with it, and it needs no extra
# disk (which the agent would see) and no virtio/9p modules. Raw mode keeps the bytes as they are;
# closing the port waits until the UART has sent everything, before the power goes off.
stty -F /dev/ttyS1 raw -echo
exec 3> /dev/ttyS1
for m in $(cat /modules); do
    insmod "/lib/modules/$(uname -r)/$m" || echo "init: insmod $m failed" | tee /dev/console >&3
done
# Devices to wait for: storwatch.wait=nvme0,nvme0n1,sda on the kernel command line.
wait=$(sed -n 's/.*storwatch\.wait=\([^ ]*\).*/\1/p' /proc/cmdline | tr ',' ' ')
for i in $(seq 300); do
    missing=
    for d in $wait; do [ -e "/dev/$d" ] || missing="$missing $d"; done
    [ -z "$missing" ] && break
    sleep 0.1
done
[ -n "$missing" ] && echo "init: devices missing after 30 s:$missing" | tee /dev/console >&3
cd /tmp
sh /cmd.sh >&3 2>&3 < /dev/null
printf '\n@@storwatch-guest-exit=%d\n' $? >&3
exec 3>&-
poweroff -f
EOF
chmod +x "$root/init" "$root/cmd.sh"

(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -1) > "$out"
