//! `storwatch check`: on this machine against independent oracles (the sysctls themselves,
//! getconf, findmnt, /sys), on node_exporter's fixtures with the scheduler rule, and with bad
//! config files.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

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
