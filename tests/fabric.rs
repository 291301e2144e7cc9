//! The storage fabric on this machine's real kernel: network namespaces made by the test, a veth
//! pair from the agent's namespace into a target namespace where a TCP server listens on 3260
//! (iSCSI) and a client streams to it. Packet loss is injected with iptables `statistic` drops in
//! the target namespace (tc netem is not available on this kernel). Every address is a private
//! one inside namespaces this test made; nothing is sent anywhere else.
//!
//! The agent runs in the client namespace (`ip netns exec`), so sock_diag, the probe and sysfs
//! see that namespace only; the test talks to it from a thread that entered the namespace.
//!
//! Needs root, `ip` (iproute2) and `iptables`; without them the tests say why and pass, except
//! under CI=true, where they fail. The namespaces are deleted by Drop guards, also on failure.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{Agent, require_root, sample, samples, tool};

const TARGET_IP: &str = "10.213.0.2";
const CLIENT_IP: &str = "10.213.0.1";
const PORT: u16 = 3260;
const CLIENT_IF: &str = "fab0";
const TARGET_IF: &str = "tgt0";

fn prerequisites() -> bool {
    require_root() && tool("ip").is_some() && tool("iptables").is_some()
}

/// Runs a command, asserting success; returns its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace made by this test; deleted on drop (with the veth end inside it).
struct Netns {
    name: String,
}

