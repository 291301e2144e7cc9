//! Kernel log families: storage errors by device and class, when the last one was, and the
//! reader's own counts.

use crate::metrics::Family;
use crate::model::kernel::Kernel;

pub fn families(k: &Kernel) -> Vec<Family> {
    let mut total = Family::counter(
        "storwatch_kernel_storage_errors_total",
        "Storage errors in the kernel log by whole block device (empty when it cannot be attributed) and class.",
    );
    let mut last = Family::gauge(
        "storwatch_kernel_storage_last_error_timestamp_seconds",
        "Unix time of the last storage error in the kernel log by device and class.",
    );
    let boot = k.boot();
    for ((device, class), (n, t)) in &k.sample.errors {
        total.push([("device", device), ("class", class.as_str())], *n as f64);
        last.push([("device", device), ("class", class.as_str())], boot + *t);
    }
    vec![
        total,
        last,
        Family::counter("storwatch_kernel_log_records_total", "Kernel log records read.")
            .with_value(k.sample.records as f64),
        Family::counter(
            "storwatch_kernel_log_records_lost_total",
            "Kernel log records overwritten before they could be read (sequence gaps).",
        )
        .with_value(k.sample.lost as f64),
    ]
}
