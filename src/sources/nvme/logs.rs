//! Pure decoders of the NVMe admin data the collector reads: Identify Controller (CNS 01h), the
//! SMART / Health Information log (LID 02h) and Error Information log entries (LID 01h), as the
//! NVM Express Base Specification 2.0 lays them out (offsets as in libnvme `src/nvme/types.h`,
//! `struct nvme_id_ctrl`, `nvme_smart_log`, `nvme_error_log_page`; see
//! docs/kernel-storage.md §1.4-1.6). Every multi-byte field is little-endian.
//!
//! ```text
//! SMART / Health log, first 16 bytes of QEMU's (hw/nvme/ctrl.c), then the counters at 32:
//! 00  00 43 01 00 00 00 00 00 00 00 00 00 00 00 00 00   critical warning 0, 0x0143 = 323 K (50 °C)
//! 20  01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00   data units read: 1 (× 512 000 bytes), u128
//! ```
//!
//! The 16-byte counters are u128. They are kept as u128 here and exported as f64: an f64 holds
//! any u128 (up to 3.4e38) without losing the upper half, rounded to 53 significant bits (a
//! counter above 2^53 is exact to within one part in 9e15).

use std::fmt;

pub use crate::device::nvme::{ERROR_ENTRY_LEN, IDENTIFY_LEN, SMART_LEN};

/// Why a page could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// Fewer bytes than the page has.
    Truncated { want: usize, got: usize },
    /// Every byte 0xFF: what a dead or unplugged PCIe device returns, not data.
    AllOnes,
    /// Every byte 0: a command that transferred nothing.
    AllZero,
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Truncated { want, got } => write!(f, "page truncated: {got} of {want} bytes"),
            PageError::AllOnes => write!(f, "page is all 0xFF (device not responding)"),
            PageError::AllZero => write!(f, "page is all zero (no data transferred)"),
        }
    }
}

fn check(page: &[u8], len: usize, zero_ok: bool) -> Result<&[u8], PageError> {
    let page = page.get(..len).ok_or(PageError::Truncated { want: len, got: page.len() })?;
    if page.iter().all(|b| *b == 0xFF) {
        return Err(PageError::AllOnes);
    }
    if !zero_ok && page.iter().all(|b| *b == 0) {
        return Err(PageError::AllZero);
    }
    Ok(page)
}

fn u16_at(p: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([p[off], p[off + 1]])
}

