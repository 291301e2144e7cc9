//! Block I/O latency histograms per device and operation, from eBPF programs on the block request
//! tracepoints (`bpf/biolatency.bpf.c`, compiled by `scripts/build-bpf.sh` into the committed
//! `bpf/biolatency.bpf.o`, embedded here so a plain `cargo build` needs no clang).
//!
//! The programs are loaded once, when the collector is built, with aya: BTF-enabled tracepoints
//! (`tp_btf/block_rq_insert`, `block_rq_issue`, `block_rq_complete`) whose `struct request` field
//! offsets are CO-RE relocations resolved against the running kernel's BTF
//! (`<sysfs>/kernel/btf/vmlinux`). The load runs in a short-lived child process (`loader`), so
//! that parsing the BTF, tens of MB for a moment, never counts against the agent's memory; the
//! agent keeps only the descriptors of the maps and of the links that keep the programs attached.
//! The kernel side keeps, per `(dev_t, op)`, 29 counters and a sum:
//! slot `i < 28` counts requests that took at most 2^i µs (1 µs .. 134.2 s), slot 28 the rest.
//! Each run reads that map into a sample, device names from the `major:minor` links of
//! `<sysfs>/dev/block`.
//!
//! Loading needs CAP_BPF and CAP_PERFMON (or root) and a kernel with BTF. Without the privileges
//! every run fails (`storwatch_collector_success{collector="biolatency"} 0`, kind `permission`)
//! with one message naming them, logged once. A kernel without BTF is "not present here", like
//! missing hardware: one warning at start, runs that succeed with no histograms. Either way the
//! rest of the agent, the diskstats means included, works as before.

mod loader;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use aya::maps::{Array, HashMap, Map, MapData};
use aya::programs::BtfTracePoint;
use aya::programs::links::FdLink;
use aya::{Btf, EbpfLoader, Endianness, Pod};

use super::{Collected, DeviceFilter, Sample as AnySample, Source};
use crate::error::{CollectError, ErrorKind};
use crate::paths::Paths;

/// The compiled programs (see `scripts/build-bpf.sh`).
pub const OBJECT: &[u8] = include_bytes!("../../../bpf/biolatency.bpf.o");

/// Counters per histogram in the kernel: 28 finite buckets and one above the last.
pub const SLOTS: usize = 29;
/// Finite buckets: upper bounds 2^0 .. 2^27 µs.
pub const FINITE: usize = SLOTS - 1;

/// The upper bound (`le`) of slot `i < FINITE`, in seconds: 2^i µs.
pub fn upper_bound(i: usize) -> f64 {
    1e-6 * f64::from(1u32 << i)
}

/// The tracepoints the programs attach to; each program is named after its tracepoint.
const TRACEPOINTS: [&str; 3] = ["block_rq_insert", "block_rq_issue", "block_rq_complete"];

/// How long the loader process may take to answer (it takes well under a second).
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The operations, in the order of the kernel side's `enum op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Read,
    Write,
    Discard,
    Flush,
}

impl Op {
    pub fn from_raw(raw: u32) -> Option<Op> {
        [Op::Read, Op::Write, Op::Discard, Op::Flush].get(raw as usize).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Discard => "discard",
            Op::Flush => "flush",
        }
    }
}

/// One device's and operation's latencies since the programs were attached: `slots[i]` counts the
/// requests of slot `i` (not cumulative), `sum_ns` their total latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyHistogram {
    pub slots: [u64; SLOTS],
    pub sum_ns: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { slots: [0; SLOTS], sum_ns: 0 }
    }
}

impl LatencyHistogram {
    pub fn count(&self) -> u64 {
        self.slots.iter().fold(0u64, |a, &n| a.saturating_add(n))
    }

    /// The finite buckets as (upper bound in seconds, cumulative count).
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0u64;
        (0..FINITE)
            .map(|i| {
                total = total.saturating_add(self.slots[i]);
                (upper_bound(i), total)
            })
            .collect()
    }
}

