//! Network bandwidth: the link speed of each fabric interface that reports one is at least the
//! configured speed (the manual's 10 Gbps). An interface with no speed (sysfs `speed` -1 or
//! EINVAL) fails with its link down; with its link up it is a virtual interface (virtio, bridge,
//! bond without slaves) whose real bandwidth is its host's, which this host cannot see, so it is
//! reported as unknown and passes unless `fail_unknown_speed`. Failing it would fail every VM
//! forever and teach operators to turn the check off.

use std::time::Instant;

use serde::Deserialize;

use super::{ALL, CheckResult, Verdict, unread};
use crate::model::Model;
use crate::sources::fabric::netdev::Speed;
use crate::values::positive_count;

pub const INPUTS: &[&str] = &["fabric"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Least link speed, Mb/s (the manual's 10 Gbps).
    #[serde(deserialize_with = "positive_count")]
    pub min_speed_mbps: u32,
    /// Whether an interface that is up but reports no speed (virtio, bridges, bonds without
    /// slaves: sysfs `speed` -1 or EINVAL) fails; by default it is reported and passes.
    pub fail_unknown_speed: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, min_speed_mbps: 10_000, fail_unknown_speed: false }
    }
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    let Some(f) = model.fabric() else {
        return unread(model, "fabric", "network_bandwidth", &[ALL], || format!(">= {}Mb/s", cfg.min_speed_mbps));
    };
    f.sample
        .interfaces
        .iter()
        .filter_map(|(name, d)| {
            let mbps = match d.speed? {
                Speed::Mbps(s) => Some(s),
                Speed::Unknown => None,
            };
            Some(judge(cfg, name, mbps, d.link_up()))
        })
        .collect()
}

pub fn judge(cfg: &Config, interface: &str, speed_mbps: Option<u64>, link_up: bool) -> CheckResult {
    let min = u64::from(cfg.min_speed_mbps);
    let (ok, observed) = match speed_mbps {
        Some(s) => (s >= min, format!("{s}Mb/s")),
        None if !link_up => (false, "no link".to_owned()),
        None => (!cfg.fail_unknown_speed, "unknown (no speed reported: virtual interface)".to_owned()),
    };
    CheckResult {
        check: "network_bandwidth",
        subject: interface.to_owned(),
        verdict: Verdict::of(ok),
        observed,
        expected: format!(">= {min}Mb/s"),
        value: speed_mbps.map(|s| s as f64 * 125_000.0),
        threshold: Some(min as f64 * 125_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds() {
        let cfg = Config::default();
        let veth = judge(&cfg, "veth0", Some(10_000), true);
        assert!(veth.ok());
        assert_eq!((veth.value, veth.threshold), (Some(1.25e9), Some(1.25e9)));
        assert!(!judge(&cfg, "eth0", Some(1000), true).ok());
        assert!(!judge(&cfg, "eth0", None, false).ok(), "no link fails");
        let virtio = judge(&cfg, "eth0", None, true);
        assert!(virtio.ok() && virtio.value.is_none() && virtio.observed.starts_with("unknown"));
        let strict = Config { fail_unknown_speed: true, ..cfg };
        assert!(!judge(&strict, "eth0", None, true).ok());
    }
}
