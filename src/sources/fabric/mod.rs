//! The storage fabric: the fabric interfaces (`netdev.rs`, sysfs and ethtool) with their link
//! state and counters (`rtnl.rs`, one rtnetlink dump), the host's TCP counters (`tcp.rs`,
//! /proc/net/snmp and netstat), per storage target the TCP state of its connections
//! (`sockdiag.rs`, netlink sock_diag) and an active connect probe (`probe.rs`), NFS mounts' RPC
//! counts (`nfs.rs`, mountstats).
//!
//! Storage targets are the configured `[fabric] targets` plus the remote end of every
//! established TCP connection to one of the storage `ports`. A discovered target leaves the
//! sample with its last connection; a configured one stays (with no connections). rtnetlink,
//! sock_diag and the probe see the agent's own network namespace: run it in the host's.

pub mod bytecode;
pub mod netdev;
mod netlink;
pub mod nfs;
pub mod probe;
pub mod rtnl;
pub mod sockdiag;
pub mod tcp;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, de::Error};

use super::{Collected, Sample as AnySample, Source};
use crate::error::{CollectError, ErrorKind};
use crate::paths::Paths;
use crate::values::{parse_port_range, positive_duration};
use netdev::NetDev;
use probe::{ProbeStats, Prober};
use sockdiag::{Conn, Key};

/// The storage fabric: interfaces, targets and the active probe (`[fabric]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Fabric interfaces; empty: every physical interface.
    #[serde(deserialize_with = "interface_names")]
    pub interfaces: Vec<String>,
    /// Storage targets as `ip:port` (`[v6]:port` for IPv6).
    #[serde(deserialize_with = "socket_addrs")]
    pub targets: Vec<SocketAddr>,
    /// Remote ports whose established connections are storage targets (3260 iSCSI, 2049 NFS,
    /// 6789 and 3300 Ceph monitors, 6800-7300 Ceph OSDs): numbers or `"a-b"` ranges.
    #[serde(deserialize_with = "port_ranges")]
    pub ports: Vec<(u16, u16)>,
    pub probe: Probe,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interfaces: Vec::new(),
            targets: Vec::new(),
            ports: vec![(3260, 3260), (2049, 2049), (6789, 6789), (3300, 3300), (6800, 7300)],
            probe: Probe::default(),
        }
    }
}

impl Config {
    /// Whether `port` is one of the storage ports.
    pub fn storage_port(&self, port: u16) -> bool {
        self.ports.iter().any(|(a, b)| (*a..=*b).contains(&port))
    }
}

/// The active probe: a TCP connect to each configured target every `interval`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Probe {
    pub enabled: bool,
    #[serde(deserialize_with = "positive_duration")]
    pub interval: Duration,
    /// A connect not completed in this time is a lost probe. Below 1 s (the kernel's initial
    /// SYN retransmission timeout), a lost SYN or SYN-ACK makes a lost probe.
    #[serde(deserialize_with = "positive_duration")]
    pub timeout: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        Probe { enabled: true, interval: Duration::from_secs(5), timeout: Duration::from_millis(500) }
    }
}

fn interface_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    // IFNAMSIZ is 16 with the NUL; the kernel refuses '/', ':' and whitespace in names.
    if let Some(bad) = v.iter().find(|n| {
        n.is_empty() || n.len() > 15 || n.contains(['/', ':']) || n.chars().any(char::is_whitespace)
    }) {
        return Err(D::Error::custom(format!("{bad:?} is not a network interface name")));
    }
    Ok(v)
}

fn socket_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| match s.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => Ok(a),
            _ => Err(D::Error::custom(format!(
                "invalid target {s:?}; write it as ip:port, like \"10.0.0.5:3260\" or \"[fd00::5]:3260\""
            ))),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortItem {
    Port(i64),
    Range(String),
}

fn port_ranges<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u16, u16)>, D::Error> {
    Vec::<PortItem>::deserialize(d)?
        .into_iter()
        .map(|item| {
            let parsed = match &item {
                PortItem::Port(p) => u16::try_from(*p).ok().filter(|p| *p > 0).map(|p| (p, p)),
                PortItem::Range(s) => parse_port_range(s),
            };
            parsed.ok_or_else(|| {
                let shown = match item {
                    PortItem::Port(p) => p.to_string(),
                    PortItem::Range(s) => format!("{s:?}"),
                };
                D::Error::custom(format!(
                    "invalid port {shown}; write a port from 1 to 65535 or a range like \"6800-7300\""
                ))
            })
        })
        .collect()
}

/// One read of the fabric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// The fabric interfaces found in the agent's network namespace, by name.
    pub interfaces: BTreeMap<String, NetDev>,
    /// `/proc/net/snmp` and `/proc/net/netstat` counters by (group, field).
    pub tcp: BTreeMap<(String, String), u64>,
    /// Every storage target (configured, or discovered by port) with its established connections.
    pub targets: BTreeMap<SocketAddr, Vec<Conn>>,
    /// The connect probes' counts so far, per configured target.
    pub probes: BTreeMap<SocketAddr, ProbeStats>,
    /// NFS mounts' RPC counts.
    pub nfs: Vec<nfs::NfsMount>,
}

