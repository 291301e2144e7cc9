//! Shared helpers for the integration tests: start the real binary, scrape it, read samples.
#![allow(dead_code)]

pub mod loopdev;

pub mod host_sysfs;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The project's README.
pub fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The text of the README section under the heading `head` (the heading line itself, exactly),
/// up to the next heading of the same or a higher level; `#` lines inside code blocks are not
/// headings.
pub fn readme_section(readme: &str, head: &str) -> String {
    let level = head.chars().take_while(|c| *c == '#').count();
    let mut lines = readme.lines().skip_while(|l| *l != head);
    assert!(lines.next().is_some(), "README has no {head:?} section");
    let mut fenced = false;
    lines
        .take_while(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
            }
            let n = l.chars().take_while(|c| *c == '#').count();
            fenced || !(n > 0 && n <= level && l.chars().nth(n) == Some(' '))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// node_exporter's captured procfs and sysfs: `tests/fixtures/node-exporter` (see its NOTICE.md).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-exporter")
}

/// The fixture sysfs tree unpacked into a fresh temporary directory; `<dir>/sys` is the root.
pub fn fixture_sysfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(fixtures().join("sys.tar.gz"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar runs");
    assert!(status.success(), "unpacking sys.tar.gz failed");
    dir
}

/// The fixture procfs with the host files node_exporter's capture left out (the kernel release,
/// the writeback sysctls, meminfo): a procfs the host checks can judge whole. Without them each
/// of those checks is unknown.
pub fn whole_fixture_procfs() -> tempfile::TempDir {
    let dir = fixture_procfs_copy();
    let files = [
        ("sys/kernel/osrelease", "6.1.0-18-amd64\n"),
        ("sys/vm/dirty_ratio", "15\n"),
        ("sys/vm/dirty_background_ratio", "5\n"),
        ("sys/vm/dirty_bytes", "0\n"),
        ("sys/vm/dirty_background_bytes", "0\n"),
        ("meminfo", "MemTotal:       16316412 kB\nMemFree:         1000000 kB\n"),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Copies the fixture procfs files into a fresh temporary directory, for tests that alter them.
pub fn fixture_procfs_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status =
        Command::new("cp").arg("-r").arg(fixtures().join("proc/.")).arg(dir.path()).status().unwrap();
    assert!(status.success());
    dir
}

/// A running agent on a loopback port the kernel chose; killed on drop.
pub struct Agent {
    pub child: Child,
    pub addr: String,
    stderr: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Agent {
    /// Starts `storwatch` with `args` (plus a loopback listen address) and waits until it listens.
    pub fn start(args: &[&str]) -> Agent {
        Agent::start_wrapped(&[], args)
    }

    /// As `start`, run through `wrapper` (e.g. `setpriv --reuid=65534 ...`) when it is not empty.
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Agent {
        let bin = env!("CARGO_BIN_EXE_storwatch");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
        };
        let mut child = cmd
            .arg("--web.listen-address=127.0.0.1:0")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("storwatch starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent { child, addr: String::new(), stderr: rx, log: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.addr.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = agent
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("storwatch did not report its address; log: {:?}", agent.log));
            // logfmt: `address=127.0.0.1:1234`; JSON: `"address":"127.0.0.1:1234"`.
            if let Some(rest) = line.split("address=").nth(1) {
                agent.addr = rest.split_whitespace().next().unwrap().to_owned();
            } else if let Some(rest) = line.split("\"address\":\"").nth(1) {
                agent.addr = rest.split('"').next().unwrap().to_owned();
            }
            agent.log.push(line);
        }
        agent
    }

    /// Log lines printed so far.
    pub fn drain_log(&mut self) -> &[String] {
        while let Ok(line) = self.stderr.try_recv() {
            self.log.push(line);
        }
        &self.log
    }

    /// One HTTP/1.1 GET; returns (status, headers in lower case, body).
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, BTreeMap<String, String>, String) {
        http_request(&self.addr, "GET", path, headers)
    }

    /// GET /metrics and return the body, asserting 200.
    pub fn metrics(&self) -> String {
        let (status, _, body) = self.get("/metrics", &[]);
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until /-/ready answers 200.
    /// Polls /metrics every 20 ms until `done` holds, for at most `timeout`; returns that body.
    pub fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let body = self.metrics();
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{what} not seen within {timeout:?}:\n{body}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.get("/-/ready", &[]).0 != 200 {
            assert!(Instant::now() < deadline, "not ready after 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, BTreeMap<String, String>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The value of the sample `name{labels}` exactly as written (labels in output order), if any.
pub fn sample(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(name_and_labels)?;
        rest.strip_prefix(' ')?.parse().ok()
    })
}

/// Every sample line whose metric name is `name`, as (labels text, value).
pub fn samples<'a>(body: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').map_or((series, ""), |(n, rest)| (n, rest));
            (n == name).then(|| (labels.trim_end_matches('}'), value.parse().unwrap()))
        })
        .collect()
}

