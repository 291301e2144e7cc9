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
    CapacityCheck, Checks, DeviceErrorsCheck, DockerEngineCheck, FilesystemCheck, KernelCheck, LatencyCheck,
    MountsCheck, NetworkBandwidthCheck, PacketLossCheck, ResourcesCheck, SchedulerCheck, WritebackCheck,
};
use crate::config::{NvmeHealthCheck, SataHealthCheck, ThermalCheck};
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
pub const ORDER: [&str; 15] = [
    "storage_latency",
    "device_errors",
    "nvme_health",
    "sata_health",
    "thermal",
    "io_scheduler",
    "writeback",
    "network_bandwidth",
    "packet_loss",
    "filesystem",
    "kernel",
    "docker_engine",
    "capacity",
    "mounts",
    "resources",
];

/// The names of the enabled checks, in the order of the spec's table.
pub fn enabled(cfg: &Checks) -> Vec<&'static str> {
    let on = [
        cfg.storage_latency.enabled,
        cfg.device_errors.enabled,
        cfg.nvme_health.enabled,
        cfg.sata_health.enabled,
        cfg.thermal.enabled,
        cfg.io_scheduler.enabled,
        cfg.writeback.enabled,
        cfg.network_bandwidth.enabled,
        cfg.packet_loss.enabled,
        cfg.filesystem.enabled,
        cfg.kernel.enabled,
        cfg.docker_engine.enabled,
        cfg.capacity.enabled,
        cfg.mounts.enabled,
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
    storage_latency_with_tail(cfg, device, rates, &Tail::default())
}

/// A device's 99th percentile latencies over the window, from the eBPF histograms
/// (`crate::derive::histogram_quantile` of the window's delta); `None` for an operation the
/// histograms saw no request of (no I/O, or a device whose requests bypass the block request
/// tracepoints, as bio-based device-mapper does).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tail {
    pub read: Option<f64>,
    pub write: Option<f64>,
}

