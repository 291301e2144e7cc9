//! The sources: one module per thing the agent reads (a procfs file, a sysfs tree, the kernel
//! log, device commands, netlink, the Docker API). A source does its I/O through [`Paths`] and
//! returns a typed [`Sample`]: plain structs, no Prometheus types and no check thresholds. What
//! is derived from two samples (rates, deltas, rises) is the model's (`crate::model`).
//!
//! [`REGISTRY`] is the one list of sources: it makes the `--collector.<name>` flags, their help
//! and the schedule. Two modules here are shared readers rather than sources: `mountinfo` (the
//! mount table, read by host and docker) and `nvme::names` (NVMe device names).

pub mod biolatency;
pub mod diskstats;
pub mod docker;
pub mod fabric;
pub mod host;
pub mod hwmon;
pub mod kmsg;
pub mod mountinfo;
pub mod nvme;
pub mod queue;
pub mod sata;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::error::CollectError;
use crate::paths::Paths;

/// A source as the flags see it: `--collector.<name>`, `--no-collector.<name>` and
/// `--collector.<name>.interval` are made from this list.
pub struct Spec {
    pub name: &'static str,
    pub interval: &'static str,
    pub help: &'static str,
}

pub const REGISTRY: &[Spec] = &[
    Spec {
        name: "diskstats",
        interval: "5s",
        help: "disk I/O counters, IOPS, throughput and latency from /proc/diskstats",
    },
    Spec {
        name: "kmsg",
        interval: "5s",
        help: "storage errors in the kernel log (/dev/kmsg) by device and class",
    },
    Spec {
        name: "queue",
        interval: "60s",
        help: "block queue settings (I/O scheduler, read-ahead, write cache) from /sys/block",
    },
    Spec {
        name: "host",
        interval: "60s",
        help: "kernel release, writeback sysctls, CPUs, memory, filesystems of the Docker paths",
    },
    Spec {
        name: "fabric",
        interval: "15s",
        help: "storage network: fabric interfaces, TCP retransmits, per-target tcp_info and connect probes",
    },
    Spec {
        name: "nvme",
        interval: "60s",
        help: "NVMe controller health: Identify, SMART / Health and Error logs via admin passthrough (CAP_SYS_ADMIN), hwmon temperatures",
    },
    Spec {
        name: "sata",
        interval: "60s",
        help: "SATA/SAS disk health: SMART via SG_IO ATA PASS-THROUGH (CAP_SYS_RAWIO; disks in standby are not woken), SCSI error and timeout counters, ATA link speed, drivetemp",
    },
    Spec {
        name: "hwmon",
        interval: "15s",
        help: "hwmon temperatures (node_exporter chip names), drive sensors joined to their devices, thermal throttling, thermal zones, cooling devices, CPU throttle counters",
    },
    Spec {
        name: "docker",
        interval: "30s",
        help: "Docker engine (version, storage driver), volumes, their filesystems and free space, container mounts",
    },
    Spec {
        name: "biolatency",
        interval: "15s",
        help: "block I/O latency histograms per device and operation from eBPF (CAP_BPF + CAP_PERFMON or root, kernel BTF)",
    },
];

/// The names of every source, in [`REGISTRY`] order.
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|s| s.name)
}

/// One sample of one source.
#[derive(Debug)]
pub enum Sample {
    Diskstats(diskstats::Sample),
    Kmsg(kmsg::Sample),
    Queue(queue::Sample),
    Host(host::Sample),
    Fabric(fabric::Sample),
    Nvme(nvme::Sample),
    Sata(sata::Sample),
    Hwmon(hwmon::Sample),
    Docker(docker::Sample),
    Biolatency(biolatency::Sample),
}

/// What one successful read of a source gave: the sample, and partial failures (a device or file
/// that could not be read while the rest was).
#[derive(Debug)]
pub struct Collected {
    pub sample: Sample,
    pub errors: Vec<CollectError>,
    /// When the sample was taken; the model dates windows and rises by it.
    pub at: Instant,
}

impl Collected {
    pub fn new(sample: Sample, errors: Vec<CollectError>) -> Collected {
        Collected { sample, errors, at: Instant::now() }
    }
}

pub trait Source: Send {
    fn name(&self) -> &'static str;
    fn interval(&self) -> Duration;
    /// One read of the source. `Err` means the source as a whole could not be read.
    fn sample(&mut self) -> Result<Collected, CollectError>;
    /// True when a run now would only repeat the last sample, so the run can be skipped. For a
    /// source that learns of changes by itself (the kernel log's reader) and can say so cheaply;
    /// the others always run.
    fn unchanged(&self) -> bool {
        false
    }
}

