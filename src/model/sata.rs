//! SCSI disks over time: the iostat counters with their 32-bit wraps undone, new I/O errors and
//! timeouts (the agent's own commands aside) and when they last rose, when a failure-relevant
//! SMART attribute last rose, and how often SMART was skipped for a sleeping disk.

use std::collections::BTreeMap;
use std::time::Instant;

use super::derive::{io_errors_delta, scsi_counter_delta};
use crate::sources::sata::smart::known;
use crate::sources::sata::{Disk, ERR, Sample, SmartState, TMO};

/// What is carried from sample to sample for one disk. A new identity (`dev`, SCSI address) is a
/// new disk, with fresh state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub identity: String,
    pub counters: Option<[u32; 4]>,
    /// The counters with their wraps undone, from the kernel's values when first seen.
    pub totals: [u64; 4],
    /// The agent's own commands answered with a non-GOOD status, over its life.
    pub own_errors: u64,
    /// New I/O errors and timeouts (own commands aside) while the agent watched.
    pub io_errors: u64,
    pub io_errors_rose: Option<Instant>,
    /// The failure-relevant attributes' decoded raw values at the last reading.
    pub attributes: BTreeMap<u8, u64>,
    /// The failure-relevant attribute that rose last, and when.
    pub attribute_rose: Option<(u8, &'static str, Instant)>,
    /// Passes that found the disk asleep and did not read SMART.
    pub standby_skips: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sata {
    pub at: Instant,
    pub sample: Sample,
    /// By disk name, for every disk in the sample.
    pub state: BTreeMap<String, State>,
}

impl Sata {
    pub fn new(sample: Sample, prev: Option<Sata>, at: Instant) -> Sata {
        let mut before = prev.map(|p| p.state).unwrap_or_default();
        let state = sample
            .disks
            .iter()
            .map(|d| {
                let s = before.remove(&d.name).filter(|s| s.identity == d.identity);
                let s = s.unwrap_or_else(|| State { identity: d.identity.clone(), ..State::default() });
                (d.name.clone(), next(s, d, at))
            })
            .collect();
        Sata { at, sample, state }
    }

    pub fn state(&self, disk: &str) -> Option<&State> {
        self.state.get(disk)
    }
}

fn next(mut s: State, d: &Disk, at: Instant) -> State {
    s.own_errors += u64::from(d.own_errors);
    if let Some(raw) = d.counters {
        match s.counters {
            Some(prev) => {
                let deltas: Vec<Option<u64>> = (0..4).map(|i| scsi_counter_delta(prev[i], raw[i])).collect();
                if deltas.iter().all(Option::is_some) {
                    for (t, dl) in s.totals.iter_mut().zip(&deltas) {
                        *t += dl.unwrap_or(0);
                    }
                    // The counters' growth holds the agent's own commands of the last pass.
                    let new = io_errors_delta(prev[ERR], raw[ERR], d.own_errors).unwrap_or(0)
                        + deltas[TMO].unwrap_or(0);
                    if new > 0 {
                        s.io_errors += new;
                        s.io_errors_rose = Some(at);
                    }
                } else {
                    // Went backwards: a re-created device; start from its values.
                    s.totals = raw.map(u64::from);
                }
            }
            None => s.totals = raw.map(u64::from),
        }
        s.counters = Some(raw);
    }
    if d.smart_state == SmartState::Standby {
        s.standby_skips += 1;
    }
    // A failure-relevant raw count that rose since the last reading dates the rise.
    if let (SmartState::Available, Some(smart)) = (d.smart_state, &d.smart) {
        for a in smart.attributes.iter().filter(|a| known(a.id).is_some_and(|k| k.rising_fails)) {
            if s.attributes.get(&a.id).is_some_and(|last| a.decoded > *last) {
                s.attribute_rose = Some((a.id, a.name, at));
            }
            s.attributes.insert(a.id, a.decoded);
        }
    }
    s
}
