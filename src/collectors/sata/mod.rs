//! SATA and SAS disk health without smartctl: for every SCSI disk the kernel's iostat counters,
//! device state, ATA link and drivetemp temperature from sysfs (no privilege), and for disks with
//! an ATA device behind them SMART through SG_IO (`sgio.rs`, CAP_SYS_RAWIO), decoded by the pure
//! parsers of `smart.rs`. A disk in standby is not woken: CHECK POWER MODE first, as
//! `smartctl -n standby` does.
//!
//! ```text
//! <sysfs>/class/scsi_disk/0:0:0:0/device -> ../../../devices/pci0000:00/…/ata1/host0/target0:0:0/0:0:0:0
//! <sysfs>/class/scsi_disk/0:0:0:0/device/block/sda
//! <sysfs>/block/sda/device/ioerr_cnt        0x1f      (also iotmo_cnt, iodone_cnt, iorequest_cnt)
//! <sysfs>/block/sda/device/state            running   (also vendor "ATA     ", model, rev)
//! <sysfs>/block/sda/device/hwmon/hwmon3/temp1_input   31000   (drivetemp, m°C)
//! <sysfs>/class/ata_link/link1/sata_spd     6.0 Gbps
//! <sysfs>/class/ata_device/dev1.0/spdn_cnt  0
//! ```

pub mod sgio;
pub mod smart;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::sgio::{AtaCommands, SgError};
use self::smart::{Attribute, PowerMode};
use super::{CollectError, Collector, DeviceFilter, ErrorKind, Output, read_attr};
use crate::checks::{self, SataHealth, SataSmart};
use crate::config::{SataHealthCheck, ThermalCheck};
use crate::derive;
use crate::metrics::Family;
use crate::paths::Paths;

/// What the kernel waits for one ATA command before aborting it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a disk's SG_IO interface from its device node.
pub type Opener = Box<dyn Fn(&Path) -> Box<dyn AtaCommands + Send> + Send>;

/// Parses a SCSI iostat counter: `0x1f` (`"0x%x\n"`, an `atomic_t`, so 32 bits).
///
/// ```text
/// <sysfs>/block/sda/device/iorequest_cnt   0x2d4
/// ```
pub fn parse_counter(text: &str) -> Option<u32> {
    let hex = text.trim().strip_prefix("0x")?;
    // Some kernels print the 64-bit `%llx` of a 32-bit value: keep the low 32 bits.
    u64::from_str_radix(hex, 16).ok().map(|v| v as u32)
}

/// Parses libata's `sata_spd` (`6.0 Gbps`, `3.0 Gbps`, `1.5 Gbps`, `<unknown>`) into bytes/s.
pub fn parse_link_speed(text: &str) -> Option<f64> {
    let gbps: f64 = text.trim().strip_suffix("Gbps")?.trim().parse().ok()?;
    (gbps.is_finite() && gbps > 0.0).then_some(gbps * 1e9 / 8.0)
}

/// The libata port (`ata1` → 1) in a resolved sysfs device path, if the disk is behind one.
pub fn ata_port(path: &Path) -> Option<u32> {
    path.components().find_map(|c| c.as_os_str().to_str()?.strip_prefix("ata")?.parse().ok())
}

/// The four counters, in the order the metrics list them.
const COUNTERS: [&str; 4] = ["iorequest_cnt", "iodone_cnt", "ioerr_cnt", "iotmo_cnt"];
const ERR: usize = 2;
const TMO: usize = 3;

/// Why SMART is (not) read for a disk this pass: the `state` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmartState {
    /// Read this pass.
    Available,
    /// The drive was in standby (or its runtime PM had suspended it): not woken, not read.
    Standby,
    /// No ATA device answers ATA PASS-THROUGH (virtio-scsi, SAS, a USB bridge without SAT), or
    /// SMART is disabled. Not asked again while the disk stays the same.
    Unsupported,
    /// No CAP_SYS_RAWIO, or no access to the node.
    Denied,
    /// A command failed this pass.
    Error,
}

const STATES: [(SmartState, &str); 5] = [
    (SmartState::Available, "available"),
    (SmartState::Standby, "standby"),
    (SmartState::Unsupported, "unsupported"),
    (SmartState::Denied, "denied"),
    (SmartState::Error, "error"),
];

/// One SMART reading.
#[derive(Debug, Clone)]
struct SmartReading {
    passed: Option<bool>,
    attributes: Vec<Attribute>,
}

