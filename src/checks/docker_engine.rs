//! Docker engine: the engine's version within the configured range (the manual's 20.10.x to
//! 25.0.x) and its storage driver one of the allowed (overlay2). Subjects `version` and
//! `storage_driver`; the version's value is its `LINUX_VERSION_CODE`-style code.

use std::time::Instant;

use serde::Deserialize;

use super::{CheckResult, Verdict, docker_unread, version_code};
use crate::model::Model;
use crate::values::{non_empty_names, parse_version, version, version_upper};

pub const INPUTS: &[&str] = &["docker"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// The oldest engine version allowed, e.g. "20.10".
    #[serde(deserialize_with = "version")]
    pub min_version: (u32, u32, u32),
    /// The newest allowed: "25.0" allows every 25.0.x; "25.0.3" allows up to 25.0.3.
    #[serde(deserialize_with = "version_upper")]
    pub max_version: (u32, u32, u32),
    /// Storage drivers allowed (`docker info` Driver).
    #[serde(deserialize_with = "non_empty_names")]
    pub storage_drivers: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            min_version: (20, 10, 0),
            max_version: (25, 0, u32::MAX),
            storage_drivers: vec!["overlay2".into()],
        }
    }
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    if let Some(e) = model.docker().and_then(|d| d.engine.as_ref()) {
        return judge(cfg, &e.snapshot.version.version, &e.snapshot.info.driver);
    }
    let Some(why) = docker_unread(model) else { return Vec::new() };
    vec![
        CheckResult::unknown("docker_engine", "version", version_range(cfg), &why),
        CheckResult::unknown("docker_engine", "storage_driver", cfg.storage_drivers.join(" or "), &why),
    ]
}

fn version_text((a, b, c): (u32, u32, u32)) -> String {
    if c == u32::MAX { format!("{a}.{b}.x") } else { format!("{a}.{b}.{c}") }
}

fn version_range(cfg: &Config) -> String {
    format!("{} to {}", version_text(cfg.min_version), version_text(cfg.max_version))
}

pub fn judge(cfg: &Config, version: &str, driver: &str) -> Vec<CheckResult> {
    let parsed = parse_version(version);
    let version = CheckResult {
        check: "docker_engine",
        subject: "version".to_owned(),
        verdict: Verdict::of(parsed.is_some_and(|v| v >= cfg.min_version && v <= cfg.max_version)),
        observed: version.to_owned(),
        expected: version_range(cfg),
        value: parsed.map(version_code),
        threshold: None,
    };
    let driver = CheckResult {
        check: "docker_engine",
        subject: "storage_driver".to_owned(),
        verdict: Verdict::of(cfg.storage_drivers.iter().any(|d| d == driver)),
        observed: driver.to_owned(),
        expected: cfg.storage_drivers.join(" or "),
        value: None,
        threshold: None,
    };
    vec![version, driver]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_drivers() {
        let cfg = Config::default();
        let ok = |v: &str| judge(&cfg, v, "overlay2")[0].ok();
        assert!(ok("20.10.0") && ok("20.10.24+dfsg1") && ok("24.0.7") && ok("25.0.99"));
        assert!(!ok("20.9.9") && !ok("25.1.0") && !ok("28.2.2") && !ok("19.03.15") && !ok("dev"));
        let r = judge(&cfg, "28.2.2", "fuse-overlayfs");
        assert_eq!(r[0].expected, "20.10.0 to 25.0.x");
        assert_eq!(r[0].value, Some(version_code((28, 2, 2))));
        assert!(!r[1].ok());
        assert_eq!((r[1].subject.as_str(), r[1].expected.as_str()), ("storage_driver", "overlay2"));
        let wide = Config { max_version: (28, 2, 2), ..cfg };
        assert!(judge(&wide, "28.2.2", "overlay2")[0].ok());
        assert!(!judge(&wide, "28.2.3", "overlay2")[0].ok());
    }
}
