//! Fabric interfaces: which ones (the `[fabric] interfaces`, else every physical one in
//! `/sys/class/net`, Documentation/ABI/testing/sysfs-class-net), and their speed and duplex from
//! the ethtool ioctl (`ETHTOOL_GSET`, no privilege needed: what sysfs `speed` and `duplex` print),
//! which rtnetlink does not carry; link state and counters come from one rtnetlink dump
//! (`rtnl.rs`).
//!
//! ```text
//! /sys/class/net/eth0 -> ../../devices/pci0000:00/0000:00:03.0/net/eth0   (physical)
//! /sys/class/net/lo   -> ../../devices/virtual/net/lo                      (virtual)
//! ioctl(SIOCETHTOOL, ETHTOOL_GSET) -> struct ethtool_cmd { speed 10000 (Mb/s, low 16 bits),
//!     duplex 1 (full), ..., speed_hi 0 }      (SPEED_UNKNOWN: 0xffffffff; EOPNOTSUPP: no ethtool)
//! ```

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::CollectError;
use crate::paths::Paths;

/// The counters: a key (the sysfs statistics file each is closest to), the metric
/// (node_exporter's netdev names) and its help. Each is a column of `/proc/net/dev`, made from the
/// interface's struct rtnl_link_stats64 as the kernel prints it there (net/core/net-procfs.c,
/// summing some fields, said in the help; `rtnl.rs` does the same sums).
pub const STATISTICS: [(&str, &str, &str); 12] = [
    ("rx_bytes", "storwatch_network_receive_bytes_total", "Bytes received (/proc/net/dev)."),
    ("rx_packets", "storwatch_network_receive_packets_total", "Packets received (/proc/net/dev)."),
    ("rx_errors", "storwatch_network_receive_errs_total", "Receive errors (/proc/net/dev errs)."),
    (
        "rx_dropped",
        "storwatch_network_receive_drop_total",
        "Packets received but dropped, e.g. no buffer (/proc/net/dev drop: rx_dropped + rx_missed_errors).",
    ),
    ("rx_fifo_errors", "storwatch_network_receive_fifo_total", "Receive FIFO overruns (/proc/net/dev fifo)."),
    (
        "rx_frame_errors",
        "storwatch_network_receive_frame_total",
        "Receive frame errors (/proc/net/dev frame: length + over + crc + frame errors).",
    ),
    ("tx_bytes", "storwatch_network_transmit_bytes_total", "Bytes sent (/proc/net/dev)."),
    ("tx_packets", "storwatch_network_transmit_packets_total", "Packets sent (/proc/net/dev)."),
    ("tx_errors", "storwatch_network_transmit_errs_total", "Transmit errors (/proc/net/dev errs)."),
    (
        "tx_dropped",
        "storwatch_network_transmit_drop_total",
        "Packets dropped on transmit, e.g. peer or link down (/proc/net/dev drop).",
    ),
    ("tx_fifo_errors", "storwatch_network_transmit_fifo_total", "Transmit FIFO errors (/proc/net/dev fifo)."),
    (
        "tx_carrier_errors",
        "storwatch_network_transmit_carrier_total",
        "Transmit carrier errors: signal loss on the link (/proc/net/dev carrier: carrier + aborted + window + heartbeat errors).",
    ),
];

/// Index of a statistic in [`STATISTICS`].
pub fn stat_index(file: &str) -> usize {
    STATISTICS.iter().position(|(f, _, _)| *f == file).expect("a known statistic")
}

/// A link speed as ethtool reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    Mbps(u64),
    /// SPEED_UNKNOWN, `0`, or no link settings at all.
    Unknown,
}

/// A speed in Mb/s as ethtool gives it (`speed | speed_hi << 16`).
pub fn speed_from_mbps(v: u32) -> Speed {
    match v {
        // SPEED_UNKNOWN is -1 (u32::MAX); older drivers left 0 or the u16 0xffff.
        0 | 0xffff | u32::MAX => Speed::Unknown,
        v => Speed::Mbps(u64::from(v)),
    }
}

/// The duplex as sysfs `duplex` prints it (DUPLEX_HALF 0, DUPLEX_FULL 1, else unknown).
pub fn duplex_name(d: u8) -> &'static str {
    match d {
        0 => "half",
        1 => "full",
        _ => "unknown",
    }
}

/// One interface as sampled; `None` where the kernel gave no value (speed and duplex: the
/// driver has none).
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

/// struct ethtool_cmd (linux/ethtool.h), the legacy ETHTOOL_GSET answer: 44 bytes.
#[repr(C)]
#[derive(Default)]
struct EthtoolCmd {
    cmd: u32,
    supported: u32,
    advertising: u32,
    speed: u16,
    duplex: u8,
    port: u8,
    phy_address: u8,
    transceiver: u8,
    autoneg: u8,
    mdio_support: u8,
    maxtxpkt: u32,
    maxrxpkt: u32,
    speed_hi: u16,
    eth_tp_mdix: u8,
    eth_tp_mdix_ctrl: u8,
    lp_advertising: u32,
    reserved: [u32; 2],
}

