#!/usr/bin/env python3
"""Writes a synthetic procfs and sysfs for the scale benchmark (scripts/bench-scale.sh).

    scale-tree.py DIR DISKS NVME_CONTROLLERS INTERFACES

DIR/proc and DIR/sys then hold what storwatch's diskstats, queue, host, nvme and fabric
collectors read, and what node_exporter's diskstats, netdev, netclass, nvme, hwmon and meminfo
collectors read, at the given sizes:
- DISKS whole SCSI disks sda, sdb, ... in /proc/diskstats (20 fields, numbers varying per disk)
  and /sys/block/<disk>/{queue/*, device/*, stat, size};
- NVME_CONTROLLERS controllers in /sys/class/nvme/nvmeN with one namespace and an hwmon
  (Composite temperature, max, crit) each; they have no device node, as on a host where the
  agent lacks CAP_SYS_ADMIN;
- INTERFACES physical interfaces ethN (a `device` link each, 25 Gb/s, up) in /sys/class/net with
  every statistics file (node_exporter's netclass; storwatch takes only which are physical from
  here, the rest from rtnetlink and ethtool in the namespace bench-scale.sh makes), and in
  /proc/net/dev (node_exporter's netdev).
File formats follow the kernel's (and tests/fixtures/node-exporter where it has them).
"""
import os
import sys


def sd_name(i):
    letters = []
    while True:
        letters.append(chr(ord("a") + i % 26))
        if i < 26:
            break
        i = i // 26 - 1
    return "sd" + "".join(reversed(letters))


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


STATISTICS = [
    "collisions", "multicast", "rx_bytes", "rx_compressed", "rx_crc_errors", "rx_dropped",
    "rx_errors", "rx_fifo_errors", "rx_frame_errors", "rx_length_errors", "rx_missed_errors",
    "rx_nohandler", "rx_over_errors", "rx_packets", "tx_aborted_errors", "tx_bytes",
    "tx_carrier_errors", "tx_compressed", "tx_dropped", "tx_errors", "tx_fifo_errors",
    "tx_heartbeat_errors", "tx_packets", "tx_window_errors",
]


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    root = sys.argv[1]
    disks, controllers, interfaces = (int(a) for a in sys.argv[2:])
    proc, sysfs = os.path.join(root, "proc"), os.path.join(root, "sys")

    lines = []
    for i in range(disks):
        k = i + 1
        name = sd_name(i)
        major, minor = 8 + i // 16, (i % 16) * 16
        fields = [25354637 + k * 17, 34367663 + k * 3, 1003346126 + k * 1031, 18492372 + k * 7,
                  28444756 + k * 19, 11134226 + k * 5, 505697032 + k * 977, 63877960 + k * 11,
                  k % 3, 9653880 + k, 82621804 + k * 13, k * 2, 0, k * 512, k % 97, 1555 + k,
                  1944 + k * 2]
        lines.append(f"{major:4} {minor:7} {name} " + " ".join(map(str, fields)))
        b = os.path.join(sysfs, "block", name)
        queue = {
            "scheduler": "none [mq-deadline] kyber bfq", "rotational": str(i % 2),
            "read_ahead_kb": "128", "nr_requests": "64", "max_sectors_kb": "1280",
            "logical_block_size": "512", "write_cache": "write back", "wbt_lat_usec": "2000",
            "io_timeout": "30000", "hw_sector_size": "512", "physical_block_size": "4096",
        }
        for f, v in queue.items():
            write(os.path.join(b, "queue", f), v + "\n")
        for f, v in {"model": "SAMSUNG MZ7LH3T8", "vendor": "ATA     ", "state": "running",
                     "rev": "HXT7", "ioerr_cnt": "0x0", "iotmo_cnt": "0x0",
                     "iodone_cnt": hex(k * 1000), "iorequest_cnt": hex(k * 1000)}.items():
            write(os.path.join(b, "device", f), v + "\n")
        write(os.path.join(b, "size"), f"{7501476528 + k}\n")
        write(os.path.join(b, "stat"), " ".join(map(str, fields)) + "\n")
    write(os.path.join(proc, "diskstats"), "\n".join(lines) + "\n")

    for n in range(controllers):
        c = os.path.join(sysfs, "class", "nvme", f"nvme{n}")
        for f, v in {"model": "Samsung SSD 970 PRO 512GB", "serial": f"S463NF0M{n:06}",
                     "firmware_rev": "1B2QEXP7", "state": "live", "cntlid": "4",
                     "transport": "pcie", "address": f"0000:{n + 1:02x}:00.0"}.items():
            write(os.path.join(c, f), v + "\n")
        write(os.path.join(c, f"nvme{n}n1", "size"), "1000215216\n")
        write(os.path.join(c, f"nvme{n}n1", "queue", "logical_block_size"), "512\n")
        h = os.path.join(c, f"hwmon{n}")
        for f, v in {"name": "nvme", "temp1_input": str(38850 + n * 10), "temp1_label": "Composite",
                     "temp1_max": "81850", "temp1_crit": "84850", "temp1_min": "-273150",
                     "temp1_alarm": "0"}.items():
            write(os.path.join(h, f), v + "\n")

    dev = ["Inter-|   Receive                                                |  Transmit",
           " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed"]
    for n in range(interfaces):
        name = f"eth{n}"
        target = os.path.join(sysfs, "devices", "pci0000:00", f"0000:00:{n // 8:04x}.{n % 8}", "net", name)
        for f in STATISTICS:
            write(os.path.join(target, "statistics", f), f"{(n + 1) * (len(f) + 7) * 1000}\n")
        for f, v in {"speed": "25000", "operstate": "up", "carrier": "1", "carrier_changes": "2",
                     "mtu": "9000", "duplex": "full", "ifindex": str(n + 2), "type": "1",
                     "address": f"02:00:00:00:{n // 256:02x}:{n % 256:02x}", "flags": "0x1003"}.items():
            write(os.path.join(target, f), v + "\n")
        os.symlink("../..", os.path.join(target, "device"))
        link = os.path.join(sysfs, "class", "net", name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(target, os.path.dirname(link)), link)
        k = (n + 1) * 1000
        dev.append(f"{name:>6}: {k * 9} {k} 0 0 0 0 0 0 {k * 7} {k} 0 0 0 0 0 0")
    write(os.path.join(proc, "net", "dev"), "\n".join(dev) + "\n")

    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                           "node-exporter", "proc", "net")
    for f in ("snmp", "netstat"):
        with open(os.path.join(fixture, f)) as src:
            write(os.path.join(proc, "net", f), src.read())
    write(os.path.join(proc, "meminfo"), "MemTotal:       24626388 kB\nMemFree:        1000000 kB\n"
          "MemAvailable:   20000000 kB\nBuffers:          100000 kB\nCached:         5000000 kB\n")
    write(os.path.join(proc, "1", "mountinfo"),
          "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
          "30 22 0:25 / /var/lib/docker rw,relatime shared:9 - xfs /dev/sda rw\n")
    write(os.path.join(proc, "1", "mountstats"), "device /dev/vda1 mounted on / with fstype ext4\n")
    for f, v in {"dirty_ratio": "15", "dirty_background_ratio": "5", "dirty_bytes": "0",
                 "dirty_background_bytes": "0"}.items():
        write(os.path.join(proc, "sys", "vm", f), v + "\n")
    write(os.path.join(proc, "sys", "kernel", "osrelease"), "6.1.0-26-amd64\n")
    write(os.path.join(sysfs, "devices", "system", "cpu", "online"), "0-63\n")


main()
