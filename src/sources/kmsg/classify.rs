//! Storage errors in kernel log lines: a fixed set of classes, and what each line names (a disk, a
//! partition, an ATA port, a SCSI address or host, an NVMe controller, a PCI function, an md array,
//! an NFS server, an iSCSI session).
//!
//! The strings are the kernel's own (docs/kernel-storage.md §5), older variants included, checked
//! against real logs (tests/data/kmsg-real.tsv). Matching is by prefixes and fixed substrings, no
//! regex, so a line that is not a storage error costs a few byte comparisons. Each line is at most
//! one class: a single bad sector on SATA shows as an ATA exception, an ATA media error, a SCSI
//! medium error and a block-layer medium error, one line each.
//!
//! A failure is counted once, on the line that reports it. Lines that only say more about it
//! (`Add. Sense: ...` after a sense key, the `cmd`/`res` register dump and `status:` after an ATA
//! exception, the bits of a PCIe AER report, a driver's advice) count nothing, and neither do lines
//! that are a failure in one log and routine in another (`Sense Key : Illegal Request` after a
//! failed read and as a probe's question at boot, a USB bridge's reset, a link slow at cold boot).

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
    DeviceLost,
    NvmeTimeout,
    NvmeAbort,
    NvmeReset,
    NvmeDisabled,
    NvmeMedia,
    NvmeCommand,
    NvmeFabric,
    AtaException,
    AtaCommand,
    AtaMedia,
    AtaCrc,
    AtaBus,
    AtaLinkReset,
    AtaLinkDown,
    AtaLinkSpeed,
    AtaNcqDisabled,
    AtaDeviceFailed,
    ScsiCommand,
    ScsiHost,
    ScsiMedium,
    ScsiHardware,
    ScsiSense,
    ScsiAbort,
    ScsiOffline,
    Ext4Error,
    Ext4Io,
    Jbd2Abort,
    XfsIo,
    XfsCorruption,
    XfsShutdown,
    BtrfsDeviceErrors,
    BtrfsCsum,
    BtrfsCorruption,
    BtrfsIo,
    FsReadonly,
    MdDiskFailed,
    MdDegraded,
    MdIo,
    DmPathFailed,
    DmError,
    NfsTimeout,
    NfsError,
    IscsiConnection,
    IscsiSessionLost,
    PcieAerCorrectable,
    PcieAerUncorrectable,
    CpuThrottle,
}

/// One row per class: the class, its label value, and what it means (the README's class table).
const NAMES: &[(Class, &str, &str)] = &[
    (Class::BlockIo, "block_io", "block layer: an I/O error the driver gave no finer status for"),
    (Class::BlockTimeout, "block_timeout", "block layer: a request timed out"),
    (Class::BlockMedium, "block_medium", "block layer: a medium error (unreadable sector)"),
    (Class::BlockTarget, "block_target", "block layer: the target failed the request"),
    (Class::BlockTransport, "block_transport", "block layer: a transport (link, path) error"),
    (
        Class::BlockOther,
        "block_other",
        "block layer: any other failed status (offline, protection, resources...)",
    ),
    (Class::BufferIo, "buffer_io", "a filesystem's buffered read or write failed (`Buffer I/O error`)"),
    (
        Class::DeviceLost,
        "device_lost",
        "a disk went away: capacity dropped to 0, stuck in D3cold, probe failed",
    ),
    (Class::NvmeTimeout, "nvme_timeout", "NVMe: a command timed out (PCIe or fabrics queue, keep-alive)"),
    (Class::NvmeAbort, "nvme_abort", "NVMe: the driver aborted a command"),
    (Class::NvmeReset, "nvme_reset", "NVMe: the controller is reset (down, fatal status, AER recovery)"),
    (Class::NvmeDisabled, "nvme_disabled", "NVMe: the controller is given up (reset or probe failed)"),
    (Class::NvmeMedia, "nvme_media", "NVMe: a command failed with a media or data-integrity status"),
    (Class::NvmeCommand, "nvme_command", "NVMe: a command failed with another status"),
    (Class::NvmeFabric, "nvme_fabric", "NVMe over fabrics: connection lost, reconnecting, no usable path"),
    (
        Class::AtaException,
        "ata_exception",
        "libata: an error-handling event (exception, failed command, status)",
    ),
    (Class::AtaCommand, "ata_command", "libata: the device aborted a command (`error: { ABRT }`)"),
    (Class::AtaMedia, "ata_media", "libata: a media error (`UNC`, `IDNF`, `AMNF`)"),
    (Class::AtaCrc, "ata_crc", "libata: an interface CRC error (`ICRC`, `BadCRC`): cable or backplane"),
    (
        Class::AtaBus,
        "ata_bus",
        "libata: a link or host bus error (SError decode, interface fatal, connection change)",
    ),
    (
        Class::AtaLinkReset,
        "ata_link_reset",
        "libata: the link is reset or fails to come back (COMRESET, SRST)",
    ),
    (Class::AtaLinkDown, "ata_link_down", "libata: the link of a port with a disk went down"),
    (Class::AtaLinkSpeed, "ata_link_speed", "libata: the link or transfer mode is slowed down after errors"),
    (Class::AtaNcqDisabled, "ata_ncq_disabled", "libata: NCQ turned off after errors"),
    (
        Class::AtaDeviceFailed,
        "ata_device_failed",
        "libata: the device fails IDENTIFY or revalidation, or is disabled",
    ),
    (
        Class::ScsiCommand,
        "scsi_command",
        "SCSI: a command failed with sense data (`FAILED Result`, `Unhandled sense code`)",
    ),
    (
        Class::ScsiHost,
        "scsi_host",
        "SCSI: a command failed in the host or transport (host byte other than DID_OK)",
    ),
    (Class::ScsiMedium, "scsi_medium", "SCSI: sense key Medium Error"),
    (Class::ScsiHardware, "scsi_hardware", "SCSI: sense key Hardware Error"),
    (
        Class::ScsiSense,
        "scsi_sense",
        "SCSI: another failing sense key (Aborted Command, Data Protect; Illegal Request or Not Ready after a failed command)",
    ),
    (
        Class::ScsiAbort,
        "scsi_abort",
        "SCSI: a command timed out and was aborted, or the device reset (incl. UAS)",
    ),
    (Class::ScsiOffline, "scsi_offline", "SCSI: the device is offline and rejects I/O"),
    (Class::Ext4Error, "ext4_error", "ext4: the filesystem found an error"),
    (Class::Ext4Io, "ext4_io", "ext4: a write or superblock I/O failed"),
    (Class::Jbd2Abort, "jbd2_abort", "jbd2: the journal is aborted or cannot be read or written"),
    (Class::XfsIo, "xfs_io", "XFS: a metadata or log I/O error"),
    (Class::XfsCorruption, "xfs_corruption", "XFS: corrupted metadata"),
    (Class::XfsShutdown, "xfs_shutdown", "XFS: the filesystem shut down"),
    (
        Class::BtrfsDeviceErrors,
        "btrfs_device_errors",
        "Btrfs: a device's error counters rose (`errs: wr N, rd N, ...`)",
    ),
    (Class::BtrfsCsum, "btrfs_csum", "Btrfs: data or metadata failed its checksum"),
    (
        Class::BtrfsCorruption,
        "btrfs_corruption",
        "Btrfs: corrupted metadata (transid, bad tree block, corrupt leaf)",
    ),
    (Class::BtrfsIo, "btrfs_io", "Btrfs: an I/O failure or aborted transaction"),
    (Class::FsReadonly, "fs_readonly", "a filesystem was forced read-only after errors"),
    (Class::MdDiskFailed, "md_disk_failed", "md: a member disk failed and was taken out of the array"),
    (Class::MdDegraded, "md_degraded", "md: the array runs degraded"),
    (Class::MdIo, "md_io", "md: an I/O error on the array or a member (read errors, superblock writes)"),
    (Class::DmPathFailed, "dm_path_failed", "dm-multipath: a path failed"),
    (Class::DmError, "dm_error", "device mapper: a target failed (thin pool full, no paths, crypt errors)"),
    (Class::NfsTimeout, "nfs_timeout", "NFS: a server is not responding"),
    (Class::NfsError, "nfs_error", "NFS: another client error against a server"),
    (Class::IscsiConnection, "iscsi_connection", "iSCSI: a connection error or ping timeout"),
    (
        Class::IscsiSessionLost,
        "iscsi_session_lost",
        "iSCSI: the session's recovery timed out: its disks fail I/O",
    ),
    (Class::PcieAerCorrectable, "pcie_aer_correctable", "PCIe AER: a corrected error on a storage function"),
    (Class::PcieAerUncorrectable, "pcie_aer_uncorrectable", "PCIe AER: an uncorrectable error"),
    (Class::CpuThrottle, "cpu_throttle", "CPU thermal throttling (no device)"),
];

