//! NVMe health straight from each controller: Identify Controller once, the SMART / Health log and
//! the Error Information log every interval, through the admin passthrough ioctl
//! (`crate::device::nvme`), decoded by the pure parsers of `logs.rs`. Without CAP_SYS_ADMIN the
//! temperatures come from the controller's hwmon instead.
//!
//! ```text
//! <sysfs>/class/nvme/nvme0/state          live        (new|live|resetting|connecting|deleting|dead)
//! <sysfs>/class/nvme/nvme0/serial         deadbeef    (also model, firmware_rev)
//! <sysfs>/class/nvme/nvme0/nvme0n1/       a namespace (nvme0c0n1 with native multipath)
//! <sysfs>/class/nvme/nvme0/hwmon2/temp1_input   49850   (m°C; older kernels: device/hwmon/hwmonN)
//! ```

pub mod logs;
pub mod names;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::logs::{ErrorEntry, IdentifyController, SmartLog};
use super::{Collected, Sample as AnySample, Source};
use crate::device::Opener;
use crate::device::nvme::{self as admin, AdminCommands, AdminError};
use crate::error::{CollectError, ErrorKind};
use crate::paths::Paths;
use crate::read::attr_or_note;

/// What the kernel waits for an admin command before aborting it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Error log entries read each interval, at most (64 × 64 B = one 4 KiB page).
const MAX_ERROR_ENTRIES: u16 = 64;

/// A controller's sysfs facts, read every interval (cheap, unprivileged).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SysFacts {
    pub model: String,
    pub serial: String,
    pub firmware: String,
}

/// One interval's reading of a live controller.
#[derive(Debug, Clone, PartialEq)]
pub struct Controller {
    pub name: String,
    pub facts: SysFacts,
    /// The block devices of its namespaces.
    pub namespaces: Vec<String>,
    pub identify: Option<IdentifyController>,
    /// None when it could not be read (no CAP_SYS_ADMIN, no device node, the command failed).
    pub smart: Option<SmartLog>,
    /// Temperatures from hwmon (sensor label, °C) when the SMART log could not be read.
    pub hwmon: Vec<(String, f64)>,
    /// The Error Information log's entries, when read this interval.
    pub error_log: Option<Vec<ErrorEntry>>,
}

/// One read of every live controller, in the kernel's numbering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub controllers: Vec<Controller>,
}

/// What the source keeps about one live controller between intervals: its command interface and
/// Identify Controller with the sysfs facts it was read under (read again when those change).
struct Known {
    admin: Box<dyn AdminCommands + Send>,
    identify: Option<(SysFacts, IdentifyController)>,
}

pub struct Nvme {
    paths: Paths,
    interval: Duration,
    open: Opener<dyn AdminCommands + Send>,
    controllers: BTreeMap<String, Known>,
    warned_permission: bool,
}

impl Nvme {
    pub fn new(paths: Paths, interval: Duration) -> Self {
        let open: Opener<dyn AdminCommands + Send> =
            Box::new(|path| Box::new(admin::Device::new(path.to_owned(), COMMAND_TIMEOUT)));
        Nvme::with_opener(paths, interval, open)
    }

    /// As `new`, with the admin interface made by `open` (crafted pages in unit tests).
    pub fn with_opener(paths: Paths, interval: Duration, open: Opener<dyn AdminCommands + Send>) -> Self {
        Nvme { paths, interval, open, controllers: BTreeMap::new(), warned_permission: false }
    }

