//! Production: the systemd unit (systemd-analyze), sd_notify readiness and the watchdog, TLS and
//! basic auth through curl, the server's limits, a wrk load run, the .deb (dpkg -i) and the
//! container image (the local Docker engine). Everything is real: openssl makes the certificates,
//! curl and wrk are the clients, systemd-analyze and dpkg judge the unit and the package.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

#[path = "../examples/docs.rs"]
mod docs;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Agent, in_ci, require_root, tool};

const BIN: &str = env!("CARGO_BIN_EXE_storwatch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

// ---- systemd unit -------------------------------------------------------------------------------

/// `systemd-analyze verify` output (stdout + stderr, which must both be empty) and the offline
/// exposure rating of a unit file.
fn analyze(unit: &Path) -> (String, f64) {
    let (_, out, err) = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(unit));
    let verify = format!("{out}{err}");
    let (ok, out, err) = run(Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(unit));
    assert!(ok, "systemd-analyze security failed: {err}");
    let line = out.lines().find(|l| l.contains("Overall exposure level")).expect("an exposure line");
    let score = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line:?}"));
    (verify, score)
}

/// The shipped unit with ExecStart pointing at the binary under test (verify needs it to exist).
fn unit_copy(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(ROOT).join("systemd/storwatch.service")).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/storwatch "), "ExecStart changed; update this test");
    let path = dir.join("storwatch.service");
    std::fs::write(
        &path,
        text.replace("ExecStart=/usr/bin/storwatch ", &format!("ExecStart={BIN} ")) + extra,
    )
    .unwrap();
    path
}

#[test]
fn systemd_unit_verifies_and_is_rated_at_most_3() {
    if tool("systemd-analyze").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (verify, score) = analyze(&unit_copy(dir.path(), ""));
    assert_eq!(verify, "", "systemd-analyze verify must print nothing");
    eprintln!("storwatch.service: exposure {score}");
    assert!(score <= 3.0, "exposure {score} > 3.0");

    // The lower-privilege drop-in, appended as systemd would apply it.
    let dropin = std::fs::read_to_string(Path::new(ROOT).join("systemd/lower-privilege.conf")).unwrap();
    let (verify, low) = analyze(&unit_copy(dir.path(), &format!("\n{dropin}")));
    assert_eq!(verify, "");
    eprintln!("with lower-privilege.conf: exposure {low}");
    assert!(low < score, "the lower-privilege variant must rate better: {low} vs {score}");

    // The test can fail: a unit with a typo'd key is reported.
    let (verify, _) = analyze(&unit_copy(dir.path(), "\n[Service]\nProtectKernelLog=yes\n"));
    assert!(verify.contains("Unknown key"), "{verify}");

    // The example socket unit for --web.systemd-socket, beside the service it activates.
    let service = unit_copy(dir.path(), "");
    let socket = dir.path().join("storwatch.socket");
    std::fs::copy(Path::new(ROOT).join("systemd/storwatch.socket"), &socket).unwrap();
    let (_, out, err) =
        run(Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&socket).arg(&service));
    assert_eq!(format!("{out}{err}"), "", "systemd-analyze verify storwatch.socket must print nothing");
}

// ---- sd_notify ----------------------------------------------------------------------------------

/// Every collector but diskstats off, so only the one under test can hold up readiness.
/// The credentials a unit file (and its drop-ins, in order) gives the service: its
/// `AmbientCapabilities` as setpriv capability names (`+syslog`) and its `SupplementaryGroups`.
/// An empty assignment resets the list, as systemd does.
fn unit_credentials(files: &[&Path]) -> (Vec<String>, Vec<String>) {
    let (mut caps, mut groups) = (Vec::new(), Vec::new());
    for file in files {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            let list = match key.trim() {
                "AmbientCapabilities" => &mut caps,
                "SupplementaryGroups" => &mut groups,
                _ => continue,
            };
            if value.trim().is_empty() {
                list.clear();
            }
            list.extend(value.split_whitespace().map(str::to_owned));
        }
    }
    let caps = caps.iter().map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())).collect();
    (caps, groups)
}

