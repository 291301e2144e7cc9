//! Kernel log families: storage errors by device (or by another subject) and class, when the last
//! one was, and the reader's own counts.

use crate::metrics::Family;
use crate::model::kernel::Kernel;
use crate::sources::kmsg::Kind;

pub fn families(k: &Kernel) -> Vec<Family> {
    let mut total = Family::counter(
        "storwatch_kernel_storage_errors_total",
        "Storage errors in the kernel log by whole block device (or NVMe controller) and class.",
    );
    let mut last = Family::gauge(
        "storwatch_kernel_storage_last_error_timestamp_seconds",
        "Unix time of the last storage error in the kernel log by device and class.",
    );
    let mut subject_total = Family::counter(
        "storwatch_kernel_subject_errors_total",
        "Storage errors in the kernel log on subjects that are not disks (md, dm, nfs, iscsi, ata_port, scsi, pci, unknown, none) by kind, subject and class.",
    );
    let mut subject_last = Family::gauge(
        "storwatch_kernel_subject_last_error_timestamp_seconds",
        "Unix time of the last storage error in the kernel log by subject kind, subject and class.",
    );
    let boot = k.boot();
    for ((target, class), (n, t)) in &k.sample.errors {
        if target.kind == Kind::Disk {
            total.push([("device", target.name.as_str()), ("class", class.as_str())], *n as f64);
            last.push([("device", target.name.as_str()), ("class", class.as_str())], boot + *t);
        } else {
            let labels = [
                ("kind", target.kind.as_str()),
                ("subject", target.name.as_str()),
                ("class", class.as_str()),
            ];
            subject_total.push(labels, *n as f64);
            subject_last.push(labels, boot + *t);
        }
    }
    vec![
        total,
        last,
        subject_total,
        subject_last,
        Family::counter("storwatch_kernel_log_records_total", "Kernel log records read.")
            .with_value(k.sample.records as f64),
        Family::counter(
            "storwatch_kernel_log_records_lost_total",
            "Kernel log records overwritten before they could be read (sequence gaps).",
        )
        .with_value(k.sample.lost as f64),
    ]
}