/// What the agent keeps about one disk between passes.
struct Disk {
    /// `dev` and SCSI address: a new identity is a new disk, with fresh state.
    identity: String,
    ata: Box<dyn AtaCommands + Send>,
    unsupported: bool,
    counters: Option<[u32; 4]>,
    /// Counters with the 32-bit wraps undone, from the kernel's value when first seen.
    totals: [u64; 4],
    /// The agent's own commands answered with a non-GOOD status, over its life.
    own_errors: u64,
    /// New I/O errors and timeouts (own commands aside) while the agent watched.
    io_errors: u64,
    io_errors_rose: Option<Instant>,
    attrs_last: BTreeMap<u8, u64>,
    attrs_rose: Option<(u8, &'static str, Instant)>,
    standby_skips: u64,
    smart: Option<SmartReading>,
}

/// One pass's reading of a disk.
struct Reading {
    name: String,
    hctl: String,
    vendor: String,
    model: String,
    firmware: String,
    state: String,
    totals: Option<[u64; 4]>,
    own_errors: u64,
    link_speed: Option<f64>,
    speed_downs: Option<u64>,
    /// drivetemp's temperature and its `temp1_max`, °C.
    drivetemp: Option<(f64, Option<f64>)>,
    smart_state: SmartState,
    standby_skips: u64,
    smart: Option<SmartReading>,
    health: SataHealth,
}

pub struct Sata {
    paths: Paths,
    interval: Duration,
    devices: DeviceFilter,
    health: SataHealthCheck,
    thermal: ThermalCheck,
    open: Opener,
    disks: BTreeMap<String, Disk>,
    warned_permission: bool,
}

impl Sata {
    pub fn new(
        paths: Paths,
        interval: Duration,
        devices: DeviceFilter,
        health: SataHealthCheck,
        thermal: ThermalCheck,
    ) -> Self {
        let open: Opener = Box::new(|path| Box::new(sgio::Device::new(path.to_owned(), COMMAND_TIMEOUT)));
        Sata::with_opener(paths, interval, devices, health, thermal, open)
    }

    /// As `new`, with the SG_IO interface made by `open` (crafted pages in unit tests).
    pub fn with_opener(
        paths: Paths,
        interval: Duration,
        devices: DeviceFilter,
        health: SataHealthCheck,
        thermal: ThermalCheck,
        open: Opener,
    ) -> Self {
        Sata {
            paths,
            interval,
            devices,
            health,
            thermal,
            open,
            disks: BTreeMap::new(),
            warned_permission: false,
        }
    }

    /// One pass at time `now` (tests pass their own).
    pub fn collect_at(&mut self, now: Instant) -> Result<Output, CollectError> {
        let class = self.paths.sys("class/scsi_disk");
        let entries = match std::fs::read_dir(&class) {
            Ok(e) => e,
            // No SCSI disk driver loaded, no SCSI disks here: not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.disks.clear();
                return Ok(Output::default());
            }
            Err(e) => return Err(CollectError::io(&class, &e)),
        };
        let mut found: Vec<(String, String)> = Vec::new();
        for entry in entries.flatten() {
            let hctl = entry.file_name().to_string_lossy().into_owned();
            let blocks = std::fs::read_dir(class.join(&hctl).join("device/block"));
            for b in blocks.into_iter().flatten().flatten() {
                let name = b.file_name().to_string_lossy().into_owned();
                if self.devices.matches(&name) {
                    found.push((name, hctl.clone()));
                }
            }
        }
        found.sort();
        let mut errors = Vec::new();
        let readings: Vec<Reading> =
            found.iter().map(|(name, hctl)| self.read(name, hctl, now, &mut errors)).collect();
        self.disks.retain(|n, _| found.iter().any(|(f, _)| f == n));
        let mut out = Vec::new();
        if self.health.enabled {
            for r in &readings {
                out.extend(checks::sata_health(&self.health, &r.name, &r.health));
            }
        }
        if self.thermal.enabled {
            for r in &readings {
                let smart = r.smart.as_ref().and_then(|s| smart::temperature(&s.attributes));
                if let Some(t) = smart.map(|t| t as f64).or(r.drivetemp.map(|(t, _)| t)) {
                    let limit = r.drivetemp.and_then(|(_, max)| max);
                    out.push(checks::disk_temperature(&self.thermal, &r.name, t, limit));
                }
            }
        }
        Ok(Output { families: families(&readings), checks: out, errors })
    }

