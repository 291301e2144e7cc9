//! Storage errors in kernel log lines: a small fixed set of classes, and what each line names
//! (a disk, a partition, an ATA port, a SCSI address, an NVMe controller, a PCI function).
//!
//! The strings are the kernel's own (docs/kernel-storage.md §5), older variants
//! included. Matching is by prefixes and fixed substrings, no regex, so a line that is not a
//! storage error costs a few byte comparisons. Each line is at most one class: a single bad
//! sector on SATA shows as an ATA exception, an ATA media error, a SCSI medium error and a
//! block-layer medium error, one line each.

/// The classes, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    BlockIo,
    BlockTimeout,
    BlockMedium,
    BlockTarget,
    BlockTransport,
    BlockOther,
    BufferIo,
    NvmeTimeout,
    NvmeAbort,
    NvmeReset,
    NvmeDisabled,
    NvmeMedia,
    NvmeCommand,
    AtaException,
    AtaMedia,
    AtaCrc,
    AtaLinkReset,
    AtaLinkDown,
    AtaLinkSpeed,
    AtaNcqDisabled,
    ScsiMedium,
    ScsiHardware,
    Ext4Error,
    XfsIo,
    XfsCorruption,
    XfsShutdown,
    FsReadonly,
    PcieAerCorrectable,
    PcieAerUncorrectable,
    CpuThrottle,
}

impl Class {
    pub const ALL: [Class; 30] = [
        Class::BlockIo,
        Class::BlockTimeout,
        Class::BlockMedium,
        Class::BlockTarget,
        Class::BlockTransport,
        Class::BlockOther,
        Class::BufferIo,
        Class::NvmeTimeout,
        Class::NvmeAbort,
        Class::NvmeReset,
        Class::NvmeDisabled,
        Class::NvmeMedia,
        Class::NvmeCommand,
        Class::AtaException,
        Class::AtaMedia,
        Class::AtaCrc,
        Class::AtaLinkReset,
        Class::AtaLinkDown,
        Class::AtaLinkSpeed,
        Class::AtaNcqDisabled,
        Class::ScsiMedium,
        Class::ScsiHardware,
        Class::Ext4Error,
        Class::XfsIo,
        Class::XfsCorruption,
        Class::XfsShutdown,
        Class::FsReadonly,
        Class::PcieAerCorrectable,
        Class::PcieAerUncorrectable,
        Class::CpuThrottle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::BlockIo => "block_io",
            Class::BlockTimeout => "block_timeout",
            Class::BlockMedium => "block_medium",
            Class::BlockTarget => "block_target",
            Class::BlockTransport => "block_transport",
            Class::BlockOther => "block_other",
            Class::BufferIo => "buffer_io",
            Class::NvmeTimeout => "nvme_timeout",
            Class::NvmeAbort => "nvme_abort",
            Class::NvmeReset => "nvme_reset",
            Class::NvmeDisabled => "nvme_disabled",
            Class::NvmeMedia => "nvme_media",
            Class::NvmeCommand => "nvme_command",
            Class::AtaException => "ata_exception",
            Class::AtaMedia => "ata_media",
            Class::AtaCrc => "ata_crc",
            Class::AtaLinkReset => "ata_link_reset",
            Class::AtaLinkDown => "ata_link_down",
            Class::AtaLinkSpeed => "ata_link_speed",
            Class::AtaNcqDisabled => "ata_ncq_disabled",
            Class::ScsiMedium => "scsi_medium",
            Class::ScsiHardware => "scsi_hardware",
            Class::Ext4Error => "ext4_error",
            Class::XfsIo => "xfs_io",
            Class::XfsCorruption => "xfs_corruption",
            Class::XfsShutdown => "xfs_shutdown",
            Class::FsReadonly => "fs_readonly",
            Class::PcieAerCorrectable => "pcie_aer_correctable",
            Class::PcieAerUncorrectable => "pcie_aer_uncorrectable",
            Class::CpuThrottle => "cpu_throttle",
        }
    }

    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// What a line names, before it is resolved to a whole block device through sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject<'a> {
    /// A disk or a partition (`sda`, `nvme0n1p2`, `dm-0`).
    Block(&'a str),
    /// An ATA port (`ata1` or `ata1.00`: port 1).
    AtaPort(u32),
    /// A SCSI address `H:C:T:L`.
    Scsi(&'a str),
    /// An NVMe controller (`nvme0`).
    NvmeController(&'a str),
    /// A PCI function (`0000:01:00.0`).
    Pci(&'a str),
    /// Nothing to attribute (CPU throttling, an empty ATA port).
    None,
}

/// Block-layer status strings (`blk_errors[]`) and their class.
const BLOCK_STATUS: &[(&str, Class)] = &[
    ("I/O", Class::BlockIo),
    ("timeout", Class::BlockTimeout),
    ("critical medium", Class::BlockMedium),
    ("critical target", Class::BlockTarget),
    ("recoverable transport", Class::BlockTransport),
    ("operation not supported", Class::BlockOther),
    ("critical space allocation", Class::BlockOther),
    ("reservation conflict", Class::BlockOther),
    ("critical nexus", Class::BlockOther),
    ("protection", Class::BlockOther),
    ("kernel resource", Class::BlockOther),
    ("device resource", Class::BlockOther),
    ("nonblocking retry", Class::BlockOther),
    ("device offline", Class::BlockOther),
    ("dm internal retry", Class::BlockOther),
    ("open zones exceeded", Class::BlockOther),
    ("active zones exceeded", Class::BlockOther),
    ("duration limit exceeded", Class::BlockOther),
    ("invalid", Class::BlockOther),
];

/// The token up to the first of `ends` (or the end).
fn token<'a>(s: &'a str, ends: &[char]) -> &'a str {
    s.find(ends).map_or(s, |i| &s[..i])
}

fn is_device_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:!".contains(&b))
}

