//! The kernel log: every storage error in `/dev/kmsg` counted per whole block device and class.
//!
//! A reader thread follows `<path.dev>/kmsg`: at start it replays the ring buffer, then waits for
//! new records. Each record is parsed ([`record`]), classified ([`classify`]) and attributed to a
//! whole block device, or to a subject that is not a disk (an md array, a dm device, an NFS
//! server, an iSCSI session, an ATA port without a disk...), through sysfs ([`Resolver`]); the
//! source samples the counts on its interval, and only when records arrived. The series are
//! bounded: the subjects that exist, and at most [`MAX_DEPARTED`] that do not (the most recent).
//! Sequence numbers make the count exact: a record is never counted twice (also after a reopen),
//! and a gap (records overwritten before they were read, EPIPE) is counted as lost.

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

/// Subjects that no longer exist (a pulled disk, an NFS server) keep their series, the most
/// recent this many; older ones are dropped so the series do not grow with every name ever seen.
pub const MAX_DEPARTED: usize = 16;

/// What an error is counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A whole block device or an NVMe controller: the `device` label.
    Disk,
    Md,
    Dm,
    Nfs,
    Iscsi,
    /// An ATA port without a disk behind it.
    AtaPort,
    /// A SCSI address or host without a disk.
    Scsi,
    /// A PCI function that is not an NVMe controller.
    Pci,
    /// A block device number that sysfs does not know.
    Unknown,
    /// No subject at all (CPU throttling).
    None,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Disk => "disk",
            Kind::Md => "md",
            Kind::Dm => "dm",
            Kind::Nfs => "nfs",
            Kind::Iscsi => "iscsi",
            Kind::AtaPort => "ata_port",
            Kind::Scsi => "scsi",
            Kind::Pci => "pci",
            Kind::Unknown => "unknown",
            Kind::None => "none",
        }
    }
}

/// A resolved subject: a disk (`Disk`, `sda`) or something else by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

impl Target {
    fn new(kind: Kind, name: impl Into<String>) -> Self {
        Target { kind, name: name.into() }
    }

    pub fn disk(name: &str) -> Self {
        Target::new(Kind::Disk, name)
    }

    /// How checks name it: a disk by its name, anything else as `kind:name`.
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Disk | Kind::Md | Kind::Dm => self.name.clone(),
            Kind::None => String::new(),
            k => format!("{}:{}", k.as_str(), self.name),
        }
    }
}

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
    /// (subject, class) -> (count, printk time of the last one: seconds since boot).
    errors: BTreeMap<(Target, Class), (u64, f64)>,
}

/// The counts so far: a sample of the kernel log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Records read since the agent started.
    pub records: u64,
    /// Records overwritten before they could be read (sequence gaps).
    pub lost: u64,
    /// (subject, class) -> (count, printk time of the last one: seconds since boot).
    pub errors: BTreeMap<(Target, Class), (u64, f64)>,
    /// The printk clock when sampled: seconds since boot on the monotonic clock.
    pub since_boot: f64,
    /// The wall clock when sampled (Unix seconds), to date the errors.
    pub wall: f64,
}

pub struct Kmsg {
    interval: Duration,
    counts: Arc<Mutex<Counts>>,
    reader: Option<(PathBuf, Paths)>,
    /// What the last sample was made from: (records, lost, failed), so a quiet log costs no run;
    /// and the wall clock's boot time then, so a jump of the wall clock does.
    sampled: Option<((u64, u64, bool), f64)>,
}

impl Kmsg {
    pub fn new(paths: Paths, interval: Duration) -> Self {
        let path = paths.dev.join("kmsg");
        Kmsg { interval, counts: Arc::default(), reader: Some((path, paths)), sampled: None }
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
        let sampled = Some(((c.records, c.lost, c.failure.is_some()), wall_boot()));
        if let Some(e) = &c.failure {
            let e = e.clone();
            drop(c);
            self.sampled = sampled;
            return Err(e);
        }
        // Error times are kept on the printk clock (seconds since boot), so ages come from the
        // monotonic clock and a jump of the wall clock moves the exported timestamps, not the ages.
        let sample = Sample {
            records: c.records,
            lost: c.lost,
            errors: c.errors.clone(),
            since_boot: monotonic_seconds(),
            wall: wall_seconds(),
        };
        drop(c);
        self.sampled = sampled;
        Ok(Collected::new(AnySample::Kmsg(sample), Vec::new()))
    }

