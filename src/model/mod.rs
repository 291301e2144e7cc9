//! The model: the latest sample of every source, and every value derived from two samples (rates
//! and means over a window, counter totals with their wraps undone, quantiles, when a count last
//! rose). It is the one place derived values are computed; the outputs (`crate::families`,
//! `crate::checks`) are plain functions of it.
//!
//! Each source has a part, made from its new sample and its previous part
//! (`Part::new(sample, previous, at)`, below's `Model::new(sample, last)`): what a part carries
//! over (the last sample for a window, running totals, rise times) is its own business. A source
//! that fails keeps its part for the next window but is not current: its accessor answers `None`,
//! so no stale value reaches a family or a check.

pub mod derive;
pub mod disks;
pub mod docker;
pub mod fabric;
pub mod kernel;
pub mod latency;
pub mod nvme;
pub mod sata;
pub mod thermal;

use std::time::{Duration, Instant};

use crate::error::CollectError;
use crate::sources::{self, Collected, Sample, host, nvme::names, queue};

/// One source's part of the model.
#[derive(Debug)]
struct Slot<T> {
    part: Option<T>,
    /// The source's last read succeeded.
    current: bool,
    /// Why the source's last read failed.
    failure: Option<String>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot { part: None, current: false, failure: None }
    }
}

impl<T> Slot<T> {
    fn get(&self) -> Option<&T> {
        self.part.as_ref().filter(|_| self.current)
    }

    fn set(&mut self, make: impl FnOnce(Option<T>) -> T) {
        self.part = Some(make(self.part.take()));
        self.current = true;
        self.failure = None;
    }

    fn fail(&mut self, why: String) {
        self.current = false;
        self.failure = Some(why);
    }
}

#[derive(Debug, Default)]
pub struct Model {
    disks: Slot<disks::Disks>,
    latency: Slot<latency::Latency>,
    kernel: Slot<kernel::Kernel>,
    queue: Slot<queue::Sample>,
    host: Slot<host::Sample>,
    fabric: Slot<fabric::Fabric>,
    nvme: Slot<nvme::Nvme>,
    sata: Slot<sata::Sata>,
    thermal: Slot<thermal::Hwmon>,
    docker: Slot<sources::docker::Sample>,
}

