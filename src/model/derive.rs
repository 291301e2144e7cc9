//! The arithmetic of derived values, from two samples: counter deltas (with the kernel's 32-bit
//! wraps and device resets told apart), the per-device rates of a window, ratios, histogram
//! windows and quantiles. Pure functions; the model (`super`) applies them.
//!
//! A counter that goes backwards without being a wrap yields no value rather than a huge one.

use crate::sources::biolatency::{FINITE, LatencyHistogram, SLOTS, upper_bound};
use crate::sources::diskstats::{DiskStat, OpStat};

/// Delta of a 64-bit kernel counter (`%lu`); `None` when it went backwards (device reset).
pub fn delta_u64(prev: u64, cur: u64) -> Option<u64> {
    cur.checked_sub(prev)
}

/// Delta of a kernel field printed as 32-bit `%u` (diskstats times): one wrap past `u32::MAX` is
/// undone. A value that cannot be a 32-bit counter going backwards is a reset: `None`.
pub fn delta_u32(prev: u64, cur: u64) -> Option<u64> {
    if cur >= prev {
        Some(cur - prev)
    } else if prev <= u64::from(u32::MAX) {
        Some(cur + (1u64 << 32) - prev)
    } else {
        None
    }
}

/// Growth of a SCSI device's iostat counter (`iorequest_cnt`, `iodone_cnt`, `ioerr_cnt`,
/// `iotmo_cnt`: an `atomic_t` printed as `0x%x`, so 32 bits that wrap). A decrease of less than
/// half the range is taken as one wrap; a bigger one is the device being re-created (counters
/// back at 0), which yields no delta. The model also starts afresh when the disk's identity (its
/// `dev` and SCSI address) changes.
pub fn scsi_counter_delta(prev: u32, cur: u32) -> Option<u64> {
    let d = cur.wrapping_sub(prev);
    (d < 1 << 31).then_some(u64::from(d))
}

/// New I/O errors of a SCSI disk over a window: the growth of `ioerr_cnt` less the agent's own
/// commands that completed with a non-GOOD status in that window (each ATA PASS-THROUGH with
/// CK_COND answers CHECK CONDITION, which the kernel counts as an error).
pub fn io_errors_delta(prev: u32, cur: u32, own: u32) -> Option<u64> {
    scsi_counter_delta(prev, cur).map(|d| d.saturating_sub(u64::from(own)))
}

/// Growth over a window of a per-connection TCP counter (`tcp_info`'s `total_retrans`,
/// `segs_out`: 32-bit, and zero when the connection opened).
///
/// Summing these counters over a target's connections is not a counter: it drops whenever a
/// connection closes. So a target's totals are the sum of each connection's own growth, with
/// connections told apart by their socket cookie (unique per socket for the boot):
/// - a connection seen in both samples grows by `cur - prev`, undoing one 32-bit wrap;
/// - a connection first seen now (`prev` None) opened in the window, so all of `cur` is growth
///   (on the agent's first sample there is no window and the caller takes none);
/// - a connection gone since the last sample took its last growth with it: up to one
///   interval of a closing connection is not counted, which under-counts rather than inventing.
pub fn connection_delta(prev: Option<u64>, cur: u64) -> u64 {
    match prev {
        None => cur,
        Some(p) => delta_u32(p, cur).unwrap_or(cur),
    }
}

/// `part / whole`, clamped to 0..1; 0 when nothing happened in the window (`whole` 0).
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { (part as f64 / whole as f64).min(1.0) }
}

/// The share of an interface's packets lost over a window: `bad` (errors and drops, whose
/// packets the kernel does not count as received or sent) over all packets, good and bad.
pub fn loss_ratio(bad: u64, good: u64) -> f64 {
    ratio(bad, good.saturating_add(bad))
}

/// Mean time per operation over a window from a cumulative millisecond total (NFS RTT): 0 when
/// nothing completed, as iostat prints.
pub fn mean_seconds_per_op(ms: u64, ops: u64) -> f64 {
    if ops == 0 { 0.0 } else { ms as f64 / 1000.0 / ops as f64 }
}

