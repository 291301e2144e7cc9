//! SATA / SCSI disk families: facts, the iostat counters with their wraps undone, the ATA link,
//! temperatures, the SMART state and attributes.

use super::{Col, counter, flag, gauge, info, table};
use crate::metrics::Family;
use crate::model::sata::{Sata, State};
use crate::sources::sata::smart::{self, Attribute};
use crate::sources::sata::{Disk, ERR, STATES, TMO};

/// What a disk's row of numbers is made of: the sample's, and the model's totals.
struct DiskRow {
    running: bool,
    /// The counter totals, when this pass read the counters.
    totals: Option<[u64; 4]>,
    own_errors: u64,
    link_speed: Option<f64>,
    speed_downs: Option<u64>,
}

impl DiskRow {
    fn new(d: &Disk, state: Option<&State>) -> DiskRow {
        DiskRow {
            running: d.state == "running",
            totals: d.counters.and(state.map(|s| s.totals)),
            own_errors: state.map_or(0, |s| s.own_errors),
            link_speed: d.link_speed,
            speed_downs: d.speed_downs,
        }
    }

    fn total(&self, i: usize) -> Option<f64> {
        Some(self.totals?[i] as f64)
    }
}

const DISK: &[Col<DiskRow>] = &[
    gauge("storwatch_sata_device_running", "1 when the SCSI device state is running.", |r| {
        Some(flag(r.running))
    }),
    counter("storwatch_sata_io_requests_total", "Commands sent to the device (iorequest_cnt).", |r| {
        r.total(0)
    }),
    counter("storwatch_sata_io_completed_total", "Commands completed (iodone_cnt).", |r| r.total(1)),
    counter(
        "storwatch_sata_io_errors_total",
        "Commands completed with a non-zero result (ioerr_cnt), check conditions of SG_IO users included.",
        |r| r.total(ERR),
    ),
    counter("storwatch_sata_io_timeouts_total", "Commands that timed out (iotmo_cnt).", |r| r.total(TMO)),
    counter(
        "storwatch_sata_agent_error_results_total",
        "The agent's own ATA PASS-THROUGH commands answered with CHECK CONDITION (counted in ioerr_cnt).",
        |r| Some(r.own_errors as f64),
    ),
    gauge(
        "storwatch_sata_link_speed_bytes_per_second",
        "Negotiated SATA link speed (sata_spd) in bytes per second.",
        |r| r.link_speed,
    ),
    counter(
        "storwatch_sata_link_speed_downs_total",
        "Times libata lowered the link speed (spdn_cnt).",
        |r| r.speed_downs.map(|n| n as f64),
    ),
];

const ATTRIBUTE: &[Col<Attribute>] = &[
    gauge("storwatch_sata_attribute_normalized", "SMART attribute normalized value.", |a| {
        Some(f64::from(a.value))
    }),
    gauge("storwatch_sata_attribute_worst", "SMART attribute worst normalized value.", |a| {
        Some(f64::from(a.worst))
    }),
    gauge("storwatch_sata_attribute_threshold", "SMART attribute failure threshold.", |a| {
        a.threshold.map(f64::from)
    }),
    gauge("storwatch_sata_attribute_raw", "SMART attribute 48-bit raw field as an integer.", |a| {
        Some(a.raw as f64)
    }),
    gauge(
        "storwatch_sata_attribute_decoded",
        "SMART attribute raw field decoded per kind: the count (raw48, raw16), hours (raw24), °C (temperature byte).",
        |a| Some(a.decoded as f64),
    ),
];

pub fn families(s: &Sata) -> Vec<Family> {
    let disks = &s.sample.disks;
    let mut out = vec![info(
        "storwatch_sata_info",
        "SCSI disk facts from sysfs: address, vendor, model, firmware revision, device state.",
        disks.iter().map(|d| {
            vec![
                ("device", d.name.as_str()),
                ("hctl", d.hctl.as_str()),
                ("vendor", d.vendor.as_str()),
                ("model", d.model.as_str()),
                ("firmware", d.firmware.as_str()),
                ("state", d.state.as_str()),
            ]
        }),
    )];
    out.extend(table(DISK, || {
        disks.iter().map(|d| ([("device", d.name.as_str())], DiskRow::new(d, s.state(&d.name))))
    }));
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
    let mut failing = Family::gauge(
        "storwatch_sata_attribute_failing",
        "1 when the attribute is at or below its threshold now (when=now) or was (when=past).",
    );
    let mut attributes: Vec<(Vec<(&'static str, &str)>, &Attribute)> = Vec::new();
    let ids: Vec<Vec<String>> = disks
        .iter()
        .map(|d| d.smart.iter().flat_map(|s| &s.attributes).map(|a| a.id.to_string()).collect())
        .collect();
    for (d, ids) in disks.iter().zip(&ids) {
        let dev = d.name.as_str();
        for (s, label) in STATES {
            state.push([("device", dev), ("state", label)], flag(s == d.smart_state));
        }
        skips.push([("device", dev)], s.state(dev).map_or(0, |st| st.standby_skips) as f64);
        if let Some((t, _)) = d.drivetemp {
            temp.push([("device", dev), ("source", "drivetemp")], t);
        }
        let Some(smart) = &d.smart else { continue };
        if let Some(t) = smart::temperature(&smart.attributes) {
            temp.push([("device", dev), ("source", "smart")], t as f64);
        }
        if let Some(p) = smart.passed {
            passed.push([("device", dev)], flag(p));
        }
        for (a, id) in smart.attributes.iter().zip(ids) {
            attributes.push((vec![("device", dev), ("id", id.as_str()), ("name", a.name)], a));
            for (when, v) in [("now", a.failing_now()), ("past", a.failed_in_past())] {
                failing
                    .push([("device", dev), ("id", id.as_str()), ("name", a.name), ("when", when)], flag(v));
            }
        }
    }
    out.extend([temp, state, skips, passed]);
    out.extend(table(ATTRIBUTE, || attributes.iter().map(|(l, a)| (l, *a))));
    out.push(failing);
    out
}
