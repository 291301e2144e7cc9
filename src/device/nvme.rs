//! NVMe admin commands through the kernel's passthrough ioctl (`NVME_IOCTL_ADMIN_CMD`,
//! include/uapi/linux/nvme_ioctl.h; docs/kernel-storage.md §1.1-1.3), behind the narrow
//! [`AdminCommands`] trait so the nvme source's logic does not depend on a device. Each command
//! runs on the node's [`Worker`] with a deadline.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Stalled, Worker};
use crate::error::ErrorKind;

/// Identify Controller data: one 4 KiB page.
pub const IDENTIFY_LEN: usize = 4096;
/// The SMART / Health Information log page.
pub const SMART_LEN: usize = 512;
/// One Error Information log entry.
pub const ERROR_ENTRY_LEN: usize = 64;

/// Why an admin command failed.
#[derive(Debug)]
pub enum AdminError {
    /// The device node could not be opened (ENOENT: no node; EACCES: no access to it).
    Open(io::Error),
    /// The kernel refused the ioctl: -errno (EACCES without CAP_SYS_ADMIN, ENODEV for a removed
    /// device, ENOTTY on a node that is no NVMe controller).
    Ioctl(io::Error),
    /// The controller completed it with this NVMe status (SCT bits 10:8, SC bits 7:0).
    Status(u16),
    /// No answer within the deadline (or the previous command has not returned yet).
    Timeout,
}

impl AdminError {
    pub fn permission_denied(&self) -> bool {
        matches!(self, AdminError::Open(e) | AdminError::Ioctl(e) if super::is_permission(e))
    }

    /// The error kind it is counted under.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AdminError::Open(e) => super::open_kind(e),
            AdminError::Ioctl(e) => super::ioctl_kind(e),
            AdminError::Status(_) => ErrorKind::Ioctl,
            AdminError::Timeout => ErrorKind::Timeout,
        }
    }
}

impl From<Stalled> for AdminError {
    fn from(s: Stalled) -> AdminError {
        match s {
            Stalled::Timeout => AdminError::Timeout,
            Stalled::Spawn(e) => AdminError::Ioctl(e),
        }
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Open(e) | AdminError::Ioctl(e) => write!(f, "{e}"),
            AdminError::Status(s) => {
                write!(f, "NVMe status 0x{s:03x} (sct 0x{:x} / sc 0x{:02x})", (s >> 8) & 7, s & 0xff)
            }
            AdminError::Timeout => write!(f, "no answer within the command timeout"),
        }
    }
}

/// The three admin commands the nvme source sends, each returning the raw page.
pub trait AdminCommands {
    /// Identify Controller (opcode 06h, CNS 01h), 4096 bytes.
    fn identify(&self) -> Result<Vec<u8>, AdminError>;
    /// SMART / Health Information log (Get Log Page 02h, LID 02h, NSID FFFFFFFFh), 512 bytes.
    fn smart_log(&self) -> Result<Vec<u8>, AdminError>;
    /// The first `entries` Error Information log entries (LID 01h), 64 bytes each.
    fn error_log(&self, entries: u16) -> Result<Vec<u8>, AdminError>;
}

/// `struct nvme_passthru_cmd` (alias `nvme_admin_cmd`), 72 bytes.
#[repr(C)]
#[derive(Debug, Default)]
struct PassthruCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

const _: () = assert!(std::mem::size_of::<PassthruCmd>() == 72);

// `NVME_IOCTL_ADMIN_CMD`: `_IOWR('N', 0x41, struct nvme_admin_cmd)`, the request number nix
// computes from the type's size.
nix::ioctl_readwrite!(nvme_admin_cmd, b'N', 0x41, PassthruCmd);
const _: () =
    assert!(nix::request_code_readwrite!(b'N', 0x41, std::mem::size_of::<PassthruCmd>()) == 0xC048_4E41);

const OPC_GET_LOG_PAGE: u8 = 0x02;
const OPC_IDENTIFY: u8 = 0x06;
const NSID_ALL: u32 = 0xFFFF_FFFF;

/// Get Log Page CDW10: LID (7:0), RAE 0, NUMDL (31:16) = dwords − 1 (`len` <= 256 KiB).
fn log_cdw10(lid: u8, len: usize) -> u32 {
    u32::from(lid) | (((len / 4 - 1) as u32 & 0xffff) << 16)
}

