//! Disk I/O families: the raw diskstats counters (named as node_exporter names them), facts,
//! and the window's rates and means.

use super::{Col, counter, gauge, info, table};
use crate::metrics::Family;
use crate::model::derive::{DiskRates, OpRates};
use crate::model::disks::Disks;
use crate::sources::diskstats::DiskStat;

const MS: f64 = 1000.0;
const SECTOR: f64 = 512.0;

/// The raw kernel counters, in base units.
const RAW: &[Col<DiskStat>] = &[
    counter("storwatch_disk_reads_completed_total", "Reads completed successfully.", |s| {
        Some(s.read.completed as f64)
    }),
    counter("storwatch_disk_reads_merged_total", "Adjacent reads merged into one.", |s| {
        Some(s.read.merged as f64)
    }),
    counter("storwatch_disk_read_bytes_total", "Bytes read.", |s| Some(s.read.sectors as f64 * SECTOR)),
    counter(
        "storwatch_disk_read_time_seconds_total",
        "Time spent on reads (32-bit ms in the kernel: wraps after 49.7 days).",
        |s| Some(s.read.ticks_ms as f64 / MS),
    ),
    counter("storwatch_disk_writes_completed_total", "Writes completed successfully.", |s| {
        Some(s.write.completed as f64)
    }),
    counter("storwatch_disk_writes_merged_total", "Adjacent writes merged into one.", |s| {
        Some(s.write.merged as f64)
    }),
    counter("storwatch_disk_written_bytes_total", "Bytes written.", |s| {
        Some(s.write.sectors as f64 * SECTOR)
    }),
    counter(
        "storwatch_disk_write_time_seconds_total",
        "Time spent on writes (32-bit ms in the kernel: wraps after 49.7 days).",
        |s| Some(s.write.ticks_ms as f64 / MS),
    ),
    counter("storwatch_disk_discards_completed_total", "Discards completed successfully.", |s| {
        s.discard.map(|d| d.completed as f64)
    }),
    counter("storwatch_disk_discards_merged_total", "Adjacent discards merged into one.", |s| {
        s.discard.map(|d| d.merged as f64)
    }),
    counter("storwatch_disk_discarded_bytes_total", "Bytes discarded.", |s| {
        s.discard.map(|d| d.sectors as f64 * SECTOR)
    }),
    counter(
        "storwatch_disk_discard_time_seconds_total",
        "Time spent on discards (32-bit ms in the kernel).",
        |s| s.discard.map(|d| d.ticks_ms as f64 / MS),
    ),
    counter("storwatch_disk_flush_requests_total", "Flush requests completed successfully.", |s| {
        s.flush.map(|f| f.completed as f64)
    }),
    counter(
        "storwatch_disk_flush_requests_time_seconds_total",
        "Time spent on flushes (32-bit ms in the kernel).",
        |s| s.flush.map(|f| f.ticks_ms as f64 / MS),
    ),
    counter(
        "storwatch_disk_io_time_seconds_total",
        "Time the device had I/O in flight (32-bit ms in the kernel).",
        |s| Some(s.io_ticks_ms as f64 / MS),
    ),
    counter(
        "storwatch_disk_io_time_weighted_seconds_total",
        "Time spent on I/O weighted by the requests in flight (32-bit ms in the kernel).",
        |s| Some(s.time_in_queue_ms as f64 / MS),
    ),
];

/// The window's gauges of a device, by operation where they have one.
const WINDOW: &[Col<DiskRates>] = &[
    gauge(
        "storwatch_disk_utilization_ratio",
        "Share of the window the device was busy (iostat's %util / 100).",
        |r| Some(r.utilization),
    ),
    gauge(
        "storwatch_disk_queue_depth",
        "Average requests in flight over the window (iostat's aqu-sz).",
        |r| Some(r.queue_depth),
    ),
];

const PER_OP: &[Col<(&str, OpRates)>] = &[
    gauge(
        "storwatch_disk_operations_per_second",
        "Operations completed per second over the window.",
        |(_, o)| Some(o.ops_per_second),
    ),
    gauge("storwatch_disk_bytes_per_second", "Bytes transferred per second over the window.", |(op, o)| {
        (*op != "flush").then_some(o.bytes_per_second)
    }),
    gauge(
        "storwatch_disk_await_seconds",
        "Mean time per completed operation over the window, queueing included (iostat's r_await, w_await, d_await, f_await).",
        |(_, o)| Some(o.await_seconds),
    ),
];

const OPS: [&str; 4] = ["read", "write", "discard", "flush"];

fn each_op(r: &DiskRates) -> impl Iterator<Item = (&'static str, OpRates)> {
    let ops = [Some(r.read), Some(r.write), r.discard, r.flush];
    OPS.into_iter().zip(ops).filter_map(|(name, o)| o.map(|o| (name, o)))
}

pub fn families(d: &Disks) -> Vec<Family> {
    let devices = &d.sample.devices;
    let stats = || devices.iter().map(|(dev, d)| ([("device", dev.as_str())], &d.stat));
    let mut out = table(RAW, stats);
    out.extend(table(
        &[gauge("storwatch_disk_io_now", "I/O requests in flight.", |s: &DiskStat| Some(s.in_flight as f64))],
        stats,
    ));
    let numbers: Vec<(String, String)> =
        devices.values().map(|d| (d.stat.major.to_string(), d.stat.minor.to_string())).collect();
    out.push(info(
        "storwatch_disk_info",
        "Facts about a block device from sysfs (empty when not present).",
        devices.iter().zip(&numbers).map(|((dev, d), (major, minor))| {
            let i = &d.info;
            vec![
                ("device", dev.as_str()),
                ("major", major.as_str()),
                ("minor", minor.as_str()),
                ("model", i.model.as_str()),
                ("serial", i.serial.as_str()),
                ("rotational", i.rotational.as_str()),
                ("logical_block_size", i.logical_block_size.as_str()),
            ]
        }),
    ));
    out.extend(table(PER_OP, || {
        d.rates
            .iter()
            .flat_map(|(dev, r)| each_op(r).map(move |o| ([("device", dev.as_str()), ("op", o.0)], o)))
    }));
    out.extend(table(WINDOW, || d.rates.iter().map(|(dev, r)| ([("device", dev.as_str())], r))));
    if let (false, Some(w)) = (d.rates.is_empty(), d.window) {
        out.push(
            Family::gauge(
                "storwatch_disk_window_seconds",
                "Length of the window the disk rate and latency gauges were computed over.",
            )
            .with_value(w),
        );
    }
    out
}
