//! The collector registry. A collector is a source with a name, an interval and one function that
//! samples it; the scheduler in `main` runs each on its own thread and publishes its output.

pub mod biolatency;
pub mod diskstats;
pub mod docker;
pub mod fabric;
pub mod host;
pub mod hwmon;
pub mod kmsg;
pub mod nvme;
pub mod queue;
pub mod sata;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::checks::CheckResult;
use crate::config::Config;
use crate::metrics::Family;
use crate::paths::Paths;

/// A collector as the flags see it: `--collector.<name>`, `--no-collector.<name>` and
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
        interval: "1s",
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
        interval: "5s",
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
        interval: "5s",
        help: "block I/O latency histograms per device and operation from eBPF (CAP_BPF + CAP_PERFMON or root, kernel BTF)",
    },
];

/// What every collector is built from.
pub struct Setup<'a> {
    pub paths: &'a Paths,
    pub config: &'a Config,
    /// The block device filter (`--collector.diskstats.device-include/exclude`).
    pub devices: &'a DeviceFilter,
    /// `--collector.docker.socket` and `--collector.docker.volume-sizes`.
    pub docker: &'a docker::Options,
    /// The eBPF latency programs, loaded by the biolatency collector and read by diskstats' check.
    pub biolatency: &'a biolatency::Shared,
    /// NVMe thermal-management transitions, seen by the nvme collector, for hwmon's throttling signal.
    pub thermal: &'a ThermalEvents,
}

/// When each NVMe controller's thermal-management transition count last rose (the drive
/// throttling itself). Only the SMART log has it, which the nvme collector reads (with
/// CAP_SYS_ADMIN); the hwmon collector folds it into the per-drive throttling signal.
#[derive(Debug, Clone, Default)]
pub struct ThermalEvents(Arc<Mutex<HashMap<String, Instant>>>);

impl ThermalEvents {
    pub fn record(&self, controller: &str, at: Instant) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(controller.to_owned(), at);
    }

    /// When `controller` last throttled, if the nvme collector saw it.
    pub fn last(&self, controller: &str) -> Option<Instant> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(controller).copied()
    }
}

/// Builds the collector named in [`REGISTRY`].
pub fn build(name: &str, setup: &Setup, interval: Duration) -> Box<dyn Collector> {
    let (paths, checks) = (setup.paths.clone(), &setup.config.checks);
    match name {
        "diskstats" => Box::new(
            diskstats::Diskstats::new(paths, setup.devices.clone(), interval, checks.storage_latency.clone())
                .with_histograms(setup.biolatency.clone()),
        ),
        "kmsg" => Box::new(kmsg::Kmsg::new(paths, interval, checks.device_errors.clone())),
        "queue" => {
            Box::new(queue::Queue::new(paths, setup.devices.clone(), interval, checks.io_scheduler.clone()))
        }
        "host" => {
            Box::new(host::Host::new(paths, interval, checks.clone(), setup.config.filesystems.paths.clone()))
        }
        "fabric" => Box::new(fabric::Fabric::new(
            paths,
            interval,
            setup.config.fabric.clone(),
            checks.network_bandwidth.clone(),
            checks.packet_loss.clone(),
        )),
        "nvme" => Box::new(
            nvme::Nvme::new(paths, interval, checks.nvme_health.clone(), checks.thermal.clone())
                .with_thermal_events(setup.thermal.clone()),
        ),
        "sata" => Box::new(sata::Sata::new(
            paths,
            interval,
            setup.devices.clone(),
            checks.sata_health.clone(),
            checks.thermal.clone(),
        )),
        "hwmon" => Box::new(
            hwmon::Hwmon::new(paths, interval, checks.thermal.clone())
                .with_thermal_events(setup.thermal.clone()),
        ),
        "docker" => Box::new(docker::Docker::new(
            paths,
            interval,
            setup.docker,
            checks.clone(),
            setup.config.filesystems.paths.clone(),
        )),
        "biolatency" => Box::new(biolatency::Biolatency::new(
            paths,
            setup.devices.clone(),
            interval,
            setup.biolatency.clone(),
        )),
        other => unreachable!("collector {other} is not in the registry"),
    }
}

/// What a collector publishes from one successful run.
#[derive(Debug, Default)]
pub struct Output {
    pub families: Vec<Family>,
    pub checks: Vec<CheckResult>,
    /// Partial failures: a device or file that could not be read while the rest was.
    pub errors: Vec<CollectError>,
}

pub trait Collector: Send {
    fn name(&self) -> &'static str;
    fn interval(&self) -> Duration;
    /// One sampling pass. `Err` means the source as a whole could not be read.
    fn collect(&mut self) -> Result<Output, CollectError>;
}

