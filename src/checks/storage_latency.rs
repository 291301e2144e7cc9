//! Storage latency: the read and write latency of each device over the window stays below the
//! threshold (the manual's 5 ms for the NVMe/SATA SSD tier). Judged on the window's p99 from the
//! eBPF histograms where they saw requests (the tail is what stalls a database, and a mean under
//! 5 ms can hide a p99 far above it), else on the diskstats mean. The p99 covers the biolatency
//! source's last window, the mean the diskstats source's: both 5 s by default.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{ALL, CheckResult, Verdict, ms, unread};
use crate::model::Model;
use crate::model::derive::DiskRates;
use crate::sources::biolatency::Op;
use crate::values::positive_duration;

pub const INPUTS: &[&str] = &["diskstats", "biolatency"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Read and write latency per device over the window must stay below this.
    #[serde(deserialize_with = "positive_duration")]
    pub max: Duration,
    /// Judge the window's p99 from the eBPF latency histograms (biolatency source) for an
    /// operation they saw requests of; false: always the diskstats mean.
    pub p99: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, max: Duration::from_millis(5), p99: true }
    }
}

/// A device's 99th percentile latencies over the window; `None` for an operation the histograms
/// saw no request of (no I/O, or a device whose requests bypass the block request tracepoints,
/// as bio-based device-mapper does).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tail {
    pub read: Option<f64>,
    pub write: Option<f64>,
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    let Some(disks) = model.disks() else {
        return unread(model, "diskstats", "storage_latency", &[ALL], || expected(cfg));
    };
    let latency = model.latency().filter(|_| cfg.p99);
    disks
        .rates
        .iter()
        .map(|(dev, rates)| {
            let tail = match (latency, disks.sample.devices.get(dev)) {
                (Some(l), Some(d)) => {
                    let n = (d.stat.major, d.stat.minor);
                    Tail { read: l.p99(n, Op::Read), write: l.p99(n, Op::Write) }
                }
                _ => Tail::default(),
            };
            judge(cfg, dev, rates, &tail)
        })
        .collect()
}

fn expected(cfg: &Config) -> String {
    format!("< {}", humantime::format_duration(cfg.max))
}

/// One device: the p99 where there is one, the mean (iostat's await) otherwise.
pub fn judge(cfg: &Config, device: &str, rates: &DiskRates, tail: &Tail) -> CheckResult {
    let read = tail.read.unwrap_or(rates.read.await_seconds);
    let write = tail.write.unwrap_or(rates.write.await_seconds);
    let value = read.max(write);
    let threshold = cfg.max.as_secs_f64();
    let name = |p99: Option<f64>, op: &str| if p99.is_some() { format!("{op}_p99") } else { format!("{op}_await") };
    CheckResult {
        check: "storage_latency",
        subject: device.to_owned(),
        verdict: Verdict::of(value < threshold),
        observed: format!("{} {} {} {}", name(tail.read, "r"), ms(read), name(tail.write, "w"), ms(write)),
        expected: expected(cfg),
        value: Some(value),
        threshold: Some(threshold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::derive::OpRates;

    fn rates(read: f64, write: f64) -> DiskRates {
        let op = |a| OpRates { ops_per_second: 1.0, bytes_per_second: 1.0, await_seconds: a };
        DiskRates { read: op(read), write: op(write), discard: None, flush: None, utilization: 0.0, queue_depth: 0.0 }
    }

    #[test]
    fn latency_against_threshold() {
        let cfg = Config::default();
        let none = Tail::default();
        assert!(judge(&cfg, "sda", &rates(0.001, 0.0049), &none).ok());
        let bad = judge(&cfg, "sda", &rates(0.001, 0.005), &none);
        assert!(!bad.ok());
        assert_eq!((bad.value, bad.threshold), (Some(0.005), Some(0.005)));
        assert_eq!((bad.observed.as_str(), bad.expected.as_str()), ("r_await 1.000ms w_await 5.000ms", "< 5ms"));
        assert!(!judge(&cfg, "sda", &rates(0.02, 0.0), &none).ok());
    }

    #[test]
    fn latency_tail_where_histograms_have_it() {
        let cfg = Config::default();
        // Means well under 5 ms, but the p99 of reads above it: the tail decides.
        let tail = Tail { read: Some(0.008), write: None };
        let r = judge(&cfg, "sda", &rates(0.001, 0.002), &tail);
        assert!(!r.ok());
        assert_eq!(r.value, Some(0.008));
        assert_eq!(r.observed, "r_p99 8.000ms w_await 2.000ms");
        let tail = Tail { read: Some(0.0004), write: Some(0.0049) };
        let r = judge(&cfg, "sda", &rates(0.02, 0.02), &tail);
        assert!(r.ok(), "the p99s replace the means");
        assert_eq!(r.observed, "r_p99 0.400ms w_p99 4.900ms");
    }
}
