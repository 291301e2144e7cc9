//! Block queue setting families: the active scheduler, and one gauge per setting.

use super::{Col, gauge, info, table};
use crate::metrics::Family;
use crate::sources::queue::{QueueSettings, Sample};

const SETTINGS: &[Col<QueueSettings>] = &[
    gauge(
        "storwatch_disk_rotational",
        "1 when the kernel treats the device as rotational (queue/rotational).",
        |s| s.rotational.map(|v| v as f64),
    ),
    gauge("storwatch_disk_nr_requests", "Requests the queue may hold (queue/nr_requests).", |s| {
        s.nr_requests.map(|v| v as f64)
    }),
    gauge("storwatch_disk_read_ahead_bytes", "Read-ahead size (queue/read_ahead_kb).", |s| {
        s.read_ahead_kb.map(|v| v as f64 * 1024.0)
    }),
    gauge(
        "storwatch_disk_max_request_bytes",
        "Largest request the block layer issues (queue/max_sectors_kb).",
        |s| s.max_sectors_kb.map(|v| v as f64 * 1024.0),
    ),
    gauge(
        "storwatch_disk_write_cache_enabled",
        "1 for a volatile write-back cache, 0 for write through (queue/write_cache).",
        |s| s.write_cache.map(|v| if v { 1.0 } else { 0.0 }),
    ),
    gauge(
        "storwatch_disk_wbt_latency_seconds",
        "Writeback throttling latency target; 0 when disabled (queue/wbt_lat_usec).",
        |s| s.wbt_lat_usec.map(|v| v as f64 / 1e6),
    ),
    gauge(
        "storwatch_disk_io_timeout_seconds",
        "Time after which the block layer times a request out (queue/io_timeout).",
        |s| s.io_timeout_ms.map(|v| v as f64 / 1e3),
    ),
];

pub fn families(s: &Sample) -> Vec<Family> {
    let available: Vec<String> = s
        .devices
        .iter()
        .map(|(_, q)| q.scheduler.as_ref().map(|(_, a)| a.join(" ")).unwrap_or_default())
        .collect();
    let mut out = vec![info(
        "storwatch_disk_scheduler_info",
        "The active I/O scheduler of a device and the ones available (queue/scheduler).",
        s.devices.iter().zip(&available).filter_map(|((dev, q), available)| {
            let (active, _) = q.scheduler.as_ref()?;
            Some(vec![
                ("device", dev.as_str()),
                ("scheduler", active.as_str()),
                ("available", available.as_str()),
            ])
        }),
    )];
    out.extend(table(SETTINGS, || s.devices.iter().map(|(dev, q)| ([("device", dev.as_str())], q))));
    out
}
