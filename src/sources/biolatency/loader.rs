//! The short-lived loader process: the eBPF load runs in a child of the agent, which hands back
//! only the descriptors the agent keeps.
//!
//! Parsing the kernel's BTF (`/sys/kernel/btf/vmlinux`, some 5 MB) takes tens of MB of heap for a
//! moment. Done in the agent, that moment sets its peak RSS (VmHWM) for good, although the memory
//! is freed right after. So [`run`] forks (without exec) a child that does the whole load (parse,
//! load, attach) and sends the result back over a unix socketpair: the map and link descriptors
//! with SCM_RIGHTS, a number (the maps' memlock) in the payload, or an error's kind and text.
//! The child then leaves with `_exit`, and its memory goes with it.
//!
//! One `SOCK_SEQPACKET` message, then the child exits:
//!
//! ```text
//! b'O' | value: u64 LE                            + SCM_RIGHTS: the descriptors, in order
//! b'E' | kind: u8 | message: UTF-8 to the end     (no descriptors)
//! ```
//!
//! Fork safety: the agent may have other threads by now (the fabric source's probe threads, a
//! test harness's threads), and a forked child has only the thread that forked, with every lock
//! another thread held at that moment held for good. The child therefore does nothing but the
//! load, one `sendmsg` and `_exit`: no logging (the `log` records aya writes are switched off, as
//! is the panic message; both would take the agent's stderr and subscriber locks), no destructors,
//! no return into the agent's code. What the load needs beyond system calls is the allocator,
//! which glibc keeps usable in a child of a threaded process (its `fork` takes and resets the
//! malloc locks). Should the child hang nonetheless, the parent kills it after the timeout: the
//! source then reports an io error, the agent goes on.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg,
    socketpair,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid};

use crate::error::{CollectError, ErrorKind};

/// What the child hands back: descriptors (now the receiver's) and one number.
#[derive(Debug)]
pub struct Handoff {
    pub fds: Vec<OwnedFd>,
    pub value: u64,
}

/// Descriptors one answer may carry (the cmsg buffer is sized for these).
const MAX_FDS: usize = 16;
/// An error's text is cut to this many bytes, so that any answer fits in one datagram (a verifier
/// log can run to megabytes).
const MAX_TEXT: usize = 32 * 1024;
/// The receive buffer: tag, kind, text and the marker of a cut text, with room to spare.
const MAX_MESSAGE: usize = 64 * 1024;
/// How long the parent waits for the child to be gone once it has answered (or has closed the
/// socket), and again after SIGKILL, before giving up on reaping it.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Exit codes of the child, for the parent's message when no answer came.
const EXIT_SEND_FAILED: i32 = 1;
const EXIT_PANICKED: i32 = 2;
const EXIT_ORPHANED: i32 = 3;

const TAG_OK: u8 = b'O';
const TAG_ERR: u8 = b'E';

fn io_error(message: String) -> CollectError {
    CollectError { kind: ErrorKind::Io, message }
}

/// Runs `work` in a forked child and returns what it returned, its descriptors now this process's.
/// The child's own failures (a crash, no answer within `timeout`, a malformed answer) are io
/// errors; the child is always reaped (killed first when it has not answered in time).
pub fn run<F>(timeout: Duration, work: F) -> Result<Handoff, CollectError>
where
    F: FnOnce() -> Result<Handoff, CollectError>,
{
    // Close-on-exec: a process another thread spawns meanwhile must not inherit either end (the
    // parent would then never see the end of a child that died without answering).
    let (ours, theirs) =
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .map_err(|e| io_error(format!("starting the BPF loader process: socketpair: {}", e.desc())))?;
    let agent = getpid();
    // SAFETY: in the child only `child` runs, which never returns; it keeps to what the module
    // doc says is safe after a fork in a threaded process.
    match unsafe { fork() } {
        Err(e) => Err(io_error(format!("starting the BPF loader process: fork: {}", e.desc()))),
        Ok(ForkResult::Child) => child(theirs, agent, work),
        Ok(ForkResult::Parent { child }) => {
            // The child's end closed here, the socket reports the child's end as EOF.
            drop(theirs);
            let answer = receive(ours.as_fd(), Instant::now() + timeout);
            drop(ours);
            if matches!(answer, Answer::Timeout) {
                let _ = kill(child, Signal::SIGKILL);
            }
            let status = reap(child);
            match answer {
                Answer::Message(result) => result,
                Answer::Eof => Err(io_error(format!(
                    "the BPF loader process ended without an answer ({})",
                    describe(status)
                ))),
                Answer::Timeout => Err(io_error(format!(
                    "the BPF loader process sent no answer within {} s and was killed",
                    timeout.as_secs_f64()
                ))),
                Answer::Failed(e) => Err(io_error(format!("the BPF loader process's answer: {e}"))),
            }
        }
    }
}

