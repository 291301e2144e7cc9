//! NVMe health straight from each controller: Identify Controller once, the SMART / Health log and
//! the Error Information log every interval, through the admin passthrough ioctl (`admin.rs`),
//! decoded by the pure parsers of `logs.rs`. Without CAP_SYS_ADMIN the temperatures come from the
//! controller's hwmon instead and `storwatch_nvme_smart_available` says 0.
//!
//! ```text
//! <sysfs>/class/nvme/nvme0/state          live        (new|live|resetting|connecting|deleting|dead)
//! <sysfs>/class/nvme/nvme0/serial         deadbeef    (also model, firmware_rev)
//! <sysfs>/class/nvme/nvme0/nvme0n1/       a namespace (nvme0c0n1 with native multipath)
//! <sysfs>/class/nvme/nvme0/hwmon2/temp1_input   49850   (m°C; older kernels: device/hwmon/hwmonN)
//! ```

pub mod admin;
pub mod logs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::admin::{AdminCommands, AdminError};
use self::logs::{CRITICAL_WARNING_BITS, DATA_UNIT_BYTES, IdentifyController, SmartLog, celsius};
use super::{CollectError, Collector, ErrorKind, Output, ThermalEvents, read_attr};
use crate::checks::{self, NvmeHealth};
use crate::config::{NvmeHealthCheck, ThermalCheck};
use crate::metrics::Family;
use crate::paths::Paths;

/// What the kernel waits for an admin command before aborting it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Error log entries read each interval, at most (64 × 64 B = one 4 KiB page).
const MAX_ERROR_ENTRIES: u16 = 64;

/// Opens a controller's admin interface from its device node.
pub type Opener = Box<dyn Fn(&Path) -> Box<dyn AdminCommands + Send> + Send>;

