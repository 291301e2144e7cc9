//! The storage fabric over a window: interface loss, the host's TCP retransmit ratio, each
//! target's retransmits summed from its connections' own growth, probe loss, NFS RTT and
//! retransmissions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::derive::{
    connection_delta, delta_u64, loss_ratio, mean_seconds_per_op, ratio, retransmission_ratio,
};
use super::seconds_since;
use crate::sources::fabric::Sample;
use crate::sources::fabric::netdev::NetDev;

/// A target's retransmitted and sent segments: since the agent started, and over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Target {
    pub retransmitted: u64,
    pub sent: u64,
    /// Growth over the window (None on the first sample).
    pub window: Option<(u64, u64)>,
}

/// An NFS mount's window: mean RTT per operation and the share of retransmissions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NfsWindow {
    pub rtt_seconds: f64,
    pub retransmit_ratio: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fabric {
    pub at: Instant,
    pub sample: Sample,
    /// Seconds since the previous sample; None on the first.
    pub window: Option<f64>,
    /// Per interface: (errors + drops) / all packets over the window.
    pub loss: BTreeMap<String, f64>,
    /// Host-wide TCP RetransSegs / OutSegs over the window.
    pub tcp_retransmit_ratio: Option<f64>,
    /// Per target in the sample.
    pub targets: BTreeMap<SocketAddr, Target>,
    /// Per probed target: failed / attempted probes over the window, when there were attempts.
    pub probe_loss: BTreeMap<SocketAddr, f64>,
    /// Per NFS mountpoint.
    pub nfs: BTreeMap<String, NfsWindow>,
}

/// The interface's (errors + drops, packets) growth over the window; None when a counter is
/// missing or went backwards, or the interface was deleted and re-created meanwhile (a new
/// ifindex: its counters restarted, whatever their values).
pub fn interface_window(prev: &NetDev, cur: &NetDev) -> Option<(u64, u64)> {
    if prev.ifindex != cur.ifindex {
        return None;
    }
    let d = |f: &str| delta_u64(prev.stat(f)?, cur.stat(f)?);
    let bad = d("rx_errors")? + d("tx_errors")? + d("rx_dropped")? + d("tx_dropped")?;
    let good = d("rx_packets")? + d("tx_packets")?;
    Some((bad, good))
}

impl Fabric {
    pub fn new(sample: Sample, prev: Option<Fabric>, at: Instant) -> Fabric {
        let window = prev.as_ref().map(|p| seconds_since(p.at, at));
        let mut f = Fabric {
            at,
            window,
            loss: BTreeMap::new(),
            tcp_retransmit_ratio: None,
            targets: BTreeMap::new(),
            probe_loss: BTreeMap::new(),
            nfs: BTreeMap::new(),
            sample,
        };
        f.targets = f.target_totals(prev.as_ref());
        let Some(prev) = prev else { return f };
        let s = &f.sample;
        for (name, d) in &s.interfaces {
            if let Some((bad, good)) = prev.sample.interfaces.get(name).and_then(|p| interface_window(p, d)) {
                f.loss.insert(name.clone(), loss_ratio(bad, good));
            }
        }
        let tcp_delta = |field: &str| {
            let key = ("Tcp".to_owned(), field.to_owned());
            delta_u64(*prev.sample.tcp.get(&key)?, *s.tcp.get(&key)?)
        };
        if let (Some(retrans), Some(out)) = (tcp_delta("RetransSegs"), tcp_delta("OutSegs")) {
            f.tcp_retransmit_ratio = Some(ratio(retrans, out));
        }
        for (target, p) in &s.probes {
            let before = prev.sample.probes.get(target).copied().unwrap_or_default();
            let (a, failed) =
                (delta_u64(before.attempts, p.attempts), delta_u64(before.failures, p.failures));
            if let (Some(a), Some(failed)) = (a, failed)
                && a > 0
            {
                f.probe_loss.insert(*target, ratio(failed, a));
            }
        }
        for m in &s.nfs {
            let Some(p) =
                prev.sample.nfs.iter().find(|p| p.mountpoint == m.mountpoint && p.export == m.export)
            else {
                continue;
            };
            let d = |get: fn(&crate::sources::fabric::nfs::NfsMount) -> u64| delta_u64(get(p), get(m));
            if let (Some(ops), Some(tx), Some(rtt)) = (d(|m| m.ops), d(|m| m.transmissions), d(|m| m.rtt_ms))
            {
                let w = NfsWindow {
                    rtt_seconds: mean_seconds_per_op(rtt, ops),
                    retransmit_ratio: retransmission_ratio(tx, ops),
                };
                f.nfs.insert(m.mountpoint.clone(), w);
            }
        }
        f
    }

    /// Each target's totals and window, from each of its connections' growth since the previous
    /// sample (see `derive::connection_delta`); a target gone from the sample takes its totals
    /// with it.
    fn target_totals(&self, prev: Option<&Fabric>) -> BTreeMap<SocketAddr, Target> {
        // The previous sample's connections, by socket cookie, with the target they went to.
        let before: BTreeMap<u64, (SocketAddr, u64, u64)> = prev
            .iter()
            .flat_map(|p| &p.sample.targets)
            .flat_map(|(t, conns)| {
                conns.iter().map(|c| (c.cookie, (*t, u64::from(c.total_retrans), u64::from(c.segs_out))))
            })
            .collect();
        self.sample
            .targets
            .iter()
            .map(|(target, conns)| {
                let (mut retrans, mut segs) = (0u64, 0u64);
                for c in conns {
                    let old = before.get(&c.cookie).filter(|(t, _, _)| t == target);
                    retrans += connection_delta(old.map(|o| o.1), u64::from(c.total_retrans));
                    segs += connection_delta(old.map(|o| o.2), u64::from(c.segs_out));
                }
                let total = prev.and_then(|p| p.targets.get(target)).copied().unwrap_or_default();
                let t = Target {
                    retransmitted: total.retransmitted.saturating_add(retrans),
                    sent: total.sent.saturating_add(segs),
                    window: prev.is_some().then_some((retrans, segs)),
                };
                (*target, t)
            })
            .collect()
    }