impl Class {
    pub const ALL: [Class; 55] = {
        let mut all = [Class::BlockIo; 55];
        let mut i = 0;
        while i < NAMES.len() {
            all[i] = NAMES[i].0;
            i += 1;
        }
        all
    };

    pub fn as_str(self) -> &'static str {
        NAMES[self as usize].1
    }

    /// What the class means, for the README's class table.
    pub fn help(self) -> &'static str {
        NAMES[self as usize].2
    }

    pub fn from_name(name: &str) -> Option<Class> {
        NAMES.iter().find(|c| c.1 == name).map(|c| c.0)
    }
}

/// What a line names, before it is resolved to a whole block device through sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject<'a> {
    /// A disk, a partition, an NVMe path device or a dm/md device (`sda`, `nvme0n1p2`,
    /// `nvme2c3n1`, `dm-0`, `/dev/mapper/x`).
    Block(&'a str),
    /// A block device by number (`8:16`).
    DevNum(u32, u32),
    /// An ATA port (`ata1` or `ata1.00`: port 1).
    AtaPort(u32),
    /// A SCSI address `H:C:T:L`.
    Scsi(&'a str),
    /// A SCSI address from its numbers (`<7 0 1 0>`, `C7:B0:T0:L0`).
    ScsiNumbers([u32; 4]),
    /// A SCSI host (`scsi host6`).
    ScsiHost(u32),
    /// An NVMe controller (`nvme0`).
    NvmeController(&'a str),
    /// A PCI function (`0000:01:00.0`).
    Pci(&'a str),
    /// An md array (`md0`); empty when the line does not name it (`raid1: ...` of old kernels).
    Md(&'a str),
    /// An NFS server as the client names it.
    Nfs(&'a str),
    /// An iSCSI session by number (`session1`, `connection1:0`).
    Iscsi(u32),
    /// Nothing to attribute (CPU throttling).
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

type Hit<'a> = Option<(Class, Subject<'a>)>;

fn counts(class: Class, subject: Subject<'_>) -> Hit<'_> {
    Some((class, subject))
}

/// The class of the first entry of `table` that `text` starts with.
fn by_prefix(table: &[(&str, Class)], text: &str) -> Option<Class> {
    table.iter().find(|(start, _)| text.starts_with(start)).map(|(_, class)| *class)
}

/// The token up to the first of `ends` (or the end).
fn token<'a>(s: &'a str, ends: &[char]) -> &'a str {
    s.find(ends).map_or(s, |i| &s[..i])
}

/// A name the kernel gives a device: it also becomes one component of a sysfs path, so `.` and
/// `..` are not names.
fn is_device_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:!".contains(&b))
}

fn is_bdf(s: &str) -> bool {
    s.len() >= 7 && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

/// `sdb`, `sdb1`, `/dev/sdb`, `/dev/mapper/x` as a block subject.
fn block_subject(name: &str) -> Option<Subject<'_>> {
    if let Some(mapper) = name.strip_prefix("/dev/mapper/")
        && !mapper.is_empty()
        && !mapper.contains('/')
    {
        return Some(Subject::Block(&name[5..]));
    }
    let name = name.strip_prefix("/dev/").unwrap_or(name);
    is_device_name(name).then_some(Subject::Block(name))
}

/// Classifies one line. None when it is not a storage error.
pub fn classify(line: &str) -> Hit<'_> {
    // Only the first line of a multi-line printk carries the prefix and the verb. A device without a
    // driver prints with an empty driver name: ` connection1:0: ...`.
    let full = line.trim_start();
    let line = token(full, &['\n']);
    if line == "attempt to access beyond end of device" {
        return beyond_end(full);
    }
    let first = *line.as_bytes().first()?;
    let found = match first {
        b'n' if line.starts_with("nvme") => nvme(line),
        b'n' if line.starts_with("nfs: ") => nfs(line),
        b'a' if line.starts_with("ata") => ata(line),
        b's' if line.starts_with("sd ") || line.starts_with("scsi ") => scsi(line),
        b's' if line.starts_with("session") => iscsi(line),
        b'c' if line.starts_with("connection") => iscsi(line),
        b'E' if line.starts_with("EXT4-fs") => ext4(line),
        b'J' if line.starts_with("JBD2: ") => jbd2(line),
        b'A' if line.starts_with("Aborting journal on device ") => jbd2(line),
        b'X' if line.starts_with("XFS (") => xfs(line),
        b'B' if line.starts_with("BTRFS") => btrfs(line),
        b'B' if line.starts_with("Buffer I/O error on dev") => {
            let rest = line["Buffer I/O error on dev".len()..].trim_start_matches("ice").trim_start();
            let dev = token(rest, &[',']);
            if is_device_name(dev) && rest[dev.len()..].starts_with(", logical block ") {
                counts(Class::BufferIo, Subject::Block(dev))
            } else {
                None
            }
        }
        b'l' if line.starts_with("lost page write due to I/O error on ") => {
            let dev = token(&line["lost page write due to I/O error on ".len()..], &[' ']);
            is_device_name(dev).then_some((Class::BufferIo, Subject::Block(dev)))
        }
        b'm' if line.starts_with("md") => md(line),
        b'r' if line.starts_with("raid1: ")
            || line.starts_with("raid10: ")
            || line.starts_with("raid5: ") =>
        {
            md(line)
        }
        b'b' if line.starts_with("btrfs: ") => btrfs(line),
        b'F' if line.starts_with("Filesystem \"") => xfs_old(line),
        b'I' if line.starts_with("I/O error in filesystem (\"") => xfs_old(line),
        b'x' if line.starts_with("xfs_force_shutdown(") => xfs_old(line),
        b'S' if line.starts_with("SCSI error") => scsi_return_code(line),
        b'D' if line.starts_with("Device ") && line.ends_with(" not ready.") => {
            let dev = line["Device ".len()..line.len() - " not ready.".len()].trim();
            is_device_name(dev).then_some((Class::ScsiSense, Subject::Block(dev)))
        }
        b'i' if line.starts_with("iscsid: Kernel reported iSCSI connection ") => iscsi(line),
        b'h' if line.starts_with("hpsa ") => hpsa(line),
        b'q' if line.starts_with("qla2xxx [") => {
            let bdf = token(&line["qla2xxx [".len()..], &[']']);
            (is_bdf(bdf) && (line.contains("LOOP DOWN detected") || line.contains("Link down")))
                .then_some((Class::ScsiHost, Subject::Pci(bdf)))
        }
        b'd' if line.starts_with("device-mapper: ") => dm(line),
        b'N' if line.starts_with("NFS") => nfs(line),
        b'b' if line.starts_with("block ") => {
            let (dev, text) = line["block ".len()..].split_once(": ")?;
            (text.starts_with("no usable path") && is_device_name(dev))
                .then_some((Class::NvmeFabric, Subject::Block(dev)))
        }
        b'C' if line.starts_with("CPU") => return cpu(line),
        _ => None,
    };
    if found.is_some() {
        return found;
    }
    if let Some((dev, text)) = line.split_once(": ")
        && is_device_name(dev)
    {
        if text.starts_with("rw=") && (text.contains(", want=") || text.contains(", sector=")) {
            return counts(Class::BlockOther, Subject::Block(dev));
        }
        if text.starts_with("unable to read partition table") {
            return counts(Class::BlockIo, Subject::Block(dev));
        }
    }
    if let Some(at) = line.find(" Bus Error: severity=") {
        return aer(line, at);
    }
    if let Some(at) = line.find(" error received: ").or_else(|| line.find(" error message received from ")) {
        return aer_summary(line, at);
    }
    if line.contains(": detected capacity change from ") {
        return capacity(line);
    }
    if let Some(at) = line.find(" DPC: containment event") {
        return counts(Class::PcieAerUncorrectable, pci_of(&line[..at + 1]));
    }
    if let Some(at) = line.find(": AHCI controller unavailable").or_else(|| line.find(": AER: can't recover"))
    {
        let class =
            if line[at..].starts_with(": AHCI") { Class::DeviceLost } else { Class::PcieAerUncorrectable };
        return counts(class, pci_of(line));
    }
    // A line whose start was lost to another (`trusted_key: device-mapper: crypt: ...`).
    if let Some(at) = line.find("device-mapper: ").filter(|at| *at > 0) {
        return dm(&line[at..]);
    }
    block(line)
}

/// `attempt to access beyond end of device` and, on newer kernels in the same record, the device:
/// `sda1: rw=2048, sector=..., nr_sectors = 8 limit=...`. Without it the next record names it.
fn beyond_end(record: &str) -> Hit<'_> {
    let second = record.split('\n').nth(1).map(str::trim_start);
    match second.and_then(|l| l.split_once(": ")) {
        Some((dev, text)) if is_device_name(dev) && text.starts_with("rw=") => {
            counts(Class::BlockOther, Subject::Block(dev))
        }
        _ => None,
    }
}

/// `[prefix: ]<status> error, dev <disk>, sector <n> ...`
fn block(line: &str) -> Hit<'_> {
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

/// `sda: detected capacity change from 4000787030016 to 0` (also after `sd H:C:T:L: [sda] `).
fn capacity(line: &str) -> Hit<'_> {
    let (head, to) = line.rsplit_once(" to ")?;
    if to.trim_end() != "0" {
        return None;
    }
    let head = head.split_once(": detected capacity change from ")?.0;
    let dev = match head.rsplit_once('[') {
        Some((_, d)) => d.strip_suffix(']')?,
        None => head.strip_prefix("block ").unwrap_or(head),
    };
    is_device_name(dev).then_some((Class::DeviceLost, Subject::Block(dev)))
}

