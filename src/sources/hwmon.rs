//! Temperatures and thermal throttling: hwmon chips and their temperature sensors (with
//! node_exporter's chip naming), drive sensors joined to their block devices, thermal zones and
//! their trip points, cooling devices and the CPUs' throttle counters.
//!
//! ```text
//! <sysfs>/class/hwmon/hwmon0 -> ../../devices/platform/coretemp.0/hwmon/hwmon0
//!     name  coretemp     temp1_input 55000 (m°C)  temp1_max 84000  temp1_label "Physical id 0"
//! <sysfs>/bus/pci/devices/*/nvme/nvme0/hwmon3      an NVMe controller's hwmon (older kernels and
//!     some captured trees do not link it from class/hwmon); temp1 = Composite, temp1_alarm = the
//!     SMART temperature warning bit (the kernel reads the log itself: no privilege needed)
//! <hwmon>/device -> .../target0:0:0/0:0:0:0         drivetemp: the SCSI device, its block/sdX
//! <sysfs>/class/thermal/thermal_zone0/{type,temp,trip_point_N_temp,trip_point_N_type}
//! <sysfs>/class/thermal/cooling_device0/{type,cur_state,max_state}
//! <sysfs>/devices/system/cpu/cpuN/thermal_throttle/{core,package}_throttle_count
//! ```
//!
//! Some drivers fail reads of single files (EAGAIN, EIO): such a file is left out and reported as
//! an error; the rest of the chip is still exported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Collected, Sample as AnySample, Source};
use crate::error::CollectError;
use crate::paths::Paths;
use crate::read::{attr_or_note as attr, file_name, list};

/// node_exporter's `cleanMetricName`: lower case, anything but `[a-z0-9:_]` to `_`, `_` trimmed.
pub fn clean_name(s: &str) -> String {
    let lower: String = s
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' { c } else { '_' })
        .collect();
    lower.trim_matches('_').to_owned()
}

/// `temp3_crit_alarm` -> (`temp3`, `crit_alarm`); `temp3` alone is the input. Other sensor types
/// and malformed names give `None`.
pub fn split_temp_file(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("temp")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (sensor, prop) = name.split_at(4 + digits);
    match prop {
        "" => Some((sensor, "input")),
        p => p.strip_prefix('_').filter(|p| !p.is_empty()).map(|p| (sensor, p)),
    }
}

/// A sysfs number (m°C, counts) as f64; `None` for anything else.
pub fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// node_exporter's chip label: `<parent>_<device>` of the resolved `device` link
/// (`platform_coretemp_0`), else the `name` file, else the hwmon directory's own name.
pub fn chip_label(device: Option<&Path>, name: Option<&str>, dir_name: &str) -> Option<String> {
    if let Some(dev) = device {
        let dev_name = dev.file_name().map(|n| clean_name(&n.to_string_lossy())).unwrap_or_default();
        let dev_type = dev
            .parent()
            .and_then(Path::file_name)
            .map(|n| clean_name(&n.to_string_lossy()))
            .unwrap_or_default();
        if !dev_type.is_empty() && !dev_name.is_empty() {
            return Some(format!("{dev_type}_{dev_name}"));
        }
        if !dev_name.is_empty() {
            return Some(dev_name);
        }
    }
    if let Some(n) = name.map(clean_name).filter(|n| !n.is_empty()) {
        return Some(n);
    }
    Some(clean_name(dir_name)).filter(|n| !n.is_empty())
}

/// The temperature properties read (`temp<N>_<prop>`; `temp<N>_input` is `input`).
pub const TEMP_PROPS: [&str; 10] =
    ["input", "min", "max", "crit", "lcrit", "emergency", "alarm", "min_alarm", "max_alarm", "crit_alarm"];

/// One hwmon chip as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chip {
    pub label: String,
    pub name: Option<String>,
    /// sensor -> prop -> value (raw sysfs number: m°C); labels apart.
    pub sensors: BTreeMap<String, BTreeMap<String, f64>>,
    pub labels: BTreeMap<String, String>,
    /// Block devices (and NVMe controllers) this chip measures.
    pub devices: Vec<String>,
}

impl Chip {
    /// A property of the chip's first sensor (`temp1`: the drive's own), in °C (m°C / 1000),
    /// raw for an alarm.
    pub fn temp1(&self, prop: &str) -> Option<f64> {
        let v = *self.sensors.get("temp1")?.get(prop)?;
        Some(if prop.ends_with("alarm") { v } else { v / 1000.0 })
    }
}

/// A thermal zone and its trip points (temperatures in m°C).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Zone {
    pub zone: String,
    pub kind: String,
    pub temp: Option<f64>,
    /// (trip index, trip type, temperature).
    pub trips: Vec<(String, String, f64)>,
}

