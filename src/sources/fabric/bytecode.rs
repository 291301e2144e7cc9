//! The inet_diag socket filter (linux/inet_diag.h, `INET_DIAG_REQ_BYTECODE`): a small program the
//! kernel runs on each socket of a sock_diag dump, so that only the storage connections are
//! filled in (tcp_info), copied out and parsed. Without it a dump costs one record per
//! established socket on the host, whatever its traffic.
//!
//! The program is a list of operations, each a `struct inet_diag_bc_op { u8 code; u8 yes;
//! u16 no; }` followed by its operand. Running it starts at the first operation; each one's
//! condition holds or not, and the program moves `yes` or `no` bytes forward. A socket is
//! accepted when the run ends exactly at the end of the program, and rejected when it jumps
//! 4 bytes past it. The kernel checks (`inet_diag_bc_audit`) that every jump is a multiple of
//! 4, at least the operation's length and at most 4 bytes past the end, and that a `no` target
//! is an operation the `yes` chain from the start reaches.
//!
//! What storwatch asks for is a disjunction of terms, each the remote end of a connection:
//!
//! ```text
//! term "remote port in a..=b":   D_GE a (no: next term)  D_LE b (no: next term)
//! term "remote is ip:port":      D_COND { family, prefix 32 or 128, port, address } (no: next term)
//! between two terms:             JMP to the end (accept)
//! ```
//!
//! A term's conditions fall through to the `JMP` when they all hold; the first that fails jumps
//! to the operation after the `JMP`, the next term. The last term has no `JMP`: falling through
//! reaches the end (accept), and its failure target, 4 bytes past the end, rejects. An IPv4
//! address condition also matches an IPv6 socket with the IPv4-mapped address (the kernel's
//! rule), so one program serves both families.

use std::net::{IpAddr, SocketAddr};

/// `enum { INET_DIAG_BC_NOP, INET_DIAG_BC_JMP, INET_DIAG_BC_S_GE, INET_DIAG_BC_S_LE,
/// INET_DIAG_BC_D_GE, INET_DIAG_BC_D_LE, INET_DIAG_BC_AUTO, INET_DIAG_BC_S_COND,
/// INET_DIAG_BC_D_COND, ... }`.
pub const BC_JMP: u8 = 1;
pub const BC_D_GE: u8 = 4;
pub const BC_D_LE: u8 = 5;
pub const BC_D_COND: u8 = 8;
/// The request attribute carrying the program.
pub const INET_DIAG_REQ_BYTECODE: u16 = 1;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
/// A netlink attribute's length is 16 bits, its header included.
const MAX_LEN: usize = u16::MAX as usize - 4;

/// What to ask the kernel for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// No socket can be a storage connection (no ports, no targets): no dump at all.
    Nothing,
    /// Every established socket: the program would not fit in a netlink attribute.
    Everything,
    /// The sockets this program accepts.
    Program(Vec<u8>),
}

/// One remote end to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Ports(u16, u16),
    Addr(IpAddr, u16),
}

impl Term {
    fn len(self) -> usize {
        match self {
            Term::Ports(..) => 16,
            Term::Addr(IpAddr::V4(_), _) => 4 + 8 + 4,
            Term::Addr(IpAddr::V6(_), _) => 4 + 8 + 16,
        }
    }
}

