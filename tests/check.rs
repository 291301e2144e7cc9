//! `storwatch check`: on this machine against independent oracles (the sysctls themselves,
//! getconf, findmnt, /sys), on node_exporter's fixtures with the scheduler rule, with bad config
//! files, and pointed at broken roots (an empty procfs, a sysfs without block devices, a Docker
//! socket that refuses, a rootfs whose /var/run is an absolute symlink): the affected checks are
//! unknown, never missing or passing, the exit status 2, and the agent's series say why.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_storwatch")).arg("check").args(args).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap(), text(out.stdout), text(out.stderr))
}

fn json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--output=json"];
    all.extend_from_slice(args);
    let (code, out, err) = check(&all);
    (code, serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{err}")))
}

fn row<'a>(report: &'a Value, check: &str, subject: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == check && r["subject"] == subject)
        .unwrap_or_else(|| panic!("no {check}/{subject} in {report:#}"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn tool_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn on_this_machine_the_report_shows_the_real_values() {
    let (code, report) = json(&["--window=1s"]);

    for (subject, want) in [("vm.dirty_ratio", 15), ("vm.dirty_background_ratio", 5)] {
        let seen = read(&format!("/proc/sys/{}", subject.replace('.', "/")));
        let r = row(&report, "writeback", subject);
        assert_eq!(r["observed"], seen.as_str());
        assert_eq!(r["ok"], seen == want.to_string(), "{r}");
        assert_eq!(r["value"].as_f64(), Some(seen.parse::<f64>().unwrap() / 100.0));
    }

    let release = read("/proc/sys/kernel/osrelease");
    let r = row(&report, "kernel", "kernel");
    assert_eq!(r["observed"], release.as_str());
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap(), parts.next().unwrap());
    assert_eq!(r["ok"], version >= (5, 4));

    let cpus: u64 = tool_output("getconf", &["_NPROCESSORS_ONLN"]).parse().unwrap();
    let r = row(&report, "resources", "cpus");
    assert_eq!(r["value"].as_f64(), Some(cpus as f64));
    assert_eq!(r["ok"], cpus >= 4);
    let meminfo = read("/proc/meminfo");
    let kb: u64 = meminfo.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let r = row(&report, "resources", "memory");
    assert_eq!(r["value"].as_f64(), Some((kb * 1024) as f64));
    assert_eq!(r["ok"], kb * 1024 >= 8 << 30);

    for path in ["/var/lib/docker", "/var/lib/docker/volumes"] {
        assert!(
            std::path::Path::new(path).exists(),
            "{path} exists on this kind of machine (Docker runs here)"
        );
        let fstype = tool_output("findmnt", &["-n", "-o", "FSTYPE", "-T", path]);
        let r = row(&report, "filesystem", path);
        assert_eq!(r["observed"], fstype.as_str());
        assert_eq!(r["ok"], fstype == "xfs" || fstype == "ext4");
    }

    let mut schedulers = 0;
    for entry in std::fs::read_dir("/sys/block").unwrap() {
        let dev = entry.unwrap().file_name().into_string().unwrap();
        let Ok(text) = std::fs::read_to_string(format!("/sys/block/{dev}/queue/scheduler")) else { continue };
        if dev.starts_with("loop") || dev.starts_with("zram") || dev.starts_with("ram") {
            continue; // left out by the default device filter
        }
        let active = text.split_whitespace().find(|t| t.starts_with('[')).unwrap().trim_matches(['[', ']']);
        let rotational = read(&format!("/sys/block/{dev}/queue/rotational")) == "1";
        let r = row(&report, "io_scheduler", &dev);
        assert!(r["observed"].as_str().unwrap().starts_with(active), "{r}");
        assert_eq!(r["ok"], rotational || active == "mq-deadline" || active == "none");
        schedulers += 1;
    }
    assert!(schedulers >= 1, "this machine has at least its root disk");
    assert!(report["results"].as_array().unwrap().iter().any(|r| r["check"] == "storage_latency"));

    let failing = report["results"].as_array().unwrap().iter().filter(|r| r["ok"] == false).count();
    assert_eq!(report["failing"].as_u64(), Some(failing as u64));
    assert_eq!(report["passed"], failing == 0);
    assert_eq!(code, if failing == 0 { 0 } else { 1 });

    // The table says the same (latency, kernel log and capacity rows aside: a second run measures a
    // new window, the age of the last kernel log error has grown, and free space moves).
    let (table_code, table, _) = check(&["--window=1s"]);
    assert!(!table.contains('\x1b'), "no colour when stdout is not a terminal");
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let starts: Vec<usize> = ["CHECK", "SUBJECT", "OBSERVED", "EXPECTED", "VERDICT"]
        .iter()
        .map(|h| header.find(h).unwrap())
        .collect();
    let mut rows = 0;
    for line in lines.take_while(|l| !l.is_empty()) {
        let cell =
            |i: usize| line.get(starts[i]..starts.get(i + 1).copied().unwrap_or(line.len())).unwrap().trim();
        if cell(0) == "storage_latency" || cell(0) == "device_errors" || cell(0) == "capacity" {
            continue;
        }
        let r = row(&report, cell(0), cell(1));
        assert_eq!((cell(2), cell(3)), (r["observed"].as_str().unwrap(), r["expected"].as_str().unwrap()));
        assert_eq!(cell(4), if r["ok"] == true { "PASS" } else { "FAIL" });
        rows += 1;
    }
    let volatile_rows = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["check"] == "storage_latency" || r["check"] == "device_errors" || r["check"] == "capacity"
        })
        .count();
    assert_eq!(rows + volatile_rows, report["results"].as_array().unwrap().len());
    // The summary counts the table's own rows (the JSON run's count can differ on the volatile ones).
    let table_failing = table.lines().filter(|l| l.trim_end().ends_with(" FAIL")).count();
    assert!(table.contains(&format!("{table_failing} failed")), "{table}");
    assert_eq!(table_code, if table_failing == 0 { 0 } else { 1 });
}