    fn read(&mut self, name: &str, hctl: &str, now: Instant, errors: &mut Vec<CollectError>) -> Reading {
        let dev = self.paths.sys("block").join(name).join("device");
        let mut attr = |file: &str| {
            read_attr(&dev.join(file)).unwrap_or_else(|e| {
                errors.push(e);
                None
            })
        };
        let state = attr("state").unwrap_or_default();
        let (vendor, model, firmware) = (
            attr("vendor").unwrap_or_default(),
            attr("model").unwrap_or_default(),
            attr("rev").unwrap_or_default(),
        );
        let runtime = attr("power/runtime_status");
        let texts = COUNTERS.map(&mut attr);
        let mut raw = [0u32; 4];
        let mut have_counters = true;
        for (i, (file, text)) in COUNTERS.iter().zip(texts).enumerate() {
            match text {
                Some(text) => match parse_counter(&text) {
                    Some(v) => raw[i] = v,
                    None => {
                        have_counters = false;
                        errors.push(CollectError::parse(
                            &dev.join(file),
                            format_args!("{text:?} is not 0x<hex>"),
                        ));
                    }
                },
                None => have_counters = false,
            }
        }
        let devt =
            read_attr(&self.paths.sys("block").join(name).join("dev")).ok().flatten().unwrap_or_default();
        let identity = format!("{devt} {hctl}");
        let (link_speed, speed_downs) = self.ata_link(hctl, errors);
        let drivetemp = drivetemp(&dev, errors);

        let node = self.paths.dev.join(name);
        let open = &self.open;
        let fresh = || Disk {
            identity: identity.clone(),
            ata: open(&node),
            unsupported: false,
            counters: None,
            totals: [0; 4],
            own_errors: 0,
            io_errors: 0,
            io_errors_rose: None,
            attrs_last: BTreeMap::new(),
            attrs_rose: None,
            standby_skips: 0,
            smart: None,
        };
        let d = self.disks.entry(name.to_owned()).or_insert_with(fresh);
        if d.identity != identity {
            *d = fresh();
        }

        // The counters' growth since the last pass; the agent's own commands of the last pass
        // are in it, and are taken out of the errors.
        let own = d.ata.take_error_results();
        d.own_errors += u64::from(own);
        if have_counters {
            match d.counters {
                Some(prev) => {
                    let deltas: Vec<Option<u64>> =
                        (0..4).map(|i| derive::scsi_counter_delta(prev[i], raw[i])).collect();
                    if deltas.iter().all(Option::is_some) {
                        for (t, dl) in d.totals.iter_mut().zip(&deltas) {
                            *t += dl.unwrap_or(0);
                        }
                        let new = derive::io_errors_delta(prev[ERR], raw[ERR], own).unwrap_or(0)
                            + deltas[TMO].unwrap_or(0);
                        if new > 0 {
                            d.io_errors += new;
                            d.io_errors_rose = Some(now);
                        }
                    } else {
                        // Went backwards: a re-created device; start from its values.
                        d.totals = raw.map(u64::from);
                    }
                }
                None => d.totals = raw.map(u64::from),
            }
            d.counters = Some(raw);
        }

        let (smart_state, denied) = if d.unsupported {
            (SmartState::Unsupported, false)
        } else if state != "running" && !state.is_empty() {
            // Offline, blocked, deleted: no commands now.
            (SmartState::Error, false)
        } else if runtime.as_deref() == Some("suspended") {
            // Runtime PM has the disk suspended: any command would resume (spin up) it.
            d.standby_skips += 1;
            (SmartState::Standby, false)
        } else {
            read_smart(d, &node, name, now, errors)
        };
        // A reading is kept while the disk sleeps (it cannot change), dropped otherwise.
        if !matches!(smart_state, SmartState::Available | SmartState::Standby) {
            d.smart = None;
        }
        if denied && !self.warned_permission {
            self.warned_permission = true;
            tracing::warn!(
                message = "SATA SMART unavailable: ATA PASS-THROUGH through SG_IO needs CAP_SYS_RAWIO (and read access to the device node); exporting sysfs counters only",
                device = %node.display(),
            );
        }
        let age = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
        let smart_health = d.smart.as_ref().map(|s| SataSmart {
            passed: s.passed,
            failing: s.attributes.iter().filter(|a| a.failing_now()).map(|a| (a.id, a.name)).collect(),
            rose: d.attrs_rose.map(|(id, n, t)| (id, n, age(t))),
        });
        Reading {
            name: name.to_owned(),
            hctl: hctl.to_owned(),
            vendor,
            model,
            firmware,
            state,
            totals: have_counters.then_some(d.totals),
            own_errors: d.own_errors,
            link_speed,
            speed_downs,
            drivetemp,
            smart_state,
            standby_skips: d.standby_skips,
            smart: d.smart.clone(),
            health: SataHealth {
                smart: smart_health,
                io_errors: d.io_errors,
                io_errors_rose_ago: d.io_errors_rose.map(age),
            },
        }
    }

    /// The libata link speed and speed-down count of the port a disk hangs off, if any.
    fn ata_link(&self, hctl: &str, errors: &mut Vec<CollectError>) -> (Option<f64>, Option<u64>) {
        let resolved = std::fs::canonicalize(self.paths.sys("class/scsi_disk").join(hctl).join("device"));
        let Some(port) = resolved.ok().and_then(|p| ata_port(&p)) else { return (None, None) };
        let mut attr = |path: PathBuf| {
            read_attr(&path).unwrap_or_else(|e| {
                errors.push(e);
                None
            })
        };
        let speed = attr(self.paths.sys(format!("class/ata_link/link{port}/sata_spd")))
            .and_then(|s| parse_link_speed(&s));
        let downs = attr(self.paths.sys(format!("class/ata_device/dev{port}.0/spdn_cnt")))
            .and_then(|s| s.trim().parse().ok());
        (speed, downs)
    }
}