fn nvme(line: &str) -> Hit<'_> {
    // `nvme nvme0: ...` (controller), `nvme 0000:01:00.0: ...` (PCI function),
    // `nvme0n1: Read(0x2) @ LBA ...` / `nvme0: Admin Cmd(...)` (pr_err on a namespace or controller),
    // `nvme: probe of 0000:01:00.0 failed with error -5`.
    if let Some(rest) = line.strip_prefix("nvme: probe of ") {
        let bdf = token(rest, &[' ']);
        return (is_bdf(bdf) && rest[bdf.len()..].starts_with(" failed"))
            .then_some((Class::DeviceLost, Subject::Pci(bdf)));
    }
    if let Some(rest) = line.strip_prefix("nvme ") {
        let (who, text) = rest.split_once(": ")?;
        let subject = if who.starts_with("nvme") && is_device_name(who) {
            Subject::NvmeController(who)
        } else if is_bdf(who) {
            Subject::Pci(who)
        } else {
            return None;
        };
        if let Some(at) = line.find(" Bus Error: severity=") {
            return aer(line, at);
        }
        return nvme_controller_event(text).map(|v| (v, subject));
    }
    let (who, text) = line.split_once(": ")?;
    if !is_device_name(who) {
        return None;
    }
    let subject = if who[4..].contains('n') { Subject::Block(who) } else { Subject::NvmeController(who) };
    // `... (sct 0x2 / sc 0x81) DNR`: status code type 2 is a media or data integrity error.
    // (`nvme0n1: detected capacity change ...` falls through to `capacity`, as any disk's.)
    let sct_at = text.find("(sct 0x")?;
    let sct = token(&text[sct_at + "(sct 0x".len()..], &[' ', '/', ')']);
    let sct = u8::from_str_radix(sct, 16).ok()?;
    let class = if sct == 2 { Class::NvmeMedia } else { Class::NvmeCommand };
    counts(class, subject)
}

/// Starts of controller (or PCI function) lines, and their class.
const NVME_EVENTS: &[(&str, Class)] = &[
    ("Abort status: ", Class::NvmeAbort),
    ("Failed status: ", Class::NvmeReset),
    ("failed to mark controller", Class::NvmeReset),
    ("Could not set queue count", Class::NvmeDisabled),
    ("IO queues not created", Class::NvmeDisabled),
    ("Refused to change power state", Class::DeviceLost),
    ("probe with driver nvme failed", Class::DeviceLost),
    ("Device failed to resume", Class::NvmeDisabled),
    ("ANATT timeout", Class::NvmeFabric),
    ("Connect rejected", Class::NvmeFabric),
    ("rdma_resolve_addr wait failed", Class::NvmeFabric),
    ("rdma connection establishment failed", Class::NvmeFabric),
    ("controller is down; will reset", Class::NvmeReset),
    ("resetting controller", Class::NvmeReset),
    ("Device not ready; aborting reset", Class::NvmeReset),
    ("frozen state error detected", Class::NvmeReset),
    ("controller fatal status", Class::NvmeReset),
    ("Disabling device after reset failure", Class::NvmeDisabled),
    ("Removing after probe failure", Class::NvmeDisabled),
    ("failure state error detected", Class::NvmeDisabled),
    ("Device not ready; aborting initialisation", Class::NvmeDisabled),
    ("Device not ready; aborting shutdown", Class::NvmeDisabled),
    ("Device shutdown incomplete", Class::NvmeDisabled),
    ("Identify namespace failed", Class::NvmeDisabled),
    ("Identify Controller failed", Class::NvmeDisabled),
    ("Unable to change power state from D3", Class::DeviceLost),
    ("can't change power state from D3", Class::DeviceLost),
    ("starting error recovery", Class::NvmeFabric),
    ("Reconnecting in ", Class::NvmeFabric),
    ("Failed reconnect attempt", Class::NvmeFabric),
    ("failed to connect socket", Class::NvmeFabric),
    ("failed to connect queue", Class::NvmeFabric),
    ("Connect command failed", Class::NvmeFabric),
    ("failed to send request", Class::NvmeFabric),
    ("receive failed", Class::NvmeFabric),
    ("Keep Alive timed out", Class::NvmeFabric),
    ("keep alive command failed", Class::NvmeFabric),
    ("transport association event", Class::NvmeFabric),
];