fn fixture_args(proc: &tempfile::TempDir, sys: &tempfile::TempDir) -> Vec<String> {
    vec![
        format!("--path.procfs={}", proc.path().display()),
        format!("--path.sysfs={}", sys.path().join("sys").display()),
        // The kernel log is this machine's, not the fixture's.
        "--no-collector.kmsg".to_owned(),
        // The fixture's 1 Gb/s eth0 fails network_bandwidth; the fabric checks are tested in
        // tests/fabric.rs.
        "--no-collector.fabric".to_owned(),
        // The Docker engine is this machine's; its checks are tested in tests/docker.rs.
        "--no-collector.docker".to_owned(),
        // The fixture's nvme0 has no device node here, so its health is unknown (exit 2); the
        // NVMe checks are tested in tests/nvme.rs.
        "--no-collector.nvme".to_owned(),
        "--window=100ms".to_owned(),
    ]
}

#[test]
fn fixture_scheduler_rule_and_configured_thresholds() {
    let (proc, sys) = (common::whole_fixture_procfs(), common::fixture_sysfs());
    let args = fixture_args(&proc, &sys);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let (code, report) = json(&args);
    let r = row(&report, "io_scheduler", "sda");
    assert_eq!(
        (r["observed"].as_str(), r["ok"].as_bool()),
        (Some("bfq (rotational)"), Some(true)),
        "reported, not a violation"
    );
    assert_eq!(row(&report, "resources", "cpus")["ok"], true, "the fixture has 4 CPUs");
    assert_eq!(row(&report, "filesystem", "/var/lib/docker")["observed"], "ext4");
    assert_eq!(code, 0, "{report:#}");

    std::fs::write(sys.path().join("sys/block/sda/queue/rotational"), "0\n").unwrap();
    let (code, report) = json(&args);
    let r = row(&report, "io_scheduler", "sda");
    assert_eq!((r["observed"].as_str(), r["ok"].as_bool()), (Some("bfq"), Some(false)));
    assert_eq!(r["expected"], "mq-deadline or none");
    assert_eq!((code, report["failing"].as_u64()), (1, Some(1)));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storwatch.toml");
    std::fs::write(&config, "[checks.io_scheduler]\nallowed = [\"bfq\"]\n[checks.resources]\nmin_cpus = 8\n")
        .unwrap();
    let with_config = [args.as_slice(), &["--config.file", config.to_str().unwrap()]].concat();
    let (code, report) = json(&with_config);
    assert_eq!(row(&report, "io_scheduler", "sda")["ok"], true);
    let cpus = row(&report, "resources", "cpus");
    assert_eq!((cpus["ok"].as_bool(), cpus["threshold"].as_f64()), (Some(false), Some(8.0)));
    assert_eq!(code, 1);

    std::fs::write(&config, "[checks.io_scheduler]\nenabled = false\n").unwrap();
    let (code, report) = json(&with_config);
    assert!(!report["results"].as_array().unwrap().iter().any(|r| r["check"] == "io_scheduler"));
    assert_eq!(code, 0);
}

