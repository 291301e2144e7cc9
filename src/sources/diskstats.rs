//! Disk I/O from `/proc/diskstats` and disk facts from sysfs.
//!
//! A line of `/proc/diskstats` (Documentation/admin-guide/iostats.rst, block/genhd.c
//! `diskstats_show`), 14, 18 or 20 fields depending on the kernel (discards 4.18+, flushes 5.5+):
//!
//! ```text
//!  259       0 nvme0n1 47114 4 4643973 21650 1078320 43950 39451633 1011053 0 222766 1032546 0 0 0 0 12 31
//! ```
//!
//! The time fields (ms) and in-flight count are printed as 32-bit `%u` and wrap; the counts are
//! `%lu`. The sample keeps them as the kernel gives them; the model's window rates undo the wraps.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Collected, DeviceFilter, Sample as AnySample, Source};
use crate::error::CollectError;
use crate::paths::Paths;
use crate::read::read_attr;

/// Counters of one operation type. Flushes have no merges or sectors (left 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpStat {
    pub completed: u64,
    pub merged: u64,
    pub sectors: u64,
    pub ticks_ms: u64,
}

/// One device's line of `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStat {
    pub major: u32,
    pub minor: u32,
    pub name: String,
    pub read: OpStat,
    pub write: OpStat,
    pub in_flight: u64,
    pub io_ticks_ms: u64,
    pub time_in_queue_ms: u64,
    pub discard: Option<OpStat>,
    pub flush: Option<OpStat>,
}

/// Parses one line. Lines with more than 20 fields (a future kernel) keep the known ones.
pub fn parse_line(line: &str) -> Result<DiskStat, String> {
    let mut tokens = line.split_ascii_whitespace();
    let (Some(major), Some(minor), Some(name)) = (tokens.next(), tokens.next(), tokens.next()) else {
        return Err("fewer than 14 fields".into());
    };
    let number = |t: &str| t.parse::<u64>().map_err(|_| format!("{t:?} is not a number"));
    let major = major.parse::<u32>().map_err(|_| format!("major {major:?} is not a number"))?;
    let minor = minor.parse::<u32>().map_err(|_| format!("minor {minor:?} is not a number"))?;
    let mut v = [0u64; 17];
    let mut n = 0;
    for token in tokens.take(17) {
        v[n] = number(token)?;
        n += 1;
    }
    if !matches!(n, 11 | 15 | 17) {
        return Err(format!("{} fields, expected 14, 18 or 20", n + 3));
    }
    let op = |i: usize| OpStat { completed: v[i], merged: v[i + 1], sectors: v[i + 2], ticks_ms: v[i + 3] };
    Ok(DiskStat {
        major,
        minor,
        name: name.to_owned(),
        read: op(0),
        write: op(4),
        in_flight: v[8],
        io_ticks_ms: v[9],
        time_in_queue_ms: v[10],
        discard: (n >= 15).then(|| op(11)),
        flush: (n >= 17).then(|| OpStat { completed: v[15], ticks_ms: v[16], ..OpStat::default() }),
    })
}

/// Parses the whole file: every good line, and for each bad one its 1-based number and problem.
/// A device listed twice keeps its first line.
pub fn parse(bytes: &[u8]) -> (Vec<DiskStat>, Vec<(usize, String)>) {
    let mut stats: Vec<DiskStat> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(line) else {
            errors.push((i + 1, "not UTF-8".to_owned()));
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(s) if !seen.insert(s.name.clone()) => {
                errors.push((i + 1, format!("device {} listed twice", s.name)));
            }
            Ok(s) => stats.push(s),
            Err(e) => errors.push((i + 1, e)),
        }
    }
    (stats, errors)
}

/// Decodes a SCSI VPD page 0x80 (unit serial number): a 4-byte header, then the serial.
pub fn parse_vpd_pg80(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 4 || bytes[1] != 0x80 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let serial = bytes.get(4..4 + len).unwrap_or(&bytes[4..]);
    let serial =
        String::from_utf8_lossy(serial).trim_matches(|c: char| c.is_whitespace() || c == '\0').to_owned();
    (!serial.is_empty()).then_some(serial)
}

