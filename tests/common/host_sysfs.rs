//! A sysfs laid out as on a real host, for attributing kernel log lines (tests/data/kmsg-real.tsv
//! is normalized onto it; tests/data/kmsg-real.md describes it):
//!
//! - AHCI at 0000:00:17.0: ata1..ata4 -> sda..sdd (SCSI hosts 0..3, `H:0:0:0`); ata5, ata6 empty;
//! - a UAS bridge (host6, 6:0:0:0 -> sde), a SAS HBA at 0000:03:00.0 (host7: 7:0:0:0 -> sdf,
//!   7:0:1:0 -> sdg), iSCSI sessions 1 and 2 (host8 -> sdh, host9 -> sdi), virtio vda;
//! - NVMe nvme0 at 0000:01:00.0 behind root port 0000:00:1c.0 (nvme0n1, partitions p1..p3), nvme1 at
//!   0000:02:00.0 behind 0000:00:1d.0 (nvme1n1); a multipath subsystem with controllers nvme2 and
//!   nvme3, head nvme2n1, hidden paths nvme2c2n1 and nvme2c3n1;
//! - dm-0 (`cryptroot`), dm-1 (`vg0-data`), md0, mmcblk0.
//!
//! Shared by the unit tests (through `#[path]`) and the integration tests; std only.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::Path;

struct Tree<'a>(&'a Path);

impl Tree<'_> {
    fn dir(&self, rel: &str) {
        std::fs::create_dir_all(self.0.join(rel)).unwrap();
    }

    fn file(&self, rel: &str, body: &str) {
        self.dir(Path::new(rel).parent().unwrap().to_str().unwrap());
        std::fs::write(self.0.join(rel), body).unwrap();
    }

    /// A symlink at `rel` to `target` (a path from the sysfs root), relative as sysfs makes them.
    fn link(&self, rel: &str, target: &str) {
        self.dir(Path::new(rel).parent().unwrap().to_str().unwrap());
        let up = "../".repeat(rel.matches('/').count());
        symlink(format!("{up}{target}"), self.0.join(rel)).unwrap();
    }

    /// A disk at `dev` (its device directory) with partitions, its block/class/dev links.
    fn disk(&self, dev: &str, name: &str, major: u32, minor: u32, parts: &[u32], part_sep: &str) {
        let disk = format!("{dev}/block/{name}");
        self.dir(&disk);
        self.link(&format!("block/{name}"), &disk);
        self.link(&format!("class/block/{name}"), &disk);
        self.link(&format!("dev/block/{major}:{minor}"), &disk);
        for p in parts {
            let part = format!("{name}{part_sep}{p}");
            self.file(&format!("{disk}/{part}/partition"), &format!("{p}\n"));
            self.link(&format!("class/block/{part}"), &format!("{disk}/{part}"));
            self.link(&format!("dev/block/{major}:{}", minor + p), &format!("{disk}/{part}"));
        }
    }

    /// A SCSI device `hctl` under `host_dir` with its disk.
    fn scsi(&self, host_dir: &str, hctl: &str, name: &str, minor: u32, parts: &[u32]) {
        let (h, c, t, _) = {
            let mut f = hctl.split(':');
            (f.next().unwrap(), f.next().unwrap(), f.next().unwrap(), f.next().unwrap())
        };
        let dev = format!("{host_dir}/target{h}:{c}:{t}/{hctl}");
        self.disk(&dev, name, 8, minor, parts, "");
        self.link(&format!("bus/scsi/devices/{hctl}"), &dev);
    }

    fn host(&self, host_dir: &str, n: u32) {
        self.dir(host_dir);
        self.link(&format!("class/scsi_host/host{n}"), &format!("{host_dir}/scsi_host/host{n}"));
        self.dir(&format!("{host_dir}/scsi_host/host{n}"));
        self.link(&format!("bus/scsi/devices/host{n}"), host_dir);
    }

    fn pci(&self, path: &str) {
        self.dir(path);
        let bdf = path.rsplit('/').next().unwrap();
        self.link(&format!("bus/pci/devices/{bdf}"), path);
    }
}

