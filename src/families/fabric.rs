//! Storage fabric families: the fabric interfaces, the host's TCP counters, each storage target's
//! connections and probes, NFS mounts, and the window's ratios.

use std::net::SocketAddr;

use super::{Col, counter, flag, gauge, info, table};
use crate::metrics::Family;
use crate::model::fabric::{Fabric, NfsWindow};
use crate::sources::fabric::netdev::{NetDev, STATISTICS, Speed};
use crate::sources::fabric::nfs::NfsMount;
use crate::sources::fabric::probe::ProbeStats;
use crate::sources::fabric::sockdiag::Conn;
use crate::sources::fabric::tcp;

fn mbps(d: &NetDev) -> Option<u64> {
    match d.speed {
        Some(Speed::Mbps(s)) => Some(s),
        _ => None,
    }
}

const INTERFACE: &[Col<NetDev>] = &[
    gauge("storwatch_network_up", "1 when the fabric interface's link is up (operstate).", |d| {
        Some(flag(d.link_up()))
    }),
    gauge(
        "storwatch_network_speed_bytes",
        "Link speed in bytes per second (ethtool speed, Mb/s x 125000); absent when the interface reports none.",
        |d| mbps(d).map(|s| s as f64 * 125_000.0),
    ),
    gauge("storwatch_network_mtu_bytes", "MTU of the fabric interface.", |d| d.mtu.map(|m| m as f64)),
    counter(
        "storwatch_network_carrier_changes_total",
        "Times the link went up or down (carrier_changes).",
        |d| d.carrier_changes.map(|c| c as f64),
    ),
];

/// A target's connections, as one row.
type Conns = [Conn];

fn mean(conns: &Conns, f: fn(&Conn) -> u32) -> Option<f64> {
    (!conns.is_empty()).then(|| conns.iter().map(|c| f64::from(f(c))).sum::<f64>() / conns.len() as f64 / 1e6)
}

const CONNECTIONS: &[Col<Conns>] = &[
    gauge("storwatch_fabric_target_connections", "Established TCP connections to the storage target.", |c| {
        Some(c.len() as f64)
    }),
    gauge(
        "storwatch_fabric_target_rtt_seconds",
        "Smoothed round-trip time, mean over the target's connections (tcp_info rtt).",
        |c| mean(c, |c| c.rtt_us),
    ),
    gauge(
        "storwatch_fabric_target_rttvar_seconds",
        "Round-trip time variation (mean deviation), mean over the target's connections (tcp_info rttvar).",
        |c| mean(c, |c| c.rttvar_us),
    ),
    gauge(
        "storwatch_fabric_target_lost_segments",
        "Segments currently considered lost on the target's connections (tcp_info lost).",
        |c| (!c.is_empty()).then(|| c.iter().map(|c| f64::from(c.lost)).sum()),
    ),
];

/// A target's totals and window ratio, as one row.
struct TargetRow {
    retransmitted: u64,
    sent: u64,
    ratio: Option<f64>,
}

const TARGET: &[Col<TargetRow>] = &[
    counter(
        "storwatch_fabric_target_retransmitted_segments_total",
        "Segments retransmitted to the target (tcp_info total_retrans), summed as each connection grew since the agent started.",
        |t| Some(t.retransmitted as f64),
    ),
    counter(
        "storwatch_fabric_target_sent_segments_total",
        "Segments sent to the target, retransmits included (tcp_info segs_out), summed as each connection grew since the agent started.",
        |t| Some(t.sent as f64),
    ),
    gauge(
        "storwatch_fabric_target_retransmit_ratio",
        "Retransmitted / sent segments of the target's connections over the window.",
        |t| t.ratio,
    ),
];

/// A probed target's counts and window loss, as one row.
type ProbeRow = (ProbeStats, Option<f64>);

const PROBE: &[Col<ProbeRow>] = &[
    gauge(
        "storwatch_fabric_probe_success",
        "1 when the last TCP connect probe to the target succeeded.",
        |p| p.0.last_success.map(flag),
    ),
    gauge(
        "storwatch_fabric_probe_connect_seconds",
        "Connect time of the last successful probe to the target.",
        |p| p.0.last_latency,
    ),
    counter("storwatch_fabric_probe_attempts_total", "TCP connect probes sent to the target.", |p| {
        Some(p.0.attempts as f64)
    }),
    counter(
        "storwatch_fabric_probe_failures_total",
        "TCP connect probes that timed out, were refused or found no route.",
        |p| Some(p.0.failures as f64),
    ),
    gauge(
        "storwatch_fabric_probe_loss_ratio",
        "Failed / attempted probes to the target over the window.",
        |p| p.1,
    ),
];