/// Whether `name` is a controller (`nvme0`), not a namespace or anything else.
fn is_controller(name: &str) -> bool {
    name.strip_prefix("nvme").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The block device of a namespace entry: `nvme0n1` as it is; a multipath path `nvme0c1n1` is
/// the disk `nvme0n1`. None for anything else.
pub fn namespace_device(entry: &str) -> Option<String> {
    let rest = entry.strip_prefix("nvme")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (head, ns) = rest.split_once('n')?;
    if !digits(ns) {
        return None;
    }
    let subsys = match head.split_once('c') {
        Some((s, c)) if digits(s) && digits(c) => s,
        None if digits(head) => head,
        _ => return None,
    };
    Some(format!("nvme{subsys}n{ns}"))
}

/// A controller's sysfs facts, read every interval (cheap, unprivileged).
#[derive(Debug, Clone, PartialEq, Default)]
struct SysFacts {
    model: String,
    serial: String,
    firmware: String,
}

/// What the agent keeps about one live controller between intervals.
struct Controller {
    admin: Box<dyn AdminCommands + Send>,
    /// Identify Controller and the sysfs facts it was read under (re-read when those change).
    identify: Option<(SysFacts, IdentifyController)>,
    media_errors: Option<u128>,
    media_errors_rose: Option<Instant>,
    tmt: Option<[u32; 2]>,
    tmt_rose: Option<Instant>,
    /// The highest error count seen in the error log, and the new entries counted by status type.
    error_count: Option<u64>,
    new_errors: BTreeMap<&'static str, u64>,
}

/// One interval's reading of a controller.
struct Reading {
    name: String,
    facts: SysFacts,
    namespaces: Vec<String>,
    identify: Option<IdentifyController>,
    smart: Option<SmartLog>,
    /// Temperatures from hwmon (sensor label, °C) when the SMART log could not be read.
    hwmon: Vec<(String, f64)>,
    new_errors: Option<BTreeMap<&'static str, u64>>,
    media_errors_rose: Option<Instant>,
    tmt_rose: Option<Instant>,
}

pub struct Nvme {
    paths: Paths,
    interval: Duration,
    health: NvmeHealthCheck,
    thermal: ThermalCheck,
    open: Opener,
    controllers: BTreeMap<String, Controller>,
    warned_permission: bool,
    events: ThermalEvents,
}

impl Nvme {
    pub fn new(paths: Paths, interval: Duration, health: NvmeHealthCheck, thermal: ThermalCheck) -> Self {
        let open: Opener = Box::new(|path| Box::new(admin::Device::new(path.to_owned(), COMMAND_TIMEOUT)));
        Nvme::with_opener(paths, interval, health, thermal, open)
    }

    /// As `new`, with the admin interface made by `open` (crafted pages in unit tests).
    pub fn with_opener(
        paths: Paths,
        interval: Duration,
        health: NvmeHealthCheck,
        thermal: ThermalCheck,
        open: Opener,
    ) -> Self {
        Nvme {
            paths,
            interval,
            health,
            thermal,
            open,
            controllers: BTreeMap::new(),
            warned_permission: false,
            events: ThermalEvents::default(),
        }
    }

    /// Shares the controllers' thermal-management transitions with the hwmon collector.
    pub fn with_thermal_events(mut self, events: ThermalEvents) -> Self {
        self.events = events;
        self
    }

    /// Reads everything about one live controller. `now` dates the rises the checks judge.
    fn read(&mut self, name: &str, dir: &Path, now: Instant, errors: &mut Vec<CollectError>) -> Reading {
        let mut attr = |file: &str| {
            read_attr(&dir.join(file)).unwrap_or_else(|e| {
                errors.push(e);
                None
            })
        };
        let facts = SysFacts {
            model: attr("model").unwrap_or_default(),
            serial: attr("serial").unwrap_or_default(),
            firmware: attr("firmware_rev").unwrap_or_default(),
        };
        let mut namespaces: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.flatten().filter_map(|e| namespace_device(&e.file_name().to_string_lossy())).collect())
            .unwrap_or_default();
        namespaces.sort();
        namespaces.dedup();

        let node = self.paths.dev.join(name);
        let open = &self.open;
        let c = self.controllers.entry(name.to_owned()).or_insert_with(|| Controller {
            admin: open(&node),
            identify: None,
            media_errors: None,
            media_errors_rose: None,
            tmt: None,
            tmt_rose: None,
            error_count: None,
            new_errors: BTreeMap::new(),
        });
        let mut denied = false;
        let mut fail = |what: &str, e: AdminError, errors: &mut Vec<CollectError>| {
            if e.permission_denied() {
                denied = true;
            } else {
                let kind = if matches!(e, AdminError::Status(_)) { ErrorKind::Parse } else { ErrorKind::Io };
                errors.push(CollectError { kind, message: format!("{}: {what}: {e}", node.display()) });
            }
        };
        // No device node (a container without the host's /dev): one error, no commands.
        let present = node.exists();
        if !present {
            c.identify = None;
            errors.push(CollectError {
                kind: ErrorKind::Io,
                message: format!(
                    "{}: no such device node (mount the host's /dev at --path.dev)",
                    node.display()
                ),
            });
        }
        // Identify once per controller; again when its sysfs facts change (a firmware update, a
        // different drive under the same name).
        if present && c.identify.as_ref().is_none_or(|(f, _)| *f != facts) {
            c.identify = match c.admin.identify() {
                Ok(page) => match logs::parse_identify(&page) {
                    Ok(id) => Some((facts.clone(), id)),
                    Err(e) => {
                        errors.push(CollectError::parse(&node, format_args!("Identify Controller: {e}")));
                        None
                    }
                },
                Err(e) => {
                    fail("Identify Controller", e, errors);
                    None
                }
            };
        }
        let smart = if !present {
            None
        } else {
            match c.admin.smart_log() {
                Ok(page) => logs::parse_smart(&page)
                    .map_err(|e| errors.push(CollectError::parse(&node, format_args!("SMART log: {e}"))))
                    .ok(),
                Err(e) => {
                    fail("SMART log", e, errors);
                    None
                }
            }
        };
        if let Some(s) = &smart {
            if c.media_errors.is_some_and(|m| s.media_errors > m) {
                c.media_errors_rose = Some(now);
            }
            c.media_errors = Some(s.media_errors);
            if c.tmt.is_some_and(|t| s.tmt_transitions[0] > t[0] || s.tmt_transitions[1] > t[1]) {
                c.tmt_rose = Some(now);
                self.events.record(name, now);
            }
            c.tmt = Some(s.tmt_transitions);
        }
        // New Error Information log entries since the last interval, by status code type. The
        // first read is the baseline; a count that went backwards (a new drive) starts a new one.
        let mut new_errors = None;
        if let (Some((_, id)), true) = (&c.identify, smart.is_some()) {
            match c.admin.error_log(id.error_log_entries.min(MAX_ERROR_ENTRIES)) {
                Ok(page) => match logs::parse_error_log(&page) {
                    Ok(entries) => {
                        let max = entries.iter().map(|e| e.error_count).max().unwrap_or(0);
                        if let Some(last) = c.error_count.filter(|l| *l <= max) {
                            for e in entries.iter().filter(|e| e.error_count > last) {
                                *c.new_errors
                                    .entry(logs::status_type_name(e.status_code_type()))
                                    .or_default() += 1;
                            }
                        }
                        c.error_count = Some(max);
                        new_errors = Some(c.new_errors.clone());
                    }
                    Err(e) => errors.push(CollectError::parse(&node, format_args!("error log: {e}"))),
                },
                Err(e) => fail("error log", e, errors),
            }
        }
        if denied && !self.warned_permission {
            self.warned_permission = true;
            tracing::warn!(
                message = "NVMe SMART data unavailable: the admin commands need CAP_SYS_ADMIN (and access to the device node); exporting hwmon temperatures only",
                device = %node.display(),
            );
        }
        let hwmon = if smart.is_none() { hwmon_temperatures(dir, errors) } else { Vec::new() };
        Reading {
            name: name.to_owned(),
            facts,
            namespaces,
            identify: c.identify.as_ref().map(|(_, id)| id.clone()),
            smart,
            hwmon,
            new_errors,
            media_errors_rose: c.media_errors_rose,
            tmt_rose: c.tmt_rose,
        }
    }

    /// One pass at time `now` (tests pass their own).
    pub fn collect_at(&mut self, now: Instant) -> Result<Output, CollectError> {
        let class = self.paths.sys("class/nvme");
        let entries = match std::fs::read_dir(&class) {
            Ok(e) => e,
            // No NVMe driver loaded, no NVMe here: not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.controllers.clear();
                return Ok(Output::default());
            }
            Err(e) => return Err(CollectError::io(&class, &e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_controller(n))
            .collect();
        names.sort_by_key(|n| n[4..].parse::<u64>().unwrap_or(u64::MAX));
        let mut errors = Vec::new();
        let mut readings = Vec::new();
        for name in &names {
            let dir = class.join(name);
            let state = read_attr(&dir.join("state")).unwrap_or_else(|e| {
                errors.push(e);
                None
            });
            if state.as_deref() != Some("live") {
                // Resetting, connecting, dead or gone: no commands now, and a fresh Identify once
                // it is live again.
                self.controllers.remove(name);
                continue;
            }
            readings.push(self.read(name, &dir, now, &mut errors));
        }
        // A controller that disappeared takes its state (and so its series) with it.
        self.controllers.retain(|n, _| names.contains(n) && readings.iter().any(|r| &r.name == n));
        let checks = self.checks(&readings, now);
        Ok(Output { families: families(&readings), checks, errors })
    }

    fn checks(&self, readings: &[Reading], now: Instant) -> Vec<checks::CheckResult> {
        let mut out = Vec::new();
        for r in readings {
            let Some(s) = &r.smart else { continue };
            let age = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
            if self.health.enabled {
                let input = NvmeHealth {
                    critical_warning: s.critical_warning,
                    available_spare: s.available_spare,
                    spare_threshold: s.spare_threshold,
                    media_errors: s.media_errors as f64,
                    media_errors_rose_ago: age(r.media_errors_rose),
                };
                out.extend(checks::nvme_health(&self.health, &r.name, &input));
            }
            if self.thermal.enabled {
                let warning = r.identify.as_ref().and_then(|id| id.warning_temp).map(celsius);
                out.extend(checks::thermal(
                    &self.thermal,
                    &r.name,
                    s.composite_temp.map(celsius),
                    warning,
                    s.critical_warning & 0x02 != 0,
                    u64::from(s.tmt_transitions[0]) + u64::from(s.tmt_transitions[1]),
                    age(r.tmt_rose),
                ));
            }
        }
        out
    }
}

/// The controller's hwmon temperatures (`temp1` composite, `tempN` sensor N−1), in °C.
fn hwmon_temperatures(dir: &Path, errors: &mut Vec<CollectError>) -> Vec<(String, f64)> {
    let hwmon_dirs = |d: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|e| {
                e.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("hwmon")))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Newer kernels hang it on the controller, older ones on the PCI function.
    let mut found = hwmon_dirs(dir.to_owned());
    if found.is_empty() {
        found = hwmon_dirs(dir.join("device/hwmon"));
    }
    found.sort();
    let Some(hwmon) = found.first() else { return Vec::new() };
    let mut temps = Vec::new();
    for channel in 1..=9 {
        let path = hwmon.join(format!("temp{channel}_input"));
        let Some(text) = read_attr(&path).unwrap_or_else(|e| {
            errors.push(e);
            None
        }) else {
            continue;
        };
        match text.parse::<i64>() {
            Ok(m) => temps.push((sensor_name(channel - 1), m as f64 / 1000.0)),
            Err(_) => errors.push(CollectError::parse(&path, format_args!("{text:?} is not millidegrees"))),
        }
    }
    temps
}

