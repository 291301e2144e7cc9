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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CollectError, Collector, Output, ThermalEvents, read_attr};
use crate::checks;
use crate::config::ThermalCheck;
use crate::metrics::Family;
use crate::paths::Paths;

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

/// The NVMe controller a device name belongs to: `nvme0` for `nvme0` and `nvme0n1`.
pub fn nvme_controller(dev: &str) -> Option<&str> {
    let digits = dev.strip_prefix("nvme")?;
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    (end > 0 && (end == digits.len() || digits[end..].starts_with('n'))).then(|| &dev[..4 + end])
}

/// Whether a drive throttles now: its temperature warning bit (hwmon `temp1_alarm`, NVMe SMART
/// critical warning bit 1) is set, or its temperature reached its own warning threshold (hwmon
/// `temp1_max`: WCTEMP for NVMe, the SCT limit for drivetemp).
pub fn throttling_now(temp: Option<f64>, max: Option<f64>, alarm: Option<f64>) -> bool {
    let over = matches!((temp, max), (Some(t), Some(m)) if m > 0.0 && t >= m);
    over || alarm.is_some_and(|a| a != 0.0)
}

/// The temperature properties exported, each as `storwatch_hwmon_temp_<prop>_celsius` (alarms
/// too, as node_exporter names them).
const TEMP_PROPS: &[(&str, &str)] = &[
    ("input", "storwatch_hwmon_temp_celsius"),
    ("min", "storwatch_hwmon_temp_min_celsius"),
    ("max", "storwatch_hwmon_temp_max_celsius"),
    ("crit", "storwatch_hwmon_temp_crit_celsius"),
    ("lcrit", "storwatch_hwmon_temp_lcrit_celsius"),
    ("emergency", "storwatch_hwmon_temp_emergency_celsius"),
    ("alarm", "storwatch_hwmon_temp_alarm_celsius"),
    ("min_alarm", "storwatch_hwmon_temp_min_alarm_celsius"),
    ("max_alarm", "storwatch_hwmon_temp_max_alarm_celsius"),
    ("crit_alarm", "storwatch_hwmon_temp_crit_alarm_celsius"),
];

/// One hwmon chip as read.
#[derive(Debug, Default)]
struct Chip {
    label: String,
    name: Option<String>,
    /// sensor -> prop -> value (raw sysfs number); labels apart.
    sensors: BTreeMap<String, BTreeMap<String, f64>>,
    labels: BTreeMap<String, String>,
    /// Block devices (and NVMe controllers) this chip measures.
    devices: Vec<String>,
}

pub struct Hwmon {
    paths: Paths,
    interval: Duration,
    check: ThermalCheck,
    /// When each device was last seen throttling, to hold the signal for the check's window.
    throttled_at: HashMap<String, Instant>,
    /// NVMe thermal-management transitions, from the nvme collector.
    events: ThermalEvents,
}

impl Hwmon {
    pub fn new(paths: Paths, interval: Duration, check: ThermalCheck) -> Self {
        Hwmon { paths, interval, check, throttled_at: HashMap::new(), events: ThermalEvents::default() }
    }

    /// Takes the NVMe thermal-management transitions the nvme collector sees into the signal.
    pub fn with_thermal_events(mut self, events: ThermalEvents) -> Self {
        self.events = events;
        self
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| it.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn attr(path: &Path, errors: &mut Vec<CollectError>) -> Option<String> {
    read_attr(path).unwrap_or_else(|e| {
        errors.push(e);
        None
    })
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
        } else if TEMP_PROPS.iter().any(|(p, _)| *p == prop)
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
        let own = |name: &str| {
            name.strip_prefix(&dev_name)
                .and_then(|r| r.strip_prefix('n'))
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|c| c.is_ascii_digit()))
        };
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

