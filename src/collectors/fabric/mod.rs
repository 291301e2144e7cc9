//! The storage fabric: the fabric interfaces (`netdev.rs`, sysfs and ethtool) with their link
//! state and counters (`rtnl.rs`, one rtnetlink dump), the host's TCP counters (`tcp.rs`,
//! /proc/net/snmp and netstat), per storage target the TCP state of its connections
//! (`sockdiag.rs`, netlink sock_diag) and an active connect probe (`probe.rs`), NFS mounts' RPC
//! counts (`nfs.rs`, mountstats); and the `network_bandwidth` and `packet_loss` checks.
//!
//! Storage targets are the configured `[fabric] targets` plus the remote end of every
//! established TCP connection to one of the storage `ports`. A discovered target leaves the
//! metrics with its last connection; a configured one stays (with 0 connections). rtnetlink,
//! sock_diag and the probe see the agent's own network namespace: run it in the host's.

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

use super::{CollectError, Collector, ErrorKind, Output};
use crate::checks::{self, LossKind};
use crate::config::{Fabric as FabricConfig, NetworkBandwidthCheck, PacketLossCheck};
use crate::derive::{
    connection_delta, delta_u64, loss_ratio, mean_seconds_per_op, ratio, retransmission_ratio,
};
use crate::metrics::Family;
use crate::paths::Paths;
use netdev::{NetDev, STATISTICS, Speed};
use probe::{ProbeStats, Prober};
use sockdiag::Conn;

/// One connection's counters at the last sample, by socket cookie.
#[derive(Debug, Clone, Copy)]
struct ConnCounters {
    target: SocketAddr,
    total_retrans: u64,
    segs_out: u64,
}

/// What the last run saw, for the next run's window.
#[derive(Debug, Default)]
struct Previous {
    at: Option<Instant>,
    netdevs: BTreeMap<String, NetDev>,
    tcp: BTreeMap<(String, String), u64>,
    conns: BTreeMap<u64, ConnCounters>,
    probes: BTreeMap<SocketAddr, ProbeStats>,
    nfs: BTreeMap<String, nfs::NfsMount>,
}

/// A target's totals, accumulated from its connections' growth (see `derive::connection_delta`).
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    retrans: u64,
    segs_out: u64,
}

/// One target in one run.
#[derive(Debug, Default)]
struct TargetSample {
    conns: Vec<Conn>,
    /// Growth of retransmitted and sent segments over the window (None on the first run).
    window: Option<(u64, u64)>,
}

pub struct Fabric {
    paths: Paths,
    interval: Duration,
    config: FabricConfig,
    bandwidth: NetworkBandwidthCheck,
    loss: PacketLossCheck,
    prober: Option<Prober>,
    prev: Previous,
    totals: BTreeMap<SocketAddr, Totals>,
}

