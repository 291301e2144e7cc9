//! Fabric interfaces: their counters from `/proc/net/dev` (one read for every interface, the
//! source and the meaning of node_exporter's netdev metrics), their link state from
//! `/sys/class/net/<if>/` (Documentation/ABI/testing/sysfs-class-net).
//!
//! ```text
//! /proc/net/dev:
//! Inter-|   Receive                                                |  Transmit
//!  face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
//!   eth0: 9000 1000 0 0 0 0 0 0 7000 1000 0 0 0 0 0 0
//!
//! /sys/class/net/eth0/:
//! speed                   10000             (Mb/s; -1, or EINVAL on read, when unknown)
//! duplex                  full              (EINVAL on read when unknown)
//! mtu                     1500
//! operstate               up                (RFC 2863: up, down, dormant, lowerlayerdown, unknown, ...)
//! carrier                 1                 (EINVAL when the interface is down)
//! carrier_changes         2
//! ifindex                 3                 (a new number when the interface is re-created)
//! ```

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;

use crate::collectors::{AttrDir, CollectError};
use crate::paths::Paths;

/// The counters read from `/proc/net/dev`: a key (the sysfs statistics file it is closest to),
/// the column of `/proc/net/dev` (0-7 receive, 8-15 transmit), the metric (node_exporter's
/// netdev names, which come from the same columns) and its help. The kernel prints some columns
/// as sums of `struct rtnl_link_stats64` fields (net/core/net-procfs.c), said in the help.
pub const STATISTICS: [(&str, usize, &str, &str); 12] = [
    ("rx_bytes", 0, "storwatch_network_receive_bytes_total", "Bytes received (/proc/net/dev)."),
    ("rx_packets", 1, "storwatch_network_receive_packets_total", "Packets received (/proc/net/dev)."),
    ("rx_errors", 2, "storwatch_network_receive_errs_total", "Receive errors (/proc/net/dev errs)."),
    (
        "rx_dropped",
        3,
        "storwatch_network_receive_drop_total",
        "Packets received but dropped, e.g. no buffer (/proc/net/dev drop: rx_dropped + rx_missed_errors).",
    ),
    (
        "rx_fifo_errors",
        4,
        "storwatch_network_receive_fifo_total",
        "Receive FIFO overruns (/proc/net/dev fifo).",
    ),
    (
        "rx_frame_errors",
        5,
        "storwatch_network_receive_frame_total",
        "Receive frame errors (/proc/net/dev frame: length + over + crc + frame errors).",
    ),
    ("tx_bytes", 8, "storwatch_network_transmit_bytes_total", "Bytes sent (/proc/net/dev)."),
    ("tx_packets", 9, "storwatch_network_transmit_packets_total", "Packets sent (/proc/net/dev)."),
    ("tx_errors", 10, "storwatch_network_transmit_errs_total", "Transmit errors (/proc/net/dev errs)."),
    (
        "tx_dropped",
        11,
        "storwatch_network_transmit_drop_total",
        "Packets dropped on transmit, e.g. peer or link down (/proc/net/dev drop).",
    ),
    (
        "tx_fifo_errors",
        12,
        "storwatch_network_transmit_fifo_total",
        "Transmit FIFO errors (/proc/net/dev fifo).",
    ),
    (
        "tx_carrier_errors",
        14,
        "storwatch_network_transmit_carrier_total",
        "Transmit carrier errors: signal loss on the link (/proc/net/dev carrier: carrier + aborted + window + heartbeat errors).",
    ),
];

/// The counters of every interface in `/proc/net/dev`, by name, in [`STATISTICS`]' order; and how
/// many lines did not parse (a name, a colon and 16 numbers). The two header lines are skipped.
pub fn parse_proc_net_dev(text: &str) -> (HashMap<String, [u64; 12]>, usize) {
    let mut out = HashMap::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.contains('|') && !l.trim().is_empty()) {
        let parsed = line.split_once(':').and_then(|(name, rest)| {
            let mut cols = [0u64; 16];
            let mut fields = rest.split_ascii_whitespace();
            for c in &mut cols {
                *c = fields.next()?.parse().ok()?;
            }
            let name = name.trim();
            (fields.next().is_none() && !name.is_empty()).then(|| (name.to_owned(), cols))
        });
        match parsed {
            Some((name, cols)) => {
                out.insert(name, STATISTICS.map(|(_, col, _, _)| cols[col]));
            }
            None => bad += 1,
        }
    }
    (out, bad)
}