impl Collector for Hwmon {
    fn name(&self) -> &'static str {
        "hwmon"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Result<Output, CollectError> {
        let mut errors = Vec::new();
        let chips: Vec<Chip> =
            hwmon_dirs(&self.paths).iter().filter_map(|d| read_chip(&self.paths, d, &mut errors)).collect();
        let mut families = chip_families(&chips);

        // Per drive: temperature, its limit and the throttling signal held over the window.
        let now = Instant::now();
        let mut temp = Family::gauge(
            "storwatch_device_temperature_celsius",
            "A drive's temperature (its hwmon temp1: NVMe Composite, drivetemp), by block device or NVMe controller.",
        );
        let mut limit = Family::gauge(
            "storwatch_device_temperature_max_celsius",
            "The drive's own warning threshold (hwmon temp1_max: NVMe WCTEMP, SCT limit for drivetemp).",
        );
        let mut throttling = Family::gauge(
            "storwatch_device_thermal_throttling",
            "1 when, within the thermal check's window, the drive's temperature warning bit was set, its temperature reached its own warning threshold, or (NVMe) its thermal-management transitions rose.",
        );
        let mut results = Vec::new();
        for chip in &chips {
            let Some(t1) = chip.sensors.get("temp1") else { continue };
            let (t, max, alarm) = (
                t1.get("input").map(|v| v / 1000.0),
                t1.get("max").map(|v| v / 1000.0),
                t1.get("alarm").copied(),
            );
            let hot = throttling_now(t, max, alarm);
            for dev in &chip.devices {
                if hot {
                    self.throttled_at.insert(dev.clone(), now);
                }
                let within = |at: Instant| now.duration_since(at) <= self.check.window;
                let tmt = nvme_controller(dev).and_then(|c| self.events.last(c));
                let held =
                    self.throttled_at.get(dev).is_some_and(|at| within(*at)) || tmt.is_some_and(within);
                if let Some(t) = t {
                    temp.push([("device", dev)], t);
                }
                if let Some(m) = max {
                    limit.push([("device", dev)], m);
                }
                throttling.push([("device", dev)], if held { 1.0 } else { 0.0 });
                // Judged here: NVMe namespaces. Controllers (`nvme0`) are judged by the nvme
                // collector's check and SATA/SCSI disks by the sata collector's, from the same
                // drivetemp files: one (check, subject) pair has one judge.
                let namespace = dev.strip_prefix("nvme").is_some_and(|r| r.contains('n'));
                if self.check.enabled && namespace {
                    results.push(checks::device_thermal(&self.check, dev, t, max, held));
                }
            }
        }
        families.extend([temp, limit, throttling]);
        families.extend(thermal_families(&self.paths, &mut errors));
        families.extend(cpu_throttle_families(&self.paths, &mut errors));
        Ok(Output { families, checks: results, errors })
    }
}

fn chip_families(chips: &[Chip]) -> Vec<Family> {
    let mut names = Family::gauge(
        "storwatch_hwmon_chip_names",
        "Annotation metric for human-readable chip names (hwmon name).",
    );
    let mut labels =
        Family::gauge("storwatch_hwmon_sensor_label", "Label for given chip and sensor (tempN_label).");
    let mut info = Family::info(
        "storwatch_hwmon_device_info",
        "A drive sensor chip joined to the NVMe controller, namespaces or sdX it measures.",
    );
    let mut temps: Vec<Family> =
        TEMP_PROPS.iter().map(|(prop, name)| Family::gauge(name, temp_help(prop))).collect();
    // Chips sharing a label (node_exporter keeps the first sample of a duplicate): the first wins.
    let mut seen = BTreeSet::new();
    for chip in chips {
        if let Some(n) = &chip.name {
            names.push([("chip", &chip.label), ("chip_name", n)], 1.0);
        }
        for dev in &chip.devices {
            info.push([("chip", &chip.label), ("device", dev)], 1.0);
        }
        for (sensor, props) in &chip.sensors {
            if !seen.insert((chip.label.clone(), sensor.clone())) {
                continue;
            }
            if let Some(l) = chip.labels.get(sensor) {
                labels.push([("chip", &chip.label), ("sensor", sensor), ("label", l)], 1.0);
            }
            for ((prop, _), family) in TEMP_PROPS.iter().zip(temps.iter_mut()) {
                if let Some(v) = props.get(*prop) {
                    family.push([("chip", &chip.label), ("sensor", sensor)], v / 1000.0);
                }
            }
        }
    }
    let mut out = vec![names, labels, info];
    out.append(&mut temps);
    out
}

