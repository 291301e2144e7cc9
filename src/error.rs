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

    pub fn parse(path: &Path, what: impl fmt::Display) -> CollectError {
        CollectError { kind: ErrorKind::Parse, message: format!("{}: {what}", path.display()) }
    }
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind.as_str(), self.message)
    }
}