/// The agent run as each shipped unit runs it (no systemd runs here): a fresh unprivileged uid
/// as DynamicUser= gives, the unit's supplementary groups, its ambient capabilities as the only
/// ones (bounding set included) and no_new_privs, by setpriv; once with the unit alone and once
/// with each shipped drop-in. Every collector error is explained: a collector with errors or a
/// failed run has only `permission` errors and says what it lacks in
/// storwatch_collector_privilege_missing, each said once in the log. On this machine the fabric
/// collector is denied /proc/1/mountstats (mode 0400, root's) and the docker collector the
/// engine's socket (the unit has no docker group). The device sandbox (DeviceAllow=) and the
/// filesystem protections are systemd's and not reproduced.
#[test]
fn as_the_shipped_units_run_it_every_error_is_a_missing_privilege() {
    if !require_root() || tool("setpriv").is_none() {
        return;
    }
    let unit = Path::new(ROOT).join("systemd/storwatch.service");
    let lower = Path::new(ROOT).join("systemd/lower-privilege.conf");
    let mut denied_mountstats = false;
    for files in [vec![unit.as_path()], vec![unit.as_path(), lower.as_path()]] {
        let (caps, groups) = unit_credentials(&files);
        let caps = format!("-all,{}", caps.join(","));
        let gids: Vec<String> = groups
            .iter()
            .map(|g| {
                let (_, out, _) = run(Command::new("getent").args(["group", g]));
                out.split(':').nth(2).unwrap_or_else(|| panic!("no group {g}")).to_owned()
            })
            .collect();
        let groups = format!("--groups={}", gids.join(","));
        let setpriv = [
            "setpriv",
            "--reuid=61899",
            "--regid=61899",
            &groups,
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            &format!("--bounding-set={caps}"),
            "--no-new-privs",
        ];
        let mut agent = Agent::start_wrapped(&setpriv, &["--collector.fabric.interval=1s"]);
        agent.wait_ready();
        std::thread::sleep(Duration::from_millis(2500));
        let body = agent.metrics();
        let what = format!("{files:?} as {setpriv:?}");
        let missing: Vec<(&str, f64)> = common::samples(&body, "storwatch_collector_privilege_missing");
        for (labels, n) in common::samples(&body, "storwatch_collector_errors_total") {
            let collector = labels.split('"').nth(1).unwrap();
            let says = missing.iter().any(|(l, _)| l.starts_with(&format!("collector=\"{collector}\"")));
            if n > 0.0 {
                assert!(labels.ends_with("kind=\"permission\""), "{what}: {labels} {n}\n{body}");
                assert!(says, "{what}: {collector} has permission errors and no privilege series\n{body}");
            }
        }
        for (labels, v) in common::samples(&body, "storwatch_collector_success") {
            let collector = labels.split('"').nth(1).unwrap();
            let says = missing.iter().any(|(l, _)| l.starts_with(&format!("collector=\"{collector}\"")));
            assert!(v == 1.0 || says, "{what}: {collector} failed, not for a privilege\n{body}");
        }
        denied_mountstats |=
            missing.iter().any(|(l, _)| *l == "collector=\"fabric\",what=\"/proc/1/mountstats\"");
        // Said once each, though the fabric collector ran every second.
        let log = agent.drain_log().to_vec();
        for (labels, _) in &missing {
            let collector = labels.split('"').nth(1).unwrap();
            let said = log
                .iter()
                .filter(|l| {
                    l.contains("lacks a privilege") && l.contains(&format!("collector=\"{collector}\""))
                })
                .count();
            let whats =
                missing.iter().filter(|(l, _)| l.starts_with(&format!("collector=\"{collector}\""))).count();
            assert_eq!(said, whats, "{what}: {labels}\n{log:#?}");
        }
        assert!(
            !log.iter().any(|l| l.contains("collector error") && l.contains("Permission denied")),
            "{log:#?}"
        );
    }
    let mode = std::fs::metadata("/proc/1/mountstats")
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    if mode.is_ok_and(|m| m & 0o004 == 0) {
        assert!(
            denied_mountstats,
            "/proc/1/mountstats is not world-readable here: the fabric collector must say so"
        );
    }
}

fn only_diskstats() -> Vec<String> {
    let mut args = vec!["--collector.diskstats.interval=1s".to_owned()];
    for name in storwatch::sources::REGISTRY.iter().map(|s| s.name).filter(|n| *n != "diskstats") {
        args.push(format!("--no-collector.{name}"));
    }
    args
}

fn notify_socket(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    (sock, format!("NOTIFY_SOCKET={}", path.display()))
}

fn recv(sock: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ready_after_the_first_samples_then_watchdog_pings() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, env) = notify_socket(dir.path());
    let args = only_diskstats();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start_wrapped(&["env", &env, "WATCHDOG_USEC=400000"], &args);
    assert_eq!(recv(&sock).as_deref(), Some("READY=1"));
    // READY is sent only once the first samples exist.
    assert_eq!(agent.get("/-/ready", &[]).0, 200);
    for _ in 0..3 {
        assert_eq!(recv(&sock).as_deref(), Some("WATCHDOG=1"));
    }
}

#[test]
fn a_wedged_collector_loop_stops_the_watchdog() {
    // The diskstats source is a FIFO: the first run reads what the test writes, the next run's
    // open() blocks for good, a collector loop as stuck as one in an uninterruptible read.
    let dir = tempfile::tempdir().unwrap();
    let procfs = common::fixture_procfs_copy();
    let fifo = procfs.path().join("diskstats");
    let content = std::fs::read(&fifo).unwrap();
    std::fs::remove_file(&fifo).unwrap();
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        f.write_all(&content).unwrap();
    });
    let (sock, env) = notify_socket(dir.path());
    let mut args = only_diskstats();
    args.push(format!("--path.procfs={}", procfs.path().display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = Agent::start_wrapped(&["env", &env, "WATCHDOG_USEC=1000000"], &args);
    writer.join().unwrap();
    assert_eq!(recv(&sock).as_deref(), Some("READY=1"));
    // The loop wedges at its second run; within interval (1 s) + WatchdogSec (1 s) the agent
    // says so and stops pinging.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !agent.drain_log().iter().any(|l| l.contains("collector loop wedged") && l.contains("diskstats")) {
        assert!(Instant::now() < deadline, "no wedge reported; log: {:?}", agent.log);
        std::thread::sleep(Duration::from_millis(100));
    }
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while recv(&sock).is_some() {} // pings sent before the wedge was seen
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Four ping periods of silence: systemd would now kill and restart the agent.
    assert_eq!(recv(&sock), None, "the watchdog is still pinged");
    // The HTTP server is still up: only the watchdog tells systemd.
    assert_eq!(agent.get("/-/healthy", &[]).0, 200);
}