/// Every histogram the kernel side holds, by (major, minor, op).
pub type Histograms = BTreeMap<(u32, u32, Op), LatencyHistogram>;

/// `struct hist_key` of the C source.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawKey {
    dev: u32,
    op: u32,
}

/// `struct hist` of the C source: `SLOT_ARRAY` (32) counters, of which the first [`SLOTS`] are used.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawHist {
    slots: [u64; 32],
    sum_ns: u64,
}

// SAFETY: both are `repr(C)` structs of plain integers with no padding, the layout of the C side.
unsafe impl Pod for RawKey {}
// SAFETY: as above.
unsafe impl Pod for RawHist {}

/// The kernel's internal `dev_t` (MINORBITS = 20), as the programs store it.
fn split_dev(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xf_ffff)
}

/// The loaded and attached programs and their maps. Dropping it detaches the programs.
pub struct Programs {
    hists: HashMap<MapData, RawKey, RawHist>,
    untracked: Array<MapData, u64>,
    /// The BPF links of the attached programs, one per tracepoint: each holds its program (and
    /// the program its maps) in the kernel, attached while the descriptor is open.
    _links: [OwnedFd; TRACEPOINTS.len()],
    map_bytes: u64,
}

impl std::fmt::Debug for Programs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Programs").field("map_bytes", &self.map_bytes).finish_non_exhaustive()
    }
}

/// Whether an error chain holds an EPERM/EACCES from the kernel.
fn is_permission(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::PermissionDenied
                || matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)))
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The whole chain of an error in one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cur = e.source();
    }
    text
}

fn load_error(what: &str, err: &(dyn std::error::Error + 'static)) -> CollectError {
    if is_permission(err) {
        CollectError {
            kind: ErrorKind::Permission,
            message: format!(
                "CAP_BPF and CAP_PERFMON (or root): needed for the block I/O latency histograms: {what}: {}",
                chain(err)
            ),
        }
    } else {
        CollectError { kind: ErrorKind::Io, message: format!("{what}: {}", chain(err)) }
    }
}

/// A numeric field of a BPF object's fdinfo (kernel/bpf/syscall.c `bpf_map_show_fdinfo`,
/// `bpf_link_show_fdinfo`), by name:
///
/// ```text
/// map_type:  1
/// memlock:   1180416  (tab-separated)
/// ```
fn fdinfo_field(fdinfo: &[u8], name: &str) -> Option<u64> {
    let text = std::str::from_utf8(fdinfo).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).and_then(|v| v.trim().parse().ok())
    })
}

/// The `memlock:` field of a BPF map's fdinfo.
pub fn parse_memlock(fdinfo: &[u8]) -> Option<u64> {
    fdinfo_field(fdinfo, "memlock")
}

/// memlock of a BPF map fd, from `/proc/self/fdinfo` (what the kernel charges for it); 0 unknown.
fn memlock(fd: RawFd) -> u64 {
    std::fs::read(format!("/proc/self/fdinfo/{fd}")).ok().and_then(|b| parse_memlock(&b)).unwrap_or(0)
}

/// A descriptor of `link` (of program `name`) of its own. aya keeps an `FdLink`'s descriptor to
/// itself, so this finds it among the process's: the `bpf_link` whose fdinfo has the link's id
/// (`link_id:`, which no other kind of BPF object's fdinfo has), and duplicates it. Runs in the
/// loader process, where no other thread opens or closes descriptors.
fn link_fd(link: &FdLink, name: &str) -> Result<OwnedFd, CollectError> {
    let what = format!("attaching program {name}: its link");
    let id = link.info().map_err(|e| load_error(&what, &e))?.id();
    let dir = Path::new("/proc/self/fd");
    let entries = std::fs::read_dir(dir).map_err(|e| load_error(&what, &e))?;
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else { continue };
        let is_link = std::fs::read_link(entry.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:bpf_link");
        if is_link
            && std::fs::read(format!("/proc/self/fdinfo/{fd}"))
                .is_ok_and(|b| fdinfo_field(&b, "link_id") == Some(u64::from(id)))
        {
            // SAFETY: `fd` is open: it is `link`'s own (the same link id; no earlier descriptor
            // can have it, the link is new), and `link` outlives this borrow.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            return fd.try_clone_to_owned().map_err(|e| load_error(&what, &e));
        }
    }
    Err(CollectError { kind: ErrorKind::Io, message: format!("{what} {id} is not in {}", dir.display()) })
}

