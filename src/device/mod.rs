//! The one device-command layer: NVMe admin passthrough (`nvme.rs`) and SCSI generic SG_IO
//! (`sgio.rs`, with the sense decoder `sense.rs`), each behind a narrow trait so the sources'
//! logic is tested with crafted pages, while integration tests drive the real ioctls in a QEMU
//! guest.
//!
//! Every command runs on a [`Worker`] thread with a deadline: the kernel aborts a command after
//! its own timeout, and should the ioctl still not return (a controller wedged in reset), the
//! caller stops waiting at the deadline and the device gets no other command while that one is in
//! flight. The worker owns the buffers, so abandoning it is memory-safe.
//!
//! Failures map to the error kinds `permission` (no privilege), `io` (the node could not be
//! opened), `ioctl` (the ioctl failed or the device answered with an error status) and `timeout`.

pub mod nvme;
pub mod sense;
pub mod sgio;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::ErrorKind;

/// Makes a device's command interface from its node (`<path.dev>/nvme0`, `<path.dev>/sda`); tests
/// pass one that returns a fake.
pub type Opener<T> = Box<dyn Fn(&Path) -> Box<T> + Send>;

/// Why a command did not run to completion on its worker.
#[derive(Debug)]
pub enum Stalled {
    /// No answer within the deadline, or the previous command has not returned yet.
    Timeout,
    /// No worker thread could be started.
    Spawn(io::Error),
}

/// One device node and its command worker.
pub struct Worker {
    path: PathBuf,
    /// What the kernel waits before aborting a command.
    timeout: Duration,
    /// Set while a command is on a worker thread; a wedged one blocks the next.
    busy: Arc<AtomicBool>,
    thread: &'static str,
}

impl Worker {
    /// A worker for the node at `path`; its threads are named `thread`.
    pub fn new(path: PathBuf, timeout: Duration, thread: &'static str) -> Worker {
        Worker { path, timeout, busy: Arc::new(AtomicBool::new(false)), thread }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `command(node, kernel timeout)` on a worker thread and waits for it until the kernel's
    /// timeout plus a margin for opening and scheduling.
    pub fn run<T: Send + 'static>(
        &self,
        command: impl FnOnce(&Path, Duration) -> T + Send + 'static,
    ) -> Result<T, Stalled> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(Stalled::Timeout);
        }
        let (path, busy, timeout) = (self.path.clone(), self.busy.clone(), self.timeout);
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name(self.thread.into()).spawn(move || {
            let result = command(&path, timeout);
            busy.store(false, Ordering::Release);
            let _ = tx.send(result);
        });
        if let Err(e) = spawned {
            self.busy.store(false, Ordering::Release);
            return Err(Stalled::Spawn(e));
        }
        rx.recv_timeout(timeout + Duration::from_secs(2)).map_err(|_| Stalled::Timeout)
    }
}

/// The kind of a failure to open a node.
pub fn open_kind(e: &io::Error) -> ErrorKind {
    if is_permission(e) { ErrorKind::Permission } else { ErrorKind::Io }
}

/// The kind of a failed ioctl: refused for lack of privilege, or an ioctl error.
pub fn ioctl_kind(e: &io::Error) -> ErrorKind {
    if is_permission(e) { ErrorKind::Permission } else { ErrorKind::Ioctl }
}

/// EPERM or EACCES.
pub fn is_permission(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_and_one_command_at_a_time() {
        let w = Worker::new("/x".into(), Duration::from_millis(10), "test-worker");
        assert_eq!(
            w.run(|p, t| (p.to_owned(), t)).unwrap(),
            (PathBuf::from("/x"), Duration::from_millis(10))
        );
        // A command that outlives its deadline: the caller stops waiting, and the next command is
        // refused until it returns.
        let (release, wait) = mpsc::channel::<()>();
        let started = std::time::Instant::now();
        assert!(matches!(w.run(move |_, _| wait.recv()), Err(Stalled::Timeout)));
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert!(matches!(w.run(|_, _| ()), Err(Stalled::Timeout)), "the wedged one is still in flight");
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while w.busy.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(w.run(|_, _| 7).unwrap(), 7);
    }

    #[test]
    fn kinds() {
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let enotty = io::Error::from_raw_os_error(libc::ENOTTY);
        assert_eq!(ioctl_kind(&eperm), ErrorKind::Permission);
        assert_eq!(ioctl_kind(&enotty), ErrorKind::Ioctl);
        assert_eq!(open_kind(&eacces), ErrorKind::Permission);
        assert_eq!(open_kind(&io::Error::from_raw_os_error(libc::ENOENT)), ErrorKind::Io);
    }
}
