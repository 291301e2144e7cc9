//! Per-connection TCP state through netlink sock_diag (linux/inet_diag.h, linux/tcp.h
//! `struct tcp_info`; the `ss -ti` interface), with `INET_DIAG_INFO` (tcp_info) for each socket,
//! two ways:
//!
//! - [`dump`]: the established TCP sockets of the agent's network namespace that a filter
//!   program accepts (`bytecode.rs`), IPv4 and IPv6 in one walk. The kernel walks every bucket
//!   of its established-socket hash table for a dump (262,144 buckets on a host with 24 GiB,
//!   about 1 ms whether they hold sockets or not), running the filter on each socket there;
//!   only the accepted ones are filled in, copied out and parsed. The walk is the old
//!   `TCPDIAG_GETSOCK` request, which asks for both families at once (`SOCK_DIAG_BY_FAMILY`
//!   walks the table once per family); its answers are `SOCK_DIAG_BY_FAMILY` records.
//! - [`lookup`]: known sockets by their full identity and cookie, one hash lookup each: a socket
//!   closed since (or a new one on the same addresses) answers ENOENT or ESTALE.
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
//! that socket a parse error. The crate builds and parses the records; the filter attribute and
//! the one-walk request are added here.

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags};
use netlink_packet_sock_diag::{AF_INET, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY, SockDiagMessage};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use super::bytecode::INET_DIAG_REQ_BYTECODE;

/// The one-walk dump request (`struct inet_diag_req`; linux/inet_diag.h).
const TCPDIAG_GETSOCK: u16 = 18;
const TCP_ESTABLISHED: u8 = 1;
/// `1 << (INET_DIAG_INFO - 1)`: tcp_info with each socket.
const EXT_INFO: u8 = 1 << 1;
const ENOENT: i32 = -libc::ENOENT;
const ESTALE: i32 = -libc::ESTALE;

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

/// What finds one socket again: its family as the kernel has it (an IPv4-mapped peer is an IPv6
/// socket) and its identity, cookie included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub family: u8,
    pub id: SocketId,
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
    /// Each connection's key, in the order of `conns`.
    pub keys: Vec<Key>,
    /// Sockets answered in another state than established (a looked-up socket closing).
    pub gone: usize,
    /// Messages that could not be decoded (counted, skipped).
    pub bad: usize,
    /// NLMSG_DONE was seen: the dump is complete.
    pub done: bool,
    /// The kernel answered with an error (negative errno).
    pub error: Option<i32>,
}

/// Decodes the netlink messages in one datagram of a sock_diag dump or lookup. Never panics on
/// any input: a message whose length field does not fit ends the buffer as one bad message.
pub fn parse_datagram(buf: &[u8], out: &mut Parsed) {
    let whole = super::netlink::each_message(buf, |m| {
        // The one-walk request's records are SOCK_DIAG_BY_FAMILY records under its own type.
        let mut patched;
        let m = if m.get(4..6) == Some(&TCPDIAG_GETSOCK.to_ne_bytes()[..]) {
            patched = m.to_vec();
            patched[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
            &patched[..]
        } else {
            m
        };
        match NetlinkMessage::<SockDiagMessage>::deserialize(m) {
            Ok(m) => match m.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    if r.header.state != TCP_ESTABLISHED {
                        out.gone += 1;
                        return;
                    }
                    match conn(&r) {
                        Some(c) => {
                            out.conns.push(c);
                            out.keys.push(Key { family: r.header.family, id: r.header.socket_id.clone() });
                        }
                        None => out.bad += 1,
                    }
                }
                NetlinkPayload::Done(_) => out.done = true,
                NetlinkPayload::Error(e) if e.code.is_some() => out.error = Some(e.raw_code()),
                _ => {}
            },
            Err(_) => out.bad += 1,
        }
    });
    if !whole {
        out.bad += 1;
    }
}

/// The request for one walk of the established TCP sockets of both families, with tcp_info,
/// filtered by `program` when given (`struct nlmsghdr`, `struct inet_diag_req`, then the
/// `INET_DIAG_REQ_BYTECODE` attribute).
pub fn dump_request(seq: u32, program: Option<&[u8]>) -> Vec<u8> {
    let attr = program.map_or(0, |p| 4 + p.len());
    let len = 16 + 60 + attr;
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    r.extend_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    r.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r.extend_from_slice(&seq.to_ne_bytes());
    r.extend_from_slice(&0u32.to_ne_bytes());
    // family (the walk takes both), src_len, dst_len, ext; an empty socket id (48 bytes);
    // states; dbs.
    r.extend_from_slice(&[AF_INET, 0, 0, EXT_INFO]);
    r.extend_from_slice(&[0; 48]);
    r.extend_from_slice(&(1u32 << TCP_ESTABLISHED).to_ne_bytes());
    r.extend_from_slice(&0u32.to_ne_bytes());
    if let Some(p) = program {
        r.extend_from_slice(&u16::try_from(attr).unwrap_or(u16::MAX).to_ne_bytes());
        r.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        r.extend_from_slice(p);
    }
    r
}

/// The request for one known socket.
pub fn lookup_request(seq: u32, key: &Key) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family: key.family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states: StateFlags::ESTABLISHED,
            socket_id: key.id.clone(),
        })
        .into(),
    );
    packet.finalize();
    let mut request = vec![0; packet.buffer_len()];
    packet.serialize(&mut request);
    request
}

