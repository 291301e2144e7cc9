//! NVMe admin commands through the kernel's passthrough ioctl (`NVME_IOCTL_ADMIN_CMD`,
//! include/uapi/linux/nvme_ioctl.h; ../shared/reference/kernel-storage.md §1.1-1.3), behind the
//! narrow [`AdminCommands`] trait so the collector's logic does not depend on a device.
//!
//! Each command runs on a worker thread with a deadline: the kernel aborts it after `timeout_ms`,
//! and should the ioctl still not return (a controller wedged in reset), the collector stops
//! waiting at the deadline and does not send the controller another command while that one is in
//! flight. The worker owns the data buffer, so abandoning it is memory-safe.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Why an admin command failed.
#[derive(Debug)]
pub enum AdminError {
    /// The kernel refused it: -errno (EACCES without CAP_SYS_ADMIN, ENODEV for a removed device).
    Os(io::Error),
    /// The controller completed it with this NVMe status (SCT bits 10:8, SC bits 7:0).
    Status(u16),
    /// No answer within the deadline (or the previous command has not returned yet).
    Timeout,
}

impl AdminError {
    pub fn permission_denied(&self) -> bool {
        matches!(self, AdminError::Os(e) if e.kind() == io::ErrorKind::PermissionDenied)
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Os(e) => write!(f, "{e}"),
            AdminError::Status(s) => {
                write!(f, "NVMe status 0x{s:03x} (sct 0x{:x} / sc 0x{:02x})", (s >> 8) & 7, s & 0xff)
            }
            AdminError::Timeout => write!(f, "no answer within the command timeout"),
        }
    }
}

/// The three admin commands the collector sends, each returning the raw page.
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

/// `_IOWR('N', 0x41, struct nvme_admin_cmd)`.
const NVME_IOCTL_ADMIN_CMD: libc::c_ulong = (3 << 30) | (72 << 16) | ((b'N' as libc::c_ulong) << 8) | 0x41;
const _: () = assert!(NVME_IOCTL_ADMIN_CMD == 0xC048_4E41);

const OPC_GET_LOG_PAGE: u8 = 0x02;
const OPC_IDENTIFY: u8 = 0x06;
const NSID_ALL: u32 = 0xFFFF_FFFF;

/// Get Log Page CDW10: LID (7:0), RAE 0, NUMDL (31:16) = dwords − 1 (`len` <= 256 KiB).
fn log_cdw10(lid: u8, len: usize) -> u32 {
    u32::from(lid) | (((len / 4 - 1) as u32 & 0xffff) << 16)
}

/// One controller's character device (`<path.dev>/nvme0`).
pub struct Device {
    path: PathBuf,
    /// What the kernel waits before aborting a command.
    timeout: Duration,
    /// Set while a command is on a worker thread; a wedged one blocks the next.
    busy: Arc<AtomicBool>,
}

impl Device {
    pub fn new(path: PathBuf, timeout: Duration) -> Device {
        Device { path, timeout, busy: Arc::new(AtomicBool::new(false)) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn command(&self, opcode: u8, nsid: u32, cdw10: u32, len: usize) -> Result<Vec<u8>, AdminError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(AdminError::Timeout);
        }
        let (path, busy, timeout) = (self.path.clone(), self.busy.clone(), self.timeout);
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("nvme-admin".into()).spawn(move || {
            let result = run_admin(&path, opcode, nsid, cdw10, len, timeout);
            busy.store(false, Ordering::Release);
            let _ = tx.send(result);
        });
        if let Err(e) = spawned {
            self.busy.store(false, Ordering::Release);
            return Err(AdminError::Os(e));
        }
        // The kernel's own timeout plus a margin for opening and scheduling.
        rx.recv_timeout(timeout + Duration::from_secs(2)).unwrap_or(Err(AdminError::Timeout))
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
        .map_err(AdminError::Os)?;
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
    let ret =
        unsafe { libc::ioctl(file.as_raw_fd(), NVME_IOCTL_ADMIN_CMD as _, &mut cmd as *mut PassthruCmd) };
    match ret {
        0 => Ok(buf),
        r if r < 0 => Err(AdminError::Os(io::Error::last_os_error())),
        // A positive return is the NVMe status of a completed command, not success.
        status => Err(AdminError::Status(status as u16)),
    }
}

impl AdminCommands for Device {
    fn identify(&self) -> Result<Vec<u8>, AdminError> {
        self.command(OPC_IDENTIFY, 0, 0x01, super::logs::IDENTIFY_LEN)
    }

    fn smart_log(&self) -> Result<Vec<u8>, AdminError> {
        self.command(
            OPC_GET_LOG_PAGE,
            NSID_ALL,
            log_cdw10(0x02, super::logs::SMART_LEN),
            super::logs::SMART_LEN,
        )
    }

    fn error_log(&self, entries: u16) -> Result<Vec<u8>, AdminError> {
        let len = usize::from(entries.max(1)) * super::logs::ERROR_ENTRY_LEN;
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
        assert!(matches!(d.smart_log(), Err(AdminError::Os(e)) if e.kind() == io::ErrorKind::NotFound));
        let d = Device::new("/dev/null".into(), Duration::from_secs(1));
        assert!(matches!(d.identify(), Err(AdminError::Os(_))), "ENOTTY on a non-NVMe node");
    }
}