fn nvme_controller_event(text: &str) -> Option<Class> {
    if text.starts_with("I/O ") && text.contains(" timeout, ") {
        return Some(Class::NvmeTimeout);
    }
    // nvme-tcp/rdma: `queue 0: timeout cid 0x3 type 4 opcode 0x18 (Keep Alive)`.
    if text.starts_with("queue ") && text.contains(": timeout ") {
        return Some(Class::NvmeTimeout);
    }
    if text.starts_with("ANA group ") && text.ends_with(": inaccessible.") {
        return Some(Class::NvmeFabric);
    }
    by_prefix(NVME_EVENTS, text)
}

/// Starts of `ataN[.DD]: ` lines, and their class.
const ATA_EVENTS: &[(&str, Class)] = &[
    ("exception Emask ", Class::AtaException),
    ("failed command: ", Class::AtaException),
    ("hard resetting link", Class::AtaLinkReset),
    ("soft resetting link", Class::AtaLinkReset),
    ("COMRESET failed", Class::AtaLinkReset),
    ("SRST failed", Class::AtaLinkReset),
    ("softreset failed", Class::AtaLinkReset),
    ("hardreset failed", Class::AtaLinkReset),
    ("prereset failed", Class::AtaLinkReset),
    ("forcing hardreset", Class::AtaLinkReset),
    ("device not ready", Class::AtaLinkReset),
    ("failed to set xfermode", Class::AtaDeviceFailed),
    ("failed to recover some devices", Class::AtaDeviceFailed),
    ("detaching", Class::DeviceLost),
    ("Disk is not present", Class::DeviceLost),
    ("link not ready", Class::AtaLinkReset),
    ("failed to resume link", Class::AtaLinkReset),
    ("reset failed", Class::AtaDeviceFailed),
    ("SATA link down", Class::AtaLinkDown),
    ("limiting SATA link speed to ", Class::AtaLinkSpeed),
    ("limiting speed to ", Class::AtaLinkSpeed),
    ("down xfermask", Class::AtaLinkSpeed),
    ("NCQ disabled due to excessive errors", Class::AtaNcqDisabled),
    ("failed to IDENTIFY", Class::AtaDeviceFailed),
    ("revalidation failed", Class::AtaDeviceFailed),
    ("disabled", Class::AtaDeviceFailed),
    ("disable device", Class::AtaDeviceFailed),
    ("qc timeout", Class::AtaDeviceFailed),
    ("both IDENTIFYs aborted", Class::AtaDeviceFailed),
];

fn ata(line: &str) -> Hit<'_> {
    // `ata1: ...` (link) or `ata1.00: ...` (device).
    let (who, text) = line.split_once(": ")?;
    let port = token(who.get(3..)?, &['.']);
    let port: u32 = port.parse().ok()?;
    let class = if let Some(flags) = text.strip_prefix("error: { ") {
        if flags.contains("UNC ") || flags.contains("IDNF ") || flags.contains("AMNF ") {
            Class::AtaMedia
        } else if flags.contains("ICRC ") {
            Class::AtaCrc
        } else if flags.contains("ABRT ") {
            Class::AtaCommand
        } else {
            return None;
        }
    } else if let Some(flags) = text.strip_prefix("SError: { ") {
        // PHYRdyChg / CommWake / DevExch alone: a link that came and went, as at hotplug.
        if flags.contains("BadCRC") {
            Class::AtaCrc
        } else if SERROR_FAILURES.iter().any(|f| flags.contains(f)) {
            Class::AtaBus
        } else {
            return None;
        }
    } else if let Some(irq) = text.strip_prefix("irq_stat ") {
        if !["interface fatal error", "connection status changed", "host bus error"]
            .iter()
            .any(|f| irq.contains(f))
        {
            return None;
        }
        Class::AtaBus
    } else {
        by_prefix(ATA_EVENTS, text)?
    };
    counts(class, Subject::AtaPort(port))
}

/// SError bits that mean a failed transfer (`BadCRC` aside: [`Class::AtaCrc`]).
const SERROR_FAILURES: &[&str] = &[
    "UnrecovData",
    "HostInt",
    "Persist",
    "Proto",
    "10B8B",
    "Dispar",
    "Handshk",
    "LinkSeq",
    "TrStaTrns",
    "UnrecFIS",
];

/// Host bytes that mean a command did not reach the device or did not come back.
fn host_byte_failed(text: &str) -> bool {
    let Some(at) = text.find("hostbyte=") else { return false };
    let host = token(&text[at + "hostbyte=".len()..], &[' ']);
    !(host == "DID_OK" || host == "0x00")
}

/// `sd 0:0:0:0: [sda] tag#3 Sense Key : Medium Error [current]`, `scsi host6: ...`,
/// `scsi 0:0:0:0: ...`.
fn scsi(line: &str) -> Hit<'_> {
    let rest = line.split_once(' ')?.1;
    let (who, text) = rest.split_once(": ")?;
    if let Some(host) = who.strip_prefix("host") {
        let host: u32 = host.parse().ok()?;
        return scsi_host_event(text).map(|c| (c, Subject::ScsiHost(host)));
    }
    let (subject, text) = scsi_device(who, text)?;
    scsi_event(text).map(|v| (v, subject))
}

/// A line that tells more about the SCSI command that failed just before it on the same disk: the
/// `Add. Sense:` (or `ASC=`) of its sense data, or a sense key that is a failure only after a failed
/// command (`Illegal Request`, `Not Ready`...): at boot the same keys answer a probe's questions.
/// The reader counts it only right after a counted SCSI failure on the same disk.
pub fn scsi_detail(line: &str) -> Option<Subject<'_>> {
    let line = line.trim_start();
    let rest = line.strip_prefix("sd ").or_else(|| line.strip_prefix("scsi "))?;
    let (who, text) = rest.split_once(": ")?;
    let (subject, text) = scsi_device(who, text)?;
    (text.starts_with("Add. Sense: ") || text.starts_with("ASC=") || text.starts_with("Sense Key : "))
        .then_some(subject)
}

/// `H:C:T:L: [sda] tag#3 <text>`: the disk (else the address) and the text after it.
fn scsi_device<'a>(who: &'a str, text: &'a str) -> Option<(Subject<'a>, &'a str)> {
    if !is_device_name(who) {
        return None;
    }
    // `[sda] ` and `tag#3 ` come before the text, each when known.
    let (disk, text) = match text.strip_prefix('[').and_then(|t| t.split_once("] ")) {
        Some((d, t)) if is_device_name(d) => (Some(d), t),
        _ => (None, text),
    };
    let text = match text.strip_prefix("tag#") {
        Some(t) => t.split_once(' ').map_or("", |(_, t)| t),
        None => text,
    };
    Some((disk.map_or(Subject::Scsi(who), Subject::Block), text.trim_start()))
}