// ---- TLS and basic auth -------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) {
    let (ok, _, err) = run(Command::new("openssl").current_dir(dir).args(args));
    assert!(ok, "openssl {args:?}: {err}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and a second
/// CA with its own client certificate (which the server must refuse).
fn make_pki(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=storwatch test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
        );
    }
    let leaf = |name: &str, ca: &str, ext: &str| {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-addext",
                ext,
            ],
        );
    };
    leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost");
    leaf("client", "ca", "extendedKeyUsage=clientAuth");
    leaf("stranger", "other-ca", "extendedKeyUsage=clientAuth");
}

/// curl's view of one request: (HTTP code, "000" when no HTTP answer came; headers; seconds).
fn curl(dir: &Path, url: &str, extra: &[&str]) -> (String, String, f64) {
    let (_, out, _) = run(Command::new("curl")
        .current_dir(dir)
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            "ca.crt",
            "-w",
            "\n%{http_code} %{time_total}",
            url,
        ])
        .args(extra));
    let (headers, last) = out.rsplit_once('\n').unwrap_or(("", &out));
    let (code, time) = last.split_once(' ').unwrap();
    (code.to_owned(), headers.to_ascii_lowercase(), time.parse().unwrap())
}

fn tls_tools() -> bool {
    tool("openssl").is_some() && tool("curl").is_some() && tool("htpasswd").is_some()
}

#[test]
fn tls_and_basic_auth_through_curl() {
    if !tls_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    // Two users: one hashed by htpasswd ($2y$), one by the bcrypt crate ($2b$), both cost 10.
    let (ok, out, _) = run(Command::new("htpasswd").args(["-nbBC", "10", "alice", "correct horse"]));
    assert!(ok);
    let alice = out.trim().split_once(':').unwrap().1.to_owned();
    let bob = bcrypt::hash("battery staple", 10).unwrap();
    std::fs::write(
        d.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  alice: '{alice}'\n  bob: '{bob}'\n"
        ),
    )
    .unwrap();
    let agent =
        Agent::start(&["--web.config.file", d.join("web.yml").to_str().unwrap(), "--no-collector.docker"]);
    let url = format!("https://{}/metrics", agent.addr);

    let (code, headers, first) = curl(d, &url, &["-u", "alice:correct horse"]);
    assert_eq!(code, "200");
    assert!(headers.contains("x-content-type-options: nosniff"), "{headers}");
    let (code, _, cached) = curl(d, &url, &["-u", "alice:correct horse"]);
    assert_eq!(code, "200");
    assert_eq!(curl(d, &url, &["-u", "bob:battery staple"]).0, "200");
    let (code, headers, wrong) = curl(d, &url, &["-u", "alice:wrong"]);
    assert_eq!(code, "401");
    assert!(headers.contains("www-authenticate: basic"), "{headers}");
    assert!(headers.contains("x-content-type-options: nosniff"), "{headers}");
    let (code, _, unknown) = curl(d, &url, &["-u", "mallory:correct horse"]);
    assert_eq!(code, "401");
    assert_eq!(curl(d, &url, &[]).0, "401", "no credentials");
    assert_eq!(curl(d, &format!("https://{}/-/healthy", agent.addr), &[]).0, "401", "every path");
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert_eq!(curl(d, &format!("http://{}/metrics", agent.addr), &["-u", "alice:correct horse"]).0, "000");
    // TLS 1.1 is refused (rustls speaks 1.2 and 1.3 only).
    assert_eq!(curl(d, &url, &["-u", "alice:correct horse", "--tls-max", "1.1"]).0, "000");
    eprintln!(
        "request times (debug build, curl time_total incl. TLS handshake): first right password {:.1} ms, \
         same again (cached) {:.1} ms, wrong password {:.1} ms, unknown user {:.1} ms",
        first * 1e3,
        cached * 1e3,
        wrong * 1e3,
        unknown * 1e3
    );
}

