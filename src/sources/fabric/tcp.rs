//! Host-wide TCP counters from `/proc/net/snmp` and `/proc/net/netstat` (proc(5); the MIB names
//! are RFC 4022's `Tcp` group and the kernel's `TcpExt`, include/uapi/linux/snmp.h). Both files
//! are pairs of lines with the same prefix: a header naming the fields, then their values.
//!
//! ```text
//! Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens ... InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
//! Tcp: 1 200 120000 -1 3556 ... 57252008 54915039 227 5 1003 0
//! TcpExt: SyncookiesSent ... TCPTimeouts ... TCPLostRetransmit ... TCPSynRetrans ...
//! TcpExt: 0 ... 4 ... 0 ... 2 ...
//! ```
//!
//! Parsed by hand rather than with procfs' `Snmp`, which refuses files whose field list differs
//! from the one it knows; here any field list is accepted and unknown fields are ignored.

use std::collections::BTreeMap;

/// The counters exported, by (`group`, field): the metric and its help.
pub const COUNTERS: [(&str, &str, &str, &str); 8] = [
    ("Tcp", "InSegs", "storwatch_tcp_received_segments_total", "TCP segments received (Tcp InSegs)."),
    ("Tcp", "OutSegs", "storwatch_tcp_sent_segments_total", "TCP segments sent (Tcp OutSegs)."),
    (
        "Tcp",
        "RetransSegs",
        "storwatch_tcp_retransmitted_segments_total",
        "TCP segments retransmitted (Tcp RetransSegs).",
    ),
    ("Tcp", "InErrs", "storwatch_tcp_receive_errors_total", "TCP segments received in error (Tcp InErrs)."),
    ("Tcp", "OutRsts", "storwatch_tcp_sent_resets_total", "TCP resets sent (Tcp OutRsts)."),
    (
        "TcpExt",
        "TCPTimeouts",
        "storwatch_tcp_timeouts_total",
        "TCP retransmission timeouts (TcpExt TCPTimeouts).",
    ),
    (
        "TcpExt",
        "TCPSynRetrans",
        "storwatch_tcp_syn_retransmits_total",
        "SYN and SYN-ACK retransmits (TcpExt TCPSynRetrans).",
    ),
    (
        "TcpExt",
        "TCPLostRetransmit",
        "storwatch_tcp_lost_retransmits_total",
        "Retransmitted segments lost again (TcpExt TCPLostRetransmit).",
    ),
];

/// Parses a header/value file: every (group, field) with a non-negative value (gauges such as
/// `MaxConn` may be -1: left out), and the 1-based numbers of lines that did not pair up.
pub fn parse_pairs(text: &str) -> (BTreeMap<(String, String), u64>, Vec<usize>) {
    let mut values = BTreeMap::new();
    let mut bad = Vec::new();
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l)).collect();
    let mut i = 0;
    while i < lines.len() {
        let (n, header) = lines[i];
        let Some((group, names)) = header.split_once(':') else {
            bad.push(n);
            i += 1;
            continue;
        };
        let Some(&(m, row)) = lines.get(i + 1) else {
            bad.push(n);
            break;
        };
        let Some((group2, vals)) = row.split_once(':') else {
            bad.push(m);
            i += 2;
            continue;
        };
        let (names, vals): (Vec<&str>, Vec<&str>) =
            (names.split_whitespace().collect(), vals.split_whitespace().collect());
        if group != group2 || names.len() != vals.len() {
            bad.push(n);
            i += 2;
            continue;
        }
        for (name, v) in names.into_iter().zip(vals) {
            match v.parse::<u64>() {
                Ok(v) => {
                    values.insert((group.trim().to_owned(), name.to_owned()), v);
                }
                Err(_) if v.parse::<i64>().is_ok() => {}
                Err(_) => bad.push(m),
            }
        }
        i += 2;
    }
    bad.dedup();
    (values, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn get(v: &BTreeMap<(String, String), u64>, g: &str, f: &str) -> Option<u64> {
        v.get(&(g.to_owned(), f.to_owned())).copied()
    }

    #[test]
    fn fixture_files() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-exporter/proc/net");
        let (snmp, bad) = parse_pairs(&std::fs::read_to_string(dir.join("snmp")).unwrap());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(get(&snmp, "Tcp", "RetransSegs"), Some(227));
        assert_eq!(get(&snmp, "Tcp", "OutSegs"), Some(54915039));
        assert_eq!(get(&snmp, "Tcp", "InErrs"), Some(5));
        assert_eq!(get(&snmp, "Tcp", "MaxConn"), None, "-1 is not a counter");
        assert_eq!(get(&snmp, "Udp", "NoPorts"), Some(120));
        let (netstat, bad) = parse_pairs(&std::fs::read_to_string(dir.join("netstat")).unwrap());
        assert!(bad.is_empty(), "{bad:?}");
        assert!(get(&netstat, "TcpExt", "TCPTimeouts").is_some());
        assert!(get(&netstat, "TcpExt", "TCPLostRetransmit").is_some());
        assert_eq!(
            get(&netstat, "TcpExt", "TCPSynRetrans"),
            None,
            "an older kernel's file: absent, not an error"
        );
    }

    #[test]
    fn bad_pairs_are_reported_and_the_rest_kept() {
        let text = "Tcp: A B C\nTcp: 1 2\nTcp: InSegs RetransSegs\nTcp: 10 x\nUdp: X\nUdp: 4\nIp: Y\n";
        let (v, bad) = parse_pairs(text);
        assert_eq!(get(&v, "Tcp", "InSegs"), Some(10));
        assert_eq!(get(&v, "Tcp", "RetransSegs"), None);
        assert_eq!(get(&v, "Udp", "X"), Some(4));
        assert_eq!(bad, [1, 4, 7]);
        assert_eq!(parse_pairs("").0.len(), 0);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_pairs(&s);
        }

        #[test]
        fn pair_like_input_never_panics(s in "((Tcp|TcpExt|Ip): ?([A-Za-z]{1,5} ?){0,4}\n|(Tcp|Ip): ?(-?[0-9]{1,5} ?){0,4}\n){0,8}") {
            let (_, bad) = parse_pairs(&s);
            prop_assert!(bad.iter().all(|n| *n >= 1));
        }
    }
}
