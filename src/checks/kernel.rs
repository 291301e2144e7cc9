//! Kernel: the running release is at least the configured one (the manual's 5.4 LTS).

use std::time::Instant;

use serde::Deserialize;

use super::{CheckResult, Verdict, unread, version_code};
use crate::model::Model;
use crate::values::{parse_version, version};

pub const INPUTS: &[&str] = &["host"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// The oldest kernel release allowed, e.g. "5.4".
    #[serde(deserialize_with = "version")]
    pub min_version: (u32, u32, u32),
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, min_version: (5, 4, 0) }
    }
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    let (a, b, c) = cfg.min_version;
    let expected = || format!(">= {a}.{b}.{c}");
    let Some(h) = model.host() else { return unread(model, "host", "kernel", &["kernel"], expected) };
    match &h.release {
        Ok(r) => vec![judge(cfg, r, parse_version(r))],
        Err(why) => vec![CheckResult::unknown("kernel", "kernel", expected(), why)],
    }
}

/// `version` is None when the release string has no `major.minor`.
pub fn judge(cfg: &Config, release: &str, version: Option<(u32, u32, u32)>) -> CheckResult {
    let (a, b, c) = cfg.min_version;
    CheckResult {
        check: "kernel",
        subject: "kernel".to_owned(),
        verdict: Verdict::of(version.is_some_and(|v| v >= cfg.min_version)),
        observed: release.to_owned(),
        expected: format!(">= {a}.{b}.{c}"),
        value: version.map(version_code),
        threshold: Some(version_code(cfg.min_version)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        let k = Config::default();
        assert!(judge(&k, "5.4.0-150-generic", Some((5, 4, 0))).ok());
        assert!(judge(&k, "6.1.0", Some((6, 1, 0))).ok());
        assert!(!judge(&k, "4.19.0", Some((4, 19, 0))).ok());
        assert!(!judge(&k, "garbage", None).ok());
    }
}
