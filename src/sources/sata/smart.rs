//! Pure decoders of what a SATA disk answers through ATA PASS-THROUGH (16): the SMART READ DATA
//! and READ THRESHOLDS pages, CHECK POWER MODE's count, and the attribute names and raw formats
//! of smartmontools' drivedb defaults. Layouts as smartmontools `ata.h` / `scsiata.cpp` and SAT-5
//! give them (docs/kernel-storage.md §3.2-3.3). The sense data that carries the result registers
//! is decoded by `crate::device::sense`.
//!
//! ```text
//! SMART READ DATA of QEMU's ide-hd (hw/ide/core.c), revision 1, then 12-byte attribute entries:
//! 0000  01 00 01 03 00 64 64 00 00 00 00 00 00 00 03 03   rev 1; id 1 flags 0x0003 100/100 raw 0 …
//! 00bc  … be 03 00 45 45 1f 00 1f 1f 00 00 00 …          id 190 69/69 raw 1f 00 1f 1f 00 00 (31 °C)
//! 01ff  xx                                                checksum: all 512 bytes sum to 0 mod 256
//! ```

use std::fmt;

pub const PAGE_LEN: usize = 512;
/// Attribute slots of a SMART data page.
const SLOTS: usize = 30;

/// Why a SMART page could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    Truncated {
        got: usize,
    },
    /// The 512 bytes do not sum to 0 mod 256: the page is corrupt (or was never filled).
    Checksum {
        sum: u8,
    },
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Truncated { got } => write!(f, "page truncated: {got} of {PAGE_LEN} bytes"),
            PageError::Checksum { sum } => {
                write!(f, "bad checksum: the page sums to 0x{sum:02x} mod 256, not 0")
            }
        }
    }
}

fn page(bytes: &[u8]) -> Result<&[u8], PageError> {
    let p = bytes.get(..PAGE_LEN).ok_or(PageError::Truncated { got: bytes.len() })?;
    let sum = p.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    if sum != 0 {
        return Err(PageError::Checksum { sum });
    }
    Ok(p)
}

/// One used slot of SMART READ DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute {
    pub id: u8,
    pub flags: u16,
    pub value: u8,
    pub worst: u8,
    /// The 48-bit raw field as a little-endian integer (smartctl's `raw.value`).
    pub raw: u64,
}

/// The SMART READ DATA page: its attributes (empty slots, id 0, left out) and self-test status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartData {
    pub revision: u16,
    pub attributes: Vec<RawAttribute>,
    /// Byte 363: self-test execution status (high nibble result, low nibble tenths remaining).
    pub self_test_status: u8,
}

/// Decodes SMART READ DATA (feature D0h).
pub fn parse_data(bytes: &[u8]) -> Result<SmartData, PageError> {
    let p = page(bytes)?;
    let attributes = p[2..2 + SLOTS * 12]
        .chunks_exact(12)
        .filter(|e| e[0] != 0)
        .map(|e| {
            let mut raw = [0u8; 8];
            raw[..6].copy_from_slice(&e[5..11]);
            RawAttribute {
                id: e[0],
                flags: u16::from_le_bytes([e[1], e[2]]),
                value: e[3],
                worst: e[4],
                raw: u64::from_le_bytes(raw),
            }
        })
        .collect();
    Ok(SmartData { revision: u16::from_le_bytes([p[0], p[1]]), attributes, self_test_status: p[363] })
}

/// Decodes SMART READ THRESHOLDS (feature D1h): (id, threshold) of each used slot.
pub fn parse_thresholds(bytes: &[u8]) -> Result<Vec<(u8, u8)>, PageError> {
    let p = page(bytes)?;
    Ok(p[2..2 + SLOTS * 12].chunks_exact(12).filter(|e| e[0] != 0).map(|e| (e[0], e[1])).collect())
}

/// How the raw field of an attribute is read (smartmontools' drivedb defaults, `-v` formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    /// All 48 bits are one count.
    Raw48,
    /// The low 16 bits (5, 196: `raw16(raw16)`, the rest is vendor data).
    Raw16,
    /// The low 24 bits (9 power-on hours: `raw24(raw8)`).
    Raw24,
    /// Byte 0 is °C (190, 194: `tempminmax`, min/max in the higher bytes).
    Temperature,
}