/// Lays the host out under `sys` (the `--path.sysfs` directory).
pub fn build(sys: &Path) {
    let t = Tree(sys);
    let ahci = "devices/pci0000:00/0000:00:17.0";
    t.pci(ahci);
    for port in 1..=6u32 {
        let host = port - 1;
        let host_dir = format!("{ahci}/ata{port}/host{host}");
        t.host(&host_dir, host);
        t.dir(&format!("{ahci}/ata{port}/ata_port/ata{port}"));
        t.link(&format!("class/ata_port/ata{port}"), &format!("{ahci}/ata{port}/ata_port/ata{port}"));
        if port <= 4 {
            let name = format!("sd{}", (b'a' + host as u8) as char);
            let parts: &[u32] = if port == 1 { &[1, 2, 3] } else { &[1] };
            t.scsi(&host_dir, &format!("{host}:0:0:0"), &name, host * 16, parts);
        }
    }
    let usb = "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6";
    t.pci("devices/pci0000:00/0000:00:14.0");
    t.host(usb, 6);
    t.scsi(usb, "6:0:0:0", "sde", 64, &[1]);
    let sas = "devices/pci0000:00/0000:00:01.0/0000:03:00.0/host7";
    t.pci("devices/pci0000:00/0000:00:01.0");
    t.pci("devices/pci0000:00/0000:00:01.0/0000:03:00.0");
    t.host(sas, 7);
    t.scsi(&format!("{sas}/port-7:0/end_device-7:0"), "7:0:0:0", "sdf", 80, &[]);
    t.scsi(&format!("{sas}/port-7:1/end_device-7:1"), "7:0:1:0", "sdg", 96, &[]);
    for (host, session, name, minor) in [(8, 1, "sdh", 112), (9, 2, "sdi", 128)] {
        let host_dir = format!("devices/platform/host{host}");
        t.host(&host_dir, host);
        let session_dir = format!("{host_dir}/session{session}");
        t.dir(&format!("{session_dir}/iscsi_session/session{session}"));
        t.link(
            &format!("class/iscsi_session/session{session}"),
            &format!("{session_dir}/iscsi_session/session{session}"),
        );
        t.scsi(&session_dir, &format!("{host}:0:0:0"), name, minor, &[]);
    }
    t.pci("devices/pci0000:00/0000:00:04.0");
    t.disk("devices/pci0000:00/0000:00:04.0/virtio1", "vda", 254, 0, &[1], "");
    for (port, bdf, ctrl, minor) in
        [("0000:00:1c.0", "0000:01:00.0", 0, 0), ("0000:00:1d.0", "0000:02:00.0", 1, 8)]
    {
        let port = format!("devices/pci0000:00/{port}");
        t.pci(&port);
        let func = format!("{port}/{bdf}");
        t.pci(&func);
        let c = format!("{func}/nvme/nvme{ctrl}");
        t.dir(&c);
        t.link(&format!("class/nvme/nvme{ctrl}"), &c);
        let parts: &[u32] = if ctrl == 0 { &[1, 2, 3] } else { &[1] };
        t.disk(&c, &format!("nvme{ctrl}n1"), 259, minor, parts, "p");
    }
    let fabrics = "devices/virtual/nvme-fabrics/ctl";
    for ctrl in [2, 3] {
        let c = format!("{fabrics}/nvme{ctrl}");
        t.dir(&format!("{c}/nvme2c{ctrl}n1"));
        t.link(&format!("class/nvme/nvme{ctrl}"), &c);
    }
    t.disk("devices/virtual/nvme-subsystem/nvme-subsys2", "nvme2n1", 259, 16, &[], "p");
    for (n, name) in [(0, "cryptroot"), (1, "vg0-data")] {
        t.disk("devices/virtual", &format!("dm-{n}"), 253, n, &[], "");
        t.file(&format!("devices/virtual/block/dm-{n}/dm/name"), &format!("{name}\n"));
    }
    t.disk("devices/virtual", "md0", 9, 0, &[], "");
    t.disk("devices/platform/mmc/mmc0/mmc0:0001", "mmcblk0", 179, 0, &[1], "p");
}
