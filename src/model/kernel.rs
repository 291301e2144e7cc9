//! The kernel log's storage errors, dated on the printk clock.

use std::time::Instant;

use super::seconds_since;
use crate::sources::kmsg::Sample;

#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub at: Instant,
    pub sample: Sample,
}

impl Kernel {
    /// The Unix time of the printk clock's 0 (boot), as the clocks said when sampled.
    pub fn boot(&self) -> f64 {
        self.sample.wall - self.sample.since_boot
    }

    /// Seconds from a printk time `t` to `now`. The printk and monotonic clocks can differ by a
    /// little, so an age never goes below 0.
    pub fn age(&self, t: f64, now: Instant) -> f64 {
        (self.sample.since_boot + seconds_since(self.at, now) - t).max(0.0)
    }
}
