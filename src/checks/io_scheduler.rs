//! I/O scheduler: non-rotational devices use one of the allowed schedulers (mq-deadline or none,
//! the blk-mq deadline and noop; the manual: deadline or noop for SSD-backed persistent storage,
//! not cfq). Rotational devices are reported and pass.

use std::time::Instant;

use serde::Deserialize;

use super::{ALL, CheckResult, Verdict, unread};
use crate::model::Model;
use crate::values::non_empty_names;

pub const INPUTS: &[&str] = &["queue"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Schedulers allowed on non-rotational devices (blk-mq names of deadline and noop).
    #[serde(deserialize_with = "non_empty_names")]
    pub allowed: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, allowed: vec!["mq-deadline".into(), "none".into()] }
    }
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    let Some(q) = model.queue() else {
        return unread(model, "queue", "io_scheduler", &[ALL], || cfg.allowed.join(" or "));
    };
    q.devices
        .iter()
        .filter_map(|(dev, s)| {
            let (active, _) = s.scheduler.as_ref()?;
            Some(judge(cfg, dev, active, s.rotational? == 1))
        })
        .collect()
}

pub fn judge(cfg: &Config, device: &str, scheduler: &str, rotational: bool) -> CheckResult {
    CheckResult {
        check: "io_scheduler",
        subject: device.to_owned(),
        verdict: Verdict::of(rotational || cfg.allowed.iter().any(|a| a == scheduler)),
        observed: if rotational { format!("{scheduler} (rotational)") } else { scheduler.to_owned() },
        expected: if rotational { "any (rotational)".to_owned() } else { cfg.allowed.join(" or ") },
        value: None,
        threshold: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler() {
        let cfg = Config::default();
        assert!(judge(&cfg, "sda", "bfq", true).ok(), "rotational: reported, not a violation");
        assert!(!judge(&cfg, "sda", "bfq", false).ok());
        assert!(judge(&cfg, "nvme0n1", "none", false).ok());
        assert!(judge(&cfg, "nvme0n1", "mq-deadline", false).ok());
        assert!(!judge(&cfg, "nvme0n1", "kyber", false).ok());
    }
}