#[test]
fn collector_failure_is_exit_2() {
    let (code, out, err) =
        check(&["--path.procfs=/nonexistent", "--path.sysfs=/nonexistent", "--window=100ms"]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("collector diskstats failed") && err.contains("/nonexistent/diskstats"), "{err}");
    let (code, report) = json(&[
        "--path.procfs=/nonexistent",
        "--no-collector.queue",
        "--no-collector.host",
        "--window=100ms",
    ]);
    assert_eq!(code, 2);
    assert_eq!(report["passed"], false);
    assert_eq!(report["errors"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_configs_exit_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[checks.latency]\nmax = \"5ms\"\n",
            "line 1, column 9, key checks.latency: unknown field `latency`",
        ),
        (
            "[checks.writeback]\ndirty_ratio = \"15\"\n",
            "line 2, column 15, key checks.writeback.dirty_ratio: invalid type: string \"15\"",
        ),
        (
            "[checks.writeback]\ndirty_background_ratio = -5\n",
            "line 2, column 26, key checks.writeback.dirty_background_ratio: -5 is not a percentage",
        ),
        (
            "[checks.resources]\nmin_cpus = -1\n",
            "line 2, column 12, key checks.resources.min_cpus: -1 must be a whole number greater than zero",
        ),
        (
            "[checks.storage_latency]\nmax = \"-5ms\"\n",
            "line 2, column 7, key checks.storage_latency.max: invalid duration \"-5ms\"",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = check(&["--config.file", path.to_str().unwrap(), "--window=100ms"]);
        assert_eq!(code, 2, "{text:?}");
        assert!(out.is_empty());
        assert!(err.contains(&format!("config file {}: {want}", path.display())), "{text:?}: {err}");
    }
}

/// The rows of `check` in a report.
fn rows<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    report["results"].as_array().unwrap().iter().filter(|r| r["check"] == check).collect()
}

/// Every row of `check` is unknown, its reason naming `why`, and there is at least one.
fn all_unknown(report: &Value, check: &str, why: &str) {
    let r = rows(report, check);
    assert!(!r.is_empty(), "{check} has no rows: missing, not unknown\n{report:#}");
    for row in r {
        assert_eq!((row["verdict"].as_str(), row["ok"].as_bool()), (Some("unknown"), Some(false)), "{row}");
        let observed = row["observed"].as_str().unwrap();
        assert!(observed.starts_with("not read: ") && observed.contains(why), "{check}: {observed}");
        assert!(row["value"].is_null(), "nothing was seen: {row}");
    }
}

#[test]
fn an_empty_procfs_makes_the_host_checks_unknown_not_missing() {
    let empty = tempfile::tempdir().unwrap();
    let procfs = format!("--path.procfs={}", empty.path().display());
    let args = [
        procfs.as_str(),
        "--no-collector.diskstats",
        "--no-collector.kmsg",
        "--no-collector.fabric",
        "--no-collector.docker",
        "--window=100ms",
    ];
    let (code, report) = json(&args);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["passed"], false);
    all_unknown(&report, "kernel", "sys/kernel/osrelease: No such file");
    all_unknown(&report, "writeback", "No such file");
    assert_eq!(rows(&report, "writeback").len(), 2, "vm.dirty_ratio and vm.dirty_background_ratio");
    let memory = row(&report, "resources", "memory");
    assert!(memory["observed"].as_str().unwrap().contains("meminfo: No such file"), "{memory}");
    // The CPUs are in sysfs, which is this machine's: judged.
    assert_ne!(row(&report, "resources", "cpus")["verdict"], "unknown");
    all_unknown(&report, "filesystem", "mountinfo");
    assert_eq!(rows(&report, "filesystem").len(), 2, "each watched path");
    let unknown = report["results"].as_array().unwrap().iter().filter(|r| r["verdict"] == "unknown").count();
    assert_eq!(report["unknown"].as_u64(), Some(unknown as u64));
    let warnings = report["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().starts_with("host: io error: ")), "{warnings:?}");

    // The table says UNKNOWN and counts them.
    let (code, table, _) = check(&args);
    assert_eq!(code, 2);
    assert!(table.lines().any(|l| l.starts_with("kernel ") && l.trim_end().ends_with("UNKNOWN")), "{table}");
    assert!(table.contains(&format!(", {unknown} unknown\n")), "{table}");

    // The agent's series say the same, and why: the host collector's io errors.
    let agent = common::Agent::start(&args[..5]);
    agent.wait_ready();
    let body = agent.metrics();
    let unknown = |c: &str, s: &str| {
        common::sample(&body, &format!("storwatch_check_unknown{{check=\"{c}\",subject=\"{s}\"}}"))
    };
    assert_eq!(unknown("kernel", "kernel"), Some(1.0), "{body}");
    assert_eq!(unknown("resources", "memory"), Some(1.0));
    assert_eq!(unknown("resources", "cpus"), Some(0.0));
    assert_eq!(common::sample(&body, "storwatch_check_ok{check=\"kernel\",subject=\"kernel\"}"), None);
    assert_eq!(common::sample(&body, "storwatch_checks_unknown{check=\"writeback\"}"), Some(2.0));
    let io = common::sample(&body, "storwatch_collector_errors_total{collector=\"host\",kind=\"io\"}");
    assert!(io.unwrap() >= 7.0, "osrelease, 4 vm sysctls, meminfo, mountinfo: {body}");
}