/// CHECK POWER MODE, then (unless in standby) RETURN STATUS, READ DATA and READ THRESHOLDS.
/// Returns the state and whether the commands were refused for lack of privilege.
fn read_smart(
    d: &mut Disk,
    node: &Path,
    name: &str,
    now: Instant,
    errors: &mut Vec<CollectError>,
) -> (SmartState, bool) {
    // What a failed command means for the disk: no privilege and no ATA device are states, not
    // errors (the first is logged once, the second is not asked again).
    let fail = |what: &str, e: SgError, d: &mut Disk, errors: &mut Vec<CollectError>| {
        if e.permission_denied() {
            return (SmartState::Denied, true);
        }
        // ABRT on a SMART command: SMART disabled or not implemented.
        let aborted = matches!(&e, SgError::Failed { sense: Some(s), .. }
            if s.registers.is_some_and(|r| r.error & 0x04 != 0));
        if matches!(e, SgError::Unsupported) || e.no_sg_io() || aborted {
            d.unsupported = true;
            d.smart = None;
            return (SmartState::Unsupported, false);
        }
        let kind = if matches!(e, SgError::Failed { .. }) { ErrorKind::Parse } else { ErrorKind::Io };
        errors.push(CollectError { kind, message: format!("{}: {what}: {e}", node.display()) });
        (SmartState::Error, false)
    };
    match d.ata.check_power_mode() {
        Ok(count) if smart::power_mode(count) == PowerMode::Standby => {
            d.standby_skips += 1;
            tracing::debug!(device = name, "in standby: SMART not read");
            return (SmartState::Standby, false);
        }
        Ok(_) => {}
        Err(e) => return fail("CHECK POWER MODE", e, d, errors),
    }
    let passed = match d.ata.smart_return_status() {
        Ok(p) => p,
        Err(e) => return fail("SMART RETURN STATUS", e, d, errors),
    };
    let data = match d.ata.smart_read_data() {
        Ok(page) => match smart::parse_data(&page) {
            Ok(data) => data,
            Err(e) => {
                errors.push(CollectError::parse(node, format_args!("SMART READ DATA: {e}")));
                return (SmartState::Error, false);
            }
        },
        Err(e) => return fail("SMART READ DATA", e, d, errors),
    };
    let thresholds = match d.ata.smart_read_thresholds() {
        Ok(page) => match smart::parse_thresholds(&page) {
            Ok(t) => t,
            Err(e) => {
                errors.push(CollectError::parse(node, format_args!("SMART READ THRESHOLDS: {e}")));
                return (SmartState::Error, false);
            }
        },
        Err(e) => return fail("SMART READ THRESHOLDS", e, d, errors),
    };
    let attributes = smart::join(&data, &thresholds);
    // A failure-relevant raw count that rose since the last reading dates the rise.
    for a in &attributes {
        if !smart::known(a.id).is_some_and(|k| k.rising_fails) {
            continue;
        }
        if d.attrs_last.get(&a.id).is_some_and(|last| a.decoded > *last) {
            d.attrs_rose = Some((a.id, a.name, now));
        }
        d.attrs_last.insert(a.id, a.decoded);
    }
    d.smart = Some(SmartReading { passed, attributes });
    (SmartState::Available, false)
}

/// The drivetemp hwmon temperature of a disk and its `temp1_max` limit when the drive reports
/// one (°C), joined through its SCSI device directory.
fn drivetemp(dev: &Path, errors: &mut Vec<CollectError>) -> Option<(f64, Option<f64>)> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(dev.join("hwmon")).ok()?.flatten().map(|e| e.path()).collect();
    dirs.sort();
    let hwmon = dirs
        .into_iter()
        .find(|d| read_attr(&d.join("name")).ok().flatten().as_deref() == Some("drivetemp"))?;
    let mut read = |file: &str| {
        let path = hwmon.join(file);
        let text = read_attr(&path).unwrap_or_else(|e| {
            errors.push(e);
            None
        })?;
        match text.parse::<i64>() {
            Ok(m) => Some(m as f64 / 1000.0),
            Err(_) => {
                errors.push(CollectError::parse(&path, format_args!("{text:?} is not millidegrees")));
                None
            }
        }
    };
    let t = read("temp1_input")?;
    Some((t, read("temp1_max")))
}

