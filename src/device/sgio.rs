//! ATA commands to a SCSI disk node through the SG_IO ioctl (scsi/sg.h; SAT's ATA PASS-THROUGH
//! (16), docs/kernel-storage.md §3.1-3.2), behind the narrow [`AtaCommands`] trait so the sata
//! source's logic does not depend on a device.
//!
//! ATA_16 is not in the kernel's unprivileged SCSI command filter: it needs CAP_SYS_RAWIO (EPERM
//! without), besides read access to the node. Each command runs on the node's [`Worker`] with a
//! deadline.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sense::{self, Registers, Sense};
use super::{Stalled, Worker};
use crate::error::ErrorKind;

/// A SMART data or thresholds page.
pub const PAGE_LEN: usize = 512;

/// How a command ended, short of success.
#[derive(Debug)]
pub enum SgError {
    /// The node could not be opened (ENOENT, EACCES).
    Open(io::Error),
    /// The ioctl itself failed: -errno (EPERM without CAP_SYS_RAWIO, ENOTTY/EINVAL on a node that
    /// is no SCSI device, ENODEV when removed).
    Ioctl(io::Error),
    /// The device rejected the command as one it does not know (ILLEGAL REQUEST): no ATA device
    /// behind a SAT layer (virtio-scsi, SAS, a USB bridge without SAT).
    Unsupported,
    /// The command completed with an error: SCSI status, host/driver status, and the sense key
    /// and ATA registers when there were any.
    Failed { status: u8, host: u16, driver: u16, sense: Option<Sense> },
    /// No answer within the deadline (or the previous command has not returned yet).
    Timeout,
}

impl SgError {
    pub fn permission_denied(&self) -> bool {
        matches!(self, SgError::Open(e) | SgError::Ioctl(e) if super::is_permission(e))
    }

    /// No SG_IO here at all: not a SCSI generic-capable node.
    pub fn no_sg_io(&self) -> bool {
        matches!(self, SgError::Ioctl(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)))
    }

    /// The error kind it is counted under.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SgError::Open(e) => super::open_kind(e),
            SgError::Ioctl(e) => super::ioctl_kind(e),
            SgError::Unsupported | SgError::Failed { .. } => ErrorKind::Ioctl,
            SgError::Timeout => ErrorKind::Timeout,
        }
    }
}

impl From<Stalled> for SgError {
    fn from(s: Stalled) -> SgError {
        match s {
            Stalled::Timeout => SgError::Timeout,
            Stalled::Spawn(e) => SgError::Ioctl(e),
        }
    }
}

impl std::fmt::Display for SgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SgError::Open(e) | SgError::Ioctl(e) => write!(f, "{e}"),
            SgError::Unsupported => write!(f, "ATA PASS-THROUGH rejected (ILLEGAL REQUEST)"),
            SgError::Failed { status, host, driver, sense } => {
                write!(f, "SCSI status 0x{status:02x}, host 0x{host:x}, driver 0x{driver:x}")?;
                if let Some(s) = sense {
                    write!(f, ", sense key 0x{:x} asc/ascq 0x{:02x}/0x{:02x}", s.key, s.asc, s.ascq)?;
                    if let Some(r) = s.registers {
                        write!(f, ", ATA status 0x{:02x} error 0x{:02x}", r.status, r.error)?;
                    }
                }
                Ok(())
            }
            SgError::Timeout => write!(f, "no answer within the command timeout"),
        }
    }
}

/// One pass's commands to a disk, as the collector sends them.
pub trait AtaCommands {
    /// CHECK POWER MODE (E5h), the count register it returns. Wakes no drive.
    fn check_power_mode(&self) -> Result<u8, SgError>;
    /// SMART READ DATA (B0h/D0h), 512 bytes.
    fn smart_read_data(&self) -> Result<Vec<u8>, SgError>;
    /// SMART READ THRESHOLDS (B0h/D1h), 512 bytes.
    fn smart_read_thresholds(&self) -> Result<Vec<u8>, SgError>;
    /// SMART RETURN STATUS (B0h/DAh): Some(true) passed, Some(false) threshold exceeded, None
    /// when the registers say neither.
    fn smart_return_status(&self) -> Result<Option<bool>, SgError>;
    /// Commands of this pass that completed with a non-zero SCSI result, each of which the
    /// kernel counted in the disk's `ioerr_cnt` (every CK_COND answer is a CHECK CONDITION).
    fn take_error_results(&self) -> u32;
}

/// `sg_io_hdr_t`, 88 bytes on x86_64 (scsi/sg.h).
#[repr(C)]
#[derive(Debug)]
struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut libc::c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<SgIoHdr>() == 88);

/// `SG_IO`, a legacy request number (not built with `_IOWR`).
const SG_IO: nix::sys::ioctl::ioctl_num_type = 0x2285;
nix::ioctl_readwrite_bad!(sg_io, SG_IO, SgIoHdr);
const SG_DXFER_NONE: i32 = -1;
const SG_DXFER_FROM_DEV: i32 = -3;
const CHECK_CONDITION: u8 = 0x02;
/// `driver_status` DRIVER_SENSE: sense data is valid (not an error by itself).
const DRIVER_SENSE: u16 = 0x08;
const SENSE_LEN: usize = 32;