pub struct Fabric {
    paths: Paths,
    interval: Duration,
    config: Config,
    prober: Option<Prober>,
    conns: Conns,
}

/// How often the kernel's established-socket table is walked for storage connections.
const REWALK: Duration = Duration::from_secs(60);
/// Beyond this many known storage connections one filtered walk is cheaper than a lookup each.
const LOOKUP_MAX: usize = 64;

/// Which connections are storage connections changes when one opens or closes (iSCSI sessions,
/// NFS mounts and Ceph daemons keep theirs for days), far less often than their counters move.
/// A walk of the kernel's socket table (`sockdiag::dump`, filtered) finds them every `REWALK`;
/// between walks each known one is looked up by its key, one hash lookup, and one that closed
/// answers so. A connection opened since the last walk is found by the next one with its whole
/// count (it started at zero), so the target totals miss nothing; only its `connections` and
/// RTT wait for that walk. A walk also follows a failed read, and replaces the lookups when
/// there are more than `LOOKUP_MAX` known connections.
struct Conns {
    filter: bytecode::Filter,
    known: Vec<Key>,
    last_walk: Option<Instant>,
}

impl Conns {
    fn new(config: &Config) -> Conns {
        Conns {
            filter: bytecode::compile(&config.ports, &config.targets),
            known: Vec::new(),
            last_walk: None,
        }
    }

    /// Whether this run walks the table (else it looks the known connections up).
    fn walk_now(&mut self, now: Instant) -> bool {
        let walk = self.known.len() > LOOKUP_MAX
            || self.last_walk.is_none_or(|t| now.saturating_duration_since(t) >= REWALK);
        if walk {
            self.last_walk = Some(now);
        }
        walk
    }

    /// The storage connections now (and every connection the filter let through), with what
    /// went wrong reading them in `errors`.
    fn read(&mut self, errors: &mut Vec<CollectError>) -> Vec<Conn> {
        if self.filter == bytecode::Filter::Nothing {
            return Vec::new();
        }
        let now = Instant::now();
        let walk = self.walk_now(now);
        let result = match (&self.filter, walk) {
            (_, false) => sockdiag::lookup(&self.known),
            (bytecode::Filter::Program(p), true) => sockdiag::dump(Some(p)),
            (_, true) => sockdiag::dump(None),
        };
        match result {
            Ok(p) => {
                self.known = p.keys;
                dumped("sock_diag", Ok((p.conns, p.bad)), errors)
            }
            Err(e) => {
                // Walk again next time.
                self.last_walk = None;
                dumped("sock_diag", Err(e), errors)
            }
        }
    }
}

impl Fabric {
    pub fn new(paths: Paths, interval: Duration, config: Config) -> Self {
        let prober = (config.probe.enabled && !config.targets.is_empty())
            .then(|| Prober::start(&config.targets, config.probe.interval, config.probe.timeout));
        let conns = Conns::new(&config);
        Fabric { paths, interval, config, prober, conns }
    }