/// The attributes the agent names: drivedb's default names; what they mean for the checks.
/// `rising_fails`: a rise of the raw count is a failure sign the `sata_health` check watches.
pub struct Known {
    pub id: u8,
    pub name: &'static str,
    pub kind: RawKind,
    pub rising_fails: bool,
}

const fn k(id: u8, name: &'static str, kind: RawKind, rising_fails: bool) -> Known {
    Known { id, name, kind, rising_fails }
}

use RawKind::{Raw16, Raw24, Raw48, Temperature};

/// Failure-relevant attributes (the classic five, UDMA CRC, spin retries, end-to-end, the
/// reallocation events, SSD program/erase failures and wear) and the common informational ones.
pub const KNOWN: &[Known] = &[
    k(1, "Raw_Read_Error_Rate", Raw48, false),
    k(3, "Spin_Up_Time", Raw16, false),
    k(4, "Start_Stop_Count", Raw48, false),
    k(5, "Reallocated_Sector_Ct", Raw16, true),
    k(7, "Seek_Error_Rate", Raw48, false),
    k(9, "Power_On_Hours", Raw24, false),
    k(10, "Spin_Retry_Count", Raw48, true),
    k(12, "Power_Cycle_Count", Raw48, false),
    k(169, "Remaining_Lifetime_Perc", Raw48, false),
    k(175, "Program_Fail_Count_Chip", Raw48, true),
    k(176, "Erase_Fail_Count_Chip", Raw48, true),
    k(177, "Wear_Leveling_Count", Raw48, false),
    k(179, "Used_Rsvd_Blk_Cnt_Tot", Raw48, false),
    k(180, "Unused_Rsvd_Blk_Cnt_Tot", Raw48, false),
    k(181, "Program_Fail_Cnt_Total", Raw48, true),
    k(182, "Erase_Fail_Count_Total", Raw48, true),
    k(183, "Runtime_Bad_Block", Raw48, true),
    k(184, "End-to-End_Error", Raw48, true),
    k(187, "Reported_Uncorrect", Raw48, true),
    k(188, "Command_Timeout", Raw48, true),
    k(190, "Airflow_Temperature_Cel", Temperature, false),
    k(192, "Power-Off_Retract_Count", Raw48, false),
    k(193, "Load_Cycle_Count", Raw48, false),
    k(194, "Temperature_Celsius", Temperature, false),
    k(196, "Reallocated_Event_Count", Raw16, true),
    k(197, "Current_Pending_Sector", Raw48, true),
    k(198, "Offline_Uncorrectable", Raw48, true),
    k(199, "UDMA_CRC_Error_Count", Raw48, true),
    k(202, "Percent_Lifetime_Remain", Raw48, false),
    k(231, "Temperature_Celsius", Temperature, false),
    k(232, "Available_Reservd_Space", Raw48, false),
    k(233, "Media_Wearout_Indicator", Raw48, false),
    k(241, "Total_LBAs_Written", Raw48, false),
    k(242, "Total_LBAs_Read", Raw48, false),
];

pub fn known(id: u8) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.id == id)
}

/// The attribute's name as smartctl prints it by default (`Unknown_Attribute` otherwise).
pub fn name(id: u8) -> &'static str {
    known(id).map_or("Unknown_Attribute", |k| k.name)
}

/// The raw field decoded per the attribute's kind: a count, hours or °C.
pub fn decode_raw(id: u8, raw: u64) -> u64 {
    match known(id).map_or(Raw48, |k| k.kind) {
        Raw48 => raw,
        Raw16 => raw & 0xffff,
        Raw24 => raw & 0xff_ffff,
        Temperature => raw & 0xff,
    }
}

/// An attribute with its threshold joined, judged as smartctl judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub id: u8,
    pub name: &'static str,
    pub prefailure: bool,
    pub value: u8,
    pub worst: u8,
    /// None when READ THRESHOLDS has no entry for the id.
    pub threshold: Option<u8>,
    pub raw: u64,
    pub decoded: u64,
}

impl Attribute {
    /// `threshold != 0 && value <= threshold` (smartctl `WHEN_FAILED` "FAILING_NOW"); 0 and
    /// 254/255 sentinels aside, as smartctl: a normalized value of 0 or above 253 is not judged.
    pub fn failing_now(&self) -> bool {
        let judged = (1..=0xfd).contains(&self.value);
        self.threshold.is_some_and(|t| t != 0 && judged && self.value <= t)
    }

