//! The checks engine: every check of the spec (../shared/DESIGN.md, "The spec's thresholds") as a
//! function from observed values and its config to a [`CheckResult`], and the check families.
//!
//! Collectors call these with what they sampled; `storwatch check` and `/metrics` show the same
//! results. Each result is `storwatch_check_ok{check,subject}`, with the value judged and the
//! threshold beside it where they are numbers, and a per-check count of failing subjects.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{
    Checks, DeviceErrorsCheck, FilesystemCheck, KernelCheck, LatencyCheck, ResourcesCheck, SchedulerCheck,
    WritebackCheck,
};
use crate::derive::DiskRates;
use crate::metrics::Family;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub check: &'static str,
    pub subject: String,
    pub ok: bool,
    /// What was seen, for people (`20`, `bfq`, `6.1.0-18-amd64`).
    pub observed: String,
    /// What the rule wants, for people (`= 15`, `mq-deadline or none`, `< 5ms`).
    pub expected: String,
    /// The value judged in the check's base unit, where it is a number.
    pub value: Option<f64>,
    /// The threshold in the same unit, where there is one.
    pub threshold: Option<f64>,
}

/// Every check, in the order of the spec's table.
pub const ORDER: [&str; 6] =
    ["storage_latency", "io_scheduler", "writeback", "filesystem", "kernel", "resources"];

/// The names of the enabled checks, in the order of the spec's table.
pub fn enabled(cfg: &Checks) -> Vec<&'static str> {
    let on = [
        cfg.storage_latency.enabled,
        cfg.device_errors.enabled,
        cfg.io_scheduler.enabled,
        cfg.writeback.enabled,
        cfg.filesystem.enabled,
        cfg.kernel.enabled,
        cfg.resources.enabled,
    ];
    ORDER.into_iter().zip(on).filter_map(|(name, on)| on.then_some(name)).collect()
}

fn ms(seconds: f64) -> String {
    format!("{:.3}ms", seconds * 1000.0)
}

/// Storage latency: the mean read and write latency of a device over the window must stay below
/// the threshold (the manual's 5 ms for the NVMe/SATA SSD tier).
pub fn storage_latency(cfg: &LatencyCheck, device: &str, rates: &DiskRates) -> CheckResult {
    let value = rates.read.await_seconds.max(rates.write.await_seconds);
    let threshold = cfg.max.as_secs_f64();
    CheckResult {
        check: "storage_latency",
        subject: device.to_owned(),
        ok: value < threshold,
        observed: format!(
            "r_await {} w_await {}",
            ms(rates.read.await_seconds),
            ms(rates.write.await_seconds)
        ),
        expected: format!("< {}", humantime::format_duration(cfg.max)),
        value: Some(value),
        threshold: Some(threshold),
    }
}

/// Device errors, from the kernel log: no storage error on the device within the window.
/// `age` is the time since its last error, `class` that error's class.
pub fn device_errors_in_log(cfg: &DeviceErrorsCheck, device: &str, age: f64, class: &str) -> CheckResult {
    let window = cfg.window.as_secs_f64();
    CheckResult {
        check: "device_errors",
        subject: device.to_owned(),
        ok: age > window,
        observed: format!(
            "last kernel log error {} ago ({class})",
            humantime::format_duration(Duration::from_secs(age.max(0.0) as u64))
        ),
        expected: format!("none in the last {}", humantime::format_duration(cfg.window)),
        value: Some(age),
        threshold: Some(window),
    }
}

/// I/O scheduler: non-rotational devices use one of the allowed schedulers (mq-deadline or none,
/// the blk-mq deadline and noop). Rotational devices are reported and pass.
pub fn io_scheduler(cfg: &SchedulerCheck, device: &str, scheduler: &str, rotational: bool) -> CheckResult {
    let allowed = cfg.allowed.join(" or ");
    CheckResult {
        check: "io_scheduler",
        subject: device.to_owned(),
        ok: rotational || cfg.allowed.iter().any(|a| a == scheduler),
        observed: if rotational { format!("{scheduler} (rotational)") } else { scheduler.to_owned() },
        expected: if rotational { "any (rotational)".to_owned() } else { allowed },
        value: None,
        threshold: None,
    }
}