/// Reads and parses `/proc/net/dev`. An absent file (a captured tree without it) is no
/// counters; an unreadable one or lines that do not parse are errors.
pub fn read_proc_net_dev(paths: &Paths, errors: &mut Vec<CollectError>) -> HashMap<String, [u64; 12]> {
    let path = paths.proc("net/dev");
    match crate::collectors::read_small(&path) {
        Ok(b) => {
            let (counters, bad) = parse_proc_net_dev(&String::from_utf8_lossy(&b));
            if bad > 0 {
                errors.push(CollectError::parse(
                    &path,
                    format_args!("{bad} lines are not an interface's counters"),
                ));
            }
            counters
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
        Err(e) => {
            errors.push(CollectError::io(&path, &e));
            HashMap::new()
        }
    }
}

/// Index of a statistic in [`STATISTICS`].
pub fn stat_index(file: &str) -> usize {
    STATISTICS.iter().position(|(f, _, _, _)| *f == file).expect("a known statistic")
}

/// A link speed as sysfs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    Mbps(u64),
    /// `-1` (SPEED_UNKNOWN), its unsigned forms on older kernels, `0`, or EINVAL on read.
    Unknown,
}

/// Parses `speed`: Mb/s, or unknown. None when it is not a number at all.
pub fn parse_speed(s: &str) -> Option<Speed> {
    let v: i64 = s.trim().parse().ok()?;
    Some(match v {
        // SPEED_UNKNOWN is -1; kernels before 4.x printed it unsigned (u32, or u16 0xffff).
        v if v <= 0 || v == 0xffff || v == i64::from(u32::MAX) => Speed::Unknown,
        v => Speed::Mbps(v as u64),
    })
}

/// Parses a decimal counter or number file such as `statistics/rx_bytes` or `mtu`.
pub fn parse_u64(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// One interface as sampled; `None` where the file is absent (or, for the speed and duplex,
/// unreadable because the driver has no value).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetDev {
    pub name: String,
    pub stats: [Option<u64>; 12],
    pub speed: Option<Speed>,
    pub duplex: Option<String>,
    pub mtu: Option<u64>,
    pub operstate: Option<String>,
    /// Read only when operstate is `unknown`, the one case [`NetDev::link_up`] looks at it.
    pub carrier: Option<bool>,
    pub carrier_changes: Option<u64>,
    /// Tells a re-created interface of the same name (counters from zero) from the old one.
    pub ifindex: Option<u64>,
}

impl NetDev {
    pub fn stat(&self, file: &str) -> Option<u64> {
        self.stats[stat_index(file)]
    }

    /// Whether the link is up: operstate `up`, or `unknown` with carrier (drivers such as tun
    /// that do not track operstate).
    pub fn link_up(&self) -> bool {
        match self.operstate.as_deref() {
            Some("up") => true,
            Some("unknown") => self.carrier == Some(true),
            _ => false,
        }
    }
}

/// Reads an attribute: `Ok(None)` when the file is absent, or when the driver answers EINVAL
/// (speed, duplex and carrier of a virtual or down interface) or ENODEV (removed meanwhile).
fn read(dir: &AttrDir, name: &CStr) -> Result<Option<String>, io::Error> {
    match dir.read(name) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENODEV)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads one interface's link state from sysfs, with its counters from `/proc/net/dev` (None