type NfsRow = (NfsMount, Option<NfsWindow>);

const NFS: &[Col<NfsRow>] = &[
    counter(
        "storwatch_nfs_operations_total",
        "NFS RPC operations completed on the mount (mountstats).",
        |m| Some(m.0.ops as f64),
    ),
    counter(
        "storwatch_nfs_transmissions_total",
        "NFS RPC transmissions on the mount, retransmissions included (mountstats).",
        |m| Some(m.0.transmissions as f64),
    ),
    counter(
        "storwatch_nfs_major_timeouts_total",
        "NFS RPC major timeouts on the mount: the server did not answer within timeo x retrans (mountstats).",
        |m| Some(m.0.major_timeouts as f64),
    ),
    counter(
        "storwatch_nfs_rtt_seconds_total",
        "Cumulative RPC round-trip time on the mount (mountstats).",
        |m| Some(m.0.rtt_ms as f64 / 1000.0),
    ),
    gauge("storwatch_nfs_rtt_seconds", "Mean RPC round-trip time per operation over the window.", |m| {
        m.1.map(|w| w.rtt_seconds)
    }),
    gauge(
        "storwatch_nfs_retransmit_ratio",
        "Share of the mount's RPC transmissions over the window that were retransmissions.",
        |m| m.1.map(|w| w.retransmit_ratio),
    ),
];

pub fn families(f: &Fabric) -> Vec<Family> {
    let s = &f.sample;
    let mut out = vec![info(
        "storwatch_network_info",
        "A fabric interface's operstate and duplex.",
        s.interfaces.iter().map(|(name, d)| {
            vec![
                ("interface", name.as_str()),
                ("operstate", d.operstate.as_deref().unwrap_or("")),
                ("duplex", d.duplex.as_deref().unwrap_or("")),
            ]
        }),
    )];
    let interfaces = || s.interfaces.iter().map(|(name, d)| ([("interface", name.as_str())], d));
    out.extend(table(INTERFACE, interfaces));
    for (i, (_, name, help)) in STATISTICS.iter().enumerate() {
        let mut family = Family::counter(name, help);
        for (labels, d) in interfaces() {
            if let Some(v) = d.stats[i] {
                family.push_labels(&labels, v as f64);
            }
        }
        out.push(family);
    }
    let mut loss = Family::gauge(
        "storwatch_network_loss_ratio",
        "(errors + drops) / (packets + errors + drops) of the fabric interface over the window, both directions.",
    );
    for (name, r) in &f.loss {
        loss.push([("interface", name)], *r);
    }
    out.push(loss);

    for (group, field, name, help) in tcp::COUNTERS {
        if let Some(v) = s.tcp.get(&(group.to_owned(), field.to_owned())) {
            out.push(Family::counter(name, help).with_value(*v as f64));
        }
    }
    if let Some(r) = f.tcp_retransmit_ratio {
        out.push(
            Family::gauge(
                "storwatch_tcp_retransmit_ratio",
                "Host-wide TCP retransmitted / sent segments over the window (Tcp RetransSegs / OutSegs).",
            )
            .with_value(r),
        );
    }

    let labels: Vec<String> = s.targets.keys().map(SocketAddr::to_string).collect();
    let targets = || s.targets.iter().zip(&labels).map(|((t, c), l)| ([("target", l.as_str())], (t, c)));
    out.extend(table(CONNECTIONS, || targets().map(|(l, (_, c))| (l, c.as_slice()))));
    out.extend(table(TARGET, || {
        targets().map(|(l, (t, _))| {
            let total = f.targets.get(t).copied().unwrap_or_default();
            (
                l,
                TargetRow {
                    retransmitted: total.retransmitted,
                    sent: total.sent,
                    ratio: f.retransmit_ratio(t),
                },
            )
        })
    }));

    let probed: Vec<String> = s.probes.keys().map(SocketAddr::to_string).collect();
    out.extend(table(PROBE, || {
        s.probes
            .iter()
            .zip(&probed)
            .map(|((t, p), l)| ([("target", l.as_str())], (*p, f.probe_loss.get(t).copied())))
    }));

    out.extend(table(NFS, || {
        s.nfs.iter().map(|m| {
            let labels = [("mountpoint", m.mountpoint.as_str()), ("export", m.export.as_str())];
            (labels, (m.clone(), f.nfs.get(&m.mountpoint).copied()))
        })
    }));

    if let Some(w) = f.window {
        out.push(
            Family::gauge("storwatch_fabric_window_seconds", "Length of the window the fabric ratios cover.")
                .with_value(w),
        );
    }
    out
}
