//! A small blocking HTTP/1.1 client for the Docker Engine API over its unix socket: one `GET` per
//! connection (`Connection: close`), connect and read deadlines, and a pure response parser.
//!
//! The engine answers like this (RFC 9112; the body is either `Content-Length` bytes, or chunked, or
//! everything up to the close):
//!
//! ```text
//! HTTP/1.1 200 OK\r\n
//! Api-Version: 1.41\r\n
//! Content-Type: application/json\r\n
//! Server: Docker/20.10.24+dfsg1 (linux)\r\n
//! Content-Length: 206\r\n
//! \r\n
//! {"Volumes":[{"CreatedAt":"2026-11-26T20:37:05Z","Driver":"local", ... }],"Warnings":null}
//! ```
//!
//! or, for large bodies, `Transfer-Encoding: chunked` with `<hex size>\r\n<data>\r\n ... 0\r\n\r\n`.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest response accepted, head and body: an engine with thousands of containers answers
/// `/containers/json` in a few MB.
pub const MAX_RESPONSE: usize = 64 << 20;
/// The largest response head (status line and headers).
pub const MAX_HEAD: usize = 64 << 10;

/// A parsed response: status code and the decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The peer's bytes are not an HTTP/1.x response (or one we refuse: too large).
    Malformed(String),
    /// The connection closed before the response was complete.
    Truncated,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed(why) => write!(f, "malformed HTTP response: {why}"),
            HttpError::Truncated => write!(f, "the connection closed before the response was complete"),
        }
    }
}

fn bad(why: impl Into<String>) -> HttpError {
    HttpError::Malformed(why.into())
}

/// Parses an HTTP/1.x response from the bytes read so far. `Ok(None)`: more bytes are needed
/// (with `eof`, the bytes end here and a body without a length ends with them). Never panics.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, HttpError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(bad(format!("no end of headers in the first {MAX_HEAD} bytes")));
        }
        return if eof { Err(HttpError::Truncated) } else { Ok(None) };
    };
    if head_end > MAX_HEAD {
        return Err(bad(format!("headers longer than {MAX_HEAD} bytes")));
    }
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = parse_status_line(lines.next().unwrap_or(""))?;
    let (mut length, mut chunked) = (None::<u64>, false);
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| bad(format!("header line {line:?}")))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(bad(format!("header name {name:?}")));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad(format!("Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("two different Content-Length headers"));
            }
            if n > MAX_RESPONSE as u64 {
                return Err(bad(format!("Content-Length {n} above the {MAX_RESPONSE}-byte limit")));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(bad(format!("Transfer-Encoding {value:?}")));
            }
            chunked = true;
        }
    }
    let rest = &buf[head_end + 4..];
    // 1xx, 204 and 304 have no body (RFC 9112 section 6.3).
    if status < 200 || status == 204 || status == 304 {
        return Ok(Some(Response { status, body: Vec::new() }));
    }
    if chunked {
        // Transfer-Encoding overrides Content-Length (RFC 9112 section 6.3, rule 3).
        return match dechunk(rest)? {
            Some(body) => Ok(Some(Response { status, body })),
            None if eof => Err(HttpError::Truncated),
            None => Ok(None),
        };
    }
    match length {
        Some(n) => {
            let n = n as usize; // at most MAX_RESPONSE, checked above
            if rest.len() >= n {
                Ok(Some(Response { status, body: rest[..n].to_vec() }))
            } else if eof {
                Err(HttpError::Truncated)
            } else {
                Ok(None)
            }
        }
        None if eof => Ok(Some(Response { status, body: rest.to_vec() })),
        None => Ok(None),
    }
}

/// `HTTP/1.1 200 OK` -> 200.
fn parse_status_line(line: &str) -> Result<u16, HttpError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(bad(format!("status line {:?}", line.chars().take(40).collect::<String>())));
    }
    let code = parts.next().unwrap_or("");
    match code.parse::<u16>() {
        Ok(c) if code.len() == 3 && (100..=599).contains(&c) => Ok(c),
        _ => Err(bad(format!("status code {:?}", code.chars().take(10).collect::<String>()))),
    }
}

/// Decodes a chunked body; `Ok(None)` while incomplete. Trailers are read and dropped.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return if rest.len() > 1024 { Err(bad("chunk size line too long")) } else { Ok(None) };
        };
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| bad("chunk size is not text"))?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = match usize::from_str_radix(hex, 16) {
            Ok(s) if !hex.is_empty() && !hex.starts_with('+') => s,
            _ => return Err(bad(format!("chunk size {:?}", hex.chars().take(20).collect::<String>()))),
        };
        if size > MAX_RESPONSE || body.len() + size > MAX_RESPONSE {
            return Err(bad(format!("chunked body above the {MAX_RESPONSE}-byte limit")));
        }
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(end) = find(rest, b"\r\n") else { return Ok(None) };
                if end == 0 {
                    return Ok(Some(body));
                }
                rest = &rest[end + 2..];
            }
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Why a request failed: the socket (I/O, with its kind), or the peer's answer.
#[derive(Debug)]
pub enum RequestError {
    Io(io::Error),
    Http(HttpError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Io(e) => e.fmt(f),
            RequestError::Http(e) => e.fmt(f),
        }
    }
}