/// What the loader process does (see `loader`): parses the BTF, loads the object, loads and
/// attaches its three programs. Hands back the maps `hists` and `untracked`, the programs' links
/// (in that order) and the memlock of the object's maps.
fn load_and_attach(object: &[u8], btf_path: &Path) -> Result<loader::Handoff, CollectError> {
    let btf = Btf::parse_file(btf_path, Endianness::default())
        .map_err(|e| load_error(&format!("reading BTF from {}", btf_path.display()), &e))?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .load(object)
        .map_err(|e| load_error("loading the BPF object", &e))?;
    let mut links = Vec::with_capacity(TRACEPOINTS.len());
    for name in TRACEPOINTS {
        let program = ebpf.program_mut(name).ok_or_else(|| CollectError {
            kind: ErrorKind::Internal,
            message: format!("the BPF object has no program {name}"),
        })?;
        let tp: &mut BtfTracePoint =
            program.try_into().map_err(|e| load_error(&format!("program {name}"), &e))?;
        tp.load(name, &btf).map_err(|e| load_error(&format!("loading program {name}"), &e))?;
        let id = tp.attach().map_err(|e| load_error(&format!("attaching program {name}"), &e))?;
        let link = tp.take_link(id).map_err(|e| load_error(&format!("attaching program {name}"), &e))?;
        links.push(link_fd(&FdLink::from(link), name)?);
    }
    let map_bytes = ebpf
        .maps()
        .filter_map(|(_, m)| match m {
            Map::HashMap(d) | Map::Array(d) => Some(memlock(d.fd().as_fd().as_raw_fd())),
            _ => None,
        })
        .sum();
    let mut fds = Vec::with_capacity(2 + links.len());
    for name in ["hists", "untracked"] {
        let fd = match ebpf.map(name) {
            Some(Map::HashMap(d) | Map::Array(d)) => {
                d.fd().as_fd().try_clone_to_owned().map_err(|e| load_error(&format!("map {name}"), &e))?
            }
            Some(_) => {
                return Err(CollectError {
                    kind: ErrorKind::Internal,
                    message: format!("the BPF object's map {name} is neither a hash map nor an array"),
                });
            }
            None => {
                return Err(CollectError {
                    kind: ErrorKind::Internal,
                    message: format!("the BPF object has no map {name}"),
                });
            }
        };
        fds.push(fd);
    }
    fds.extend(links);
    Ok(loader::Handoff { fds, value: map_bytes })
}

impl Programs {
    /// Loads `object` with the BTF at `btf_path` and attaches its three programs, in a loader
    /// process (see `loader`). `Ok(None)` when the kernel has no BTF there.
    pub fn load(object: &[u8], btf_path: &Path) -> Result<Option<Programs>, CollectError> {
        if !btf_path.exists() {
            return Ok(None);
        }
        let handoff = loader::run(LOAD_TIMEOUT, || load_and_attach(object, btf_path))?;
        let count = handoff.fds.len();
        let Ok([hists, untracked, links @ ..]) = <[OwnedFd; 2 + TRACEPOINTS.len()]>::try_from(handoff.fds)
        else {
            return Err(CollectError {
                kind: ErrorKind::Io,
                message: format!(
                    "the BPF loader process handed back {count} descriptors, not {}",
                    2 + TRACEPOINTS.len()
                ),
            });
        };
        let map = |fd: OwnedFd, name: &str| {
            MapData::from_fd(fd)
                .and_then(Map::from_map_data)
                .map_err(|e| load_error(&format!("map {name}"), &e))
        };
        let hists = HashMap::try_from(map(hists, "hists")?).map_err(|e| load_error("map hists", &e))?;
        let untracked =
            Array::try_from(map(untracked, "untracked")?).map_err(|e| load_error("map untracked", &e))?;
        Ok(Some(Programs { hists, untracked, _links: links, map_bytes: handoff.value }))
    }