/// Share of RPC transmissions over a window that were retransmissions (NFS mountstats counts
/// transmissions and operations; the excess are retransmissions).
pub fn retransmission_ratio(transmissions: u64, ops: u64) -> f64 {
    ratio(transmissions.saturating_sub(ops), transmissions)
}

/// Rates of one operation type over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpRates {
    /// Completed operations per second.
    pub ops_per_second: f64,
    /// Bytes per second (0 for flushes, which carry no data).
    pub bytes_per_second: f64,
    /// Mean time per completed operation (iostat's r_await / w_await / d_await / f_await), in
    /// seconds; 0 when nothing completed in the window, as iostat prints.
    pub await_seconds: f64,
}

/// What iostat -x computes for one device over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskRates {
    pub read: OpRates,
    pub write: OpRates,
    pub discard: Option<OpRates>,
    pub flush: Option<OpRates>,
    /// Share of the window the device was busy (io_ticks), 0..1.
    pub utilization: f64,
    /// Average number of requests in flight (iostat's aqu-sz): weighted io time per window time.
    pub queue_depth: f64,
}

const SECTOR_BYTES: f64 = 512.0;

fn op_rates(prev: &OpStat, cur: &OpStat, seconds: f64) -> Option<OpRates> {
    let ops = delta_u64(prev.completed, cur.completed)?;
    let sectors = delta_u64(prev.sectors, cur.sectors)?;
    let ticks_ms = delta_u32(prev.ticks_ms, cur.ticks_ms)?;
    Some(OpRates {
        ops_per_second: ops as f64 / seconds,
        bytes_per_second: sectors as f64 * SECTOR_BYTES / seconds,
        await_seconds: if ops == 0 { 0.0 } else { ticks_ms as f64 / 1000.0 / ops as f64 },
    })
}

fn optional_rates(prev: Option<&OpStat>, cur: Option<&OpStat>, seconds: f64) -> Option<Option<OpRates>> {
    match (prev, cur) {
        (Some(p), Some(c)) => op_rates(p, c, seconds).map(Some),
        _ => Some(None),
    }
}

/// The rates of a device between two samples taken `seconds` apart. `None` when the window is
/// empty or any count went backwards (the device was removed and came back, or was replaced).
pub fn disk_rates(prev: &DiskStat, cur: &DiskStat, seconds: f64) -> Option<DiskRates> {
    if seconds <= 0.0 || !seconds.is_finite() {
        return None;
    }
    let window_ms = seconds * 1000.0;
    let io_ticks = delta_u32(prev.io_ticks_ms, cur.io_ticks_ms)?;
    let weighted = delta_u32(prev.time_in_queue_ms, cur.time_in_queue_ms)?;
    Some(DiskRates {
        read: op_rates(&prev.read, &cur.read, seconds)?,
        write: op_rates(&prev.write, &cur.write, seconds)?,
        discard: optional_rates(prev.discard.as_ref(), cur.discard.as_ref(), seconds)?,
        flush: optional_rates(prev.flush.as_ref(), cur.flush.as_ref(), seconds)?,
        utilization: (io_ticks as f64 / window_ms).min(1.0),
        queue_depth: weighted as f64 / window_ms,
    })
}

/// The requests of one latency histogram (eBPF, `crate::sources::biolatency`) that completed
/// between two snapshots. `prev` is `None` when the histogram did not exist at the first snapshot
/// (the kernel side creates it on the first request), so all of `cur` is in the window. `None`
/// when a slot went backwards: the programs were loaded again, and the window is unknown.
pub fn histogram_delta(prev: Option<&LatencyHistogram>, cur: &LatencyHistogram) -> Option<LatencyHistogram> {
    let Some(prev) = prev else { return Some(*cur) };
    let mut out = LatencyHistogram { sum_ns: delta_u64(prev.sum_ns, cur.sum_ns)?, ..Default::default() };
    for i in 0..SLOTS {
        out.slots[i] = delta_u64(prev.slots[i], cur.slots[i])?;
    }
    Some(out)
}