/// A cooling device's throttle state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cooling {
    pub name: String,
    pub kind: String,
    pub cur: Option<f64>,
    pub max: Option<f64>,
}

/// One read of the thermal sysfs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub chips: Vec<Chip>,
    pub zones: Vec<Zone>,
    pub cooling: Vec<Cooling>,
    /// CPU thermal throttle counts once per (package, core), and once per package.
    pub core_throttles: BTreeMap<(String, String), f64>,
    pub package_throttles: BTreeMap<String, f64>,
}

pub struct Hwmon {
    paths: Paths,
    interval: Duration,
}

impl Hwmon {
    pub fn new(paths: Paths, interval: Duration) -> Self {
        Hwmon { paths, interval }
    }

    pub fn read(&self) -> (Sample, Vec<CollectError>) {
        let mut errors = Vec::new();
        let chips =
            hwmon_dirs(&self.paths).iter().filter_map(|d| read_chip(&self.paths, d, &mut errors)).collect();
        let (zones, cooling) = read_thermal(&self.paths, &mut errors);
        let (core_throttles, package_throttles) = read_cpu_throttles(&self.paths, &mut errors);
        (Sample { chips, zones, cooling, core_throttles, package_throttles }, errors)
    }
}

impl Source for Hwmon {
    fn name(&self) -> &'static str {
        "hwmon"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        let (sample, errors) = self.read();
        Ok(Collected::new(AnySample::Hwmon(sample), errors))
    }
}

fn number(path: &Path, errors: &mut Vec<CollectError>) -> Option<f64> {
    let text = attr(path, errors)?;
    let v = parse_number(&text);
    if v.is_none() {
        errors.push(CollectError::parse(path, format_args!("{text:?} is not a number")));
    }
    v
}

/// Every hwmon directory: class/hwmon, plus NVMe controllers' hwmon found through the PCI bus and
/// class/nvme; each once (by resolved path), in class/hwmon's sorted order first.
fn hwmon_dirs(paths: &Paths) -> Vec<PathBuf> {
    let mut out = list(&paths.sys("class/hwmon"));
    let is_hwmon = |p: &PathBuf| file_name(p).starts_with("hwmon");
    let mut controllers: Vec<PathBuf> =
        list(&paths.sys("bus/pci/devices")).iter().flat_map(|d| list(&d.join("nvme"))).collect();
    controllers.extend(list(&paths.sys("class/nvme")));
    for c in controllers {
        out.extend(list(&c).into_iter().filter(is_hwmon));
        out.extend(list(&c.join("device/hwmon")).into_iter().filter(is_hwmon));
    }
    let mut seen = BTreeSet::new();
    out.retain(|d| d.is_dir() && seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())));
    out
}

fn read_temps(dir: &Path, chip: &mut Chip, errors: &mut Vec<CollectError>) {
    for path in list(dir) {
        let name = file_name(&path);
        let Some((sensor, prop)) = split_temp_file(&name) else { continue };
        if prop == "label" {
            if let Some(l) = attr(&path, errors) {
                chip.labels.entry(sensor.to_owned()).or_insert(l);
            }
        } else if TEMP_PROPS.contains(&prop)
            && let Some(v) = number(&path, errors)
        {
            chip.sensors.entry(sensor.to_owned()).or_default().insert(prop.to_owned(), v);
        }
    }
}

/// The devices a chip measures: an NVMe controller and its namespaces, or the block devices of
/// the SCSI device drivetemp hangs off.
fn joined_devices(paths: &Paths, device: &Path) -> Vec<String> {
    let dev_name = file_name(device);
    let parent = device.parent().map(file_name).unwrap_or_default();
    if parent == "nvme" && dev_name.starts_with("nvme") {
        let own = |name: &str| super::nvme::names::belongs_to(name, &dev_name);
        // Namespaces: nvme0n1 under the controller, or a block device whose `device` is it.
        let mut found = BTreeSet::new();
        for n in list(device).iter().map(|p| file_name(p)).filter(|n| own(n)) {
            found.insert(n);
        }
        for b in list(&paths.sys("block")) {
            let name = file_name(&b);
            if own(&name) || std::fs::canonicalize(b.join("device")).is_ok_and(|d| d == device) {
                found.insert(name);
            }
        }
        let mut out = vec![dev_name.clone()];
        out.extend(found);
        return out;
    }
    list(&device.join("block")).iter().map(|p| file_name(p)).collect()
}

fn read_chip(paths: &Paths, dir: &Path, errors: &mut Vec<CollectError>) -> Option<Chip> {
    let device = std::fs::canonicalize(dir.join("device")).ok();
    let name = attr(&dir.join("name"), errors);
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let label = chip_label(device.as_deref(), name.as_deref(), &file_name(&real))?;
    let mut chip = Chip { label, name: name.map(|n| clean_name(&n)), ..Chip::default() };
    read_temps(dir, &mut chip, errors);
    if dir.join("device").is_dir() {
        read_temps(&dir.join("device"), &mut chip, errors);
    }
    if let Some(d) = &device {
        chip.devices = joined_devices(paths, d);
    }
    Some(chip)
}

