//! systemd's notify protocol over a plain unix datagram socket: `READY=1` once the first samples
//! exist, `WATCHDOG=1` while every collector loop keeps making progress, `STOPPING=1` on the way out.
//! Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing. And socket activation
//! (sd_listen_fds(3)): the listening sockets systemd passes for `--web.systemd-socket`.

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

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The descriptors `$LISTEN_PID` and `$LISTEN_FDS` announce to process `pid`, as sd_listen_fds(3)
/// reads them: none meant for another process or not announced at all is an error here, since
/// `--web.systemd-socket` asked for them.
pub fn parse_listen_fds(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    pid: u32,
) -> Result<Vec<i32>, String> {
    let (Some(listen_pid), Some(listen_fds)) = (listen_pid, listen_fds) else {
        return Err("no socket activation file descriptors found ($LISTEN_PID, $LISTEN_FDS unset)".into());
    };
    if listen_pid.trim().parse::<u32>().ok() != Some(pid) {
        return Err(format!("the sockets passed are for process {listen_pid:?}, not this one ({pid})"));
    }
    match listen_fds.trim().parse::<i32>() {
        Ok(n) if n > 0 && n <= 1024 => Ok((LISTEN_FDS_START..LISTEN_FDS_START + n).collect()),
        Ok(0) => Err("no socket activation file descriptors found ($LISTEN_FDS=0)".into()),
        _ => Err(format!("$LISTEN_FDS={listen_fds:?} is not a count of descriptors")),
    }
}

/// The listening TCP sockets systemd passed to this process. Each must be a listening stream
/// socket; it is marked close-on-exec, as sd_listen_fds(3) does, and owned from here on.
pub fn listen_sockets() -> Result<Vec<std::net::TcpListener>, String> {
    use std::os::fd::FromRawFd;
    let var = |name| std::env::var(name).ok();
    let fds =
        parse_listen_fds(var("LISTEN_PID").as_deref(), var("LISTEN_FDS").as_deref(), std::process::id())?;
    let mut sockets = Vec::with_capacity(fds.len());
    for fd in fds {
        let option = |level, name| {
            let (mut value, mut len) = (0i32, size_of::<i32>() as libc::socklen_t);
            // SAFETY: getsockopt writes at most `len` bytes into `value`; a descriptor that is
            // not a socket only makes it fail.
            let r = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
            (r == 0).then_some(value)
        };
        let listening = option(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1);
        let stream = option(libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM);
        let inet = matches!(option(libc::SOL_SOCKET, libc::SO_DOMAIN), Some(libc::AF_INET | libc::AF_INET6));
        if !(listening && stream && inet) {
            return Err(format!("descriptor {fd} passed by systemd is not a listening TCP socket"));
        }
        // SAFETY: fcntl on a descriptor checked above to be an open socket.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: systemd passed this descriptor to this process (LISTEN_PID); nothing else in the
        // agent owns it.
        sockets.push(unsafe { std::net::TcpListener::from_raw_fd(fd) });
    }
    Ok(sockets)
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
    fn listen_fds_are_taken_only_when_meant_for_this_process() {
        assert_eq!(parse_listen_fds(Some("42"), Some("2"), 42), Ok(vec![3, 4]));
        for (pid, fds) in
            [(None, Some("1")), (Some("42"), None), (Some("41"), Some("1")), (Some("42"), Some("0"))]
        {
            assert!(parse_listen_fds(pid, fds, 42).is_err(), "{pid:?} {fds:?}");
        }
        for fds in ["-1", "x", "", "99999"] {
            assert!(parse_listen_fds(Some("42"), Some(fds), 42).is_err(), "{fds}");
        }
    }

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