    fn unchanged(&self) -> bool {
        let c = self.counts();
        self.sampled.is_some_and(|(counts, boot)| {
            counts == (c.records, c.lost, c.failure.is_some()) && (wall_boot() - boot).abs() < 1.0
        })
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

fn wall_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// When the machine booted, by the wall clock now: moves when the wall clock jumps.
fn wall_boot() -> f64 {
    wall_seconds() - monotonic_seconds()
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
                if lock(counts).last_seq.is_some_and(|last| r.seq <= last) {
                    continue; // seen before a reopen
                }
                let hit = resolver.judge(&r);
                let mut c = lock(counts);
                if let Some(last) = c.last_seq {
                    c.lost += r.seq - last - 1;
                }
                c.last_seq = Some(r.seq);
                c.records += 1;
                if let Some(hit) = hit
                    && c.add(hit, r.timestamp_us)
                {
                    prune(&mut c.errors, |t| resolver.exists(t));
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

impl Counts {
    /// Counts one error; true when its subject is new (so the series may need pruning).
    fn add(&mut self, (target, class): (Target, Class), timestamp_us: u64) -> bool {
        let at = timestamp_us as f64 / 1e6;
        let new = !self.errors.keys().any(|(t, _)| *t == target);
        let entry = self.errors.entry((target, class)).or_insert((0, at));
        entry.0 += 1;
        entry.1 = entry.1.max(at);
        new
    }
}

/// Drops the series of departed subjects beyond the [`MAX_DEPARTED`] most recent.
fn prune(errors: &mut BTreeMap<(Target, Class), (u64, f64)>, exists: impl Fn(&Target) -> bool) {
    let mut last: HashMap<&Target, f64> = HashMap::new();
    for ((t, _), (_, at)) in errors.iter() {
        let e = last.entry(t).or_insert(*at);
        *e = e.max(*at);
    }
    let mut departed: Vec<(f64, Target)> =
        last.into_iter().filter(|(t, _)| !exists(t)).map(|(t, at)| (at, t.clone())).collect();
    if departed.len() <= MAX_DEPARTED {
        return;
    }
    departed.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let dropped: std::collections::HashSet<Target> =
        departed.into_iter().skip(MAX_DEPARTED).map(|(_, t)| t).collect();
    errors.retain(|(t, _), _| !dropped.contains(t));
}

/// Blocks until the kernel log has a new record: a quiet log costs no wake-ups.
fn wait_readable(file: &File) {
    let mut fd = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `fd` is one valid pollfd for a descriptor `file` keeps open during the call.
    unsafe { libc::poll(&mut fd, 1, -1) };
}

/// Maps what a line names to a whole block device, an NVMe controller, or a subject that is not a
/// disk, through sysfs. Answers are cached for a minute: devices come and go.
struct Resolver {
    paths: Paths,
    cache: HashMap<String, Option<Target>>,
    cleared: Instant,
    /// The last SCSI failure counted, and the record it was in: its sense data follows it.
    last_scsi: Option<(Target, Class, u64)>,
}

/// Sense data lines come right after the failed command's line (the same thread prints them).
const SCSI_DETAIL_RECORDS: u64 = 4;

impl Resolver {
    fn new(paths: Paths) -> Self {
        Resolver { paths, cache: HashMap::new(), cleared: Instant::now(), last_scsi: None }
    }

    /// The subject and class a record counts under, if any. The sense data of a SCSI command
    /// that failed just before, on the same disk, counts with it (as `scsi_sense` when the command
    /// failed without a key of its own).
    fn judge(&mut self, r: &record::Record) -> Option<(Target, Class)> {
        let Some((class, subject)) = classify::classify(&r.message) else {
            let subject = classify::scsi_detail(&r.message)?;
            let (target, class, seq) = self.last_scsi.as_mut()?;
            if r.seq > *seq + SCSI_DETAIL_RECORDS {
                return None;
            }
            let (target, class) = (target.clone(), *class);
            if self.resolve(class, subject, r.device.as_deref()).as_ref() != Some(&target) {
                return None;
            }
            let class = if class == Class::ScsiCommand || class == Class::ScsiHost {
                Class::ScsiSense
            } else {
                class
            };
            self.last_scsi = Some((target.clone(), class, r.seq));
            return Some((target, class));
        };
        let target = self.resolve(class, subject, r.device.as_deref())?;
        let scsi =
            [Class::ScsiCommand, Class::ScsiHost, Class::ScsiMedium, Class::ScsiHardware, Class::ScsiSense];
        self.last_scsi = scsi.contains(&class).then(|| (target.clone(), class, r.seq));
        Some((target, class))
    }

    /// Where a line of `class` naming `subject` counts. None only for a link going down on an ATA
    /// port with no disk: empty ports log that at every boot.
    fn resolve(&mut self, class: Class, subject: Subject, dict_device: Option<&str>) -> Option<Target> {
        if self.cleared.elapsed() > Duration::from_secs(60) {
            self.cache.clear();
            self.cleared = Instant::now();
        }
        let key = format!("{subject:?}|{dict_device:?}");
        let target = match self.cache.get(&key) {
            Some(v) => v.clone(),
            None => {
                let v = self.lookup(subject, dict_device);
                if self.cache.len() < 4096 {
                    self.cache.insert(key, v.clone());
                }
                v
            }
        };
        match (target, subject) {
            (Some(t), _) => Some(t),
            (None, Subject::AtaPort(_)) if class == Class::AtaLinkDown => None,
            (None, Subject::AtaPort(port)) => Some(Target::new(Kind::AtaPort, format!("ata{port}"))),
            (None, _) => Some(Target::new(Kind::None, "")),
        }
    }

    /// Whether a subject still exists, for bounding the series.
    fn exists(&self, t: &Target) -> bool {
        let sys = |rel: String| self.paths.sys(&rel).exists();
        match t.kind {
            Kind::Disk => sys(format!("block/{}", t.name)) || sys(format!("class/nvme/{}", t.name)),
            Kind::Md | Kind::Dm => sys(format!("block/{}", t.name)),
            Kind::AtaPort => sys(format!("class/ata_port/{}", t.name)),
            Kind::Scsi => {
                sys(format!("bus/scsi/devices/{}", t.name)) || sys(format!("class/scsi_host/{}", t.name))
            }
            Kind::Pci => sys(format!("bus/pci/devices/{}", t.name)),
            Kind::Iscsi => sys(format!("class/iscsi_session/{}", t.name)),
            Kind::Nfs | Kind::Unknown => false,
            Kind::None => true,
        }
    }

    fn lookup(&self, subject: Subject, dict_device: Option<&str>) -> Option<Target> {
        let sys = |rel: &str| self.paths.sys(rel);
        match subject {
            Subject::Block(name) => Some(self.block(name)),
            Subject::DevNum(major, minor) => Some(
                self.by_number(&format!("{major}:{minor}"))
                    .unwrap_or_else(|| Target::new(Kind::Unknown, format!("{major}:{minor}"))),
            ),
            Subject::NvmeController(name) => Some(Target::disk(name)),
            Subject::AtaPort(port) => self.disk_under(&format!("/ata{port}/")).map(|d| Target::disk(&d)),
            Subject::Scsi(hctl) => Some(self.scsi(hctl)),
            Subject::ScsiNumbers([h, c, t, l]) => Some(self.scsi(&format!("{h}:{c}:{t}:{l}"))),
            Subject::ScsiHost(host) => {
                let prefix = format!("{host}:");
                let mut addrs: Vec<String> = std::fs::read_dir(sys("bus/scsi/devices"))
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|a| a.starts_with(&prefix))
                    .collect();
                addrs.sort();
                let disk =
                    addrs.iter().find_map(|a| first_entry(&sys(&format!("bus/scsi/devices/{a}/block"))));
                Some(
                    disk.map_or_else(|| Target::new(Kind::Scsi, format!("host{host}")), |d| Target::disk(&d)),
                )
            }
            Subject::Pci(bdf) => Some(self.pci(bdf)),
            Subject::Md("") => Some(Target::new(Kind::Md, self.only_md().unwrap_or_default())),
            Subject::Md(name) => Some(Target::new(Kind::Md, name)),
            Subject::Nfs(server) => Some(Target::new(Kind::Nfs, server)),
            Subject::Iscsi(n) => Some(Target::new(Kind::Iscsi, format!("session{n}"))),
            Subject::None => match dict_device? {
                d if d.starts_with('b') => self.by_number(&d[1..]),
                _ => None,
            },
        }
    }

    /// The first disk (by name) whose sysfs device path contains `needle` (`/ata3/`, `/2-1/`).
    fn disk_under(&self, needle: &str) -> Option<String> {
        let mut disks: Vec<String> = std::fs::read_dir(self.paths.sys("block"))
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains(needle)))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        disks.sort();
        disks.into_iter().next()
    }

    /// The disk at a SCSI address, else the address.
    fn scsi(&self, hctl: &str) -> Target {
        first_entry(&self.paths.sys(format!("bus/scsi/devices/{hctl}/block")))
            .map_or_else(|| Target::new(Kind::Scsi, hctl), |d| Target::disk(&d))
    }

    /// The one md array of the host, for old lines that do not name it.
    fn only_md(&self) -> Option<String> {
        let mut md = std::fs::read_dir(self.paths.sys("block"))
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("md") && n[2..].bytes().all(|b| b.is_ascii_digit()));
        let one = md.next()?;
        md.next().is_none().then_some(one)
    }

