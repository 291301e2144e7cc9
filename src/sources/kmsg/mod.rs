//! The kernel log: every storage error in `/dev/kmsg` counted per whole block device and class.
//!
//! A reader thread follows `<path.dev>/kmsg`: at start it replays the ring buffer, then waits for
//! new records. Each record is parsed ([`record`]), classified ([`classify`]) and attributed to a
//! whole block device through sysfs ([`Resolver`]); the source samples the counts on its
//! interval. Sequence numbers make the count exact: a record is never counted twice (also after
//! a reopen), and a gap (records overwritten before they were read, EPIPE) is counted as lost.

pub mod classify;
pub mod record;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use classify::{Class, Subject};

use super::{Collected, Sample as AnySample, Source};
use crate::error::{CollectError, ErrorKind};
use crate::paths::Paths;

/// Records are at most 8 KiB formatted (CONSOLE_EXT_LOG_MAX on older kernels).
const RECORD_BUFFER: usize = 8192;

/// Counts the reader keeps; the collector copies them out.
#[derive(Debug, Default)]
struct Counts {
    /// Why the log cannot be read, while it cannot.
    failure: Option<CollectError>,
    /// The ring buffer has been replayed and the reader waits for new records.
    caught_up: bool,
    records: u64,
    lost: u64,
    last_seq: Option<u64>,
    /// (device, class) -> (count, printk time of the last one: seconds since boot).
    errors: BTreeMap<(String, Class), (u64, f64)>,
}

/// The counts so far: a sample of the kernel log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Records read since the agent started.
    pub records: u64,
    /// Records overwritten before they could be read (sequence gaps).
    pub lost: u64,
    /// (device, class) -> (count, printk time of the last one: seconds since boot). The device
    /// is empty when the line could not be attributed.
    pub errors: BTreeMap<(String, Class), (u64, f64)>,
    /// The printk clock when sampled: seconds since boot on the monotonic clock.
    pub since_boot: f64,
    /// The wall clock when sampled (Unix seconds), to date the errors.
    pub wall: f64,
}

pub struct Kmsg {
    interval: Duration,
    counts: Arc<Mutex<Counts>>,
    reader: Option<(PathBuf, Paths)>,
}

impl Kmsg {
    pub fn new(paths: Paths, interval: Duration) -> Self {
        let path = paths.dev.join("kmsg");
        Kmsg { interval, counts: Arc::default(), reader: Some((path, paths)) }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Source for Kmsg {
    fn name(&self) -> &'static str {
        "kmsg"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        if let Some((path, paths)) = self.reader.take() {
            let counts = self.counts.clone();
            let spawned = std::thread::Builder::new()
                .name("kmsg-reader".into())
                .spawn(move || follow(&path, &paths, &counts));
            if let Err(e) = spawned {
                return Err(CollectError {
                    kind: ErrorKind::Internal,
                    message: format!("cannot start the kmsg reader: {e}"),
                });
            }
        }
        // The first run waits for the replay of the ring buffer, so the first samples are whole.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.counts().caught_up && self.counts().failure.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let c = self.counts();
        if let Some(e) = &c.failure {
            return Err(e.clone());
        }
        // Error times are kept on the printk clock (seconds since boot), so ages come from the
        // monotonic clock and a jump of the wall clock moves the exported timestamps, not the ages.
        let sample = Sample {
            records: c.records,
            lost: c.lost,
            errors: c.errors.clone(),
            since_boot: monotonic_seconds(),
            wall: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64(),
        };
        Ok(Collected::new(AnySample::Kmsg(sample), Vec::new()))
    }
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|e| e.into_inner())
}