fn op(out: &mut Vec<u8>, code: u8, yes: usize, no: usize) {
    out.push(code);
    out.push(u8::try_from(yes).expect("a yes jump fits a byte"));
    out.extend_from_slice(&u16::try_from(no).expect("a no jump fits 16 bits").to_ne_bytes());
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (the kernel matches an IPv4 condition
/// against both).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The terms for the remote `ports` (inclusive ranges) and `targets`: overlapping or adjacent
/// ranges merged, targets already covered by a range left out, duplicates dropped.
fn terms(ports: &[(u16, u16)], targets: &[SocketAddr]) -> Vec<Term> {
    let mut ranges: Vec<(u16, u16)> = ports.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let covered = |p: u16| merged.iter().any(|&(a, b)| (a..=b).contains(&p));
    let mut addrs: Vec<(IpAddr, u16)> =
        targets.iter().filter(|t| !covered(t.port())).map(|t| (canonical(t.ip()), t.port())).collect();
    addrs.sort_unstable();
    addrs.dedup();
    merged
        .into_iter()
        .map(|(a, b)| Term::Ports(a, b))
        .chain(addrs.into_iter().map(|(ip, p)| Term::Addr(ip, p)))
        .collect()
}

/// The filter accepting an established socket whose remote port is in one of `ports`
/// (inclusive ranges) or whose remote end is one of `targets`.
pub fn compile(ports: &[(u16, u16)], targets: &[SocketAddr]) -> Filter {
    let terms = terms(ports, targets);
    if terms.is_empty() {
        return Filter::Nothing;
    }
    let total = terms.iter().map(|t| t.len()).sum::<usize>() + 4 * (terms.len() - 1);
    if total > MAX_LEN {
        return Filter::Everything;
    }
    let mut out = Vec::with_capacity(total);
    for (i, term) in terms.iter().enumerate() {
        let last = i + 1 == terms.len();
        // Where this term's failing conditions jump: the next term (past the JMP), or for the
        // last term 4 bytes past the end (reject); either way 4 bytes past the term's end.
        let fail = out.len() + term.len() + 4;
        match *term {
            Term::Ports(a, b) => {
                let at = out.len();
                op(&mut out, BC_D_GE, 8, fail - at);
                op(&mut out, 0, 0, usize::from(a));
                op(&mut out, BC_D_LE, 8, fail - (at + 8));
                op(&mut out, 0, 0, usize::from(b));
            }
            Term::Addr(ip, port) => {
                let at = out.len();
                op(&mut out, BC_D_COND, term.len(), fail - at);
                // struct inet_diag_hostcond { u8 family; u8 prefix_len; int port; be32 addr[]; }
                let (family, bytes): (u8, Vec<u8>) = match ip {
                    IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
                    IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
                };
                out.push(family);
                out.push(u8::try_from(bytes.len() * 8).expect("32 or 128"));
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&i32::from(port).to_ne_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        if !last {
            // Every condition held: jump to the end, accepting.
            let at = out.len();
            op(&mut out, BC_JMP, 4, total - at);
        }
    }
    debug_assert_eq!(out.len(), total);
    Filter::Program(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the kernel knows of a socket when it runs a program (`struct inet_diag_entry`):
    /// its family and remote address and port.
    #[derive(Debug, Clone, Copy)]
    pub struct Entry {
        pub family: u8,
        pub daddr: [u8; 16],
        pub dport: u16,
    }

    impl Entry {
        pub fn of(remote: SocketAddr) -> Entry {
            match remote.ip() {
                IpAddr::V4(a) => {
                    let mut daddr = [0; 16];
                    daddr[..4].copy_from_slice(&a.octets());
                    Entry { family: AF_INET, daddr, dport: remote.port() }
                }
                IpAddr::V6(a) => Entry { family: AF_INET6, daddr: a.octets(), dport: remote.port() },
            }
        }
    }

    fn u16_at(bc: &[u8], at: usize) -> usize {
        usize::from(u16::from_ne_bytes([bc[at + 2], bc[at + 3]]))
    }

    fn prefix_match(a: &[u8], b: &[u8], bits: usize) -> bool {
        (0..bits).all(|i| (a[i / 8] ^ b[i / 8]) & (0x80 >> (i % 8)) == 0)
    }

    /// Runs a program on a socket the way `inet_diag_bc_run` does (for the operations this
    /// module emits); true when the socket is accepted.
    pub fn run(bc: &[u8], e: &Entry) -> bool {
        let mut at = 0usize;
        while at < bc.len() {
            let (code, yes, no) = (bc[at], usize::from(bc[at + 1]), u16_at(bc, at));
            let holds = match code {
                0 => true,
                BC_JMP => false,
                BC_D_GE => usize::from(e.dport) >= u16_at(bc, at + 4),
                BC_D_LE => usize::from(e.dport) <= u16_at(bc, at + 4),
                BC_D_COND => {
                    let c = &bc[at + 4..];
                    let (family, prefix) = (c[0], usize::from(c[1]));
                    let port = i32::from_ne_bytes([c[4], c[5], c[6], c[7]]);
                    let addr = &c[8..];
                    if port != -1 && port != i32::from(e.dport) {
                        false
                    } else if family != e.family {
                        // An IPv4 condition matches an IPv4-mapped IPv6 socket.
                        family == AF_INET
                            && e.family == AF_INET6
                            && e.daddr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
                            && prefix_match(&e.daddr[12..], addr, prefix)
                    } else {
                        prefix_match(&e.daddr, addr, prefix)
                    }
                }
                other => panic!("operation {other} is not emitted"),
            };
            at += if holds { yes } else { no };
        }
        at == bc.len()
    }

    /// The checks of `inet_diag_bc_audit` (for the operations this module emits): Err says why
    /// the kernel would refuse the program with EINVAL.
    pub fn audit(bc: &[u8]) -> Result<(), String> {
        if bc.len() < 4 || bc.len() > MAX_LEN || !bc.len().is_multiple_of(4) {
            return Err(format!("length {}", bc.len()));
        }
        // The operations the yes chain from the start reaches: where a `no` may land.
        let mut chain = Vec::new();
        let mut at = 0;
        while at < bc.len() {
            chain.push(at);
            let yes = usize::from(bc[at + 1]);
            if yes < 4 || yes % 4 != 0 {
                return Err(format!("yes {yes} at {at}"));
            }
            at += yes;
        }
        for &at in &chain {
            let len = bc.len() - at;
            let (code, yes, no) = (bc[at], usize::from(bc[at + 1]), u16_at(bc, at));
            let min = match code {
                BC_D_GE | BC_D_LE => 8,
                BC_D_COND => {
                    let family = *bc.get(at + 4).ok_or("hostcond past the end")?;
                    let prefix = usize::from(*bc.get(at + 5).ok_or("hostcond past the end")?);
                    let addr = match family {
                        0 => 0,
                        AF_INET => 4,
                        AF_INET6 => 16,
                        f => return Err(format!("family {f} at {at}")),
                    };
                    if prefix > 8 * addr {
                        return Err(format!("prefix {prefix} at {at}"));
                    }
                    4 + 8 + addr
                }
                BC_JMP => 4,
                c => return Err(format!("code {c} at {at}")),
            };
            if len < min {
                return Err(format!("operand past the end at {at}"));
            }
            if no < min || no > len + 4 || no % 4 != 0 {
                return Err(format!("no {no} at {at}"));
            }
            if no < len && !chain.contains(&(at + no)) {
                return Err(format!("no {no} at {at} lands inside an operation"));
            }
            if yes < min || yes > len + 4 {
                return Err(format!("yes {yes} at {at}"));
            }
        }
        if at != bc.len() {
            return Err("the yes chain does not end at the end".into());
        }
        Ok(())
    }

    /// What the agent keeps of a dump: the userspace rule the program must agree with.
    fn wanted(ports: &[(u16, u16)], targets: &[SocketAddr], remote: SocketAddr) -> bool {
        let remote = SocketAddr::new(canonical(remote.ip()), remote.port());
        ports.iter().any(|&(a, b)| (a.min(b)..=a.max(b)).contains(&remote.port()))
            || targets.iter().any(|t| SocketAddr::new(canonical(t.ip()), t.port()) == remote)
    }

    fn program(f: Filter) -> Vec<u8> {
        match f {
            Filter::Program(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_default_storage_ports() {
        let ports = [(3260, 3260), (2049, 2049), (6789, 6789), (3300, 3300), (6800, 7300)];
        let bc = program(compile(&ports, &[]));
        audit(&bc).unwrap();
        // Five ranges of 16 bytes and four jumps between them.
        assert_eq!(bc.len(), 5 * 16 + 4 * 4);
        // The first term, decoded: D_GE 2049 (yes 8, no 20: past the JMP), D_LE 2049.
        assert_eq!((bc[0], bc[1], u16_at(&bc, 0), u16_at(&bc, 4)), (BC_D_GE, 8, 20, 2049));
        assert_eq!((bc[8], bc[9], u16_at(&bc, 8), u16_at(&bc, 12)), (BC_D_LE, 8, 12, 2049));
        assert_eq!((bc[16], bc[17], u16_at(&bc, 16)), (BC_JMP, 4, bc.len() - 16));
        let last = bc.len() - 16;
        assert_eq!((bc[last], u16_at(&bc, last), u16_at(&bc, last + 4)), (BC_D_GE, 20, 6800));
        assert_eq!((bc[last + 8], u16_at(&bc, last + 8), u16_at(&bc, last + 12)), (BC_D_LE, 12, 7300));
        for (port, accepted) in [
            (3260, true),
            (2049, true),
            (6800, true),
            (7000, true),
            (7300, true),
            (7301, false),
            (22, false),
            (45000, false),
        ] {
            let e = Entry::of(SocketAddr::new("10.0.0.5".parse().unwrap(), port));
            assert_eq!(run(&bc, &e), accepted, "port {port}");
        }
    }

    #[test]
    fn targets_match_their_address_and_port_in_both_families() {
        let targets: Vec<SocketAddr> = ["10.0.0.5:9000", "[fd00::5]:2049", "[::ffff:10.0.0.6]:9001"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let bc = program(compile(&[(3260, 3260)], &targets));
        audit(&bc).unwrap();
        let accept = |s: &str| run(&bc, &Entry::of(s.parse().unwrap()));
        assert!(accept("10.0.0.5:9000"));
        assert!(accept("[::ffff:10.0.0.5]:9000"), "IPv4-mapped on an IPv6 socket");
        assert!(accept("[fd00::5]:2049"));
        assert!(accept("10.0.0.6:9001"), "a mapped target is its IPv4 address");
        assert!(accept("10.9.9.9:3260"));
        assert!(!accept("10.0.0.5:9001") && !accept("10.0.0.4:9000") && !accept("[fd00::6]:2049"));
        assert!(!accept("[fd00::5]:2050") && !accept("[::ffff:10.0.0.4]:9000"));
    }

    #[test]
    fn nothing_to_match_and_too_much_to_match() {
        assert_eq!(compile(&[], &[]), Filter::Nothing);
        let many: Vec<SocketAddr> = (0..3000u32)
            .map(|i| SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::from(i as u128 + 1)), 9))
            .collect();
        assert_eq!(compile(&[], &many), Filter::Everything);
        // Ranges that overlap or touch are one term; a target inside a range adds none.
        let bc =
            program(compile(&[(10, 20), (21, 30), (15, 16), (40, 40)], &["10.0.0.1:25".parse().unwrap()]));
        assert_eq!(bc.len(), 2 * 16 + 4);
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        let ip = prop_oneof![
            (0u8..4).prop_map(|l| IpAddr::from([10, 0, 0, l])),
            (0u8..4).prop_map(|l| IpAddr::from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, l])),
            (0u8..4).prop_map(|l| IpAddr::from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, l])),
        ];
        let port = prop_oneof![0u16..=40, 65530u16..=65535, any::<u16>()];
        (ip, port).prop_map(|(ip, port)| SocketAddr::new(ip, port))
    }

    proptest! {
        /// Every program the builder makes passes the kernel's audit, and accepts exactly the
        /// sockets the agent keeps.
        #[test]
        fn programs_are_valid_and_agree_with_the_rule(
            ports in proptest::collection::vec((0u16..=40, 0u16..=40), 0..6),
            wide in proptest::option::of((1u16..=65535, 1u16..=65535)),
            targets in proptest::collection::vec(addr(), 0..6),
            sockets in proptest::collection::vec(addr(), 1..24),
        ) {
            let mut ports = ports;
            ports.extend(wide);
            match compile(&ports, &targets) {
                Filter::Nothing => prop_assert!(ports.is_empty() && targets.is_empty()),
                Filter::Everything => prop_assert!(false, "a small filter fits"),
                Filter::Program(bc) => {
                    prop_assert_eq!(audit(&bc), Ok(()));
                    for s in sockets {
                        prop_assert_eq!(run(&bc, &Entry::of(s)), wanted(&ports, &targets, s), "{}", s);
                    }
                }
            }
        }
    }
}