    /// `worst <= threshold` while not failing now (smartctl "In_the_past").
    pub fn failed_in_past(&self) -> bool {
        let judged = (1..=0xfd).contains(&self.worst);
        !self.failing_now() && self.threshold.is_some_and(|t| t != 0 && judged && self.worst <= t)
    }
}

/// Joins the data page's attributes with their thresholds, by id.
pub fn join(data: &SmartData, thresholds: &[(u8, u8)]) -> Vec<Attribute> {
    data.attributes
        .iter()
        .map(|a| Attribute {
            id: a.id,
            name: name(a.id),
            prefailure: a.flags & 1 == 1,
            value: a.value,
            worst: a.worst,
            threshold: thresholds.iter().find(|(id, _)| *id == a.id).map(|(_, t)| *t),
            raw: a.raw,
            decoded: decode_raw(a.id, a.raw),
        })
        .collect()
}

/// The drive's temperature from its attributes: 194, else 190 (as drivetemp falls back), °C.
pub fn temperature(attrs: &[Attribute]) -> Option<u64> {
    [194, 190].iter().find_map(|id| attrs.iter().find(|a| a.id == *id).map(|a| a.decoded))
}

/// A drive's power mode from CHECK POWER MODE's count register (ACS-4 7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerMode {
    Standby,
    Idle,
    Active,
}