/// Facts about a block device from `/sys/block/<device>`; empty when not present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskInfo {
    pub model: String,
    pub serial: String,
    pub rotational: String,
    pub logical_block_size: String,
}

fn read_info(paths: &Paths, device: &str, errors: &mut Vec<CollectError>) -> (DiskInfo, bool) {
    let dir = paths.sys("block").join(device);
    let before = errors.len();
    let attr = |rel: &str, errors: &mut Vec<CollectError>| {
        read_attr(&dir.join(rel)).unwrap_or_else(|e| {
            errors.push(e);
            None
        })
    };
    let model = attr("device/model", errors).unwrap_or_default();
    // virtio-blk has `serial` on the disk, NVMe on the controller (`device`), SCSI in VPD 0x80.
    let serial = attr("serial", errors)
        .or_else(|| attr("device/serial", errors))
        .or_else(|| vpd_serial(&dir.join("device/vpd_pg80"), errors))
        .unwrap_or_default();
    let info = DiskInfo {
        model,
        serial,
        rotational: attr("queue/rotational", errors).unwrap_or_default(),
        logical_block_size: attr("queue/logical_block_size", errors).unwrap_or_default(),
    };
    (info, errors.len() == before)
}

fn vpd_serial(path: &Path, errors: &mut Vec<CollectError>) -> Option<String> {
    match std::fs::read(path) {
        Ok(bytes) => parse_vpd_pg80(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            errors.push(CollectError::io(path, &e));
            None
        }
    }
}

/// One device: its counters and its sysfs facts (shared with the source's cache of them: they are
/// read again only when the device may be another disk).
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub stat: DiskStat,
    pub info: Arc<DiskInfo>,
}

/// One read of `/proc/diskstats`: the devices that pass the filter, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub devices: BTreeMap<String, Device>,
}

/// A device's facts as last read, and what they were read under.
struct Known {
    dev: (u32, u32),
    /// Reads and writes completed: fewer now than then is a reset.
    ios: u64,
    info: Arc<DiskInfo>,
    complete: bool,
}

pub struct Diskstats {
    paths: Paths,
    filter: DeviceFilter,
    interval: Duration,
    /// Facts are read when a device appears, when it may be another disk now (its numbers
    /// changed or its counters went back: a reset), and until a read of them succeeds.
    known: HashMap<String, Known>,
}

impl Diskstats {
    pub fn new(paths: Paths, filter: DeviceFilter, interval: Duration) -> Self {
        Diskstats { paths, filter, interval, known: HashMap::new() }
    }

    /// One read of the file into a sample.
    pub fn read(&mut self) -> Result<(Sample, Vec<CollectError>), CollectError> {
        let path = self.paths.proc("diskstats");
        let bytes = std::fs::read(&path).map_err(|e| CollectError::io(&path, &e))?;
        let (stats, line_errors) = parse(&bytes);
        let mut errors: Vec<CollectError> = line_errors
            .into_iter()
            .map(|(n, e)| CollectError::parse(&path, format_args!("line {n}: {e}")))
            .collect();
        let mut devices = BTreeMap::new();
        let mut known = HashMap::with_capacity(self.known.len());
        for stat in stats.into_iter().filter(|s| self.filter.matches(&s.name)) {
            let dev = (stat.major, stat.minor);
            let ios = stat.read.completed.saturating_add(stat.write.completed);
            let k = match self.known.remove(&stat.name) {
                Some(k) if k.complete && k.dev == dev && k.ios <= ios => Known { ios, ..k },
                _ => {
                    let (info, complete) = read_info(&self.paths, &stat.name, &mut errors);
                    Known { dev, ios, info: Arc::new(info), complete }
                }
            };
            let info = k.info.clone();
            known.insert(stat.name.clone(), k);
            devices.insert(stat.name.clone(), Device { stat, info });
        }
        self.known = known;
        Ok((Sample { devices }, errors))
    }
}

