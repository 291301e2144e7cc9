//! Packet loss on the storage fabric: each ratio over the window at most its bound. Subjects: the
//! interface (`eth0`: errors and drops over its packets), the target (`10.0.0.5:3260`: its
//! connections' retransmitted over sent segments) and the target's probe (`10.0.0.5:3260 probe`:
//! failed over attempted connect probes).

use std::time::Instant;

use serde::Deserialize;

use super::{ALL, CheckResult, Verdict, unread};
use crate::model::Model;
use crate::values::ratio;

pub const INPUTS: &[&str] = &["fabric"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// (errors + drops) / (packets + errors + drops) of a fabric interface, both directions.
    #[serde(deserialize_with = "ratio")]
    pub max_interface_loss: f64,
    /// Retransmitted / sent segments of a target's connections.
    #[serde(deserialize_with = "ratio")]
    pub max_retransmit_ratio: f64,
    /// Failed / attempted probes of a target.
    #[serde(deserialize_with = "ratio")]
    pub max_probe_loss: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, max_interface_loss: 0.001, max_retransmit_ratio: 0.01, max_probe_loss: 0.0 }
    }
}

/// What a packet loss ratio was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Errors and drops over packets of a fabric interface.
    Interface,
    /// Retransmitted over sent segments of a storage target's connections.
    Retransmits,
    /// Failed over attempted connect probes of a storage target.
    Probe,
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    let Some(f) = model.fabric() else {
        return unread(model, "fabric", "packet_loss", &[ALL], || "within the bounds".into());
    };
    let interfaces = f.loss.iter().map(|(name, r)| judge(cfg, LossKind::Interface, name, *r));
    let targets = f
        .sample
        .targets
        .keys()
        .filter_map(|t| Some(judge(cfg, LossKind::Retransmits, &t.to_string(), f.retransmit_ratio(t)?)));
    let probes = f.probe_loss.iter().map(|(t, r)| judge(cfg, LossKind::Probe, &t.to_string(), *r));
    interfaces.chain(targets).chain(probes).collect()
}

pub fn judge(cfg: &Config, kind: LossKind, subject: &str, ratio: f64) -> CheckResult {
    let (max, what, subject) = match kind {
        LossKind::Interface => (cfg.max_interface_loss, "errors+drops", subject.to_owned()),
        LossKind::Retransmits => (cfg.max_retransmit_ratio, "retransmits", subject.to_owned()),
        LossKind::Probe => (cfg.max_probe_loss, "probe loss", format!("{subject} probe")),
    };
    CheckResult {
        check: "packet_loss",
        subject,
        verdict: Verdict::of(ratio <= max),
        observed: format!("{what} {:.3}%", ratio * 100.0),
        expected: format!("<= {}%", max * 100.0),
        value: Some(ratio),
        threshold: Some(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_against_bounds() {
        let cfg = Config::default();
        assert!(judge(&cfg, LossKind::Interface, "eth0", 0.001).ok());
        assert!(!judge(&cfg, LossKind::Interface, "eth0", 0.0011).ok());
        let r = judge(&cfg, LossKind::Retransmits, "10.0.0.5:3260", 0.1);
        assert!(!r.ok());
        assert_eq!((r.subject.as_str(), r.observed.as_str()), ("10.0.0.5:3260", "retransmits 10.000%"));
        let p = judge(&cfg, LossKind::Probe, "10.0.0.5:3260", 0.0);
        assert!(p.ok());
        assert_eq!(p.subject, "10.0.0.5:3260 probe");
        assert!(!judge(&cfg, LossKind::Probe, "10.0.0.5:3260", 0.05).ok());
    }
}