impl Fabric {
    pub fn new(
        paths: Paths,
        interval: Duration,
        config: FabricConfig,
        bandwidth: NetworkBandwidthCheck,
        loss: PacketLossCheck,
    ) -> Self {
        let prober = (config.probe.enabled && !config.targets.is_empty())
            .then(|| Prober::start(&config.targets, config.probe.interval, config.probe.timeout));
        Fabric {
            paths,
            interval,
            config,
            bandwidth,
            loss,
            prober,
            prev: Previous::default(),
            totals: BTreeMap::new(),
        }
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

    /// The targets of this run with their connections and window growth; updates the totals.
    fn targets(&mut self, conns: Vec<Conn>, first: bool) -> BTreeMap<SocketAddr, TargetSample> {
        let mut targets: BTreeMap<SocketAddr, TargetSample> =
            self.config.targets.iter().map(|t| (*t, TargetSample::default())).collect();
        for c in conns {
            if targets.contains_key(&c.remote) || self.config.storage_port(c.remote.port()) {
                targets.entry(c.remote).or_default().conns.push(c);
            }
        }
        let mut seen = BTreeMap::new();
        for (target, t) in &mut targets {
            let (mut retrans, mut segs) = (0u64, 0u64);
            for c in &t.conns {
                let prev = self.prev.conns.get(&c.cookie).filter(|p| p.target == *target);
                retrans += connection_delta(prev.map(|p| p.total_retrans), u64::from(c.total_retrans));
                segs += connection_delta(prev.map(|p| p.segs_out), u64::from(c.segs_out));
                seen.insert(
                    c.cookie,
                    ConnCounters {
                        target: *target,
                        total_retrans: c.total_retrans.into(),
                        segs_out: c.segs_out.into(),
                    },
                );
            }
            let totals = self.totals.entry(*target).or_default();
            totals.retrans = totals.retrans.saturating_add(retrans);
            totals.segs_out = totals.segs_out.saturating_add(segs);
            t.window = (!first).then_some((retrans, segs));
        }
        // A discovered target without connections is gone; its totals go with it.
        self.totals.retain(|t, _| targets.contains_key(t));
        self.prev.conns = seen;
        targets
    }
}

/// A netlink dump's records; records that could not be decoded, or the dump failing, said in
/// `errors` (the latter as no records).
fn dumped<T: Default>(what: &str, dump: std::io::Result<(T, usize)>, errors: &mut Vec<CollectError>) -> T {
    match dump {
        Ok((records, bad)) => {
            if bad > 0 {
                errors.push(CollectError {
                    kind: ErrorKind::Parse,
                    message: format!("{what}: {bad} records could not be decoded"),
                });
            }
            records
        }
        Err(e) => {
            errors.push(CollectError::io(std::path::Path::new(&format!("netlink {what}")), &e));
            T::default()
        }
    }
}

fn link_up_value(d: &NetDev) -> f64 {
    if d.link_up() { 1.0 } else { 0.0 }
}

/// The interface's (errors + drops, packets) growth over the window; None when a counter is
/// missing or went backwards, or the interface was deleted and re-created meanwhile (a new
/// ifindex: its counters restarted, whatever their values).
fn interface_window(prev: &NetDev, cur: &NetDev) -> Option<(u64, u64)> {
    if prev.ifindex != cur.ifindex {
        return None;
    }
    let d = |f: &str| delta_u64(prev.stat(f)?, cur.stat(f)?);
    let bad = d("rx_errors")? + d("tx_errors")? + d("rx_dropped")? + d("tx_dropped")?;
    let good = d("rx_packets")? + d("tx_packets")?;
    Some((bad, good))
}

impl Collector for Fabric {
    fn name(&self) -> &'static str {
        "fabric"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Result<Output, CollectError> {
        let now = Instant::now();
        let mut errors = Vec::new();
        let (names, missing) = netdev::fabric_interfaces(&self.paths, &self.config.interfaces)?;
        for m in missing {
            errors.push(CollectError {
                kind: ErrorKind::Io,
                message: format!(
                    "configured fabric interface {m} not found in {}",
                    self.paths.sys("class/net").display()
                ),
            });
        }
        let (mut links, ethtool) = if names.is_empty() {
            (HashMap::new(), None)
        } else {
            let ethtool = netdev::Ethtool::open()
                .map_err(|e| errors.push(CollectError::io(std::path::Path::new("ethtool socket"), &e)))
                .ok();
            (dumped("rtnetlink", rtnl::dump().map(|p| (p.links, p.bad)), &mut errors), ethtool)
        };
        let netdevs: BTreeMap<String, NetDev> = names
            .iter()
            .filter_map(|n| match links.remove(n) {
                Some(link) => Some(match &ethtool {
                    Some(e) => netdev::with_speed(e, link, &mut errors),
                    None => link,
                }),
                None => {
                    errors.push(CollectError {
                        kind: ErrorKind::Io,
                        message: format!(
                            "fabric interface {n} is in {} but not in the agent's network namespace \
                             (run the agent in the host's)",
                            self.paths.sys("class/net").display()
                        ),
                    });
                    None
                }
            })
            .map(|d| (d.name.clone(), d))
            .collect();
        let tcp = self.read_tcp(&mut errors);
        let conns = dumped("sock_diag", sockdiag::dump().map(|p| (p.conns, p.bad)), &mut errors);
        let first = self.prev.at.is_none();
        let window = self.prev.at.map(|at| now.duration_since(at).as_secs_f64());
        let targets = self.targets(conns, first);
        let probes = self.prober.as_ref().map(Prober::snapshot).unwrap_or_default();
        let mounts = self.read_nfs(&mut errors);

        let mut families = Vec::new();
        let mut results = Vec::new();

        // Interfaces.
        let mut info = Family::info("storwatch_network_info", "A fabric interface's operstate and duplex.");
        let mut up =
            Family::gauge("storwatch_network_up", "1 when the fabric interface's link is up (operstate).");
        let mut speed = Family::gauge(
            "storwatch_network_speed_bytes",
            "Link speed in bytes per second (ethtool speed, Mb/s x 125000); absent when the interface reports none.",
        );
        let mut mtu = Family::gauge("storwatch_network_mtu_bytes", "MTU of the fabric interface.");
        let mut changes = Family::counter(
            "storwatch_network_carrier_changes_total",
            "Times the link went up or down (carrier_changes).",
        );
        let mut stats: Vec<Family> =
            STATISTICS.iter().map(|(_, name, help)| Family::counter(name, help)).collect();
        let mut loss = Family::gauge(
            "storwatch_network_loss_ratio",
            "(errors + drops) / (packets + errors + drops) of the fabric interface over the window, both directions.",
        );
        for (name, d) in &netdevs {
            info.push(
                [
                    ("interface", name),
                    ("operstate", d.operstate.as_deref().unwrap_or("")),
                    ("duplex", d.duplex.as_deref().unwrap_or("")),
                ],
                1.0,
            );
            up.push([("interface", name)], link_up_value(d));
            let mbps = match d.speed {
                Some(Speed::Mbps(s)) => Some(s),
                _ => None,
            };
            if let Some(s) = mbps {
                speed.push([("interface", name)], s as f64 * 125_000.0);
            }
            if let Some(m) = d.mtu {
                mtu.push([("interface", name)], m as f64);
            }
            if let Some(c) = d.carrier_changes {
                changes.push([("interface", name)], c as f64);
            }
            for (f, v) in stats.iter_mut().zip(d.stats) {
                if let Some(v) = v {
                    f.push([("interface", name)], v as f64);
                }
            }
            if self.bandwidth.enabled && d.speed.is_some() {
                results.push(checks::network_bandwidth(&self.bandwidth, name, mbps, d.link_up()));
            }
            let win = self.prev.netdevs.get(name).filter(|_| !first).and_then(|p| interface_window(p, d));
            if let Some((bad, good)) = win {
                let r = loss_ratio(bad, good);
                loss.push([("interface", name)], r);
                if self.loss.enabled {
                    results.push(checks::packet_loss(&self.loss, LossKind::Interface, name, r));
                }
            }
        }
        families.extend([info, up, speed, mtu, changes]);
        families.extend(stats);
        families.push(loss);

        // Host-wide TCP.
        for (group, field, name, help) in tcp::COUNTERS {
            if let Some(v) = tcp.get(&(group.to_owned(), field.to_owned())) {
                families.push(Family::counter(name, help).with_value(*v as f64));
            }
        }
        let tcp_delta = |field: &str| {
            let key = ("Tcp".to_owned(), field.to_owned());
            delta_u64(*self.prev.tcp.get(&key)?, *tcp.get(&key)?)
        };
        if let (false, Some(retrans), Some(out)) = (first, tcp_delta("RetransSegs"), tcp_delta("OutSegs")) {
            families.push(
                Family::gauge(
                    "storwatch_tcp_retransmit_ratio",
                    "Host-wide TCP retransmitted / sent segments over the window (Tcp RetransSegs / OutSegs).",
                )
                .with_value(ratio(retrans, out)),
            );
        }

        // Targets.
        let mut connections = Family::gauge(
            "storwatch_fabric_target_connections",
            "Established TCP connections to the storage target.",
        );
        let mut rtt = Family::gauge(
            "storwatch_fabric_target_rtt_seconds",
            "Smoothed round-trip time, mean over the target's connections (tcp_info rtt).",
        );
        let mut rttvar = Family::gauge(
            "storwatch_fabric_target_rttvar_seconds",
            "Round-trip time variation (mean deviation), mean over the target's connections (tcp_info rttvar).",
        );
        let mut lost = Family::gauge(
            "storwatch_fabric_target_lost_segments",
            "Segments currently considered lost on the target's connections (tcp_info lost).",
        );
        let mut retrans_total = Family::counter(
            "storwatch_fabric_target_retransmitted_segments_total",
            "Segments retransmitted to the target (tcp_info total_retrans), summed as each connection grew since the agent started.",
        );
        let mut segs_total = Family::counter(
            "storwatch_fabric_target_sent_segments_total",
            "Segments sent to the target, retransmits included (tcp_info segs_out), summed as each connection grew since the agent started.",
        );
        let mut retrans_ratio = Family::gauge(
            "storwatch_fabric_target_retransmit_ratio",
            "Retransmitted / sent segments of the target's connections over the window.",
        );
        for (target, t) in &targets {
            let label = target.to_string();
            let l = [("target", label.as_str())];
            connections.push(l, t.conns.len() as f64);
            if !t.conns.is_empty() {
                let n = t.conns.len() as f64;
                let mean =
                    |f: fn(&Conn) -> u32| t.conns.iter().map(|c| f64::from(f(c))).sum::<f64>() / n / 1e6;
                rtt.push(l, mean(|c| c.rtt_us));
                rttvar.push(l, mean(|c| c.rttvar_us));
                lost.push(l, t.conns.iter().map(|c| f64::from(c.lost)).sum());
            }
            if let Some(tot) = self.totals.get(target) {
                retrans_total.push(l, tot.retrans as f64);
                segs_total.push(l, tot.segs_out as f64);
            }
            if let (Some((r, s)), false) = (t.window, t.conns.is_empty()) {
                let v = ratio(r, s);
                retrans_ratio.push(l, v);
                if self.loss.enabled {
                    results.push(checks::packet_loss(&self.loss, LossKind::Retransmits, &label, v));
                }
            }
        }
        families.extend([connections, rtt, rttvar, lost, retrans_total, segs_total, retrans_ratio]);

        // Probes.
        let mut success = Family::gauge(
            "storwatch_fabric_probe_success",
            "1 when the last TCP connect probe to the target succeeded.",
        );
        let mut latency = Family::gauge(
            "storwatch_fabric_probe_connect_seconds",
            "Connect time of the last successful probe to the target.",
        );
        let mut attempts = Family::counter(
            "storwatch_fabric_probe_attempts_total",
            "TCP connect probes sent to the target.",
        );
        let mut failures = Family::counter(
            "storwatch_fabric_probe_failures_total",
            "TCP connect probes that timed out, were refused or found no route.",
        );
        let mut probe_loss = Family::gauge(
            "storwatch_fabric_probe_loss_ratio",
            "Failed / attempted probes to the target over the window.",
        );
        for (target, p) in &probes {
            let label = target.to_string();
            let l = [("target", label.as_str())];
            if let Some(s) = p.last_success {
                success.push(l, if s { 1.0 } else { 0.0 });
            }
            if let Some(s) = p.last_latency {
                latency.push(l, s);
            }
            attempts.push(l, p.attempts as f64);
            failures.push(l, p.failures as f64);
            let prev = self.prev.probes.get(target).copied().unwrap_or_default();
            let (a, f) = (delta_u64(prev.attempts, p.attempts), delta_u64(prev.failures, p.failures));
            if let (false, Some(a), Some(f)) = (first, a, f)
                && a > 0
            {
                let v = ratio(f, a);
                probe_loss.push(l, v);
                if self.loss.enabled {
                    results.push(checks::packet_loss(&self.loss, LossKind::Probe, &label, v));
                }
            }
        }
        families.extend([success, latency, attempts, failures, probe_loss]);
        // NFS mounts.
        let mut nfs_ops = Family::counter(
            "storwatch_nfs_operations_total",
            "NFS RPC operations completed on the mount (mountstats).",
        );
        let mut nfs_tx = Family::counter(
            "storwatch_nfs_transmissions_total",
            "NFS RPC transmissions on the mount, retransmissions included (mountstats).",
        );
        let mut nfs_major = Family::counter(
            "storwatch_nfs_major_timeouts_total",
            "NFS RPC major timeouts on the mount: the server did not answer within timeo x retrans (mountstats).",
        );
        let mut nfs_rtt_total = Family::counter(
            "storwatch_nfs_rtt_seconds_total",
            "Cumulative RPC round-trip time on the mount (mountstats).",
        );
        let mut nfs_rtt = Family::gauge(
            "storwatch_nfs_rtt_seconds",
            "Mean RPC round-trip time per operation over the window.",
        );
        let mut nfs_retrans = Family::gauge(
            "storwatch_nfs_retransmit_ratio",
            "Share of the mount's RPC transmissions over the window that were retransmissions.",
        );
        let mut nfs_now = BTreeMap::new();
        for m in mounts {
            let l = [("mountpoint", m.mountpoint.as_str()), ("export", m.export.as_str())];
            nfs_ops.push(l, m.ops as f64);
            nfs_tx.push(l, m.transmissions as f64);
            nfs_major.push(l, m.major_timeouts as f64);
            nfs_rtt_total.push(l, m.rtt_ms as f64 / 1000.0);
            let prev = self.prev.nfs.get(&m.mountpoint).filter(|p| p.export == m.export && !first);
            let d = |f: fn(&nfs::NfsMount) -> u64| prev.and_then(|p| delta_u64(f(p), f(&m)));
            if let (Some(ops), Some(tx), Some(rtt)) = (d(|m| m.ops), d(|m| m.transmissions), d(|m| m.rtt_ms))
            {
                nfs_rtt.push(l, mean_seconds_per_op(rtt, ops));
                nfs_retrans.push(l, retransmission_ratio(tx, ops));
            }
            nfs_now.insert(m.mountpoint.clone(), m);
        }
        families.extend([nfs_ops, nfs_tx, nfs_major, nfs_rtt_total, nfs_rtt, nfs_retrans]);

        if let Some(w) = window {
            families.push(
                Family::gauge(
                    "storwatch_fabric_window_seconds",
                    "Length of the window the fabric ratios cover.",
                )
                .with_value(w),
            );
        }

        self.prev.at = Some(now);
        self.prev.netdevs = netdevs;
        self.prev.tcp = tcp;
        self.prev.probes = probes;
        self.prev.nfs = nfs_now;
        Ok(Output { families, checks: results, errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(ifindex: u64, rx_packets: u64, rx_dropped: u64) -> NetDev {
        let mut d = NetDev { name: "eth0".into(), ifindex: Some(ifindex), ..NetDev::default() };
        for f in ["rx_errors", "tx_errors", "tx_dropped", "tx_packets"] {
            d.stats[netdev::stat_index(f)] = Some(0);
        }
        d.stats[netdev::stat_index("rx_packets")] = Some(rx_packets);
        d.stats[netdev::stat_index("rx_dropped")] = Some(rx_dropped);
        d
    }

    #[test]
    fn interface_windows() {
        assert_eq!(interface_window(&dev(2, 100, 0), &dev(2, 190, 10)), Some((10, 90)));
        assert_eq!(interface_window(&dev(2, 100, 0), &dev(2, 50, 0)), None, "counters went back");
        assert_eq!(interface_window(&dev(2, 100, 0), &dev(7, 500, 0)), None, "re-created: new ifindex");
        let mut partial = dev(2, 100, 0);
        partial.stats[netdev::stat_index("tx_errors")] = None;
        assert_eq!(interface_window(&partial, &dev(2, 100, 0)), None);
    }

    fn conn(cookie: u64, remote: &str, retrans: u32, segs: u32) -> Conn {
        Conn {
            cookie,
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: remote.parse().unwrap(),
            rtt_us: 100,
            rttvar_us: 10,
            total_retrans: retrans,
            lost: 0,
            segs_out: segs,
        }
    }

    #[test]
    fn targets_sum_each_connections_growth() {
        let config = FabricConfig {
            targets: vec!["10.0.0.9:3260".parse().unwrap()],
            probe: crate::config::Probe { enabled: false, ..Default::default() },
            ..FabricConfig::default()
        };
        let mut f = Fabric::new(
            Paths::default(),
            Duration::from_secs(5),
            config,
            NetworkBandwidthCheck::default(),
            PacketLossCheck::default(),
        );
        let a: SocketAddr = "10.0.0.5:3260".parse().unwrap();
        let nine: SocketAddr = "10.0.0.9:3260".parse().unwrap();
        // First sample: no window; the totals start at what the connections had.
        let t = f.targets(vec![conn(1, "10.0.0.5:3260", 5, 100), conn(2, "10.0.0.7:22", 9, 9)], true);
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), [a, nine], "port 22 is no storage port");
        assert_eq!(t[&a].window, None);
        assert_eq!((f.totals[&a].retrans, f.totals[&a].segs_out), (5, 100));
        // Connection 1 grows by 1/50; connection 3 opens with 2/10; the window has both.
        let t = f.targets(vec![conn(1, "10.0.0.5:3260", 6, 150), conn(3, "10.0.0.5:3260", 2, 10)], false);
        assert_eq!(t[&a].window, Some((3, 60)));
        assert_eq!((f.totals[&a].retrans, f.totals[&a].segs_out), (8, 160));
        // Connection 1 closes: the sum over connections drops, the totals do not.
        let t = f.targets(vec![conn(3, "10.0.0.5:3260", 2, 30)], false);
        assert_eq!(t[&a].window, Some((0, 20)));
        assert_eq!((f.totals[&a].retrans, f.totals[&a].segs_out), (8, 180));
        // No connections left: the discovered target goes, the configured one stays.
        let t = f.targets(vec![], false);
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), [nine]);
        assert!(!f.totals.contains_key(&a));
        assert_eq!(t[&nine].window, Some((0, 0)));
    }
}
