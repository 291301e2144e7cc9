//! SATA and SAS disk health without smartctl: for every SCSI disk the kernel's iostat counters,
//! device state, ATA link and drivetemp temperature from sysfs (no privilege), and for disks with
//! an ATA device behind them SMART through SG_IO (`crate::device::sgio`, CAP_SYS_RAWIO), decoded by the pure
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

pub mod smart;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::smart::{Attribute, PowerMode};
use super::{Collected, DeviceFilter, Sample as AnySample, Source};
use crate::device::Opener;
use crate::device::sgio::{self, AtaCommands, SgError};
use crate::error::CollectError;
use crate::paths::Paths;
use crate::read::{attr_or_note, read_attr};

/// What the kernel waits for one ATA command before aborting it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

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
pub const COUNTERS: [&str; 4] = ["iorequest_cnt", "iodone_cnt", "ioerr_cnt", "iotmo_cnt"];
/// `ioerr_cnt`'s and `iotmo_cnt`'s places in [`COUNTERS`].
pub const ERR: usize = 2;
pub const TMO: usize = 3;

/// Why SMART is (not) read for a disk this pass: the `state` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmartState {
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

pub const STATES: [(SmartState, &str); 5] = [
    (SmartState::Available, "available"),
    (SmartState::Standby, "standby"),
    (SmartState::Unsupported, "unsupported"),
    (SmartState::Denied, "denied"),
    (SmartState::Error, "error"),
];

/// One SMART reading.
#[derive(Debug, Clone, PartialEq)]
pub struct SmartReading {
    /// SMART RETURN STATUS: passed; None when the registers said neither passed nor failed.
    pub passed: Option<bool>,
    pub attributes: Vec<Attribute>,
}

/// One pass's reading of a disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub name: String,
    pub hctl: String,
    /// `dev` and SCSI address: a new identity is a new disk.
    pub identity: String,
    pub vendor: String,
    pub model: String,
    pub firmware: String,
    pub state: String,
    /// The four counters of [`COUNTERS`] as the kernel prints them (32 bits that wrap), when all
    /// four could be read.
    pub counters: Option<[u32; 4]>,
    /// The agent's own commands of the last pass that completed with a non-GOOD status: each is
    /// in `ioerr_cnt` too.
    pub own_errors: u32,
    pub link_speed: Option<f64>,
    pub speed_downs: Option<u64>,
    /// drivetemp's temperature and its `temp1_max`, °C.
    pub drivetemp: Option<(f64, Option<f64>)>,
    pub smart_state: SmartState,
    /// This pass's SMART reading, or the last one while the disk sleeps (it cannot change).
    pub smart: Option<SmartReading>,
}

/// One read of every SCSI disk that passes the filter, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub disks: Vec<Disk>,
}

/// What the source keeps about one disk between passes.
struct Known {
    identity: String,
    ata: Box<dyn AtaCommands + Send>,
    /// No ATA device answers: not asked again while the disk stays the same.
    unsupported: bool,
    smart: Option<SmartReading>,
}

pub struct Sata {
    paths: Paths,
    interval: Duration,
    devices: DeviceFilter,
    open: Opener<dyn AtaCommands + Send>,
    disks: BTreeMap<String, Known>,
    warned_permission: bool,
}

impl Sata {
    pub fn new(paths: Paths, interval: Duration, devices: DeviceFilter) -> Self {
        let open: Opener<dyn AtaCommands + Send> =
            Box::new(|path| Box::new(sgio::Device::new(path.to_owned(), COMMAND_TIMEOUT)));
        Sata::with_opener(paths, interval, devices, open)
    }

    /// As `new`, with the SG_IO interface made by `open` (crafted pages in unit tests).
    pub fn with_opener(
        paths: Paths,
        interval: Duration,
        devices: DeviceFilter,
        open: Opener<dyn AtaCommands + Send>,
    ) -> Self {
        Sata { paths, interval, devices, open, disks: BTreeMap::new(), warned_permission: false }
    }

