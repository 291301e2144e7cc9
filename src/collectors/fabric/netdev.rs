//! Fabric interfaces from `/sys/class/net/<if>/` (Documentation/ABI/testing/sysfs-class-net and
//! sysfs-class-net-statistics).
//!
//! ```text
//! statistics/rx_packets   57340175          (64-bit counters, struct rtnl_link_stats64)
//! speed                   10000             (Mb/s; -1, or EINVAL on read, when unknown)
//! duplex                  full              (EINVAL on read when unknown)
//! mtu                     1500
//! operstate               up                (RFC 2863: up, down, dormant, lowerlayerdown, unknown, ...)
//! carrier                 1                 (EINVAL when the interface is down)
//! carrier_changes         2
//! ifindex                 3                 (a new number when the interface is re-created)
//! ```

use std::io;
use std::path::{Path, PathBuf};

use crate::collectors::CollectError;
use crate::paths::Paths;

/// The statistics files read, with the metric each becomes (node_exporter's names) and its help.
pub const STATISTICS: [(&str, &str, &str); 12] = [
    ("rx_bytes", "storwatch_network_receive_bytes_total", "Bytes received (statistics/rx_bytes)."),
    ("rx_packets", "storwatch_network_receive_packets_total", "Packets received (statistics/rx_packets)."),
    ("rx_errors", "storwatch_network_receive_errs_total", "Receive errors (statistics/rx_errors)."),
    (
        "rx_dropped",
        "storwatch_network_receive_drop_total",
        "Packets received but dropped, e.g. no buffer (statistics/rx_dropped).",
    ),
    (
        "rx_fifo_errors",
        "storwatch_network_receive_fifo_total",
        "Receive FIFO overruns (statistics/rx_fifo_errors).",
    ),
    (
        "rx_frame_errors",
        "storwatch_network_receive_frame_total",
        "Receive frame alignment errors (statistics/rx_frame_errors).",
    ),
    ("tx_bytes", "storwatch_network_transmit_bytes_total", "Bytes sent (statistics/tx_bytes)."),
    ("tx_packets", "storwatch_network_transmit_packets_total", "Packets sent (statistics/tx_packets)."),
    ("tx_errors", "storwatch_network_transmit_errs_total", "Transmit errors (statistics/tx_errors)."),
    (
        "tx_dropped",
        "storwatch_network_transmit_drop_total",
        "Packets dropped on transmit, e.g. peer or link down (statistics/tx_dropped).",
    ),
    (
        "tx_fifo_errors",
        "storwatch_network_transmit_fifo_total",
        "Transmit FIFO errors (statistics/tx_fifo_errors).",
    ),
    (
        "tx_carrier_errors",
        "storwatch_network_transmit_carrier_total",
        "Transmit carrier errors: signal loss on the link (statistics/tx_carrier_errors).",
    ),
];

/// Index of a statistic in [`STATISTICS`].
pub fn stat_index(file: &str) -> usize {
    STATISTICS.iter().position(|(f, _, _)| *f == file).expect("a known statistics file")
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
fn read(path: &Path) -> Result<Option<String>, io::Error> {
    match crate::collectors::read_small(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENODEV)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads one interface. None when it does not exist (any more).
pub fn read_netdev(paths: &Paths, name: &str, errors: &mut Vec<CollectError>) -> Option<NetDev> {
    let dir = paths.sys("class/net").join(name);
    if !dir.exists() {
        return None;
    }
    let mut text = |rel: &str| {
        let path = dir.join(rel);
        match read(&path) {
            Ok(v) => v.map(|v| (path, v)),
            Err(e) => {
                errors.push(CollectError::io(&path, &e));
                None
            }
        }
    };
    let mut dev = NetDev { name: name.to_owned(), ..NetDev::default() };
    let mut raw: Vec<(usize, Option<(PathBuf, String)>)> = Vec::new();
    for (i, (file, _, _)) in STATISTICS.iter().enumerate() {
        raw.push((i, text(&format!("statistics/{file}"))));
    }
    let speed = text("speed");
    dev.duplex = text("duplex").map(|(_, v)| v).filter(|v| !v.is_empty());
    dev.operstate = text("operstate").map(|(_, v)| v);
    let mtu = text("mtu");
    let carrier = text("carrier");
    let changes = text("carrier_changes");
    let ifindex = text("ifindex");
    let mut number = |v: Option<(PathBuf, String)>| {
        let (path, v) = v?;
        let n = parse_u64(&v);
        if n.is_none() {
            errors.push(CollectError::parse(&path, format_args!("{v:?} is not a number")));
        }
        n
    };
    for (i, v) in raw {
        dev.stats[i] = number(v);
    }
    dev.mtu = number(mtu);
    dev.carrier_changes = number(changes);
    dev.ifindex = number(ifindex);
    dev.carrier = number(carrier).map(|c| c == 1);
    dev.speed = match speed {
        None => Some(Speed::Unknown),
        Some((path, v)) => {
            let s = parse_speed(&v);
            if s.is_none() {
                errors.push(CollectError::parse(&path, format_args!("{v:?} is not a speed")));
            }
            s
        }
    };
    Some(dev)
}

/// Whether `name` is a physical interface: it has a `device` link, or its class entry links
/// outside `devices/virtual` (lo, veth, bridges, bonds, docker0 live there).
pub fn is_physical(paths: &Paths, name: &str) -> bool {
    let entry = paths.sys("class/net").join(name);
    entry.join("device").exists()
        || std::fs::read_link(&entry).is_ok_and(|t| !t.to_string_lossy().contains("devices/virtual/"))
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
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| dir.join(n).is_dir() && is_physical(paths, n))
        .collect();
    names.sort();
    Ok((names, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        let eth0 = read_netdev(&paths, "eth0", &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(eth0.speed, Some(Speed::Mbps(1000)));
        assert_eq!((eth0.duplex.as_deref(), eth0.mtu), (Some("full"), Some(1500)));
        assert_eq!(
            (eth0.operstate.as_deref(), eth0.carrier, eth0.carrier_changes),
            (Some("up"), Some(true), Some(2))
        );
        assert!(eth0.link_up());
        assert_eq!(eth0.stats, [None; 12], "the capture has no statistics directory");
        let (names, missing) = fabric_interfaces(&paths, &["bond0".into(), "gone0".into()]).unwrap();
        assert_eq!((names, missing), (vec!["bond0".to_owned()], vec!["gone0".to_owned()]));
        let bond0 = read_netdev(&paths, "bond0", &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(bond0.speed.is_some());
        assert!(read_netdev(&paths, "gone0", &mut errors).is_none());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = (parse_speed(&s), parse_u64(&s));
        }

        #[test]
        fn numbers_round_trip(v in 1u64..4_000_000_000u64) {
            prop_assume!(v != 0xffff);
            prop_assert_eq!(parse_speed(&format!("{v}\n")), Some(Speed::Mbps(v)));
        }
    }
}
