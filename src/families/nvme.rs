//! NVMe controller families: facts, namespaces, the SMART / Health log in base units, the
//! temperatures (SMART, else hwmon) and the Error Information log's new entries.

use super::{Col, counter, flag, gauge, info, table};
use crate::metrics::Family;
use crate::model::nvme::Nvme;
use crate::sources::nvme::logs::{
    CRITICAL_WARNING_BITS, DATA_UNIT_BYTES, IdentifyController, SmartLog, celsius,
};
use crate::sources::nvme::{Controller, sensor_name};

/// u128 → f64 keeps the magnitude of any value (rounding to 53 significant bits).
fn bytes(units: u128) -> Option<f64> {
    Some(units as f64 * DATA_UNIT_BYTES as f64)
}

const IDENTIFY: &[Col<IdentifyController>] = &[
    gauge(
        "storwatch_nvme_warning_temperature_celsius",
        "WCTEMP: the drive's warning composite temperature threshold.",
        |id| id.warning_temp.map(celsius),
    ),
    gauge(
        "storwatch_nvme_critical_temperature_celsius",
        "CCTEMP: the drive's critical composite temperature threshold.",
        |id| id.critical_temp.map(celsius),
    ),
];

const SMART: &[Col<SmartLog>] = &[
    gauge("storwatch_nvme_available_spare_ratio", "Remaining spare capacity (0..1).", |s| {
        Some(f64::from(s.available_spare) / 100.0)
    }),
    gauge(
        "storwatch_nvme_available_spare_threshold_ratio",
        "Spare below this raises critical warning bit 0.",
        |s| Some(f64::from(s.spare_threshold) / 100.0),
    ),
    gauge("storwatch_nvme_percentage_used_ratio", "Vendor estimate of life used; may exceed 1.", |s| {
        Some(f64::from(s.percentage_used) / 100.0)
    }),
    counter(
        "storwatch_nvme_data_read_bytes_total",
        "Data read by the host, in bytes (data units × 512000).",
        |s| bytes(s.data_units_read),
    ),
    counter(
        "storwatch_nvme_data_written_bytes_total",
        "Data written by the host, in bytes (data units × 512000).",
        |s| bytes(s.data_units_written),
    ),
    counter("storwatch_nvme_host_read_commands_total", "Read commands completed.", |s| {
        Some(s.host_read_commands as f64)
    }),
    counter("storwatch_nvme_host_write_commands_total", "Write commands completed.", |s| {
        Some(s.host_write_commands as f64)
    }),
    counter(
        "storwatch_nvme_busy_time_seconds_total",
        "Time the controller was busy with I/O (minutes × 60).",
        |s| Some(s.busy_time_minutes as f64 * 60.0),
    ),
    counter("storwatch_nvme_power_cycles_total", "Power cycles.", |s| Some(s.power_cycles as f64)),
    counter("storwatch_nvme_power_on_seconds_total", "Power-on time (hours × 3600).", |s| {
        Some(s.power_on_hours as f64 * 3600.0)
    }),
    counter("storwatch_nvme_unsafe_shutdowns_total", "Shutdowns without a shutdown notification.", |s| {
        Some(s.unsafe_shutdowns as f64)
    }),
    counter("storwatch_nvme_media_errors_total", "Unrecovered data integrity errors.", |s| {
        Some(s.media_errors as f64)
    }),
    counter(
        "storwatch_nvme_error_log_entries_total",
        "Error Information log entries over the drive's life.",
        |s| Some(s.error_log_entries as f64),
    ),
    counter(
        "storwatch_nvme_warning_temperature_time_seconds_total",
        "Time at or above WCTEMP (minutes × 60).",
        |s| Some(f64::from(s.warning_temp_minutes) * 60.0),
    ),
    counter(
        "storwatch_nvme_critical_temperature_time_seconds_total",
        "Time at or above CCTEMP (minutes × 60).",
        |s| Some(f64::from(s.critical_temp_minutes) * 60.0),
    ),
];

/// The Error Information log's status code types, in the order they are exported.
const STATUS_TYPES: [u8; 6] = [0, 1, 2, 3, 7, 4];

