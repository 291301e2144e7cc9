//! The active probe: a TCP connect to each configured storage target on its own interval, on a
//! thread of its own (a probe that times out must not hold the collector up). Each probe is a
//! full handshake closed at once; the collector reads the running counts and derives the loss
//! ratio over its window from them (`derive.rs`).
//!
//! A connect that does not complete within the timeout (a lost SYN or SYN-ACK: the kernel's first
//! SYN retransmission comes after 1 s), is refused (nothing listens: the server died) or finds no
//! route is a failed probe.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Running counts of one target's probes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProbeStats {
    pub attempts: u64,
    pub failures: u64,
    /// Whether the last probe connected.
    pub last_success: Option<bool>,
    /// Connect time of the last successful probe, seconds.
    pub last_latency: Option<f64>,
}

impl ProbeStats {
    /// Counts one probe: its connect time, or None when it failed.
    pub fn record(&mut self, outcome: Option<Duration>) {
        self.attempts += 1;
        match outcome {
            Some(d) => {
                self.last_success = Some(true);
                self.last_latency = Some(d.as_secs_f64());
            }
            None => {
                self.failures += 1;
                self.last_success = Some(false);
            }
        }
    }
}

/// One connect attempt: its connect time, or None when it failed.
pub fn probe_once(target: SocketAddr, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let stream = TcpStream::connect_timeout(&target, timeout).ok()?;
    let took = started.elapsed();
    drop(stream);
    Some(took)
}

/// The probe threads; they stop when this is dropped.
pub struct Prober {
    stats: Arc<Mutex<BTreeMap<SocketAddr, ProbeStats>>>,
    _stop: Vec<mpsc::Sender<()>>,
}

impl Prober {
    pub fn start(targets: &[SocketAddr], interval: Duration, timeout: Duration) -> Prober {
        let stats = Arc::new(Mutex::new(BTreeMap::new()));
        let mut stops = Vec::new();
        for &target in targets {
            let (tx, rx) = mpsc::channel::<()>();
            let stats = stats.clone();
            let spawned = thread::Builder::new().name(format!("probe-{target}")).spawn(move || {
                let mut next = Instant::now();
                loop {
                    let outcome = probe_once(target, timeout);
                    stats
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(target)
                        .or_insert_with(ProbeStats::default)
                        .record(outcome);
                    let now = Instant::now();
                    while next <= now {
                        next += interval;
                    }
                    match rx.recv_timeout(next - now) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
            match spawned {
                Ok(_) => stops.push(tx),
                Err(e) => {
                    tracing::warn!(message = "cannot start a probe thread", target = %target, error = %e)
                }
            }
        }
        Prober { stats, _stop: stops }
    }

    /// The running counts of every target probed so far.
    pub fn snapshot(&self) -> BTreeMap<SocketAddr, ProbeStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn records_success_and_refusal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = listener.local_addr().unwrap();
        drop(TcpListener::bind("127.0.0.1:0").unwrap());
        let mut s = ProbeStats::default();
        s.record(probe_once(up, Duration::from_secs(2)));
        assert_eq!((s.attempts, s.failures, s.last_success), (1, 0, Some(true)));
        assert!(s.last_latency.unwrap() < 2.0);
        drop(listener);
        s.record(probe_once(up, Duration::from_secs(2)));
        assert_eq!((s.attempts, s.failures, s.last_success), (2, 1, Some(false)));
        assert!(s.last_latency.is_some(), "the last good latency stays");
    }

    #[test]
    fn threads_probe_on_their_interval_and_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let p = Prober::start(&[addr], Duration::from_millis(20), Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.snapshot().get(&addr).map_or(0, |s| s.attempts) < 3 {
            assert!(Instant::now() < deadline, "no probes");
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(p.snapshot()[&addr].failures, 0);
        let stats = p.stats.clone();
        drop(p);
        thread::sleep(Duration::from_millis(100));
        let n = stats.lock().unwrap()[&addr].attempts;
        thread::sleep(Duration::from_millis(100));
        assert_eq!(stats.lock().unwrap()[&addr].attempts, n, "stopped");
    }
}
