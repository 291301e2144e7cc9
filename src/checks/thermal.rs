//! Thermal: every drive below its own warning temperature and not throttling, in one judgement
//! over the sources that can tell (the manual: watch the disk array for thermal throttling under
//! high I/O concurrency).
//!
//! - An NVMe controller with a SMART log: `nvme0` composite temperature below the drive's own
//!   warning threshold (WCTEMP; `max_temperature` when the drive reports none) with the
//!   temperature critical-warning bit clear (value and threshold in °C); `nvme0 throttling` no new
//!   thermal-management transition within the window (value: seconds since the last one).
//! - An NVMe namespace with an hwmon sensor: `nvme0n1` not throttling within the window (its
//!   sensor at or over its limit or alarmed, or its controller's transitions rising: the model's
//!   one throttling signal per drive, `storwatch_device_thermal_throttling`).
//! - A SATA / SCSI disk: `sda` temperature (SMART 194/190, else drivetemp) below the drive's own
//!   limit where drivetemp reports one (`temp1_max`), else `max_temperature`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, de::Error};

use super::{ALL, CheckResult, Verdict, ago, human, within};
use crate::model::{Model, seconds_since};
use crate::sources::nvme::logs::celsius;
use crate::sources::nvme::names;
use crate::sources::sata::smart;
use crate::values::positive_duration;

pub const INPUTS: &[&str] = &["nvme", "hwmon", "sata"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// A thermal-management transition (or a drive's sensor at its limit) within this window
    /// fails the drive.
    #[serde(deserialize_with = "positive_duration")]
    pub window: Duration,
    /// °C; the limit for a drive that reports no warning temperature of its own (WCTEMP 0).
    #[serde(deserialize_with = "temperature")]
    pub max_temperature: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, window: Duration::from_secs(15 * 60), max_temperature: 70 }
    }
}

fn temperature<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .ok()
        .filter(|v| (1..=150).contains(v))
        .ok_or_else(|| D::Error::custom(format!("{v} is not a temperature from 1 to 150 °C")))
}

pub fn evaluate(model: &Model, cfg: &Config, now: Instant) -> Vec<CheckResult> {
    let mut out = Vec::new();
    if let Some(n) = model.nvme() {
        for c in &n.sample.controllers {
            let Some(s) = &c.smart else { continue };
            let warning = c.identify.as_ref().and_then(|id| id.warning_temp).map(celsius);
            let rose = n.state(&c.name).and_then(|st| st.tmt_rose).map(|t| seconds_since(t, now));
            let transitions = u64::from(s.tmt_transitions[0]) + u64::from(s.tmt_transitions[1]);
            out.extend(controller(
                cfg,
                &c.name,
                s.composite_temp.map(celsius),
                warning,
                s.critical_warning & 0x02 != 0,
                transitions,
                rose,
            ));
        }
    }
    if let Some(h) = model.hwmon() {
        for chip in h.sample.chips.iter().filter(|c| c.sensors.contains_key("temp1")) {
            for dev in chip.devices.iter().filter(|d| names::is_namespace(d)) {
                let held = model.throttled_within(dev, now, cfg.window);
                out.push(namespace(cfg, dev, chip.temp1("input"), chip.temp1("max"), held));
            }
        }
    }
    if let Some(s) = model.sata() {
        for d in &s.sample.disks {
            let from_smart = d.smart.as_ref().and_then(|s| smart::temperature(&s.attributes));
            if let Some(t) = from_smart.map(|t| t as f64).or(d.drivetemp.map(|(t, _)| t)) {
                out.push(disk(cfg, &d.name, t, d.drivetemp.and_then(|(_, max)| max)));
            }
        }
    }
    // The drives of a source that could not be read are unknown as a whole.
    let why: Vec<&str> = INPUTS.iter().filter_map(|s| model.failure(s)).collect();
    if !why.is_empty() {
        let expected = "below each drive's warning temperature, no throttling".to_owned();
        out.push(CheckResult::unknown("thermal", ALL, expected, &why.join("; ")));
    }
    out
}