/// when it has no line there). None when the interface does not exist (any more).
pub fn read_netdev(
    paths: &Paths,
    name: &str,
    counters: Option<&[u64; 12]>,
    errors: &mut Vec<CollectError>,
) -> Option<NetDev> {
    let dir = match AttrDir::open(paths.sys("class/net").join(name)) {
        Ok(d) => d,
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENODEV)) =>
        {
            return None;
        }
        Err(e) => {
            errors.push(CollectError::io(&paths.sys("class/net").join(name), &e));
            return None;
        }
    };
    let mut text = |rel: &'static CStr| match read(&dir, rel) {
        Ok(v) => v.map(|v| (rel, v)),
        Err(e) => {
            errors.push(CollectError::io(&dir.path(rel), &e));
            None
        }
    };
    let mut dev = NetDev { name: name.to_owned(), ..NetDev::default() };
    if let Some(c) = counters {
        dev.stats = c.map(Some);
    }
    let speed = text(c"speed");
    dev.duplex = text(c"duplex").map(|(_, v)| v).filter(|v| !v.is_empty());
    dev.operstate = text(c"operstate").map(|(_, v)| v);
    let mtu = text(c"mtu");
    // Carrier only decides whether a link is up when operstate is `unknown` (see `link_up`).
    let carrier = if dev.operstate.as_deref() == Some("unknown") { text(c"carrier") } else { None };
    let changes = text(c"carrier_changes");
    let ifindex = text(c"ifindex");
    let mut number = |v: Option<(&CStr, String)>| {
        let (rel, v) = v?;
        let n = parse_u64(&v);
        if n.is_none() {
            errors.push(CollectError::parse(&dir.path(rel), format_args!("{v:?} is not a number")));
        }
        n
    };
    dev.mtu = number(mtu);
    dev.carrier_changes = number(changes);
    dev.ifindex = number(ifindex);
    dev.carrier = number(carrier).map(|c| c == 1);
    dev.speed = match speed {
        None => Some(Speed::Unknown),
        Some((rel, v)) => {
            let s = parse_speed(&v);
            if s.is_none() {
                errors.push(CollectError::parse(&dir.path(rel), format_args!("{v:?} is not a speed")));
            }
            s
        }
    };
    Some(dev)
}

/// Whether the class/net entry `name` is a physical interface: it links outside
/// `devices/virtual` (lo, veth, bridges, bonds, docker0 live there), or it has a `device` link
/// (the test for a plain directory, as in captured trees). `file_type` is the entry's own type,
/// from the directory listing: a regular file (`bonding_masters`) is no interface. One system
/// call for most entries of a real sysfs.
pub fn is_physical(paths: &Paths, name: &str, file_type: std::fs::FileType) -> bool {
    let entry = paths.sys("class/net").join(name);
    if file_type.is_symlink()
        && std::fs::read_link(&entry).is_ok_and(|t| !t.to_string_lossy().contains("devices/virtual/"))
    {
        return true;
    }
    (file_type.is_symlink() || file_type.is_dir()) && entry.join("device").exists()
}

