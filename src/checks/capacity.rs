//! Capacity: the space available (to unprivileged writers: statvfs `f_bavail`) on the filesystem
//! holding the Docker data root and each local volume is at least the larger of `min_free_ratio`
//! of its size and `min_free` (the manual: check free space where /var/lib/docker lives before
//! deploying).

use std::time::Instant;

use serde::Deserialize;

use super::{ALL, CheckResult, Verdict, docker_unread, gib};
use crate::model::Model;
use crate::values::{ratio, size};

pub const INPUTS: &[&str] = &["docker"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Space available to unprivileged writers, as a share of the filesystem's size.
    #[serde(deserialize_with = "ratio")]
    pub min_free_ratio: f64,
    /// And at least this much, e.g. "10GiB" ("0B": the ratio alone).
    #[serde(deserialize_with = "size")]
    pub min_free: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, min_free_ratio: 0.1, min_free: 0 }
    }
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    let Some(e) = model.docker().and_then(|d| d.engine.as_ref()) else {
        let why = docker_unread(model);
        return why.map(|why| CheckResult::unknown("capacity", ALL, wanted(cfg), &why)).into_iter().collect();
    };
    e.places
        .iter()
        .map(|p| match p.space {
            Some(s) => judge(cfg, &p.path, s.size, s.available),
            // statvfs failed: the docker collector counted the error.
            None => CheckResult::unknown("capacity", &p.path, wanted(cfg), "statvfs failed (docker collector errors)"),
        })
        .collect()
}

/// The rule, without a filesystem's size to put it in bytes.
fn wanted(cfg: &Config) -> String {
    match cfg.min_free {
        0 => format!(">= {}% of size", cfg.min_free_ratio * 100.0),
        min => format!(">= {}% of size, at least {}", cfg.min_free_ratio * 100.0, gib(min)),
    }
}

pub fn judge(cfg: &Config, path: &str, size: u64, available: u64) -> CheckResult {
    let by_ratio = (size as f64 * cfg.min_free_ratio).ceil();
    let threshold = by_ratio.max(cfg.min_free as f64);
    let share = if size == 0 { 0.0 } else { available as f64 / size as f64 };
    CheckResult {
        check: "capacity",
        subject: path.to_owned(),
        verdict: Verdict::of(available as f64 >= threshold),
        observed: format!("{} free of {} ({:.1}%)", gib(available), gib(size), share * 100.0),
        expected: match cfg.min_free {
            0 => format!(">= {} ({}% of size)", gib(threshold as u64), cfg.min_free_ratio * 100.0),
            min => format!(
                ">= {} ({}% of size, at least {})",
                gib(threshold as u64),
                cfg.min_free_ratio * 100.0,
                gib(min)
            ),
        },
        value: Some(available as f64),
        threshold: Some(threshold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space() {
        let cfg = Config::default();
        let r = judge(&cfg, "/var/lib/docker", 100 << 30, 10 << 30);
        assert!(r.ok());
        assert_eq!((r.value, r.threshold), (Some((10u64 << 30) as f64), Some((10u64 << 30) as f64)));
        assert_eq!(r.observed, "10.0GiB free of 100.0GiB (10.0%)");
        assert_eq!(r.expected, ">= 10.0GiB (10% of size)");
        assert!(!judge(&cfg, "/v", 100 << 30, (10 << 30) - 1).ok());
        let abs = Config { min_free: 20 << 30, ..cfg };
        assert!(!judge(&abs, "/v", 100 << 30, 15 << 30).ok());
        assert_eq!(judge(&abs, "/v", 100 << 30, 15 << 30).threshold, Some((20u64 << 30) as f64));
        assert!(judge(&Config::default(), "/v", 0, 0).ok(), "an empty filesystem: 0 >= 0");
    }
}