/// The established TCP connections of this network namespace that `program` accepts (every one
/// without a program), IPv4 and IPv6, in one walk.
pub fn dump(program: Option<&[u8]>) -> io::Result<Parsed> {
    let socket = super::netlink::socket(NETLINK_SOCK_DIAG)?;
    let mut parsed = Parsed::default();
    socket.send(&dump_request(1, program), 0)?;
    super::netlink::receive(&socket, "sock_diag", |buf| {
        parse_datagram(buf, &mut parsed);
        (parsed.done, parsed.error)
    })?;
    Ok(parsed)
}

/// The known sockets still established, each found by its key: one request and one answer each.
/// A socket closed since (ENOENT, or ESTALE when its addresses now belong to another socket) is
/// left out.
pub fn lookup(keys: &[Key]) -> io::Result<Parsed> {
    let mut parsed = Parsed::default();
    if keys.is_empty() {
        return Ok(parsed);
    }
    let socket = super::netlink::socket(NETLINK_SOCK_DIAG)?;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    for (seq, key) in (1..).zip(keys) {
        socket.send(&lookup_request(seq, key), 0)?;
        buf.clear();
        if socket.recv(&mut buf, 0)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "sock_diag: no answer to a lookup"));
        }
        parse_datagram(&buf, &mut parsed);
        match parsed.error.take() {
            None | Some(ENOENT | ESTALE) => {}
            Some(errno) => return Err(io::Error::from_raw_os_error(-errno)),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, NLM_F_MULTIPART};
    use netlink_packet_sock_diag::AF_INET6;
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

    #[test]
    fn the_dump_request_carries_the_program() {
        let r = dump_request(7, Some(&[1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(r.len(), 16 + 60 + 12);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize, r.len());
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), TCPDIAG_GETSOCK);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!(
            (r[19], u32::from_ne_bytes(r[68..72].try_into().unwrap())),
            (EXT_INFO, 2),
            "tcp_info, established"
        );
        assert_eq!((u16::from_ne_bytes([r[76], r[77]]), u16::from_ne_bytes([r[78], r[79]])), (12, 1));
        assert_eq!(&r[80..], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(dump_request(1, None).len(), 76);
    }

    #[test]
    fn records_of_the_one_walk_request_and_closed_sockets() {
        let mut buf = response(7, "10.0.0.5:3260", 3, 100);
        buf[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
        let mut closing = response(8, "10.0.0.5:3260", 0, 1);
        closing[16 + 1] = 8; // TCP_CLOSE_WAIT
        buf.extend(closing);
        let mut p = Parsed::default();
        parse_datagram(&buf, &mut p);
        assert_eq!((p.conns.len(), p.keys.len(), p.gone, p.bad), (1, 1, 1, 0), "{p:?}");
        assert_eq!(p.keys[0].family, AF_INET);
        assert_eq!(p.keys[0].id.cookie, [7, 0, 0, 0, 0, 0, 0, 0]);
    }

    /// The real kernel takes the request and the program, and answers only the sockets the
    /// program accepts; a lookup finds a known socket again and not once it is closed.
    #[test]
    fn the_kernel_filters_by_remote_port_and_address() {
        use super::super::bytecode::{Filter, compile};
        use std::net::{TcpListener, TcpStream};
        let connect = |a: SocketAddr| TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5));
        let storage = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let (sp, op) = (storage.local_addr().unwrap(), other.local_addr().unwrap());
        let to_storage = connect(sp).unwrap();
        // An IPv6 socket with an IPv4-mapped peer, as a dual-stack client makes.
        let mapped = connect(SocketAddr::new("::ffff:127.0.0.1".parse().unwrap(), sp.port())).ok();
        let _to_other = connect(op).unwrap();
        let accepted: Vec<_> =
            (0..1 + usize::from(mapped.is_some())).map(|_| storage.accept().unwrap()).collect();
        let _accepted_other = other.accept().unwrap();
        let remotes = |p: &Parsed| {
            let mut r: Vec<SocketAddr> = p.conns.iter().map(|c| c.remote).collect();
            r.sort();
            r
        };

        let Filter::Program(by_port) = compile(&[(sp.port(), sp.port())], &[]) else { panic!() };
        let p = dump(Some(&by_port)).expect("the kernel takes the program");
        assert!(p.done && p.bad == 0, "{p:?}");
        assert_eq!(
            remotes(&p),
            vec![sp; 1 + usize::from(mapped.is_some())],
            "only the connections to the port"
        );
        if mapped.is_some() {
            assert!(p.keys.iter().any(|k| k.family == AF_INET6), "the mapped one is an IPv6 socket");
        }

        let Filter::Program(by_addr) = compile(&[], &[op]) else { panic!() };
        let p = dump(Some(&by_addr)).unwrap();
        assert_eq!(remotes(&p), vec![op]);

        let all = dump(None).unwrap();
        assert!(remotes(&all).contains(&sp) && remotes(&all).contains(&op));
        assert!(all.conns.len() >= p.conns.len() + 4, "both ends of each connection without a program");

        // Lookups: the known sockets are found again, with their tcp_info, until they close.
        let p = dump(Some(&by_port)).unwrap();
        let again = lookup(&p.keys).unwrap();
        assert_eq!(
            again.conns.iter().map(|c| c.cookie).collect::<Vec<_>>(),
            p.conns.iter().map(|c| c.cookie).collect::<Vec<_>>()
        );
        assert!(again.conns.iter().all(|c| c.segs_out > 0));
        drop(to_storage);
        drop(mapped);
        drop(accepted);
        let after = lookup(&p.keys).unwrap();
        assert!(after.conns.is_empty(), "closed sockets are not established: {after:?}");
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