    /// Reads everything about one live controller.
    fn read(&mut self, name: &str, dir: &Path, errors: &mut Vec<CollectError>) -> Controller {
        let facts = SysFacts {
            model: attr_or_note(&dir.join("model"), errors).unwrap_or_default(),
            serial: attr_or_note(&dir.join("serial"), errors).unwrap_or_default(),
            firmware: attr_or_note(&dir.join("firmware_rev"), errors).unwrap_or_default(),
        };
        let mut namespaces: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| names::namespace_device(&e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        namespaces.sort();
        namespaces.dedup();

        let node = self.paths.dev.join(name);
        let open = &self.open;
        let c = self
            .controllers
            .entry(name.to_owned())
            .or_insert_with(|| Known { admin: open(&node), identify: None });
        let mut denied = false;
        let mut fail = |what: &str, e: AdminError, errors: &mut Vec<CollectError>| {
            if e.permission_denied() {
                denied = true;
            } else {
                errors.push(CollectError::new(e.kind(), format!("{}: {what}: {e}", node.display())));
            }
        };
        // No device node (a container without the host's /dev): one error, no commands.
        let present = node.exists();
        if !present {
            c.identify = None;
            errors.push(CollectError::new(
                ErrorKind::Io,
                format!("{}: no such device node (mount the host's /dev at --path.dev)", node.display()),
            ));
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
        let mut error_log = None;
        if let (Some((_, id)), true) = (&c.identify, smart.is_some()) {
            match c.admin.error_log(id.error_log_entries.min(MAX_ERROR_ENTRIES)) {
                Ok(page) => match logs::parse_error_log(&page) {
                    Ok(entries) => error_log = Some(entries),
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
        Controller {
            name: name.to_owned(),
            facts,
            namespaces,
            identify: c.identify.as_ref().map(|(_, id)| id.clone()),
            smart,
            hwmon,
            error_log,
        }
    }

    /// One read of every controller.
    pub fn read_all(&mut self) -> Result<(Sample, Vec<CollectError>), CollectError> {
        let class = self.paths.sys("class/nvme");
        let entries = match std::fs::read_dir(&class) {
            Ok(e) => e,
            // No NVMe driver loaded, no NVMe here: not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.controllers.clear();
                return Ok((Sample::default(), Vec::new()));
            }
            Err(e) => return Err(CollectError::io(&class, &e)),
        };
        let mut found: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| names::is_controller(n))
            .collect();
        found.sort_by_key(|n| names::controller_number(n).unwrap_or(u64::MAX));
        let mut errors = Vec::new();
        let mut controllers = Vec::new();
        for name in &found {
            let dir = class.join(name);
            let state = attr_or_note(&dir.join("state"), &mut errors);
            if state.as_deref() != Some("live") {
                // Resetting, connecting, dead or gone: no commands now, and a fresh Identify once
                // it is live again.
                self.controllers.remove(name);
                continue;
            }
            controllers.push(self.read(name, &dir, &mut errors));
        }
        // A controller that disappeared takes its state with it.
        self.controllers.retain(|n, _| controllers.iter().any(|c| &c.name == n));
        Ok((Sample { controllers }, errors))
    }
}

impl Source for Nvme {
    fn name(&self) -> &'static str {
        "nvme"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        let (sample, errors) = self.read_all()?;
        Ok(Collected::new(AnySample::Nvme(sample), errors))
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
        let Some(text) = attr_or_note(&path, errors) else { continue };
        match text.parse::<i64>() {
            Ok(m) => temps.push((sensor_name(channel - 1), m as f64 / 1000.0)),
            Err(_) => errors.push(CollectError::parse(&path, format_args!("{text:?} is not millidegrees"))),
        }
    }
    temps
}

/// The `sensor` label: `composite`, `sensor1` … `sensor8`.
pub fn sensor_name(index: usize) -> String {
    if index == 0 { "composite".to_owned() } else { format!("sensor{index}") }
}

#[cfg(test)]
mod tests {
    //! The source's logic, through the model, families and checks, on a sysfs tree made here and
    //! crafted pages behind a fake `AdminCommands`: a stand-in for a drive, because what these
    //! cover (thermal-management transitions, rising media errors, new error log entries) QEMU
    //! cannot emulate. The real ioctls run against QEMU's controller in tests/nvme.rs.
    use super::*;
    use crate::checks::Verdict;
    use crate::testing::{Out, Pipeline};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

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
                return Err(AdminError::Ioctl(std::io::Error::from_raw_os_error(libc::EACCES)));
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
        let open: Opener<dyn AdminCommands + Send> = Box::new(move |path| {
            assert!(path.ends_with("dev/nvme0"), "{}", path.display());
            Box::new(Fake(pages.clone()))
        });
        Nvme::with_opener(paths, Duration::from_secs(60), open)
    }

    fn value(out: &Out, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        out.value(name, labels)
    }

    fn check(out: &Out, check: &str, subject: &str) -> Option<bool> {
        out.check(check, subject)
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
        let mut p = Pipeline::default();
        let t0 = Instant::now();
        let out = p.run(&mut c, t0).unwrap();
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
        assert!(out.checks.iter().all(|r| r.ok()), "{:?}", out.checks);

        // One interval later: the drive throttled, a media error, two new error log entries, and
        // the spare and reliability warnings.
        {
            let mut p = pages.lock().unwrap();
            p.smart = Some(smart(0x05, 1, 2));
            p.errors = Some(error_entries(&[(9, 0x281), (8, 0x002), (7, 0x281)]));
        }
        let out = p.run(&mut c, t0 + Duration::from_secs(60)).unwrap();
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
        let out = p.run(&mut c, t0 + Duration::from_secs(17 * 60)).unwrap();
        assert!(out.checks.iter().all(|r| r.ok()), "{:?}", out.checks);
        assert_eq!(
            value(&out, "storwatch_nvme_error_log_new_entries_total", &[("status_type", "media")]),
            Some(1.0)
        );

        // A reset: not live, no commands and no series; live again, Identify again.
        std::fs::write(sys.path().join("class/nvme/nvme0/state"), "resetting\n").unwrap();
        let out = p.run(&mut c, t0 + Duration::from_secs(18 * 60)).unwrap();
        assert!(out.no_samples() && out.checks.is_empty());
        std::fs::write(sys.path().join("class/nvme/nvme0/state"), "live\n").unwrap();
        p.run(&mut c, t0 + Duration::from_secs(19 * 60)).unwrap();
        assert_eq!(pages.lock().unwrap().identify_calls, 2);

        // Removed: its series stop, no error.
        std::fs::remove_dir_all(sys.path().join("class/nvme/nvme0")).unwrap();
        let out = p.run(&mut c, t0 + Duration::from_secs(20 * 60)).unwrap();
        assert!(out.no_samples() && out.errors.is_empty());
        assert!(c.controllers.is_empty() && p.model.nvme().is_some_and(|n| n.state.is_empty()));
    }

    #[test]
    fn without_cap_sys_admin_hwmon_temperatures() {
        let sys = sysfs("live");
        let pages = Arc::new(Mutex::new(Pages { denied: true, ..Pages::default() }));
        let mut c = collector(sys.path(), pages);
        let out = Pipeline::default().run(&mut c, Instant::now()).unwrap();
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
        let verdicts: Vec<_> = out.checks.iter().map(|r| (r.check, r.subject.as_str(), r.verdict)).collect();
        assert_eq!(
            verdicts,
            [("nvme_health", "nvme0", Verdict::Unknown)],
            "without the SMART log the controller's health is unknown, and its temperature not judged"
        );
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
        let out = Pipeline::default().run(&mut c, Instant::now()).unwrap();
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
        let out = Pipeline::default().run(&mut c, Instant::now()).unwrap();
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
        let out = Pipeline::default().run(&mut c, Instant::now()).unwrap();
        assert!(out.no_samples() && out.errors.is_empty());
    }
}
