//! What goes wrong while reading a source: a kind from a small fixed set (it may go into the
//! `kind` label of `storwatch_collector_errors_total`) and a message that names the file or
//! device. Raw error text never becomes a label.

use std::fmt;
use std::io;
use std::path::Path;

/// The small fixed set of error kinds that may appear in the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// A file, socket or device could not be opened or read.
    Io,
    /// What was read is not what the format says.
    Parse,
    /// The agent lacks a privilege or access to a file or device.
    Permission,
    /// A device command (NVMe admin, SG_IO) failed: the ioctl, or the device's status.
    Ioctl,
    /// A device command did not complete within its deadline.
    Timeout,
    /// A source panicked; the scheduler caught it and the agent runs on.
    Internal,
}

impl ErrorKind {
    /// Every kind, in the order the self metrics list them.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Io,
        ErrorKind::Parse,
        ErrorKind::Permission,
        ErrorKind::Ioctl,
        ErrorKind::Timeout,
        ErrorKind::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Parse => "parse",
            ErrorKind::Permission => "permission",
            ErrorKind::Ioctl => "ioctl",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error that names the file (or device) and what went wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CollectError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CollectError {
        CollectError { kind, message: message.into() }
    }

    /// An I/O error on `path`; permission denied is its own kind.
    pub fn io(path: &Path, err: &io::Error) -> CollectError {
        let kind = match err.kind() {
            io::ErrorKind::PermissionDenied => ErrorKind::Permission,
            _ => ErrorKind::Io,
        };
        CollectError { kind, message: format!("{}: {err}", path.display()) }
    }

    /// What a permission error was denied: the file, socket or device it names first (the message
    /// up to its first `: `, a path up to its first space), else the privilege the message
    /// starts with. A bounded label: the host's paths, never raw error text.
    pub fn denied(&self) -> Option<&str> {
        if self.kind != ErrorKind::Permission {
            return None;
        }
        let head = self.message.split(": ").next().unwrap_or_default();
        Some(if head.starts_with('/') { head.split(' ').next().unwrap_or(head) } else { head })
    }

    pub fn parse(path: &Path, what: impl fmt::Display) -> CollectError {
        CollectError { kind: ErrorKind::Parse, message: format!("{}: {what}", path.display()) }
    }
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind.as_str(), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_permission_error_denied() {
        let e =
            CollectError::io(Path::new("/proc/1/mountstats"), &io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.denied(), Some("/proc/1/mountstats"));
        let docker =
            CollectError::new(ErrorKind::Permission, "/run/docker.sock GET /version: Permission denied");
        assert_eq!(docker.denied(), Some("/run/docker.sock"));
        let bpf = CollectError::new(ErrorKind::Permission, "CAP_BPF and CAP_PERFMON (or root): load: EPERM");
        assert_eq!(bpf.denied(), Some("CAP_BPF and CAP_PERFMON (or root)"));
        assert_eq!(CollectError::new(ErrorKind::Io, "/x: gone").denied(), None);
    }
}
