//! Per-connection TCP state through netlink sock_diag (linux/inet_diag.h, linux/tcp.h
//! `struct tcp_info`; the `ss -ti` interface): a dump of the established TCP sockets of the
//! agent's network namespace, IPv4 and IPv6, with `INET_DIAG_INFO` (tcp_info) for each.
//!
//! ```text
//! nlmsghdr { len 256, type SOCK_DIAG_BY_FAMILY (20), flags NLM_F_MULTI, seq 1 }
//!   inet_diag_msg { family AF_INET, state ESTABLISHED, sport 41234, dport 3260,
//!                   src 10.0.0.1, dst 10.0.0.5, cookie 0x2a... }
//!   nlattr INET_DIAG_INFO: struct tcp_info { ..., rtt 412 (us), rttvar 98, ..., total_retrans 3,
//!                   ..., segs_out 48112, ... }
//! nlmsghdr { type NLMSG_DONE }
//! ```
//!
//! The netlink messages are decoded by netlink-packet-sock-diag (`rich_nlas`), which needs the
//! `tcp_info` of kernel 5.4 or later (up to `snd_wnd`); an older kernel's shorter record makes
//! that socket a parse error. There is no in-kernel port filter (no bytecode support in the
//! crate): the dump is filtered here, which costs one record per established socket.

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags};
use netlink_packet_sock_diag::{AF_INET, AF_INET6, IPPROTO_TCP, SockDiagMessage};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