/// What is missing when /dev/kmsg cannot be opened, for the one log line that says so.
fn privilege_hint(paths: &Paths, err: &io::Error) -> String {
    let sysctl = |name: &str| {
        std::fs::read_to_string(paths.proc("sys/kernel").join(name)).map(|s| s.trim().to_owned()).ok()
    };
    match err.kind() {
        io::ErrorKind::PermissionDenied if sysctl("printk_devkmsg").as_deref() == Some("off") => {
            "kernel.printk_devkmsg=off (printk.devkmsg=off) disables /dev/kmsg; set it to on or ratelimit".to_owned()
        }
        io::ErrorKind::PermissionDenied if sysctl("dmesg_restrict").as_deref() == Some("1") => {
            "kernel.dmesg_restrict=1: reading the kernel log needs CAP_SYSLOG (run as root or grant CAP_SYSLOG)".to_owned()
        }
        io::ErrorKind::PermissionDenied => "needs read access to the device (CAP_SYSLOG or root)".to_owned(),
        _ => "is this a Linux kernel with /dev/kmsg?".to_owned(),
    }
}

/// The reader thread: opens, replays, follows; reopens after an error, skipping what it has seen.
fn follow(path: &Path, paths: &Paths, counts: &Mutex<Counts>) {
    let mut resolver = Resolver::new(paths.clone());
    loop {
        let opened = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path);
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                let kind = if e.kind() == io::ErrorKind::PermissionDenied {
                    ErrorKind::Permission
                } else {
                    ErrorKind::Io
                };
                let message = format!("cannot open {}: {e}; {}", path.display(), privilege_hint(paths, &e));
                lock(counts).failure = Some(CollectError { kind, message });
                std::thread::sleep(Duration::from_secs(60));
                continue;
            }
        };
        lock(counts).failure = None;
        if let Err(e) = read_records(file, counts, &mut resolver) {
            lock(counts).failure = Some(CollectError::io(path, &e));
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Seconds since boot on the monotonic clock, which the printk clock follows.
fn monotonic_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn read_records(mut file: File, counts: &Mutex<Counts>, resolver: &mut Resolver) -> io::Result<()> {
    let mut buf = vec![0u8; RECORD_BUFFER];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the kernel log closed")),
            Ok(n) => {
                let Some(r) = record::parse(&buf[..n]) else { continue };
                let hit = classify::classify(&r.message).map(|(class, subject)| {
                    let device = resolver.resolve(subject, r.device.as_deref());
                    (class, device)
                });
                let mut c = lock(counts);
                if c.last_seq.is_some_and(|last| r.seq <= last) {
                    continue; // seen before a reopen
                }
                if let Some(last) = c.last_seq {
                    c.lost += r.seq - last - 1;
                }
                c.last_seq = Some(r.seq);
                c.records += 1;
                if let Some((class, device)) = hit {
                    let at = r.timestamp_us as f64 / 1e6;
                    let entry = c.errors.entry((device, class)).or_insert((0, at));
                    entry.0 += 1;
                    entry.1 = entry.1.max(at);
                }
            }
            Err(e) => match e.raw_os_error() {
                // Records were overwritten; the next read returns the oldest one left, and the
                // sequence gap counts what was lost. EINVAL: a record larger than the buffer was
                // skipped (its sequence number is gone too).
                Some(libc::EPIPE) | Some(libc::EINVAL) => continue,
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    lock(counts).caught_up = true;
                    wait_readable(&file);
                }
                _ => return Err(e),
            },
        }
    }
}

/// Blocks until the kernel log has a new record (or a second has passed).
fn wait_readable(file: &File) {
    let mut fd = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `fd` is one valid pollfd for a descriptor `file` keeps open during the call.
    unsafe { libc::poll(&mut fd, 1, 1000) };
}

/// Maps what a line names to a whole block device (or an NVMe controller) through sysfs.
/// Answers are cached for a minute: devices come and go.
struct Resolver {
    paths: Paths,
    cache: HashMap<String, String>,
    cleared: Instant,
}

impl Resolver {
    fn new(paths: Paths) -> Self {
        Resolver { paths, cache: HashMap::new(), cleared: Instant::now() }
    }

