//! Writeback: `vm.dirty_ratio` and `vm.dirty_background_ratio` exactly as configured (the
//! manual's 15 and 5). Values are percentages in the sysctl and ratios (0..1) in the metrics.

use std::time::Instant;

use serde::Deserialize;

use super::{CheckResult, Verdict, unread};
use crate::model::Model;
use crate::values::percent;

pub const INPUTS: &[&str] = &["host"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Required `vm.dirty_ratio`, percent.
    #[serde(deserialize_with = "percent")]
    pub dirty_ratio: u32,
    /// Required `vm.dirty_background_ratio`, percent.
    #[serde(deserialize_with = "percent")]
    pub dirty_background_ratio: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, dirty_ratio: 15, dirty_background_ratio: 5 }
    }
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    let subjects = ["vm.dirty_ratio", "vm.dirty_background_ratio"];
    let Some(h) = model.host() else { return unread(model, "host", "writeback", &subjects, || "= ?".into()) };
    let wants = [cfg.dirty_ratio, cfg.dirty_background_ratio];
    match (&h.vm[0], &h.vm[1]) {
        (Ok(ratio), Ok(background)) => judge(cfg, *ratio, *background),
        (ratio, background) => subjects
            .iter()
            .zip([ratio, background])
            .zip(wants)
            .map(|((subject, seen), want)| match seen {
                Ok(seen) => judged(subject, *seen, want),
                Err(why) => CheckResult::unknown("writeback", subject, format!("= {want}"), why),
            })
            .collect(),
    }
}

pub fn judge(cfg: &Config, dirty_ratio: u64, dirty_background_ratio: u64) -> Vec<CheckResult> {
    [
        ("vm.dirty_ratio", dirty_ratio, cfg.dirty_ratio),
        ("vm.dirty_background_ratio", dirty_background_ratio, cfg.dirty_background_ratio),
    ]
    .into_iter()
    .map(|(subject, seen, want)| judged(subject, seen, want))
    .collect()
}

fn judged(subject: &str, seen: u64, want: u32) -> CheckResult {
    CheckResult {
        check: "writeback",
        subject: subject.to_owned(),
        verdict: Verdict::of(seen == u64::from(want)),
        observed: seen.to_string(),
        expected: format!("= {want}"),
        value: Some(seen as f64 / 100.0),
        threshold: Some(f64::from(want) / 100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values() {
        let w = judge(&Config::default(), 20, 5);
        assert!(!w[0].ok() && w[1].ok());
        assert_eq!((w[0].value, w[0].threshold), (Some(0.2), Some(0.15)));
    }
}
