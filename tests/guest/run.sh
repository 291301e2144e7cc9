#!/usr/bin/env bash
# Boots a QEMU guest (TCG) with real NVMe and AHCI SATA drives, runs SCRIPT there, prints what it
# wrote (stdout and stderr together) on stdout, and exits with its exit status.
#   run.sh [OPTIONS] SCRIPT [BINARY...]
# BINARY: host programs to carry into the guest at the same path, with their shared libraries.
# Guest devices: /dev/nvme0 (serial deadbeef, 64 MiB, n1), /dev/sda (AHCI, 64 MiB; ata1).
# Options:
#   --nvme-error-sector N  reads of NVMe sector N fail (blkdebug, EIO) -> Unrecovered Read Error
#   --sata-error-sector N  reads of SATA sector N fail (blkdebug, EIO) -> libata EH, ABRT
#   --latency-ns N         adds /dev/nvme1 (serial lat1, 64 MiB of zeroes), every request >= N ns
#   --scsi-disk            adds a virtio-scsi disk (scsi-hd, 64 MiB, /dev/sdb): SCSI, no ATA behind it
#   --qmp SOCKET           QMP socket (server, no wait); the NVMe drives have ids nvme0 / nvme1
#   --out FILE             also keep the guest's output in FILE, written as the guest runs
#   --console FILE         keep the guest console (boot log, kernel messages) in FILE
#   --timeout SECONDS      kill QEMU after this long (default $GUEST_TIMEOUT, else 120)
# Environment: GUEST_KERNEL (a /boot/vmlinuz-* path, default the newest one), GUEST_TIMEOUT.
# On failure (script exit status != 0, timeout, guest crash) the console tail goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
nvme_err='' sata_err='' latency='' scsi_disk='' qmp='' out='' console='' timeout=${GUEST_TIMEOUT:-120}
while (($#)); do
    case $1 in
        --nvme-error-sector) nvme_err=$2; shift 2 ;;
        --sata-error-sector) sata_err=$2; shift 2 ;;
        --latency-ns) latency=$2; shift 2 ;;
        --scsi-disk) scsi_disk=1; shift ;;
        --qmp) qmp=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --console) console=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --) shift; break ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
if (($# < 1)); then
    echo "usage: $0 [OPTIONS] SCRIPT [BINARY...]" >&2
    exit 2
fi
script=$1
shift

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=${out:-$tmp/out}
console=${console:-$tmp/console}
: > "$out"
: > "$console"
export GUEST_KERNEL=${GUEST_KERNEL:-$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)}
[[ -f $GUEST_KERNEL ]] || { echo "run.sh: no kernel in /boot (install linux-image-amd64)" >&2; exit 1; }

start=$(date +%s%N)
"$here/build-initramfs.sh" "$tmp/initrd.gz" "$script" "$@"
built=$(date +%s%N)

# A drive's file= part: the raw image, behind blkdebug when a read error is injected.
drive_file() { # name error-sector
    truncate -s 64M "$tmp/$1.img"
    if [[ -n $2 ]]; then
        printf '[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "%s"\n' "$2" > "$tmp/$1.blkdebug"
        echo "file=blkdebug:$tmp/$1.blkdebug:$tmp/$1.img"
    else
        echo "file=$tmp/$1.img"
    fi
}
wait=nvme0,nvme0n1,sda
args=(
    -accel tcg -cpu max -m 512 -nographic -no-reboot -monitor none -nic none
    -kernel "$GUEST_KERNEL" -initrd "$tmp/initrd.gz"
    -serial "file:$console" -serial "file:$out"
    -drive "$(drive_file nvme "$nvme_err"),if=none,id=nv0,format=raw"
    -device nvme,id=nvme0,serial=deadbeef,drive=nv0
    -drive "$(drive_file sata "$sata_err"),if=none,id=disk0,format=raw"
    -device ahci,id=ahci -device ide-hd,id=sata0,drive=disk0,bus=ahci.0
)
if [[ -n $latency ]]; then
    args+=(-drive "driver=null-co,latency-ns=$latency,size=67108864,read-zeroes=on,if=none,id=lat0")
    args+=(-device nvme,id=nvme1,serial=lat1,drive=lat0)
    wait+=,nvme1,nvme1n1
fi
if [[ -n $scsi_disk ]]; then
    args+=(-drive "$(drive_file scsi ''),if=none,id=disk1,format=raw")
    args+=(-device virtio-scsi-pci,id=vscsi -device scsi-hd,id=scsi0,drive=disk1,bus=vscsi.0)
    wait+=,sdb
fi
[[ -n $qmp ]] && args+=(-qmp "unix:$qmp,server=on,wait=off")
args+=(-append "console=ttyS0 quiet panic=-1 storwatch.wait=$wait")

rc=0
timeout --kill-after=5 "$timeout" qemu-system-x86_64 "${args[@]}" < /dev/null || rc=$?
end=$(date +%s%N)
echo "guest: initramfs built in $(((built - start) / 1000000)) ms, boot+run+poweroff $(((end - built) / 1000000)) ms" >&2

# The last line init writes is "@@storwatch-guest-exit=N", after a newline it adds.
marker=$(tail -n1 "$out")
if [[ $rc -ne 0 || $marker != @@storwatch-guest-exit=* ]]; then
    ((rc == 124)) && echo "run.sh: guest timed out after $timeout s" >&2
    echo "run.sh: guest did not finish (qemu exit $rc); console tail:" >&2
    tail -n 40 "$console" | sed 's/\x1b[[?0-9;]*[a-zA-Z]//g; s/\x1bc//g; s/\r//g' >&2
    echo "run.sh: output tail:" >&2
    tail -n 20 "$out" >&2
    exit 1
fi
head -c -$((${#marker} + 2)) "$out"
status=${marker#@@storwatch-guest-exit=}
if ((status != 0)); then
    echo "run.sh: guest script exited $status; console tail:" >&2
    tail -n 40 "$console" | sed 's/\x1b[[?0-9;]*[a-zA-Z]//g; s/\x1bc//g; s/\r//g' >&2
fi
exit "$status"