fn families(readings: &[Reading]) -> Vec<Family> {
    let mut info = Family::info(
        "storwatch_sata_info",
        "SCSI disk facts from sysfs: address, vendor, model, firmware revision, device state.",
    );
    let mut running =
        Family::gauge("storwatch_sata_device_running", "1 when the SCSI device state is running.");
    let mut requests =
        Family::counter("storwatch_sata_io_requests_total", "Commands sent to the device (iorequest_cnt).");
    let mut done = Family::counter("storwatch_sata_io_completed_total", "Commands completed (iodone_cnt).");
    let mut errs = Family::counter(
        "storwatch_sata_io_errors_total",
        "Commands completed with a non-zero result (ioerr_cnt), check conditions of SG_IO users included.",
    );
    let mut tmo = Family::counter("storwatch_sata_io_timeouts_total", "Commands that timed out (iotmo_cnt).");
    let mut own = Family::counter(
        "storwatch_sata_agent_error_results_total",
        "The agent's own ATA PASS-THROUGH commands answered with CHECK CONDITION (counted in ioerr_cnt).",
    );
    let mut link = Family::gauge(
        "storwatch_sata_link_speed_bytes_per_second",
        "Negotiated SATA link speed (sata_spd) in bytes per second.",
    );
    let mut spdn = Family::counter(
        "storwatch_sata_link_speed_downs_total",
        "Times libata lowered the link speed (spdn_cnt).",
    );
    let mut temp = Family::gauge(
        "storwatch_sata_temperature_celsius",
        "Drive temperature: SMART attribute 194 else 190 (source=smart), drivetemp hwmon (source=drivetemp).",
    );
    let mut state = Family::gauge(
        "storwatch_sata_smart_state",
        "1 for the disk's SMART state this pass: available, standby (not woken), unsupported, denied, error.",
    );
    let mut skips = Family::counter(
        "storwatch_sata_smart_standby_skips_total",
        "Passes that found the disk in standby and did not read SMART.",
    );
    let mut passed =
        Family::gauge("storwatch_sata_smart_passed", "SMART RETURN STATUS: 1 passed, 0 threshold exceeded.");
    let mut value = Family::gauge("storwatch_sata_attribute_normalized", "SMART attribute normalized value.");
    let mut worst =
        Family::gauge("storwatch_sata_attribute_worst", "SMART attribute worst normalized value.");
    let mut thresh =
        Family::gauge("storwatch_sata_attribute_threshold", "SMART attribute failure threshold.");
    let mut raw =
        Family::gauge("storwatch_sata_attribute_raw", "SMART attribute 48-bit raw field as an integer.");
    let mut decoded = Family::gauge(
        "storwatch_sata_attribute_decoded",
        "SMART attribute raw field decoded per kind: the count (raw48, raw16), hours (raw24), °C (temperature byte).",
    );
    let mut failing = Family::gauge(
        "storwatch_sata_attribute_failing",
        "1 when the attribute is at or below its threshold now (when=now) or was (when=past).",
    );
    for r in readings {
        let d = r.name.as_str();
        info.push(
            [
                ("device", d),
                ("hctl", &r.hctl),
                ("vendor", &r.vendor),
                ("model", &r.model),
                ("firmware", &r.firmware),
                ("state", &r.state),
            ],
            1.0,
        );
        running.push([("device", d)], f64::from(u8::from(r.state == "running")));
        if let Some(t) = r.totals {
            requests.push([("device", d)], t[0] as f64);
            done.push([("device", d)], t[1] as f64);
            errs.push([("device", d)], t[ERR] as f64);
            tmo.push([("device", d)], t[TMO] as f64);
        }
        own.push([("device", d)], r.own_errors as f64);
        if let Some(s) = r.link_speed {
            link.push([("device", d)], s);
        }
        if let Some(n) = r.speed_downs {
            spdn.push([("device", d)], n as f64);
        }
        for (s, label) in STATES {
            state.push([("device", d), ("state", label)], f64::from(u8::from(s == r.smart_state)));
        }
        skips.push([("device", d)], r.standby_skips as f64);
        if let Some((t, _)) = r.drivetemp {
            temp.push([("device", d), ("source", "drivetemp")], t);
        }
        let Some(s) = &r.smart else { continue };
        if let Some(t) = smart::temperature(&s.attributes) {
            temp.push([("device", d), ("source", "smart")], t as f64);
        }
        if let Some(p) = s.passed {
            passed.push([("device", d)], f64::from(u8::from(p)));
        }
        for a in &s.attributes {
            let id = a.id.to_string();
            let l = [("device", d), ("id", id.as_str()), ("name", a.name)];
            value.push(l, f64::from(a.value));
            worst.push(l, f64::from(a.worst));
            if let Some(t) = a.threshold {
                thresh.push(l, f64::from(t));
            }
            raw.push(l, a.raw as f64);
            decoded.push(l, a.decoded as f64);
            for (when, v) in [("now", a.failing_now()), ("past", a.failed_in_past())] {
                failing.push(
                    [("device", d), ("id", id.as_str()), ("name", a.name), ("when", when)],
                    f64::from(u8::from(v)),
                );
            }
        }
    }
    vec![
        info, running, requests, done, errs, tmo, own, link, spdn, temp, state, skips, passed, value, worst,
        thresh, raw, decoded, failing,
    ]
}