    fn resolve(&mut self, subject: Subject, dict_device: Option<&str>) -> String {
        if self.cleared.elapsed() > Duration::from_secs(60) {
            self.cache.clear();
            self.cleared = Instant::now();
        }
        let key = format!("{subject:?}|{dict_device:?}");
        if let Some(v) = self.cache.get(&key) {
            return v.clone();
        }
        let v = self.lookup(subject, dict_device).unwrap_or_default();
        if self.cache.len() < 4096 {
            self.cache.insert(key, v.clone());
        }
        v
    }

    fn lookup(&self, subject: Subject, dict_device: Option<&str>) -> Option<String> {
        let sys = |rel: &str| self.paths.sys(rel);
        match subject {
            Subject::Block(name) => Some(self.whole_disk(name)),
            Subject::NvmeController(name) => Some(name.to_owned()),
            Subject::AtaPort(port) => {
                let needle = format!("/ata{port}/");
                let mut disks: Vec<String> = std::fs::read_dir(sys("block"))
                    .ok()?
                    .filter_map(|e| e.ok())
                    .filter(|e| {
                        std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains(&needle))
                    })
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect();
                disks.sort();
                disks.into_iter().next()
            }
            Subject::Scsi(hctl) => first_entry(&sys(&format!("bus/scsi/devices/{hctl}/block"))),
            Subject::Pci(bdf) => first_entry(&sys(&format!("bus/pci/devices/{bdf}/nvme"))),
            Subject::None => match dict_device? {
                d if d.starts_with('b') => {
                    let target = std::fs::read_link(sys(&format!("dev/block/{}", &d[1..]))).ok()?;
                    Some(self.whole_disk(&target.file_name()?.to_string_lossy()))
                }
                _ => None,
            },
        }
    }

    /// A partition's disk (`sda1` -> `sda`), from sysfs where it knows, else by the name.
    fn whole_disk(&self, name: &str) -> String {
        let class = self.paths.sys("class/block").join(name);
        let parent = || {
            let path = std::fs::canonicalize(&class).ok()?;
            Some(path.parent()?.file_name()?.to_string_lossy().into_owned())
        };
        if class.join("partition").exists()
            && let Some(parent) = parent()
        {
            return parent;
        }
        if self.paths.sys("block").join(name).exists() {
            return name.to_owned();
        }
        strip_partition(name).to_owned()
    }
}

fn first_entry(dir: &Path) -> Option<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names.into_iter().next()
}

/// The disk of a partition by the kernel's naming: `sda1` -> `sda`, `nvme0n1p2` -> `nvme0n1`,
/// `mmcblk0p1` -> `mmcblk0`. Other names are returned as they are.
pub fn strip_partition(name: &str) -> &str {
    let digits = name.len() - name.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == name.len() || digits == 0 {
        return name;
    }
    let head = &name[..digits];
    let numbered_disk = |h: &str| {
        h.len() > 1 && h.as_bytes()[h.len() - 1] == b'p' && h.as_bytes()[h.len() - 2].is_ascii_digit()
    };
    if numbered_disk(head) && ["nvme", "mmcblk", "md", "nbd", "loop"].iter().any(|p| head.starts_with(p)) {
        return &head[..head.len() - 1];
    }
    let letters = head.trim_start_matches(|c: char| c.is_ascii_lowercase());
    if letters.is_empty()
        && ["sd", "vd", "hd", "xvd"].iter().any(|p| head.starts_with(p) && head.len() > p.len())
    {
        return head;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_name() {
        for (part, disk) in [
            ("sda1", "sda"),
            ("sdab12", "sdab"),
            ("vda3", "vda"),
            ("xvdb1", "xvdb"),
            ("nvme0n1p2", "nvme0n1"),
            ("mmcblk0p1", "mmcblk0"),
            ("md127p1", "md127"),
            ("nvme0n1", "nvme0n1"),
            ("sda", "sda"),
            ("dm-0", "dm-0"),
            ("md0", "md0"),
            ("loop0", "loop0"),
            ("123", "123"),
            ("", ""),
        ] {
            assert_eq!(strip_partition(part), disk, "{part}");
        }
    }
}