    /// The histograms as they stand now.
    pub fn read(&self) -> Result<Histograms, CollectError> {
        let mut out = Histograms::new();
        for entry in self.hists.iter() {
            let (key, value) = entry.map_err(|e| load_error("reading map hists", &e))?;
            let Some(op) = Op::from_raw(key.op) else { continue };
            let (major, minor) = split_dev(key.dev);
            let mut slots = [0u64; SLOTS];
            slots.copy_from_slice(&value.slots[..SLOTS]);
            out.insert((major, minor, op), LatencyHistogram { slots, sum_ns: value.sum_ns });
        }
        Ok(out)
    }

    /// Requests not timed because the table of requests in flight was full.
    pub fn untracked(&self) -> u64 {
        self.untracked.get(&0, 0).unwrap_or(0)
    }

    /// Kernel memory charged to the maps (their memlock), fixed at load: all are preallocated.
    pub fn map_bytes(&self) -> u64 {
        self.map_bytes
    }
}

/// One device's and operation's histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub device: String,
    pub major: u32,
    pub minor: u32,
    pub op: Op,
    pub hist: LatencyHistogram,
}

/// One read of the maps. Empty, with `loaded` false, when the kernel has no BTF: nothing to
/// report and nothing wrong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub loaded: bool,
    /// By device name and operation.
    pub histograms: Vec<Histogram>,
    /// Requests not timed because the table of requests in flight was full.
    pub untracked: u64,
    /// Kernel memory charged to the maps.
    pub map_bytes: u64,
}

pub struct Biolatency {
    paths: Paths,
    filter: DeviceFilter,
    interval: Duration,
    programs: Option<Programs>,
    /// Why the programs could not be loaded, returned by every run.
    failed: Option<CollectError>,
}

/// What a kernel without BTF gets, once.
pub fn no_btf_message(btf_path: &Path) -> String {
    format!(
        "block I/O latency histograms are off: they need kernel BTF, and {} does not exist (a kernel built with CONFIG_DEBUG_INFO_BTF=y has it); the diskstats means are unaffected",
        btf_path.display()
    )
}

impl Biolatency {
    /// Loads and attaches the programs now; a failure is kept and reported by every run.
    pub fn new(paths: Paths, filter: DeviceFilter, interval: Duration) -> Self {
        let btf = paths.sys("kernel/btf/vmlinux");
        let (programs, failed) = match Programs::load(OBJECT, &btf) {
            Ok(Some(p)) => (Some(p), None),
            Ok(None) => {
                tracing::warn!(message = no_btf_message(&btf), collector = "biolatency");
                (None, None)
            }
            Err(e) => (None, Some(e)),
        };
        Biolatency { paths, filter, interval, programs, failed }
    }

    /// The histograms of the devices with a name that pass the filter, sorted by name and op.
    fn read(&self, p: &Programs) -> Result<Sample, CollectError> {
        let hists = p.read()?;
        // A device gone since its requests completed has no link any more and is left out.
        let mut names: BTreeMap<(u32, u32), Option<String>> = BTreeMap::new();
        let mut histograms = Vec::new();
        for ((major, minor), op, hist) in hists.into_iter().map(|((a, b, op), h)| ((a, b), op, h)) {
            let name = names.entry((major, minor)).or_insert_with(|| {
                let link = std::fs::read_link(self.paths.sys(format!("dev/block/{major}:{minor}"))).ok()?;
                Some(link.file_name()?.to_string_lossy().into_owned())
            });
            if let Some(device) = name.as_ref().filter(|n| self.filter.matches(n)) {
                histograms.push(Histogram { device: device.clone(), major, minor, op, hist });
            }
        }
        histograms.sort_by(|a, b| (&a.device, a.op).cmp(&(&b.device, b.op)));
        Ok(Sample { loaded: true, histograms, untracked: p.untracked(), map_bytes: p.map_bytes() })
    }
}