fn scsi_event(text: &str) -> Option<Class> {
    let counts = Some;
    // Other keys (Illegal Request, Not Ready, Unit Attention) follow a failed command that counted
    // already, or are a probe's question answered at boot.
    if let Some(key) = text.strip_prefix("Sense Key : ") {
        return match key {
            k if k.starts_with("Medium Error") => counts(Class::ScsiMedium),
            k if k.starts_with("Hardware Error") => counts(Class::ScsiHardware),
            k if ["Aborted Command", "Data Protect", "Miscompare"].iter().any(|f| k.starts_with(f)) => {
                counts(Class::ScsiSense)
            }
            _ => None,
        };
    }
    if text.starts_with("Unhandled sense code") {
        return counts(Class::ScsiCommand);
    }
    if text.starts_with("Unhandled error code") {
        return counts(Class::ScsiHost);
    }
    // `FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_SENSE cmd_age=0s` (5.x+), ` Result:
    // hostbyte=... driverbyte=...` (older, with a double space), `Read Capacity(10) failed:
    // Result: ...` (probe: not counted unless the host byte failed).
    if let Some(at) = text.find("Result: hostbyte=") {
        let before = text[..at].trim_end();
        // READ CAPACITY(16) fails on many disks and sd falls back to (10): only (10) failing is.
        if before.starts_with("Read Capacity(16) failed") {
            return None;
        }
        if host_byte_failed(text) {
            return counts(Class::ScsiHost);
        }
        // Older kernels print ` Result:` alone after `Unhandled sense code`, which counted.
        if before.is_empty() {
            return None;
        }
        // The disposition: FAILED, UNKNOWN(0x2003), TIMEOUT_ERROR, ... or a failed probe command.
        return counts(Class::ScsiCommand);
    }
    if text.starts_with("SCSI error: return code = ") {
        return counts(Class::ScsiHost);
    }
    by_prefix(SCSI_EVENTS, text)
}

/// Starts of `sd H:C:T:L: [sdX] ` / `scsi H:C:T:L: ` lines, and their class.
const SCSI_EVENTS: &[(&str, Class)] = &[
    ("rejecting I/O to offline device", Class::ScsiOffline),
    ("rejecting I/O to dead device", Class::ScsiOffline),
    ("Device offlined", Class::ScsiOffline),
    ("killing request", Class::ScsiOffline),
    ("Medium access timeout failure", Class::ScsiOffline),
    ("timing out command", Class::ScsiAbort),
    ("attempting task abort", Class::ScsiAbort),
    ("task abort: FAILED", Class::ScsiAbort),
    ("abort request is", Class::ScsiAbort),
    ("uas_eh_abort_handler", Class::ScsiAbort),
    ("uas_eh_device_reset_handler", Class::ScsiAbort),
    ("uas_eh_bus_reset_handler", Class::ScsiAbort),
    ("uas_zap_pending", Class::ScsiAbort),
    ("data cmplt err", Class::ScsiHost),
    ("stat urb: status", Class::ScsiHost),
    ("device reset: FAILED", Class::ScsiAbort),
    ("Synchronize Cache(10) failed", Class::ScsiHost),
    ("Sense not available", Class::ScsiCommand),
    // Older kernels' scsi_io_completion on a NOT READY sense (`sd 2:0:0:0: [sdb] Device not ready`).
    ("Device not ready", Class::ScsiSense),
];

fn scsi_host_event(text: &str) -> Option<Class> {
    (text.starts_with("uas_eh_")
        || text.contains("task abort")
        || text.starts_with("Abort command issued")
        || text.starts_with("device reset: FAILED")
        || text.starts_with("target reset: FAILED"))
    .then_some(Class::ScsiAbort)
}

/// `connection1:0: detected conn error (1020)`, `session1: session recovery timed out after 120 secs`.
fn iscsi(line: &str) -> Hit<'_> {
    // iscsid (user space, through syslog or /dev/kmsg): `Kernel reported iSCSI connection 1:0 error (1020 - ...)`.
    if let Some(rest) = line.strip_prefix("iscsid: Kernel reported iSCSI connection ") {
        let id: u32 = token(rest, &[':']).parse().ok()?;
        return rest.contains(" error (").then_some((Class::IscsiConnection, Subject::Iscsi(id)));
    }
    let (who, text) = line.split_once(": ")?;
    let id =
        who.strip_prefix("connection").map(|c| token(c, &[':'])).or_else(|| who.strip_prefix("session"))?;
    let id: u32 = id.parse().ok()?;
    let class = if text.starts_with("session recovery timed out") {
        Class::IscsiSessionLost
    } else if text.starts_with("detected conn error") || text.starts_with("ping timeout of ") {
        Class::IscsiConnection
    } else {
        return None;
    };
    counts(class, Subject::Iscsi(id))
}

/// `EXT4-fs error (device sda1): ...`, `EXT4-fs warning (device sda1): ext4_end_bio:...: I/O error`,
/// `EXT4-fs (sda1): Remounting filesystem read-only`.
fn ext4(line: &str) -> Hit<'_> {
    let rest = line.strip_prefix("EXT4-fs ")?;
    if let Some(rest) = rest.strip_prefix("error (device ").or_else(|| rest.strip_prefix("critical (device "))
    {
        let dev = token(rest, &[')']);
        return is_device_name(dev).then_some((Class::Ext4Error, Subject::Block(dev)));
    }
    if let Some(rest) = rest.strip_prefix("warning (device ") {
        let dev = token(rest, &[')']);
        let text = rest[dev.len()..].strip_prefix("): ")?;
        let io = text.contains("I/O error") && !text.contains("error count since last fsck");
        return (is_device_name(dev) && io).then_some((Class::Ext4Io, Subject::Block(dev)));
    }
    let rest = rest.strip_prefix('(')?;
    let dev = token(rest, &[')']);
    let text = rest[dev.len()..].strip_prefix("): ")?;
    if !is_device_name(dev) {
        return None;
    }
    let class = if text.starts_with("Remounting filesystem read-only") {
        Class::FsReadonly
    } else if text.starts_with("warning: mounting fs with errors") {
        Class::Ext4Error
    } else if text.starts_with("I/O error while writing superblock")
        || text.starts_with("previous I/O error to superblock detected")
        || text.starts_with("Delayed block allocation failed")
        || text.starts_with("failed to convert unwritten extents")
        || text.starts_with("This should not happen!! Data will be lost")
    {
        Class::Ext4Io
    } else if text.starts_with("error loading journal")
        || text.starts_with("Could not load journal")
        || text.starts_with("ext4_journal_check_start: Detected aborted journal")
    {
        Class::Jbd2Abort
    } else {
        return None;
    };
    counts(class, Subject::Block(dev))
}

