//! Every interface's link state and counters in one rtnetlink dump (linux/rtnetlink.h,
//! linux/if_link.h; what `ip -s link` reads): RTM_GETLINK with NLM_F_DUMP answers one RTM_NEWLINK
//! per interface of the agent's network namespace.
//!
//! ```text
//! nlmsghdr { len 1400, type RTM_NEWLINK (16), flags NLM_F_MULTI, seq 1 }
//!   ifinfomsg { family 0, type ARPHRD_ETHER, index 3, flags IFF_UP|..., change 0 }
//!   rtattr IFLA_IFNAME (3)           "eth0\0"
//!   rtattr IFLA_MTU (4)              u32 1500
//!   rtattr IFLA_OPERSTATE (16)       u8 6 (IF_OPER_UP)
//!   rtattr IFLA_STATS64 (23)         struct rtnl_link_stats64 (u64 rx_packets, tx_packets, ...)
//!   rtattr IFLA_CARRIER (33)         u8 1
//!   rtattr IFLA_CARRIER_CHANGES (35) u32 2
//! nlmsghdr { type NLMSG_DONE (3) }
//! ```
//!
//! At 1,000 interfaces this is one request and a few dozen datagrams, where sysfs took six files
//! an interface. The counters are reported as /proc/net/dev prints them (net/core/net-procfs.c):
//! node_exporter's netdev metrics, whose names storwatch uses, are made of the same sums.

use std::collections::HashMap;
use std::io;

use netlink_sys::protocols::NETLINK_ROUTE;

use super::netdev::NetDev;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_STATS64: u16 = 23;
const IFLA_CARRIER: u16 = 33;
const IFLA_CARRIER_CHANGES: u16 = 35;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// RFC 2863 operational states, IF_OPER_* order, as sysfs `operstate` prints them.
const OPERSTATES: [&str; 7] = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"];

/// The fields of struct rtnl_link_stats64 summed into each of `netdev::STATISTICS`, in its order
/// (rx bytes, packets, errs, drop, fifo, frame; tx bytes, packets, errs, drop, fifo, carrier).
const STATS64_SUMS: [&[usize]; 12] = [
    &[2],              // rx_bytes
    &[0],              // rx_packets
    &[4],              // rx_errors
    &[6, 15],          // rx_dropped + rx_missed_errors
    &[14],             // rx_fifo_errors
    &[10, 11, 12, 13], // rx_length + rx_over + rx_crc + rx_frame errors
    &[3],              // tx_bytes
    &[1],              // tx_packets
    &[5],              // tx_errors
    &[7],              // tx_dropped
    &[18],             // tx_fifo_errors
    &[17, 16, 20, 19], // tx_carrier + tx_aborted + tx_window + tx_heartbeat errors
];