/// ATA PASS-THROUGH (16) of a 28-bit command.
///
/// ```text
/// SMART READ DATA:   85 08 0e 00 d0 00 01 00 00 00 4f 00 c2 00 b0 00   PIO data-in, 1 block
/// SMART RETURN STAT: 85 06 20 00 da 00 00 00 00 00 4f 00 c2 00 b0 00   non-data, CK_COND
/// CHECK POWER MODE:  85 06 20 00 00 00 00 00 00 00 00 00 00 00 e5 00   non-data, CK_COND
/// ```
pub fn ata16(command: u8, feature: u8, data_in: bool) -> [u8; 16] {
    let smart = command == 0xb0;
    let (protocol, flags, count) = if data_in {
        // PIO data-in; T_DIR from device, BYT_BLOK, T_LENGTH in the count field.
        (4 << 1, 0x0e, 1)
    } else {
        // Non-data; CK_COND: return the result registers in the sense data.
        (3 << 1, 0x20, 0)
    };
    let (mid, high) = if smart { (0x4f, 0xc2) } else { (0, 0) };
    [0x85, protocol, flags, 0, feature, 0, count, 0, 0, 0, mid, 0, high, 0, command, 0]
}

/// What a completed command gave back.
struct Response {
    data: Vec<u8>,
    /// The SCSI result was not GOOD (the kernel counts it in ioerr_cnt).
    error_result: bool,
    outcome: Result<Option<Registers>, SgError>,
}

/// One SCSI disk's node (`<path.dev>/sda`).
pub struct Device {
    worker: Worker,
    error_results: std::cell::Cell<u32>,
}

impl Device {
    pub fn new(path: PathBuf, timeout: Duration) -> Device {
        Device { worker: Worker::new(path, timeout, "sg-io"), error_results: std::cell::Cell::new(0) }
    }

    pub fn path(&self) -> &Path {
        self.worker.path()
    }

    fn command(&self, cdb: [u8; 16], len: usize) -> Result<(Vec<u8>, Option<Registers>), SgError> {
        let r = self.worker.run(move |path, timeout| run(path, cdb, len, timeout))??;
        if r.error_result {
            self.error_results.set(self.error_results.get() + 1);
        }
        r.outcome.map(|regs| (r.data, regs))
    }
}

fn run(path: &Path, cdb: [u8; 16], len: usize, timeout: Duration) -> Result<Response, SgError> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(SgError::Open)?;
    let mut data = vec![0u8; len];
    let mut sense = [0u8; SENSE_LEN];
    let mut hdr = SgIoHdr {
        interface_id: i32::from(b'S'),
        dxfer_direction: if len == 0 { SG_DXFER_NONE } else { SG_DXFER_FROM_DEV },
        cmd_len: 16,
        mx_sb_len: SENSE_LEN as u8,
        iovec_count: 0,
        dxfer_len: len as u32,
        dxferp: if len == 0 { std::ptr::null_mut() } else { data.as_mut_ptr().cast() },
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: timeout.as_millis().min(u128::from(u32::MAX)) as u32,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: `file` is an open descriptor for the whole call; `hdr` is a properly laid out
    // 88-byte `sg_io_hdr_t` that lives across the call. Its pointers describe live buffers that
    // are not touched or moved until the ioctl returns: `cdb` (16 bytes, `cmd_len`), `sense`
    // (`mx_sb_len` bytes) and `data` (`dxfer_len` bytes, or null with SG_DXFER_NONE and length 0).
    // `iovec_count` is 0, so `dxferp` is a plain buffer, and `usr_ptr` is not dereferenced.
    if let Err(errno) = unsafe { sg_io(file.as_raw_fd(), &mut hdr) } {
        return Err(SgError::Ioctl(io::Error::from(errno)));
    }
    let written = usize::from(hdr.sb_len_wr).min(SENSE_LEN);
    let parsed = sense::parse_sense(&sense[..written]);
    let error_result = hdr.status != 0 || hdr.host_status != 0 || hdr.driver_status & !DRIVER_SENSE != 0;
    let outcome = judge(hdr.status, hdr.host_status, hdr.driver_status, parsed);
    Ok(Response { data, error_result, outcome })
}

/// Whether a completed command succeeded, from its statuses and sense (pure, for the tests).
/// Ok carries the ATA registers when the sense returned them (CK_COND).
fn judge(status: u8, host: u16, driver: u16, sense: Option<Sense>) -> Result<Option<Registers>, SgError> {
    let failed = || SgError::Failed { status, host, driver, sense };
    if host != 0 || driver & !DRIVER_SENSE != 0 {
        return Err(failed());
    }
    match (status, sense) {
        (0, s) => Ok(s.and_then(|s| s.registers)),
        (CHECK_CONDITION, Some(s)) if s.key == sense::SENSE_ILLEGAL_REQUEST => Err(SgError::Unsupported),
        (CHECK_CONDITION, Some(s)) => match s.registers {
            Some(r) if s.key == sense::SENSE_RECOVERED_ERROR && s.asc == 0 && s.ascq == 0x1d => Ok(Some(r)),
            // smartmontools: a bogus sense key with a clean ATA status is a success.
            Some(r) if sense::status_ok(&r) => Ok(Some(r)),
            _ => Err(failed()),
        },
        _ => Err(failed()),
    }
}

