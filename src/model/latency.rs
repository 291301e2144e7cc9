//! Block I/O latency over a window: the p99 of each device's and operation's eBPF histogram
//! between two samples, estimated as Prometheus' `histogram_quantile` does.

use std::collections::BTreeMap;
use std::time::Instant;

use super::derive::{histogram_delta, histogram_quantile};
use crate::sources::biolatency::{Op, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub at: Instant,
    pub sample: Sample,
    /// The window's p99 in seconds by ((major, minor), op), for the histograms that saw requests
    /// in the window; empty on the first sample and after the programs were reloaded.
    pub p99: BTreeMap<((u32, u32), Op), f64>,
}

impl Latency {
    pub fn new(sample: Sample, prev: Option<Latency>, at: Instant) -> Latency {
        let mut p99 = BTreeMap::new();
        if let Some(prev) = prev.filter(|p| p.sample.loaded) {
            let before: BTreeMap<_, _> =
                prev.sample.histograms.iter().map(|h| ((h.major, h.minor, h.op), &h.hist)).collect();
            for h in &sample.histograms {
                let window = histogram_delta(before.get(&(h.major, h.minor, h.op)).copied(), &h.hist);
                if let Some(q) = window.and_then(|w| histogram_quantile(0.99, &w)) {
                    p99.insert(((h.major, h.minor), h.op), q);
                }
            }
        }
        Latency { at, sample, p99 }
    }

    /// The window's p99 of `op` on the device `major:minor`, where the histograms saw requests.
    pub fn p99(&self, dev: (u32, u32), op: Op) -> Option<f64> {
        self.p99.get(&(dev, op)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::biolatency::{Histogram, LatencyHistogram};

    fn sample(n: u64) -> Sample {
        let mut hist = LatencyHistogram::default();
        hist.slots[13] = n;
        let h = Histogram { device: "sda".into(), major: 8, minor: 0, op: Op::Read, hist };
        Sample { loaded: true, histograms: vec![h], untracked: 0, map_bytes: 0 }
    }

    #[test]
    fn p99_of_the_window_only() {
        let t0 = Instant::now();
        let first = Latency::new(sample(100), None, t0);
        assert!(first.p99.is_empty(), "one sample: no window");
        let second = Latency::new(sample(150), Some(first), t0);
        let q = second.p99((8, 0), Op::Read).unwrap();
        assert!((q - (0.004096 + 0.99 * 0.004096)).abs() < 1e-12, "{q}");
        assert_eq!(second.p99((8, 0), Op::Write), None);
        let idle = Latency::new(sample(150), Some(second), t0);
        assert_eq!(idle.p99((8, 0), Op::Read), None, "no request in the window");
        let reloaded = Latency::new(sample(3), Some(idle), t0);
        assert!(reloaded.p99.is_empty(), "counts went back: the window is unknown");
    }
}