/// The child: `work`, its result sent on `socket`, `_exit`. Never returns.
fn child<F>(socket: OwnedFd, agent: Pid, work: F) -> !
where
    F: FnOnce() -> Result<Handoff, CollectError>,
{
    // Killed when the agent's forking thread ends (the agent killed meanwhile); the check after
    // covers an agent gone before the prctl.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if getppid() != agent {
        exit(EXIT_ORPHANED);
    }
    // Whatever handler the agent has by now, a stop signal ends the child at once.
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: SIG_DFL installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    // No logging in the child (see the module doc).
    log::set_max_level(log::LevelFilter::Off);
    std::panic::set_hook(Box::new(|_| {}));

    let code = match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => {
            let code = if send(socket.as_fd(), &result).is_ok() { 0 } else { EXIT_SEND_FAILED };
            // The links stay attached through the agent's copies; the child closes nothing itself.
            std::mem::forget(result);
            code
        }
        Err(_) => EXIT_PANICKED,
    };
    std::mem::forget(socket);
    exit(code)
}

/// `_exit`: no destructors, no atexit handlers, no flush of stdio buffers that are the agent's.
fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the process immediately and touches no Rust state.
    unsafe { libc::_exit(code) }
}

fn send(socket: BorrowedFd<'_>, result: &Result<Handoff, CollectError>) -> nix::Result<usize> {
    let (bytes, fds) = encode(result);
    let iov = [IoSlice::new(&bytes)];
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    // MSG_NOSIGNAL: an agent gone is an error here, not a SIGPIPE.
    sendmsg::<()>(socket.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
}

/// An error kind as one byte: its place in [`ErrorKind::ALL`].
fn kind_byte(kind: ErrorKind) -> u8 {
    ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

fn byte_kind(byte: u8) -> Option<ErrorKind> {
    ErrorKind::ALL.get(byte as usize).copied()
}

/// The answer's payload and the descriptors to pass with it.
fn encode(result: &Result<Handoff, CollectError>) -> (Vec<u8>, Vec<RawFd>) {
    match result {
        Ok(h) if h.fds.len() <= MAX_FDS => {
            let mut bytes = vec![TAG_OK];
            bytes.extend_from_slice(&h.value.to_le_bytes());
            (bytes, h.fds.iter().map(|fd| fd.as_raw_fd()).collect())
        }
        Ok(h) => encode(&Err(CollectError {
            kind: ErrorKind::Internal,
            message: format!(
                "the BPF loader has {} descriptors to hand back, at most {MAX_FDS} fit",
                h.fds.len()
            ),
        })),
        Err(e) => {
            let mut end = e.message.len().min(MAX_TEXT);
            while !e.message.is_char_boundary(end) {
                end -= 1;
            }
            let mut bytes = vec![TAG_ERR, kind_byte(e.kind)];
            bytes.extend_from_slice(&e.message.as_bytes()[..end]);
            if end < e.message.len() {
                bytes.extend_from_slice(" [cut]".as_bytes());
            }
            (bytes, Vec::new())
        }
    }
}

/// The child's result from an answer's payload and the descriptors that came with it (owned
/// here, so closed on any error).
fn decode(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<Handoff, CollectError> {
    match bytes {
        [TAG_OK, value @ ..] if value.len() == 8 => {
            let mut le = [0u8; 8];
            le.copy_from_slice(value);
            Ok(Handoff { fds, value: u64::from_le_bytes(le) })
        }
        [TAG_ERR, kind, text @ ..] if fds.is_empty() && byte_kind(*kind).is_some() => Err(CollectError {
            kind: byte_kind(*kind).unwrap_or(ErrorKind::Io),
            message: String::from_utf8_lossy(text).into_owned(),
        }),
        _ => Err(io_error(format!(
            "the BPF loader process's answer is malformed ({} bytes, {} descriptors)",
            bytes.len(),
            fds.len()
        ))),
    }
}

enum Answer {
    Message(Result<Handoff, CollectError>),
    /// The child closed its end (it ended) without sending.
    Eof,
    Timeout,
    Failed(String),
}

/// Waits until `deadline` for the child's one message.
fn receive(socket: BorrowedFd<'_>, deadline: Instant) -> Answer {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Answer::Timeout;
        }
        // Rounded up: a timeout of 0 ms would spin until the deadline.
        let ms = PollTimeout::try_from(left.as_millis() + 1).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(socket, PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Answer::Failed(format!("poll: {}", e.desc())),
        }
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, flags, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        // MSG_CMSG_CLOEXEC: the received descriptors are close-on-exec from the start.
        let flags = MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT;
        let msg = loop {
            match recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Answer::Failed(format!("recvmsg: {}", e.desc())),
                Ok(msg) => break msg,
            }
        };
        // Every descriptor that came is owned (so closed on any error) before anything is judged.
        let mut fds = Vec::new();
        let Ok(cmsgs) = msg.cmsgs() else {
            // MSG_CTRUNC: more descriptors than the buffer holds (those that fit are in this
            // process now and cannot be told apart; a well-behaved child never sends so many).
            return Answer::Failed(format!("more than {MAX_FDS} descriptors"));
        };
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: SCM_RIGHTS has just installed these descriptors in this process for
                // this message alone: nothing else owns them.
                fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (msg.bytes, msg.flags, fds)
    };
    if len == 0 && fds.is_empty() {
        return Answer::Eof;
    }
    if flags.contains(MsgFlags::MSG_TRUNC) {
        return Answer::Failed(format!("longer than {MAX_MESSAGE} bytes"));
    }
    Answer::Message(decode(&buf[..len], fds))
}