/// An NVMe controller: its composite temperature against its warning threshold, and its
/// thermal-management transitions.
pub fn controller(
    cfg: &Config,
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
            verdict: Verdict::of(t < max && !warning_bit),
            observed: format!("{t:.2}°C{}", if warning_bit { ", temperature warning set" } else { "" }),
            expected: format!("< {max:.2}°C ({whose}), no temperature warning"),
            value: Some(t),
            threshold: Some(max),
        });
    }
    out.push(CheckResult {
        check: "thermal",
        subject: format!("{controller} throttling"),
        verdict: Verdict::of(!within(transition_ago, cfg.window)),
        observed: match transition_ago {
            Some(a) => format!("{transitions} transitions, last {} ago", ago(a)),
            None => format!("{transitions} transitions, none new"),
        },
        expected: format!("none in the last {}", human(cfg.window)),
        value: transition_ago,
        threshold: Some(cfg.window.as_secs_f64()),
    });
    out
}

/// An NVMe namespace with a sensor: not throttling within the window. Value and threshold in °C
/// where known.
pub fn namespace(cfg: &Config, device: &str, temp: Option<f64>, max: Option<f64>, throttling: bool) -> CheckResult {
    let t = temp.map_or_else(|| "temperature unknown".to_owned(), |t| format!("{t:.2}°C"));
    CheckResult {
        check: "thermal",
        subject: device.to_owned(),
        verdict: Verdict::of(!throttling),
        observed: if throttling { format!("{t}, throttling") } else { t },
        expected: match max {
            Some(m) => format!(
                "< {m:.2}°C (the drive's threshold), no temperature warning in the last {}",
                human(cfg.window)
            ),
            None => format!("no temperature warning in the last {}", human(cfg.window)),
        },
        value: temp,
        threshold: max,
    }
}

/// A SATA / SCSI disk: its temperature against its own limit, else the configured one.
pub fn disk(cfg: &Config, device: &str, celsius: f64, limit: Option<f64>) -> CheckResult {
    let (max, whose) = match limit {
        Some(l) => (l, "the drive's"),
        None => (f64::from(cfg.max_temperature), "configured"),
    };
    CheckResult {
        check: "thermal",
        subject: device.to_owned(),
        verdict: Verdict::of(celsius < max),
        observed: format!("{celsius:.2}°C"),
        expected: format!("< {max:.2}°C ({whose})"),
        value: Some(celsius),
        threshold: Some(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_namespaces_and_disks() {
        let cfg = Config::default();
        let r = controller(&cfg, "nvme0", Some(49.85), Some(69.85), false, 0, None);
        assert!(r.iter().all(|r| r.ok()));
        assert_eq!((r[0].value, r[0].threshold), (Some(49.85), Some(69.85)));
        assert!(!controller(&cfg, "nvme0", Some(69.85), Some(69.85), false, 0, None)[0].ok());
        assert!(!controller(&cfg, "nvme0", Some(40.0), Some(69.85), true, 0, None)[0].ok(), "bit 1 fails");
        let none = controller(&cfg, "nvme0", Some(71.0), None, false, 0, None);
        assert_eq!((none[0].ok(), none[0].threshold), (false, Some(70.0)));
        let r = controller(&cfg, "nvme0", None, None, false, 4, Some(10.0));
        assert_eq!(r.len(), 1, "no composite temperature, no temperature result");
        assert_eq!((r[0].subject.as_str(), r[0].ok()), ("nvme0 throttling", false));
        assert!(controller(&cfg, "nvme0", None, None, false, 4, Some(1e6))[0].ok());
        let r = disk(&cfg, "sda", 31.0, None);
        assert!(r.ok());
        assert_eq!((r.value, r.threshold, r.expected.as_str()), (Some(31.0), Some(70.0), "< 70.00°C (configured)"));
        assert!(!disk(&cfg, "sda", 56.0, Some(55.0)).ok());
        assert!(!disk(&cfg, "sda", 70.0, None).ok());
        let r = namespace(&cfg, "nvme0n1", Some(40.85), Some(84.85), true);
        assert_eq!((r.ok(), r.observed.as_str()), (false, "40.85°C, throttling"));
        assert!(namespace(&cfg, "nvme0n1", None, None, false).ok());
    }
}