/// `Aborting journal on device sda1-8.`, `JBD2: Error -5 detected when updating journal superblock
/// for sda1-8.` (newer: `I/O error when updating ...`), `JBD2: Detected IO errors while flushing
/// file data on sda1-8`.
fn jbd2(line: &str) -> Hit<'_> {
    // The journal device is `<bdev>-<inode>`: the filesystem's device, then the journal inode.
    fn journal(s: &str) -> Option<Subject<'_>> {
        let dev = s.trim_end_matches('.');
        let dev = dev
            .rsplit_once('-')
            .filter(|(_, ino)| ino.bytes().all(|b| b.is_ascii_digit()))
            .map_or(dev, |(d, _)| d);
        is_device_name(dev).then_some(Subject::Block(dev))
    }
    if let Some(rest) = line.strip_prefix("Aborting journal on device ") {
        return counts(Class::Jbd2Abort, journal(token(rest, &[' ']))?);
    }
    let text = line.strip_prefix("JBD2: ")?;
    if let Some(at) = text.find(" journal superblock for ") {
        if !text.contains("rror") {
            return None;
        }
        let dev = token(&text[at + " journal superblock for ".len()..], &[' ']);
        return counts(Class::Jbd2Abort, journal(dev)?);
    }
    // `JBD2: Detected IO errors while flushing file data on sda1-8`.
    if let Some(at) = text.find(" on ").filter(|_| text.contains("rror")) {
        return counts(Class::Jbd2Abort, journal(token(&text[at + " on ".len()..], &[' ']))?);
    }
    // Other JBD2 lines name no device; the filesystem's own line about the same failure counts.
    None
}

/// `XFS (sda1): ...`
fn xfs(line: &str) -> Hit<'_> {
    let rest = &line["XFS (".len()..];
    let dev = token(rest, &[')']);
    let text = rest[dev.len()..].strip_prefix("): ")?;
    if !is_device_name(dev) {
        return None;
    }
    let class = if text.contains("Shutting down filesystem")
        || text.starts_with("Filesystem has been shut down")
        || text.starts_with("xfs_do_force_shutdown")
        || text.starts_with("Log I/O error")
        || text.starts_with("Log I/O Error")
        || text.starts_with("Corruption of in-memory data")
        || text.starts_with("Corruption of on-disk metadata")
    {
        Class::XfsShutdown
    } else if text.starts_with("metadata I/O error")
        || text.starts_with("log I/O error")
        || text.starts_with("writeback error")
        || text.starts_with("I/O Error Detected")
        || text.starts_with("I/O error occurred")
        || text.starts_with("xfs_log_force: error")
        || text.starts_with("xfs_trans_read_buf_map: error")
        || text.starts_with("failed to write")
        || (text.starts_with("log recovery ") && text.contains(" I/O error"))
        || (text.starts_with("xfs_imap_to_bp: ") && text.contains("returned error"))
        || text.starts_with("Failing async write")
        || text.starts_with("log mount/recovery failed")
        || text.starts_with("log mount failed")
        || (text.contains("returned error -5") || text.ends_with("error -5"))
    {
        Class::XfsIo
    } else if text.starts_with("Metadata corruption detected")
        || text.starts_with("Metadata CRC error detected")
        || text.starts_with("Corruption detected.")
        || text.starts_with("Corruption warning:")
        || text.starts_with("First 128 bytes of corrupted metadata buffer")
        || text.starts_with("Internal error ")
        || text.starts_with("Metadata I/O Error")
        || text.starts_with("Invalid inode number")
        || text.contains("returned error -117")
        || text.ends_with("error -117")
    {
        Class::XfsCorruption
    } else {
        return None;
    };
    counts(class, Subject::Block(dev))
}

/// XFS of 2.6 kernels: `Filesystem "dm-1": I/O Error Detected.  Shutting down filesystem: dm-1`,
/// `Filesystem "dm-0": XFS internal error ...`, `I/O error in filesystem ("dm-1") meta-data dev dm-1
/// ...`, `xfs_force_shutdown(dm-1,0x1) called from line ...`.
fn xfs_old(line: &str) -> Hit<'_> {
    if let Some(rest) = line.strip_prefix("xfs_force_shutdown(") {
        let dev = token(rest, &[',', ')']);
        return is_device_name(dev).then_some((Class::XfsShutdown, Subject::Block(dev)));
    }
    let (quoted, text) = match line.strip_prefix("I/O error in filesystem (\"") {
        Some(rest) => (token(rest, &['"']), "I/O error"),
        None => {
            let rest = line.strip_prefix("Filesystem \"")?;
            let dev = token(rest, &['"']);
            (dev, rest[dev.len()..].strip_prefix("\": ")?)
        }
    };
    if !is_device_name(quoted) {
        return None;
    }
    let class = if text.contains("Shutting down filesystem") {
        Class::XfsShutdown
    } else if text.starts_with("I/O error") || text.starts_with("I/O Error") {
        Class::XfsIo
    } else if text.starts_with("XFS internal error")
        || text.starts_with("corrupt inode")
        || text.contains("corruption")
    {
        Class::XfsCorruption
    } else {
        return None;
    };
    counts(class, Subject::Block(quoted))
}

/// `BTRFS error (device sdb1): bdev /dev/sdb1 errs: wr 0, rd 1, flush 0, corrupt 0, gen 0`,
/// `BTRFS warning (device sdb1): csum failed root 5 ino 257 ...`, older `BTRFS: ...` and
/// `BTRFS info (device sdb1): forced readonly`.
fn btrfs(line: &str) -> Hit<'_> {
    let rest = line.strip_prefix("BTRFS").or_else(|| line.strip_prefix("btrfs"))?;
    // The level, then `(device X)` (also `(device X: state EA)`), or older `: ` directly; and
    // `BTRFS: error (device X) in func:123: errno=-5 IO failure`.
    let (dev, text) = match rest.find("(device ") {
        Some(at) if at < 16 => {
            let after = &rest[at + "(device ".len()..];
            let dev = token(after, &[')', ' ', ':']);
            let text = after.split_once(')').map(|(_, t)| t.trim_start_matches(':').trim_start())?;
            (Some(dev), text)
        }
        _ => (None, rest.split_once(": ")?.1),
    };
    // `... on dev /dev/sdd, sector ...` names the device that failed, not the filesystem's first.
    let on_dev = text
        .find(" on dev ")
        .and_then(|at| block_subject(token(&text[at + " on dev ".len()..], &[',', ' '])));
    let text = text.strip_prefix("error ").filter(|t| t.starts_with('(')).map_or(text, |t| t);
    // `bdev /dev/sdb1 errs: wr 0, rd 1, ...` names the device whose counters rose.
    if let Some(b) = text.strip_prefix("bdev ") {
        let (name, errs) = b.split_once(' ')?;
        if !errs.starts_with("errs: ") {
            return None;
        }
        return counts(Class::BtrfsDeviceErrors, block_subject(name)?);
    }
    let class = if text.contains("csum failed")
        || text.contains("checksum verify failed")
        || text.contains("csum mismatch")
        || text.starts_with("checksum error at")
        || text.starts_with("checksum/header error at")
    {
        Class::BtrfsCsum
    } else if text.contains("parent transid verify failed")
        || text.starts_with("bad tree block")
        || text.starts_with("corrupt leaf")
        || text.starts_with("corrupt node")
        || text.starts_with("corrupted leaf")
        || text.starts_with("corrupted node")
        || text.starts_with("incorrect extent count")
        || text.starts_with("level verify failed")
        || text.starts_with("bad key order")
        || text.contains("tree first key mismatch")
        || text.starts_with("block=")
    {
        Class::BtrfsCorruption
    } else if text.starts_with("forced readonly") {
        Class::FsReadonly
    } else if text.contains("missing") && text.starts_with("devid ") {
        Class::DeviceLost
    } else if text.contains("IO failure")
        || text.starts_with("error relocating chunk")
        || text.starts_with("direct IO failed")
        || text.starts_with("fixed up error at logical")
        || text.starts_with("open_ctree failed")
        || text.contains("errno=-5")
        || text.starts_with("Transaction aborted")
        || text.starts_with("unable to fixup")
        || text.starts_with("i/o error at logical")
        || text.starts_with("error writing primary super block")
        || text.starts_with("lost page write")
        || text.starts_with("read error corrected")
        || text.contains("error while writing out transaction")
        || text.starts_with("Skipping commit of aborted transaction")
    {
        Class::BtrfsIo
    } else {
        return None;
    };
    match (on_dev, dev.filter(|d| is_device_name(d))) {
        (Some(s), _) => counts(class, s),
        (None, Some(dev)) => counts(class, Subject::Block(dev)),
        // `btrfs: Transaction aborted (error -5)` of old kernels names no device.
        (None, None) => None,
    }
}