/// Writeback: `vm.dirty_ratio` and `vm.dirty_background_ratio` exactly as configured (15 and 5).
/// Values are percentages in the sysctl and ratios (0..1) in the metrics.
pub fn writeback(cfg: &WritebackCheck, dirty_ratio: u64, dirty_background_ratio: u64) -> Vec<CheckResult> {
    [
        ("vm.dirty_ratio", dirty_ratio, cfg.dirty_ratio),
        ("vm.dirty_background_ratio", dirty_background_ratio, cfg.dirty_background_ratio),
    ]
    .into_iter()
    .map(|(subject, seen, want)| CheckResult {
        check: "writeback",
        subject: subject.to_owned(),
        ok: seen == u64::from(want),
        observed: seen.to_string(),
        expected: format!("= {want}"),
        value: Some(seen as f64 / 100.0),
        threshold: Some(f64::from(want) / 100.0),
    })
    .collect()
}

/// File system: the filesystem holding a Docker path is one of the allowed types (xfs, ext4).
pub fn filesystem(cfg: &FilesystemCheck, path: &str, fstype: &str) -> CheckResult {
    CheckResult {
        check: "filesystem",
        subject: path.to_owned(),
        ok: cfg.allowed.iter().any(|a| a == fstype),
        observed: fstype.to_owned(),
        expected: cfg.allowed.join(" or "),
        value: None,
        threshold: None,
    }
}

/// The kernel's version code, as LINUX_VERSION_CODE: major << 16 | minor << 8 | min(patch, 255).
pub fn version_code((major, minor, patch): (u32, u32, u32)) -> f64 {
    f64::from(major) * 65536.0 + f64::from(minor.min(255)) * 256.0 + f64::from(patch.min(255))
}

/// Kernel: the running release is at least the configured one (5.4, the LTS the manual names).
/// `version` is None when the release string has no `major.minor`.
pub fn kernel(cfg: &KernelCheck, release: &str, version: Option<(u32, u32, u32)>) -> CheckResult {
    let (a, b, c) = cfg.min_version;
    CheckResult {
        check: "kernel",
        subject: "kernel".to_owned(),
        ok: version.is_some_and(|v| v >= cfg.min_version),
        observed: release.to_owned(),
        expected: format!(">= {a}.{b}.{c}"),
        value: version.map(version_code),
        threshold: Some(version_code(cfg.min_version)),
    }
}

/// Resources: at least the configured CPUs and memory (4 vCPU / 8 GiB); each judged when known.
pub fn resources(cfg: &ResourcesCheck, cpus: Option<u64>, memory_bytes: Option<u64>) -> Vec<CheckResult> {
    let gib = |b: u64| format!("{:.1}GiB", b as f64 / f64::from(1u32 << 30));
    let cpus = cpus.map(|cpus| CheckResult {
        check: "resources",
        subject: "cpus".to_owned(),
        ok: cpus >= u64::from(cfg.min_cpus),
        observed: cpus.to_string(),
        expected: format!(">= {}", cfg.min_cpus),
        value: Some(cpus as f64),
        threshold: Some(f64::from(cfg.min_cpus)),
    });
    let memory = memory_bytes.map(|m| CheckResult {
        check: "resources",
        subject: "memory".to_owned(),
        ok: m >= cfg.min_memory,
        observed: gib(m),
        expected: format!(">= {}", gib(cfg.min_memory)),
        value: Some(m as f64),
        threshold: Some(cfg.min_memory as f64),
    });
    cpus.into_iter().chain(memory).collect()
}