impl Model {
    /// Takes a source's new sample in: its part is remade from the sample and the previous part.
    /// Returns the source's name.
    pub fn update(&mut self, c: Collected) -> &'static str {
        let at = c.at;
        match c.sample {
            Sample::Diskstats(s) => {
                self.disks.set(|prev| disks::Disks::new(s, prev, at));
                "diskstats"
            }
            Sample::Biolatency(s) => {
                self.latency.set(|prev| latency::Latency::new(s, prev, at));
                "biolatency"
            }
            Sample::Kmsg(s) => {
                self.kernel.set(|_| kernel::Kernel { at, sample: s });
                "kmsg"
            }
            Sample::Queue(s) => {
                self.queue.set(|_| s);
                "queue"
            }
            Sample::Host(s) => {
                self.host.set(|_| s);
                "host"
            }
            Sample::Fabric(s) => {
                self.fabric.set(|prev| fabric::Fabric::new(s, prev, at));
                "fabric"
            }
            Sample::Nvme(s) => {
                self.nvme.set(|prev| nvme::Nvme::new(s, prev, at));
                "nvme"
            }
            Sample::Sata(s) => {
                self.sata.set(|prev| sata::Sata::new(s, prev, at));
                "sata"
            }
            Sample::Hwmon(s) => {
                self.thermal.set(|prev| thermal::Hwmon::new(s, prev, at));
                "hwmon"
            }
            Sample::Docker(s) => {
                self.docker.set(|_| s);
                "docker"
            }
        }
    }

    /// The source could not be read (`why`): its part stays for the next window, but is not
    /// current, and the checks judged on it are unknown.
    pub fn fail(&mut self, source: &str, why: &CollectError) {
        let why = format!("collector {source} failed: {why}");
        match source {
            "diskstats" => self.disks.fail(why),
            "biolatency" => self.latency.fail(why),
            "kmsg" => self.kernel.fail(why),
            "queue" => self.queue.fail(why),
            "host" => self.host.fail(why),
            "fabric" => self.fabric.fail(why),
            "nvme" => self.nvme.fail(why),
            "sata" => self.sata.fail(why),
            "hwmon" => self.thermal.fail(why),
            "docker" => self.docker.fail(why),
            _ => {}
        }
    }

    /// Why the source's last read failed; None when it succeeded, is disabled or has not run.
    pub fn failure(&self, source: &str) -> Option<&str> {
        match source {
            "diskstats" => self.disks.failure.as_deref(),
            "biolatency" => self.latency.failure.as_deref(),
            "kmsg" => self.kernel.failure.as_deref(),
            "queue" => self.queue.failure.as_deref(),
            "host" => self.host.failure.as_deref(),
            "fabric" => self.fabric.failure.as_deref(),
            "nvme" => self.nvme.failure.as_deref(),
            "sata" => self.sata.failure.as_deref(),
            "hwmon" => self.thermal.failure.as_deref(),
            "docker" => self.docker.failure.as_deref(),
            _ => None,
        }
    }

    pub fn disks(&self) -> Option<&disks::Disks> {
        self.disks.get()
    }

    pub fn latency(&self) -> Option<&latency::Latency> {
        self.latency.get()
    }

    pub fn kernel(&self) -> Option<&kernel::Kernel> {
        self.kernel.get()
    }

    pub fn queue(&self) -> Option<&queue::Sample> {
        self.queue.get()
    }

    pub fn host(&self) -> Option<&host::Sample> {
        self.host.get()
    }

    pub fn fabric(&self) -> Option<&fabric::Fabric> {
        self.fabric.get()
    }

    pub fn nvme(&self) -> Option<&nvme::Nvme> {
        self.nvme.get()
    }

    pub fn sata(&self) -> Option<&sata::Sata> {
        self.sata.get()
    }

    pub fn hwmon(&self) -> Option<&thermal::Hwmon> {
        self.thermal.get()
    }

    pub fn docker(&self) -> Option<&sources::docker::Sample> {
        self.docker.get()
    }

    /// When a drive (`nvme0`, `nvme0n1`, `sda`) was last seen throttling, from any source that
    /// can tell: its hwmon sensor at or over its warning threshold or with its alarm set, or
    /// (NVMe) a rise of its controller's thermal-management transitions in the SMART log.
    pub fn last_throttled(&self, device: &str) -> Option<Instant> {
        let hot = self.hwmon().and_then(|h| h.hot.get(device).copied());
        let tmt = names::controller_of(device).and_then(|c| self.nvme()?.state.get(c)?.tmt_rose);
        hot.max(tmt)
    }

    /// Whether a drive was seen throttling within `window` before `now`.
    pub fn throttled_within(&self, device: &str, now: Instant, window: Duration) -> bool {
        self.last_throttled(device).is_some_and(|at| now.saturating_duration_since(at) <= window)
    }
}

/// Seconds from `then` to `now` (0 if `now` is earlier).
pub fn seconds_since(then: Instant, now: Instant) -> f64 {
    now.saturating_duration_since(then).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Collected;

    fn collected(sample: Sample, at: Instant) -> Collected {
        Collected { sample, errors: Vec::new(), at }
    }

    #[test]
    fn a_failed_source_is_not_current_but_keeps_its_window() {
        let mut m = Model::default();
        let t0 = Instant::now();
        let stat = |reads: u64| {
            let line = format!("8 0 sda {reads} 0 0 0 0 0 0 0 0 0 0");
            crate::sources::diskstats::parse_line(&line).unwrap()
        };
        let sample = |reads| {
            let mut s = crate::sources::diskstats::Sample::default();
            s.devices.insert(
                "sda".into(),
                crate::sources::diskstats::Device { stat: stat(reads), info: Default::default() },
            );
            Sample::Diskstats(s)
        };
        assert_eq!(m.update(collected(sample(10), t0)), "diskstats");
        assert!(m.disks().is_some_and(|d| d.rates.is_empty()), "one sample: no window yet");
        assert_eq!(m.failure("diskstats"), None);
        m.fail("diskstats", &CollectError::new(crate::error::ErrorKind::Io, "/proc/diskstats: gone"));
        assert!(m.disks().is_none(), "failed: nothing stale is shown");
        assert_eq!(
            m.failure("diskstats"),
            Some("collector diskstats failed: io error: /proc/diskstats: gone")
        );
        m.update(collected(sample(30), t0 + std::time::Duration::from_secs(10)));
        assert_eq!(m.failure("diskstats"), None, "read again");
        let d = m.disks().unwrap();
        assert_eq!(d.window, Some(10.0), "the window reaches back to the last good sample");
        assert_eq!(d.rates["sda"].read.ops_per_second, 2.0);
    }
}
