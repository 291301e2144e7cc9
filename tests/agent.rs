//! The binary as a user meets it: flags, --help, --version, config errors, the HTTP endpoints,
//! content negotiation, and the storage latency check driven by a procfs the test rewrites.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Agent, fixture_procfs_copy, fixture_sysfs, sample};

fn storwatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_storwatch")).args(args).output().unwrap()
}

#[test]
fn help_documents_every_flag() {
    let out = storwatch(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--web.listen-address",
        "--web.systemd-socket",
        "--collector.disable-defaults",
        "--web.telemetry-path",
        "--config.file",
        "--path.procfs",
        "--path.sysfs",
        "--path.rootfs",
        "--path.dev",
        "--collector.diskstats",
        "--no-collector.diskstats",
        "--collector.diskstats.interval",
        "--collector.diskstats.device-include",
        "--collector.diskstats.device-exclude",
        "--log.level",
        "--log.format",
        "--version",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(help.contains("[default: :9747]"), "{help}");
    // Every collector of the registry has its flags in --help, and in the README's flag table
    // with its default interval.
    let readme = common::readme();
    let row = |flag: &str| readme.lines().find(|l| l.starts_with(&format!("| `{flag}`"))).unwrap_or_default();
    for spec in storwatch::sources::REGISTRY {
        for flag in [format!("--collector.{}", spec.name), format!("--collector.{}.interval", spec.name)] {
            assert!(help.contains(&flag), "--help lacks {flag}");
        }
        assert!(row("--collector.<name>").contains(&format!("`{}`", spec.name)), "README: {}", spec.name);
        let interval = format!("{} `{}`", spec.name, spec.interval);
        assert!(row("--collector.<name>.interval").contains(&interval), "README lacks {interval}");
    }
}

#[test]
fn version() {
    let out = storwatch(&["--version"]);
    assert!(out.status.success());
    let v = String::from_utf8(out.stdout).unwrap();
    assert!(v.starts_with(&format!("storwatch {} (revision ", env!("CARGO_PKG_VERSION"))), "{v}");
}

#[test]
fn bad_flags_and_configs_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[checks.storage_latency]\nenabled = true\nmax = 5\n").unwrap();
    let out = storwatch(&["--config.file", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!(
            "config file {}: line 3, column 7, key checks.storage_latency.max: invalid type: integer `5`",
            bad.display()
        )),
        "{err}"
    );

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[checks]\nstorage_latncy = {}\n").unwrap();
    let out = storwatch(&["--config.file", unknown.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("line 2, column 1, key checks.storage_latncy: unknown field `storage_latncy`"),
        "{err}"
    );

    let out = storwatch(&["--config.file", "/nonexistent/storwatch.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("/nonexistent/storwatch.toml: No such file"));

    for args in
        [&["--collector.diskstats.device-include=("][..], &["--web.listen-address=:70000"], &["--bogus"]]
    {
        let out = storwatch(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn listen_failure_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = storwatch(&[&format!("--web.listen-address={addr}"), "--path.procfs=/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot listen on") && err.contains("in use"), "{err}");
}

#[test]
fn endpoints_and_content_negotiation() {
    let sys = fixture_sysfs();
    let procfs = common::fixtures().join("proc");
    let agent = Agent::start(&[
        &format!("--path.procfs={}", procfs.display()),
        &format!("--path.sysfs={}", sys.path().join("sys").display()),
        "--web.telemetry-path=/probe",
        "--log.format=json",
    ]);
    agent.wait_ready();
    assert!(agent.log.iter().any(|l| l.starts_with('{') && l.contains("\"listening\"")), "{:?}", agent.log);

    let (status, headers, body) = agent.get("/", &[]);
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("text/html"));
    assert!(body.contains("href=\"/probe\""), "{body}");

    let (status, headers, body) = agent.get("/probe", &[]);
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert!(body.contains("# TYPE storwatch_disk_reads_completed_total counter\n"));
    assert!(!body.contains("# EOF"));

    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, headers, body) = agent.get("/probe", &[("Accept", accept)]);
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(body.contains("# TYPE storwatch_disk_reads_completed counter\nstorwatch_disk_reads_completed_total{device=\"dm-0\"} 59910002\n"));
    assert!(body.contains("# TYPE storwatch_disk info\n"));
    assert!(body.ends_with("# EOF\n"));

    assert_eq!(agent.get("/-/healthy", &[]).0, 200);
    assert_eq!(agent.get("/-/ready", &[]).0, 200);
    let (status, _, body) = agent.get("/metrics", &[]);
    assert_eq!(status, 404);
    assert!(body.contains("Metrics are at /probe"));
    let (status, headers, _) =
        common::http_request(&agent.addr, "POST", "/probe", &[("Content-Length", "0")]);
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");
}

/// Writes `content` to `path` atomically, as the kernel presents a whole file to one read.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits until the collector has published a run newer than `after` and returns /metrics.
fn next_sample(agent: &Agent, after: f64) -> (f64, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = agent.metrics();
        let t = sample(&body, "storwatch_collector_last_success_timestamp_seconds{collector=\"diskstats\"}")
            .unwrap_or(0.0);
        if t > after {
            return (t, body);
        }
        assert!(Instant::now() < deadline, "no new sample after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn latency_check_judges_the_window_with_the_configured_threshold() {
    let proc = fixture_procfs_copy();
    let sys = tempfile::tempdir().unwrap();
    let diskstats = proc.path().join("diskstats");
    // sda: 1000 more writes that took 30 s between the two samples: w_await 30 ms. Its write time
    // field wraps at 2^32 ms on the way, which must not matter. sdb: fast, 1 ms per write.
    let before =
        "8 0 sda 100 0 800 50 1000 0 8000 4294962296 0 500 450\n8 16 sdb 10 0 80 10 10 0 80 10 0 20 20\n";
    let after =
        "8 0 sda 100 0 800 50 2000 0 16000 25000 0 1500 2450\n8 16 sdb 10 0 80 10 110 0 880 110 0 120 120\n";
    replace(&diskstats, before);
    let config = proc.path().join("storwatch.toml");
    std::fs::write(&config, "[checks.storage_latency]\nmax = \"20ms\"\n").unwrap();
    let agent = Agent::start(&[
        &format!("--path.procfs={}", proc.path().display()),
        &format!("--path.sysfs={}", sys.path().display()),
        &format!("--config.file={}", config.display()),
        "--collector.diskstats.interval=500ms",
    ]);
    let (t, body) = next_sample(&agent, 0.0);
    assert!(!body.contains("check=\"storage_latency\",subject"), "no window yet, so no verdict:\n{body}");
    assert_eq!(sample(&body, "storwatch_checks_failing{check=\"storage_latency\"}"), Some(0.0));
    replace(&diskstats, after);
    let (_, body) = next_sample(&agent, t);
    assert_eq!(
        sample(&body, "storwatch_check_ok{check=\"storage_latency\",subject=\"sda\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "storwatch_check_observed{check=\"storage_latency\",subject=\"sda\"}"),
        Some(0.03)
    );
    assert_eq!(sample(&body, "storwatch_check_ok{check=\"storage_latency\",subject=\"sdb\"}"), Some(1.0));
    assert_eq!(
        sample(&body, "storwatch_check_observed{check=\"storage_latency\",subject=\"sdb\"}"),
        Some(0.001)
    );
    assert_eq!(
        sample(&body, "storwatch_check_threshold{check=\"storage_latency\",subject=\"sda\"}"),
        Some(0.02)
    );
    assert_eq!(sample(&body, "storwatch_checks_failing{check=\"storage_latency\"}"), Some(1.0));
    assert_eq!(sample(&body, "storwatch_disk_await_seconds{device=\"sda\",op=\"write\"}"), Some(0.03));
    let window = sample(&body, "storwatch_disk_window_seconds").unwrap();
    let iops = sample(&body, "storwatch_disk_operations_per_second{device=\"sda\",op=\"write\"}").unwrap();
    assert!((iops * window - 1000.0).abs() < 1e-6, "{iops} * {window}");
    let bps = sample(&body, "storwatch_disk_bytes_per_second{device=\"sda\",op=\"write\"}").unwrap();
    assert!((bps * window - 8000.0 * 512.0).abs() < 1e-3);
}

#[test]
fn disabled_check_exports_nothing() {
    let proc = fixture_procfs_copy();
    let config = proc.path().join("storwatch.toml");
    std::fs::write(&config, "[checks.storage_latency]\nenabled = false\n").unwrap();
    let agent = Agent::start(&[
        &format!("--path.procfs={}", proc.path().display()),
        &format!("--config.file={}", config.display()),
        "--path.sysfs=/nonexistent",
        "--collector.diskstats.interval=200ms",
    ]);
    let (t, _) = next_sample(&agent, 0.0);
    let (_, body) = next_sample(&agent, t);
    assert!(body.contains("storwatch_disk_await_seconds{"), "{body}");
    assert!(!body.contains("storage_latency"), "{body}");
    assert!(
        body.contains("storwatch_checks_failing{check=\"writeback\"}"),
        "other checks still run:\n{body}"
    );
}

#[test]
fn disabled_collector_is_absent() {
    // biolatency off too: its histograms are `storwatch_disk_io_latency_*`.
    let agent =
        Agent::start(&["--no-collector.diskstats", "--no-collector.queue", "--no-collector.biolatency"]);
    agent.wait_ready();
    let body = agent.metrics();
    assert!(body.contains("storwatch_build_info{"));
    assert!(body.contains("storwatch_collector_success{collector=\"host\"} 1"), "{body}");
    assert!(!body.contains("diskstats") && !body.contains("storwatch_disk_"), "{body}");
    assert!(!body.contains("collector=\"queue\""), "{body}");
}

/// The fields of `/proc/PID/stat` after the command name, numbered as in proc(5).
fn stat_fields(pid: u32) -> Vec<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &text[text.rfind(')').unwrap() + 2..];
    // Index 0 unused; fields 1 and 2 (pid, comm) and 3 (state, a letter) are not numbers: pad them.
    [0; 4].into_iter().chain(after.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0))).collect()
}

/// A `Name: value` line of `/proc/PID/status` (the number only; kB where the kernel says so).
fn status_field(pid: u32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn getconf(name: &str) -> u64 {
    let out = Command::new("getconf").arg(name).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

#[test]
fn process_series_agree_with_proc_pid_stat_and_status() {
    let agent =
        Agent::start(&["--no-collector.biolatency", "--no-collector.docker", "--no-collector.fabric"]);
    agent.wait_ready();
    let pid = agent.child.id();
    let (ticks, page) = (getconf("CLK_TCK") as f64, getconf("PAGESIZE"));
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as f64;
    let (before, rss_before, threads_before, fds_before) =
        (stat_fields(pid), status_field(pid, "VmRSS"), status_field(pid, "Threads"), fds());
    let body = agent.metrics();
    let (after, rss_after, threads_after, fds_after) =
        (stat_fields(pid), status_field(pid, "VmRSS"), status_field(pid, "Threads"), fds());
    let value = |name: &str| sample(&body, name).unwrap_or_else(|| panic!("{name} missing:\n{body}"));
    let within = |name: &str, v: f64, lo: f64, hi: f64| {
        assert!(lo <= v && v <= hi, "{name} {v} outside [{lo}, {hi}]");
    };

    // CPU: utime + stime in clock ticks, read before and after the scrape.
    let cpu = |f: &[u64]| (f[14] + f[15]) as f64 / ticks;
    within("process_cpu_seconds_total", value("process_cpu_seconds_total"), cpu(&before), cpu(&after));
    // Memory: stat's rss pages and status' VmRSS agree with each other and with the series, up to
    // what the scrape itself allocated and freed (a few pages).
    let slack = 512.0 * 1024.0;
    let rss = value("process_resident_memory_bytes");
    let (lo, hi) = ((rss_before.min(rss_after) * 1024) as f64, (rss_before.max(rss_after) * 1024) as f64);
    within("process_resident_memory_bytes", rss, lo - slack, hi + slack);
    let (lo, hi) = (before[24].min(after[24]) * page, before[24].max(after[24]) * page);
    within("process_resident_memory_bytes (stat)", rss, lo as f64 - slack, hi as f64 + slack);
    let vsize = value("process_virtual_memory_bytes");
    within(
        "process_virtual_memory_bytes",
        vsize,
        before[23].min(after[23]) as f64,
        before[23].max(after[23]) as f64,
    );
    let vm_size = status_field(pid, "VmSize") as f64 * 1024.0;
    within("VmSize", vm_size, vsize - 8.0 * 1024.0 * 1024.0, vsize + 8.0 * 1024.0 * 1024.0);
    let threads = value("process_threads");
    within(
        "process_threads",
        threads,
        threads_before.min(threads_after) as f64,
        threads_before.max(threads_after) as f64,
    );
    assert_eq!(threads, before[20] as f64, "stat's num_threads");
    // Descriptors: while it answers, the agent also holds our connection and the directory it lists.
    within(
        "process_open_fds",
        value("process_open_fds"),
        fds_before.min(fds_after),
        fds_before.max(fds_after) + 2.0,
    );
    // The soft limit of open files, which the agent raises to the hard one at start.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().nth(3);
    assert_eq!(value("process_max_fds"), soft.unwrap().parse::<f64>().unwrap());
    // Start: boot time plus field 22, against the test's own clock: the agent started seconds ago.
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let btime: f64 = stat.lines().find_map(|l| l.strip_prefix("btime ")).unwrap().parse().unwrap();
    let start = value("process_start_time_seconds");
    assert!((start - (btime + before[22] as f64 / ticks)).abs() < 1e-6, "{start}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    within("process_start_time_seconds", start, now - 60.0, now + 1.0);
    // Every series a Prometheus user's dashboards expect, typed as client_golang types them.
    for (name, kind) in [("process_cpu_seconds_total", "counter"), ("process_resident_memory_bytes", "gauge")]
    {
        assert!(body.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
    }
    assert!(sample(&body, "process_virtual_memory_max_bytes").is_some());
}

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET /metrics on `addr`, retried for up to 20 s while the agent starts.
fn metrics_at(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            let (status, _, body) = common::http_request(addr, "GET", "/metrics", &[]);
            assert_eq!(status, 200, "{addr}: {body}");
            return body;
        }
        assert!(Instant::now() < deadline, "nothing answers on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_listen_address_serves() {
    let second = format!("127.0.0.1:{}", free_port());
    let mut agent =
        Agent::start(&[&format!("--web.listen-address={second}"), "--collector.disable-defaults"]);
    assert!(metrics_at(&agent.addr).contains("storwatch_build_info{"));
    assert!(metrics_at(&second).contains("storwatch_build_info{"));
    std::thread::sleep(Duration::from_millis(200));
    let listening: Vec<_> = agent.drain_log().iter().filter(|l| l.contains("listening")).cloned().collect();
    assert_eq!(listening.len(), 2, "{listening:?}");
    // One address that cannot be bound fails the start, as with one address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let out = storwatch(&["--web.listen-address=127.0.0.1:0", &format!("--web.listen-address={taken}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}

#[test]
fn disable_defaults_runs_only_the_collectors_named() {
    let agent = Agent::start(&["--collector.disable-defaults", "--collector.host", "--collector.queue"]);
    agent.wait_ready();
    let body = agent.metrics();
    let running: Vec<&str> =
        common::samples(&body, "storwatch_collector_success").iter().map(|(labels, _)| *labels).collect();
    assert_eq!(running, ["collector=\"host\"", "collector=\"queue\""], "{body}");
    assert!(body.contains("storwatch_host_kernel_info{"), "{body}");
    // Without any collector named, the agent serves its own series only.
    let agent = Agent::start(&["--collector.disable-defaults"]);
    agent.wait_ready();
    let body = agent.metrics();
    assert!(common::samples(&body, "storwatch_collector_success").is_empty(), "{body}");
    assert!(body.contains("storwatch_build_info{") && body.contains("process_cpu_seconds_total "), "{body}");
}

#[test]
fn systemd_socket_activation_serves_on_the_sockets_passed() {
    let Some(activate) = common::tool("systemd-socket-activate") else { return };
    let (a, b, ignored) = (free_port(), free_port(), free_port());
    let (a, b, ignored) =
        (format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}"), format!("127.0.0.1:{ignored}"));
    // systemd-socket-activate listens, and starts the agent with both sockets on the first connection.
    let child = Command::new(activate)
        .args(["-l", &a, "-l", &b, env!("CARGO_BIN_EXE_storwatch"), "--web.systemd-socket"])
        .arg(format!("--web.listen-address={ignored}"))
        .args(["--collector.disable-defaults", "--collector.host"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    assert!(metrics_at(&a).contains("storwatch_build_info{"));
    assert!(metrics_at(&b).contains("storwatch_build_info{"));
    assert!(std::net::TcpStream::connect(&ignored).is_err(), "--web.listen-address is ignored");

    // Asked for sockets with none passed, or with a descriptor that is no listening socket: exit 1.
    let out = storwatch(&["--web.systemd-socket"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no socket activation file descriptors found"), "{err}");
    let out = Command::new("sh")
        .args(["-c", "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" --web.systemd-socket 3</dev/null"])
        .arg(env!("CARGO_BIN_EXE_storwatch"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("descriptor 3 passed by systemd is not a listening TCP socket"), "{err}");
}
