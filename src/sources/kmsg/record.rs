//! One `/dev/kmsg` record (Documentation/ABI/testing/dev-kmsg, kernel/printk/printk.c
//! `info_print_ext_header`):
//!
//! ```text
//! 3,1234,5689012,-,caller=T1;nvme0n1: Read(0x2) @ LBA 4096, 8 blocks, Unrecovered Read Error (sct 0x2 / sc 0x81) DNR
//!  SUBSYSTEM=nvme
//!  DEVICE=c259:0
//! ```
//!
//! `prio,seq,timestamp_us,flags[,unknown fields];text`, then continuation lines that start with
//! a space. Bytes below 0x20, from 0x7f up, and `\` are written as `\xHH` (a multi-line printk
//! arrives as one record with `\x0a` inside).

/// A parsed record. `message` is unescaped; a multi-line printk keeps its `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Syslog facility: 0 for the kernel, 1 (user) for lines written to /dev/kmsg by programs.
    pub facility: u32,
    pub level: u8,
    pub seq: u64,
    /// Microseconds since boot (the printk clock).
    pub timestamp_us: u64,
    /// A continuation fragment of an earlier record (`c` flag).
    pub continuation: bool,
    pub message: String,
    /// `SUBSYSTEM=` of the continuation lines, if any.
    pub subsystem: Option<String>,
    /// `DEVICE=` of the continuation lines: `b8:0`, `c259:0`, `n2`, `+scsi:0:0:0:0`, `+pci:0000:01:00.0`.
    pub device: Option<String>,
}

/// Undoes the kernel's `\xHH` escapes; anything else is kept as it is.
pub fn unescape(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'x') {
            let hex = s.get(i + 2..i + 4).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one record as one `read()` returns it. None for anything that is not a record.
pub fn parse(bytes: &[u8]) -> Option<Record> {
    let semi = bytes.iter().position(|&b| b == b';')?;
    let header = std::str::from_utf8(&bytes[..semi]).ok()?;
    let mut fields = header.split(',');
    let prio: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let timestamp_us: u64 = fields.next()?.parse().ok()?;
    let flags = fields.next()?;
    // Later fields (caller=...) are ignored, as the ABI asks.
    let rest = &bytes[semi + 1..];
    let mut lines = rest.split(|&b| b == b'\n');
    let message = unescape(lines.next().unwrap_or_default());
    let (mut subsystem, mut device) = (None, None);
    for line in lines {
        let Some(kv) = line.strip_prefix(b" ") else { continue };
        if let Some(v) = kv.strip_prefix(b"SUBSYSTEM=") {
            subsystem = Some(unescape(v));
        } else if let Some(v) = kv.strip_prefix(b"DEVICE=") {
            device = Some(unescape(v));
        }
    }
    Some(Record {
        facility: prio >> 3,
        level: (prio & 7) as u8,
        seq,
        timestamp_us,
        continuation: flags.contains('c'),
        message,
        subsystem,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kernel_record_with_dictionary() {
        let r = parse(b"3,1234,5689012,-,caller=T1;nvme nvme0: I/O tag 12 (000c) QID 4 timeout, aborting\n SUBSYSTEM=nvme\n DEVICE=c259:0\n").unwrap();
        assert_eq!(
            (r.facility, r.level, r.seq, r.timestamp_us, r.continuation),
            (0, 3, 1234, 5689012, false)
        );
        assert_eq!(r.message, "nvme nvme0: I/O tag 12 (000c) QID 4 timeout, aborting");
        assert_eq!((r.subsystem.as_deref(), r.device.as_deref()), (Some("nvme"), Some("c259:0")));
    }

    #[test]
    fn user_record_and_escapes() {
        let r = parse(b"11,339,1700000,c;ata1.00: cmd 60/08 tag 17\\x0a         res 41/40 Emask 0x409 (media error) back\\x5cslash \\xzz\n").unwrap();
        assert_eq!((r.facility, r.level, r.continuation), (1, 3, true));
        assert_eq!(
            r.message,
            "ata1.00: cmd 60/08 tag 17\n         res 41/40 Emask 0x409 (media error) back\\slash \\xzz"
        );
        assert_eq!(r.device, None);
    }

    #[test]
    fn not_records() {
        for bad in [&b""[..], b"no semicolon", b"3,x,1,-;m", b"3,1;m", b"-1,1,1,-;m", b"3,1,1;m"] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_near_records(s in "[0-9]{1,3},[0-9]{1,19},[0-9]{1,19},[-c]{0,2}(,[a-z=0-9]{0,8})?;[ -~]{0,80}(\\\\x[0-9a-fA-Fz]{0,2}){0,3}(\n (SUBSYSTEM|DEVICE)=[ -~]{0,20}){0,3}\n?") {
            let r = parse(s.as_bytes());
            prop_assert!(r.is_some());
        }
    }
}