    /// One read of every disk.
    pub fn read_all(&mut self) -> Result<(Sample, Vec<CollectError>), CollectError> {
        let class = self.paths.sys("class/scsi_disk");
        let entries = match std::fs::read_dir(&class) {
            Ok(e) => e,
            // No SCSI disk driver loaded, no SCSI disks here: not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.disks.clear();
                return Ok((Sample::default(), Vec::new()));
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
        let disks = found.iter().map(|(name, hctl)| self.read(name, hctl, &mut errors)).collect();
        self.disks.retain(|n, _| found.iter().any(|(f, _)| f == n));
        Ok((Sample { disks }, errors))
    }

    fn read(&mut self, name: &str, hctl: &str, errors: &mut Vec<CollectError>) -> Disk {
        let dev = self.paths.sys("block").join(name).join("device");
        let mut attr = |file: &str| attr_or_note(&dev.join(file), errors);
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
        let fresh =
            || Known { identity: identity.clone(), ata: open(&node), unsupported: false, smart: None };
        let d = self.disks.entry(name.to_owned()).or_insert_with(fresh);
        if d.identity != identity {
            *d = fresh();
        }
        // The agent's own commands of the last pass are in this pass's counter growth.
        let own_errors = d.ata.take_error_results();
        let (smart_state, denied) = if d.unsupported {
            (SmartState::Unsupported, false)
        } else if state != "running" && !state.is_empty() {
            // Offline, blocked, deleted: no commands now.
            (SmartState::Error, false)
        } else if runtime.as_deref() == Some("suspended") {
            // Runtime PM has the disk suspended: any command would resume (spin up) it.
            (SmartState::Standby, false)
        } else {
            read_smart(d, &node, name, errors)
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
        Disk {
            name: name.to_owned(),
            hctl: hctl.to_owned(),
            identity,
            vendor,
            model,
            firmware,
            state,
            counters: have_counters.then_some(raw),
            own_errors,
            link_speed,
            speed_downs,
            drivetemp,
            smart_state,
            smart: d.smart.clone(),
        }
    }

    /// The libata link speed and speed-down count of the port a disk hangs off, if any.
    fn ata_link(&self, hctl: &str, errors: &mut Vec<CollectError>) -> (Option<f64>, Option<u64>) {
        let resolved = std::fs::canonicalize(self.paths.sys("class/scsi_disk").join(hctl).join("device"));
        let Some(port) = resolved.ok().and_then(|p| ata_port(&p)) else { return (None, None) };
        let mut attr = |path: PathBuf| attr_or_note(&path, errors);
        let speed = attr(self.paths.sys(format!("class/ata_link/link{port}/sata_spd")))
            .and_then(|s| parse_link_speed(&s));
        let downs = attr(self.paths.sys(format!("class/ata_device/dev{port}.0/spdn_cnt")))
            .and_then(|s| s.trim().parse().ok());
        (speed, downs)
    }
}

/// CHECK POWER MODE, then (unless in standby) RETURN STATUS, READ DATA and READ THRESHOLDS.
/// Returns the state and whether the commands were refused for lack of privilege.
fn read_smart(d: &mut Known, node: &Path, name: &str, errors: &mut Vec<CollectError>) -> (SmartState, bool) {
    // What a failed command means for the disk: no privilege and no ATA device are states, not
    // errors (the first is logged once, the second is not asked again).
    let fail = |what: &str, e: SgError, d: &mut Known, errors: &mut Vec<CollectError>| {
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
        errors.push(CollectError::new(e.kind(), format!("{}: {what}: {e}", node.display())));
        (SmartState::Error, false)
    };
    match d.ata.check_power_mode() {
        Ok(count) if smart::power_mode(count) == PowerMode::Standby => {
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
        let text = attr_or_note(&path, errors)?;
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

impl Source for Sata {
    fn name(&self) -> &'static str {
        "sata"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        let (sample, errors) = self.read_all()?;
        Ok(Collected::new(AnySample::Sata(sample), errors))
    }
}

#[cfg(test)]
mod tests {
    //! The source's logic, through the model, families and checks, on a sysfs tree made here and
    //! crafted pages behind a fake `AtaCommands`: a stand-in for a drive, because what these
    //! cover (standby, rising reallocation counts, a failing status, wrapped counters, drivetemp)
    //! QEMU's disk cannot do. The real SG_IO path runs against QEMU's AHCI disk in tests/sata.rs.
    use super::*;
    use crate::testing::{Out, Pipeline};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

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
        let open: Opener<dyn AtaCommands + Send> = Box::new(move |path| {
            assert!(path.ends_with("dev/sda"), "{}", path.display());
            Box::new(Fake(drive.clone()))
        });
        Sata::with_opener(paths, Duration::from_secs(60), DeviceFilter::all(), open)
    }

    fn value(out: &Out, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        out.value(name, labels)
    }

    fn check(out: &Out, subject: &str) -> Option<bool> {
        out.check("sata_health", subject)
    }

    fn state(out: &Out) -> &str {
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
        let mut p = Pipeline::default();
        let mut c = collector(sys.path(), d.clone());
        let t0 = Instant::now();
        let out = p.run(&mut c, t0).unwrap();
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
        assert!(out.checks.iter().all(|r| r.ok()), "{:?}", out.checks);
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
        let out = p.run(&mut c, t0 + Duration::from_secs(60)).unwrap();
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
        let out = p.run(&mut c, t0 + Duration::from_secs(120)).unwrap();
        assert_eq!(check(&out, "sda"), Some(false));
        assert_eq!(value(&out, "storwatch_sata_smart_passed", &sda), Some(0.0));
        assert_eq!(
            value(&out, "storwatch_sata_attribute_failing", &[("id", "5"), ("when", "now")]),
            Some(1.0)
        );

        // 16 minutes after the rises, nothing new: those subjects pass again.
        let out = p.run(&mut c, t0 + Duration::from_secs(17 * 60)).unwrap();
        assert_eq!(check(&out, "sda attributes"), Some(true));
        assert_eq!(check(&out, "sda io_errors"), Some(true));
    }

    #[test]
    fn standby_is_not_woken() {
        let sys = sysfs("0x0");
        let d = drive();
        let mut p = Pipeline::default();
        let mut c = collector(sys.path(), d.clone());
        let t0 = Instant::now();
        p.run(&mut c, t0).unwrap();
        let before = d.lock().unwrap().commands;
        assert_eq!(before, 4, "power mode, status, data, thresholds");
        d.lock().unwrap().power = 0x00;
        let out = p.run(&mut c, t0 + Duration::from_secs(60)).unwrap();
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
        let out = p.run(&mut c, t0 + Duration::from_secs(120)).unwrap();
        assert_eq!(d.lock().unwrap().commands, before + 1);
        assert_eq!(value(&out, "storwatch_sata_smart_standby_skips_total", &[("device", "sda")]), Some(2.0));
    }

    #[test]
    fn unsupported_denied_and_bad_pages() {
        // No ATA device behind the disk: asked once, then never again; no errors.
        let sys = sysfs("0x0");
        let d = drive();
        d.lock().unwrap().fail = Some(|| SgError::Unsupported);
        let mut p = Pipeline::default();
        let mut c = collector(sys.path(), d.clone());
        let t0 = Instant::now();
        for i in 0..3 {
            let out = p.run(&mut c, t0 + Duration::from_secs(60 * i)).unwrap();
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
        d.lock().unwrap().fail = Some(|| SgError::Ioctl(std::io::Error::from_raw_os_error(libc::EPERM)));
        let mut p = Pipeline::default();
        let mut c = collector(sys.path(), d.clone());
        for i in 0..2 {
            let out = p.run(&mut c, t0 + Duration::from_secs(60 * i)).unwrap();
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
        let mut p = Pipeline::default();
        let mut c = collector(sys.path(), d);
        let out = p.run(&mut c, t0).unwrap();
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
        let mut p = Pipeline::default();
        let mut c = collector(sys.path(), drive());
        let t0 = Instant::now();
        p.run(&mut c, t0).unwrap();
        // The same name, a new disk (new dev number), counters back at 0: a fresh start.
        write(sys.path(), "block/sda/dev", "8:16\n");
        write(sys.path(), "block/sda/device/ioerr_cnt", "0x0\n");
        let out = p.run(&mut c, t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(value(&out, "storwatch_sata_io_errors_total", &[("device", "sda")]), Some(0.0));
        assert_eq!(check(&out, "sda io_errors"), Some(true));
        std::fs::remove_file(sys.path().join("class/scsi_disk/2:0:0:0")).unwrap();
        let out = p.run(&mut c, t0 + Duration::from_secs(120)).unwrap();
        assert!(out.no_samples() && out.errors.is_empty());
        assert!(c.disks.is_empty());
        let empty = tempfile::tempdir().unwrap();
        let out = Pipeline::default().run(&mut collector(empty.path(), drive()), t0).unwrap();
        assert!(out.no_samples() && out.errors.is_empty(), "no SCSI disks here");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = parse_counter(&s);
            let _ = parse_link_speed(&s);
        }
    }
}