/// One controller's character device (`<path.dev>/nvme0`).
pub struct Device(Worker);

impl Device {
    pub fn new(path: PathBuf, timeout: Duration) -> Device {
        Device(Worker::new(path, timeout, "nvme-admin"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    fn command(&self, opcode: u8, nsid: u32, cdw10: u32, len: usize) -> Result<Vec<u8>, AdminError> {
        self.0.run(move |path, timeout| run_admin(path, opcode, nsid, cdw10, len, timeout))?
    }
}

fn run_admin(
    path: &Path,
    opcode: u8,
    nsid: u32,
    cdw10: u32,
    len: usize,
    timeout: Duration,
) -> Result<Vec<u8>, AdminError> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(AdminError::Open)?;
    let mut buf = vec![0u8; len];
    let mut cmd = PassthruCmd {
        opcode,
        nsid,
        addr: buf.as_mut_ptr() as u64,
        data_len: len as u32,
        cdw10,
        timeout_ms: timeout.as_millis().min(u128::from(u32::MAX)) as u32,
        ..PassthruCmd::default()
    };
    // SAFETY: `file` is an open descriptor for the whole call; `cmd` is a properly laid out
    // 72-byte `nvme_passthru_cmd` that lives across the call, and its `addr`/`data_len` describe
    // `buf`, a live, writable allocation of exactly `len` bytes that is not touched or moved until
    // the ioctl returns. `metadata` is 0 with `metadata_len` 0, so the kernel writes nowhere else.
    match unsafe { nvme_admin_cmd(file.as_raw_fd(), &mut cmd) } {
        Ok(0) => Ok(buf),
        // A positive return is the NVMe status of a completed command, not success.
        Ok(status) => Err(AdminError::Status(status as u16)),
        Err(errno) => Err(AdminError::Ioctl(io::Error::from(errno))),
    }
}

impl AdminCommands for Device {
    fn identify(&self) -> Result<Vec<u8>, AdminError> {
        self.command(OPC_IDENTIFY, 0, 0x01, IDENTIFY_LEN)
    }

    fn smart_log(&self) -> Result<Vec<u8>, AdminError> {
        self.command(OPC_GET_LOG_PAGE, NSID_ALL, log_cdw10(0x02, SMART_LEN), SMART_LEN)
    }

    fn error_log(&self, entries: u16) -> Result<Vec<u8>, AdminError> {
        let len = usize::from(entries.max(1)) * ERROR_ENTRY_LEN;
        self.command(OPC_GET_LOG_PAGE, NSID_ALL, log_cdw10(0x01, len), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words() {
        assert_eq!(log_cdw10(0x02, 512), 0x007F_0002);
        assert_eq!(log_cdw10(0x01, 64 * 64), 0x03FF_0001);
        assert_eq!(std::mem::offset_of!(PassthruCmd, addr), 24);
        assert_eq!(std::mem::offset_of!(PassthruCmd, cdw10), 40);
        assert_eq!(std::mem::offset_of!(PassthruCmd, timeout_ms), 64);
        let s = AdminError::Status(0x4002).to_string();
        assert_eq!(s, "NVMe status 0x4002 (sct 0x0 / sc 0x02)");
    }

    /// No NVMe device here: a missing node is an OS error, not a panic or a hang. (The real
    /// commands are tested in the QEMU guest, tests/nvme.rs.)
    #[test]
    fn missing_device() {
        let d = Device::new("/nonexistent/nvme0".into(), Duration::from_secs(1));
        let e = d.smart_log().unwrap_err();
        assert!(matches!(&e, AdminError::Open(e) if e.kind() == io::ErrorKind::NotFound), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Io);
        let d = Device::new("/dev/null".into(), Duration::from_secs(1));
        let e = d.identify().unwrap_err();
        assert!(matches!(e, AdminError::Ioctl(_)), "ENOTTY on a non-NVMe node: {e:?}");
        assert_eq!(e.kind(), ErrorKind::Ioctl);
        assert_eq!(AdminError::Status(0x4002).kind(), ErrorKind::Ioctl);
        assert_eq!(AdminError::Timeout.kind(), ErrorKind::Timeout);
        let denied = AdminError::Ioctl(io::Error::from_raw_os_error(libc::EACCES));
        assert!(denied.permission_denied());
        assert_eq!(denied.kind(), ErrorKind::Permission);
    }
}