impl Collector for Sata {
    fn name(&self) -> &'static str {
        "sata"
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
    //! `AtaCommands`: a stand-in for a drive, because what these cover (standby, rising
    //! reallocation counts, a failing status, wrapped counters, drivetemp) QEMU's disk cannot do.
    //! The real SG_IO path runs against QEMU's AHCI disk in tests/sata.rs.
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone)]
    struct Drive {
        power: u8,
        passed: Option<bool>,
        data: Vec<u8>,
        thresholds: Vec<u8>,
        /// What every command answers instead, when set.
        fail: Option<fn() -> SgError>,
        commands: u32,
    }

    struct Fake(Arc<Mutex<Drive>>);

    impl Fake {
        fn run<T>(&self, ok: impl Fn(&Drive) -> T) -> Result<T, SgError> {
            let mut d = self.0.lock().unwrap();
            d.commands += 1;
            match d.fail {
                Some(f) => Err(f()),
                None => Ok(ok(&d)),
            }
        }
    }

    impl AtaCommands for Fake {
        fn check_power_mode(&self) -> Result<u8, SgError> {
            self.run(|d| d.power)
        }
        fn smart_read_data(&self) -> Result<Vec<u8>, SgError> {
            self.run(|d| d.data.clone())
        }
        fn smart_read_thresholds(&self) -> Result<Vec<u8>, SgError> {
            self.run(|d| d.thresholds.clone())
        }
        fn smart_return_status(&self) -> Result<Option<bool>, SgError> {
            self.run(|d| d.passed)
        }
        fn take_error_results(&self) -> u32 {
            0
        }
    }

    fn checksum(p: &mut [u8]) {
        p[511] = 0;
        p[511] = p.iter().fold(0u8, |s, b| s.wrapping_add(*b)).wrapping_neg();
    }

    /// Attributes 5 (raw `realloc`, value `v5`), 194 (38 °C) and 199.
    fn data(realloc: u64, v5: u8) -> Vec<u8> {
        let mut p = vec![0u8; smart::PAGE_LEN];
        for (i, (id, v, raw)) in
            [(5u8, v5, realloc), (194, 62, 0x0028_0014_0026), (199, 200, 0)].iter().enumerate()
        {
            let e = &mut p[2 + 12 * i..14 + 12 * i];
            (e[0], e[1], e[3], e[4]) = (*id, 0x33, *v, (*v).min(100));
            e[5..11].copy_from_slice(&raw.to_le_bytes()[..6]);
        }
        checksum(&mut p);
        p
    }

    fn thresholds() -> Vec<u8> {
        let mut p = vec![0u8; smart::PAGE_LEN];
        for (i, (id, t)) in [(5u8, 36u8), (194, 0), (199, 0)].iter().enumerate() {
            (p[2 + 12 * i], p[3 + 12 * i]) = (*id, *t);
        }
        checksum(&mut p);
        p
    }

    fn drive() -> Arc<Mutex<Drive>> {
        Arc::new(Mutex::new(Drive {
            power: 0xff,
            passed: Some(true),
            data: data(0, 100),
            thresholds: thresholds(),
            fail: None,
            commands: 0,
        }))
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// sda behind ata3 (with drivetemp bound), laid out as the kernel does: the class entry is a
    /// symlink into /sys/devices.
    fn sysfs(ioerr: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let scsi = "devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0";
        for (f, v) in [
            ("state", "running"),
            ("vendor", "ATA     "),
            ("model", "WDC WD40EFRX"),
            ("rev", "0A82"),
            ("iorequest_cnt", "0xfffffff0"),
            ("iodone_cnt", "0xfffffff0"),
            ("ioerr_cnt", ioerr),
            ("iotmo_cnt", "0x0"),
            ("power/runtime_status", "active"),
            ("hwmon/hwmon4/name", "drivetemp"),
            ("hwmon/hwmon4/temp1_input", "38000"),
            ("hwmon/hwmon4/temp1_max", "55000"),
        ] {
            write(r, &format!("{scsi}/{f}"), &format!("{v}\n"));
        }
        write(r, &format!("{scsi}/block/sda/dev"), "8:0\n");
        write(r, "devices/ata_link/link3/sata_spd", "6.0 Gbps\n");
        write(r, "devices/ata_device/dev3.0/spdn_cnt", "1\n");
        std::fs::create_dir_all(r.join("class/scsi_disk")).unwrap();
        std::fs::create_dir_all(r.join("block")).unwrap();
        std::fs::create_dir_all(r.join("class/ata_link")).unwrap();
        std::fs::create_dir_all(r.join("class/ata_device")).unwrap();
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, r.join(at)).unwrap();
        std::fs::create_dir_all(r.join(format!("{scsi}/scsi_disk/2:0:0:0"))).unwrap();
        link("../..", &format!("{scsi}/scsi_disk/2:0:0:0/device"));
        link(&format!("../../{scsi}/scsi_disk/2:0:0:0"), "class/scsi_disk/2:0:0:0");
        link(&format!("../{scsi}/block/sda"), "block/sda");
        link("../..", &format!("{scsi}/block/sda/device"));
        link("../../devices/ata_link/link3", "class/ata_link/link3");
        link("../../devices/ata_device/dev3.0", "class/ata_device/dev3.0");
        write(r, "dev/sda", "");
        d
    }

    fn collector(root: &Path, drive: Arc<Mutex<Drive>>) -> Sata {
        let paths = Paths { sysfs: root.to_owned(), dev: root.join("dev"), ..Paths::default() };
        let open: Opener = Box::new(move |path| {
            assert!(path.ends_with("dev/sda"), "{}", path.display());
            Box::new(Fake(drive.clone()))
        });
        let filter = DeviceFilter::new(None, None);
        let (health, thermal) = (SataHealthCheck::default(), ThermalCheck::default());
        Sata::with_opener(paths, Duration::from_secs(60), filter, health, thermal, open)
    }

    fn value(out: &Output, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = out.families.iter().find(|f| f.name == name)?;
        let s = f
            .samples
            .iter()
            .find(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v)))?;
        Some(s.value)
    }

    fn check(out: &Output, subject: &str) -> Option<bool> {
        out.checks.iter().find(|r| r.check == "sata_health" && r.subject == subject).map(|r| r.ok)
    }

    fn state(out: &Output) -> &str {
        let f = out.families.iter().find(|f| f.name == "storwatch_sata_smart_state").unwrap();
        let s = f.samples.iter().find(|s| s.value == 1.0).unwrap();
        &s.labels.iter().find(|(k, _)| *k == "state").unwrap().1
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_counter("0x1f\n"), Some(31));
        assert_eq!(parse_counter("0xffffffff"), Some(u32::MAX));
        assert_eq!(parse_counter("0x100000001"), Some(1), "a 64-bit print keeps the low 32 bits");
        for bad in ["31", "0x", "0xg", "", "0x1ffffffffffffffff"] {
            assert_eq!(parse_counter(bad), None, "{bad}");
        }
        assert_eq!(parse_link_speed("6.0 Gbps"), Some(750_000_000.0));
        assert_eq!(parse_link_speed("1.5 Gbps\n"), Some(187_500_000.0));
        assert_eq!(parse_link_speed("<unknown>"), None);
        assert_eq!(
            ata_port(Path::new("/sys/devices/pci0000:00/0000:00:1f.2/ata12/host11/target11:0:0")),
            Some(12)
        );
        assert_eq!(ata_port(Path::new("/sys/devices/pci0000:00/0000:00:05.0/virtio0/host6")), None);
    }

    #[test]
    fn health_rises_wraps_and_drivetemp() {
        let sys = sysfs("0xfffffffe");
        let d = drive();
        let mut c = collector(sys.path(), d.clone());
        let t0 = Instant::now();
        let out = c.collect_at(t0).unwrap();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let sda = [("device", "sda")];
        assert_eq!(state(&out), "available");
        assert_eq!(
            value(&out, "storwatch_sata_info", &[("model", "WDC WD40EFRX"), ("hctl", "2:0:0:0")]),
            Some(1.0)
        );
        assert_eq!(value(&out, "storwatch_sata_temperature_celsius", &[("source", "drivetemp")]), Some(38.0));
        assert_eq!(value(&out, "storwatch_sata_temperature_celsius", &[("source", "smart")]), Some(38.0));
        assert_eq!(value(&out, "storwatch_sata_link_speed_bytes_per_second", &sda), Some(750e6));
        assert_eq!(value(&out, "storwatch_sata_link_speed_downs_total", &sda), Some(1.0));
        assert_eq!(value(&out, "storwatch_sata_io_errors_total", &sda), Some(f64::from(0xfffffffeu32)));
        assert_eq!(value(&out, "storwatch_sata_attribute_decoded", &[("id", "194")]), Some(38.0));
        assert_eq!(value(&out, "storwatch_sata_attribute_threshold", &[("id", "5")]), Some(36.0));
        assert!(out.checks.iter().all(|r| r.ok), "{:?}", out.checks);
        assert_eq!(out.checks.len(), 4);
        let t = out.checks.iter().find(|r| r.check == "thermal").unwrap();
        assert_eq!(
            (t.subject.as_str(), t.value, t.threshold),
            ("sda", Some(38.0), Some(55.0)),
            "drivetemp's limit"
        );

        // A minute later the counters wrapped (0xfffffffe -> 0x3: five errors) and 5 rose.
        write(sys.path(), "block/sda/device/ioerr_cnt", "0x3\n");
        d.lock().unwrap().data = data(8, 100);
        let out = c.collect_at(t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(
            value(&out, "storwatch_sata_io_errors_total", &sda),
            Some(f64::from(0xfffffffeu32) + 5.0),
            "the wrap undone"
        );
        assert_eq!(check(&out, "sda io_errors"), Some(false));
        assert_eq!(check(&out, "sda attributes"), Some(false));
        assert_eq!(check(&out, "sda"), Some(true), "rising is not failing");
        let r = out.checks.iter().find(|r| r.subject == "sda attributes").unwrap();
        assert_eq!(r.observed, "5 Reallocated_Sector_Ct rose 0s ago");

        // Then the value crosses the threshold and the status says failed.
        {
            let mut d = d.lock().unwrap();
            (d.data, d.passed) = (data(8, 30), Some(false));
        }
        let out = c.collect_at(t0 + Duration::from_secs(120)).unwrap();
        assert_eq!(check(&out, "sda"), Some(false));
        assert_eq!(value(&out, "storwatch_sata_smart_passed", &sda), Some(0.0));
        assert_eq!(
            value(&out, "storwatch_sata_attribute_failing", &[("id", "5"), ("when", "now")]),
            Some(1.0)
        );

        // 16 minutes after the rises, nothing new: those subjects pass again.
        let out = c.collect_at(t0 + Duration::from_secs(17 * 60)).unwrap();
        assert_eq!(check(&out, "sda attributes"), Some(true));
        assert_eq!(check(&out, "sda io_errors"), Some(true));
    }

    #[test]
    fn standby_is_not_woken() {
        let sys = sysfs("0x0");
        let d = drive();
        let mut c = collector(sys.path(), d.clone());
        let t0 = Instant::now();
        c.collect_at(t0).unwrap();
        let before = d.lock().unwrap().commands;
        assert_eq!(before, 4, "power mode, status, data, thresholds");
        d.lock().unwrap().power = 0x00;
        let out = c.collect_at(t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(d.lock().unwrap().commands, before + 1, "only CHECK POWER MODE");
        assert_eq!(state(&out), "standby");
        assert_eq!(value(&out, "storwatch_sata_smart_standby_skips_total", &[("device", "sda")]), Some(1.0));
        assert_eq!(
            value(&out, "storwatch_sata_attribute_normalized", &[("id", "5")]),
            Some(100.0),
            "last reading kept"
        );
        assert!(out.errors.is_empty());
        // Runtime PM suspended the disk: no command at all.
        write(sys.path(), "block/sda/device/power/runtime_status", "suspended\n");
        let out = c.collect_at(t0 + Duration::from_secs(120)).unwrap();
        assert_eq!(d.lock().unwrap().commands, before + 1);
        assert_eq!(value(&out, "storwatch_sata_smart_standby_skips_total", &[("device", "sda")]), Some(2.0));
    }

    #[test]
    fn unsupported_denied_and_bad_pages() {
        // No ATA device behind the disk: asked once, then never again; no errors.
        let sys = sysfs("0x0");
        let d = drive();
        d.lock().unwrap().fail = Some(|| SgError::Unsupported);
        let mut c = collector(sys.path(), d.clone());
        let t0 = Instant::now();
        for i in 0..3 {
            let out = c.collect_at(t0 + Duration::from_secs(60 * i)).unwrap();
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            assert_eq!(state(&out), "unsupported");
            let subjects: Vec<_> = out.checks.iter().map(|r| (r.check, r.subject.as_str())).collect();
            assert_eq!(
                subjects,
                [("sata_health", "sda io_errors"), ("thermal", "sda")],
                "drivetemp still judged"
            );
        }
        assert_eq!(d.lock().unwrap().commands, 1);

        // No CAP_SYS_RAWIO: a state and one log line, not an error each pass.
        let d = drive();
        d.lock().unwrap().fail = Some(|| SgError::Os(std::io::Error::from_raw_os_error(libc::EPERM)));
        let mut c = collector(sys.path(), d.clone());
        for i in 0..2 {
            let out = c.collect_at(t0 + Duration::from_secs(60 * i)).unwrap();
            assert!(out.errors.is_empty());
            assert_eq!(state(&out), "denied");
            assert_eq!(
                value(&out, "storwatch_sata_io_requests_total", &[("device", "sda")]),
                Some(f64::from(0xfffffff0u32))
            );
        }
        assert!(c.warned_permission);

        // A corrupt page: one parse error naming the node, no SMART series, no panic.
        let d = drive();
        d.lock().unwrap().data[100] ^= 0xff;
        let mut c = collector(sys.path(), d);
        let out = c.collect_at(t0).unwrap();
        assert_eq!(out.errors.len(), 1);
        assert!(
            out.errors[0]
                .message
                .ends_with("dev/sda: SMART READ DATA: bad checksum: the page sums to 0xff mod 256, not 0"),
            "{}",
            out.errors[0]
        );
        assert_eq!(state(&out), "error");
        assert_eq!(value(&out, "storwatch_sata_attribute_normalized", &[("id", "5")]), None);
    }

    #[test]
    fn disk_replaced_or_gone() {
        let sys = sysfs("0x10");
        let mut c = collector(sys.path(), drive());
        let t0 = Instant::now();
        c.collect_at(t0).unwrap();
        // The same name, a new disk (new dev number), counters back at 0: a fresh start.
        write(sys.path(), "block/sda/dev", "8:16\n");
        write(sys.path(), "block/sda/device/ioerr_cnt", "0x0\n");
        let out = c.collect_at(t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(value(&out, "storwatch_sata_io_errors_total", &[("device", "sda")]), Some(0.0));
        assert_eq!(check(&out, "sda io_errors"), Some(true));
        std::fs::remove_file(sys.path().join("class/scsi_disk/2:0:0:0")).unwrap();
        let out = c.collect_at(t0 + Duration::from_secs(120)).unwrap();
        assert!(out.families.iter().all(|f| f.samples.is_empty()) && out.errors.is_empty());
        assert!(c.disks.is_empty());
        let empty = tempfile::tempdir().unwrap();
        let out = collector(empty.path(), drive()).collect_at(t0).unwrap();
        assert!(out.families.is_empty() && out.errors.is_empty(), "no SCSI disks here");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = parse_counter(&s);
            let _ = parse_link_speed(&s);
        }
    }
}