/// What one dump gave: the interfaces by name (speed and duplex left unset: netlink has
/// neither), and how it ended.
#[derive(Debug, Default)]
pub struct Parsed {
    pub links: HashMap<String, NetDev>,
    /// Messages that could not be decoded (counted, skipped).
    pub bad: usize,
    /// NLMSG_DONE was seen: the dump is complete.
    pub done: bool,
    /// The kernel answered with an error (negative errno).
    pub error: Option<i32>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes one RTM_NEWLINK payload (ifinfomsg and attributes). None when it is malformed or
/// names no interface.
fn link(payload: &[u8]) -> Option<NetDev> {
    let index = u32_at(payload, 4)?;
    let mut dev = NetDev { ifindex: Some(u64::from(index)), ..NetDev::default() };
    let mut at = IFINFOMSG_LEN;
    while at + 4 <= payload.len() {
        let len = usize::from(u16_at(payload, at)?);
        let kind = u16_at(payload, at + 2)? & 0x3fff; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if len < 4 || at + len > payload.len() {
            return None;
        }
        let value = &payload[at + 4..at + len];
        match kind {
            IFLA_IFNAME => {
                let name = value.split(|&b| b == 0).next().unwrap_or_default();
                dev.name = String::from_utf8_lossy(name).into_owned();
            }
            IFLA_MTU => dev.mtu = Some(u64::from(u32_at(value, 0)?)),
            IFLA_OPERSTATE => {
                let s = *value.first()?;
                dev.operstate = Some(OPERSTATES.get(usize::from(s)).copied().unwrap_or("unknown").to_owned());
            }
            IFLA_CARRIER => dev.carrier = Some(*value.first()? != 0),
            IFLA_CARRIER_CHANGES => dev.carrier_changes = Some(u64::from(u32_at(value, 0)?)),
            IFLA_STATS64 => {
                // 21 fields up to tx_window_errors in every kernel since 2.6.35.
                let field = |i: usize| u64_at(value, i * 8);
                field(20)?;
                dev.stats = STATS64_SUMS
                    .map(|fields| fields.iter().try_fold(0u64, |sum, &i| Some(sum.wrapping_add(field(i)?))));
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    (!dev.name.is_empty()).then_some(dev)
}

/// Decodes the netlink messages in one datagram of an RTM_GETLINK dump. Never panics on any
/// input: a message whose length field does not fit ends the buffer as one bad message.
pub fn parse_datagram(buf: &[u8], out: &mut Parsed) {
    let whole = super::netlink::each_message(buf, |m| {
        let payload = &m[NLMSG_HDRLEN..];
        match u16_at(m, 4) {
            Some(NLMSG_DONE) => out.done = true,
            Some(NLMSG_ERROR) => match u32_at(payload, 0).map(|e| e as i32) {
                Some(0) => {}
                Some(e) => out.error = Some(e),
                None => out.bad += 1,
            },
            Some(RTM_NEWLINK) => match link(payload) {
                Some(dev) => {
                    out.links.insert(dev.name.clone(), dev);
                }
                None => out.bad += 1,
            },
            _ => {}
        }
    });
    if !whole {
        out.bad += 1;
    }
}

/// The RTM_GETLINK dump request: nlmsghdr and an empty ifinfomsg (every family).
fn request(seq: u32) -> [u8; NLMSG_HDRLEN + IFINFOMSG_LEN] {
    const LEN: usize = NLMSG_HDRLEN + IFINFOMSG_LEN;
    let mut r = [0u8; LEN];
    r[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    r[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    r[8..12].copy_from_slice(&seq.to_ne_bytes());
    r
}

/// Dumps the interfaces of this network namespace.
pub fn dump() -> io::Result<Parsed> {
    let socket = super::netlink::socket(NETLINK_ROUTE)?;
    socket.send(&request(1), 0)?;
    let mut parsed = Parsed::default();
    super::netlink::receive(&socket, "rtnetlink", |buf| {
        parse_datagram(buf, &mut parsed);
        (parsed.done, parsed.error)
    })?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&(libc::NLM_F_MULTI as u16).to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(payload);
        m
    }

    /// An RTM_NEWLINK as the kernel sends it; stats field i holds 100 + i.
    fn newlink(name: &str, index: u32) -> Vec<u8> {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p[4..8].copy_from_slice(&index.to_ne_bytes());
        attr(&mut p, IFLA_IFNAME, format!("{name}\0").as_bytes());
        attr(&mut p, IFLA_MTU, &9000u32.to_ne_bytes());
        attr(&mut p, 0x8000 | 26, &[1, 2, 3, 4]); // a nested attribute (IFLA_AF_SPEC), skipped
        attr(&mut p, IFLA_OPERSTATE, &[6]);
        let stats: Vec<u8> = (0..24u64).flat_map(|i| (100 + i).to_ne_bytes()).collect();
        attr(&mut p, IFLA_STATS64, &stats);
        attr(&mut p, IFLA_CARRIER, &[1]);
        attr(&mut p, IFLA_CARRIER_CHANGES, &5u32.to_ne_bytes());
        message(RTM_NEWLINK, &p)
    }

    #[test]
    fn decodes_a_dump() {
        let mut buf = newlink("eth0", 3);
        buf.extend(newlink("bond0.12", 7));
        buf.extend(message(NLMSG_DONE, &[0; 4]));
        let mut p = Parsed::default();
        parse_datagram(&buf, &mut p);
        assert_eq!((p.bad, p.done, p.error, p.links.len()), (0, true, None, 2));
        let eth0 = &p.links["eth0"];
        assert_eq!((eth0.ifindex, eth0.mtu, eth0.carrier_changes), (Some(3), Some(9000), Some(5)));
        assert_eq!((eth0.operstate.as_deref(), eth0.carrier), (Some("up"), Some(true)));
        assert!(eth0.link_up());
        // /proc/net/dev's columns from the stats64 fields (field i = 100 + i).
        let want = [
            102,
            100,
            104,
            106 + 115,
            114,
            110 + 111 + 112 + 113,
            103,
            101,
            105,
            107,
            118,
            117 + 116 + 120 + 119,
        ];
        assert_eq!(eth0.stats, want.map(Some));
        assert_eq!(p.links["bond0.12"].ifindex, Some(7));
    }

    #[test]
    fn errors_truncation_and_garbage_are_reported_not_fatal() {
        let mut p = Parsed::default();
        parse_datagram(&message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes()), &mut p);
        assert_eq!(p.error, Some(-libc::EPERM));
        let mut p = Parsed::default();
        let mut short_stats = vec![0u8; IFINFOMSG_LEN];
        attr(&mut short_stats, IFLA_IFNAME, b"eth1\0");
        attr(&mut short_stats, IFLA_STATS64, &[0; 40]);
        let mut nameless = vec![0u8; IFINFOMSG_LEN];
        attr(&mut nameless, IFLA_MTU, &1500u32.to_ne_bytes());
        let mut buf = message(RTM_NEWLINK, &short_stats);
        buf.extend(message(RTM_NEWLINK, &nameless));
        buf.extend(newlink("eth0", 3));
        let mut cut = newlink("eth2", 4);
        cut.truncate(60);
        buf.extend(cut);
        parse_datagram(&buf, &mut p);
        assert_eq!(p.bad, 3, "short stats, no name, cut message");
        assert_eq!(p.links.keys().collect::<Vec<_>>(), ["eth0"]);
        assert!(!p.done);
    }

    #[test]
    fn the_request_is_a_getlink_dump() {
        let r = request(9);
        assert_eq!((u32_at(&r, 0), u16_at(&r, 4), u32_at(&r, 8)), (Some(32), Some(RTM_GETLINK), Some(9)));
        assert_eq!(u16_at(&r, 6), Some((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16));
    }

    /// The real kernel: this namespace's loopback, whatever else is there.
    #[test]
    fn dumps_this_namespace() {
        let p = dump().expect("an rtnetlink dump needs no privilege");
        let lo = p.links.get("lo").expect("lo in every namespace");
        assert_eq!((p.bad, lo.ifindex, lo.mtu), (0, Some(1), Some(65536)));
        assert!(lo.stats.iter().all(Option::is_some));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            parse_datagram(&bytes, &mut Parsed::default());
        }

        #[test]
        fn corrupted_dumps_never_panic(i in 0usize..300, b in any::<u8>()) {
            let mut buf = newlink("eth0", 3);
            buf.extend(newlink("eth1", 4));
            let i = i % buf.len();
            buf[i] = b;
            parse_datagram(&buf, &mut Parsed::default());
        }
    }
}
