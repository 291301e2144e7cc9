//! NVMe health, the controller's own view of the spec's device errors (kept apart from the kernel
//! log's `device_errors`, whose subjects include the same controller names). Three subjects per
//! controller with a SMART log: `nvme0` critical warning 0 (value: the byte), `nvme0 media_errors`
//! no rise within the window (value: seconds since the last rise, threshold: the window),
//! `nvme0 spare` available spare at or above the drive's threshold (ratios).

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{ALL, CheckResult, Verdict, ago, human, unread};
use crate::model::{Model, seconds_since};
use crate::values::positive_duration;

pub const INPUTS: &[&str] = &["nvme"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// A rise of the media error count within this window fails the controller.
    #[serde(deserialize_with = "positive_duration")]
    pub window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, window: Duration::from_secs(15 * 60) }
    }
}

/// What the check judges of one controller's SMART log.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub critical_warning: u8,
    /// Percent, and the drive's own threshold.
    pub available_spare: u8,
    pub spare_threshold: u8,
    pub media_errors: f64,
    /// Seconds since the media error count last rose while the agent watched (None: never).
    pub media_errors_rose_ago: Option<f64>,
}

pub fn evaluate(model: &Model, cfg: &Config, now: Instant) -> Vec<CheckResult> {
    let expected = || "critical warning 0, no media error rise, spare above threshold".to_owned();
    let Some(n) = model.nvme() else { return unread(model, "nvme", "nvme_health", &[ALL], expected) };
    n.sample
        .controllers
        .iter()
        .flat_map(|c| {
            let Some(s) = c.smart.as_ref() else {
                // The nvme collector counted why (a missing privilege, a failed command).
                let why = "SMART / Health log not read (storwatch_nvme_smart_available 0: no CAP_SYS_ADMIN or device access, or the nvme collector's errors)";
                return vec![CheckResult::unknown("nvme_health", &c.name, expected(), why)];
            };
            let rose = n.state(&c.name).and_then(|st| st.media_errors_rose);
            let h = Health {
                critical_warning: s.critical_warning,
                available_spare: s.available_spare,
                spare_threshold: s.spare_threshold,
                media_errors: s.media_errors as f64,
                media_errors_rose_ago: rose.map(|t| seconds_since(t, now)),
            };
            judge(cfg, &c.name, &h)
        })
        .collect()
}

pub fn judge(cfg: &Config, controller: &str, h: &Health) -> Vec<CheckResult> {
    let window = cfg.window.as_secs_f64();
    vec![
        CheckResult {
            check: "nvme_health",
            subject: controller.to_owned(),
            verdict: Verdict::of(h.critical_warning == 0),
            observed: format!("critical warning 0x{:02x}", h.critical_warning),
            expected: "0x00".to_owned(),
            value: Some(f64::from(h.critical_warning)),
            threshold: Some(0.0),
        },
        CheckResult {
            check: "nvme_health",
            subject: format!("{controller} media_errors"),
            verdict: Verdict::of(!super::within(h.media_errors_rose_ago, cfg.window)),
            observed: match h.media_errors_rose_ago {
                Some(a) => format!("{} media errors, rose {} ago", h.media_errors, ago(a)),
                None => format!("{} media errors, not rising", h.media_errors),
            },
            expected: format!("no rise in the last {}", human(cfg.window)),
            value: h.media_errors_rose_ago,
            threshold: Some(window),
        },
        CheckResult {
            check: "nvme_health",
            subject: format!("{controller} spare"),
            verdict: Verdict::of(h.available_spare >= h.spare_threshold),
            observed: format!("{}%", h.available_spare),
            expected: format!(">= {}% (the drive's threshold)", h.spare_threshold),
            value: Some(f64::from(h.available_spare) / 100.0),
            threshold: Some(f64::from(h.spare_threshold) / 100.0),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_windows() {
        let cfg = Config::default();
        let good = Health {
            critical_warning: 0,
            available_spare: 100,
            spare_threshold: 10,
            media_errors: 0.0,
            media_errors_rose_ago: None,
        };
        let r = judge(&cfg, "nvme0", &good);
        assert!(r.iter().all(|r| r.ok()));
        let subjects: Vec<_> = r.iter().map(|r| r.subject.as_str()).collect();
        assert_eq!(subjects, ["nvme0", "nvme0 media_errors", "nvme0 spare"]);
        let bad = Health { critical_warning: 0x11, available_spare: 5, media_errors_rose_ago: Some(60.0), ..good };
        let r = judge(&cfg, "nvme0", &bad);
        assert!(r.iter().all(|r| !r.ok()), "{r:?}");
        assert_eq!(r[0].value, Some(17.0));
        let old = Health { media_errors_rose_ago: Some(3600.0), ..good };
        assert!(judge(&cfg, "nvme0", &old)[1].ok(), "a rise older than the window passes");
        // QEMU reports spare 0 with threshold 0: not below.
        let qemu = Health { available_spare: 0, spare_threshold: 0, ..good };
        assert!(judge(&cfg, "nvme0", &qemu)[2].ok());
    }
}