/// Reaps the child: waits up to [`REAP_GRACE`] for it to end, then kills it and waits as long
/// again. `None`: not reaped (unkillable, or no child of ours any more).
fn reap(pid: Pid) -> Option<WaitStatus> {
    let mut deadline = Instant::now() + REAP_GRACE;
    let mut killed = false;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(status) => return Some(status),
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            if killed {
                return None;
            }
            let _ = kill(pid, Signal::SIGKILL);
            killed = true;
            deadline = Instant::now() + REAP_GRACE;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn describe(status: Option<WaitStatus>) -> String {
    match status {
        Some(WaitStatus::Exited(_, EXIT_SEND_FAILED)) => "it could not send its answer".to_owned(),
        Some(WaitStatus::Exited(_, EXIT_PANICKED)) => "it panicked".to_owned(),
        Some(WaitStatus::Exited(_, EXIT_ORPHANED)) => {
            "the agent's thread that started it was gone".to_owned()
        }
        Some(WaitStatus::Exited(_, code)) => format!("exit status {code}"),
        Some(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
        Some(other) => format!("{other:?}"),
        None => "not reaped".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn answers_round_trip() {
        let (r, _w) = std::io::pipe().unwrap();
        let ok = Ok(Handoff { fds: vec![OwnedFd::from(r)], value: 1 << 40 });
        let (bytes, fds) = encode(&ok);
        assert_eq!(fds.len(), 1);
        let dup = |fd: RawFd| {
            // SAFETY: `ok` owns the descriptor and outlives this borrow.
            unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().unwrap()
        };
        let back = decode(&bytes, fds.into_iter().map(dup).collect()).unwrap();
        assert_eq!((back.value, back.fds.len()), (1 << 40, 1));

        let err = CollectError { kind: ErrorKind::Permission, message: "needs CAP_BPF: é".into() };
        let (bytes, fds) = encode(&Err(err.clone()));
        assert!(fds.is_empty());
        assert_eq!(decode(&bytes, Vec::new()).unwrap_err(), err);

        // A long text is cut on a character boundary and marked.
        let long = CollectError { kind: ErrorKind::Io, message: "é".repeat(MAX_TEXT) };
        let (bytes, _) = encode(&Err(long));
        assert!(bytes.len() <= MAX_TEXT + 16);
        let message = decode(&bytes, Vec::new()).unwrap_err().message;
        assert!(message.ends_with("é [cut]"), "{}", &message[message.len() - 20..]);
    }

    #[test]
    fn malformed_answers_are_io_errors() {
        for bytes in [&b""[..], b"O", b"O1234567", b"O123456789", b"E", b"E\x09x", b"X"] {
            let e = decode(bytes, Vec::new()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Io, "{bytes:?}");
            assert!(e.message.contains("malformed"), "{}", e.message);
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode(&bytes, Vec::new());
        }
    }

    const T: Duration = Duration::from_secs(20);

    #[test]
    fn descriptors_and_value_come_back_from_the_child() {
        let handoff = run(T, || {
            // Made in the child: only SCM_RIGHTS can bring it to the parent.
            let (r, mut w) = std::io::pipe().unwrap();
            w.write_all(b"from the child").unwrap();
            Ok(Handoff { fds: vec![OwnedFd::from(r)], value: 42 })
        })
        .unwrap();
        assert_eq!(handoff.value, 42);
        let [fd] = <[OwnedFd; 1]>::try_from(handoff.fds).unwrap();
        let mut text = String::new();
        std::io::PipeReader::from(fd).read_to_string(&mut text).unwrap();
        assert_eq!(text, "from the child", "and the writer is closed: the child is gone");
    }

    #[test]
    fn the_childs_error_comes_back_as_it_was() {
        let err =
            CollectError { kind: ErrorKind::Permission, message: "needs CAP_BPF and CAP_PERFMON".into() };
        assert_eq!(run(T, || Err(err.clone())).unwrap_err(), err);
    }

    #[test]
    fn a_crash_or_panic_is_an_io_error() {
        // SIGKILL, not abort(): no core dump left behind.
        let e = run(T, || {
            let _ = nix::sys::signal::raise(Signal::SIGKILL);
            unreachable!()
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Io);
        assert_eq!(e.message, "the BPF loader process ended without an answer (killed by SIGKILL)");
        let e = run(T, || panic!("no")).unwrap_err();
        assert_eq!(e.message, "the BPF loader process ended without an answer (it panicked)");
    }

    #[test]
    fn a_silent_child_is_killed_after_the_timeout() {
        let start = Instant::now();
        let e = run(Duration::from_millis(300), || {
            std::thread::sleep(Duration::from_secs(60));
            Ok(Handoff { fds: Vec::new(), value: 0 })
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Io);
        assert_eq!(e.message, "the BPF loader process sent no answer within 0.3 s and was killed");
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    }
}