/// The `sensor` label: `composite`, `sensor1` … `sensor8`.
fn sensor_name(index: usize) -> String {
    if index == 0 { "composite".to_owned() } else { format!("sensor{index}") }
}

fn families(readings: &[Reading]) -> Vec<Family> {
    let mut info =
        Family::info("storwatch_nvme_info", "NVMe controller facts (from Identify Controller, else sysfs).");
    let mut ns = Family::info(
        "storwatch_nvme_namespace_info",
        "The block devices of each NVMe controller's namespaces.",
    );
    let mut available = Family::gauge(
        "storwatch_nvme_smart_available",
        "1 when the SMART log was read this interval; 0 when not (no CAP_SYS_ADMIN, device node missing, command failed).",
    );
    let mut cw =
        Family::gauge("storwatch_nvme_critical_warning", "SMART critical warning byte (0: no warning).");
    let mut cw_bit =
        Family::gauge("storwatch_nvme_critical_warning_bit", "1 when this critical warning bit is set.");
    let mut temp = Family::gauge(
        "storwatch_nvme_temperature_celsius",
        "Composite and sensor temperatures (SMART log; hwmon when SMART is unavailable). Absent sensors are left out.",
    );
    let mut warn_t = Family::gauge(
        "storwatch_nvme_warning_temperature_celsius",
        "WCTEMP: the drive's warning composite temperature threshold.",
    );
    let mut crit_t = Family::gauge(
        "storwatch_nvme_critical_temperature_celsius",
        "CCTEMP: the drive's critical composite temperature threshold.",
    );
    let mut tmt_t = Family::gauge(
        "storwatch_nvme_thermal_management_temperature_celsius",
        "MNTMT (bound=min) and MXTMT (bound=max): the range host controlled thermal management accepts.",
    );
    let mut spare = Family::gauge("storwatch_nvme_available_spare_ratio", "Remaining spare capacity (0..1).");
    let mut spare_t = Family::gauge(
        "storwatch_nvme_available_spare_threshold_ratio",
        "Spare below this raises critical warning bit 0.",
    );
    let mut used =
        Family::gauge("storwatch_nvme_percentage_used_ratio", "Vendor estimate of life used; may exceed 1.");
    let mut read_b = Family::counter(
        "storwatch_nvme_data_read_bytes_total",
        "Data read by the host, in bytes (data units × 512000).",
    );
    let mut written_b = Family::counter(
        "storwatch_nvme_data_written_bytes_total",
        "Data written by the host, in bytes (data units × 512000).",
    );
    let mut reads = Family::counter("storwatch_nvme_host_read_commands_total", "Read commands completed.");
    let mut writes = Family::counter("storwatch_nvme_host_write_commands_total", "Write commands completed.");
    let mut busy = Family::counter(
        "storwatch_nvme_busy_time_seconds_total",
        "Time the controller was busy with I/O (minutes × 60).",
    );
    let mut cycles = Family::counter("storwatch_nvme_power_cycles_total", "Power cycles.");
    let mut on = Family::counter("storwatch_nvme_power_on_seconds_total", "Power-on time (hours × 3600).");
    let mut unsafe_s = Family::counter(
        "storwatch_nvme_unsafe_shutdowns_total",
        "Shutdowns without a shutdown notification.",
    );
    let mut media =
        Family::counter("storwatch_nvme_media_errors_total", "Unrecovered data integrity errors.");
    let mut err_entries = Family::counter(
        "storwatch_nvme_error_log_entries_total",
        "Error Information log entries over the drive's life.",
    );
    let mut warn_time = Family::counter(
        "storwatch_nvme_warning_temperature_time_seconds_total",
        "Time at or above WCTEMP (minutes × 60).",
    );
    let mut crit_time = Family::counter(
        "storwatch_nvme_critical_temperature_time_seconds_total",
        "Time at or above CCTEMP (minutes × 60).",
    );
    let mut tmt_n = Family::counter(
        "storwatch_nvme_thermal_management_transitions_total",
        "Times the drive throttled itself to thermal management temperature 1 or 2.",
    );
    let mut tmt_s = Family::counter(
        "storwatch_nvme_thermal_management_seconds_total",
        "Time throttled at thermal management temperature 1 or 2.",
    );
    let mut new_err = Family::counter(
        "storwatch_nvme_error_log_new_entries_total",
        "Error Information log entries that appeared since the agent started, by status code type.",
    );
    for r in readings {
        let c = r.name.as_str();
        let id = r.identify.as_ref();
        let (model, serial, firmware) = match id {
            Some(id) => (id.model.as_str(), id.serial.as_str(), id.firmware.as_str()),
            None => (r.facts.model.as_str(), r.facts.serial.as_str(), r.facts.firmware.as_str()),
        };
        info.push([("controller", c), ("model", model), ("serial", serial), ("firmware", firmware)], 1.0);
        for d in &r.namespaces {
            ns.push([("controller", c), ("device", d)], 1.0);
        }
        available.push([("controller", c)], if r.smart.is_some() { 1.0 } else { 0.0 });
        if let Some(id) = id {
            if let Some(k) = id.warning_temp {
                warn_t.push([("controller", c)], celsius(k));
            }
            if let Some(k) = id.critical_temp {
                crit_t.push([("controller", c)], celsius(k));
            }
            for (bound, k) in [("min", id.min_tmt), ("max", id.max_tmt)] {
                if let Some(k) = k {
                    tmt_t.push([("controller", c), ("bound", bound)], celsius(k));
                }
            }
        }
        for (sensor, t) in &r.hwmon {
            temp.push([("controller", c), ("sensor", sensor)], *t);
        }
        if let Some(s) = &r.smart {
            cw.push([("controller", c)], f64::from(s.critical_warning));
            for (mask, bit) in CRITICAL_WARNING_BITS {
                cw_bit.push(
                    [("controller", c), ("bit", bit)],
                    f64::from(u8::from(s.critical_warning & mask != 0)),
                );
            }
            let sensors = std::iter::once(s.composite_temp).chain(s.sensors);
            for (i, k) in sensors.enumerate() {
                if let Some(k) = k {
                    temp.push([("controller", c), ("sensor", &sensor_name(i))], celsius(k));
                }
            }
            spare.push([("controller", c)], f64::from(s.available_spare) / 100.0);
            spare_t.push([("controller", c)], f64::from(s.spare_threshold) / 100.0);
            used.push([("controller", c)], f64::from(s.percentage_used) / 100.0);
            // u128 → f64 keeps the magnitude of any value (rounding to 53 significant bits).
            let bytes = |units: u128| units as f64 * DATA_UNIT_BYTES as f64;
            read_b.push([("controller", c)], bytes(s.data_units_read));
            written_b.push([("controller", c)], bytes(s.data_units_written));
            reads.push([("controller", c)], s.host_read_commands as f64);
            writes.push([("controller", c)], s.host_write_commands as f64);
            busy.push([("controller", c)], s.busy_time_minutes as f64 * 60.0);
            cycles.push([("controller", c)], s.power_cycles as f64);
            on.push([("controller", c)], s.power_on_hours as f64 * 3600.0);
            unsafe_s.push([("controller", c)], s.unsafe_shutdowns as f64);
            media.push([("controller", c)], s.media_errors as f64);
            err_entries.push([("controller", c)], s.error_log_entries as f64);
            warn_time.push([("controller", c)], f64::from(s.warning_temp_minutes) * 60.0);
            crit_time.push([("controller", c)], f64::from(s.critical_temp_minutes) * 60.0);
            for (i, level) in ["1", "2"].into_iter().enumerate() {
                tmt_n.push([("controller", c), ("level", level)], f64::from(s.tmt_transitions[i]));
                tmt_s.push([("controller", c), ("level", level)], f64::from(s.tmt_seconds[i]));
            }
        }
        if let Some(new) = &r.new_errors {
            for sct in [0, 1, 2, 3, 7, 4] {
                let name = logs::status_type_name(sct);
                new_err.push(
                    [("controller", c), ("status_type", name)],
                    new.get(name).copied().unwrap_or(0) as f64,
                );
            }
        }
    }
    vec![
        info,
        ns,
        available,
        cw,
        cw_bit,
        temp,
        warn_t,
        crit_t,
        tmt_t,
        spare,
        spare_t,
        used,
        read_b,
        written_b,
        reads,
        writes,
        busy,
        cycles,
        on,
        unsafe_s,
        media,
        err_entries,
        warn_time,
        crit_time,
        tmt_n,
        tmt_s,
        new_err,
    ]
}

