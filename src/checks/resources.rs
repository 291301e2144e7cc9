//! Resources: at least the configured CPUs and memory (the manual's 4 vCPU / 8 GiB); each judged
//! when known.

use std::time::Instant;

use serde::Deserialize;

use super::{CheckResult, gib};
use crate::model::Model;
use crate::values::{positive_count, size};

pub const INPUTS: &[&str] = &["host"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Online CPUs the host must have.
    #[serde(deserialize_with = "positive_count")]
    pub min_cpus: u32,
    /// Memory the host must have, e.g. "8GiB".
    #[serde(deserialize_with = "size")]
    pub min_memory: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, min_cpus: 4, min_memory: 8 << 30 }
    }
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    model.host().map(|h| judge(cfg, h.cpus, h.memory)).unwrap_or_default()
}

pub fn judge(cfg: &Config, cpus: Option<u64>, memory_bytes: Option<u64>) -> Vec<CheckResult> {
    let cpus = cpus.map(|cpus| CheckResult {
        check: "resources",
        subject: "cpus".to_owned(),
        ok: cpus >= u64::from(cfg.min_cpus),
        observed: cpus.to_string(),
        expected: format!(">= {}", cfg.min_cpus),
        value: Some(cpus as f64),
        threshold: Some(f64::from(cfg.min_cpus)),
    });
    let memory = memory_bytes.map(|m| CheckResult {
        check: "resources",
        subject: "memory".to_owned(),
        ok: m >= cfg.min_memory,
        observed: gib(m),
        expected: format!(">= {}", gib(cfg.min_memory)),
        value: Some(m as f64),
        threshold: Some(cfg.min_memory as f64),
    });
    cpus.into_iter().chain(memory).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_and_memory() {
        let r = judge(&Config::default(), Some(2), Some(24 << 30));
        assert!(!r[0].ok && r[1].ok);
        assert_eq!(r[1].observed, "24.0GiB");
        let r = judge(&Config::default(), None, Some(4 << 30));
        assert_eq!((r.len(), r[0].subject.as_str(), r[0].ok), (1, "memory", false));
    }
}