/// The check families for every result of every collector, in one place so each family appears
/// once in the exposition. `enabled` lists every enabled check, so a passing one shows 0 failing.
pub fn families<'a>(
    enabled: &[&'static str],
    results: impl IntoIterator<Item = &'a CheckResult>,
) -> Vec<Family> {
    let mut ok =
        Family::gauge("storwatch_check_ok", "1 when the subject complies with the check, 0 when not.");
    let mut value =
        Family::gauge("storwatch_check_observed", "The value the check judged, in the check's base unit.");
    let mut threshold = Family::gauge(
        "storwatch_check_threshold",
        "The threshold the check judged the subject against, in the check's base unit.",
    );
    let mut failing: BTreeMap<&str, u32> = enabled.iter().map(|c| (*c, 0)).collect();
    for r in results {
        let labels = [("check", r.check), ("subject", r.subject.as_str())];
        ok.push(labels, if r.ok { 1.0 } else { 0.0 });
        if let Some(v) = r.value {
            value.push(labels, v);
        }
        if let Some(t) = r.threshold {
            threshold.push(labels, t);
        }
        *failing.entry(r.check).or_default() += u32::from(!r.ok);
    }
    let mut summary = Family::gauge(
        "storwatch_checks_failing",
        "Subjects failing each enabled check on this host (0: compliant).",
    );
    for (check, n) in failing {
        summary.push([("check", check)], f64::from(n));
    }
    vec![ok, value, threshold, summary]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::OpRates;

    fn rates(read: f64, write: f64) -> DiskRates {
        let op = |a| OpRates { ops_per_second: 1.0, bytes_per_second: 1.0, await_seconds: a };
        DiskRates {
            read: op(read),
            write: op(write),
            discard: None,
            flush: None,
            utilization: 0.0,
            queue_depth: 0.0,
        }
    }

    #[test]
    fn latency_against_threshold() {
        let cfg = LatencyCheck { enabled: true, max: Duration::from_millis(5) };
        assert!(storage_latency(&cfg, "sda", &rates(0.001, 0.0049)).ok);
        let bad = storage_latency(&cfg, "sda", &rates(0.001, 0.005));
        assert!(!bad.ok);
        assert_eq!((bad.value, bad.threshold), (Some(0.005), Some(0.005)));
        assert_eq!(
            (bad.observed.as_str(), bad.expected.as_str()),
            ("r_await 1.000ms w_await 5.000ms", "< 5ms")
        );
        assert!(!storage_latency(&cfg, "sda", &rates(0.02, 0.0)).ok);
    }

    #[test]
    fn scheduler() {
        let cfg = SchedulerCheck::default();
        assert!(io_scheduler(&cfg, "sda", "bfq", true).ok, "rotational: reported, not a violation");
        assert!(!io_scheduler(&cfg, "sda", "bfq", false).ok);
        assert!(io_scheduler(&cfg, "nvme0n1", "none", false).ok);
        assert!(io_scheduler(&cfg, "nvme0n1", "mq-deadline", false).ok);
        assert!(!io_scheduler(&cfg, "nvme0n1", "kyber", false).ok);
    }

    #[test]
    fn writeback_kernel_resources_filesystem() {
        let w = writeback(&WritebackCheck::default(), 20, 5);
        assert!(!w[0].ok && w[1].ok);
        assert_eq!((w[0].value, w[0].threshold), (Some(0.2), Some(0.15)));
        let k = KernelCheck::default();
        assert!(kernel(&k, "5.4.0-150-generic", Some((5, 4, 0))).ok);
        assert!(kernel(&k, "6.1.0", Some((6, 1, 0))).ok);
        assert!(!kernel(&k, "4.19.0", Some((4, 19, 0))).ok);
        assert!(!kernel(&k, "garbage", None).ok);
        assert_eq!(version_code((5, 4, 0)), 328704.0);
        let r = resources(&ResourcesCheck::default(), Some(2), Some(24 << 30));
        assert!(!r[0].ok && r[1].ok);
        assert_eq!(r[1].observed, "24.0GiB");
        let r = resources(&ResourcesCheck::default(), None, Some(4 << 30));
        assert_eq!((r.len(), r[0].subject.as_str(), r[0].ok), (1, "memory", false));
        let fs = FilesystemCheck::default();
        assert!(filesystem(&fs, "/var/lib/docker", "xfs").ok);
        assert!(!filesystem(&fs, "/var/lib/docker", "btrfs").ok);
    }

    #[test]
    fn families_count_failing_per_check() {
        let cfg = LatencyCheck { enabled: true, max: Duration::from_millis(5) };
        let results =
            [storage_latency(&cfg, "sda", &rates(0.0, 0.0)), storage_latency(&cfg, "sdb", &rates(0.01, 0.0))];
        let f = families(&["storage_latency", "kernel"], &results);
        assert_eq!(f[0].samples.len(), 2);
        assert_eq!(f[0].samples[1].value, 0.0);
        assert_eq!(f[2].samples[0].value, 0.005);
        let failing: Vec<_> = f[3].samples.iter().map(|s| (s.labels[0].1.as_str(), s.value)).collect();
        assert_eq!(failing, [("kernel", 0.0), ("storage_latency", 1.0)]);
    }
}