#[test]
fn a_client_certificate_is_required_when_configured() {
    if !tls_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    std::fs::write(
        d.join("web.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    )
    .unwrap();
    let agent =
        Agent::start(&["--web.config.file", d.join("web.yml").to_str().unwrap(), "--no-collector.docker"]);
    let url = format!("https://{}/metrics", agent.addr);
    assert_eq!(curl(d, &url, &["--cert", "client.crt", "--key", "client.key"]).0, "200");
    assert_eq!(curl(d, &url, &[]).0, "000", "no client certificate");
    assert_eq!(curl(d, &url, &["--cert", "stranger.crt", "--key", "stranger.key"]).0, "000", "another CA");
}

/// The README's commands for a client CA and a version 3 client certificate, run as written: the
/// agent accepts that certificate. A version 1 certificate of the same CA (`openssl x509 -req`
/// without extensions, as OpenSSL makes it by default) is refused, and the warning says why,
/// once within the minute however often the client retries; so is another CA's certificate.
#[test]
fn readme_client_certificates_work_and_a_refused_one_is_warned_about() {
    if !tls_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let readme = common::readme();
    let start = readme.find("# A client CA (client_ca_file) and a version 3 client certificate").unwrap();
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let (ok, out, err) = run(Command::new("sh").args(["-ec", block]).current_dir(d));
    assert!(ok, "the README's commands fail:\n{block}\n{out}{err}");
    std::fs::write(
        d.join("web.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n",
    )
    .unwrap();
    let mut agent =
        Agent::start(&["--web.config.file", d.join("web.yml").to_str().unwrap(), "--no-collector.docker"]);
    let url = format!("https://{}/metrics", agent.addr);
    assert_eq!(curl(d, &url, &["--cert", "client.crt", "--key", "client.key"]).0, "200");

    // The same key and CA, version 1.
    let (ok, _, err) = run(Command::new("openssl")
        .args(["x509", "-req", "-in", "client.csr", "-CA", "client-ca.crt", "-CAkey", "client-ca.key"])
        .args(["-CAcreateserial", "-days", "365", "-out", "v1.crt"])
        .current_dir(d));
    assert!(ok, "{err}");
    let (_, text, _) =
        run(Command::new("openssl").args(["x509", "-in", "v1.crt", "-noout", "-text"]).current_dir(d));
    assert!(text.contains("Version: 1 (0x0)"), "{text}");
    for _ in 0..3 {
        assert_eq!(curl(d, &url, &["--cert", "v1.crt", "--key", "client.key"]).0, "000", "version 1");
    }
    assert_eq!(curl(d, &url, &["--cert", "stranger.crt", "--key", "stranger.key"]).0, "000", "another CA");
    std::thread::sleep(Duration::from_millis(300));
    let log = agent.drain_log().to_vec();
    let warned = |what: &str| log.iter().filter(|l| l.contains(" WARN ") && l.contains(what)).count();
    assert_eq!(warned("X.509 version 1"), 1, "once, with the reason:\n{log:#?}");
    assert_eq!(warned("unknown CA"), 1, "{log:#?}");
}

#[test]
fn a_bad_web_config_stops_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    for (yaml, message) in [
        ("http_server_config:\n  headers:\n    Server: storwatch\n", "may not be set"),
        ("basic_auth_users:\n  alice: plaintext\n", "not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n", "missing.crt"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n", "TLS11"),
    ] {
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(BIN).arg("--web.config.file").arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(message) && err.contains("web.yml"), "{yaml}: {err}");
    }
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            s.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    s
}

#[test]
fn max_requests_bounds_the_password_checks_in_progress() {
    // 16 clients at once, each with a password never seen (no cache): the bcrypt checks run one
    // at a time (cost 10, >= 70 ms each), so with --web.max-requests=2 most are turned away at once.
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("right", 10).unwrap();
    std::fs::write(dir.path().join("web.yml"), format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
    let agent = Agent::start(&[
        "--web.config.file",
        dir.path().join("web.yml").to_str().unwrap(),
        "--web.max-requests=2",
        "--no-collector.docker",
    ]);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (addr, barrier) = (agent.addr.clone(), barrier.clone());
            std::thread::spawn(move || {
                let auth = format!("Basic {}", base64(format!("alice:guess{i}").as_bytes()));
                barrier.wait();
                common::http_request(&addr, "GET", "/metrics", &[("Authorization", &auth)]).0
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let (refused, denied) =
        (codes.iter().filter(|&&c| c == 503).count(), codes.iter().filter(|&&c| c == 401).count());
    eprintln!(
        "16 concurrent wrong passwords, --web.max-requests=2: {denied} checked (401), {refused} refused (503)"
    );
    assert_eq!(refused + denied, 16, "{codes:?}");
    assert!(refused > 0 && denied >= 2, "{codes:?}");
    // The right password still gets in once the flood is over.
    let auth = format!("Basic {}", base64(b"alice:right"));
    assert_eq!(agent.get("/metrics", &[("Authorization", &auth)]).0, 200);
}

// ---- server limits ------------------------------------------------------------------------------

fn raw(addr: &str, request: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
    (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
}

#[test]
fn request_limits_and_slow_clients() {
    let agent = Agent::start(&[
        "--web.read-header-timeout=1s",
        "--web.connection-timeout=3s",
        "--no-collector.docker",
    ]);
    let mut many = String::from("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    let (resp, _) = raw(&agent.addr, many.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 431"), "100 headers: {resp:.40}");
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(32 * 1024));
    let (resp, _) = raw(&agent.addr, huge.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 431"), "a 32 KiB header: {resp:.40}");
    // A client that never finishes its headers is cut off by the header timeout...
    let (resp, took) = raw(&agent.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    assert!(!resp.contains("200 OK"), "{resp:.40}");
    eprintln!("an unfinished request head was closed after {took:?} (--web.read-header-timeout=1s)");
    // ...and a kept-alive connection by the connection timeout.
    let mut s = TcpStream::connect(&agent.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    loop {
        // Keep-alive requests now and then, each within the header timeout. Every one is
        // answered; the last answer says `Connection: close`, and then the server closes.
        std::thread::sleep(Duration::from_millis(500));
        s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").expect("the connection is still open");
        let n = s.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "a request went unanswered: {head:?}");
        assert!(started.elapsed() < Duration::from_secs(15), "the connection is never closed");
        if head.contains("connection: close") {
            assert!(started.elapsed() >= Duration::from_millis(2500), "closed before its lifetime");
            assert_eq!(s.read(&mut buf).unwrap(), 0, "the server closes after the last response");
            break;
        }
    }
    eprintln!("a busy keep-alive connection was closed {:?} after its first response", started.elapsed());
}

#[test]
fn at_max_connections_new_clients_wait_their_turn() {
    let agent =
        Agent::start(&["--web.max-connections=2", "--web.read-header-timeout=5s", "--no-collector.docker"]);
    agent.wait_ready();
    // Two silent clients take both slots (accepted in order from the backlog)...
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&agent.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // ...so a third connects (the kernel's backlog) but is not served...
    let mut s = TcpStream::connect(&agent.addr).unwrap();
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 1];
    let early = s.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "answered while at the connection limit: {early:?}"
    );
    // ...until the header timeout frees a slot; then it is.
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&out));
    eprintln!("the queued client was served {:?} later, when an idle one timed out", started.elapsed());
    drop(idle);
}

fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain struct in, plain struct out.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = want.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(lim.rlim_cur >= want, "RLIMIT_NOFILE hard limit {} is below {want}", lim.rlim_max);
}

#[test]
fn a_thousand_idle_connections_do_not_stop_a_scrape() {
    raise_nofile(4096);
    let agent = Agent::start(&["--no-collector.docker"]);
    agent.wait_ready();
    let idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(&agent.addr).unwrap()).collect();
    let started = Instant::now();
    let body = agent.metrics();
    let took = started.elapsed();
    assert!(body.contains("storwatch_build_info"));
    // The idle connections are still open (the server has not dropped them to make room).
    let mut open = 0;
    for s in &idle {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        if matches!((&*s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            open += 1;
        }
    }
    assert_eq!(open, 1000);
    eprintln!("scrape with 1,000 idle connections open: {took:?}, {} bytes", body.len());
}

// ---- load ---------------------------------------------------------------------------------------

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn load_200_clients_for_30_seconds() {
    if tool("wrk").is_none() {
        return;
    }
    raise_nofile(4096);
    let agent = Agent::start(&["--no-collector.docker"]);
    agent.wait_ready();
    let pid = agent.child.id();
    let rss_before = status_kib(pid, "VmRSS:");
    let seconds = std::env::var("STORWATCH_LOAD_SECONDS").unwrap_or_else(|_| "30".into());
    let (ok, out, err) = run(Command::new("wrk").args([
        "-t2",
        "-c200",
        &format!("-d{seconds}s"),
        "--timeout",
        "10s",
        "--latency",
        &format!("http://{}/metrics", agent.addr),
    ]));
    assert!(ok, "wrk failed: {err}");
    eprintln!("{out}");
    assert!(!out.contains("Socket errors"), "wrk saw socket errors:\n{out}");
    assert!(!out.contains("Non-2xx"), "wrk saw error responses:\n{out}");
    let requests: u64 = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a request count");
    assert!(requests > 200, "{requests} requests");
    let p99 = out.lines().find(|l| l.trim_start().starts_with("99%")).expect("a p99 line").trim().to_owned();
    eprintln!(
        "load: {requests} requests, latency {p99}, RSS {} KiB before, {} KiB after, peak {} KiB ({} build)",
        rss_before,
        status_kib(pid, "VmRSS:"),
        status_kib(pid, "VmHWM:"),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    // The agent still answers a plain scrape afterwards.
    assert!(agent.metrics().contains("storwatch_build_info"));
}

// ---- Debian package -----------------------------------------------------------------------------

/// Whether cargo-deb is there (under CI=true it must be).
fn cargo_deb() -> Option<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_deb = Command::new(&cargo).args(["deb", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_deb {
        assert!(!in_ci(), "cargo-deb is required under CI=true; scripts/install-test-deps.sh installs it");
        eprintln!("skipping: cargo-deb is not installed");
    }
    has_deb.then_some(cargo)
}

/// Builds the .deb of the binary under test into `out`, with the man pages and completions
/// written first as scripts/test.sh writes them; returns its path.
fn build_deb(cargo: &str, out: &Path) -> String {
    static DOCS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = DOCS.lock().unwrap_or_else(|e| e.into_inner());
    docs::write(&Path::new(ROOT).join("target/docs")).unwrap();
    // The binary under test (debug profile, already built): cargo-deb packs it as it is.
    let (ok, stdout, err) = run(Command::new(cargo)
        .current_dir(ROOT)
        .args(["deb", "--profile", "dev", "--no-build", "-o"])
        .arg(out));
    assert!(ok, "cargo deb failed: {err}");
    let deb = stdout.lines().last().unwrap().trim().to_owned();
    assert!(deb.ends_with(".deb"), "{stdout}");
    deb
}

#[test]
fn the_deb_installs_and_its_unit_verifies() {
    if !require_root() || tool("dpkg").is_none() || tool("systemd-analyze").is_none() {
        return;
    }
    let Some(cargo) = cargo_deb() else { return };
    let (_, status, _) = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "storwatch"]));
    assert!(!status.contains("installed"), "storwatch is already installed here; not touching it");
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(&cargo, out.path());

    struct Purge;
    impl Drop for Purge {
        fn drop(&mut self) {
            let _ = Command::new("dpkg").args(["-P", "storwatch"]).stdout(Stdio::null()).status();
        }
    }
    let _purge = Purge;
    let (ok, _, err) = run(Command::new("dpkg").args(["-i", &deb]));
    assert!(ok, "dpkg -i failed: {err}");
    let unit = Path::new("/usr/lib/systemd/system/storwatch.service");
    let (verify, score) = analyze(unit);
    assert_eq!(verify, "", "the installed unit must verify cleanly");
    assert!(score <= 3.0, "installed unit exposure {score}");
    eprintln!("installed storwatch.service: exposure {score}");
    for f in [
        "/usr/bin/storwatch",
        "/etc/storwatch/storwatch.toml",
        "/etc/default/storwatch",
        "/usr/share/doc/storwatch/README.md",
    ] {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    // The installed binary starts with the installed config, as the unit runs it.
    let mut child = Command::new("/usr/bin/storwatch")
        .args([
            "--config.file=/etc/storwatch/storwatch.toml",
            "--web.listen-address=127.0.0.1:0",
            "--no-collector.docker",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let mut buf = [0u8; 4096];
    while !log.contains("listening") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "the installed agent exited: {log}");
        log.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (ok, _, err) = run(Command::new("dpkg").args(["-r", "storwatch"]));
    assert!(ok, "dpkg -r failed: {err}");
    assert!(!Path::new("/usr/bin/storwatch").exists());
    assert!(!unit.exists());
}

/// The installed paths the README's "Debian package" table names.
fn readme_package_paths() -> Vec<String> {
    let section = common::readme_section(&common::readme(), "### Debian package");
    section
        .lines()
        .filter(|l| l.starts_with("| `/"))
        .flat_map(|l| {
            l.split('|').nth(1).unwrap().split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_deb_installs_in_a_clean_debian_12_container_with_the_files_the_readme_names() {
    if !docker_ready() {
        return;
    }
    let Some(cargo) = cargo_deb() else { return };
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(&cargo, out.path());
    let image = "storwatch-test/debian:12";
    let (ok, _, err) = run(Command::new(Path::new(ROOT).join("scripts/debian-image.sh")).arg(image));
    assert!(ok, "scripts/debian-image.sh failed: {err}");
    let paths = readme_package_paths();
    assert!(paths.len() >= 17, "the README's table lost rows: {paths:?}");
    // In the container: install, list what is missing, check the files are what they claim to be,
    // run the binary, then purge and list what is left.
    let script = format!(
        r#"set -e
dpkg -i /deb/{name} >/dev/null
for f in {paths}; do [ -e "$f" ] || echo "missing $f"; done
zcat /usr/share/man/man1/storwatch.1.gz | grep -q '^\.TH storwatch 1' || echo "not a man page"
grep -q 'groups:' /usr/share/storwatch/alerts/storwatch.rules.yml || echo "not the rules"
grep -q '"panels"' /usr/share/storwatch/dashboards/storwatch.json || echo "not the dashboard"
grep -q 'complete -F _storwatch' /usr/share/bash-completion/completions/storwatch || echo "not a bash completion"
storwatch --version
dpkg -P storwatch >/dev/null
for f in {paths}; do [ ! -e "$f" ] || echo "left after purge: $f"; done
"#,
        name = Path::new(&deb).file_name().unwrap().to_str().unwrap(),
        paths = paths.join(" "),
    );
    let (ok, stdout, err) = run(Command::new("docker").args([
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{}:/deb:ro", out.path().display()),
        image,
        "sh",
        "-c",
        &script,
    ]));
    assert!(ok, "install in the container failed: {err}\n{stdout}");
    assert!(
        stdout.starts_with(concat!("storwatch ", env!("CARGO_PKG_VERSION"), " (revision ")),
        "problems in the container:\n{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "problems in the container:\n{stdout}");
    eprintln!("{} paths of the README's table installed in {image}, and purged", paths.len());
}

// ---- container image ----------------------------------------------------------------------------

fn docker_ready() -> bool {
    if !require_root() || tool("docker").is_none() {
        return false;
    }
    let ok = Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "the Docker engine is required under CI=true");
        eprintln!("skipping: the Docker engine is not reachable");
    }
    ok
}

/// An image built from the binary under test by scripts/build-image.sh, removed on drop with the
/// containers run from it (also when an assertion fails).
struct Image {
    tag: String,
    containers: Vec<String>,
}

impl Image {
    fn build(name: &str) -> Image {
        let tag = format!("{name}-{}:1", std::process::id());
        let (ok, _, err) =
            run(Command::new(Path::new(ROOT).join("scripts/build-image.sh")).args([BIN, &tag]));
        assert!(ok, "build-image.sh failed: {err}");
        Image { tag, containers: Vec::new() }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        let _ = Command::new("docker").args(["rmi", "-f", &self.tag]).output();
    }
}

/// The metrics of the agent in `container` on `addr` once it is ready; its log when it never is.
fn metrics_when_ready(addr: &str, container: &str, within: Duration, what: &str) -> String {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect(addr).is_ok() && common::http_request(addr, "GET", "/-/ready", &[]).0 == 200 {
            return common::http_request(addr, "GET", "/metrics", &[]).2;
        }
        if Instant::now() >= deadline {
            let (_, logs, logs_err) = run(Command::new("docker").args(["logs", container]));
            panic!("{what}: never ready; logs:\n{logs}{logs_err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `storwatch_disk_reads_completed_total` of each device, from the host's /proc/diskstats.
fn host_reads() -> std::collections::BTreeMap<String, f64> {
    std::fs::read_to_string("/proc/diskstats")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(2)?.to_string(), f.get(3)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_image_serves_the_hosts_metrics() {
    if !docker_ready() {
        return;
    }
    let mut image = Image::build("storwatch-prodtest");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let before = host_reads();
    let (ok, id, err) = run(Command::new("docker").args([
        "run",
        "-d",
        "--network",
        "host",
        "-v",
        "/proc:/host/proc:ro",
        "-v",
        "/sys:/host/sys:ro",
        &image.tag,
        &format!("--web.listen-address={addr}"),
        "--no-collector.docker",
        "--no-collector.kmsg",
    ]));
    assert!(ok, "docker run failed: {err}");
    let id = id.trim().to_owned();
    image.containers.push(id.clone());
    let body = metrics_when_ready(&addr, &id, Duration::from_secs(30), "the container");
    let after = host_reads();
    let served = common::samples(&body, "storwatch_disk_reads_completed_total");
    assert!(!served.is_empty(), "no disk samples from the container:\n{body:.2000}");
    for (labels, value) in &served {
        let device = labels.trim_start_matches("device=\"").trim_end_matches('"');
        let (lo, hi) = (before[device], after[device]);
        assert!(lo <= *value && *value <= hi, "{device}: container {value}, host {lo}..{hi}");
    }
    eprintln!("container served {} devices' reads, each within the host's own readings", served.len());
}

/// The `docker run` commands of the README's "Container image" section, continuation lines joined.
fn readme_container_commands() -> Vec<String> {
    let section = common::readme_section(&common::readme(), "### Container image");
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().replace("\\\n", " "))
        .filter(|c| c.trim_start().starts_with("docker run"))
        .collect()
}

/// The collectors a command claims: those it names after `--collector.disable-defaults`, else all.
fn claimed_collectors(command: &str) -> Vec<String> {
    let all = storwatch::sources::REGISTRY.iter().map(|s| s.name.to_owned());
    if !command.contains("--collector.disable-defaults") {
        return all.collect();
    }
    all.filter(|name| command.split_whitespace().any(|w| w == format!("--collector.{name}"))).collect()
}

#[test]
fn every_documented_container_command_yields_the_collectors_it_claims() {
    if !docker_ready() {
        return;
    }
    let mut image = Image::build("storwatch-doctest");
    let tag = image.tag.clone();

    // The OCI labels, against the binary's own --version and Cargo.toml.
    let (_, labels, _) =
        run(Command::new("docker").args(["image", "inspect", "-f", "{{json .Config.Labels}}", &tag]));
    let (_, version, _) = run(Command::new(BIN).arg("--version"));
    let revision = version.trim().trim_end_matches(')').rsplit(' ').next().unwrap().to_owned();
    for (key, value) in [
        ("title", "storwatch"),
        ("version", env!("CARGO_PKG_VERSION")),
        ("revision", revision.as_str()),
        ("licenses", env!("CARGO_PKG_LICENSE")),
        ("base.name", "scratch"),
    ] {
        let pair = format!("\"org.opencontainers.image.{key}\":\"{value}\"");
        assert!(labels.contains(&pair), "{pair} not among {labels}");
    }
    assert!(labels.contains("\"org.opencontainers.image.created\":\"20"), "{labels}");

    let commands = readme_container_commands();
    assert_eq!(commands.len(), 2, "the README's container commands: {commands:#?}");
    for (i, command) in commands.iter().enumerate() {
        let name = format!("storwatch-doctest-{}-{i}", std::process::id());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let command = format!("{} ", command.trim());
        assert!(command.contains("--name storwatch ") && command.contains(" storwatch:0.1.0 "), "{command}");
        let command = command
            .replace("--name storwatch ", &format!("--name {name} "))
            .replace(" storwatch:0.1.0 ", &format!(" {tag} "));
        let command = format!("{} --web.listen-address={addr}", command.trim());
        image.containers.push(name.clone());
        let (ok, _, err) = run(Command::new("bash").args(["-c", &command]));
        assert!(ok, "{command}: {err}");
        let body = metrics_when_ready(&addr, &name, Duration::from_secs(60), &command);
        let claimed = claimed_collectors(&command);
        let ran: Vec<(String, f64)> = common::samples(&body, "storwatch_collector_success")
            .into_iter()
            .map(|(labels, v)| {
                (labels.trim_start_matches("collector=\"").trim_end_matches('"').to_owned(), v)
            })
            .collect();
        let names: Vec<&String> = ran.iter().map(|(n, _)| n).collect();
        let mut expected: Vec<&String> = claimed.iter().collect();
        expected.sort();
        assert_eq!(names, expected, "{command}");
        let failed: Vec<_> = ran.iter().filter(|(_, v)| *v != 1.0).collect();
        let (_, logs, logs_err) = run(Command::new("docker").args(["logs", &name]));
        assert!(failed.is_empty(), "{command}: failing {failed:?}; logs:\n{logs}{logs_err}");
        assert!(body.contains("process_resident_memory_bytes "), "{body:.2000}");
        if claimed.iter().any(|c| c == "docker") {
            // The engine is found through the host's root, and every Docker check is judged.
            assert_eq!(common::sample(&body, "storwatch_docker_up"), Some(1.0), "{command}");
            for check in ["docker_engine", "capacity", "mounts", "filesystem"] {
                let unknown = format!("storwatch_checks_unknown{{check=\"{check}\"}}");
                assert_eq!(common::sample(&body, &unknown), Some(0.0), "{command}: {unknown}");
            }
            for (check, subject) in [
                ("docker_engine", "version"),
                ("docker_engine", "storage_driver"),
                ("capacity", "/var/lib/docker"),
            ] {
                let ok = format!("storwatch_check_ok{{check=\"{check}\",subject=\"{subject}\"}}");
                assert!(common::sample(&body, &ok).is_some(), "{command}: no {ok}");
            }
        }
        eprintln!("README command {i}: {} collectors, each storwatch_collector_success 1", names.len());
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    }
}

// ---- bare metal ---------------------------------------------------------------------------------

/// The commands of the README's "Bare metal" section, one a line.
fn readme_bare_metal_commands() -> Vec<String> {
    let section = common::readme_section(&common::readme(), "### Bare metal");
    let block = section.split("```sh\n").nth(1).unwrap().split("```").next().unwrap();
    block.lines().map(str::to_owned).collect()
}

#[test]
fn the_bare_metal_commands_give_a_non_root_agent_every_collector() {
    if !require_root() || tool("setcap").is_none() || tool("setpriv").is_none() {
        return;
    }
    let commands = readme_bare_metal_commands();
    assert_eq!(commands.len(), 3, "{commands:#?}");
    // Run as written, with the binary under test for the release build, a directory of the test's
    // own for /usr/local/bin, and no sudo (the test is root).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let local = |c: &str| {
        c.replace("target/release/storwatch", BIN)
            .replace("/usr/local/bin", &dir.path().display().to_string())
            .replacen("sudo ", "", 1)
    };
    for c in &commands[..2] {
        let (ok, _, err) = run(Command::new("sh").args(["-c", &local(c)]));
        assert!(ok, "{c}: {err}");
    }
    let agent = format!("{} --web.listen-address=127.0.0.1:0", local(&commands[2]));
    let mut child =
        Command::new("sh").args(["-c", &format!("exec {agent}")]).stderr(Stdio::piped()).spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut stderr = child.stderr.take().unwrap();
    let child = Kill(child);
    let mut log = String::new();
    let mut buf = [0u8; 4096];
    while !log.contains("address=") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "{agent} exited: {log}");
        log.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let addr = log.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    // Not root: the agent runs as nobody, with the file's capabilities.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    assert!(status.lines().any(|l| l.starts_with("Uid:") && l.contains("65534")), "{status}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::http_request(&addr, "GET", "/-/ready", &[]).0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = common::http_request(&addr, "GET", "/metrics", &[]).2;
    let ran = common::samples(&body, "storwatch_collector_success");
    assert_eq!(ran.len(), storwatch::sources::REGISTRY.len(), "{body:.3000}");
    let failed: Vec<_> = ran.iter().filter(|(_, v)| *v != 1.0).collect();
    assert!(failed.is_empty(), "failing as nobody with the capabilities: {failed:?}\n{log}");
    // The privileged parts did run: the kernel log (CAP_SYSLOG under dmesg_restrict), the engine's
    // socket (the docker group) and the eBPF histograms (CAP_BPF, CAP_PERFMON) where the kernel has BTF.
    assert_eq!(common::sample(&body, "storwatch_docker_up"), Some(1.0), "{body:.3000}");
    let denied = |c: &str| {
        common::sample(
            &body,
            &format!("storwatch_collector_errors_total{{collector=\"{c}\",kind=\"permission\"}}"),
        )
    };
    for c in ["kmsg", "biolatency", "docker"] {
        let errors: Vec<&str> =
            body.lines().filter(|l| l.starts_with("storwatch_collector_errors_total")).collect();
        assert_eq!(denied(c), Some(0.0), "{c} was denied: {errors:#?}\n{log}");
    }
    eprintln!(
        "README bare-metal commands: {} collectors as nobody, each storwatch_collector_success 1",
        ran.len()
    );
}