/// What the sources are built from: the host paths and the sources' own settings (flags and the
/// config file's `[filesystems]` and `[fabric]`).
#[derive(Debug, Clone)]
pub struct Options {
    pub paths: Paths,
    /// The block device filter (`--collector.diskstats.device-include/exclude`).
    pub devices: DeviceFilter,
    /// `--collector.docker.socket` and `--collector.docker.volume-sizes`.
    pub docker: docker::Options,
    /// `[fabric]`: interfaces, targets, ports, the probe.
    pub fabric: fabric::Config,
    /// `[filesystems] paths`: the paths whose filesystem the host source reports.
    pub watched: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            paths: Paths::default(),
            devices: DeviceFilter::default(),
            docker: docker::Options::default(),
            fabric: fabric::Config::default(),
            watched: host::default_watched(),
        }
    }
}

/// Builds the source named in [`REGISTRY`].
pub fn build(name: &str, o: &Options, interval: Duration) -> Box<dyn Source> {
    let paths = o.paths.clone();
    match name {
        "diskstats" => Box::new(diskstats::Diskstats::new(paths, o.devices.clone(), interval)),
        "kmsg" => Box::new(kmsg::Kmsg::new(paths, interval)),
        "queue" => Box::new(queue::Queue::new(paths, o.devices.clone(), interval)),
        "host" => Box::new(host::Host::new(paths, interval, o.watched.clone())),
        "fabric" => Box::new(fabric::Fabric::new(paths, interval, o.fabric.clone())),
        "nvme" => Box::new(nvme::Nvme::new(paths, interval)),
        "sata" => Box::new(sata::Sata::new(paths, interval, o.devices.clone())),
        "hwmon" => Box::new(hwmon::Hwmon::new(paths, interval)),
        "docker" => Box::new(docker::Docker::new(paths, interval, &o.docker)),
        "biolatency" => Box::new(biolatency::Biolatency::new(paths, o.devices.clone(), interval)),
        other => unreachable!("source {other} is not in the registry"),
    }
}

/// The default `--collector.diskstats.device-exclude`: partitions, loop, ram, zram and floppies.
pub const DEFAULT_EXCLUDE: &str =
    r"^(z?ram|loop|fd)\d+$|^(h|s|v|xv)d[a-z]+\d+$|^(nvme\d+n\d+|mmcblk\d+|md\d+|nbd\d+)p\d+$";

/// Device include/exclude regexes, as node_exporter's `device-include` / `device-exclude`.
#[derive(Debug, Clone)]
pub struct DeviceFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl DeviceFilter {
    pub fn new(include: Option<Regex>, exclude: Option<Regex>) -> DeviceFilter {
        DeviceFilter { include, exclude }
    }

    /// Every device.
    pub fn all() -> DeviceFilter {
        DeviceFilter { include: None, exclude: None }
    }

    pub fn matches(&self, device: &str) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(device))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(device))
    }
}

impl Default for DeviceFilter {
    /// Whole disks: the default exclude regex.
    fn default() -> DeviceFilter {
        DeviceFilter { include: None, exclude: Regex::new(DEFAULT_EXCLUDE).ok() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_exclude() {
        let f = DeviceFilter::default();
        for d in [
            "sda1",
            "vda2",
            "xvdb1",
            "nvme0n1p1",
            "mmcblk0p2",
            "md0p1",
            "loop0",
            "ram15",
            "zram0",
            "fd0",
            "sdaa3",
        ] {
            assert!(!f.matches(d), "{d} should be excluded");
        }
        for d in
            ["sda", "sdaa", "vda", "nvme0n1", "nvme10n2", "mmcblk0", "md0", "dm-0", "dm-12", "sr0", "nbd0"]
        {
            assert!(f.matches(d), "{d} should be included");
        }
        assert!(DeviceFilter::all().matches("loop0"));
    }

    #[test]
    fn every_registered_source_builds() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            procfs: dir.path().into(),
            sysfs: dir.path().into(),
            rootfs: dir.path().into(),
            dev: dir.path().into(),
        };
        let o = Options { paths, ..Options::default() };
        for name in names() {
            let s = build(name, &o, Duration::from_secs(1));
            assert_eq!(s.name(), name);
        }
    }
}