impl Collector for Nvme {
    fn name(&self) -> &'static str {
        "nvme"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Result<Output, CollectError> {
        self.collect_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    //! The collector's logic on a sysfs tree made here and crafted pages behind a fake
    //! `AdminCommands`: a stand-in for a drive, because what these cover (thermal-management
    //! transitions, rising media errors, new error log entries) QEMU cannot emulate. The real
    //! ioctls run against QEMU's controller in tests/nvme.rs.
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Pages {
        identify: Option<Vec<u8>>,
        smart: Option<Vec<u8>>,
        errors: Option<Vec<u8>>,
        denied: bool,
        identify_calls: u32,
    }

    struct Fake(Arc<Mutex<Pages>>);

    impl Fake {
        fn get(&self, page: impl Fn(&Pages) -> Option<Vec<u8>>) -> Result<Vec<u8>, AdminError> {
            let p = self.0.lock().unwrap();
            if p.denied {
                return Err(AdminError::Os(std::io::Error::from_raw_os_error(libc::EACCES)));
            }
            page(&p).ok_or(AdminError::Status(0x4002))
        }
    }

    impl AdminCommands for Fake {
        fn identify(&self) -> Result<Vec<u8>, AdminError> {
            self.0.lock().unwrap().identify_calls += 1;
            self.get(|p| p.identify.clone())
        }
        fn smart_log(&self) -> Result<Vec<u8>, AdminError> {
            self.get(|p| p.smart.clone())
        }
        fn error_log(&self, entries: u16) -> Result<Vec<u8>, AdminError> {
            assert_eq!(entries, 4);
            self.get(|p| p.errors.clone())
        }
    }

    fn identify() -> Vec<u8> {
        let mut p = vec![0u8; logs::IDENTIFY_LEN];
        p[4..12].copy_from_slice(b"SN123   ");
        p[24..28].copy_from_slice(b"Disk");
        p[64..68].copy_from_slice(b"1.0 ");
        p[262] = 3;
        p[266..268].copy_from_slice(&343u16.to_le_bytes());
        p[268..270].copy_from_slice(&373u16.to_le_bytes());
        p
    }

    fn smart(cw: u8, media: u128, tmt1: u32) -> Vec<u8> {
        let mut p = vec![0u8; logs::SMART_LEN];
        p[0] = cw;
        p[1..3].copy_from_slice(&323u16.to_le_bytes());
        (p[3], p[4], p[5]) = (100, 10, 120);
        p[160..176].copy_from_slice(&media.to_le_bytes());
        p[48..64].copy_from_slice(&(1u128 << 70).to_le_bytes());
        p[216..220].copy_from_slice(&tmt1.to_le_bytes());
        p
    }

    fn error_entries(counts: &[(u64, u16)]) -> Vec<u8> {
        let mut p = vec![0u8; 4 * 64];
        for (i, (count, status)) in counts.iter().enumerate() {
            p[i * 64..i * 64 + 8].copy_from_slice(&count.to_le_bytes());
            p[i * 64 + 12..i * 64 + 14].copy_from_slice(&(status << 1).to_le_bytes());
        }
        p
    }

    fn sysfs(state: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("class/nvme/nvme0");
        std::fs::create_dir_all(c.join("nvme0n1")).unwrap();
        std::fs::create_dir_all(c.join("hwmon3")).unwrap();
        std::fs::write(c.join("hwmon3/temp1_input"), "49850\n").unwrap();
        std::fs::write(c.join("hwmon3/temp3_input"), "30850\n").unwrap();
        for (f, v) in [("state", state), ("serial", "SN123"), ("model", "Disk"), ("firmware_rev", "1.0")] {
            std::fs::write(c.join(f), format!("{v}\n")).unwrap();
        }
        std::fs::create_dir_all(d.path().join("class/nvme/nvme-fabrics")).unwrap();
        std::fs::create_dir_all(d.path().join("dev")).unwrap();
        std::fs::write(d.path().join("dev/nvme0"), "").unwrap();
        d
    }

    fn collector(sys: &Path, pages: Arc<Mutex<Pages>>) -> Nvme {
        let paths = Paths { sysfs: sys.to_owned(), dev: sys.join("dev"), ..Paths::default() };
        let open: Opener = Box::new(move |path| {
            assert!(path.ends_with("dev/nvme0"), "{}", path.display());
            Box::new(Fake(pages.clone()))
        });
        Nvme::with_opener(
            paths,
            Duration::from_secs(60),
            NvmeHealthCheck::default(),
            ThermalCheck::default(),
            open,
        )
    }

    fn value(out: &Output, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = out.families.iter().find(|f| f.name == name)?;
        let s = f
            .samples
            .iter()
            .find(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v)))?;
        Some(s.value)
    }

    fn check(out: &Output, check: &str, subject: &str) -> Option<bool> {
        out.checks.iter().find(|r| r.check == check && r.subject == subject).map(|r| r.ok)
    }

    #[test]
    fn names() {
        assert!(is_controller("nvme0") && is_controller("nvme12"));
        assert!(!is_controller("nvme0n1") && !is_controller("nvme-fabrics") && !is_controller("nvme"));
        assert_eq!(namespace_device("nvme0n1").as_deref(), Some("nvme0n1"));
        assert_eq!(namespace_device("nvme1c2n3").as_deref(), Some("nvme1n3"));
        for bad in ["nvme0", "hwmon3", "nvme0n", "nvmexn1", "nvme0c1", "device", "nvme0n1p1"] {
            assert_eq!(namespace_device(bad), None, "{bad}");
        }
    }

    #[test]
    fn smart_checks_and_transitions() {
        let sys = sysfs("live");
        let pages = Arc::new(Mutex::new(Pages {
            identify: Some(identify()),
            smart: Some(smart(0, 0, 0)),
            errors: Some(error_entries(&[(7, 0x281)])),
            ..Pages::default()
        }));
        let mut c = collector(sys.path(), pages.clone());
        let t0 = Instant::now();
        let out = c.collect_at(t0).unwrap();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let ctl = [("controller", "nvme0")];
        assert_eq!(value(&out, "storwatch_nvme_smart_available", &ctl), Some(1.0));
        assert_eq!(value(&out, "storwatch_nvme_info", &[("serial", "SN123"), ("model", "Disk")]), Some(1.0));
        assert_eq!(value(&out, "storwatch_nvme_namespace_info", &[("device", "nvme0n1")]), Some(1.0));
        assert_eq!(
            value(&out, "storwatch_nvme_temperature_celsius", &[("sensor", "composite")]),
            Some(49.85)
        );
        assert_eq!(value(&out, "storwatch_nvme_temperature_celsius", &[("sensor", "sensor2")]), None);
        assert_eq!(value(&out, "storwatch_nvme_warning_temperature_celsius", &ctl), Some(69.85));
        assert_eq!(value(&out, "storwatch_nvme_percentage_used_ratio", &ctl), Some(1.2));
        assert_eq!(
            value(&out, "storwatch_nvme_data_written_bytes_total", &ctl),
            Some(2f64.powi(70) * 512000.0)
        );
        assert_eq!(
            value(&out, "storwatch_nvme_error_log_new_entries_total", &[("status_type", "media")]),
            Some(0.0)
        );
        assert!(out.checks.iter().all(|r| r.ok), "{:?}", out.checks);

        // One interval later: the drive throttled, a media error, two new error log entries, and
        // the spare and reliability warnings.
        {
            let mut p = pages.lock().unwrap();
            p.smart = Some(smart(0x05, 1, 2));
            p.errors = Some(error_entries(&[(9, 0x281), (8, 0x002), (7, 0x281)]));
        }
        let out = c.collect_at(t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(pages.lock().unwrap().identify_calls, 1, "Identify once per controller");
        assert_eq!(value(&out, "storwatch_nvme_critical_warning", &ctl), Some(5.0));
        for (bit, v) in [("spare", 1.0), ("temperature", 0.0), ("reliability", 1.0), ("pmr", 0.0)] {
            assert_eq!(value(&out, "storwatch_nvme_critical_warning_bit", &[("bit", bit)]), Some(v), "{bit}");
        }
        assert_eq!(
            value(&out, "storwatch_nvme_thermal_management_transitions_total", &[("level", "1")]),
            Some(2.0)
        );
        assert_eq!(
            value(&out, "storwatch_nvme_error_log_new_entries_total", &[("status_type", "media")]),
            Some(1.0)
        );
        assert_eq!(
            value(&out, "storwatch_nvme_error_log_new_entries_total", &[("status_type", "generic")]),
            Some(1.0)
        );
        assert_eq!(check(&out, "nvme_health", "nvme0"), Some(false));
        assert_eq!(check(&out, "nvme_health", "nvme0 media_errors"), Some(false));
        assert_eq!(check(&out, "nvme_health", "nvme0 spare"), Some(true), "100% >= 10%");
        assert_eq!(check(&out, "thermal", "nvme0"), Some(true));
        assert_eq!(check(&out, "thermal", "nvme0 throttling"), Some(false));

        // 16 minutes later, nothing new: the window has passed.
        pages.lock().unwrap().smart = Some(smart(0, 1, 2));
        let out = c.collect_at(t0 + Duration::from_secs(17 * 60)).unwrap();
        assert!(out.checks.iter().all(|r| r.ok), "{:?}", out.checks);
        assert_eq!(
            value(&out, "storwatch_nvme_error_log_new_entries_total", &[("status_type", "media")]),
            Some(1.0)
        );

        // A reset: not live, no commands and no series; live again, Identify again.
        std::fs::write(sys.path().join("class/nvme/nvme0/state"), "resetting\n").unwrap();
        let out = c.collect_at(t0 + Duration::from_secs(18 * 60)).unwrap();
        assert!(out.families.iter().all(|f| f.samples.is_empty()) && out.checks.is_empty());
        std::fs::write(sys.path().join("class/nvme/nvme0/state"), "live\n").unwrap();
        c.collect_at(t0 + Duration::from_secs(19 * 60)).unwrap();
        assert_eq!(pages.lock().unwrap().identify_calls, 2);

        // Removed: its series stop, no error.
        std::fs::remove_dir_all(sys.path().join("class/nvme/nvme0")).unwrap();
        let out = c.collect_at(t0 + Duration::from_secs(20 * 60)).unwrap();
        assert!(out.families.iter().all(|f| f.samples.is_empty()) && out.errors.is_empty());
        assert!(c.controllers.is_empty());
    }

    #[test]
    fn without_cap_sys_admin_hwmon_temperatures() {
        let sys = sysfs("live");
        let pages = Arc::new(Mutex::new(Pages { denied: true, ..Pages::default() }));
        let mut c = collector(sys.path(), pages);
        let out = c.collect_at(Instant::now()).unwrap();
        assert!(out.errors.is_empty(), "a missing privilege is logged once, not an error each run");
        assert!(c.warned_permission);
        let ctl = [("controller", "nvme0")];
        assert_eq!(value(&out, "storwatch_nvme_smart_available", &ctl), Some(0.0));
        assert_eq!(
            value(&out, "storwatch_nvme_temperature_celsius", &[("sensor", "composite")]),
            Some(49.85)
        );
        assert_eq!(value(&out, "storwatch_nvme_temperature_celsius", &[("sensor", "sensor2")]), Some(30.85));
        assert_eq!(value(&out, "storwatch_nvme_critical_warning", &ctl), None);
        assert_eq!(value(&out, "storwatch_nvme_info", &[("serial", "SN123")]), Some(1.0), "from sysfs");
        assert!(out.checks.is_empty(), "nothing to judge without the SMART log");
    }

    #[test]
    fn bad_pages_are_errors_not_panics() {
        let sys = sysfs("live");
        let pages = Arc::new(Mutex::new(Pages {
            identify: Some(vec![0xFF; 4096]),
            smart: Some(vec![0u8; 100]),
            errors: None,
            ..Pages::default()
        }));
        let mut c = collector(sys.path(), pages);
        let out = c.collect_at(Instant::now()).unwrap();
        let msgs: Vec<_> = out.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("Identify Controller: page is all 0xFF"), "{msgs:?}");
        assert!(msgs[1].contains("SMART log: page truncated: 100 of 512 bytes"), "{msgs:?}");
        assert_eq!(value(&out, "storwatch_nvme_smart_available", &[("controller", "nvme0")]), Some(0.0));
    }

    #[test]
    fn missing_device_node_is_one_error_and_no_commands() {
        let sys = sysfs("live");
        std::fs::remove_file(sys.path().join("dev/nvme0")).unwrap();
        let pages = Arc::new(Mutex::new(Pages { identify: Some(identify()), ..Pages::default() }));
        let mut c = collector(sys.path(), pages.clone());
        let out = c.collect_at(Instant::now()).unwrap();
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(out.errors[0].message.contains("no such device node"));
        assert_eq!(pages.lock().unwrap().identify_calls, 0);
        assert_eq!(value(&out, "storwatch_nvme_smart_available", &[("controller", "nvme0")]), Some(0.0));
        assert_eq!(
            value(&out, "storwatch_nvme_temperature_celsius", &[("sensor", "composite")]),
            Some(49.85)
        );
    }

    #[test]
    fn no_nvme_here() {
        let d = tempfile::tempdir().unwrap();
        let mut c = collector(d.path(), Arc::default());
        let out = c.collect_at(Instant::now()).unwrap();
        assert!(out.families.is_empty() && out.errors.is_empty());
    }
}