pub fn power_mode(count: u8) -> PowerMode {
    match count {
        0x00 | 0x01 => PowerMode::Standby,
        0x80..=0x83 => PowerMode::Idle,
        _ => PowerMode::Active,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A data page as QEMU's ide-hd returns it (hw/ide/core.c `smart_attributes`).
    pub fn qemu_data() -> Vec<u8> {
        let rows: [(u8, u8, u8, [u8; 6]); 7] = [
            (1, 100, 100, [0; 6]),
            (3, 100, 100, [0x10, 0, 0, 0, 0, 0]),
            (4, 100, 100, [100, 0, 0, 0, 0, 0]),
            (5, 100, 100, [0; 6]),
            (9, 100, 100, [1, 0, 0, 0, 0, 0]),
            (12, 100, 100, [0; 6]),
            (190, 69, 69, [0x1f, 0, 0x1f, 0x1f, 0, 0]),
        ];
        let mut p = vec![0u8; PAGE_LEN];
        p[0] = 1;
        for (i, (id, v, w, raw)) in rows.iter().enumerate() {
            let e = &mut p[2 + 12 * i..14 + 12 * i];
            e[0] = *id;
            e[1] = if *id == 4 { 0x02 } else { 0x03 };
            (e[3], e[4]) = (*v, *w);
            e[5..11].copy_from_slice(raw);
        }
        fix_checksum(&mut p);
        p
    }

    pub fn fix_checksum(p: &mut [u8]) {
        p[511] = 0;
        let sum = p.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        p[511] = sum.wrapping_neg();
    }

    fn thresholds(rows: &[(u8, u8)]) -> Vec<u8> {
        let mut p = vec![0u8; PAGE_LEN];
        p[0] = 1;
        for (i, (id, t)) in rows.iter().enumerate() {
            (p[2 + 12 * i], p[3 + 12 * i]) = (*id, *t);
        }
        fix_checksum(&mut p);
        p
    }

    #[test]
    fn qemu_page() {
        let d = parse_data(&qemu_data()).unwrap();
        assert_eq!(d.revision, 1);
        let ids: Vec<u8> = d.attributes.iter().map(|a| a.id).collect();
        assert_eq!(ids, [1, 3, 4, 5, 9, 12, 190]);
        let t = parse_thresholds(&thresholds(&[(1, 6), (3, 0), (4, 20), (5, 36), (190, 50)])).unwrap();
        let attrs = join(&d, &t);
        let a190 = attrs.iter().find(|a| a.id == 190).unwrap();
        assert_eq!(
            (a190.name, a190.value, a190.worst, a190.threshold),
            ("Airflow_Temperature_Cel", 69, 69, Some(50))
        );
        assert_eq!(a190.raw, 0x1f1f_001f);
        assert_eq!(a190.decoded, 31);
        assert_eq!(temperature(&attrs), Some(31));
        let a3 = attrs.iter().find(|a| a.id == 3).unwrap();
        assert_eq!((a3.raw, a3.decoded, a3.threshold), (16, 16, Some(0)));
        assert_eq!(attrs.iter().find(|a| a.id == 9).unwrap().threshold, None, "no threshold entry");
        assert!(attrs.iter().all(|a| !a.failing_now() && !a.failed_in_past()));
        assert!(!attrs.iter().find(|a| a.id == 4).unwrap().prefailure);
        assert!(attrs.iter().find(|a| a.id == 5).unwrap().prefailure);
    }

    #[test]
    fn bad_checksum_rejected() {
        let mut p = qemu_data();
        p[7] ^= 0x01;
        assert_eq!(parse_data(&p), Err(PageError::Checksum { sum: 0x01 }));
        assert!(parse_thresholds(&p).is_err());
        assert_eq!(parse_data(&p[..100]), Err(PageError::Truncated { got: 100 }));
        let msg = parse_data(&p).unwrap_err().to_string();
        assert_eq!(msg, "bad checksum: the page sums to 0x01 mod 256, not 0");
    }

    #[test]
    fn empty_slots_skipped_anywhere() {
        let mut p = vec![0u8; PAGE_LEN];
        // Slots 0 and 2 empty, slot 1 and the last slot used.
        (p[2 + 12], p[2 + 12 + 3]) = (197, 100);
        (p[2 + 12 * 29], p[2 + 12 * 29 + 3]) = (199, 200);
        p[2 + 12 * 29 + 5..2 + 12 * 29 + 11].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        fix_checksum(&mut p);
        let d = parse_data(&p).unwrap();
        assert_eq!(d.attributes.len(), 2);
        assert_eq!((d.attributes[0].id, d.attributes[1].id), (197, 199));
        assert_eq!(d.attributes[1].raw, 0x0605_0403_0201);
        assert_eq!(decode_raw(199, d.attributes[1].raw), 0x0605_0403_0201);
        let mut zero = vec![0u8; PAGE_LEN];
        fix_checksum(&mut zero);
        assert!(parse_data(&zero).unwrap().attributes.is_empty());
    }

    #[test]
    fn power_modes() {
        assert_eq!(power_mode(0x00), PowerMode::Standby);
        assert_eq!(power_mode(0x01), PowerMode::Standby);
        assert_eq!(power_mode(0x80), PowerMode::Idle);
        assert_eq!(power_mode(0xff), PowerMode::Active);
    }

    #[test]
    fn raw_kinds_and_failing() {
        assert_eq!(decode_raw(5, 0x0001_0002_0003), 3, "raw16");
        assert_eq!(decode_raw(9, 0x0001_0012_3456), 0x12_3456, "raw24");
        assert_eq!(decode_raw(194, 0x0028_0014_0023), 0x23, "temperature byte");
        assert_eq!(decode_raw(250, 0xffff_ffff_ffff), 0xffff_ffff_ffff, "unknown: raw48");
        assert_eq!(name(250), "Unknown_Attribute");
        let a = |value, worst, threshold| Attribute {
            id: 5,
            name: "Reallocated_Sector_Ct",
            prefailure: true,
            value,
            worst,
            threshold,
            raw: 0,
            decoded: 0,
        };
        assert!(a(36, 36, Some(36)).failing_now());
        assert!(!a(36, 36, Some(36)).failed_in_past(), "failing now is not reported as past");
        assert!(!a(37, 36, Some(36)).failing_now() && a(37, 36, Some(36)).failed_in_past());
        assert!(!a(1, 1, Some(0)).failing_now(), "threshold 0: never fails");
        assert!(!a(1, 1, None).failing_now());
        assert!(!a(0xfe, 0xfe, Some(0xff)).failing_now(), "254: not judged");
    }

    proptest! {
        #[test]
        fn never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = parse_data(&bytes);
            let _ = parse_thresholds(&bytes);
        }

        #[test]
        fn raw_round_trip(raw in 0u64..(1 << 48), slot in 0usize..30) {
            let mut p = vec![0u8; PAGE_LEN];
            p[2 + 12 * slot] = 199;
            p[2 + 12 * slot + 5..2 + 12 * slot + 11].copy_from_slice(&raw.to_le_bytes()[..6]);
            fix_checksum(&mut p);
            let d = parse_data(&p).unwrap();
            prop_assert_eq!(d.attributes.len(), 1);
            prop_assert_eq!(d.attributes[0].raw, raw);
        }
    }
}
