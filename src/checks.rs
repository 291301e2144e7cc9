//! The spec's checks (../shared/DESIGN.md, "The spec's thresholds"). Each check judges one subject
//! against a threshold; results become `storwatch_check_ok{check,subject}` with the threshold and
//! the observed value beside it, so alerts and dashboards can show both.

use std::collections::BTreeMap;

use crate::config::LatencyCheck;
use crate::derive::DiskRates;
use crate::metrics::Family;

#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub check: &'static str,
    pub subject: String,
    /// The value judged, in the check's base unit.
    pub observed: f64,
    pub threshold: f64,
    pub ok: bool,
}

/// Storage latency: the mean read and write latency of a device over the window must stay below
/// the threshold (the manual's 5 ms for the NVMe/SATA SSD tier).
pub fn storage_latency(cfg: &LatencyCheck, device: &str, rates: &DiskRates) -> CheckResult {
    let observed = rates.read.await_seconds.max(rates.write.await_seconds);
    let threshold = cfg.max.as_secs_f64();
    CheckResult {
        check: "storage_latency",
        subject: device.to_owned(),
        observed,
        threshold,
        ok: observed < threshold,
    }
}

/// The check families for every result of every collector, in one place so each family appears
/// once in the exposition.
pub fn families<'a>(results: impl IntoIterator<Item = &'a CheckResult>) -> Vec<Family> {
    let mut ok =
        Family::gauge("storwatch_check_ok", "1 when the subject complies with the check, 0 when not.");
    let mut observed =
        Family::gauge("storwatch_check_observed", "The value the check judged, in the check's base unit.");
    let mut thresholds = BTreeMap::new();
    for r in results {
        let labels = [("check", r.check), ("subject", r.subject.as_str())];
        ok.push(labels, if r.ok { 1.0 } else { 0.0 });
        observed.push(labels, r.observed);
        thresholds.insert(r.check, r.threshold);
    }
    let mut threshold = Family::gauge(
        "storwatch_check_threshold",
        "The threshold a check judges against, in the check's base unit.",
    );
    for (check, value) in thresholds {
        threshold.push([("check", check)], value);
    }
    vec![ok, observed, threshold]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::OpRates;
    use std::time::Duration;

    fn rates(read: f64, write: f64) -> DiskRates {
        let op = |a| OpRates { ops_per_second: 1.0, bytes_per_second: 1.0, await_seconds: a };
        DiskRates {
            read: op(read),
            write: op(write),
            discard: None,
            flush: None,
            utilization: 0.0,
            queue_depth: 0.0,
        }
    }

    #[test]
    fn latency_against_threshold() {
        let cfg = LatencyCheck { enabled: true, max: Duration::from_millis(5) };
        assert!(storage_latency(&cfg, "sda", &rates(0.001, 0.0049)).ok);
        let bad = storage_latency(&cfg, "sda", &rates(0.001, 0.005));
        assert!(!bad.ok);
        assert_eq!((bad.observed, bad.threshold), (0.005, 0.005));
        assert!(!storage_latency(&cfg, "sda", &rates(0.02, 0.0)).ok);
    }

    #[test]
    fn threshold_exported_once_per_check() {
        let cfg = LatencyCheck { enabled: true, max: Duration::from_millis(5) };
        let results =
            [storage_latency(&cfg, "sda", &rates(0.0, 0.0)), storage_latency(&cfg, "sdb", &rates(0.01, 0.0))];
        let f = families(&results);
        assert_eq!(f[0].samples.len(), 2);
        assert_eq!(f[0].samples[1].value, 0.0);
        assert_eq!(f[2].samples.len(), 1);
        assert_eq!(f[2].samples[0].value, 0.005);
    }
}
