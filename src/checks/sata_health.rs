//! SATA health, a disk's own view of the spec's device errors (kept apart from the kernel log's
//! `device_errors`, which judges the same disk names). Subjects per disk: `sda` SMART overall
//! status passed and no attribute failing now (value: the attributes failing, threshold 0);
//! `sda attributes` no failure-relevant attribute (reallocated, pending, offline-uncorrectable,
//! UDMA CRC, reported-uncorrect, command-timeout counts...) rose within the window (value: seconds
//! since the last rise); `sda io_errors` no new I/O error or timeout in the SCSI counters within
//! the window (value: seconds since the last rise). The SMART subjects need SMART.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{ALL, CheckResult, Verdict, ago, human, unread, within};
use crate::sources::sata::SmartState;
use crate::model::{Model, seconds_since};
use crate::values::positive_duration;

pub const INPUTS: &[&str] = &["sata"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// A rise of a failure-relevant SMART attribute, or a new I/O error or timeout, within this
    /// window fails the disk.
    #[serde(deserialize_with = "positive_duration")]
    pub window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, window: Duration::from_secs(15 * 60) }
    }
}

/// What the check judges of one SCSI disk. The SMART part is None when SMART could not be read
/// (no CAP_SYS_RAWIO, no ATA device behind the disk).
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub smart: Option<Smart>,
    /// New I/O errors (the agent's own commands aside) and timeouts over the agent's life, and
    /// seconds since they last rose (None: not while the agent watched).
    pub io_errors: u64,
    pub io_errors_rose_ago: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Smart {
    /// SMART RETURN STATUS: passed; None when the registers said neither passed nor failed.
    pub passed: Option<bool>,
    /// `(id, name)` of each attribute failing now (normalized value <= threshold).
    pub failing: Vec<(u8, &'static str)>,
    /// The failure-relevant attribute that rose last, and seconds since (None: none rose).
    pub rose: Option<(u8, &'static str, f64)>,
}

pub fn evaluate(model: &Model, cfg: &Config, now: Instant) -> Vec<CheckResult> {
    let Some(s) = model.sata() else {
        return unread(model, "sata", "sata_health", &[ALL], || "SMART passed, no rise".into());
    };
    s.sample
        .disks
        .iter()
        .flat_map(|d| {
            let state = s.state(&d.name);
            let age = |t: Instant| seconds_since(t, now);
            let h = Health {
                smart: d.smart.as_ref().map(|smart| Smart {
                    passed: smart.passed,
                    failing: smart.attributes.iter().filter(|a| a.failing_now()).map(|a| (a.id, a.name)).collect(),
                    rose: state.and_then(|st| st.attribute_rose).map(|(id, n, t)| (id, n, age(t))),
                }),
                io_errors: state.map_or(0, |st| st.io_errors),
                io_errors_rose_ago: state.and_then(|st| st.io_errors_rose).map(age),
            };
            let mut out = Vec::new();
            if matches!(d.smart_state, SmartState::Denied | SmartState::Error) {
                // The sata collector counted why (a missing privilege, a failed command); the
                // SCSI counters are still judged.
                let why = "SMART not read (storwatch_sata_smart_state: denied without CAP_SYS_RAWIO or device access, else error)";
                let expected = "passed, no attribute at or below its threshold".to_owned();
                out.push(CheckResult::unknown("sata_health", &d.name, expected, why));
            }
            out.extend(judge(cfg, &d.name, &h));
            out
        })
        .collect()
}

pub fn judge(cfg: &Config, device: &str, h: &Health) -> Vec<CheckResult> {
    let window = cfg.window.as_secs_f64();
    let expected_rise = format!("no rise in the last {}", human(cfg.window));
    let mut out = Vec::new();
    if let Some(s) = &h.smart {
        let mut observed = match s.passed {
            Some(true) => "SMART passed".to_owned(),
            Some(false) => "SMART FAILED (threshold exceeded)".to_owned(),
            None => "SMART status unknown".to_owned(),
        };
        for (id, name) in &s.failing {
            observed.push_str(&format!(", {id} {name} failing now"));
        }
        out.push(CheckResult {
            check: "sata_health",
            subject: device.to_owned(),
            verdict: Verdict::of(s.passed != Some(false) && s.failing.is_empty()),
            observed,
            expected: "passed, no attribute at or below its threshold".to_owned(),
            value: Some(s.failing.len() as f64),
            threshold: Some(0.0),
        });
        let rose_ago = s.rose.map(|r| r.2);
        out.push(CheckResult {
            check: "sata_health",
            subject: format!("{device} attributes"),
            verdict: Verdict::of(!within(rose_ago, cfg.window)),
            observed: match s.rose {
                Some((id, name, a)) => format!("{id} {name} rose {} ago", ago(a)),
                None => "no failure-relevant attribute rising".to_owned(),
            },
            expected: expected_rise.clone(),
            value: rose_ago,
            threshold: Some(window),
        });
    }
    out.push(CheckResult {
        check: "sata_health",
        subject: format!("{device} io_errors"),
        verdict: Verdict::of(!within(h.io_errors_rose_ago, cfg.window)),
        observed: match h.io_errors_rose_ago {
            Some(a) => format!("{} I/O errors and timeouts, rose {} ago", h.io_errors, ago(a)),
            None => format!("{} I/O errors and timeouts, not rising", h.io_errors),
        },
        expected: expected_rise,
        value: h.io_errors_rose_ago,
        threshold: Some(window),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        let cfg = Config::default();
        let good = Health {
            smart: Some(Smart { passed: Some(true), failing: vec![], rose: None }),
            io_errors: 0,
            io_errors_rose_ago: None,
        };
        let r = judge(&cfg, "sda", &good);
        let subjects: Vec<_> = r.iter().map(|r| r.subject.as_str()).collect();
        assert_eq!(subjects, ["sda", "sda attributes", "sda io_errors"]);
        assert!(r.iter().all(|r| r.ok()), "{r:?}");
        let bad = Health {
            smart: Some(Smart {
                passed: Some(false),
                failing: vec![(5, "Reallocated_Sector_Ct")],
                rose: Some((197, "Current_Pending_Sector", 30.0)),
            }),
            io_errors: 3,
            io_errors_rose_ago: Some(60.0),
        };
        let r = judge(&cfg, "sda", &bad);
        assert!(r.iter().all(|r| !r.ok()), "{r:?}");
        assert_eq!(r[0].observed, "SMART FAILED (threshold exceeded), 5 Reallocated_Sector_Ct failing now");
        assert_eq!((r[0].value, r[0].threshold), (Some(1.0), Some(0.0)));
        assert_eq!(r[1].observed, "197 Current_Pending_Sector rose 30s ago");
        assert_eq!((r[2].value, r[2].threshold), (Some(60.0), Some(900.0)));
        // Passed but an attribute failing: fails; a rise older than the window passes.
        let mixed = Health {
            smart: Some(Smart { passed: Some(true), failing: vec![(5, "x")], rose: Some((5, "x", 1e4)) }),
            io_errors: 3,
            io_errors_rose_ago: Some(1e4),
        };
        let r = judge(&cfg, "sda", &mixed);
        assert_eq!(r.iter().map(|r| r.ok()).collect::<Vec<_>>(), [false, true, true]);
        // No SMART (a virtio-scsi disk, no CAP_SYS_RAWIO): only the I/O counters are judged.
        let none = Health { smart: None, io_errors: 0, io_errors_rose_ago: None };
        let r = judge(&cfg, "sdb", &none);
        assert_eq!((r.len(), r[0].subject.as_str(), r[0].ok()), (1, "sdb io_errors", true));
    }
}