    fn read_tcp(&self, errors: &mut Vec<CollectError>) -> BTreeMap<(String, String), u64> {
        let mut all = BTreeMap::new();
        for rel in ["net/snmp", "net/netstat"] {
            let path = self.paths.proc(rel);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let (values, bad) = tcp::parse_pairs(&String::from_utf8_lossy(&bytes));
                    for n in bad {
                        errors.push(CollectError::parse(
                            &path,
                            format_args!("line {n}: not a header/value pair"),
                        ));
                    }
                    all.extend(values);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(CollectError::io(&path, &e)),
            }
        }
        all
    }

    /// The NFS mounts in PID 1's mountstats (the host's mounts, also from a container), else
    /// this process's.
    fn read_nfs(&self, errors: &mut Vec<CollectError>) -> Vec<nfs::NfsMount> {
        let Some(path) = [self.paths.proc("1/mountstats"), self.paths.proc("self/mountstats")]
            .into_iter()
            .find(|p| p.exists())
        else {
            return Vec::new();
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let (mounts, bad) = nfs::parse_mountstats(&String::from_utf8_lossy(&bytes));
                for n in bad {
                    errors.push(CollectError::parse(
                        &path,
                        format_args!("line {n}: not a per-op statistics line"),
                    ));
                }
                mounts
            }
            Err(e) => {
                errors.push(CollectError::io(&path, &e));
                Vec::new()
            }
        }
    }

    /// The storage targets of `conns`: the configured ones (with or without connections) and the
    /// remote end of each connection to a storage port.
    pub fn targets(&self, conns: Vec<Conn>) -> BTreeMap<SocketAddr, Vec<Conn>> {
        let mut targets: BTreeMap<SocketAddr, Vec<Conn>> =
            self.config.targets.iter().map(|t| (*t, Vec::new())).collect();
        for c in conns {
            if targets.contains_key(&c.remote) || self.config.storage_port(c.remote.port()) {
                targets.entry(c.remote).or_default().push(c);
            }
        }
        targets
    }

    pub fn read(&mut self) -> Result<(Sample, Vec<CollectError>), CollectError> {
        let mut errors = Vec::new();
        let (names, missing) = netdev::fabric_interfaces(&self.paths, &self.config.interfaces)?;
        for m in missing {
            errors.push(CollectError::new(
                ErrorKind::Io,
                format!(
                    "configured fabric interface {m} not found in {}",
                    self.paths.sys("class/net").display()
                ),
            ));
        }
        let (mut links, ethtool) = if names.is_empty() {
            (HashMap::new(), None)
        } else {
            let ethtool = netdev::Ethtool::open()
                .map_err(|e| errors.push(CollectError::io(std::path::Path::new("ethtool socket"), &e)))
                .ok();
            (dumped("rtnetlink", rtnl::dump().map(|p| (p.links, p.bad)), &mut errors), ethtool)
        };
        let interfaces: BTreeMap<String, NetDev> = names
            .iter()
            .filter_map(|n| match links.remove(n) {
                Some(link) => Some(match &ethtool {
                    Some(e) => netdev::with_speed(e, link, &mut errors),
                    None => link,
                }),
                None => {
                    errors.push(CollectError::new(
                        ErrorKind::Io,
                        format!(
                            "fabric interface {n} is in {} but not in the agent's network namespace \
                             (run the agent in the host's)",
                            self.paths.sys("class/net").display()
                        ),
                    ));
                    None
                }
            })
            .map(|d| (d.name.clone(), d))
            .collect();
        let tcp = self.read_tcp(&mut errors);
        let conns = self.conns.read(&mut errors);
        let targets = self.targets(conns);
        let probes = self.prober.as_ref().map(Prober::snapshot).unwrap_or_default();
        let nfs = self.read_nfs(&mut errors);
        Ok((Sample { interfaces, tcp, targets, probes, nfs }, errors))
    }
}

impl Source for Fabric {
    fn name(&self) -> &'static str {
        "fabric"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        let (sample, errors) = self.read()?;
        Ok(Collected::new(AnySample::Fabric(sample), errors))
    }
}

/// A netlink dump's records; records that could not be decoded, or the dump failing, said in
/// `errors` (the latter as no records).
fn dumped<T: Default>(what: &str, dump: std::io::Result<(T, usize)>, errors: &mut Vec<CollectError>) -> T {
    match dump {
        Ok((records, bad)) => {
            if bad > 0 {
                errors.push(CollectError::new(
                    ErrorKind::Parse,
                    format!("{what}: {bad} records could not be decoded"),
                ));
            }
            records
        }
        Err(e) => {
            errors.push(CollectError::io(std::path::Path::new(&format!("netlink {what}")), &e));
            T::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(cookie: u64, remote: &str) -> Conn {
        Conn {
            cookie,
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: remote.parse().unwrap(),
            rtt_us: 100,
            rttvar_us: 10,
            total_retrans: 0,
            lost: 0,
            segs_out: 0,
        }
    }

    #[test]
    fn targets_configured_and_discovered_by_port() {
        let config = Config {
            targets: vec!["10.0.0.9:3260".parse().unwrap()],
            probe: Probe { enabled: false, ..Probe::default() },
            ..Config::default()
        };
        let f = Fabric::new(Paths::default(), Duration::from_secs(5), config);
        let t = f.targets(vec![conn(1, "10.0.0.5:3260"), conn(2, "10.0.0.7:22"), conn(3, "10.0.0.5:3260")]);
        let keys: Vec<String> = t.keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["10.0.0.5:3260", "10.0.0.9:3260"], "port 22 is no storage port");
        assert_eq!(t[&"10.0.0.5:3260".parse().unwrap()].len(), 2);
        assert!(t[&"10.0.0.9:3260".parse().unwrap()].is_empty(), "configured: kept without connections");
        let t = f.targets(vec![]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn walks_are_periodic_and_lookups_fill_in() {
        let mut c = Conns::new(&Config::default());
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(c.walk_now(at(0)), "the first run walks");
        assert!(!c.walk_now(at(15)) && !c.walk_now(at(45)), "then lookups");
        assert!(c.walk_now(at(60)), "and a walk every REWALK");
        assert!(!c.walk_now(at(75)));
        c.last_walk = None;
        assert!(c.walk_now(at(80)), "after a failed read");
        c.known =
            vec![Key { family: 2, id: netlink_packet_sock_diag::inet::SocketId::new_v4() }; LOOKUP_MAX + 1];
        assert!(c.walk_now(at(95)), "many known connections: one walk");
        assert_eq!(
            Conns::new(&Config { ports: vec![], ..Config::default() }).filter,
            bytecode::Filter::Nothing
        );
    }

    #[test]
    fn storage_ports() {
        let d = Config::default();
        assert!([3260, 2049, 6789, 3300, 6800, 7300].iter().all(|p| d.storage_port(*p)));
        assert!(!d.storage_port(7301) && !d.storage_port(22));
    }
}
