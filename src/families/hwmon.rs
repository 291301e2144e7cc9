//! Temperature families: hwmon chips and sensors (node_exporter's names), each drive's own
//! temperature, limit and throttling signal, thermal zones, cooling devices and CPU throttles.

use std::collections::BTreeSet;

use super::{Options, flag, info};
use crate::metrics::Family;
use crate::model::Model;
use crate::model::thermal::Hwmon;
use crate::sources::hwmon::TEMP_PROPS;

/// `TEMP_PROPS`' families: name and help, in its order.
const TEMP_FAMILIES: [(&str, &str); 10] = [
    ("storwatch_hwmon_temp_celsius", "Hardware monitor for temperature (input)."),
    ("storwatch_hwmon_temp_min_celsius", "Hardware monitor for temperature (min)."),
    ("storwatch_hwmon_temp_max_celsius", "Hardware monitor for temperature (max)."),
    ("storwatch_hwmon_temp_crit_celsius", "Hardware monitor for temperature (crit)."),
    ("storwatch_hwmon_temp_lcrit_celsius", "Hardware monitor for temperature (lcrit)."),
    ("storwatch_hwmon_temp_emergency_celsius", "Hardware monitor for temperature (emergency)."),
    (
        "storwatch_hwmon_temp_alarm_celsius",
        "Hardware monitor for temperature (alarm; 1 raw = 0.001, as node_exporter).",
    ),
    ("storwatch_hwmon_temp_min_alarm_celsius", "Hardware monitor for temperature (min_alarm)."),
    ("storwatch_hwmon_temp_max_alarm_celsius", "Hardware monitor for temperature (max_alarm)."),
    ("storwatch_hwmon_temp_crit_alarm_celsius", "Hardware monitor for temperature (crit_alarm)."),
];

pub fn families(model: &Model, h: &Hwmon, o: &Options) -> Vec<Family> {
    let s = &h.sample;
    let mut names = Family::gauge(
        "storwatch_hwmon_chip_names",
        "Annotation metric for human-readable chip names (hwmon name).",
    );
    let mut labels =
        Family::gauge("storwatch_hwmon_sensor_label", "Label for given chip and sensor (tempN_label).");
    let devices = info(
        "storwatch_hwmon_device_info",
        "A drive sensor chip joined to the NVMe controller, namespaces or sdX it measures.",
        s.chips
            .iter()
            .flat_map(|c| c.devices.iter().map(|d| vec![("chip", c.label.as_str()), ("device", d.as_str())])),
    );
    let mut temps: Vec<Family> = TEMP_FAMILIES.iter().map(|(name, help)| Family::gauge(name, help)).collect();
    // Chips sharing a label (node_exporter keeps the first sample of a duplicate): the first wins.
    let mut seen = BTreeSet::new();
    for chip in &s.chips {
        if let Some(n) = &chip.name {
            names.push([("chip", &chip.label), ("chip_name", n)], 1.0);
        }
        for (sensor, props) in &chip.sensors {
            if !seen.insert((&chip.label, sensor)) {
                continue;
            }
            if let Some(l) = chip.labels.get(sensor) {
                labels.push([("chip", &chip.label), ("sensor", sensor), ("label", l)], 1.0);
            }
            for (prop, family) in TEMP_PROPS.iter().zip(temps.iter_mut()) {
                if let Some(v) = props.get(*prop) {
                    family.push([("chip", &chip.label), ("sensor", sensor)], v / 1000.0);
                }
            }
        }
    }
    let mut out = vec![names, labels, devices];
    out.append(&mut temps);

    // Per drive: temperature, its limit and the throttling signal held over the thermal window.
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
    for chip in s.chips.iter().filter(|c| c.sensors.contains_key("temp1")) {
        for dev in &chip.devices {
            if let Some(t) = chip.temp1("input") {
                temp.push([("device", dev)], t);
            }
            if let Some(m) = chip.temp1("max") {
                limit.push([("device", dev)], m);
            }
            throttling.push([("device", dev)], flag(model.throttled_within(dev, h.at, o.thermal_window)));
        }
    }
    out.extend([temp, limit, throttling]);

    let mut zone_temp = Family::gauge(
        "storwatch_thermal_zone_temp_celsius",
        "Thermal zone temperature (class/thermal/thermal_zoneN/temp).",
    );
    let mut trips = Family::gauge(
        "storwatch_thermal_zone_trip_point_celsius",
        "A thermal zone's trip point temperature, by trip index and type (passive, active, hot, critical).",
    );
    for z in &s.zones {
        if let Some(t) = z.temp {
            zone_temp.push([("zone", &z.zone), ("type", &z.kind)], t / 1000.0);
        }
        for (n, trip_type, t) in &z.trips {
            trips.push(
                [("zone", &z.zone), ("type", &z.kind), ("trip", n), ("trip_type", trip_type)],
                t / 1000.0,
            );
        }
    }
    let mut cur =
        Family::gauge("storwatch_cooling_device_cur_state", "Current throttle state of the cooling device.");
    let mut max =
        Family::gauge("storwatch_cooling_device_max_state", "Maximum throttle state of the cooling device.");
    for c in &s.cooling {
        if let Some(v) = c.cur {
            cur.push([("name", &c.name), ("type", &c.kind)], v);
        }
        if let Some(v) = c.max {
            max.push([("name", &c.name), ("type", &c.kind)], v);
        }
    }
    out.extend([zone_temp, trips, cur, max]);

    let mut cores = Family::counter(
        "storwatch_cpu_core_throttles_total",
        "Times a CPU core was throttled for heat (thermal_throttle/core_throttle_count), once per core.",
    );
    for ((package, core), v) in &s.core_throttles {
        cores.push([("package", package), ("core", core)], *v);
    }
    let mut packages = Family::counter(
        "storwatch_cpu_package_throttles_total",
        "Times a CPU package was throttled for heat (thermal_throttle/package_throttle_count).",
    );
    for (package, v) in &s.package_throttles {
        packages.push([("package", package)], *v);
    }
    out.extend([cores, packages]);
    out
}