/// `md/raid1:md0: Disk failure on sdb1, disabling device.`, `md/raid1:md0: Operation continuing on
/// 1 devices.`, `md: md0: ...`.
fn md(line: &str) -> Hit<'_> {
    // `md/raid1:md0: ...` (also `md/raid:md0:` for raid4/5/6 and `md/raid10:md0:`); older kernels
    // `raid1: ...` without the array.
    let old = line
        .strip_prefix("raid1: ")
        .or_else(|| line.strip_prefix("raid10: "))
        .or_else(|| line.strip_prefix("raid5: "));
    let (array, text) = match (old, line.strip_prefix("md/")) {
        (Some(text), _) => ("", text),
        (None, Some(rest)) => {
            let (level_array, text) = rest.split_once(": ")?;
            (level_array.split_once(':')?.1, text)
        }
        (None, None) => return md_core(line),
    };
    if !array.is_empty() && !is_device_name(array) {
        return None;
    }
    let class = if text.starts_with("Disk failure on ") {
        Class::MdDiskFailed
    } else if text.starts_with("Operation continuing on ")
        || text.starts_with("not enough operational mirrors")
        || text.starts_with("Cannot continue operation")
        || degraded_at_start(text)
    {
        Class::MdDegraded
    } else if text.contains("read error NOT corrected")
        || text.contains("read error not correctable")
        || text.contains("unrecoverable I/O read error")
        || text.contains("rescheduling sector")
        || text.contains("redirecting sector")
        || text.contains("read error corrected")
        || text.starts_with("Too many read errors")
        || text.contains("Raid device exceeded read_error threshold")
    {
        Class::MdIo
    } else {
        return None;
    };
    counts(class, Subject::Md(array))
}

/// `raid level 5 active with 3 out of 4 devices` / `active with 1 out of 2 mirrors`: fewer than all.
fn degraded_at_start(text: &str) -> bool {
    let Some(at) = text.find("active with ") else { return false };
    let mut f = text[at + "active with ".len()..].split(' ');
    let have = f.next().and_then(|n| n.parse::<u32>().ok());
    let want = f.nth(2).and_then(|n| n.parse::<u32>().ok());
    matches!((have, want), (Some(h), Some(w)) if h < w)
}

/// `md: md0: recovery interrupted.`
fn md_core(line: &str) -> Hit<'_> {
    let rest = line.strip_prefix("md: ").or_else(|| line.strip_prefix("md:"))?;
    let (array, text) = rest.split_once(": ")?;
    if array.starts_with("md")
        && is_device_name(array)
        && (text.starts_with("recovery interrupted") || text.contains("has failed"))
    {
        return counts(Class::MdDegraded, Subject::Md(array));
    }
    None
}

/// `device-mapper: multipath: Failing path 8:16.`, `device-mapper: multipath 253:1: Failing path
/// 8:16.`, `device-mapper: thin: 253:2: switching pool to out-of-data-space (queue IO) mode`.
fn dm(line: &str) -> Hit<'_> {
    let rest = &line["device-mapper: ".len()..];
    // `device-mapper: crypt: dm-0: INTEGRITY AEAD ERROR, sector 0`.
    if let Some(rest) = rest.strip_prefix("crypt: ")
        && let Some((dev, text)) = rest.split_once(": ")
        && text.starts_with("INTEGRITY")
    {
        return is_device_name(dev).then_some((Class::DmError, Subject::Block(dev)));
    }
    // `device-mapper: table: 253:0: crypt: unknown target type`: the table failed to load.
    if let Some(rest) = rest.strip_prefix("table: ") {
        let (num, text) = rest.split_once(": ")?;
        let (major, minor) = num.split_once(':')?;
        let failed = text.contains("unknown target type")
            || text.contains("Error")
            || text.contains("error")
            || text.contains("failed");
        return failed.then_some((Class::DmError, Subject::DevNum(major.parse().ok()?, minor.parse().ok()?)));
    }
    if let Some(at) = rest.find("Failing path ") {
        let num = token(&rest[at + "Failing path ".len()..], &['.', ' ']);
        let (major, minor) = num.split_once(':')?;
        return counts(Class::DmPathFailed, Subject::DevNum(major.parse().ok()?, minor.parse().ok()?));
    }
    // `device-mapper: thin: 253:2: ...` / `device-mapper: multipath 253:1: ...`: the dm device.
    let (target, text) = rest.split_once(": ")?;
    let (target, num) = match target.split_once(' ') {
        Some((t, n)) => (t, Some(n)),
        None => match text.split_once(": ") {
            Some((n, _)) if n.contains(':') && n.bytes().all(|b| b.is_ascii_digit() || b == b':') => {
                (target, Some(n))
            }
            _ => (target, None),
        },
    };
    let failed = match target {
        "thin" => {
            text.contains("out-of-data-space")
                || text.contains("read-only mode")
                || text.contains("fail mode")
        }
        "multipath" => text.contains("remaining active paths: 0") || text.contains("no usable paths"),
        "crypt" => text.contains("INTEGRITY AEAD ERROR") || text.contains("INTEGRITY ERROR"),
        "integrity" => text.contains("Checksum failed"),
        "raid" | "raid1" | "mirror" => {
            text.contains("failed") || text.contains("Primary mirror") || text.contains("read failure")
        }
        _ => false,
    };
    if !failed {
        return None;
    }
    let subject = num
        .and_then(|n| n.split_once(':'))
        .and_then(|(a, b)| Some(Subject::DevNum(a.parse().ok()?, token(b, &[':', ' ']).parse().ok()?)))
        .unwrap_or(Subject::None);
    counts(Class::DmError, subject)
}

/// `nfs: server nas1 not responding, still trying` / `..., timed out`.
fn nfs(line: &str) -> Hit<'_> {
    if let Some(rest) = line.strip_prefix("nfs: server ") {
        let (server, text) = rest.split_once(' ')?;
        return (text.starts_with("not responding")).then_some((Class::NfsTimeout, Subject::Nfs(server)));
    }
    // `NFS: state manager: check lease failed on NFSv4 server nas1 with error 13`,
    // `NFS: nfs4_reclaim_open_state: unhandled error -5`.
    let text = line.strip_prefix("NFS: ").or_else(|| line.strip_prefix("NFS4: "))?;
    // `NFS: Server tigrsrv reports our clientid is in use`.
    if let Some(rest) = text.strip_prefix("Server ") {
        let server = token(rest, &[' ']);
        return (rest.contains(" reports ") && !server.is_empty())
            .then_some((Class::NfsError, Subject::Nfs(server)));
    }
    if let Some(at) = text.find(" server ")
        && (text.contains("failed") || text.contains("error"))
    {
        let server = token(&text[at + " server ".len()..], &[' ', ',']);
        return counts(Class::NfsError, Subject::Nfs(server));
    }
    None
}

