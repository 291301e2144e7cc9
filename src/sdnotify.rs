//! systemd's notify protocol over a plain unix datagram socket: `READY=1` once the first samples
//! exist, `WATCHDOG=1` while every collector loop keeps making progress, `STOPPING=1` on the way out.
//! Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sends one notification; false when there is no socket or sending failed.
pub fn notify(message: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &a));
    if let Err(e) = &sent {
        tracing::warn!(message = "cannot notify systemd", socket = %path, error = %e);
    }
    sent.is_ok()
}

/// How often to ping: half of `$WATCHDOG_USEC`, when the watchdog is on and meant for this process.
pub fn watchdog_period() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_string_lossy().parse::<u32>().ok()? != std::process::id()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec) / 2)
}

/// When each collector loop last made progress (started or finished a run).
#[derive(Debug)]
pub struct Heartbeats {
    start: Instant,
    /// Milliseconds since `start` of the last beat, and the collector's interval.
    beats: Vec<(AtomicU64, Duration)>,
}

impl Heartbeats {
    pub fn new(intervals: &[Duration]) -> Heartbeats {
        Heartbeats {
            start: Instant::now(),
            beats: intervals.iter().map(|&i| (AtomicU64::new(0), i)).collect(),
        }
    }

    pub fn beat(&self, collector: usize) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.beats[collector].0.store(ms, Ordering::Relaxed);
    }

    /// The first collector (by index) whose loop has not beaten within its interval plus `grace`:
    /// a run stuck that long is wedged, and the watchdog pings stop.
    pub fn stalled(&self, grace: Duration) -> Option<usize> {
        let now = self.start.elapsed();
        self.beats.iter().position(|(ms, interval)| {
            let last = Duration::from_millis(ms.load(Ordering::Relaxed));
            now.saturating_sub(last) > *interval + grace
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_collector_is_stalled() {
        let h = Heartbeats::new(&[Duration::from_millis(10), Duration::from_secs(60)]);
        assert_eq!(h.stalled(Duration::from_millis(30)), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(h.stalled(Duration::from_millis(30)), Some(0));
        h.beat(0);
        assert_eq!(h.stalled(Duration::from_millis(30)), None);
    }

    #[test]
    fn notify_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        // SAFETY: this is the only test in this binary that touches NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        assert!(notify("READY=1"));
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(!notify("READY=1"));
    }
}