    /// A block device by `major:minor`.
    fn by_number(&self, num: &str) -> Option<Target> {
        let target = std::fs::read_link(self.paths.sys(format!("dev/block/{num}"))).ok()?;
        Some(self.block(&target.file_name()?.to_string_lossy()))
    }

    /// The NVMe controller of a PCI function, or of the one function behind a port; else the
    /// function itself.
    fn pci(&self, bdf: &str) -> Target {
        let dev = self.paths.sys(format!("bus/pci/devices/{bdf}"));
        if let Some(c) = first_entry(&dev.join("nvme")) {
            return Target::disk(&c);
        }
        let below: Vec<String> = std::fs::read_dir(&dev)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| is_bdf_name(n))
            .filter_map(|n| first_entry(&dev.join(n).join("nvme")))
            .collect();
        match below.as_slice() {
            [one] => Target::disk(one),
            _ => Target::new(Kind::Pci, bdf),
        }
    }

    /// A block device line's subject: the whole disk, or the md/dm device.
    fn block(&self, name: &str) -> Target {
        if let Some(mapped) = name.strip_prefix("mapper/") {
            return Target::new(Kind::Dm, self.dm_by_name(mapped).unwrap_or_else(|| name.to_owned()));
        }
        let name = multipath_head(name);
        let disk = self.whole_disk(&name);
        let kind = if disk.starts_with("dm-") {
            Kind::Dm
        } else if disk.starts_with("md") && disk[2..].bytes().all(|b| b.is_ascii_digit()) {
            Kind::Md
        } else {
            Kind::Disk
        };
        Target::new(kind, disk)
    }

    /// `dm-N` of a device-mapper name (`/dev/mapper/<name>`).
    fn dm_by_name(&self, name: &str) -> Option<String> {
        std::fs::read_dir(self.paths.sys("block")).ok()?.filter_map(|e| e.ok()).find_map(|e| {
            let dev = e.file_name().into_string().ok()?;
            let found = std::fs::read_to_string(e.path().join("dm/name")).ok()?;
            (found.trim() == name).then_some(dev)
        })
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

fn is_bdf_name(s: &str) -> bool {
    s.len() == 12 && s.as_bytes()[4] == b':' && s.as_bytes()[7] == b':' && s.as_bytes()[10] == b'.'
}

/// NVMe native multipath: the path device `nvme<subsys>c<ctrl>n<ns>[p<part>]` is the namespace
/// `nvme<subsys>n<ns>[p<part>]` to the operator.
pub fn multipath_head(name: &str) -> std::borrow::Cow<'_, str> {
    let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if let Some(rest) = name.strip_prefix("nvme") {
        let subsys = digits(rest);
        if subsys > 0
            && let Some(after_c) = rest[subsys..].strip_prefix('c')
        {
            let ctrl = digits(after_c);
            if ctrl > 0 && after_c[ctrl..].starts_with('n') {
                return format!("nvme{}{}", &rest[..subsys], &after_c[ctrl..]).into();
            }
        }
    }
    name.into()
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
    fn unchanged_until_a_record_arrives_or_the_log_fails() {
        let mut k = Kmsg { reader: None, ..Kmsg::new(Paths::default(), Duration::from_secs(1)) };
        k.counts().caught_up = true;
        assert!(!k.unchanged(), "never sampled");
        k.sample().unwrap();
        assert!(k.unchanged());
        k.counts().records += 1;
        assert!(!k.unchanged(), "a record arrived");
        k.sample().unwrap();
        assert!(k.unchanged());
        k.counts().failure = Some(CollectError { kind: ErrorKind::Io, message: "gone".into() });
        assert!(!k.unchanged(), "the log failed");
        assert!(k.sample().is_err());
        assert!(k.unchanged(), "still failing the same way");
    }

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

/// The synthetic host the real corpus is normalized onto.
#[cfg(test)]
#[path = "../../../tests/common/host_sysfs.rs"]
mod host_sysfs;

#[cfg(test)]
mod replay {
    //! The real corpus (tests/data/kmsg-real.tsv) through the reader's own attribution, on the
    //! synthetic host's sysfs: what the integration test does through the real /dev/kmsg.
    use super::*;

    use super::host_sysfs;

    /// The subject a corpus row's device column names. None: no subject (`-`).
    pub fn expected(device: &str) -> Option<Target> {
        let t = |k, n: &str| Some(Target::new(k, n));
        if device == "-" {
            return None;
        }
        if let Some(s) = device.strip_prefix("nfs:") {
            return t(Kind::Nfs, s);
        }
        if let Some(s) = device.strip_prefix("iscsi:") {
            let n = s.trim_start_matches("session").trim_start_matches("connection");
            return t(Kind::Iscsi, &format!("session{}", n.split(':').next().unwrap()));
        }
        if let Some(s) = device.strip_prefix("pci:") {
            return t(Kind::Pci, s);
        }
        if device.starts_with("dm-") {
            return t(Kind::Dm, device);
        }
        if device.starts_with("md") {
            return t(Kind::Md, device);
        }
        t(Kind::Disk, device)
    }

    pub struct Row {
        pub incident: String,
        pub verdict: String,
        pub device: String,
        pub line: String,
    }

    pub fn rows() -> Vec<Row> {
        include_str!("../../../tests/data/kmsg-real.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.splitn(5, '\t').collect();
                assert_eq!(f.len(), 5, "{l}");
                Row { incident: f[0].into(), verdict: f[2].into(), device: f[3].into(), line: f[4].into() }
            })
            .collect()
    }

    fn record(seq: u64, message: &str, device: Option<&str>) -> record::Record {
        record::Record {
            facility: 0,
            level: 3,
            seq,
            timestamp_us: seq * 1000,
            continuation: false,
            message: message.to_owned(),
            subsystem: None,
            device: device.map(str::to_owned),
        }
    }

    fn host() -> (tempfile::TempDir, Resolver) {
        let dir = tempfile::tempdir().unwrap();
        host_sysfs::build(dir.path());
        let resolver = Resolver::new(Paths { sysfs: dir.path().to_owned(), ..Paths::default() });
        (dir, resolver)
    }

    #[test]
    fn subjects_resolve_through_sysfs() {
        let (_dir, mut resolver) = host();
        let disk = |n: &str| Some(Target::disk(n));
        for (line, dict, want) in [
            // Native multipath: a path device is its namespace.
            (
                "nvme2c3n1: Read(0x2) @ LBA 8, 1 blocks, Host Pathing Error (sct 0x3 / sc 0x70)",
                None,
                disk("nvme2n1"),
            ),
            // AER through the root port: the one NVMe function below it.
            ("pcieport 0000:00:1d.0: AER: Corrected error received: 0000:02:00.0", None, disk("nvme1")),
            (
                "pcieport 0000:00:1d.0: PCIe Bus Error: severity=Corrected, type=Data Link Layer, (Transmitter ID)",
                None,
                disk("nvme1"),
            ),
            // A bridge with no NVMe below: the function itself.
            (
                "pcieport 0000:00:01.0: AER: Uncorrected (Non-Fatal) error received: 0000:00:01.0",
                None,
                Some(Target::new(Kind::Pci, "0000:00:01.0")),
            ),
            // Empty ports: a link down counts nothing, anything else on the port itself.
            ("ata5: SATA link down (SStatus 0 SControl 300)", None, None),
            ("ata6: COMRESET failed (errno=-16)", None, Some(Target::new(Kind::AtaPort, "ata6"))),
            ("ata3: SATA link down (SStatus 0 SControl 300)", None, disk("sdc")),
            // SCSI hosts, addresses and numbers; device numbers; dm by name and number.
            ("scsi host6: uas_eh_device_reset_handler FAILED err -19", None, disk("sde")),
            ("hpsa 0000:03:00.0: Abort request on C7:B0:T1:L0", None, disk("sdg")),
            ("SCSI error : <2 0 0 0> return code = 0x10000", None, disk("sdc")),
            ("device-mapper: multipath: 253:1: Failing path 8:16.", None, disk("sdb")),
            (
                "device-mapper: table: 253:0: crypt: unknown target type",
                None,
                Some(Target::new(Kind::Dm, "dm-0")),
            ),
            (
                "Buffer I/O error on dev dm-1, logical block 3, async page read",
                None,
                Some(Target::new(Kind::Dm, "dm-1")),
            ),
            ("EXT4-fs (nvme0n1p3): Remounting filesystem read-only", None, disk("nvme0n1")),
            ("raid1: Operation continuing on 1 devices.", None, Some(Target::new(Kind::Md, "md0"))),
            (
                " session2: session recovery timed out after 120 secs",
                None,
                Some(Target::new(Kind::Iscsi, "session2")),
            ),
            // The record's DEVICE= when the line names nothing itself; nothing without it.
            (
                "device-mapper: multipath: remaining active paths: 0",
                Some("b253:1"),
                Some(Target::new(Kind::Dm, "dm-1")),
            ),
            (
                "CPU0: Package temperature is above threshold, cpu clock is throttled (total events = 1)",
                None,
                Some(Target::new(Kind::None, "")),
            ),
        ] {
            let got = resolver.judge(&record(1, line, dict)).map(|(t, _)| t);
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn sense_data_counts_only_after_a_failed_command_on_the_same_disk() {
        let (_dir, mut resolver) = host();
        let mut seq = 0;
        let mut judge = |line: &str| {
            seq += 1;
            resolver.judge(&record(seq, line, None)).map(|(t, c)| format!("{} {}", t.name, c.as_str()))
        };
        // A probe's question at boot: nothing.
        for line in [
            "sd 6:0:0:0: [sde] Read Capacity(16) failed: Result: hostbyte=DID_OK driverbyte=DRIVER_SENSE",
            "sd 6:0:0:0: [sde] Sense Key : Illegal Request [current]",
            "sd 6:0:0:0: [sde] Add. Sense: Invalid command operation code",
        ] {
            assert_eq!(judge(line), None, "{line}");
        }
        // A failed read: its sense data counts with it; a CDB does not.
        let failed = [
            (
                "sd 0:0:0:0: [sda] tag#3 FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_SENSE cmd_age=0s",
                Some("sda scsi_command"),
            ),
            ("sd 0:0:0:0: [sda] tag#3 Sense Key : Illegal Request [current]", Some("sda scsi_sense")),
            (
                "sd 0:0:0:0: [sda] tag#3 Add. Sense: Logical block address out of range",
                Some("sda scsi_sense"),
            ),
            ("sd 0:0:0:0: [sda] tag#3 CDB: Read(10) 28 00 00 00 03 20 00 00 08 00", None),
            ("sd 0:0:0:0: [sda] tag#4 Sense Key : Medium Error [current]", Some("sda scsi_medium")),
            ("sd 0:0:0:0: [sda] tag#4 Add. Sense: Unrecovered read error", Some("sda scsi_medium")),
            // Another disk's sense data is not this failure's.
            ("sd 1:0:0:0: [sdb] Add. Sense: Unrecovered read error", None),
        ];
        for (line, want) in failed {
            assert_eq!(judge(line).as_deref(), want, "{line}");
        }
        // Too long after the failure: nothing.
        for _ in 0..SCSI_DETAIL_RECORDS {
            judge("e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex");
        }
        assert_eq!(judge("sd 0:0:0:0: [sda] Add. Sense: Unrecovered read error"), None);
    }

    #[test]
    fn departed_subjects_are_bounded() {
        let mut c = Counts::default();
        let exists = |t: &Target| t.name == "sda";
        for i in 0..40u64 {
            let t = Target::new(Kind::Nfs, format!("nas{i}"));
            if c.add((t, Class::NfsTimeout), i * 1_000_000) {
                prune(&mut c.errors, exists);
            }
            if c.add((Target::disk("sda"), Class::BlockIo), i * 1_000_000) {
                prune(&mut c.errors, exists);
            }
        }
        let kept: Vec<&str> = c.errors.keys().map(|(t, _)| t.name.as_str()).collect();
        assert_eq!(kept.len(), MAX_DEPARTED + 1, "{kept:?}");
        assert!(kept.contains(&"sda") && kept.contains(&"nas39") && !kept.contains(&"nas23"), "{kept:?}");
        assert_eq!(c.errors[&(Target::disk("sda"), Class::BlockIo)].0, 40, "existing devices keep counting");
    }

    #[test]
    fn path_devices_name_their_namespace() {
        for (path, head) in [
            ("nvme2c3n1", "nvme2n1"),
            ("nvme10c11n2p3", "nvme10n2p3"),
            ("nvme0n1", "nvme0n1"),
            ("nvmec1n1", "nvmec1n1"),
            ("nvme1c", "nvme1c"),
            ("sda", "sda"),
        ] {
            assert_eq!(multipath_head(path), head, "{path}");
        }
    }

    #[test]
    fn real_corpus_on_the_right_subjects() {
        let (_dir, mut resolver) = host();
        let rows = rows();
        let (mut seq, mut incident) = (0u64, String::new());
        let (mut fails, mut counted) = (0, 0);
        let mut incidents: BTreeMap<&str, bool> = BTreeMap::new();
        let mut wrong = Vec::new();
        let mut missed = Vec::new();
        for row in &rows {
            if row.incident != incident {
                incident.clone_from(&row.incident);
                seq += 1000;
            }
            seq += 1;
            let got = resolver.judge(&record(seq, &row.line, None));
            let want = expected(&row.device);
            match (row.verdict.as_str(), &got) {
                ("benign", Some(g)) => wrong.push(format!("benign counted as {g:?}: {}", row.line)),
                (_, Some((t, _))) if want.as_ref().is_some_and(|w| w != t) => {
                    wrong.push(format!("on {t:?}, not {want:?}: {}", row.line))
                }
                _ => {}
            }
            if row.verdict == "fail" {
                fails += 1;
                let ok = got.as_ref().is_some_and(|(t, _)| want.as_ref().is_none_or(|w| w == t));
                counted += usize::from(ok);
                *incidents.entry(&row.incident).or_default() |= ok;
                if !ok {
                    missed.push(format!("{} {}: {}", row.incident, row.device, row.line));
                }
            }
        }
        let seen = incidents.values().filter(|v| **v).count();
        eprintln!("failure lines {counted}/{fails}, incidents {seen}/{}", incidents.len());
        for m in &missed {
            eprintln!("missed {m}");
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(counted * 100 >= fails * 90, "{counted} of {fails} failure lines");
        assert!(seen * 100 >= incidents.len() * 95, "{seen} of {} incidents", incidents.len());
    }
}