/// struct ifreq with `ifr_data` (40 bytes on 64-bit).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolCmd,
    _pad: [u8; 16],
}

/// `SIOCETHTOOL`, a legacy request number (not built with `_IOWR`).
const SIOCETHTOOL: nix::sys::ioctl::ioctl_num_type = 0x8946;
nix::ioctl_readwrite_bad!(ethtool, SIOCETHTOOL, IfReq);
const ETHTOOL_GSET: u32 = 1;

/// A socket to ask the kernel for interfaces' link settings, in this network namespace.
pub struct Ethtool(OwnedFd);

impl Ethtool {
    pub fn open() -> io::Result<Ethtool> {
        // SAFETY: socket has no memory preconditions; the descriptor is checked and owned.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(Ethtool(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Speed and duplex of `name`. `Ok(None)` when the interface has no link settings to give
    /// (EOPNOTSUPP: lo, tun; ENODEV: gone meanwhile), as sysfs answers EINVAL.
    pub fn settings(&self, name: &str) -> io::Result<Option<(Speed, &'static str)>> {
        if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an interface name"));
        }
        let mut cmd = EthtoolCmd { cmd: ETHTOOL_GSET, ..EthtoolCmd::default() };
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: &mut cmd, _pad: [0; 16] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `req` is a valid ifreq whose data points at `cmd`, both live across the call.
        if let Err(errno) = unsafe { ethtool(self.0.as_raw_fd(), &mut req) } {
            let e = io::Error::from(errno);
            return match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) | Some(libc::EINVAL) => Ok(None),
                _ => Err(e),
            };
        }
        let mbps = u32::from(cmd.speed) | (u32::from(cmd.speed_hi) << 16);
        Ok(Some((speed_from_mbps(mbps), duplex_name(cmd.duplex))))
    }
}

/// Adds the interface's speed and duplex (ethtool) to `link` (from rtnetlink).
pub fn with_speed(ethtool: &Ethtool, mut link: NetDev, errors: &mut Vec<CollectError>) -> NetDev {
    match ethtool.settings(&link.name) {
        Ok(Some((speed, duplex))) => {
            link.speed = Some(speed);
            link.duplex = Some(duplex.to_owned());
        }
        Ok(None) => link.speed = Some(Speed::Unknown),
        Err(e) => errors.push(CollectError::io(std::path::Path::new(&format!("ethtool {}", link.name)), &e)),
    }
    link
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
    fn speeds_and_duplex() {
        assert_eq!(speed_from_mbps(10_000), Speed::Mbps(10_000));
        assert_eq!(speed_from_mbps(400_000), Speed::Mbps(400_000), "above 16 bits: speed_hi");
        assert_eq!(speed_from_mbps(u32::MAX), Speed::Unknown);
        assert_eq!(speed_from_mbps(0xffff), Speed::Unknown);
        assert_eq!(speed_from_mbps(0), Speed::Unknown);
        assert_eq!((duplex_name(0), duplex_name(1), duplex_name(0xff)), ("half", "full", "unknown"));
        assert_eq!(std::mem::size_of::<EthtoolCmd>(), 44);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    /// The real kernel: lo has no link settings (EOPNOTSUPP), a name that is no interface is
    /// gone (ENODEV), neither is an error; a name too long for the kernel is.
    #[test]
    fn ethtool_on_this_namespace() {
        let e = Ethtool::open().unwrap();
        assert_eq!(e.settings("lo").unwrap(), None);
        assert_eq!(e.settings("storwatch-no0").unwrap(), None);
        assert!(e.settings("a-name-longer-than-ifnamsiz").is_err());
        let mut errors = Vec::new();
        let lo =
            with_speed(&e, NetDev { name: "lo".into(), mtu: Some(65536), ..NetDev::default() }, &mut errors);
        assert_eq!((lo.speed, lo.duplex, lo.mtu, errors.len()), (Some(Speed::Unknown), None, Some(65536), 0));
    }

    #[test]
    #[expect(clippy::disallowed_methods, reason = "unpacks node_exporter's sysfs fixture with tar")]
    fn fixture_interfaces() {
        // node_exporter's captured sysfs: eth0 links to a PCI device; bond0, dmz and int are
        // plain directories (virtual in the capture).
        let dir = tempfile::tempdir().unwrap();
        let tar = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-exporter/sys.tar.gz");
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
        let (names, missing) = fabric_interfaces(&paths, &["bond0".into(), "gone0".into()]).unwrap();
        assert_eq!((names, missing), (vec!["bond0".to_owned()], vec!["gone0".to_owned()]));
    }

    proptest! {
        #[test]
        fn speeds_round_trip(v in 1u32..4_000_000_000u32) {
            prop_assume!(v != 0xffff);
            prop_assert_eq!(speed_from_mbps(v), Speed::Mbps(u64::from(v)));
        }
    }
}