/// Classifies one line. None when it is not a storage error.
pub fn classify(line: &str) -> Option<(Class, Subject<'_>)> {
    // Only the first line of a multi-line printk carries the prefix and the verb.
    let line = token(line, &['\n']);
    let first = *line.as_bytes().first()?;
    match first {
        b'n' if line.starts_with("nvme") => return nvme(line),
        b'a' if line.starts_with("ata") => return ata(line),
        b's' if line.starts_with("sd ") || line.starts_with("scsi ") => {
            if let Some(c) = scsi(line) {
                return Some(c);
            }
        }
        b'E' if line.starts_with("EXT4-fs ") => return ext4(line),
        b'X' if line.starts_with("XFS (") => return xfs(line),
        b'B' if line.starts_with("Buffer I/O error on dev ") => {
            let rest = &line["Buffer I/O error on dev ".len()..];
            let dev = token(rest, &[',']);
            return (is_device_name(dev) && rest[dev.len()..].starts_with(", logical block "))
                .then_some((Class::BufferIo, Subject::Block(dev)));
        }
        b'C' if line.starts_with("CPU") => return cpu(line),
        _ => {}
    }
    if let Some(at) = line.find(" Bus Error: severity=") {
        return aer(line, at);
    }
    block(line)
}

/// `[prefix: ]<status> error, dev <disk>, sector <n> ...`
fn block(line: &str) -> Option<(Class, Subject<'_>)> {
    let at = line.find(" error, dev ")?;
    let head = &line[..at];
    // Older kernels prefix `blk_update_request: ` or `print_req_error: `.
    let status = head.rsplit_once(": ").map_or(head, |(_, s)| s);
    let class = BLOCK_STATUS.iter().find(|(s, _)| *s == status)?.1;
    let rest = &line[at + " error, dev ".len()..];
    let dev = token(rest, &[',']);
    (is_device_name(dev) && rest[dev.len()..].starts_with(", sector "))
        .then_some((class, Subject::Block(dev)))
}

fn nvme(line: &str) -> Option<(Class, Subject<'_>)> {
    // `nvme nvme0: ...` (controller), `nvme 0000:01:00.0: ...` (PCI function),
    // `nvme0n1: Read(0x2) @ LBA ...` / `nvme0: Admin Cmd(...)` (pr_err on a namespace or controller).
    if let Some(rest) = line.strip_prefix("nvme ") {
        let (who, text) = rest.split_once(": ")?;
        let subject = if who.starts_with("nvme") {
            Subject::NvmeController(who)
        } else if who.len() >= 7 && who.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            Subject::Pci(who)
        } else {
            return None;
        };
        if text.contains(" Bus Error: severity=") {
            return aer(line, line.find(" Bus Error: severity=")?);
        }
        return nvme_controller_event(text).map(|c| (c, subject));
    }
    let (who, text) = line.split_once(": ")?;
    if !is_device_name(who) {
        return None;
    }
    // `... (sct 0x2 / sc 0x81) DNR`: status code type 2 is a media or data integrity error.
    let sct_at = text.find("(sct 0x")?;
    let sct = token(&text[sct_at + "(sct 0x".len()..], &[' ', '/', ')']);
    let sct = u8::from_str_radix(sct, 16).ok()?;
    let class = if sct == 2 { Class::NvmeMedia } else { Class::NvmeCommand };
    let subject = if who.contains('n') && who.len() > 5 && who[4..].contains('n') {
        Subject::Block(who)
    } else {
        Subject::NvmeController(who)
    };
    Some((class, subject))
}