fn temp_help(prop: &str) -> &'static str {
    match prop {
        "input" => "Hardware monitor for temperature (input).",
        "min" => "Hardware monitor for temperature (min).",
        "max" => "Hardware monitor for temperature (max).",
        "crit" => "Hardware monitor for temperature (crit).",
        "lcrit" => "Hardware monitor for temperature (lcrit).",
        "emergency" => "Hardware monitor for temperature (emergency).",
        "alarm" => "Hardware monitor for temperature (alarm; 1 raw = 0.001, as node_exporter).",
        "min_alarm" => "Hardware monitor for temperature (min_alarm).",
        "max_alarm" => "Hardware monitor for temperature (max_alarm).",
        _ => "Hardware monitor for temperature (crit_alarm).",
    }
}

fn thermal_families(paths: &Paths, errors: &mut Vec<CollectError>) -> Vec<Family> {
    let mut zone_temp = Family::gauge(
        "storwatch_thermal_zone_temp_celsius",
        "Thermal zone temperature (class/thermal/thermal_zoneN/temp).",
    );
    let mut trips = Family::gauge(
        "storwatch_thermal_zone_trip_point_celsius",
        "A thermal zone's trip point temperature, by trip index and type (passive, active, hot, critical).",
    );
    let mut cur =
        Family::gauge("storwatch_cooling_device_cur_state", "Current throttle state of the cooling device.");
    let mut max =
        Family::gauge("storwatch_cooling_device_max_state", "Maximum throttle state of the cooling device.");
    for dir in list(&paths.sys("class/thermal")) {
        let entry = file_name(&dir);
        if let Some(zone) = entry.strip_prefix("thermal_zone") {
            let kind = attr(&dir.join("type"), errors).unwrap_or_default();
            if let Some(t) = number(&dir.join("temp"), errors) {
                zone_temp.push([("zone", zone), ("type", &kind)], t / 1000.0);
            }
            for f in list(&dir) {
                let name = file_name(&f);
                let Some(n) = name.strip_prefix("trip_point_").and_then(|r| r.strip_suffix("_temp")) else {
                    continue;
                };
                let trip_type = attr(&dir.join(format!("trip_point_{n}_type")), errors).unwrap_or_default();
                if let Some(t) = number(&f, errors) {
                    trips.push(
                        [("zone", zone), ("type", &kind), ("trip", n), ("trip_type", &trip_type)],
                        t / 1000.0,
                    );
                }
            }
        } else if let Some(name) = entry.strip_prefix("cooling_device") {
            let kind = attr(&dir.join("type"), errors).unwrap_or_default();
            if let Some(v) = number(&dir.join("cur_state"), errors) {
                cur.push([("name", name), ("type", &kind)], v);
            }
            if let Some(v) = number(&dir.join("max_state"), errors) {
                max.push([("name", name), ("type", &kind)], v);
            }
        }
    }
    vec![zone_temp, trips, cur, max]
}

