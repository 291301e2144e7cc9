//! What the two netlink dumps (`sockdiag.rs`, `rtnl.rs`) share: the socket, the walk over the
//! messages of one datagram, and receiving datagrams until NLMSG_DONE.

use std::io;
use std::os::fd::AsRawFd;

use netlink_sys::{Socket, SocketAddr};

/// A netlink socket of `protocol`, bound and connected to the kernel, whose receives give up
/// after 5 s.
pub fn socket(protocol: isize) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
    // SAFETY: the fd is a valid open socket owned by `socket` for this call, and `tv` is a valid
    // timeval whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(socket) } else { Err(io::Error::last_os_error()) }
}

/// Calls `message` with each whole message of one datagram (its nlmsghdr included), in order.
/// False when a length field does not fit: that message and the rest of the buffer are lost.
/// Never panics on any input.
pub fn each_message(buf: &[u8], mut message: impl FnMut(&[u8])) -> bool {
    let mut offset = 0;
    while offset < buf.len() {
        let rest = &buf[offset..];
        let len = rest.get(..4).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize);
        if len < 16 || len > rest.len() {
            return false;
        }
        message(&rest[..len]);
        // NLMSG_ALIGN
        offset += (len + 3) & !3;
    }
    true
}

/// Receives the datagrams of one dump, handing each to `datagram`, which says whether the dump
/// is done (NLMSG_DONE seen) and the errno the kernel answered, if any (negative, as sent).
pub fn receive(
    socket: &Socket,
    what: &str,
    mut datagram: impl FnMut(&[u8]) -> (bool, Option<i32>),
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        if socket.recv(&mut buf, 0)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{what}: end of data before NLMSG_DONE"),
            ));
        }
        match datagram(&buf) {
            (_, Some(errno)) => return Err(io::Error::from_raw_os_error(-errno)),
            (true, None) => return Ok(()),
            (false, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_walked_aligned_and_misframing_is_reported() {
        let mut buf = Vec::new();
        for body in [&b"abc"[..], &b"defgh"[..]] {
            buf.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            buf.extend_from_slice(&[0; 12]);
            buf.extend_from_slice(body);
            while buf.len() % 4 != 0 {
                buf.push(0);
            }
        }
        let mut seen = Vec::new();
        assert!(each_message(&buf, |m| seen.push(m[16..].to_vec())));
        assert_eq!(seen, [b"abc".to_vec(), b"defgh".to_vec()]);
        seen.clear();
        buf.extend_from_slice(&1000u32.to_ne_bytes());
        assert!(!each_message(&buf, |m| seen.push(m.to_vec())), "a length past the end");
        assert_eq!(seen.len(), 2, "the whole messages before it still count");
        assert!(!each_message(&[1, 2], |_| {}));
        assert!(each_message(&[], |_| {}));
    }
}