fn u32_at(p: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(p[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(p: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(p[off..off + 8].try_into().expect("8 bytes"))
}

fn u128_at(p: &[u8], off: usize) -> u128 {
    u128::from_le_bytes(p[off..off + 16].try_into().expect("16 bytes"))
}

/// An ASCII field, space (or NUL) padded, trimmed; other bytes replaced.
fn ascii(p: &[u8]) -> String {
    String::from_utf8_lossy(p).trim_matches(|c: char| c == ' ' || c == '\0').to_owned()
}

/// A temperature in Kelvin, `None` for 0 ("not reported").
fn kelvin(k: u16) -> Option<u16> {
    (k != 0).then_some(k)
}

/// Kelvin to degrees Celsius as the kernel's hwmon converts (K × 1000 − 273150 m°C), so 323 K
/// is 49.85 exactly as hwmon's 49850 / 1000.
pub fn celsius(kelvin: u16) -> f64 {
    f64::from(i32::from(kelvin) * 1000 - 273_150) / 1000.0
}

/// Identify Controller (CNS 01h): the fields the agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyController {
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// Error log page entries the controller keeps (ELPE + 1).
    pub error_log_entries: u16,
    /// WCTEMP: warning composite temperature threshold, Kelvin; None when not reported.
    pub warning_temp: Option<u16>,
    /// CCTEMP: critical composite temperature threshold, Kelvin.
    pub critical_temp: Option<u16>,
    /// HCTMA bit 0: host controlled thermal management supported.
    pub hctm: bool,
    /// MNTMT / MXTMT: minimum and maximum thermal management temperatures, Kelvin.
    pub min_tmt: Option<u16>,
    pub max_tmt: Option<u16>,
}

/// Decodes a 4096-byte Identify Controller page.
///
/// ```text
/// 0004  64 65 61 64 62 65 65 66 20 20 …   SN  "deadbeef" (20 bytes, space padded)
/// 0018  51 45 4d 55 20 4e 56 4d 65 …      MN  "QEMU NVMe Ctrl" (40 bytes)
/// 0040  38 2e 32 2e 32 20 20 20           FR  "8.2.2" (8 bytes)
/// 010a  57 01 75 01                       WCTEMP 343 K, CCTEMP 373 K
/// ```
pub fn parse_identify(page: &[u8]) -> Result<IdentifyController, PageError> {
    let p = check(page, IDENTIFY_LEN, false)?;
    Ok(IdentifyController {
        serial: ascii(&p[4..24]),
        model: ascii(&p[24..64]),
        firmware: ascii(&p[64..72]),
        error_log_entries: u16::from(p[262]) + 1,
        warning_temp: kelvin(u16_at(p, 266)),
        critical_temp: kelvin(u16_at(p, 268)),
        hctm: u16_at(p, 322) & 1 == 1,
        min_tmt: kelvin(u16_at(p, 324)),
        max_tmt: kelvin(u16_at(p, 326)),
    })
}

/// The critical warning bits (NVMe 2.0 Figure 207), in order, by the names of the `bit` label.
pub const CRITICAL_WARNING_BITS: [(u8, &str); 6] = [
    (0x01, "spare"),
    (0x02, "temperature"),
    (0x04, "reliability"),
    (0x08, "read_only"),
    (0x10, "volatile_backup"),
    (0x20, "pmr"),
];

/// SMART / Health Information (LID 02h), controller-wide (NSID FFFFFFFFh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartLog {
    pub critical_warning: u8,
    /// Composite temperature, Kelvin (None when 0).
    pub composite_temp: Option<u16>,
    /// Available spare, percent of the original (0-100).
    pub available_spare: u8,
    pub spare_threshold: u8,
    /// Life used, percent; may exceed 100 (saturates at 255).
    pub percentage_used: u8,
    /// Units of 1000 × 512 bytes.
    pub data_units_read: u128,
    pub data_units_written: u128,
    pub host_read_commands: u128,
    pub host_write_commands: u128,
    /// Minutes.
    pub busy_time_minutes: u128,
    pub power_cycles: u128,
    pub power_on_hours: u128,
    pub unsafe_shutdowns: u128,
    pub media_errors: u128,
    pub error_log_entries: u128,
    /// Minutes at or above WCTEMP (and below CCTEMP), and at or above CCTEMP.
    pub warning_temp_minutes: u32,
    pub critical_temp_minutes: u32,
    /// Temperature sensors 1-8, Kelvin; None where not implemented (0).
    pub sensors: [Option<u16>; 8],
    /// Thermal management transitions to TMT1 and TMT2, and seconds spent at each.
    pub tmt_transitions: [u32; 2],
    pub tmt_seconds: [u32; 2],
}

/// Bytes per data unit of the SMART log (1000 × 512).
pub const DATA_UNIT_BYTES: u128 = 512_000;

impl SmartLog {
    pub fn spare_below_threshold(&self) -> bool {
        self.available_spare < self.spare_threshold
    }
}

/// Decodes a 512-byte SMART / Health Information log page. An all-zero page is valid (QEMU's is
/// nearly so); an all-0xFF page is a device that did not answer.
///
/// ```text
/// 0000  00 43 01 64 0a 03 00 …            CW 0, 323 K, spare 100 %, threshold 10 %, used 3 %
/// 0020  u128 data units read, 0030 written, 0040 host reads, 0050 host writes, 0060 busy minutes,
/// 0070  power cycles, 0080 power-on hours, 0090 unsafe shutdowns, 00a0 media errors,
/// 00b0  error log entries, 00c0 u32 warning / critical temperature minutes,
/// 00c8  u16 × 8 sensors (K, 0 absent), 00d8 u32 × 2 TMT transitions, 00e0 u32 × 2 TMT seconds
/// ```
pub fn parse_smart(page: &[u8]) -> Result<SmartLog, PageError> {
    let p = check(page, SMART_LEN, true)?;
    let mut sensors = [None; 8];
    for (i, s) in sensors.iter_mut().enumerate() {
        *s = kelvin(u16_at(p, 200 + 2 * i));
    }
    Ok(SmartLog {
        critical_warning: p[0],
        composite_temp: kelvin(u16_at(p, 1)),
        available_spare: p[3],
        spare_threshold: p[4],
        percentage_used: p[5],
        data_units_read: u128_at(p, 32),
        data_units_written: u128_at(p, 48),
        host_read_commands: u128_at(p, 64),
        host_write_commands: u128_at(p, 80),
        busy_time_minutes: u128_at(p, 96),
        power_cycles: u128_at(p, 112),
        power_on_hours: u128_at(p, 128),
        unsafe_shutdowns: u128_at(p, 144),
        media_errors: u128_at(p, 160),
        error_log_entries: u128_at(p, 176),
        warning_temp_minutes: u32_at(p, 192),
        critical_temp_minutes: u32_at(p, 196),
        sensors,
        tmt_transitions: [u32_at(p, 216), u32_at(p, 220)],
        tmt_seconds: [u32_at(p, 224), u32_at(p, 228)],
    })
}

/// One Error Information log entry (64 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEntry {
    /// Unique, incrementing; 0 marks an empty entry.
    pub error_count: u64,
    pub sqid: u16,
    /// Status Field without the phase tag: SC bits 7:0, SCT bits 10:8.
    pub status: u16,
    pub lba: u64,
    pub nsid: u32,
}