/// CPU thermal throttle counters, once per core (`core_id` within `physical_package_id`) and once
/// per package: sibling threads show the same counters.
fn cpu_throttle_families(paths: &Paths, errors: &mut Vec<CollectError>) -> Vec<Family> {
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
    let mut core_f = Family::counter(
        "storwatch_cpu_core_throttles_total",
        "Times a CPU core was throttled for heat (thermal_throttle/core_throttle_count), once per core.",
    );
    for ((package, core), v) in &cores {
        core_f.push([("package", package), ("core", core)], *v);
    }
    let mut pkg_f = Family::counter(
        "storwatch_cpu_package_throttles_total",
        "Times a CPU package was throttled for heat (thermal_throttle/package_throttle_count).",
    );
    for (package, v) in &packages {
        pkg_f.push([("package", package)], *v);
    }
    vec![core_f, pkg_f]
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

    #[test]
    fn throttling() {
        assert!(!throttling_now(Some(50.0), Some(84.85), Some(0.0)));
        assert!(throttling_now(Some(84.85), Some(84.85), None), "at the threshold");
        assert!(throttling_now(Some(40.0), Some(84.85), Some(1.0)), "warning bit");
        assert!(!throttling_now(Some(40.0), Some(0.0), None), "a zero threshold is none");
        assert!(!throttling_now(None, None, None));
    }

    #[test]
    fn nvme_controllers_of_device_names() {
        assert_eq!(nvme_controller("nvme0"), Some("nvme0"));
        assert_eq!(nvme_controller("nvme0n1"), Some("nvme0"));
        assert_eq!(nvme_controller("nvme12n3"), Some("nvme12"));
        for other in ["nvme", "nvmex", "nvme0c1n1", "sda", ""] {
            assert_eq!(nvme_controller(other), None, "{other}");
        }
    }

    /// The nvme collector's thermal-management transitions (only in the SMART log) raise the
    /// signal of the controller and its namespaces, though the temperature is below the limit,
    /// and hold it for the window.
    #[test]
    fn nvme_thermal_management_raises_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        // As the kernel lays it out: the controller under its PCI function, its hwmon's `device`
        // link back to it, and class/nvme linking to the controller.
        let c = dir.path().join("devices/pci0000:00/0000:00:04.0/nvme/nvme0");
        std::fs::create_dir_all(c.join("nvme0n1")).unwrap();
        std::fs::create_dir_all(c.join("hwmon2")).unwrap();
        std::os::unix::fs::symlink("..", c.join("hwmon2/device")).unwrap();
        std::fs::create_dir_all(dir.path().join("class/nvme")).unwrap();
        std::os::unix::fs::symlink(&c, dir.path().join("class/nvme/nvme0")).unwrap();
        for (f, v) in
            [("name", "nvme"), ("temp1_input", "40850"), ("temp1_max", "84850"), ("temp1_alarm", "0")]
        {
            std::fs::write(c.join("hwmon2").join(f), v).unwrap();
        }
        let paths = Paths { sysfs: dir.path().to_owned(), ..Paths::default() };
        let events = ThermalEvents::default();
        let check = ThermalCheck { window: Duration::from_millis(300), ..ThermalCheck::default() };
        let mut h = Hwmon::new(paths, Duration::from_secs(15), check).with_thermal_events(events.clone());
        let signal = |out: &Output, dev: &str| {
            let f = out.families.iter().find(|f| f.name == "storwatch_device_thermal_throttling").unwrap();
            f.samples.iter().find(|s| s.labels.iter().any(|(_, v)| v == dev)).map(|s| s.value)
        };
        let out = h.collect().unwrap();
        assert_eq!((signal(&out, "nvme0"), signal(&out, "nvme0n1")), (Some(0.0), Some(0.0)));
        assert!(out.checks.iter().all(|r| r.ok));
        events.record("nvme0", Instant::now());
        let out = h.collect().unwrap();
        assert_eq!((signal(&out, "nvme0"), signal(&out, "nvme0n1")), (Some(1.0), Some(1.0)));
        assert!(out.checks.iter().any(|r| r.subject == "nvme0n1" && !r.ok), "{:?}", out.checks);
        std::thread::sleep(Duration::from_millis(400));
        let out = h.collect().unwrap();
        assert_eq!(signal(&out, "nvme0n1"), Some(0.0), "held for the window only");
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
