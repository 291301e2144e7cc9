//! Resources: at least the configured CPUs and memory (the manual's 4 vCPU / 8 GiB); each judged
//! when known.

use std::time::Instant;

use serde::Deserialize;

use super::{CheckResult, Verdict, gib, unread};
use crate::sources::host::Reading;
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
    let Some(h) = model.host() else {
        return unread(model, "host", "resources", &["cpus", "memory"], || "?".into());
    };
    judge(cfg, h.cpus.clone(), h.memory.clone())
}

/// Each reading judged, or unknown with the reason it could not be read.
pub fn judge(cfg: &Config, cpus: Reading<u64>, memory_bytes: Reading<u64>) -> Vec<CheckResult> {
    let min_cpus = u64::from(cfg.min_cpus);
    let one = |subject: &str, seen: Reading<u64>, min: u64, text: fn(u64) -> String| {
        let expected = format!(">= {}", text(min));
        match seen {
            Ok(n) => CheckResult {
                check: "resources",
                subject: subject.to_owned(),
                verdict: Verdict::of(n >= min),
                observed: text(n),
                expected,
                value: Some(n as f64),
                threshold: Some(min as f64),
            },
            Err(why) => CheckResult::unknown("resources", subject, expected, &why),
        }
    };
    vec![one("cpus", cpus, min_cpus, |n| n.to_string()), one("memory", memory_bytes, cfg.min_memory, gib)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_and_memory() {
        let r = judge(&Config::default(), Ok(2), Ok(24 << 30));
        assert!(!r[0].ok() && r[1].ok());
        assert_eq!((r[0].expected.as_str(), r[1].observed.as_str()), (">= 4", "24.0GiB"));
        let r = judge(&Config::default(), Err("/proc/x: gone".into()), Ok(4 << 30));
        assert_eq!((r.len(), r[0].subject.as_str(), r[0].verdict), (2, "cpus", Verdict::Unknown));
        assert_eq!(r[0].observed, "not read: /proc/x: gone");
        assert_eq!((r[1].subject.as_str(), r[1].verdict), ("memory", Verdict::Fail));
    }
}
