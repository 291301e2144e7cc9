//! Block I/O latency histograms from eBPF, and the programs' own counts.

use crate::metrics::Family;
use crate::sources::biolatency::Sample;

pub fn families(s: &Sample) -> Vec<Family> {
    if !s.loaded {
        return Vec::new();
    }
    let mut latency = Family::histogram(
        "storwatch_disk_io_latency_seconds",
        "Block I/O latency per request from eBPF (insert or issue to completion, queueing included), by device and operation.",
    );
    for h in &s.histograms {
        latency.push_histogram(
            [("device", h.device.as_str()), ("op", h.op.as_str())],
            &h.hist.cumulative(),
            h.hist.sum_ns as f64 / 1e9,
            h.hist.count(),
        );
    }
    vec![
        latency,
        Family::counter(
            "storwatch_disk_io_latency_untracked_total",
            "Requests not timed because the eBPF table of requests in flight was full.",
        )
        .with_value(s.untracked as f64),
        Family::gauge(
            "storwatch_disk_io_latency_map_bytes",
            "Kernel memory held by the eBPF maps of the latency histograms (memlock; fixed, preallocated).",
        )
        .with_value(s.map_bytes as f64),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Format, encode};
    use crate::sources::biolatency::{Histogram, LatencyHistogram, Op};

    #[test]
    fn exported_histogram() {
        let mut hist = LatencyHistogram::default();
        hist.slots[13] = 10;
        hist.sum_ns = 50_000_000;
        let h = Histogram { device: "loop0".into(), major: 7, minor: 0, op: Op::Read, hist };
        let s = Sample { loaded: true, histograms: vec![h], untracked: 2, map_bytes: 4096 };
        let text = encode(Format::Text, &families(&s));
        assert!(text.contains("# TYPE storwatch_disk_io_latency_seconds histogram\n"));
        assert!(text.contains(
            "storwatch_disk_io_latency_seconds_bucket{device=\"loop0\",op=\"read\",le=\"0.004096\"} 0\n"
        ));
        assert!(text.contains(
            "storwatch_disk_io_latency_seconds_bucket{device=\"loop0\",op=\"read\",le=\"0.008192\"} 10\n"
        ));
        assert!(text.contains("storwatch_disk_io_latency_seconds_sum{device=\"loop0\",op=\"read\"} 0.05\n"));
        assert!(text.contains("storwatch_disk_io_latency_seconds_count{device=\"loop0\",op=\"read\"} 10\n"));
        assert!(text.contains("storwatch_disk_io_latency_untracked_total 2\n"));
        assert!(text.contains("storwatch_disk_io_latency_map_bytes 4096\n"));
        assert!(families(&Sample::default()).is_empty(), "no BTF: nothing at all");
    }
}
