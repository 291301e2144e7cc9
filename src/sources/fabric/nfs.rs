//! NFS mounts from `mountstats` (fs/nfs/super.c `nfs_show_stats`, net/sunrpc/stats.c
//! `rpc_clnt_show_stats`; the format `mountstats(8)` reads): per mount, the RPC counts summed
//! over its operations.
//!
//! ```text
//! (the lines under `device` start with a tab, shown here as spaces)
//! device 10.0.0.5:/export mounted on /mnt/data with fstype nfs4 statvers=1.1
//!     opts:    rw,vers=4.2,rsize=1048576,...
//!     xprt:    tcp 832 0 1 0 11 6428 6428 0 12154 0 24 26 5726
//!     per-op statistics
//!             NULL: 0 0 0 0 0 0 0 0
//!             READ: 1298 1300 1 207680 1210292152 6 79386 79407 0
//! ```
//!
//! Each operation line: operations, transmissions, major timeouts, bytes sent, bytes received,
//! then the cumulative queue, RTT and execute times in milliseconds (and errors, on newer
//! kernels). Transmissions beyond operations are retransmissions.

/// One NFS mount's RPC totals over all its operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NfsMount {
    pub export: String,
    pub mountpoint: String,
    pub ops: u64,
    pub transmissions: u64,
    pub major_timeouts: u64,
    pub rtt_ms: u64,
}

/// Parses mountstats: the NFS mounts (other filesystems are skipped), and the 1-based numbers of
/// per-op lines that could not be read.
pub fn parse_mountstats(text: &str) -> (Vec<NfsMount>, Vec<usize>) {
    let mut mounts: Vec<NfsMount> = Vec::new();
    let mut bad = Vec::new();
    let mut in_nfs = false;
    let mut in_ops = false;
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("device ") {
            in_ops = false;
            let words: Vec<&str> = rest.split_whitespace().collect();
            // <export> mounted on <mountpoint> with fstype <type> [statvers=...]
            in_nfs = match words.as_slice() {
                [export, "mounted", "on", mp, "with", "fstype", fs, ..] if fs.starts_with("nfs") => {
                    mounts.push(NfsMount {
                        export: unescape(export),
                        mountpoint: unescape(mp),
                        ..NfsMount::default()
                    });
                    true
                }
                _ => false,
            };
            continue;
        }
        if !in_nfs {
            continue;
        }
        let t = line.trim();
        if t == "per-op statistics" {
            in_ops = true;
            continue;
        }
        if !in_ops || t.is_empty() {
            continue;
        }
        let Some((_, counts)) = t.split_once(':') else {
            in_ops = false;
            continue;
        };
        let v: Option<Vec<u64>> = counts.split_whitespace().map(|w| w.parse().ok()).collect();
        match (v, mounts.last_mut()) {
            (Some(v), Some(m)) if v.len() >= 8 => {
                m.ops = m.ops.saturating_add(v[0]);
                m.transmissions = m.transmissions.saturating_add(v[1]);
                m.major_timeouts = m.major_timeouts.saturating_add(v[2]);
                m.rtt_ms = m.rtt_ms.saturating_add(v[6]);
            }
            _ => bad.push(i + 1),
        }
    }
    (mounts, bad)
}

/// Undoes the kernel's octal escapes of spaces, tabs, newlines and backslashes (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b.get(i + 1..i + 4) {
            Some(d) if b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                let v = u32::from(d[0] - b'0') * 64 + u32::from(d[1] - b'0') * 8 + u32::from(d[2] - b'0');
                out.push(v as u8); // at most 0o777; the kernel escapes bytes only
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "device rootfs mounted on / with fstype rootfs\n\
device sysfs mounted on /sys with fstype sysfs\n\
device 10.0.0.5:/export mounted on /mnt/my\\040data with fstype nfs4 statvers=1.1\n\
\topts:\trw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,acregmin=3,proto=tcp,timeo=600,retrans=2\n\
\tage:\t13\n\
\tevents:\t52 226 0 0 1 13 398 0 0 331 0 47 0 0 77 0 0 77 0 0 0 0 0 0 0 0 0\n\
\tbytes:\t1207640230 0 0 0 1210214218 0 295483 0\n\
\tRPC iostats version: 1.1  p/v: 100003/4 (nfs)\n\
\txprt:\ttcp 832 0 1 0 11 6428 6428 0 12154 0 24 26 5726\n\
\tper-op statistics\n\
\t        NULL: 0 0 0 0 0 0 0 0\n\
\t        READ: 1298 1300 1 207680 1210292152 6 79386 79407 0\n\
\t       WRITE: 10 12 0 400 10 2 30 40 0\n\
\n\
device 10.0.0.6:/old mounted on /mnt/old with fstype nfs statvers=1.0\n\
\tper-op statistics\n\
\t     GETATTR: 5 5 0 600 800 0 4 5\n\
\t     LOOKUP: 1 x 0 0 0 0 0 0\n\
device tmpfs mounted on /run with fstype tmpfs\n";

    #[test]
    fn nfs_mounts_summed_over_operations() {
        let (mounts, bad) = parse_mountstats(SAMPLE);
        assert_eq!(bad, [18]);
        assert_eq!(mounts.len(), 2);
        let m = &mounts[0];
        assert_eq!((m.export.as_str(), m.mountpoint.as_str()), ("10.0.0.5:/export", "/mnt/my data"));
        assert_eq!((m.ops, m.transmissions, m.major_timeouts, m.rtt_ms), (1308, 1312, 1, 79416));
        let old = &mounts[1];
        assert_eq!((old.ops, old.transmissions, old.rtt_ms), (5, 5, 4), "8-field lines of older kernels");
        assert_eq!(parse_mountstats("").0, []);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,400}") {
            let _ = parse_mountstats(&s);
        }

        #[test]
        fn mountstats_like_input_never_panics(s in "(device [a-z0-9:/.\\\\]{1,10} mounted on [/a-z\\\\0-7]{1,8} with fstype (nfs4?|ext4)\n|\tper-op statistics\n|\t +[A-Z]{1,6}: ([0-9]{1,4} ?){0,10}\n|[a-z: \t]{0,12}\n){0,10}") {
            let (mounts, bad) = parse_mountstats(&s);
            prop_assert!(mounts.iter().all(|m| !m.mountpoint.is_empty()));
            prop_assert!(bad.iter().all(|n| *n >= 1));
        }
    }
}
