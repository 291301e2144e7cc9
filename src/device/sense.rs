//! SCSI sense data as SG_IO returns it (SPC-5 4.4) and the ATA result registers SAT carries in
//! it (SAT-5 12.2.2.6 and 12.2.2.7): pure decoders, fuzzed and property-tested, used by the SG_IO
//! layer to judge a completed ATA PASS-THROUGH command.

/// The ATA result registers (the 28-bit subset the agent needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registers {
    pub error: u8,
    pub count: u8,
    pub lba_low: u8,
    pub lba_mid: u8,
    pub lba_high: u8,
    pub device: u8,
    pub status: u8,
}

/// What a sense buffer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// The ATA registers, when the sense carries them (ATA Status Return descriptor, or fixed
    /// sense with ASC/ASCQ 00h/1Dh "ATA pass-through information available").
    pub registers: Option<Registers>,
}

pub const SENSE_RECOVERED_ERROR: u8 = 0x01;
pub const SENSE_ILLEGAL_REQUEST: u8 = 0x05;

/// Decodes sense data in either format (SPC-5 4.4; SAT-5 12.2.2.6 and 12.2.2.7).
///
/// ```text
/// descriptor: 72 01 00 1d 00 00 00 0e 09 0c 00 00 00 00 00 00 00 4f 00 c2 00 50
///             resp  key asc ascq      len | code 09, len 0c, error, count, lba low/mid/high, device, status
/// fixed:      70 00 01 00 00 50 00 00 0a 00 00 00 00 00 00 1d 00 00 …  info bytes 3..6 =
///             error, status, device, count; bytes 9..11 = lba low, mid, high; asc 12, ascq 13
/// ```
pub fn parse_sense(sb: &[u8]) -> Option<Sense> {
    let code = sb.first()? & 0x7f;
    match code {
        0x72 | 0x73 => {
            let (key, asc, ascq) = (sb.get(1)? & 0x0f, *sb.get(2)?, *sb.get(3)?);
            let end = sb.len().min(8 + usize::from(*sb.get(7)?));
            let mut off = 8;
            let mut registers = None;
            while off + 2 <= end {
                let len = usize::from(sb[off + 1]) + 2;
                if sb[off] == 0x09 && len >= 14 && off + 14 <= end {
                    let d = &sb[off..off + 14];
                    registers = Some(Registers {
                        error: d[3],
                        count: d[5],
                        lba_low: d[7],
                        lba_mid: d[9],
                        lba_high: d[11],
                        device: d[12],
                        status: d[13],
                    });
                    break;
                }
                off += len;
            }
            Some(Sense { key, asc, ascq, registers })
        }
        0x70 | 0x71 => {
            let (key, asc, ascq) = (sb.get(2)? & 0x0f, *sb.get(12)?, *sb.get(13)?);
            let registers = (asc == 0x00 && ascq == 0x1d && sb.len() >= 12).then(|| Registers {
                error: sb[3],
                status: sb[4],
                device: sb[5],
                count: sb[6],
                lba_low: sb[9],
                lba_mid: sb[10],
                lba_high: sb[11],
            });
            Some(Sense { key, asc, ascq, registers })
        }
        _ => None,
    }
}

/// SMART RETURN STATUS from the result registers: `Some(true)` passed (4Fh/C2h), `Some(false)`
/// threshold exceeded (F4h/2Ch), None for anything else.
pub fn smart_status(r: &Registers) -> Option<bool> {
    match (r.lba_mid, r.lba_high) {
        (0x4f, 0xc2) => Some(true),
        (0xf4, 0x2c) => Some(false),
        _ => None,
    }
}

/// Whether the ATA status register says the command completed: DRDY set, BSY and ERR clear
/// (smartmontools accepts a result by this when the sense key is not the expected one).
pub fn status_ok(r: &Registers) -> bool {
    r.status & 0xc1 == 0x40
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn descriptor_sense() {
        let sb = [
            0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 0x0e, 0x09, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x4f, 0x00, 0xc2, 0xa0, 0x50,
        ];
        let s = parse_sense(&sb).unwrap();
        assert_eq!((s.key, s.asc, s.ascq), (SENSE_RECOVERED_ERROR, 0, 0x1d));
        let r = s.registers.unwrap();
        assert_eq!((r.lba_mid, r.lba_high, r.device, r.status), (0x4f, 0xc2, 0xa0, 0x50));
        assert_eq!(smart_status(&r), Some(true));
        assert!(status_ok(&r));
        // Threshold exceeded; another descriptor (information, 00h) before the ATA one.
        let sb = [
            0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 0x1a, 0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x0c,
            0x00, 0x04, 0x00, 0xff, 0x00, 0x00, 0x00, 0xf4, 0x00, 0x2c, 0x00, 0x51,
        ];
        let r = parse_sense(&sb).unwrap().registers.unwrap();
        assert_eq!((r.error, r.count, smart_status(&r)), (0x04, 0xff, Some(false)));
        assert!(!status_ok(&r), "ERR set");
        // Illegal request, no descriptors (a disk that is no ATA device).
        let s = parse_sense(&[0x72, 0x05, 0x20, 0x00, 0, 0, 0, 0]).unwrap();
        assert_eq!((s.key, s.asc, s.registers), (SENSE_ILLEGAL_REQUEST, 0x20, None));
        // A descriptor length running past the buffer is ignored, not read.
        let s = parse_sense(&[0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 0x0e, 0x09, 0x0c, 0, 0]).unwrap();
        assert_eq!(s.registers, None);
    }

    #[test]
    fn fixed_sense() {
        // CHECK POWER MODE answered: count 0xff (active or idle), status 0x50.
        let mut sb = [0u8; 18];
        sb[0] = 0x70;
        sb[2] = 0x01;
        (sb[3], sb[4], sb[5], sb[6]) = (0x00, 0x50, 0xa0, 0xff);
        sb[7] = 10;
        (sb[9], sb[10], sb[11]) = (0x00, 0x4f, 0xc2);
        (sb[12], sb[13]) = (0x00, 0x1d);
        let s = parse_sense(&sb).unwrap();
        assert_eq!(s.key, SENSE_RECOVERED_ERROR);
        let r = s.registers.unwrap();
        assert_eq!((r.count, r.status, r.device), (0xff, 0x50, 0xa0));
        assert_eq!(smart_status(&r), Some(true));
        (sb[10], sb[11]) = (0xf4, 0x2c);
        assert_eq!(smart_status(&parse_sense(&sb).unwrap().registers.unwrap()), Some(false));
        (sb[10], sb[11]) = (0x12, 0x34);
        assert_eq!(smart_status(&parse_sense(&sb).unwrap().registers.unwrap()), None);
        // Fixed sense without the pass-through ASC carries no registers.
        (sb[2], sb[12], sb[13]) = (0x05, 0x20, 0x00);
        let s = parse_sense(&sb).unwrap();
        assert_eq!((s.key, s.registers), (SENSE_ILLEGAL_REQUEST, None));
        assert_eq!(parse_sense(&[]), None);
        assert_eq!(parse_sense(&[0x70, 0, 1]), None, "truncated fixed sense");
        assert_eq!(parse_sense(&[0x00; 18]), None, "no sense");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = parse_sense(&bytes);
        }

        #[test]
        fn sense_with_any_tail(head in prop_oneof![Just(0x70u8), Just(0x72u8)], tail in proptest::collection::vec(any::<u8>(), 0..96)) {
            let mut sb = vec![head];
            sb.extend(tail);
            let _ = parse_sense(&sb);
        }
    }
}
