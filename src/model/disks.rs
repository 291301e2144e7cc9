//! Disk I/O over a window: iostat's rates and means per device from two diskstats samples.

use std::collections::BTreeMap;
use std::time::Instant;

use super::derive::{DiskRates, disk_rates};
use super::seconds_since;
use crate::sources::diskstats::Sample;

#[derive(Debug, Clone, PartialEq)]
pub struct Disks {
    pub at: Instant,
    pub sample: Sample,
    /// Seconds since the previous sample; None on the first.
    pub window: Option<f64>,
    /// Per device seen in both samples whose counters did not go back (a reset gives none).
    pub rates: BTreeMap<String, DiskRates>,
}

impl Disks {
    pub fn new(sample: Sample, prev: Option<Disks>, at: Instant) -> Disks {
        let window = prev.as_ref().map(|p| seconds_since(p.at, at));
        let rates = match (&prev, window) {
            (Some(p), Some(seconds)) => sample
                .devices
                .iter()
                .filter_map(|(name, d)| {
                    let old = p.sample.devices.get(name)?;
                    Some((name.clone(), disk_rates(&old.stat, &d.stat, seconds)?))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        Disks { at, sample, window, rates }
    }
}