/// What storwatch keeps of one established connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    /// The kernel's socket cookie: unique per socket for the boot.
    pub cookie: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Smoothed RTT and its mean deviation, microseconds.
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Segments currently considered lost.
    pub lost: u32,
    /// Segments sent over the connection's life, retransmits included.
    pub segs_out: u32,
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`) as the IPv4 address it is.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

fn conn(r: &InetResponse) -> Option<Conn> {
    let id = &r.header.socket_id;
    let info = r.nlas.iter().find_map(|n| match n {
        Nla::TcpInfo(t) => Some(t),
        _ => None,
    })?;
    Some(Conn {
        cookie: u64::from_ne_bytes(id.cookie),
        local: canonical(SocketAddr::new(id.source_address, id.source_port)),
        remote: canonical(SocketAddr::new(id.destination_address, id.destination_port)),
        rtt_us: info.rtt,
        rttvar_us: info.rttvar,
        total_retrans: info.total_retrans,
        lost: info.lost,
        segs_out: info.segs_out,
    })
}

/// What one buffer of a dump held.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub conns: Vec<Conn>,
    /// Messages that could not be decoded (counted, skipped).
    pub bad: usize,
    /// NLMSG_DONE was seen: the dump is complete.
    pub done: bool,
    /// The kernel answered with an error (negative errno).
    pub error: Option<i32>,
}

/// Decodes the netlink messages in one datagram of a sock_diag dump. Never panics on any input:
/// a message whose length field does not fit ends the buffer as one bad message.
pub fn parse_datagram(buf: &[u8], out: &mut Parsed) {
    let whole =
        super::netlink::each_message(buf, |m| match NetlinkMessage::<SockDiagMessage>::deserialize(m) {
            Ok(m) => match m.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => match conn(&r) {
                    Some(c) => out.conns.push(c),
                    None => out.bad += 1,
                },
                NetlinkPayload::Done(_) => out.done = true,
                NetlinkPayload::Error(e) if e.code.is_some() => out.error = Some(e.raw_code()),
                _ => {}
            },
            Err(_) => out.bad += 1,
        });
    if !whole {
        out.bad += 1;
    }
}

/// Dumps the established TCP connections of this network namespace (IPv4, then IPv6).
pub fn dump() -> io::Result<Parsed> {
    let socket = super::netlink::socket(NETLINK_SOCK_DIAG)?;
    let mut parsed = Parsed::default();
    for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = seq;
        let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
        let mut packet = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::INFO,
                states: StateFlags::ESTABLISHED,
                socket_id,
            })
            .into(),
        );
        packet.finalize();
        let mut request = vec![0; packet.buffer_len()];
        packet.serialize(&mut request);
        socket.send(&request, 0)?;
        parsed.done = false;
        super::netlink::receive(&socket, "sock_diag", |buf| {
            parse_datagram(buf, &mut parsed);
            (parsed.done, parsed.error)
        })?;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, NLM_F_MULTIPART};
    use netlink_packet_sock_diag::inet::nlas::TcpInfo;
    use netlink_packet_sock_diag::inet::{InetResponseHeader, Timer};
    use proptest::prelude::*;

    /// A response as the kernel sends it, built with the crate's own encoder.
    fn response(cookie: u8, remote: &str, retrans: u32, segs_out: u32) -> Vec<u8> {
        let remote: SocketAddr = remote.parse().unwrap();
        let mut info_bytes = vec![0u8; 4096];
        let info = loop {
            // A zeroed tcp_info with the fields set: the crate parses it back from bytes.
            if let Ok(t) = TcpInfo::parse(&info_bytes) {
                break t;
            }
            info_bytes.push(0);
        };
        let info = TcpInfo { rtt: 412, rttvar: 98, total_retrans: retrans, lost: 1, segs_out, ..info };
        let (family, local) = match remote {
            SocketAddr::V4(_) => (AF_INET, "10.0.0.1".parse().unwrap()),
            SocketAddr::V6(_) => (AF_INET6, "::ffff:10.0.0.1".parse().unwrap()),
        };
        let header = InetResponseHeader {
            family,
            state: 1,
            timer: Some(Timer::Retransmit(std::time::Duration::from_millis(200), 0)),
            socket_id: SocketId {
                source_port: 41234,
                destination_port: remote.port(),
                source_address: local,
                destination_address: remote.ip(),
                interface_id: 0,
                cookie: [cookie, 0, 0, 0, 0, 0, 0, 0],
            },
            recv_queue: 0,
            send_queue: 0,
            uid: 0,
            inode: 1,
        };
        let msg = InetResponse { header, nlas: [Nla::TcpInfo(info)].into_iter().collect() };
        let mut h = NetlinkHeader::default();
        h.flags = NLM_F_MULTIPART;
        let mut m = NetlinkMessage::new(h, SockDiagMessage::InetResponse(Box::new(msg)).into());
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    fn done() -> Vec<u8> {
        let mut m = NetlinkMessage::<SockDiagMessage>::new(
            NetlinkHeader::default(),
            NetlinkPayload::Done(DoneMessage::default()),
        );
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    #[test]
    fn decodes_a_dump() {
        let mut buf = response(7, "10.0.0.5:3260", 3, 100);
        buf.extend(response(8, "[::ffff:10.0.0.6]:2049", 0, 5));
        buf.extend(done());
        let mut p = Parsed::default();
        parse_datagram(&buf, &mut p);
        assert!(p.done && p.bad == 0 && p.error.is_none(), "{p:?}");
        assert_eq!(p.conns.len(), 2);
        let c = &p.conns[0];
        assert_eq!(
            (c.cookie, c.remote.to_string(), c.total_retrans, c.segs_out),
            (7, "10.0.0.5:3260".into(), 3, 100)
        );
        assert_eq!((c.rtt_us, c.rttvar_us, c.lost), (412, 98, 1));
        assert_eq!(p.conns[1].remote.to_string(), "10.0.0.6:2049", "v4-mapped is shown as IPv4");
        assert_eq!(p.conns[1].local.to_string(), "10.0.0.1:41234");
    }

    #[test]
    fn truncated_and_short_records_are_bad_not_fatal() {
        let full = response(7, "10.0.0.5:3260", 3, 100);
        let mut p = Parsed::default();
        parse_datagram(&full[..full.len() - 10], &mut p);
        assert_eq!((p.conns.len(), p.bad), (0, 1));
        // A kernel older than 5.4 sends a shorter tcp_info: the record fails to decode.
        let mut short = full.clone();
        let cut = 40;
        short.truncate(short.len() - cut);
        let len = short.len() as u32;
        short[..4].copy_from_slice(&len.to_ne_bytes());
        let mut p = Parsed::default();
        parse_datagram(&short, &mut p);
        assert_eq!(p.conns.len(), 0);
        assert!(p.bad >= 1);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut p = Parsed::default();
            parse_datagram(&bytes, &mut p);
        }

        #[test]
        fn corrupted_dumps_never_panic(i in 0usize..400, b in any::<u8>()) {
            let mut buf = response(7, "10.0.0.5:3260", 3, 100);
            buf.extend(done());
            let i = i % buf.len();
            buf[i] = b;
            let mut p = Parsed::default();
            parse_datagram(&buf, &mut p);
        }
    }
}