fn read_thermal(paths: &Paths, errors: &mut Vec<CollectError>) -> (Vec<Zone>, Vec<Cooling>) {
    let (mut zones, mut cooling) = (Vec::new(), Vec::new());
    for dir in list(&paths.sys("class/thermal")) {
        let entry = file_name(&dir);
        if let Some(zone) = entry.strip_prefix("thermal_zone") {
            let kind = attr(&dir.join("type"), errors).unwrap_or_default();
            let temp = number(&dir.join("temp"), errors);
            let mut trips = Vec::new();
            for f in list(&dir) {
                let name = file_name(&f);
                let Some(n) = name.strip_prefix("trip_point_").and_then(|r| r.strip_suffix("_temp")) else {
                    continue;
                };
                let trip_type = attr(&dir.join(format!("trip_point_{n}_type")), errors).unwrap_or_default();
                if let Some(t) = number(&f, errors) {
                    trips.push((n.to_owned(), trip_type, t));
                }
            }
            zones.push(Zone { zone: zone.to_owned(), kind, temp, trips });
        } else if let Some(name) = entry.strip_prefix("cooling_device") {
            let kind = attr(&dir.join("type"), errors).unwrap_or_default();
            let cur = number(&dir.join("cur_state"), errors);
            let max = number(&dir.join("max_state"), errors);
            cooling.push(Cooling { name: name.to_owned(), kind, cur, max });
        }
    }
    (zones, cooling)
}

/// CPU thermal throttle counters, once per core (`core_id` within `physical_package_id`) and once
/// per package: sibling threads show the same counters.
#[allow(clippy::type_complexity)]
fn read_cpu_throttles(
    paths: &Paths,
    errors: &mut Vec<CollectError>,
) -> (BTreeMap<(String, String), f64>, BTreeMap<String, f64>) {
    let mut cores = BTreeMap::new();
    let mut packages = BTreeMap::new();
    for dir in list(&paths.sys("devices/system/cpu")) {
        let name = file_name(&dir);
        if !name.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())) {
            continue;
        }
        let tt = dir.join("thermal_throttle");
        if !tt.is_dir() {
            continue;
        }
        let topo = |f: &str, errors: &mut Vec<CollectError>| attr(&dir.join("topology").join(f), errors);
        let (Some(package), Some(core)) = (topo("physical_package_id", errors), topo("core_id", errors))
        else {
            continue;
        };
        if !cores.contains_key(&(package.clone(), core.clone()))
            && let Some(v) = number(&tt.join("core_throttle_count"), errors)
        {
            cores.insert((package.clone(), core), v);
        }
        if !packages.contains_key(&package)
            && let Some(v) = number(&tt.join("package_throttle_count"), errors)
        {
            packages.insert(package, v);
        }
    }
    (cores, packages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_as_node_exporter() {
        assert_eq!(clean_name("coretemp.0"), "coretemp_0");
        assert_eq!(clean_name("mt7996_phy0_0\n"), "mt7996_phy0_0");
        assert_eq!(clean_name("..Foo-Bar.."), "foo_bar");
        assert_eq!(
            chip_label(Some(Path::new("/s/devices/platform/coretemp.0")), Some("coretemp"), "hwmon0")
                .unwrap(),
            "platform_coretemp_0"
        );
        assert_eq!(chip_label(None, Some("nct6779"), "hwmon3").unwrap(), "nct6779");
        assert_eq!(chip_label(None, None, "hwmon4").unwrap(), "hwmon4");
        assert_eq!(chip_label(None, Some(""), "..."), None);
    }

    #[test]
    fn temp_files() {
        assert_eq!(split_temp_file("temp1_input"), Some(("temp1", "input")));
        assert_eq!(split_temp_file("temp12_crit_alarm"), Some(("temp12", "crit_alarm")));
        assert_eq!(split_temp_file("temp3"), Some(("temp3", "input")));
        assert_eq!(split_temp_file("temp_input"), None);
        assert_eq!(split_temp_file("temp1_"), None);
        assert_eq!(split_temp_file("fan1_input"), None);
        assert_eq!(parse_number("43850\n"), Some(43850.0));
        assert_eq!(parse_number("-5000"), Some(-5000.0));
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number(""), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = split_temp_file(&s);
            let _ = parse_number(&s);
            let c = clean_name(&s);
            prop_assert!(c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'_'));
            let _ = chip_label(Some(Path::new(&*s)), Some(&s), &s);
        }
    }
}