/// The fabric interfaces: the configured ones (those that exist now), else every physical one.
/// The configured ones that do not exist are returned in `missing`.
pub fn fabric_interfaces(
    paths: &Paths,
    configured: &[String],
) -> Result<(Vec<String>, Vec<String>), CollectError> {
    let dir = paths.sys("class/net");
    if !configured.is_empty() {
        let (present, missing) = configured.iter().cloned().partition(|n| dir.join(n).exists());
        return Ok((present, missing));
    }
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(CollectError::io(&dir, &e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            is_physical(paths, &name, e.file_type().ok()?).then_some(name)
        })
        .collect();
    names.sort();
    Ok((names, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    #[test]
    fn speeds() {
        assert_eq!(parse_speed("10000\n"), Some(Speed::Mbps(10_000)));
        assert_eq!(parse_speed("1000"), Some(Speed::Mbps(1000)));
        assert_eq!(parse_speed("-1"), Some(Speed::Unknown));
        assert_eq!(parse_speed("4294967295"), Some(Speed::Unknown));
        assert_eq!(parse_speed("65535"), Some(Speed::Unknown));
        assert_eq!(parse_speed("0"), Some(Speed::Unknown));
        assert_eq!(parse_speed("fast"), None);
        assert_eq!(parse_speed(""), None);
        assert_eq!(parse_u64("18446744073709551615\n"), Some(u64::MAX));
        assert_eq!(parse_u64("-3"), None);
    }

    #[test]
    fn proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  \
             eth0: 9000 1000 1 2 3 4 5 6 7000 900 7 8 9 10 11 12\n\
             veth-a.1:18446744073709551615 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n\
             bad0: 1 2 3\n\
             bad1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n\
             : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
             no colon here\n";
        let (counters, bad) = parse_proc_net_dev(text);
        assert_eq!(bad, 4, "short, long, nameless and colonless lines");
        assert_eq!(counters.len(), 3);
        // rx: bytes packets errs drop fifo frame; tx: bytes packets errs drop fifo carrier (colls skipped).
        assert_eq!(counters["eth0"], [9000, 1000, 1, 2, 3, 4, 7000, 900, 7, 8, 9, 11]);
        assert_eq!(counters["veth-a.1"][stat_index("rx_bytes")], u64::MAX, "no space after the colon");
        assert_eq!(counters["lo"][stat_index("tx_packets")], 2);
    }

    #[test]
    fn fixture_interfaces() {
        // node_exporter's captured sysfs: eth0 links to a PCI device; bond0, dmz and int are
        // plain directories (virtual in the capture).
        let dir = tempfile::tempdir().unwrap();
        let tar = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/node-exporter/sys.tar.gz");
        let ok = std::process::Command::new("tar")
            .arg("xzf")
            .arg(&tar)
            .arg("-C")
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "unpacking {}", tar.display());
        let paths = Paths { sysfs: dir.path().join("sys"), ..Paths::default() };
        let (names, missing) = fabric_interfaces(&paths, &[]).unwrap();
        assert_eq!((names.as_slice(), missing.len()), (&["eth0".to_owned()][..], 0));
        let mut errors = Vec::new();
        let eth0 = read_netdev(&paths, "eth0", None, &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(eth0.speed, Some(Speed::Mbps(1000)));
        assert_eq!((eth0.duplex.as_deref(), eth0.mtu), (Some("full"), Some(1500)));
        assert_eq!(
            (eth0.operstate.as_deref(), eth0.carrier, eth0.carrier_changes),
            (Some("up"), None, Some(2)),
            "carrier is not read while operstate says up"
        );
        assert!(eth0.link_up());
        // A driver that does not track operstate (tun): carrier decides.
        let class = dir.path().join("sys/class/net/eth0");
        std::fs::write(class.join("operstate"), "unknown\n").unwrap();
        let eth0 = read_netdev(&paths, "eth0", None, &mut errors).unwrap();
        assert_eq!((eth0.carrier, eth0.link_up()), (Some(true), true));
        std::fs::write(class.join("carrier"), "0\n").unwrap();
        let eth0 = read_netdev(&paths, "eth0", None, &mut errors).unwrap();
        assert_eq!((eth0.carrier, eth0.link_up()), (Some(false), false));
        assert_eq!(eth0.stats, [None; 12], "no /proc/net/dev line given");
        let (names, missing) = fabric_interfaces(&paths, &["bond0".into(), "gone0".into()]).unwrap();
        assert_eq!((names, missing), (vec!["bond0".to_owned()], vec!["gone0".to_owned()]));
        let bond0 = read_netdev(&paths, "bond0", Some(&[7; 12]), &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(bond0.speed.is_some());
        assert_eq!(bond0.stats, [Some(7); 12]);
        assert!(read_netdev(&paths, "gone0", None, &mut errors).is_none());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = (parse_speed(&s), parse_u64(&s), parse_proc_net_dev(&s));
        }

        #[test]
        fn proc_net_dev_lines_round_trip(
            name in "[a-z][a-z0-9.-]{0,14}",
            cols in proptest::array::uniform16(any::<u64>()),
        ) {
            let line = format!("{name}: {}", cols.map(|c| c.to_string()).join(" "));
            let (counters, bad) = parse_proc_net_dev(&line);
            prop_assert_eq!(bad, 0);
            let want = STATISTICS.map(|(_, col, _, _)| cols[col]);
            prop_assert_eq!(counters.get(&name), Some(&want));
        }

        #[test]
        fn numbers_round_trip(v in 1u64..4_000_000_000u64) {
            prop_assume!(v != 0xffff);
            prop_assert_eq!(parse_speed(&format!("{v}\n")), Some(Speed::Mbps(v)));
        }
    }
}