impl ErrorEntry {
    /// Status code type: 0 generic, 1 command specific, 2 media and data integrity, 3 path, 7 vendor.
    pub fn status_code_type(&self) -> u8 {
        ((self.status >> 8) & 7) as u8
    }
}

/// The `status_type` label of a status code type.
pub fn status_type_name(sct: u8) -> &'static str {
    match sct {
        0 => "generic",
        1 => "command_specific",
        2 => "media",
        3 => "path",
        7 => "vendor",
        _ => "reserved",
    }
}

/// Decodes the Error Information log: the valid (non-empty) entries of whole 64-byte entries.
/// A page that is not a whole number of entries, or all 0xFF, is an error.
///
/// ```text
/// 0000  05 00 00 00 00 00 00 00   error count 5
/// 0008  01 00 0c 00 03 05         SQ 1, command id 12, status field 0x0503 → status 0x281 (SCT 2, SC 0x81)
/// 0010  20 03 00 00 00 00 00 00   LBA 800, then NSID 1 at 0x18
/// ```
pub fn parse_error_log(page: &[u8]) -> Result<Vec<ErrorEntry>, PageError> {
    if page.is_empty() || !page.len().is_multiple_of(ERROR_ENTRY_LEN) {
        let want = page.len().div_ceil(ERROR_ENTRY_LEN).max(1) * ERROR_ENTRY_LEN;
        return Err(PageError::Truncated { want, got: page.len() });
    }
    let p = check(page, page.len(), true)?;
    Ok(p.chunks_exact(ERROR_ENTRY_LEN)
        .map(|e| ErrorEntry {
            error_count: u64_at(e, 0),
            sqid: u16_at(e, 8),
            status: u16_at(e, 12) >> 1,
            lba: u64_at(e, 16),
            nsid: u32_at(e, 24),
        })
        .filter(|e| e.error_count != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn identify_page() -> Vec<u8> {
        let mut p = vec![0u8; IDENTIFY_LEN];
        p[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        p[4..24].copy_from_slice(b"deadbeef            ");
        p[24..64].copy_from_slice(format!("{:<40}", "QEMU NVMe Ctrl").as_bytes());
        p[64..72].copy_from_slice(b"8.2.2   ");
        p[262] = 63;
        p[266..268].copy_from_slice(&343u16.to_le_bytes());
        p[268..270].copy_from_slice(&373u16.to_le_bytes());
        p
    }

    #[test]
    fn identify() {
        let id = parse_identify(&identify_page()).unwrap();
        assert_eq!(
            (id.serial.as_str(), id.model.as_str(), id.firmware.as_str()),
            ("deadbeef", "QEMU NVMe Ctrl", "8.2.2")
        );
        assert_eq!((id.warning_temp, id.critical_temp), (Some(343), Some(373)));
        assert_eq!((id.min_tmt, id.max_tmt, id.hctm), (None, None, false));
        assert_eq!(id.error_log_entries, 64);
        let mut p = identify_page();
        p[322] = 1;
        p[324..326].copy_from_slice(&333u16.to_le_bytes());
        p[326..328].copy_from_slice(&358u16.to_le_bytes());
        p[266..270].fill(0);
        let id = parse_identify(&p).unwrap();
        assert_eq!((id.hctm, id.min_tmt, id.max_tmt), (true, Some(333), Some(358)));
        assert_eq!((id.warning_temp, id.critical_temp), (None, None), "0 means not reported");
        assert_eq!((celsius(343), celsius(323)), (69.85, 49.85));
        assert_eq!(celsius(323), 49850.0 / 1000.0);
    }

    #[test]
    fn identify_bad_pages() {
        assert_eq!(
            parse_identify(&identify_page()[..4095]),
            Err(PageError::Truncated { want: 4096, got: 4095 })
        );
        assert_eq!(parse_identify(&[]), Err(PageError::Truncated { want: 4096, got: 0 }));
        assert_eq!(parse_identify(&[0xFF; 4096]), Err(PageError::AllOnes));
        assert_eq!(parse_identify(&[0; 4096]), Err(PageError::AllZero));
    }

    fn smart_page() -> Vec<u8> {
        let mut p = vec![0u8; SMART_LEN];
        p[0] = 0;
        p[1..3].copy_from_slice(&323u16.to_le_bytes());
        (p[3], p[4], p[5]) = (100, 10, 3);
        p
    }

    #[test]
    fn smart_qemu_like() {
        let mut p = smart_page();
        p[32] = 1;
        p[128] = 7;
        let s = parse_smart(&p).unwrap();
        assert_eq!((s.critical_warning, s.composite_temp), (0, Some(323)));
        assert_eq!((s.available_spare, s.spare_threshold, s.percentage_used), (100, 10, 3));
        assert_eq!((s.data_units_read, s.power_on_hours), (1, 7));
        assert_eq!(s.sensors, [None; 8], "every absent sensor left out");
        assert!(!s.spare_below_threshold());
    }

    #[test]
    fn smart_crafted_fields() {
        let mut p = smart_page();
        // Spare below threshold, and the drive says so.
        (p[0], p[3], p[4]) = (0x01, 5, 10);
        // Percentage used above 100.
        p[5] = 180;
        // Counters above 2^64: data units written = 2^64 + 5, media errors = 2^100.
        p[48..64].copy_from_slice(&((1u128 << 64) + 5).to_le_bytes());
        p[160..176].copy_from_slice(&(1u128 << 100).to_le_bytes());
        p[176..192].copy_from_slice(&u128::MAX.to_le_bytes());
        // Thermal management: 3 transitions to TMT1, 1 to TMT2, 120 s and 30 s.
        p[216..220].copy_from_slice(&3u32.to_le_bytes());
        p[220..224].copy_from_slice(&1u32.to_le_bytes());
        p[224..228].copy_from_slice(&120u32.to_le_bytes());
        p[228..232].copy_from_slice(&30u32.to_le_bytes());
        p[192..196].copy_from_slice(&42u32.to_le_bytes());
        // Sensors 1 and 8 present, the rest absent.
        p[200..202].copy_from_slice(&310u16.to_le_bytes());
        p[214..216].copy_from_slice(&330u16.to_le_bytes());
        let s = parse_smart(&p).unwrap();
        assert!(s.spare_below_threshold());
        assert_eq!(s.critical_warning, 1);
        assert_eq!(s.percentage_used, 180);
        assert_eq!(s.data_units_written, (1u128 << 64) + 5);
        assert_eq!(s.media_errors, 1u128 << 100);
        assert_eq!(s.error_log_entries, u128::MAX);
        // As f64 the upper half survives: 2^100 is exact, 2^64 + 5 rounds to 2^64.
        assert_eq!(s.media_errors as f64, 2f64.powi(100));
        assert_eq!(s.data_units_written as f64, 2f64.powi(64));
        assert!((u128::MAX as f64) > 3.4e38);
        assert_eq!((s.tmt_transitions, s.tmt_seconds), ([3, 1], [120, 30]));
        assert_eq!(s.warning_temp_minutes, 42);
        assert_eq!(s.sensors[0], Some(310));
        assert_eq!(s.sensors[7], Some(330));
        assert!(s.sensors[1..7].iter().all(Option::is_none));
    }

    #[test]
    fn smart_bad_pages() {
        assert_eq!(parse_smart(&smart_page()[..511]), Err(PageError::Truncated { want: 512, got: 511 }));
        assert_eq!(parse_smart(&[0xFF; 512]), Err(PageError::AllOnes));
        assert!(parse_smart(&[0; 512]).is_ok(), "all zero is a valid (if empty) log");
        // A longer buffer is fine: the page is its first 512 bytes.
        assert!(parse_smart(&[0; 4096]).is_ok());
        let no_temp = parse_smart(&[0; 512]).unwrap();
        assert_eq!(no_temp.composite_temp, None);
    }

    #[test]
    fn error_log() {
        let mut p = vec![0u8; 3 * ERROR_ENTRY_LEN];
        p[0] = 5;
        p[8] = 1;
        p[10] = 12;
        p[12..14].copy_from_slice(&((0x281u16 << 1) | 1).to_le_bytes());
        p[16..24].copy_from_slice(&800u64.to_le_bytes());
        p[24] = 1;
        p[64] = 4;
        p[76..78].copy_from_slice(&(0x002u16 << 1).to_le_bytes());
        let e = parse_error_log(&p).unwrap();
        assert_eq!(e.len(), 2, "the empty third entry is left out");
        assert_eq!((e[0].error_count, e[0].sqid, e[0].status, e[0].lba, e[0].nsid), (5, 1, 0x281, 800, 1));
        assert_eq!(status_type_name(e[0].status_code_type()), "media");
        assert_eq!(status_type_name(e[1].status_code_type()), "generic");
        assert_eq!(status_type_name(7), "vendor");
        assert_eq!(status_type_name(5), "reserved");
        assert_eq!(parse_error_log(&p[..100]), Err(PageError::Truncated { want: 128, got: 100 }));
        assert_eq!(parse_error_log(&[]), Err(PageError::Truncated { want: 64, got: 0 }));
        assert_eq!(parse_error_log(&[0xFF; 128]), Err(PageError::AllOnes));
        assert_eq!(parse_error_log(&[0; 128]), Ok(vec![]));
    }

    proptest! {
        #[test]
        fn never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = parse_identify(&bytes);
            let _ = parse_smart(&bytes);
            let _ = parse_error_log(&bytes);
        }

        #[test]
        fn smart_counters_round_trip(v in any::<u128>(), off in 2usize..12) {
            let mut p = vec![0u8; SMART_LEN];
            p[off * 16..off * 16 + 16].copy_from_slice(&v.to_le_bytes());
            let s = parse_smart(&p).unwrap();
            let all = [s.data_units_read, s.data_units_written, s.host_read_commands, s.host_write_commands,
                s.busy_time_minutes, s.power_cycles, s.power_on_hours, s.unsafe_shutdowns, s.media_errors,
                s.error_log_entries];
            prop_assert_eq!(all[off - 2], v);
        }
    }
}