    /// Retransmitted / sent segments of a target's connections over the window, when it has
    /// connections and there is a window.
    pub fn retransmit_ratio(&self, target: &SocketAddr) -> Option<f64> {
        let conns = self.sample.targets.get(target)?;
        let (r, s) = self.targets.get(target)?.window?;
        (!conns.is_empty()).then(|| ratio(r, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fabric::netdev::stat_index;
    use crate::sources::fabric::sockdiag::Conn;

    fn dev(ifindex: u64, rx_packets: u64, rx_dropped: u64) -> NetDev {
        let mut d = NetDev { name: "eth0".into(), ifindex: Some(ifindex), ..NetDev::default() };
        for f in ["rx_errors", "tx_errors", "tx_dropped", "tx_packets"] {
            d.stats[stat_index(f)] = Some(0);
        }
        d.stats[stat_index("rx_packets")] = Some(rx_packets);
        d.stats[stat_index("rx_dropped")] = Some(rx_dropped);
        d
    }

    #[test]
    fn interface_windows() {
        assert_eq!(interface_window(&dev(2, 100, 0), &dev(2, 190, 10)), Some((10, 90)));
        assert_eq!(interface_window(&dev(2, 100, 0), &dev(2, 50, 0)), None, "counters went back");
        assert_eq!(interface_window(&dev(2, 100, 0), &dev(7, 500, 0)), None, "re-created: new ifindex");
        let mut partial = dev(2, 100, 0);
        partial.stats[stat_index("tx_errors")] = None;
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

    fn sample(targets: &[(&str, Vec<Conn>)]) -> Sample {
        Sample {
            targets: targets.iter().map(|(t, c)| (t.parse().unwrap(), c.clone())).collect(),
            ..Sample::default()
        }
    }

    #[test]
    fn targets_sum_each_connections_growth() {
        let a: SocketAddr = "10.0.0.5:3260".parse().unwrap();
        let nine: SocketAddr = "10.0.0.9:3260".parse().unwrap();
        let t0 = Instant::now();
        // First sample: no window; the totals start at what the connections had.
        let f = Fabric::new(
            sample(&[("10.0.0.5:3260", vec![conn(1, "10.0.0.5:3260", 5, 100)]), ("10.0.0.9:3260", vec![])]),
            None,
            t0,
        );
        assert_eq!(f.targets[&a].window, None);
        assert_eq!((f.targets[&a].retransmitted, f.targets[&a].sent), (5, 100));
        assert_eq!(f.retransmit_ratio(&a), None);
        // Connection 1 grows by 1/50; connection 3 opens with 2/10; the window has both.
        let f = Fabric::new(
            sample(&[
                ("10.0.0.5:3260", vec![conn(1, "10.0.0.5:3260", 6, 150), conn(3, "10.0.0.5:3260", 2, 10)]),
                ("10.0.0.9:3260", vec![]),
            ]),
            Some(f),
            t0,
        );
        assert_eq!(f.targets[&a].window, Some((3, 60)));
        assert_eq!((f.targets[&a].retransmitted, f.targets[&a].sent), (8, 160));
        assert_eq!(f.retransmit_ratio(&a), Some(0.05));
        // Connection 1 closes: the sum over connections drops, the totals do not.
        let f = Fabric::new(
            sample(&[("10.0.0.5:3260", vec![conn(3, "10.0.0.5:3260", 2, 30)]), ("10.0.0.9:3260", vec![])]),
            Some(f),
            t0,
        );
        assert_eq!(f.targets[&a].window, Some((0, 20)));
        assert_eq!((f.targets[&a].retransmitted, f.targets[&a].sent), (8, 180));
        // No connections left: the discovered target leaves the sample and takes its totals.
        let f = Fabric::new(sample(&[("10.0.0.9:3260", vec![])]), Some(f), t0);
        assert!(!f.targets.contains_key(&a));
        assert_eq!(f.targets[&nine].window, Some((0, 0)));
        assert_eq!(f.retransmit_ratio(&nine), None, "no connections: no ratio");
    }

    #[test]
    fn probe_loss_and_tcp_ratio_need_a_window() {
        use crate::sources::fabric::probe::ProbeStats;
        let t: SocketAddr = "10.0.0.9:3260".parse().unwrap();
        let mk = |attempts, failures, retrans, out| Sample {
            probes: [(t, ProbeStats { attempts, failures, ..ProbeStats::default() })].into(),
            tcp: [
                (("Tcp".to_owned(), "RetransSegs".to_owned()), retrans),
                (("Tcp".to_owned(), "OutSegs".to_owned()), out),
            ]
            .into(),
            ..Sample::default()
        };
        let t0 = Instant::now();
        let f = Fabric::new(mk(4, 0, 10, 100), None, t0);
        assert!(f.probe_loss.is_empty() && f.tcp_retransmit_ratio.is_none());
        let f = Fabric::new(mk(8, 1, 12, 200), Some(f), t0 + std::time::Duration::from_secs(5));
        assert_eq!((f.probe_loss[&t], f.tcp_retransmit_ratio, f.window), (0.25, Some(0.02), Some(5.0)));
        let f = Fabric::new(mk(8, 1, 12, 200), Some(f), t0);
        assert!(f.probe_loss.is_empty(), "no attempt in the window: no ratio");
    }
}