/// The `q` quantile (0..1) of a latency histogram in seconds, estimated as Prometheus'
/// `histogram_quantile` does, so the check and a dashboard agree: find the bucket holding the rank
/// `q * count`, interpolate linearly inside it (the first bucket starts at 0), and give the highest
/// finite bound when the rank falls above it. `None` for an empty histogram.
pub fn histogram_quantile(q: f64, h: &LatencyHistogram) -> Option<f64> {
    let count = h.count();
    if count == 0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * count as f64;
    let mut below = 0u64;
    for i in 0..FINITE {
        let cumulative = below.saturating_add(h.slots[i]);
        if cumulative as f64 >= rank && h.slots[i] > 0 {
            let start = if i == 0 { 0.0 } else { upper_bound(i - 1) };
            let end = upper_bound(i);
            return Some(start + (end - start) * ((rank - below as f64) / h.slots[i] as f64));
        }
        below = cumulative;
    }
    Some(upper_bound(FINITE - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::diskstats::parse_line;

    fn hist(slots: &[(usize, u64)], sum_ns: u64) -> LatencyHistogram {
        let mut h = LatencyHistogram { sum_ns, ..Default::default() };
        for &(i, n) in slots {
            h.slots[i] = n;
        }
        h
    }

    #[test]
    fn histogram_window() {
        let a = hist(&[(3, 10), (12, 5)], 1000);
        let b = hist(&[(3, 15), (12, 5), (13, 2)], 5000);
        assert_eq!(histogram_delta(Some(&a), &b), Some(hist(&[(3, 5), (13, 2)], 4000)));
        assert_eq!(histogram_delta(None, &b), Some(b), "a histogram born in the window");
        assert_eq!(histogram_delta(Some(&b), &a), None, "programs reloaded: no window");
    }

    #[test]
    fn quantiles_as_prometheus() {
        assert_eq!(histogram_quantile(0.99, &LatencyHistogram::default()), None);
        // 100 requests in (4.096, 8.192] ms: the p99 interpolates to 4.096 + 0.99 * 4.096 ms.
        let h = hist(&[(13, 100)], 0);
        let p99 = histogram_quantile(0.99, &h).unwrap();
        assert!((p99 - (0.004096 + 0.99 * 0.004096)).abs() < 1e-12, "{p99}");
        // 98 fast ones and 2 slow ones: rank 99 is the first of the slow bucket's two.
        let h = hist(&[(2, 98), (20, 2)], 0);
        let p99 = histogram_quantile(0.99, &h).unwrap();
        assert!((p99 - (upper_bound(19) + 0.5 * (upper_bound(20) - upper_bound(19)))).abs() < 1e-12);
        assert_eq!(
            histogram_quantile(0.5, &hist(&[(0, 4)], 0)),
            Some(0.0000005),
            "the first bucket starts at 0"
        );
        // Everything above the last finite bound: that bound, as Prometheus gives for +Inf.
        assert_eq!(histogram_quantile(0.99, &hist(&[(28, 3)], 0)), Some(upper_bound(27)));
        assert_eq!(histogram_quantile(1.5, &h), None);
    }

    fn stat(line: &str) -> DiskStat {
        parse_line(line).unwrap()
    }

    #[test]
    fn deltas() {
        assert_eq!(delta_u64(5, 7), Some(2));
        assert_eq!(delta_u64(7, 5), None);
        assert_eq!(delta_u32(10, 25), Some(15));
        // 4294967290 -> 4 wrapped past u32::MAX: 6 + 4 = 10 ms elapsed.
        assert_eq!(delta_u32(4_294_967_290, 4), Some(10));
        // A value above u32::MAX cannot have wrapped at 32 bits: a reset.
        assert_eq!(delta_u32(5_000_000_000, 4), None);
    }

    #[test]
    fn scsi_counters_wrap() {
        assert_eq!(scsi_counter_delta(0x1f, 0x2f), Some(16));
        assert_eq!(scsi_counter_delta(5, 5), Some(0));
        // 0xfffffff0 -> 0x10: 0x10 to the wrap plus 0x10 after it.
        assert_eq!(scsi_counter_delta(0xffff_fff0, 0x10), Some(0x20));
        assert_eq!(scsi_counter_delta(u32::MAX, 0), Some(1));
        // From a low value back to 0: the device was re-created, not 4 billion commands.
        assert_eq!(scsi_counter_delta(0x100, 0), None);
        assert_eq!(io_errors_delta(10, 14, 3), Some(1));
        assert_eq!(io_errors_delta(10, 12, 3), Some(0), "never below 0");
        assert_eq!(io_errors_delta(0xffff_fffe, 2, 4), Some(0));
        assert_eq!(io_errors_delta(0x100, 0, 0), None);
    }

    #[test]
    fn connection_counters_and_ratios() {
        assert_eq!(connection_delta(None, 7), 7, "a new connection's whole count is in the window");
        assert_eq!(connection_delta(Some(5), 7), 2);
        assert_eq!(connection_delta(Some(u64::from(u32::MAX) - 1), 3), 5, "32-bit wrap");
        assert_eq!(connection_delta(Some(1 << 40), 3), 3, "not a tcp_info value: a new socket");
        assert_eq!(ratio(0, 0), 0.0);
        assert_eq!(ratio(1, 4), 0.25);
        assert_eq!(ratio(9, 4), 1.0);
        assert_eq!(loss_ratio(1, 3), 0.25);
        assert_eq!(loss_ratio(0, 0), 0.0);
        assert_eq!(loss_ratio(u64::MAX, u64::MAX), 1.0);
        assert_eq!(mean_seconds_per_op(30, 10), 0.003);
        assert_eq!(mean_seconds_per_op(30, 0), 0.0);
        assert_eq!(retransmission_ratio(12, 10), 2.0 / 12.0);
        assert_eq!(retransmission_ratio(9, 10), 0.0, "completions of earlier transmissions");
    }

    #[test]
    fn iostat_arithmetic() {
        let a = stat("8 0 sda 100 0 800 50 200 0 1600 400 1 500 450");
        let b = stat("8 0 sda 300 0 2400 150 1200 10 11600 2400 2 1500 2450");
        let r = disk_rates(&a, &b, 2.0).unwrap();
        assert_eq!(r.read.ops_per_second, 100.0);
        assert_eq!(r.read.bytes_per_second, 1600.0 * 512.0 / 2.0);
        assert_eq!(r.read.await_seconds, 0.1 / 200.0);
        assert_eq!(r.write.ops_per_second, 500.0);
        assert_eq!(r.write.await_seconds, 2.0 / 1000.0);
        assert_eq!(r.utilization, 0.5);
        assert_eq!(r.queue_depth, 1.0);
        assert_eq!(r.discard, None);
    }

    #[test]
    fn survives_time_wrap() {
        let a = stat("8 0 sda 100 0 800 4294967000 0 0 0 0 0 4294967000 4294967000");
        let b = stat("8 0 sda 200 0 1600 704 0 0 0 0 0 704 704");
        let r = disk_rates(&a, &b, 1.0).unwrap();
        // 296 ms to the wrap plus 704 after it: 1000 ms for 100 reads.
        assert_eq!(r.read.await_seconds, 0.01);
        assert_eq!(r.utilization, 1.0);
        assert_eq!(r.queue_depth, 1.0);
    }

    #[test]
    fn reset_gives_nothing() {
        let a = stat("7 0 loop0 2000 0 16000 900 0 0 0 0 0 900 900");
        let b = stat("7 0 loop0 10 0 80 5 0 0 0 0 0 5 5");
        assert_eq!(disk_rates(&a, &b, 1.0), None);
        assert_eq!(disk_rates(&a, &a, 0.0), None);
    }

    #[test]
    fn idle_device_has_zero_await() {
        let a = stat("8 0 sda 1 0 8 1 1 0 8 1 0 1 2 0 0 0 0 7 3");
        let r = disk_rates(&a, &a, 5.0).unwrap();
        assert_eq!(r.write.await_seconds, 0.0);
        assert_eq!(r.flush.unwrap().ops_per_second, 0.0);
        assert_eq!(r.discard.unwrap().bytes_per_second, 0.0);
    }
}