#[test]
fn a_sysfs_without_block_devices_makes_the_queue_checks_unknown() {
    let sys = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sys.path().join("block")).unwrap();
    let sysfs = format!("--path.sysfs={}", sys.path().display());
    let args = [sysfs.as_str(), "--no-collector.kmsg", "--no-collector.fabric", "--no-collector.docker"];
    let (code, report) = json(&[&args[..], &["--window=100ms"]].concat());
    assert_eq!(code, 2, "{report:#}");
    all_unknown(&report, "io_scheduler", "block: no block devices at all");
    assert_eq!(row(&report, "io_scheduler", "*")["verdict"], "unknown");
    // The CPUs are read from sysfs too: a missing file, unknown.
    assert_eq!(row(&report, "resources", "cpus")["verdict"], "unknown");
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e.as_str().unwrap().starts_with("collector queue failed: io error: ")),
        "{errors:?}"
    );
    // Nothing passes on the sysfs that was not read (storage_latency is judged on this
    // machine's /proc/diskstats, which was read).
    for r in rows(&report, "io_scheduler") {
        assert_ne!(r["verdict"], "pass", "{r}");
    }

    let agent = common::Agent::start(&args);
    agent.wait_ready();
    let body = agent.metrics();
    assert_eq!(
        common::sample(&body, "storwatch_collector_success{collector=\"queue\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        common::sample(&body, "storwatch_collector_errors_total{collector=\"queue\",kind=\"io\"}"),
        Some(1.0)
    );
    assert_eq!(
        common::sample(&body, "storwatch_check_unknown{check=\"io_scheduler\",subject=\"*\"}"),
        Some(1.0)
    );
}

#[test]
fn a_docker_socket_that_refuses_makes_the_docker_checks_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    // Bound and closed: the path exists, connecting is refused.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let flag = format!("--collector.docker.socket={}", socket.display());
    let (code, report) = json(&[
        &flag,
        "--no-collector.diskstats",
        "--no-collector.kmsg",
        "--no-collector.queue",
        "--no-collector.fabric",
        "--window=100ms",
    ]);
    assert_eq!(code, 2, "{report:#}");
    all_unknown(&report, "docker_engine", "Connection refused");
    assert_eq!(rows(&report, "docker_engine").len(), 2, "version and storage_driver");
    all_unknown(&report, "capacity", "docker.sock");
    all_unknown(&report, "mounts", "docker.sock");
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w.as_str().unwrap().contains("docker.sock GET /version")),
        "{warnings:?}"
    );
}

/// A root whose `/var/run` is an absolute symlink, as on every Debian (`/var/run -> /run`): the
/// default socket `<rootfs>/var/run/docker.sock` must resolve inside the root, not through this
/// machine's own filesystem. The link points to `/run/<name>`, a directory only the root has, so
/// a resolution outside the root finds nothing; the root's socket there is a hard link to this
/// machine's engine socket (the root is made under /run, on the socket's filesystem).
#[test]
fn a_rootfs_with_an_absolute_var_run_symlink_finds_the_engine() {
    let root = tempfile::tempdir_in("/run").unwrap();
    let r = root.path();
    let name = format!("storwatch-test-{}", std::process::id());
    assert!(!Path::new("/run").join(&name).exists());
    std::fs::create_dir_all(r.join("run").join(&name)).unwrap();
    std::fs::create_dir_all(r.join("var/lib/docker")).unwrap();
    std::os::unix::fs::symlink(Path::new("/run").join(&name), r.join("var/run")).unwrap();
    std::fs::hard_link("/run/docker.sock", r.join("run").join(&name).join("docker.sock")).unwrap();
    let rootfs = format!("--path.rootfs={}", r.display());
    let args = [
        rootfs.as_str(),
        "--no-collector.diskstats",
        "--no-collector.kmsg",
        "--no-collector.queue",
        "--no-collector.fabric",
        "--window=100ms",
    ];
    let (_, report) = json(&args);
    let server =
        Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output().unwrap();
    let server = String::from_utf8(server.stdout).unwrap().trim().to_owned();
    let version = row(&report, "docker_engine", "version");
    assert_eq!(version["observed"], server.as_str(), "{report:#}");
    assert_ne!(version["verdict"], "unknown");
    assert_ne!(row(&report, "docker_engine", "storage_driver")["verdict"], "unknown");

    // Through a symlink loop, the socket is not found: an error naming the loop, never a path
    // outside the root.
    std::fs::remove_file(r.join("var/run")).unwrap();
    std::os::unix::fs::symlink("/var/run", r.join("var/run")).unwrap();
    let (code, report) = json(&args);
    assert_eq!(code, 2);
    all_unknown(&report, "docker_engine", ".storwatch-symlink-loop/var/run/docker.sock");
}
