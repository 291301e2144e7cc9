//! Drive temperatures over time: when each drive with an hwmon sensor was last seen throttling
//! (its temperature at or over its own warning threshold, or its alarm set). With the NVMe
//! thermal-management transitions (`super::nvme`) this makes the one throttling signal per drive,
//! `super::Model::last_throttled`.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::sources::hwmon::Sample;

/// Whether a drive throttles now: its temperature warning bit (hwmon `temp1_alarm`, NVMe SMART
/// critical warning bit 1) is set, or its temperature reached its own warning threshold (hwmon
/// `temp1_max`: WCTEMP for NVMe, the SCT limit for drivetemp).
pub fn throttling_now(temp: Option<f64>, max: Option<f64>, alarm: Option<f64>) -> bool {
    let over = matches!((temp, max), (Some(t), Some(m)) if m > 0.0 && t >= m);
    over || alarm.is_some_and(|a| a != 0.0)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hwmon {
    pub at: Instant,
    pub sample: Sample,
    /// When each device (`nvme0`, `nvme0n1`, `sda`) was last seen throttling by its sensor.
    pub hot: BTreeMap<String, Instant>,
}

impl Hwmon {
    pub fn new(sample: Sample, prev: Option<Hwmon>, at: Instant) -> Hwmon {
        let mut hot = prev.map(|p| p.hot).unwrap_or_default();
        for chip in &sample.chips {
            if throttling_now(chip.temp1("input"), chip.temp1("max"), chip.temp1("alarm")) {
                for dev in &chip.devices {
                    hot.insert(dev.clone(), at);
                }
            }
        }
        Hwmon { at, sample, hot }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling() {
        assert!(!throttling_now(Some(50.0), Some(84.85), Some(0.0)));
        assert!(throttling_now(Some(84.85), Some(84.85), None), "at the threshold");
        assert!(throttling_now(Some(40.0), Some(84.85), Some(1.0)), "warning bit");
        assert!(!throttling_now(Some(40.0), Some(0.0), None), "a zero threshold is none");
        assert!(!throttling_now(None, None, None));
    }
}