impl From<io::Error> for RequestError {
    fn from(e: io::Error) -> Self {
        RequestError::Io(e)
    }
}

/// Connects to a unix socket, giving up after `timeout`. A listener whose backlog is full makes a
/// blocking `connect` wait without end; a non-blocking one fails with EAGAIN, retried here until
/// the deadline.
pub fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path too long or has a NUL"));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; a negative return is checked below.
    let fd = unsafe {
        libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a socket we just opened and own; OwnedFd closes it exactly once.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: addr is a valid sockaddr_un that outlives the call, and the length passed is its
        // size; the fd is open.
        let rc = unsafe {
            libc::connect(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Some(libc::EAGAIN) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out (backlog full)"));
            }
            _ => return Err(e),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// `GET path` on the unix socket at `socket`: the whole exchange must finish within `timeout`.
pub fn get(socket: &Path, path: &str, timeout: Duration) -> Result<Response, RequestError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(socket, timeout)?;
    let left = |deadline: Instant| {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() { Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out")) } else { Ok(d) }
    };
    stream.set_write_timeout(Some(left(deadline)?))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: storwatch/{}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes())?;
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        stream.set_read_timeout(Some(left(deadline)?))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out").into());
            }
            Err(e) => return Err(e.into()),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE + MAX_HEAD {
            return Err(RequestError::Http(bad(format!("response above the {MAX_RESPONSE}-byte limit"))));
        }
        match parse_response(&buf, n == 0) {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => {}
            Err(e) => return Err(RequestError::Http(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(buf: &[u8]) -> Response {
        parse_response(buf, false).unwrap().unwrap()
    }

    #[test]
    fn content_length() {
        let r = ok(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}extra");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", false), Ok(None));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", true),
            Err(HttpError::Truncated)
        );
        let r = ok(b"HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        assert_eq!((r.status, r.body.len()), (404, 0));
    }

    #[test]
    fn chunked_and_until_close() {
        let r = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-T: 1\r\n\r\n");
        assert_eq!(r.body, b"{\"a\":1}");
        let partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n";
        assert_eq!(parse_response(partial, false), Ok(None));
        assert_eq!(parse_response(partial, true), Err(HttpError::Truncated));
        let close = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n[1,2]";
        assert_eq!(parse_response(close, false), Ok(None));
        assert_eq!(parse_response(close, true).unwrap().unwrap().body, b"[1,2]");
        assert_eq!(ok(b"HTTP/1.1 204 No Content\r\n\r\n").body, b"");
    }

    #[test]
    fn garbage_is_refused() {
        let cases: [&[u8]; 11] = [
            b"garbage\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n",
        ];
        for c in cases {
            assert!(
                matches!(parse_response(c, false), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-", true), Err(HttpError::Truncated));
        assert_eq!(parse_response(b"", true), Err(HttpError::Truncated));
        let long = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(parse_response(&long, false), Err(HttpError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..400), eof in any::<bool>()) {
            let _ = parse_response(&buf, eof);
        }

        #[test]
        fn near_valid_never_panics(
            s in "HTTP/1\\.[01] [0-9]{1,4} [A-Z]{0,3}\r\n((Content-Length|Transfer-Encoding|X): [0-9a-z,-]{0,22}\r\n){0,3}\r\n([0-9a-fA-F;]{0,4}\r\n[a-z{}\r\n]{0,12}){0,4}",
            eof in any::<bool>(),
        ) {
            let _ = parse_response(s.as_bytes(), eof);
        }

        #[test]
        fn every_split_of_a_valid_response_agrees(body in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..400, chunked in any::<bool>()) {
            let mut raw = if chunked {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes()
            };
            if chunked {
                for part in body.chunks(7) {
                    raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    raw.extend_from_slice(part);
                    raw.extend_from_slice(b"\r\n");
                }
                raw.extend_from_slice(b"0\r\n\r\n");
            } else {
                raw.extend_from_slice(&body);
            }
            let cut = cut.min(raw.len());
            if cut < raw.len() {
                prop_assert_eq!(parse_response(&raw[..cut], false), Ok(None));
            }
            prop_assert_eq!(parse_response(&raw, false), Ok(Some(Response { status: 200, body })));
        }
    }
}
