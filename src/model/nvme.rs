//! NVMe controllers over time: when the media error count and the thermal-management transitions
//! last rose, and the Error Information log's new entries by status type since the agent started.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::sources::nvme::logs::status_type_name;
use crate::sources::nvme::{Controller, Sample};

/// What is carried from sample to sample for one controller. A controller that leaves the sample
/// (reset, removed) starts afresh when it comes back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub media_errors: Option<u128>,
    pub media_errors_rose: Option<Instant>,
    pub tmt: Option<[u32; 2]>,
    /// When the thermal-management transition counts last rose: the drive throttling itself.
    pub tmt_rose: Option<Instant>,
    /// The highest error count seen in the error log.
    pub error_count: Option<u64>,
    /// Entries that appeared while the agent watched, by status code type name.
    pub new_errors: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Nvme {
    pub at: Instant,
    pub sample: Sample,
    /// By controller name, for every controller in the sample.
    pub state: BTreeMap<String, State>,
}

impl Nvme {
    pub fn new(sample: Sample, prev: Option<Nvme>, at: Instant) -> Nvme {
        let mut before = prev.map(|p| p.state).unwrap_or_default();
        let state = sample
            .controllers
            .iter()
            .map(|c| (c.name.clone(), next(before.remove(&c.name).unwrap_or_default(), c, at)))
            .collect();
        Nvme { at, sample, state }
    }

    pub fn state(&self, controller: &str) -> Option<&State> {
        self.state.get(controller)
    }
}

fn next(mut s: State, c: &Controller, at: Instant) -> State {
    if let Some(smart) = &c.smart {
        if s.media_errors.is_some_and(|m| smart.media_errors > m) {
            s.media_errors_rose = Some(at);
        }
        s.media_errors = Some(smart.media_errors);
        let t = smart.tmt_transitions;
        if s.tmt.is_some_and(|old| t[0] > old[0] || t[1] > old[1]) {
            s.tmt_rose = Some(at);
        }
        s.tmt = Some(t);
    }
    // New entries since the last read, by status code type. The first read is the baseline; a
    // count that went backwards (a new drive) starts a new one.
    if let Some(entries) = &c.error_log {
        let max = entries.iter().map(|e| e.error_count).max().unwrap_or(0);
        if let Some(last) = s.error_count.filter(|l| *l <= max) {
            for e in entries.iter().filter(|e| e.error_count > last) {
                *s.new_errors.entry(status_type_name(e.status_code_type())).or_default() += 1;
            }
        }
        s.error_count = Some(max);
    }
    s
}