pub fn families(n: &Nvme) -> Vec<Family> {
    let cs = &n.sample.controllers;
    let mut out = vec![
        info(
            "storwatch_nvme_info",
            "NVMe controller facts (from Identify Controller, else sysfs).",
            cs.iter().map(|c| {
                let (model, serial, firmware) = match &c.identify {
                    Some(id) => (id.model.as_str(), id.serial.as_str(), id.firmware.as_str()),
                    None => (c.facts.model.as_str(), c.facts.serial.as_str(), c.facts.firmware.as_str()),
                };
                vec![
                    ("controller", c.name.as_str()),
                    ("model", model),
                    ("serial", serial),
                    ("firmware", firmware),
                ]
            }),
        ),
        info(
            "storwatch_nvme_namespace_info",
            "The block devices of each NVMe controller's namespaces.",
            cs.iter().flat_map(|c| {
                c.namespaces.iter().map(|d| vec![("controller", c.name.as_str()), ("device", d.as_str())])
            }),
        ),
    ];
    let smart = || cs.iter().filter_map(|c| Some(([("controller", c.name.as_str())], c.smart.as_ref()?)));
    let identified =
        || cs.iter().filter_map(|c| Some(([("controller", c.name.as_str())], c.identify.as_ref()?)));
    out.extend(table(
        &[gauge(
            "storwatch_nvme_smart_available",
            "1 when the SMART log was read this interval; 0 when not (no CAP_SYS_ADMIN, device node missing, command failed).",
            |c: &Controller| Some(flag(c.smart.is_some())),
        )],
        || cs.iter().map(|c| ([("controller", c.name.as_str())], c)),
    ));
    out.extend(table(
        &[gauge(
            "storwatch_nvme_critical_warning",
            "SMART critical warning byte (0: no warning).",
            |s: &SmartLog| Some(f64::from(s.critical_warning)),
        )],
        smart,
    ));
    let mut bit =
        Family::gauge("storwatch_nvme_critical_warning_bit", "1 when this critical warning bit is set.");
    let mut temp = Family::gauge(
        "storwatch_nvme_temperature_celsius",
        "Composite and sensor temperatures (SMART log; hwmon when SMART is unavailable). Absent sensors are left out.",
    );
    for c in cs {
        let name = c.name.as_str();
        for (sensor, t) in &c.hwmon {
            temp.push([("controller", name), ("sensor", sensor)], *t);
        }
        let Some(s) = &c.smart else { continue };
        for (mask, b) in CRITICAL_WARNING_BITS {
            bit.push([("controller", name), ("bit", b)], flag(s.critical_warning & mask != 0));
        }
        for (i, k) in std::iter::once(s.composite_temp).chain(s.sensors).enumerate() {
            if let Some(k) = k {
                temp.push([("controller", name), ("sensor", &sensor_name(i))], celsius(k));
            }
        }
    }
    out.extend([bit, temp]);
    out.extend(table(IDENTIFY, identified));
    let mut tmt_t = Family::gauge(
        "storwatch_nvme_thermal_management_temperature_celsius",
        "MNTMT (bound=min) and MXTMT (bound=max): the range host controlled thermal management accepts.",
    );
    for (labels, id) in identified() {
        for (bound, k) in [("min", id.min_tmt), ("max", id.max_tmt)] {
            if let Some(k) = k {
                tmt_t.push([labels[0], ("bound", bound)], celsius(k));
            }
        }
    }
    out.push(tmt_t);
    out.extend(table(SMART, smart));
    let mut tmt_n = Family::counter(
        "storwatch_nvme_thermal_management_transitions_total",
        "Times the drive throttled itself to thermal management temperature 1 or 2.",
    );
    let mut tmt_s = Family::counter(
        "storwatch_nvme_thermal_management_seconds_total",
        "Time throttled at thermal management temperature 1 or 2.",
    );
    for (labels, s) in smart() {
        for (i, level) in ["1", "2"].into_iter().enumerate() {
            tmt_n.push([labels[0], ("level", level)], f64::from(s.tmt_transitions[i]));
            tmt_s.push([labels[0], ("level", level)], f64::from(s.tmt_seconds[i]));
        }
    }
    out.extend([tmt_n, tmt_s]);
    let mut new_err = Family::counter(
        "storwatch_nvme_error_log_new_entries_total",
        "Error Information log entries that appeared since the agent started, by status code type.",
    );
    for c in cs.iter().filter(|c| c.error_log.is_some()) {
        let new = n.state(&c.name).map(|s| &s.new_errors);
        for sct in STATUS_TYPES {
            let name = crate::sources::nvme::logs::status_type_name(sct);
            let v = new.and_then(|m| m.get(name)).copied().unwrap_or(0);
            new_err.push([("controller", c.name.as_str()), ("status_type", name)], v as f64);
        }
    }
    out.push(new_err);
    out
}