/// The small fixed set of error kinds that may appear in the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    Io,
    Parse,
    Permission,
    /// A collector panicked; the scheduler caught it and the agent runs on.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Parse => "parse",
            ErrorKind::Permission => "permission",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error that names the file (or device) and what went wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CollectError {
    pub fn io(path: &Path, err: &io::Error) -> CollectError {
        let kind = match err.kind() {
            io::ErrorKind::PermissionDenied => ErrorKind::Permission,
            _ => ErrorKind::Io,
        };
        CollectError { kind, message: format!("{}: {err}", path.display()) }
    }

    pub fn parse(path: &Path, what: impl fmt::Display) -> CollectError {
        CollectError { kind: ErrorKind::Parse, message: format!("{}: {what}", path.display()) }
    }
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind.as_str(), self.message)
    }
}

/// Reads a small file in as few system calls as the kernel allows: open, one read, close. A sysfs
/// attribute is at most a page and comes whole in one read, so a read shorter than a page is the
/// whole file (no size query, no second read for end of file, as `std::fs::read` makes: on a host
/// with thousands of devices these are most of a collection's cost). Longer files are read on to
/// their end.
pub fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    read_to_end_small(std::fs::File::open(path)?)
}

/// The first read goes into a page on the stack and only what came is allocated: a 4 KiB heap
/// buffer per attribute is past the allocator's small-size caches and cost more than the read.
fn read_to_end_small(mut file: std::fs::File) -> io::Result<Vec<u8>> {
    use std::io::Read;
    const PAGE: usize = 4096;
    let mut page = [0u8; PAGE];
    let first = loop {
        match file.read(&mut page) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    let mut buf = page[..first].to_vec();
    if first == PAGE {
        file.read_to_end(&mut buf)?;
    }
    Ok(buf)
}

/// A sysfs directory whose attributes are read by name: the directory's path is walked once,
/// then each open walks one component (`openat`). Path lookup is most of the kernel's cost of
/// a small sysfs read, so a device's eight queue files cost about a third less this way.
pub struct AttrDir {
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl AttrDir {
    /// Opens `path` as an `O_PATH` directory handle (no read permission needed).
    pub fn open(path: PathBuf) -> io::Result<AttrDir> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
        // SAFETY: `c` is a valid NUL-terminated string; the returned descriptor is checked and
        // owned from here on.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(AttrDir { fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }, path })
    }

    /// Reads the attribute `name` (a path relative to the directory) as [`read_small`] does.
    pub fn read(&self, name: &std::ffi::CStr) -> io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        // SAFETY: `self.fd` is an open directory descriptor and `name` is NUL-terminated; the
        // returned descriptor is checked and owned by the File.
        let fd =
            unsafe { libc::openat(self.fd.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        read_to_end_small(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    }

    /// Reads the attribute `name` as [`read_attr`] does.
    pub fn attr(&self, name: &std::ffi::CStr) -> Result<Option<String>, CollectError> {
        attr_text(self.read(name), || self.path(name))
    }

    /// The path of the attribute `name`, for error messages.
    pub fn path(&self, name: &std::ffi::CStr) -> PathBuf {
        self.path.join(name.to_string_lossy().as_ref())
    }
}

/// Reads a small sysfs/procfs attribute, trimmed. `Ok(None)` when the file does not exist:
/// "not present here" is not an error.
pub fn read_attr(path: &Path) -> Result<Option<String>, CollectError> {
    attr_text(read_small(path), || path.to_owned())
}

/// A read attribute as trimmed text; an absent one is `None`, another failure an io error on
/// `path` (made only then).
fn attr_text(
    read: io::Result<Vec<u8>>,
    path: impl FnOnce() -> PathBuf,
) -> Result<Option<String>, CollectError> {
    match read {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CollectError::io(&path(), &e)),
    }
}

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

    pub fn matches(&self, device: &str) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(device))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_small_reads_whole_files_of_any_length() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 4095, 4096, 4097, 8192, 20_000] {
            let path = dir.path().join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            assert_eq!(read_small(&path).unwrap(), data, "{len} bytes");
        }
        assert_eq!(read_small(&dir.path().join("absent")).unwrap_err().kind(), io::ErrorKind::NotFound);
        // Real kernel files: a sysfs attribute and a procfs file longer than a page on most hosts.
        assert_eq!(
            read_small(Path::new("/sys/kernel/mm/transparent_hugepage/enabled")).ok(),
            std::fs::read("/sys/kernel/mm/transparent_hugepage/enabled").ok()
        );
        let maps = read_small(Path::new("/proc/self/mounts")).unwrap();
        assert!(maps.ends_with(b"\n") && maps.len() > 100);
    }
}