fn nvme_controller_event(text: &str) -> Option<Class> {
    if text.starts_with("I/O ") && text.contains(" timeout, ") {
        Some(Class::NvmeTimeout)
    } else if text.starts_with("Abort status: ") {
        Some(Class::NvmeAbort)
    } else if text.starts_with("controller is down; will reset")
        || text.starts_with("resetting controller due to")
        || text.starts_with("Device not ready; aborting")
        || text.starts_with("frozen state error detected, reset controller")
    {
        Some(Class::NvmeReset)
    } else if text.starts_with("Disabling device after reset failure")
        || text.starts_with("Removing after probe failure")
        || text.starts_with("failure state error detected, request disconnect")
    {
        Some(Class::NvmeDisabled)
    } else {
        None
    }
}

fn ata(line: &str) -> Option<(Class, Subject<'_>)> {
    // `ata1: ...` (link) or `ata1.00: ...` (device).
    let (who, text) = line.split_once(": ")?;
    let port = token(&who[3..], &['.']);
    let port: u32 = port.parse().ok()?;
    let subject = Subject::AtaPort(port);
    let class = if text.starts_with("exception Emask ") {
        Class::AtaException
    } else if let Some(flags) = text.strip_prefix("error: { ") {
        if flags.contains("UNC ") {
            Class::AtaMedia
        } else if flags.contains("ICRC ") {
            Class::AtaCrc
        } else {
            return None;
        }
    } else if let Some(flags) = text.strip_prefix("SError: { ") {
        if !flags.contains("BadCRC") {
            return None;
        }
        Class::AtaCrc
    } else if text.starts_with("hard resetting link")
        || text.starts_with("soft resetting link")
        || text.starts_with("COMRESET failed")
    {
        Class::AtaLinkReset
    } else if text.starts_with("SATA link down") {
        Class::AtaLinkDown
    } else if text.starts_with("limiting SATA link speed to ") {
        Class::AtaLinkSpeed
    } else if text.starts_with("NCQ disabled due to excessive errors") {
        Class::AtaNcqDisabled
    } else {
        return None;
    };
    Some((class, subject))
}

/// `sd 0:0:0:0: [sda] tag#3 Sense Key : Medium Error [current]`
fn scsi(line: &str) -> Option<(Class, Subject<'_>)> {
    let rest = line.split_once(' ')?.1;
    let (hctl, text) = rest.split_once(": ")?;
    let key = &text[text.find("Sense Key : ")? + "Sense Key : ".len()..];
    let class = if key.starts_with("Medium Error") {
        Class::ScsiMedium
    } else if key.starts_with("Hardware Error") {
        Class::ScsiHardware
    } else {
        return None;
    };
    let disk = text.strip_prefix('[').map(|t| token(t, &[']'])).filter(|d| is_device_name(d));
    Some((class, disk.map_or(Subject::Scsi(hctl), Subject::Block)))
}

/// `EXT4-fs error (device sda1): ...` and `EXT4-fs (sda1): Remounting filesystem read-only`.
fn ext4(line: &str) -> Option<(Class, Subject<'_>)> {
    if let Some(rest) = line.strip_prefix("EXT4-fs error (device ") {
        let dev = token(rest, &[')']);
        return is_device_name(dev).then_some((Class::Ext4Error, Subject::Block(dev)));
    }
    let rest = line.strip_prefix("EXT4-fs (")?;
    let dev = token(rest, &[')']);
    (is_device_name(dev) && rest[dev.len()..].starts_with("): Remounting filesystem read-only"))
        .then_some((Class::FsReadonly, Subject::Block(dev)))
}