impl Source for Diskstats {
    fn name(&self) -> &'static str {
        "diskstats"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        let (sample, errors) = self.read()?;
        Ok(Collected::new(AnySample::Diskstats(sample), errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn field_counts() {
        let old = parse_line("   8       0 sda 25354637 34367663 1003346126 18492372 28444756 11134226 505697032 63877960 0 9653880 82621804").unwrap();
        assert_eq!(
            old.read,
            OpStat { completed: 25354637, merged: 34367663, sectors: 1003346126, ticks_ms: 18492372 }
        );
        assert_eq!(old.time_in_queue_ms, 82621804);
        assert_eq!((old.discard, old.flush), (None, None));
        let mid = parse_line(
            "8 16 sdb 326552 841 9657779 84 41822 2895 1972905 5007 0 60730 67070 68851 0 1925173784 11130",
        )
        .unwrap();
        assert_eq!(
            mid.discard,
            Some(OpStat { completed: 68851, merged: 0, sectors: 1925173784, ticks_ms: 11130 })
        );
        assert_eq!(mid.flush, None);
        let new = parse_line("8 32 sdc 126552 141 1657779 14 11822 1895 172905 1007 0 10730 17070 18851 0 125173784 11130 1555 1944").unwrap();
        assert_eq!(new.flush, Some(OpStat { completed: 1555, ticks_ms: 1944, ..Default::default() }));
        assert_eq!((new.major, new.minor, new.name.as_str()), (8, 32, "sdc"));
    }

    #[test]
    fn bad_lines_are_reported_and_others_kept() {
        let input = b"8 0 sda 1 2 3 4 5 6 7 8 0 10 11\n\
                      8 1 sda1 1 2 3\n\
                      garbage\n\
                      8 2 sdb 1 2 x 4 5 6 7 8 0 10 11\n\
                      8 3 sdc 1 2 3 4 5 6 7 8 0 10 11 12\n\
                      \xff\xfe\n\
                      8 0 sda 9 9 9 9 9 9 9 9 9 9 9\n\
                      259 0 nvme0n1 1 2 3 4 5 6 7 8 0 10 11";
        let (stats, errors) = parse(input);
        let names: Vec<_> = stats.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["sda", "nvme0n1"]);
        assert_eq!(stats[0].read.completed, 1);
        let lines: Vec<_> = errors.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7]);
        assert!(errors[2].1.contains("\"x\""), "{errors:?}");
    }

    #[test]
    fn vpd_serial() {
        let mut page = vec![0, 0x80, 0, 12];
        page.extend_from_slice(b"  WD-123456 \0");
        assert_eq!(parse_vpd_pg80(&page).as_deref(), Some("WD-123456"));
        assert_eq!(parse_vpd_pg80(&[0, 0x83, 0, 0]), None);
        assert_eq!(parse_vpd_pg80(&[0, 0x80, 0xff, 0xff, b'A']).as_deref(), Some("A"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (stats, errors) = parse(&bytes);
            prop_assert!(stats.len() + errors.len() <= bytes.len() + 1);
        }

        #[test]
        fn parse_never_panics_on_numeric_lines(line in "[0-9 \t]{0,120}[a-z0-9]{0,6}[0-9 \t]{0,200}") {
            let _ = parse_line(&line);
        }

        #[test]
        fn roundtrip(v in proptest::collection::vec(any::<u64>(), 17), n in prop_oneof![Just(11usize), Just(15), Just(17)]) {
            let fields: Vec<String> = v[..n].iter().map(|x| x.to_string()).collect();
            let s = parse_line(&format!("8 0 sda {}", fields.join(" "))).unwrap();
            prop_assert_eq!(s.read.completed, v[0]);
            prop_assert_eq!(s.time_in_queue_ms, v[10]);
            prop_assert_eq!(s.flush.map(|f| f.ticks_ms), (n == 17).then_some(v[16]));
        }

        #[test]
        fn vpd_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_vpd_pg80(&bytes);
        }
    }
}