impl Source for Biolatency {
    fn name(&self) -> &'static str {
        "biolatency"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let sample = match &self.programs {
            Some(p) => self.read(p)?,
            None => Sample::default(),
        };
        Ok(Collected::new(AnySample::Biolatency(sample), Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_devices() {
        assert_eq!(upper_bound(0), 0.000001);
        assert_eq!(upper_bound(12), 0.004096);
        assert_eq!(upper_bound(27), 134.217728);
        assert_eq!(split_dev((259 << 20) | 3), (259, 3));
        assert_eq!(Op::from_raw(3), Some(Op::Flush));
        assert_eq!(Op::from_raw(4), None);
        let mut h = LatencyHistogram::default();
        h.slots[0] = 1;
        h.slots[3] = 2;
        h.slots[28] = 4;
        assert_eq!(h.count(), 7);
        let c = h.cumulative();
        assert_eq!(c.len(), 28);
        assert_eq!((c[0], c[2], c[3], c[27]), ((0.000001, 1), (0.000004, 1), (0.000008, 3), (134.217728, 3)));
    }

    #[test]
    fn fdinfo_memlock() {
        let fdinfo =
            b"pos:\t0\nflags:\t02000002\nmap_type:\t1\nkey_size:\t8\nmemlock:\t1180416\nmap_id:\t7\n";
        assert_eq!(parse_memlock(fdinfo), Some(1180416));
        assert_eq!(parse_memlock(b"memlock: x\n"), None);
        assert_eq!(parse_memlock(b"\xff\xfe"), None);
        // A link's (6.18): the id is `link_id`, not `prog_id`.
        let fdinfo = b"pos:\t0\nflags:\t02000000\nmnt_id:\t16\nino:\t1061\nlink_type:\traw_tracepoint\nlink_id:\t12\nprog_tag:\t0123456789abcdef\nprog_id:\t40\n";
        assert_eq!(fdinfo_field(fdinfo, "link_id"), Some(12));
        assert_eq!(fdinfo_field(fdinfo, "prog_id"), Some(40));
        assert_eq!(fdinfo_field(fdinfo, "link"), None);
    }

    proptest::proptest! {
        #[test]
        fn memlock_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_memlock(&bytes);
        }

        /// Whatever the kernel's map holds: no panic, a quantile within the buckets' range.
        #[test]
        fn histogram_values_never_panic(
            a in proptest::collection::vec(proptest::prelude::any::<u64>(), SLOTS),
            b in proptest::collection::vec(proptest::prelude::any::<u64>(), SLOTS),
            sums in (proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>()),
            dev in proptest::prelude::any::<u32>(),
            op in proptest::prelude::any::<u32>(),
        ) {
            let mut h = [LatencyHistogram::default(), LatencyHistogram::default()];
            h[0].slots.copy_from_slice(&a);
            h[1].slots.copy_from_slice(&b);
            (h[0].sum_ns, h[1].sum_ns) = sums;
            let _ = (split_dev(dev), Op::from_raw(op), h[0].cumulative());
            for w in [crate::model::derive::histogram_delta(Some(&h[0]), &h[1]), Some(h[1])].into_iter().flatten() {
                if let Some(q) = crate::model::derive::histogram_quantile(0.99, &w) {
                    proptest::prop_assert!((0.0..=upper_bound(FINITE - 1)).contains(&q), "{}", q);
                }
            }
        }
    }
}