impl AtaCommands for Device {
    fn check_power_mode(&self) -> Result<u8, SgError> {
        let (_, regs) = self.command(ata16(0xe5, 0, false), 0)?;
        regs.map(|r| r.count).ok_or(SgError::Failed { status: 0, host: 0, driver: 0, sense: None })
    }

    fn smart_read_data(&self) -> Result<Vec<u8>, SgError> {
        self.command(ata16(0xb0, 0xd0, true), PAGE_LEN).map(|(d, _)| d)
    }

    fn smart_read_thresholds(&self) -> Result<Vec<u8>, SgError> {
        self.command(ata16(0xb0, 0xd1, true), PAGE_LEN).map(|(d, _)| d)
    }

    fn smart_return_status(&self) -> Result<Option<bool>, SgError> {
        let (_, regs) = self.command(ata16(0xb0, 0xda, false), 0)?;
        let r = regs.ok_or(SgError::Failed { status: 0, host: 0, driver: 0, sense: None })?;
        Ok(sense::smart_status(&r))
    }

    fn take_error_results(&self) -> u32 {
        self.error_results.replace(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdbs() {
        assert_eq!(
            ata16(0xb0, 0xd0, true),
            [0x85, 0x08, 0x0e, 0, 0xd0, 0, 1, 0, 0, 0, 0x4f, 0, 0xc2, 0, 0xb0, 0]
        );
        assert_eq!(
            ata16(0xb0, 0xda, false),
            [0x85, 0x06, 0x20, 0, 0xda, 0, 0, 0, 0, 0, 0x4f, 0, 0xc2, 0, 0xb0, 0]
        );
        assert_eq!(ata16(0xe5, 0, false), [0x85, 0x06, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xe5, 0]);
        assert_eq!(std::mem::offset_of!(SgIoHdr, dxferp), 16);
        assert_eq!(std::mem::offset_of!(SgIoHdr, timeout), 40);
        assert_eq!(std::mem::offset_of!(SgIoHdr, status), 64);
        assert_eq!(std::mem::offset_of!(SgIoHdr, host_status), 68);
        assert_eq!(std::mem::offset_of!(SgIoHdr, info), 80);
    }

    #[test]
    fn outcomes() {
        let regs = Registers { lba_mid: 0x4f, lba_high: 0xc2, status: 0x50, ..Registers::default() };
        let ck = Sense { key: 1, asc: 0, ascq: 0x1d, registers: Some(regs) };
        assert_eq!(judge(CHECK_CONDITION, 0, DRIVER_SENSE, Some(ck)).unwrap(), Some(regs));
        assert_eq!(judge(0, 0, 0, None).unwrap(), None);
        let illegal = Sense { key: 5, asc: 0x20, ascq: 0, registers: None };
        assert!(matches!(judge(CHECK_CONDITION, 0, DRIVER_SENSE, Some(illegal)), Err(SgError::Unsupported)));
        // Aborted command with ERR in the ATA status: a failure.
        let abrt = Registers { error: 0x04, status: 0x51, ..Registers::default() };
        let s = Sense { key: 0x0b, asc: 0, ascq: 0, registers: Some(abrt) };
        let e = judge(CHECK_CONDITION, 0, DRIVER_SENSE, Some(s)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SCSI status 0x02, host 0x0, driver 0x8, sense key 0xb asc/ascq 0x00/0x00, ATA status 0x51 error 0x04"
        );
        // A bogus sense key with a clean ATA status passes, as in smartmontools.
        let s = Sense { key: 0x0b, asc: 0, ascq: 0, registers: Some(regs) };
        assert!(judge(CHECK_CONDITION, 0, DRIVER_SENSE, Some(s)).is_ok());
        assert!(judge(0, 0x01, 0, None).is_err(), "DID_NO_CONNECT");
        assert!(judge(CHECK_CONDITION, 0, DRIVER_SENSE, None).is_err());
    }

    /// No SCSI disk here: a missing node is an OS error, /dev/null is no SG_IO device.
    #[test]
    fn missing_device() {
        let d = Device::new("/nonexistent/sda".into(), Duration::from_secs(1));
        let e = d.check_power_mode().unwrap_err();
        assert!(matches!(&e, SgError::Open(e) if e.kind() == io::ErrorKind::NotFound), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Io);
        let d = Device::new("/dev/null".into(), Duration::from_secs(1));
        let e = d.smart_read_data().unwrap_err();
        assert!(e.no_sg_io(), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Ioctl);
        assert_eq!(SgError::Timeout.kind(), ErrorKind::Timeout);
        let denied = SgError::Ioctl(io::Error::from_raw_os_error(libc::EPERM));
        assert!(denied.permission_denied());
        assert_eq!(denied.kind(), ErrorKind::Permission);
        assert_eq!(d.take_error_results(), 0);
    }
}