/// Whether the test must not skip: under CI every prerequisite is required.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Path to a tool, or a panic (in CI, or always when `required`) / None naming what is missing.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(!in_ci(), "{name} is required under CI=true; scripts/test.sh installs it");
        eprintln!("skipping: {name} is not installed (scripts/test.sh installs it)");
    }
    found
}

/// Whether this test may use root-only things (loop devices, setpriv). Under CI=true a missing
/// privilege fails the test; elsewhere the test says why it skips.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc_geteuid() } == 0;
    if !root {
        assert!(!in_ci(), "this test needs root under CI=true");
        eprintln!("skipping: this test needs root");
    }
    root
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Whether the QEMU guest harness (tests/guest/run.sh) can run: qemu, cpio, busybox and a kernel in
/// /boot (scripts/install-guest-deps.sh installs them). Under CI=true anything missing fails.
pub fn guest_available() -> bool {
    let tools = ["qemu-system-x86_64", "cpio", "busybox"].iter().all(|t| tool(t).is_some());
    let kernel = std::fs::read_dir("/boot")
        .is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-")));
    if tools && !kernel {
        assert!(!in_ci(), "a kernel in /boot is required under CI=true (linux-image-amd64)");
        eprintln!("skipping: no /boot/vmlinuz-* (scripts/install-guest-deps.sh installs it)");
    }
    tools && kernel
}

/// Shell functions for the agent inside a guest script (busybox sh), put in with `{helpers}`:
/// `scrape URL` (its /metrics), `last URL COLLECTOR` (the collector's last success time),
/// `runs URL COLLECTOR N` (waits until the collector has finished N more runs), `ready URL`.
pub const GUEST_SH: &str = r#"scrape() { wget -q -O - "$1/metrics"; }
last() { scrape "$1" | grep "^storwatch_collector_last_success_timestamp_seconds{collector=\"$2\"}" | cut -d' ' -f2; }
runs() {
    t=$(last "$1" "$2"); n=0
    for i in $(seq 300); do
        sleep 0.1; u=$(last "$1" "$2")
        if [ "$u" != "$t" ]; then t=$u; n=$((n + 1)); [ $n -ge "$3" ] && return 0; fi
    done
    echo "timeout waiting for $3 runs of $2"; return 1
}
ready() { for i in $(seq 300); do wget -q -O /dev/null "$1/-/ready" && return 0; sleep 0.1; done; echo "agent $1 not ready"; return 1; }
"#;

/// Boots the QEMU guest once (tests/guest/run.sh, see tests/guest/README.md) with `flags`, runs the
/// shell `script` in it with the host programs `binaries` carried in at their host paths, and
/// returns what the script wrote (stdout and stderr). Panics, with the guest console's tail, when
/// the guest does not finish or the script exits non-zero.
pub fn guest_run(script: &str, flags: &[&str], binaries: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cmd.sh");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guest/run.sh"))
        .args(flags)
        .arg(&path)
        .args(binaries)
        .output()
        .expect("tests/guest/run.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(out.status.success(), "guest run failed ({}):\n{stderr}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends one QMP command (JSON text) to a guest run with `--qmp SOCKET` and returns QEMU's reply
/// line (`{"return": ...}` or `{"error": ...}`), waiting up to 60 s for the socket to appear. E.g.
/// `{"execute":"qom-set","arguments":{"path":"/machine/peripheral/nvme0","property":"smart_critical_warning","value":16}}`
pub fn guest_qmp(socket: &std::path::Path, command: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let stream = loop {
        match std::os::unix::net::UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("QMP socket {}: {e}", socket.display()),
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream).lines();
    let greeting = lines.next().expect("QMP greeting").unwrap();
    assert!(greeting.contains("\"QMP\""), "{greeting}");
    let mut reply = String::new();
    for cmd in [r#"{"execute":"qmp_capabilities"}"#, command] {
        writer.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        // Asynchronous events ({"event": ...}) may come before the reply.
        reply = lines
            .by_ref()
            .map(Result::unwrap)
            .find(|l| l.starts_with("{\"return\"") || l.starts_with("{\"error\""))
            .expect("QMP reply");
    }
    reply
}

/// The guest's output cut at its `=== name` lines (tests/guest/README.md).
pub fn sections(out: &str) -> BTreeMap<&str, &str> {
    let mut map = BTreeMap::new();
    for part in out.split("=== ").skip(1) {
        let (name, body) = part.split_once('\n').unwrap_or((part, ""));
        map.insert(name.trim(), body);
    }
    map
}

/// The value after `"key":` in nvme-cli / smartctl JSON, quotes stripped (first occurrence).
pub fn json_value<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let rest = json.split(&format!("\"{key}\"")).nth(1)?.trim_start().strip_prefix(':')?.trim_start();
    Some(match rest.strip_prefix('"') {
        Some(s) => s.split('"').next()?,
        None => rest.split([',', '\n', '}']).next()?.trim(),
    })
}