/// `SCSI error : <7 0 1 0> return code = 0x10000` (2.6; `sd 7:0:1:0: SCSI error: ...` is `scsi`'s).
fn scsi_return_code(line: &str) -> Hit<'_> {
    let inner = token(line.split_once('<')?.1, &['>']);
    let n: Vec<u32> = inner.split(' ').filter_map(|f| f.parse().ok()).collect();
    let subject = Subject::ScsiNumbers(n.try_into().ok()?);
    line.contains("return code = ").then_some((Class::ScsiHost, subject))
}

/// `hpsa 0000:03:00.0: Abort request on C7:B0:T0:L0`, `... resetting device 7:0:0:0`.
fn hpsa(line: &str) -> Hit<'_> {
    let text = line.split_once(": ")?.1;
    if let Some(at) =
        text.find(" on C").filter(|_| text.starts_with("Abort request") || text.starts_with("ABORT REQUEST"))
    {
        let addr = token(&text[at + " on ".len()..], &[' ']);
        let n: Vec<u32> = addr.split(':').filter_map(|f| f.get(1..)?.parse().ok()).collect();
        return counts(Class::ScsiAbort, Subject::ScsiNumbers(n.try_into().ok()?));
    }
    let hctl = text.strip_prefix("resetting device ").map(|t| token(t, &[' ']))?;
    is_device_name(hctl).then_some((Class::ScsiAbort, Subject::Scsi(hctl)))
}

/// `<driver> <bdf>: [AER: ]PCIe Bus Error: severity=Corrected, type=...`
fn aer(line: &str, at: usize) -> Hit<'_> {
    let severity = &line[at + " Bus Error: severity=".len()..];
    let class = if severity.starts_with("Correct") {
        Class::PcieAerCorrectable
    } else if severity.starts_with("Uncorrect") {
        Class::PcieAerUncorrectable
    } else {
        return None;
    };
    counts(class, pci_of(line))
}

/// The `<bdf>` of `<driver> <bdf>: `, else nothing.
fn pci_of(line: &str) -> Subject<'_> {
    let bdf = line.split_once(' ').map(|(_, rest)| token(rest, &[' '])).and_then(|b| b.strip_suffix(':'));
    match bdf {
        Some(b) if is_bdf(b) => Subject::Pci(b),
        _ => Subject::None,
    }
}

/// `pcieport 0000:00:1c.0: AER: Corrected error received: 0000:01:00.0` (and `Multiple ...`,
/// `... error message received from 0000:01:00.0`): the function named at the end.
fn aer_summary(line: &str, at: usize) -> Hit<'_> {
    let head = &line[..at];
    let class = if head.ends_with("Corrected") || head.ends_with("Correctable") {
        Class::PcieAerCorrectable
    } else if head.contains("Uncorrected") || head.contains("Uncorrectable") || head.ends_with("Fatal)") {
        Class::PcieAerUncorrectable
    } else {
        return None;
    };
    if !head.contains("AER: ") && !head.starts_with("pcieport ") {
        return None;
    }
    let tail = line[at..]
        .split_once("received")
        .map(|(_, t)| t.trim_start_matches(": ").trim_start_matches(" from "))?;
    let bdf = token(tail.trim(), &[' ']);
    let subject = if is_bdf(bdf) { Subject::Pci(bdf) } else { pci_of(line) };
    counts(class, subject)
}

/// `CPU3: Package temperature is above threshold, cpu clock is throttled (total events = 12)`
fn cpu(line: &str) -> Hit<'_> {
    let (who, text) = line.split_once(": ")?;
    who.get(3..)?.parse::<u32>().ok()?;
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
    fn corpus() -> Vec<(String, String, &'static str)> {
        include_str!("../../../tests/data/kmsg-corpus.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let mut f = l.splitn(3, '\t');
                (f.next().unwrap().to_owned(), f.next().unwrap().to_owned(), f.next().unwrap())
            })
            .collect()
    }

    pub fn subject_text(s: Subject) -> String {
        match s {
            Block(d) => format!("block:{d}"),
            DevNum(a, b) => format!("devnum:{a}:{b}"),
            AtaPort(p) => format!("ata:{p}"),
            Scsi(a) => format!("scsi:{a}"),
            ScsiNumbers([h, c, t, l]) => format!("scsi:{h}:{c}:{t}:{l}"),
            ScsiHost(h) => format!("host:{h}"),
            NvmeController(c) => format!("nvme:{c}"),
            Pci(b) => format!("pci:{b}"),
            Md(m) => format!("md:{m}"),
            Nfs(s) => format!("nfs:{s}"),
            Iscsi(n) => format!("iscsi:{n}"),
            None => "none".to_owned(),
        }
    }

    #[test]
    fn every_corpus_line() {
        let corpus = corpus();
        for (class, subject, line) in &corpus {
            let got = classify(line).map(|(c, s)| (c.as_str().to_owned(), subject_text(s)));
            assert_eq!(got, Some((class.clone(), subject.clone())), "{line}");
        }
        let classes: std::collections::BTreeSet<_> = corpus.iter().map(|c| c.0.as_str()).collect();
        for c in Class::ALL {
            assert!(classes.contains(c.as_str()), "no corpus line for {}", c.as_str());
        }
    }

    #[test]
    fn near_misses() {
        let lines = include_str!("../../../tests/data/kmsg-near-misses.txt");
        for line in lines.lines().filter(|l| !l.starts_with('#')) {
            assert!(!matches!(classify(line), Some((_, _))), "{line}: {:?}", classify(line));
        }
        assert_eq!(classify(""), Option::None);
    }

    #[test]
    fn multi_line_records_use_the_first_line() {
        let line = "ata1.00: cmd 60/08:88:80:1f:2a/00:00:00:00:00/40 tag 17 ncq dma 4096 in\n         res 41/40:00 Emask 0x409 (media error) <F>";
        assert_eq!(classify(line), Option::None);
    }

    #[test]
    fn names_follow_the_enum() {
        for (i, (class, name, help)) in NAMES.iter().enumerate() {
            assert_eq!(*class as usize, i, "{name} is out of order");
            assert_eq!(Class::from_name(name), Some(*class));
            assert!(!help.is_empty());
        }
        assert_eq!(Class::ALL.len(), NAMES.len());
        assert_eq!(Class::from_name("nope"), Option::None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = classify(&s);
        }

        #[test]
        fn never_panics_near_corpus(i in 0..1000usize, cut in 0..200usize, junk in "\\PC{0,8}") {
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

#[cfg(test)]
mod readme {
    use super::NAMES;

    const START: &str =
        "<!-- kmsg-classes: generated from src/sources/kmsg/classify.rs; a test checks it -->\n";
    const END: &str = "<!-- /kmsg-classes -->";

    /// The README's class table: every class, its label value and what it means, in output order.
    #[test]
    fn readme_class_table_is_the_code() {
        let mut table = String::from("| class | what the kernel logged |\n|---|---|\n");
        for (_, name, help) in NAMES {
            table.push_str(&format!("| `{name}` | {help} |\n"));
        }
        let readme = include_str!("../../../README.md");
        let got = readme.split_once(START).and_then(|(_, r)| r.split_once(END)).map(|(t, _)| t);
        assert_eq!(
            got,
            Some(table.as_str()),
            "README.md's kmsg class table should read:\n{START}{table}{END}"
        );
    }
}
