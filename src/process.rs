//! The agent's own process: the `process_*` series every official Prometheus client exports
//! (client_golang's process collector names and computes them so), read from `/proc/self` when
//! a scrape asks, as those clients do. Always the agent's own `/proc`, not `--path.procfs`: the
//! series are about this process, wherever the host's procfs is mounted.
//!
//! The parsers are pure functions of the files' text and never panic on odd input.

use std::path::Path;

use crate::metrics::Family;

/// The fields of `/proc/<pid>/stat` the series need (proc(5) numbering in the comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// (14) user-mode CPU time, in clock ticks.
    pub utime: u64,
    /// (15) kernel-mode CPU time, in clock ticks.
    pub stime: u64,
    /// (20) number of threads.
    pub num_threads: u64,
    /// (22) start time after boot, in clock ticks.
    pub starttime: u64,
    /// (23) virtual memory size, in bytes.
    pub vsize: u64,
    /// (24) resident set size, in pages.
    pub rss: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (2) is in parentheses and may itself hold spaces
/// and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (state).
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n.checked_sub(3)?)?.parse::<u64>().ok();
    // RSS is signed in the kernel's format string; a negative one is nonsense, read as absent.
    let rss = fields.get(24 - 3)?.parse::<i64>().ok().and_then(|r| u64::try_from(r).ok())?;
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        num_threads: field(20)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The soft limit of one resource of `/proc/<pid>/limits` (`"Max open files"`), `unlimited` as
/// u64::MAX (as client_golang's procfs reads it, so the exposition matches theirs).
pub fn parse_limit(text: &str, resource: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(resource))?;
    let soft = line[resource.len()..].split_ascii_whitespace().next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// What the series are computed from: the files' text, each `None` when it could not be read,
/// and the system's constants.
#[derive(Debug, Default)]
pub struct Reading {
    pub stat: Option<String>,
    pub proc_stat: Option<String>,
    pub limits: Option<String>,
    pub open_fds: Option<u64>,
    pub clock_ticks: u64,
    pub page_size: u64,
}

/// Reads the files under `proc` (`/proc` in the agent) for `self`.
pub fn read(proc: &Path) -> Reading {
    let text = |p: &Path| std::fs::read_to_string(p).ok();
    let me = proc.join("self");
    // The directory listing holds the descriptor that reads it, as client_golang counts it.
    let open_fds = std::fs::read_dir(me.join("fd")).ok().map(|d| d.count() as u64);
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    Reading {
        stat: text(&me.join("stat")),
        proc_stat: text(&proc.join("stat")),
        limits: text(&me.join("limits")),
        open_fds,
        clock_ticks: u64::try_from(ticks).unwrap_or(100),
        page_size: u64::try_from(page).unwrap_or(4096),
    }
}

/// The `process_*` families of a reading; a series whose file could not be read or parsed is
/// left out rather than reported as 0.
pub fn families(r: &Reading) -> Vec<Family> {
    let stat = r.stat.as_deref().and_then(parse_stat);
    let limits = r.limits.as_deref();
    let ticks = r.clock_ticks.max(1) as f64;
    let mut out = Vec::new();
    let mut one = |family: Family, value: Option<f64>| {
        if let Some(v) = value {
            out.push(family.with_value(v));
        }
    };
    one(
        Family::counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."),
        stat.map(|s| s.utime.saturating_add(s.stime) as f64 / ticks),
    );
    one(Family::gauge("process_open_fds", "Number of open file descriptors."), r.open_fds.map(|n| n as f64));
    one(
        Family::gauge("process_max_fds", "Maximum number of open file descriptors."),
        limits.and_then(|l| parse_limit(l, "Max open files")).map(|n| n as f64),
    );
    one(
        Family::gauge("process_virtual_memory_bytes", "Virtual memory size in bytes."),
        stat.map(|s| s.vsize as f64),
    );
    one(
        Family::gauge(
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
        ),
        limits.and_then(|l| parse_limit(l, "Max address space")).map(|n| n as f64),
    );
    one(
        Family::gauge("process_resident_memory_bytes", "Resident memory size in bytes."),
        stat.map(|s| s.rss.saturating_mul(r.page_size) as f64),
    );
    let btime = r.proc_stat.as_deref().and_then(parse_btime);
    one(
        Family::gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds."),
        stat.zip(btime).map(|(s, b)| b as f64 + s.starttime as f64 / ticks),
    );
    one(
        Family::gauge("process_threads", "Number of OS threads in the process."),
        stat.map(|s| s.num_threads as f64),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Format, encode};
    use proptest::prelude::*;

    // A real line of this machine's /proc/self/stat, with a command name that has a space and
    // parentheses in it.
    const STAT: &str = "4242 (sto (w) atch) S 1 4242 4242 0 -1 4194560 1650 0 0 0 37 12 0 0 20 0 7 0 \
                        123456 24576000 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17414 0 0 0 17 1 0 0 0 0 0\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
                          Max cpu time              unlimited            unlimited            seconds   \n\
                          Max open files            65536                524288               files     \n\
                          Max address space         unlimited            unlimited            bytes     \n";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(
            s,
            Stat { utime: 37, stime: 12, num_threads: 7, starttime: 123456, vsize: 24576000, rss: 2048 }
        );
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None, "truncated");
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn btime_and_limits() {
        assert_eq!(parse_btime("cpu  1 2 3\nintr 5\nbtime 1764770000\nprocesses 9\n"), Some(1764770000));
        assert_eq!(parse_btime("cpu 1\n"), None);
        assert_eq!(parse_limit(LIMITS, "Max open files"), Some(65536));
        assert_eq!(parse_limit(LIMITS, "Max address space"), Some(u64::MAX));
        assert_eq!(parse_limit(LIMITS, "Max locked memory"), None);
    }

    #[test]
    fn series_are_computed_as_client_golang_does() {
        let r = Reading {
            stat: Some(STAT.into()),
            proc_stat: Some("btime 1000\n".into()),
            limits: Some(LIMITS.into()),
            open_fds: Some(9),
            clock_ticks: 100,
            page_size: 4096,
        };
        let text = encode(Format::Text, &families(&r));
        for line in [
            "process_cpu_seconds_total 0.49\n",
            "process_open_fds 9\n",
            "process_max_fds 65536\n",
            "process_virtual_memory_bytes 24576000\n",
            "process_virtual_memory_max_bytes 18446744073709552000\n",
            "process_resident_memory_bytes 8388608\n",
            "process_start_time_seconds 2234.56\n",
            "process_threads 7\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Nothing readable: no series at all, rather than zeros.
        assert!(families(&Reading::default()).is_empty());
    }

    #[test]
    fn this_process_reads_whole() {
        let names: Vec<&str> = families(&read(Path::new("/proc"))).iter().map(|f| f.name).collect();
        assert_eq!(names.len(), 8, "{names:?}");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in ".{0,400}", resource in ".{0,20}") {
            let _ = parse_stat(&text);
            let _ = parse_btime(&text);
            let _ = parse_limit(&text, &resource);
        }

        #[test]
        fn any_stat_with_the_fields_parses(comm in "[^\n]{0,30}", nums in proptest::collection::vec(0u64..i64::MAX as u64, 50)) {
            let tail: Vec<String> = nums.iter().map(|n| n.to_string()).collect();
            let text = format!("1 ({comm}) S {}\n", tail.join(" "));
            let s = parse_stat(&text).unwrap();
            prop_assert_eq!(s.utime, nums[14 - 4]);
            prop_assert_eq!(s.vsize, nums[23 - 4]);
        }
    }
}