impl Netns {
    fn new(role: &str) -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("swfab-{}-{}-{role}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        // No IPv6: no router solicitations or DAD on the veth, so the link is quiet when the test
        // stops its own traffic.
        ns.exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `f` on a thread that entered this namespace (network namespaces are per thread).
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        thread::scope(|s| {
            s.spawn(|| {
                enter_netns(&self.name);
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Moves the calling thread into the named network namespace.
fn enter_netns(name: &str) {
    let f = File::open(format!("/run/netns/{name}")).expect("the namespace exists");
    // SAFETY: `f` is an open namespace file; setns changes only this thread's namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {name}: {}", std::io::Error::last_os_error());
}

/// Two namespaces joined by a veth pair: the agent's (CLIENT_IF, CLIENT_IP) and the target's.
struct Fabric {
    client: Netns,
    target: Netns,
}

impl Fabric {
    fn new() -> Fabric {
        let (client, target) = (Netns::new("c"), Netns::new("t"));
        // No tail loss probes: on a loaded machine a receiver stalled past the probe timeout
        // (2 RTTs, at least 10 ms) made the sender retransmit with nothing lost (1 segment in
        // 130,554 in one CI run), and the 0 % phase asserts no retransmits at all.
        for ns in [&client, &target] {
            ns.exec(&["sh", "-c", "echo 0 > /proc/sys/net/ipv4/tcp_early_retrans"]);
        }
        let f = Fabric { client, target };
        f.add_veth();
        f
    }

    fn add_veth(&self) {
        run(
            "ip",
            &[
                "-n",
                &self.client.name,
                "link",
                "add",
                CLIENT_IF,
                "type",
                "veth",
                "peer",
                "name",
                TARGET_IF,
                "netns",
                &self.target.name,
            ],
        );
        self.client.exec(&["ip", "addr", "add", &format!("{CLIENT_IP}/24"), "dev", CLIENT_IF]);
        self.target.exec(&["ip", "addr", "add", &format!("{TARGET_IP}/24"), "dev", TARGET_IF]);
        self.client.exec(&["ip", "link", "set", CLIENT_IF, "up"]);
        self.target.exec(&["ip", "link", "set", TARGET_IF, "up"]);
    }

    fn target_addr(&self) -> SocketAddr {
        format!("{TARGET_IP}:{PORT}").parse().unwrap()
    }

    /// Drops incoming TCP to the server at `percent` % in the target namespace (0: no rule).
    fn set_loss(&self, percent: u32) {
        self.target.exec(&["iptables", "-F", "INPUT"]);
        if percent > 0 {
            let p = format!("{:.2}", f64::from(percent) / 100.0);
            let port = PORT.to_string();
            self.target.exec(&[
                "iptables",
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                &port,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ]);
        }
    }

    /// Starts the agent in the client namespace with a config file.
    fn agent(&self, config: &str, interval: &str, dir: &tempfile::TempDir) -> Agent {
        let path = dir.path().join("storwatch.toml");
        std::fs::write(&path, config).unwrap();
        Agent::start_wrapped(
            &["ip", "netns", "exec", &self.client.name],
            &[
                &format!("--config.file={}", path.display()),
                &format!("--collector.fabric.interval={interval}"),
                "--no-collector.diskstats",
                "--no-collector.kmsg",
                "--no-collector.queue",
                "--no-collector.host",
            ],
        )
    }

    fn scrape(&self, agent: &Agent) -> String {
        let addr = agent.addr.clone();
        self.client.enter(move || {
            let (status, _, body) = common::http_request(&addr, "GET", "/metrics", &[]);
            assert_eq!(status, 200, "{body}");
            body
        })
    }

    /// Scrapes until `done` holds (at most `secs`), returning that body.
    fn wait(&self, agent: &mut Agent, secs: u64, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            assert!(agent.alive(), "the agent died: {:?}", agent.drain_log());
            let body = self.scrape(agent);
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{what} not seen in {secs} s:\n{body}");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `n` more fabric collections completed, and returns the last scrape.
    fn collections(&self, agent: &mut Agent, n: u32, secs: u64) -> String {
        let last = |b: &str| sample(b, LAST_SUCCESS).unwrap_or(0.0);
        let mut seen = last(&self.scrape(agent));
        let mut body = String::new();
        for _ in 0..n {
            body = self.wait(agent, secs, "a new fabric collection", |b| last(b) > seen);
            seen = last(&body);
        }
        body
    }
}

const LAST_SUCCESS: &str = "storwatch_collector_last_success_timestamp_seconds{collector=\"fabric\"}";
const INTERNAL: &str = "storwatch_collector_errors_total{collector=\"fabric\",kind=\"internal\"}";
const IO_ERRORS: &str = "storwatch_collector_errors_total{collector=\"fabric\",kind=\"io\"}";
const SUCCESS: &str = "storwatch_collector_success{collector=\"fabric\"}";

fn target_series(name: &str, target: SocketAddr) -> String {
    format!("{name}{{target=\"{target}\"}}")
}

fn if_series(name: &str) -> String {
    format!("{name}{{interface=\"{CLIENT_IF}\"}}")
}

fn check_ok(body: &str, check: &str, subject: &str) -> Option<f64> {
    sample(body, &format!("storwatch_check_ok{{check=\"{check}\",subject=\"{subject}\"}}"))
}

/// The TCP server standing for a storage target: accepts on PORT in the target namespace and
/// reads everything. Stopping it closes the listener and every connection, as killing a server
/// process would (the kernel closes its sockets; unread data makes that a reset).
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Netns) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), ns.name.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            enter_netns(&name);
            let listener = TcpListener::bind(("0.0.0.0", PORT)).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let s = s.clone();
                        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                        conns.push(thread::spawn(move || {
                            let mut buf = vec![0u8; 64 * 1024];
                            while !s.load(Ordering::Relaxed) {
                                match stream.read(&mut buf) {
                                    Ok(0) => return,
                                    Ok(_) => {}
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => return,
                                }
                            }
                        }));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            drop(listener);
            for c in conns {
                let _ = c.join();
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("the server listens");
        Server { stop, thread: Some(thread) }
    }

    fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client in the agent's namespace writing to the target continuously: 8 KiB every
/// millisecond at most (about 8 MB/s, thousands of segments a second, far below what a veth
/// carries, so the kernel itself drops nothing).
struct Client {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    fn start(ns: &Netns, target: SocketAddr, limit: Option<usize>) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (s, n, name) = (stop.clone(), sent.clone(), ns.name.clone());
        let thread = thread::spawn(move || {
            enter_netns(&name);
            let mut stream =
                TcpStream::connect_timeout(&target, Duration::from_secs(10)).expect("client connects");
            stream.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
            let chunk = vec![0x5au8; 8192];
            while !s.load(Ordering::Relaxed) && limit.is_none_or(|l| n.load(Ordering::Relaxed) < l) {
                match stream.write(&chunk) {
                    Ok(k) => {
                        n.fetch_add(k, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
                thread::sleep(Duration::from_millis(1));
            }
        });
        Client { stop, sent, thread: Some(thread) }
    }

    /// Stops writing and closes the connection.
    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One phase of the loss test, as the agent reported it.
#[derive(Debug, Default, Clone, Copy)]
struct Measured {
    retransmit_window: f64,
    probe_window: f64,
    retransmit_phase: f64,
    probe_phase: f64,
    probes: f64,
    segments: f64,
    rtt: f64,
}

#[test]
fn retransmits_and_probe_loss_follow_injected_loss() {
    if !prerequisites() {
        return;
    }
    let fabric = Fabric::new();
    let target = fabric.target_addr();
    let _server = Server::start(&fabric.target);
    // Four streams, as an iSCSI initiator with several sessions: at 30 % loss each one spends
    // much of its time in retransmission backoff, and together they still carry enough segments.
    let mut clients: Vec<Client> = (0..4).map(|_| Client::start(&fabric.client, target, None)).collect();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[fabric]\ninterfaces = [\"{CLIENT_IF}\"]\ntargets = [\"{target}\"]\nports = [3260]\n\
         [fabric.probe]\ninterval = \"20ms\"\ntimeout = \"200ms\"\n"
    );
    let mut agent = fabric.agent(&config, "3s", &dir);
    fabric.wait(&mut agent, 20, "the target's first window", |b| {
        sample(b, &target_series("storwatch_fabric_target_retransmit_ratio", target)).is_some()
    });

    let counters = |b: &str| {
        let get =
            |name: &str| sample(b, &target_series(name, target)).unwrap_or_else(|| panic!("{name}:\n{b}"));
        (
            get("storwatch_fabric_target_retransmitted_segments_total"),
            get("storwatch_fabric_target_sent_segments_total"),
            get("storwatch_fabric_probe_failures_total"),
            get("storwatch_fabric_probe_attempts_total"),
        )
    };
    let mut table = Vec::new();
    for percent in [0u32, 10, 30] {
        fabric.set_loss(percent);
        // The first collection after the change straddles it; the next two lie inside the phase.
        let start = fabric.collections(&mut agent, 1, 20);
        let end = fabric.collections(&mut agent, 2, 20);
        let (r0, s0, f0, a0) = counters(&start);
        let (r1, s1, f1, a1) = counters(&end);
        let get = |name: &str| {
            sample(&end, &target_series(name, target)).unwrap_or_else(|| panic!("{name}:\n{end}"))
        };
        let m = Measured {
            retransmit_window: get("storwatch_fabric_target_retransmit_ratio"),
            probe_window: get("storwatch_fabric_probe_loss_ratio"),
            retransmit_phase: (r1 - r0) / (s1 - s0),
            probe_phase: (f1 - f0) / (a1 - a0),
            probes: a1 - a0,
            segments: s1 - s0,
            rtt: get("storwatch_fabric_target_rtt_seconds"),
        };
        assert_eq!(
            sample(&end, &target_series("storwatch_fabric_target_connections", target)).map(|c| c >= 4.0),
            Some(true),
            "the four streams (and perhaps a probe) are the target's connections"
        );
        assert_eq!(
            sample(&end, &if_series("storwatch_network_loss_ratio")),
            Some(0.0),
            "iptables drops are not interface drops"
        );
        let verdict = check_ok(&end, "packet_loss", &target.to_string());
        let probe_verdict = check_ok(&end, "packet_loss", &format!("{target} probe"));
        if percent == 0 {
            // Without loss TCP may still retransmit now and then (a tail loss probe fired while
            // the host was busy: 1 of 53,941 segments in one run), far below what 10 % loss
            // gives and the spec's 1 %; the probes lose nothing.
            assert!(
                m.retransmit_window < 0.001 && m.retransmit_phase < 0.001,
                "no loss, (almost) no retransmits:\n{m:?}"
            );
            assert_eq!((m.probe_window, f1 - f0), (0.0, 0.0), "no loss, no lost probe:\n{m:?}");
            assert_eq!((verdict, probe_verdict), (Some(1.0), Some(1.0)));
        } else {
            assert!(m.retransmit_window > 0.0 && m.probe_window > 0.0, "{percent} %: {m:?}");
            assert_eq!((verdict, probe_verdict), (Some(0.0), Some(0.0)), "{percent} % fails packet_loss");
        }
        assert!(m.segments > 500.0 && m.probes > 20.0, "traffic flowed: {m:?}");
        table.push((percent, m));
    }
    clients.iter_mut().for_each(Client::finish);
    eprintln!(
        "injected | retransmit ratio: window  phase  (segments) | probe loss: window  phase  (probes) | rtt"
    );
    for (p, m) in &table {
        eprintln!(
            "{p:>7} % | {:>22.4} {:>6.4} ({:>8}) | {:>18.4} {:>6.4} ({:>6}) | {:.3} ms",
            m.retransmit_window,
            m.retransmit_phase,
            m.segments,
            m.probe_window,
            m.probe_phase,
            m.probes,
            m.rtt * 1e3
        );
    }
    let (m10, m30) = (table[1].1, table[2].1);
    assert!(m30.retransmit_phase > m10.retransmit_phase, "retransmits rise with loss: {table:?}");
    assert!(m30.probe_phase > m10.probe_phase, "probe loss rises with loss: {table:?}");
    let body = fabric.scrape(&agent);
    assert_eq!(sample(&body, INTERNAL), Some(0.0));
}

/// `ip -s -s -j link show dev <if>` in the namespace (struct rtnl_link_stats64 over netlink), as
/// (metric, value) pairs; where /proc/net/dev prints a sum of fields (net/core/net-procfs.c), the
/// same sum.
fn ip_link_counters(ns: &Netns) -> Vec<(&'static str, f64)> {
    let json: serde_json::Value =
        serde_json::from_str(&ns.exec(&["ip", "-s", "-s", "-j", "link", "show", "dev", CLIENT_IF])).unwrap();
    let link = &json[0];
    let s = &link["stats64"];
    let v = |x: &serde_json::Value| x.as_f64().unwrap_or_else(|| panic!("{x} in {link}"));
    let sum = |dir: &str, fields: &[&str]| fields.iter().map(|f| v(&s[dir][f])).sum::<f64>();
    vec![
        ("storwatch_network_receive_bytes_total", v(&s["rx"]["bytes"])),
        ("storwatch_network_receive_packets_total", v(&s["rx"]["packets"])),
        ("storwatch_network_receive_errs_total", v(&s["rx"]["errors"])),
        ("storwatch_network_receive_drop_total", sum("rx", &["dropped", "missed_errors"])),
        ("storwatch_network_receive_fifo_total", v(&s["rx"]["fifo_errors"])),
        (
            "storwatch_network_receive_frame_total",
            sum("rx", &["length_errors", "over_errors", "crc_errors", "frame_errors"]),
        ),
        ("storwatch_network_transmit_bytes_total", v(&s["tx"]["bytes"])),
        ("storwatch_network_transmit_packets_total", v(&s["tx"]["packets"])),
        ("storwatch_network_transmit_errs_total", v(&s["tx"]["errors"])),
        ("storwatch_network_transmit_drop_total", v(&s["tx"]["dropped"])),
        ("storwatch_network_transmit_fifo_total", v(&s["tx"]["fifo_errors"])),
        (
            "storwatch_network_transmit_carrier_total",
            sum("tx", &["carrier_errors", "aborted_errors", "window_errors", "heartbeat_errors"]),
        ),
        ("storwatch_network_carrier_changes_total", v(&s["tx"]["carrier_changes"])),
        ("storwatch_network_mtu_bytes", v(&link["mtu"])),
    ]
}

#[test]
fn interface_counters_equal_ip_link_and_veth_speed_is_judged() {
    if !prerequisites() {
        return;
    }
    let fabric = Fabric::new();
    let target = fabric.target_addr();
    let _server = Server::start(&fabric.target);
    // A known transfer, then the link flapped from the far end and datagrams sent while the peer
    // is down (the veth counts them as transmit drops), then nothing: the link goes quiet.
    let mut client = Client::start(&fabric.client, target, Some(4 << 20));
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.sent.load(Ordering::Relaxed) < 4 << 20 {
        assert!(Instant::now() < deadline, "the transfer did not finish");
        thread::sleep(Duration::from_millis(20));
    }
    client.finish();
    fabric.target.exec(&["ip", "link", "set", TARGET_IF, "down"]);
    fabric.client.enter(|| {
        let udp = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
        for _ in 0..5 {
            let _ = udp.send_to(b"lost", (TARGET_IP, 9));
        }
    });
    fabric.target.exec(&["ip", "link", "set", TARGET_IF, "up"]);
    thread::sleep(Duration::from_millis(500));

    let dir = tempfile::tempdir().unwrap();
    // No targets, so no probe traffic; the link stays quiet while the agent samples it.
    let mut agent = fabric.agent(&format!("[fabric]\ninterfaces = [\"{CLIENT_IF}\"]\n"), "200ms", &dir);
    let body = fabric.collections(&mut agent, 2, 20);
    let ip = ip_link_counters(&fabric.client);
    eprintln!("{CLIENT_IF}: agent vs ip -s -s -j link");
    for (name, want) in &ip {
        let got = sample(&body, &if_series(name));
        eprintln!("  {name:<45} {got:?} {want}");
        assert_eq!(got, Some(*want), "{name}: agent {got:?}, ip {want}");
    }
    let get = |n: &str| sample(&body, &if_series(n)).unwrap();
    assert!(get("storwatch_network_transmit_bytes_total") > f64::from(4u32 << 20), "the transfer is counted");
    assert!(get("storwatch_network_transmit_drop_total") >= 1.0, "datagrams to a down peer are drops");
    assert!(get("storwatch_network_carrier_changes_total") >= 4.0, "up, down, up");
    assert!(
        body.contains(&format!(
            "storwatch_network_info{{interface=\"{CLIENT_IF}\",operstate=\"up\",duplex=\"full\"}} 1"
        )),
        "{body}"
    );

    // The veth's speed is the driver's 10000 Mb/s: judged, and it meets 10 Gb/s exactly.
    let sysfs_speed: f64 =
        fabric.client.exec(&["cat", &format!("/sys/class/net/{CLIENT_IF}/speed")]).trim().parse().unwrap();
    assert_eq!(sysfs_speed, 10_000.0);
    assert_eq!(get("storwatch_network_speed_bytes"), sysfs_speed * 125_000.0);
    assert_eq!(check_ok(&body, "network_bandwidth", CLIENT_IF), Some(1.0));
    let judged =
        |n: &str| sample(&body, &format!("{n}{{check=\"network_bandwidth\",subject=\"{CLIENT_IF}\"}}"));
    assert_eq!(
        (judged("storwatch_check_observed"), judged("storwatch_check_threshold")),
        (Some(1.25e9), Some(1.25e9))
    );
    assert_eq!(check_ok(&body, "packet_loss", CLIENT_IF), Some(1.0), "no drops in the last window");
    drop(agent);

    // The same link against a 25 Gb/s requirement, through `storwatch check` in the namespace.
    let strict = dir.path().join("strict.toml");
    std::fs::write(
        &strict,
        format!(
            "[fabric]\ninterfaces = [\"{CLIENT_IF}\"]\n[checks.network_bandwidth]\nmin_speed_mbps = 25000\n"
        ),
    )
    .unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &fabric.client.name,
            env!("CARGO_BIN_EXE_storwatch"),
            "check",
            "--window=200ms",
            "--output=json",
        ])
        .arg(format!("--config.file={}", strict.display()))
        .args([
            "--no-collector.diskstats",
            "--no-collector.kmsg",
            "--no-collector.queue",
            "--no-collector.host",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "network_bandwidth")
        .unwrap()
        .clone();
    assert_eq!(
        (r["subject"].as_str(), r["ok"].as_bool(), r["observed"].as_str()),
        (Some(CLIENT_IF), Some(false), Some("10000Mb/s"))
    );
}

#[test]
fn a_vanishing_target_and_interface_are_handled() {
    if !prerequisites() {
        return;
    }
    let fabric = Fabric::new();
    let target = fabric.target_addr();
    let mut server = Server::start(&fabric.target);
    let _client = Client::start(&fabric.client, target, None);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[fabric]\ninterfaces = [\"{CLIENT_IF}\"]\ntargets = [\"{target}\"]\n\
         [fabric.probe]\ninterval = \"50ms\"\ntimeout = \"200ms\"\n"
    );
    let mut agent = fabric.agent(&config, "200ms", &dir);
    let conns = target_series("storwatch_fabric_target_connections", target);
    fabric.wait(&mut agent, 20, "the client's connection", |b| {
        sample(b, &conns).is_some_and(|c| c >= 1.0)
            && sample(b, &target_series("storwatch_fabric_target_retransmit_ratio", target)).is_some()
    });

    // The server dies: the connection goes, the configured target stays with 0 connections and
    // its probes fail (refused).
    server.kill();
    let body = fabric.wait(&mut agent, 20, "the target without connections and failing probes", |b| {
        sample(b, &conns) == Some(0.0)
            && sample(b, &target_series("storwatch_fabric_probe_success", target)) == Some(0.0)
            && sample(b, &target_series("storwatch_fabric_probe_loss_ratio", target)) == Some(1.0)
    });
    assert_eq!(
        sample(&body, &target_series("storwatch_fabric_target_rtt_seconds", target)),
        None,
        "no RTT without a connection"
    );
    assert!(
        sample(&body, &target_series("storwatch_fabric_target_retransmitted_segments_total", target))
            .is_some()
    );
    assert_eq!(check_ok(&body, "packet_loss", &format!("{target} probe")), Some(0.0));
    assert_eq!(check_ok(&body, "packet_loss", &target.to_string()), None, "nothing sent, nothing judged");

    // The veth is deleted: its series go, the collector reports the missing interface and runs on.
    let errors_before = sample(&body, IO_ERRORS).unwrap();
    fabric.client.exec(&["ip", "link", "del", CLIENT_IF]);
    let body = fabric.wait(&mut agent, 20, "the interface gone", |b| {
        sample(b, &if_series("storwatch_network_up")).is_none()
            && sample(b, IO_ERRORS).unwrap() > errors_before
    });
    assert_eq!(sample(&body, SUCCESS), Some(1.0));
    assert!(samples(&body, "storwatch_network_receive_bytes_total").is_empty());
    assert_eq!(check_ok(&body, "network_bandwidth", CLIENT_IF), None);

    // And re-created with fresh counters: back, with no negative or absurd window values.
    fabric.add_veth();
    let body = fabric.wait(&mut agent, 20, "the interface back", |b| {
        sample(b, &if_series("storwatch_network_loss_ratio")).is_some()
    });
    for name in [
        "storwatch_network_loss_ratio",
        "storwatch_fabric_probe_loss_ratio",
        "storwatch_fabric_target_retransmit_ratio",
    ] {
        for (labels, v) in samples(&body, name) {
            assert!((0.0..=1.0).contains(&v), "{name}{{{labels}}} {v}");
        }
    }
    assert_eq!(sample(&body, INTERNAL), Some(0.0), "no panic");
    assert!(agent.alive());
    let log = agent.drain_log().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}