/// Storage latency judged on the window's p99 where the eBPF histograms have it, and on the
/// diskstats mean for an operation they do not: the tail is what stalls a database, and a mean
/// under 5 ms can hide a p99 far above it.
pub fn storage_latency_with_tail(
    cfg: &LatencyCheck,
    device: &str,
    rates: &DiskRates,
    tail: &Tail,
) -> CheckResult {
    let read = tail.read.unwrap_or(rates.read.await_seconds);
    let write = tail.write.unwrap_or(rates.write.await_seconds);
    let value = read.max(write);
    let threshold = cfg.max.as_secs_f64();
    let name =
        |p99: Option<f64>, op: &str| if p99.is_some() { format!("{op}_p99") } else { format!("{op}_await") };
    CheckResult {
        check: "storage_latency",
        subject: device.to_owned(),
        ok: value < threshold,
        observed: format!("{} {} {} {}", name(tail.read, "r"), ms(read), name(tail.write, "w"), ms(write)),
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

/// What the NVMe health check judges of one controller's SMART log.
#[derive(Debug, Clone, PartialEq)]
pub struct NvmeHealth {
    pub critical_warning: u8,
    /// Percent, and the drive's own threshold.
    pub available_spare: u8,
    pub spare_threshold: u8,
    pub media_errors: f64,
    /// Seconds since the media error count last rose while the agent watched (None: never).
    pub media_errors_rose_ago: Option<f64>,
}

fn ago(seconds: f64) -> String {
    humantime::format_duration(Duration::from_secs(seconds.max(0.0) as u64)).to_string()
}

/// NVMe health, the controller's own view of the spec's device errors (kept apart from the kernel
/// log's `device_errors`, whose subjects include the same controller names). Three subjects per
/// controller: `nvme0` critical warning 0 (value: the byte), `nvme0 media_errors` no rise within
/// the window (value: seconds since the last rise, threshold: the window), `nvme0 spare` available
/// spare at or above the drive's threshold (ratios).
pub fn nvme_health(cfg: &NvmeHealthCheck, controller: &str, h: &NvmeHealth) -> Vec<CheckResult> {
    let window = cfg.window.as_secs_f64();
    let media_ok = h.media_errors_rose_ago.is_none_or(|a| a > window);
    vec![
        CheckResult {
            check: "nvme_health",
            subject: controller.to_owned(),
            ok: h.critical_warning == 0,
            observed: format!("critical warning 0x{:02x}", h.critical_warning),
            expected: "0x00".to_owned(),
            value: Some(f64::from(h.critical_warning)),
            threshold: Some(0.0),
        },
        CheckResult {
            check: "nvme_health",
            subject: format!("{controller} media_errors"),
            ok: media_ok,
            observed: match h.media_errors_rose_ago {
                Some(a) => format!("{} media errors, rose {} ago", h.media_errors, ago(a)),
                None => format!("{} media errors, not rising", h.media_errors),
            },
            expected: format!("no rise in the last {}", humantime::format_duration(cfg.window)),
            value: h.media_errors_rose_ago,
            threshold: Some(window),
        },
        CheckResult {
            check: "nvme_health",
            subject: format!("{controller} spare"),
            ok: h.available_spare >= h.spare_threshold,
            observed: format!("{}%", h.available_spare),
            expected: format!(">= {}% (the drive's threshold)", h.spare_threshold),
            value: Some(f64::from(h.available_spare) / 100.0),
            threshold: Some(f64::from(h.spare_threshold) / 100.0),
        },
    ]
}

/// What the SATA health check judges of one SCSI disk. The SMART part is None when SMART could
/// not be read (no CAP_SYS_RAWIO, no ATA device behind the disk).
#[derive(Debug, Clone, PartialEq)]
pub struct SataHealth {
    pub smart: Option<SataSmart>,
    /// New I/O errors (the agent's own commands aside) and timeouts over the agent's life, and
    /// seconds since they last rose (None: not while the agent watched).
    pub io_errors: u64,
    pub io_errors_rose_ago: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SataSmart {
    /// SMART RETURN STATUS: passed; None when the registers said neither passed nor failed.
    pub passed: Option<bool>,
    /// `(id, name)` of each attribute failing now (normalized value <= threshold).
    pub failing: Vec<(u8, &'static str)>,
    /// The failure-relevant attribute that rose last, and seconds since (None: none rose).
    pub rose: Option<(u8, &'static str, f64)>,
}

/// SATA health, a disk's own view of the spec's device errors (kept apart from the kernel log's
/// `device_errors`, which judges the same disk names). Subjects per disk: `sda` SMART overall
/// status passed and no attribute failing now (value: the attributes failing, threshold 0);
/// `sda attributes` no failure-relevant attribute (reallocated, pending, offline-uncorrectable,
/// UDMA CRC, reported-uncorrect, command-timeout counts...) rose within the window (value: seconds
/// since the last rise); `sda io_errors` no new I/O error or timeout in the SCSI counters within
/// the window (value: seconds since the last rise). The SMART subjects need SMART.
pub fn sata_health(cfg: &SataHealthCheck, device: &str, h: &SataHealth) -> Vec<CheckResult> {
    let window = cfg.window.as_secs_f64();
    let within = |ago: Option<f64>| ago.is_some_and(|a| a <= window);
    let expected_rise = format!("no rise in the last {}", humantime::format_duration(cfg.window));
    let mut out = Vec::new();
    if let Some(s) = &h.smart {
        let mut observed = match s.passed {
            Some(true) => "SMART passed".to_owned(),
            Some(false) => "SMART FAILED (threshold exceeded)".to_owned(),
            None => "SMART status unknown".to_owned(),
        };
        for (id, name) in &s.failing {
            observed.push_str(&format!(", {id} {name} failing now"));
        }
        out.push(CheckResult {
            check: "sata_health",
            subject: device.to_owned(),
            ok: s.passed != Some(false) && s.failing.is_empty(),
            observed,
            expected: "passed, no attribute at or below its threshold".to_owned(),
            value: Some(s.failing.len() as f64),
            threshold: Some(0.0),
        });
        let ago = s.rose.map(|r| r.2);
        out.push(CheckResult {
            check: "sata_health",
            subject: format!("{device} attributes"),
            ok: !within(ago),
            observed: match s.rose {
                Some((id, name, a)) => format!("{id} {name} rose {} ago", self::ago(a)),
                None => "no failure-relevant attribute rising".to_owned(),
            },
            expected: expected_rise.clone(),
            value: ago,
            threshold: Some(window),
        });
    }
    out.push(CheckResult {
        check: "sata_health",
        subject: format!("{device} io_errors"),
        ok: !within(h.io_errors_rose_ago),
        observed: match h.io_errors_rose_ago {
            Some(a) => format!("{} I/O errors and timeouts, rose {} ago", h.io_errors, ago(a)),
            None => format!("{} I/O errors and timeouts, not rising", h.io_errors),
        },
        expected: expected_rise,
        value: h.io_errors_rose_ago,
        threshold: Some(window),
    });
    out
}

/// Thermal, for an NVMe namespace with a hwmon sensor: `nvme0n1` not throttling
/// (`storwatch_device_thermal_throttling`: within the window, no temperature warning bit, the
/// temperature below the drive's own warning threshold, hwmon `temp1_max`, and no new
/// thermal-management transition). Value and threshold
/// in °C where known.
pub fn device_thermal(
    cfg: &ThermalCheck,
    device: &str,
    temp: Option<f64>,
    max: Option<f64>,
    throttling: bool,
) -> CheckResult {
    let t = temp.map_or_else(|| "temperature unknown".to_owned(), |t| format!("{t:.2}°C"));
    CheckResult {
        check: "thermal",
        subject: device.to_owned(),
        ok: !throttling,
        observed: if throttling { format!("{t}, throttling") } else { t },
        expected: match max {
            Some(m) => format!(
                "< {m:.2}°C (the drive's threshold), no temperature warning in the last {}",
                humantime::format_duration(cfg.window)
            ),
            None => format!("no temperature warning in the last {}", humantime::format_duration(cfg.window)),
        },
        value: temp,
        threshold: max,
    }
}

/// Thermal, for an NVMe controller: `nvme0` composite temperature below the drive's own warning
/// threshold (WCTEMP; `max_temperature` when the drive reports none) with the temperature
/// critical-warning bit clear (value and threshold in °C); `nvme0 throttling` no new
/// thermal-management transition within the window (value: seconds since the last one).
pub fn thermal(
    cfg: &ThermalCheck,
    controller: &str,
    composite: Option<f64>,
    warning: Option<f64>,
    warning_bit: bool,
    transitions: u64,
    transition_ago: Option<f64>,
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    if let Some(t) = composite {
        let (max, whose) = match warning {
            Some(w) => (w, "WCTEMP"),
            None => (f64::from(cfg.max_temperature), "configured"),
        };
        out.push(CheckResult {
            check: "thermal",
            subject: controller.to_owned(),
            ok: t < max && !warning_bit,
            observed: format!("{t:.2}°C{}", if warning_bit { ", temperature warning set" } else { "" }),
            expected: format!("< {max:.2}°C ({whose}), no temperature warning"),
            value: Some(t),
            threshold: Some(max),
        });
    }
    let window = cfg.window.as_secs_f64();
    out.push(CheckResult {
        check: "thermal",
        subject: format!("{controller} throttling"),
        ok: transition_ago.is_none_or(|a| a > window),
        observed: match transition_ago {
            Some(a) => format!("{transitions} transitions, last {} ago", ago(a)),
            None => format!("{transitions} transitions, none new"),
        },
        expected: format!("none in the last {}", humantime::format_duration(cfg.window)),
        value: transition_ago,
        threshold: Some(window),
    });
    out
}

/// Thermal, for a SATA / SCSI disk: its temperature (SMART 194/190, else drivetemp) below the
/// drive's own limit where drivetemp reports one (`temp1_max`), else `max_temperature` (°C).
pub fn disk_temperature(cfg: &ThermalCheck, device: &str, celsius: f64, limit: Option<f64>) -> CheckResult {
    let (max, whose) = match limit {
        Some(l) => (l, "the drive's"),
        None => (f64::from(cfg.max_temperature), "configured"),
    };
    CheckResult {
        check: "thermal",
        subject: device.to_owned(),
        ok: celsius < max,
        observed: format!("{celsius:.2}°C"),
        expected: format!("< {max:.2}°C ({whose})"),
        value: Some(celsius),
        threshold: Some(max),
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

/// Network bandwidth: the link speed of a fabric interface is at least the configured speed
/// (the manual's 10 Gbps). `speed_mbps` is None when the interface reports none (sysfs `speed`
/// -1 or EINVAL): with the link down that fails; with the link up it is a virtual interface
/// (virtio, bridge, bond without slaves) whose real bandwidth is its host's, which this host
/// cannot see, so it is reported as unknown and passes unless `fail_unknown_speed`. Failing it
/// would fail every VM forever and teach operators to turn the check off.
pub fn network_bandwidth(
    cfg: &NetworkBandwidthCheck,
    interface: &str,
    speed_mbps: Option<u64>,
    link_up: bool,
) -> CheckResult {
    let min = u64::from(cfg.min_speed_mbps);
    let (ok, observed) = match speed_mbps {
        Some(s) => (s >= min, format!("{s}Mb/s")),
        None if !link_up => (false, "no link".to_owned()),
        None => (!cfg.fail_unknown_speed, "unknown (no speed reported: virtual interface)".to_owned()),
    };
    CheckResult {
        check: "network_bandwidth",
        subject: interface.to_owned(),
        ok,
        observed,
        expected: format!(">= {min}Mb/s"),
        value: speed_mbps.map(|s| s as f64 * 125_000.0),
        threshold: Some(min as f64 * 125_000.0),
    }
}

/// What a packet loss ratio was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Errors and drops over packets of a fabric interface.
    Interface,
    /// Retransmitted over sent segments of a storage target's connections.
    Retransmits,
    /// Failed over attempted connect probes of a storage target.
    Probe,
}

/// Packet loss: a ratio over the window at most its configured bound. Subjects: the interface
/// (`eth0`), the target for retransmits (`10.0.0.5:3260`), the target and `probe` for probes.
pub fn packet_loss(cfg: &PacketLossCheck, kind: LossKind, subject: &str, ratio: f64) -> CheckResult {
    let (max, what, subject) = match kind {
        LossKind::Interface => (cfg.max_interface_loss, "errors+drops", subject.to_owned()),
        LossKind::Retransmits => (cfg.max_retransmit_ratio, "retransmits", subject.to_owned()),
        LossKind::Probe => (cfg.max_probe_loss, "probe loss", format!("{subject} probe")),
    };
    CheckResult {
        check: "packet_loss",
        subject,
        ok: ratio <= max,
        observed: format!("{what} {:.3}%", ratio * 100.0),
        expected: format!("<= {}%", max * 100.0),
        value: Some(ratio),
        threshold: Some(max),
    }
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

fn version_text((a, b, c): (u32, u32, u32)) -> String {
    if c == u32::MAX { format!("{a}.{b}.x") } else { format!("{a}.{b}.{c}") }
}

/// Docker engine: the engine's version within the configured range (the manual's 20.10.x to
/// 25.0.x) and its storage driver one of the allowed (overlay2). Subjects `version` and
/// `storage_driver`; the version's value is its `LINUX_VERSION_CODE`-style code.
pub fn docker_engine(cfg: &DockerEngineCheck, version: &str, driver: &str) -> Vec<CheckResult> {
    let parsed = crate::config::parse_version(version);
    let version = CheckResult {
        check: "docker_engine",
        subject: "version".to_owned(),
        ok: parsed.is_some_and(|v| v >= cfg.min_version && v <= cfg.max_version),
        observed: version.to_owned(),
        expected: format!("{} to {}", version_text(cfg.min_version), version_text(cfg.max_version)),
        value: parsed.map(version_code),
        threshold: None,
    };
    let driver = CheckResult {
        check: "docker_engine",
        subject: "storage_driver".to_owned(),
        ok: cfg.storage_drivers.iter().any(|d| d == driver),
        observed: driver.to_owned(),
        expected: cfg.storage_drivers.join(" or "),
        value: None,
        threshold: None,
    };
    vec![version, driver]
}

fn size_text(bytes: u64) -> String {
    format!("{:.1}GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Capacity: the space available (to unprivileged writers: statvfs `f_bavail`) on the filesystem
/// holding `path` (the Docker data root, a local volume) is at least the larger of
/// `min_free_ratio` of its size and `min_free`.
pub fn capacity(cfg: &CapacityCheck, path: &str, size: u64, available: u64) -> CheckResult {
    let by_ratio = (size as f64 * cfg.min_free_ratio).ceil();
    let threshold = by_ratio.max(cfg.min_free as f64);
    let share = if size == 0 { 0.0 } else { available as f64 / size as f64 };
    CheckResult {
        check: "capacity",
        subject: path.to_owned(),
        ok: available as f64 >= threshold,
        observed: format!("{} free of {} ({:.1}%)", size_text(available), size_text(size), share * 100.0),
        expected: match cfg.min_free {
            0 => format!(">= {} ({}% of size)", size_text(threshold as u64), cfg.min_free_ratio * 100.0),
            min => format!(
                ">= {} ({}% of size, at least {})",
                size_text(threshold as u64),
                cfg.min_free_ratio * 100.0,
                size_text(min)
            ),
        },
        value: Some(available as f64),
        threshold: Some(threshold),
    }
}

/// Mounts, read-only: a container mounts a volume read-only (`RW` false). The manual: writes to it
/// fail, and `:ro` is for configuration only; so it fails unless the volume is listed in
/// `allow_read_only`. Subject `<container>:<destination>`.
pub fn read_only_mount(cfg: &MountsCheck, container: &str, destination: &str, volume: &str) -> CheckResult {
    let allowed = cfg.allow_read_only.iter().any(|v| v == volume);
    CheckResult {
        check: "mounts",
        subject: format!("{container}:{destination}"),
        ok: allowed,
        observed: format!("volume {volume} read-only{}", if allowed { " (allowed)" } else { "" }),
        expected: "read-write, or a volume in allow_read_only".to_owned(),
        value: Some(0.0),
        threshold: None,
    }
}

/// Mounts, shared: a volume mounted by more than one container. Reported, and passing unless
/// `fail_shared`: sharing is legitimate (backup and init sidecars) and the manual asks that it be
/// known. Subject `volume <name>`; the value is the number of containers.
pub fn shared_volume(cfg: &MountsCheck, volume: &str, containers: &[String]) -> CheckResult {
    let mut names = containers.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if containers.len() > 5 {
        names.push_str(", ...");
    }
    CheckResult {
        check: "mounts",
        subject: format!("volume {volume}"),
        ok: !cfg.fail_shared,
        observed: format!("mounted by {} containers: {names}", containers.len()),
        expected: if cfg.fail_shared { "one container".to_owned() } else { "any (reported)".to_owned() },
        value: Some(containers.len() as f64),
        threshold: cfg.fail_shared.then_some(1.0),
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
        let cfg = LatencyCheck { enabled: true, max: Duration::from_millis(5), p99: true };
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
    fn latency_tail_where_histograms_have_it() {
        let cfg = LatencyCheck { enabled: true, max: Duration::from_millis(5), p99: true };
        // Means well under 5 ms, but the p99 of reads above it: the tail decides.
        let tail = Tail { read: Some(0.008), write: None };
        let r = storage_latency_with_tail(&cfg, "sda", &rates(0.001, 0.002), &tail);
        assert!(!r.ok);
        assert_eq!(r.value, Some(0.008));
        assert_eq!(r.observed, "r_p99 8.000ms w_await 2.000ms");
        let tail = Tail { read: Some(0.0004), write: Some(0.0049) };
        let r = storage_latency_with_tail(&cfg, "sda", &rates(0.02, 0.02), &tail);
        assert!(r.ok, "the p99s replace the means");
        assert_eq!(r.observed, "r_p99 0.400ms w_p99 4.900ms");
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
    fn docker_engine_capacity_mounts() {
        let cfg = DockerEngineCheck::default();
        let ok = |v: &str| docker_engine(&cfg, v, "overlay2")[0].ok;
        assert!(ok("20.10.0") && ok("20.10.24+dfsg1") && ok("24.0.7") && ok("25.0.99"));
        assert!(!ok("20.9.9") && !ok("25.1.0") && !ok("28.2.2") && !ok("19.03.15") && !ok("dev"));
        let r = docker_engine(&cfg, "28.2.2", "fuse-overlayfs");
        assert_eq!(r[0].expected, "20.10.0 to 25.0.x");
        assert_eq!(r[0].value, Some(version_code((28, 2, 2))));
        assert!(!r[1].ok);
        assert_eq!((r[1].subject.as_str(), r[1].expected.as_str()), ("storage_driver", "overlay2"));
        let wide = DockerEngineCheck { max_version: (28, 2, 2), ..cfg };
        assert!(docker_engine(&wide, "28.2.2", "overlay2")[0].ok);
        assert!(!docker_engine(&wide, "28.2.3", "overlay2")[0].ok);

        let cfg = CapacityCheck::default();
        let r = capacity(&cfg, "/var/lib/docker", 100 << 30, 10 << 30);
        assert!(r.ok);
        assert_eq!((r.value, r.threshold), (Some((10u64 << 30) as f64), Some((10u64 << 30) as f64)));
        assert_eq!(r.observed, "10.0GiB free of 100.0GiB (10.0%)");
        assert_eq!(r.expected, ">= 10.0GiB (10% of size)");
        assert!(!capacity(&cfg, "/v", 100 << 30, (10 << 30) - 1).ok);
        let abs = CapacityCheck { min_free: 20 << 30, ..cfg };
        assert!(!capacity(&abs, "/v", 100 << 30, 15 << 30).ok);
        assert_eq!(capacity(&abs, "/v", 100 << 30, 15 << 30).threshold, Some((20u64 << 30) as f64));
        assert!(capacity(&CapacityCheck::default(), "/v", 0, 0).ok, "an empty filesystem: 0 >= 0");

        let cfg = MountsCheck::default();
        let r = read_only_mount(&cfg, "db", "/data", "pg");
        assert!(!r.ok);
        assert_eq!((r.subject.as_str(), r.observed.as_str()), ("db:/data", "volume pg read-only"));
        let allow = MountsCheck { allow_read_only: vec!["pg".into()], ..cfg.clone() };
        assert!(read_only_mount(&allow, "db", "/data", "pg").ok);
        let names = ["a".to_owned(), "b".to_owned()];
        let r = shared_volume(&cfg, "pg", &names);
        assert!(r.ok);
        assert_eq!((r.subject.as_str(), r.observed.as_str()), ("volume pg", "mounted by 2 containers: a, b"));
        assert!(!shared_volume(&MountsCheck { fail_shared: true, ..cfg }, "pg", &names).ok);
    }

    #[test]
    fn bandwidth_and_loss() {
        let cfg = NetworkBandwidthCheck::default();
        let veth = network_bandwidth(&cfg, "veth0", Some(10_000), true);
        assert!(veth.ok);
        assert_eq!((veth.value, veth.threshold), (Some(1.25e9), Some(1.25e9)));
        assert!(!network_bandwidth(&cfg, "eth0", Some(1000), true).ok);
        assert!(!network_bandwidth(&cfg, "eth0", None, false).ok, "no link fails");
        let virtio = network_bandwidth(&cfg, "eth0", None, true);
        assert!(virtio.ok && virtio.value.is_none() && virtio.observed.starts_with("unknown"));
        let strict = NetworkBandwidthCheck { fail_unknown_speed: true, ..cfg };
        assert!(!network_bandwidth(&strict, "eth0", None, true).ok);

        let cfg = PacketLossCheck::default();
        assert!(packet_loss(&cfg, LossKind::Interface, "eth0", 0.001).ok);
        assert!(!packet_loss(&cfg, LossKind::Interface, "eth0", 0.0011).ok);
        let r = packet_loss(&cfg, LossKind::Retransmits, "10.0.0.5:3260", 0.1);
        assert!(!r.ok);
        assert_eq!((r.subject.as_str(), r.observed.as_str()), ("10.0.0.5:3260", "retransmits 10.000%"));
        let p = packet_loss(&cfg, LossKind::Probe, "10.0.0.5:3260", 0.0);
        assert!(p.ok);
        assert_eq!(p.subject, "10.0.0.5:3260 probe");
        assert!(!packet_loss(&cfg, LossKind::Probe, "10.0.0.5:3260", 0.05).ok);
    }

    #[test]
    fn nvme_health_and_thermal() {
        let cfg = NvmeHealthCheck::default();
        let good = NvmeHealth {
            critical_warning: 0,
            available_spare: 100,
            spare_threshold: 10,
            media_errors: 0.0,
            media_errors_rose_ago: None,
        };
        let r = nvme_health(&cfg, "nvme0", &good);
        assert!(r.iter().all(|r| r.ok));
        let subjects: Vec<_> = r.iter().map(|r| r.subject.as_str()).collect();
        assert_eq!(subjects, ["nvme0", "nvme0 media_errors", "nvme0 spare"]);
        let bad = NvmeHealth {
            critical_warning: 0x11,
            available_spare: 5,
            media_errors_rose_ago: Some(60.0),
            ..good
        };
        let r = nvme_health(&cfg, "nvme0", &bad);
        assert!(r.iter().all(|r| !r.ok), "{r:?}");
        assert_eq!(r[0].value, Some(17.0));
        let old = NvmeHealth { media_errors_rose_ago: Some(3600.0), ..good };
        assert!(nvme_health(&cfg, "nvme0", &old)[1].ok, "a rise older than the window passes");
        // QEMU reports spare 0 with threshold 0: not below.
        let qemu = NvmeHealth { available_spare: 0, spare_threshold: 0, ..good };
        assert!(nvme_health(&cfg, "nvme0", &qemu)[2].ok);

        let cfg = ThermalCheck::default();
        let r = thermal(&cfg, "nvme0", Some(49.85), Some(69.85), false, 0, None);
        assert!(r.iter().all(|r| r.ok));
        assert_eq!((r[0].value, r[0].threshold), (Some(49.85), Some(69.85)));
        assert!(!thermal(&cfg, "nvme0", Some(69.85), Some(69.85), false, 0, None)[0].ok);
        assert!(!thermal(&cfg, "nvme0", Some(40.0), Some(69.85), true, 0, None)[0].ok, "bit 1 fails");
        let none = thermal(&cfg, "nvme0", Some(71.0), None, false, 0, None);
        assert_eq!((none[0].ok, none[0].threshold), (false, Some(70.0)));
        let r = thermal(&cfg, "nvme0", None, None, false, 4, Some(10.0));
        assert_eq!(r.len(), 1, "no composite temperature, no temperature result");
        assert_eq!((r[0].subject.as_str(), r[0].ok), ("nvme0 throttling", false));
        assert!(thermal(&cfg, "nvme0", None, None, false, 4, Some(1e6))[0].ok);
        let r = disk_temperature(&cfg, "sda", 31.0, None);
        assert!(r.ok);
        assert_eq!(
            (r.value, r.threshold, r.expected.as_str()),
            (Some(31.0), Some(70.0), "< 70.00°C (configured)")
        );
        assert!(!disk_temperature(&cfg, "sda", 56.0, Some(55.0)).ok);
        assert!(!disk_temperature(&cfg, "sda", 70.0, None).ok);
    }

    #[test]
    fn sata_health_subjects() {
        let cfg = SataHealthCheck::default();
        let good = SataHealth {
            smart: Some(SataSmart { passed: Some(true), failing: vec![], rose: None }),
            io_errors: 0,
            io_errors_rose_ago: None,
        };
        let r = sata_health(&cfg, "sda", &good);
        let subjects: Vec<_> = r.iter().map(|r| r.subject.as_str()).collect();
        assert_eq!(subjects, ["sda", "sda attributes", "sda io_errors"]);
        assert!(r.iter().all(|r| r.ok), "{r:?}");
        let bad = SataHealth {
            smart: Some(SataSmart {
                passed: Some(false),
                failing: vec![(5, "Reallocated_Sector_Ct")],
                rose: Some((197, "Current_Pending_Sector", 30.0)),
            }),
            io_errors: 3,
            io_errors_rose_ago: Some(60.0),
        };
        let r = sata_health(&cfg, "sda", &bad);
        assert!(r.iter().all(|r| !r.ok), "{r:?}");
        assert_eq!(r[0].observed, "SMART FAILED (threshold exceeded), 5 Reallocated_Sector_Ct failing now");
        assert_eq!((r[0].value, r[0].threshold), (Some(1.0), Some(0.0)));
        assert_eq!(r[1].observed, "197 Current_Pending_Sector rose 30s ago");
        assert_eq!((r[2].value, r[2].threshold), (Some(60.0), Some(900.0)));
        // Passed but an attribute failing: fails; a rise older than the window passes.
        let mixed = SataHealth {
            smart: Some(SataSmart { passed: Some(true), failing: vec![(5, "x")], rose: Some((5, "x", 1e4)) }),
            io_errors: 3,
            io_errors_rose_ago: Some(1e4),
        };
        let r = sata_health(&cfg, "sda", &mixed);
        assert_eq!(r.iter().map(|r| r.ok).collect::<Vec<_>>(), [false, true, true]);
        // No SMART (a virtio-scsi disk, no CAP_SYS_RAWIO): only the I/O counters are judged.
        let none = SataHealth { smart: None, io_errors: 0, io_errors_rose_ago: None };
        let r = sata_health(&cfg, "sdb", &none);
        assert_eq!((r.len(), r[0].subject.as_str(), r[0].ok), (1, "sdb io_errors", true));
    }

    #[test]
    fn order_and_enabled_agree() {
        let mut cfg = Checks::default();
        assert_eq!(enabled(&cfg), ORDER);
        cfg.packet_loss.enabled = false;
        cfg.device_errors.enabled = false;
        let on = enabled(&cfg);
        assert!(!on.contains(&"packet_loss") && !on.contains(&"device_errors"));
        assert!(on.contains(&"network_bandwidth") && on.contains(&"resources"));
    }

    #[test]
    fn families_count_failing_per_check() {
        let cfg = LatencyCheck { enabled: true, max: Duration::from_millis(5), p99: true };
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