/// `XFS (sda1): ...`
fn xfs(line: &str) -> Option<(Class, Subject<'_>)> {
    let rest = &line["XFS (".len()..];
    let dev = token(rest, &[')']);
    let text = rest[dev.len()..].strip_prefix("): ")?;
    if !is_device_name(dev) {
        return None;
    }
    let class = if text.contains("Shutting down filesystem") {
        Class::XfsShutdown
    } else if text.starts_with("metadata I/O error")
        || (text.starts_with("log recovery ") && text.contains(" I/O error"))
    {
        Class::XfsIo
    } else if text.starts_with("Metadata corruption detected")
        || text.starts_with("Metadata CRC error detected")
        || text.starts_with("Corruption detected.")
    {
        Class::XfsCorruption
    } else {
        return None;
    };
    Some((class, Subject::Block(dev)))
}

/// `<driver> <bdf>: [AER: ]PCIe Bus Error: severity=Correctable, type=...`
fn aer(line: &str, at: usize) -> Option<(Class, Subject<'_>)> {
    let severity = &line[at + " Bus Error: severity=".len()..];
    let class = if severity.starts_with("Correct") {
        Class::PcieAerCorrectable
    } else if severity.starts_with("Uncorrect") {
        Class::PcieAerUncorrectable
    } else {
        return None;
    };
    let bdf = line.split_once(' ').map(|(_, rest)| token(rest, &[' '])).and_then(|b| b.strip_suffix(':'));
    let subject = match bdf {
        Some(b) if b.len() >= 7 && b.bytes().all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.') => {
            Subject::Pci(b)
        }
        _ => Subject::None,
    };
    Some((class, subject))
}

/// `CPU3: Package temperature is above threshold, cpu clock is throttled (total events = 12)`
fn cpu(line: &str) -> Option<(Class, Subject<'_>)> {
    let (who, text) = line.split_once(": ")?;
    who[3..].parse::<u32>().ok()?;
    let text = text.strip_prefix("Core ").or_else(|| text.strip_prefix("Package "))?;
    (text.starts_with("temperature is above threshold") || text.starts_with("temperature above threshold"))
        .then_some((Class::CpuThrottle, Subject::None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Subject::*;
    use proptest::prelude::*;

    /// (class, subject, line) from tests/data/kmsg-corpus.tsv.
    fn corpus() -> Vec<(Class, String, &'static str)> {
        include_str!("../../../tests/data/kmsg-corpus.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let mut f = l.splitn(3, '\t');
                let class = Class::from_name(f.next().unwrap()).unwrap();
                (class, f.next().unwrap().to_owned(), f.next().unwrap())
            })
            .collect()
    }

    fn subject_text(s: Subject) -> String {
        match s {
            Block(d) => format!("block:{d}"),
            AtaPort(p) => format!("ata:{p}"),
            Scsi(a) => format!("scsi:{a}"),
            NvmeController(c) => format!("nvme:{c}"),
            Pci(b) => format!("pci:{b}"),
            None => "none".to_owned(),
        }
    }

    #[test]
    fn every_corpus_line() {
        let corpus = corpus();
        for (class, subject, line) in &corpus {
            let got = classify(line).map(|(c, s)| (c, subject_text(s)));
            assert_eq!(got, Some((*class, subject.clone())), "{line}");
        }
        let classes: std::collections::BTreeSet<_> = corpus.iter().map(|c| c.0).collect();
        assert_eq!(classes.len(), Class::ALL.len(), "every class has a corpus line");
    }

    #[test]
    fn near_misses() {
        let lines = include_str!("../../../tests/data/kmsg-near-misses.txt");
        for line in lines.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(classify(line), Option::None, "{line}");
        }
        assert_eq!(classify(""), Option::None);
    }

    #[test]
    fn multi_line_records_use_the_first_line() {
        let line = "ata1.00: cmd 60/08:88:80:1f:2a/00:00:00:00:00/40 tag 17 ncq dma 4096 in\n         res 41/40:00 Emask 0x409 (media error) <F>";
        assert_eq!(classify(line), Option::None);
    }

    #[test]
    fn names_round_trip() {
        for c in Class::ALL {
            assert_eq!(Class::from_name(c.as_str()), Some(c));
        }
        assert_eq!(Class::from_name("nope"), Option::None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = classify(&s);
        }

        #[test]
        fn never_panics_near_corpus(i in 0..48usize, cut in 0..200usize, junk in "\\PC{0,8}") {
            let corpus = corpus();
            let line = corpus[i % corpus.len()].2;
            let mut cut = cut.min(line.len());
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            let _ = classify(&format!("{}{junk}", &line[..cut]));
            let _ = classify(&format!("{junk}{}", &line[cut..]));
        }
    }
}
