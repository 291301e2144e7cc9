//! Golden test: the binary on node_exporter's captured procfs/sysfs (tests/fixtures), its
//! /metrics compared with tests/golden/fixtures.prom, every raw counter checked against the
//! fixture's own /proc/diskstats fields, and `promtool check metrics` run on the output.
//!
//! Regenerate the golden file after an intended change: `UPDATE_GOLDEN=1 cargo test --test golden`.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Agent, fixture_sysfs, fixtures, sample, samples};
use regex::Regex;
use storwatch::sources::DEFAULT_EXCLUDE;

/// Drops the values that change from run to run (timings, the revision, the agent's own process).
fn normalise(body: &str) -> String {
    body.lines()
        .map(|l| {
            if l.starts_with("storwatch_collector_duration_seconds{")
                || l.starts_with("storwatch_collector_last_success_timestamp_seconds{")
                || l.starts_with("process_")
            {
                format!("{} <volatile>", l.rsplit_once(' ').unwrap().0)
            } else if l.starts_with("storwatch_build_info{") {
                "storwatch_build_info{<volatile>} 1".to_owned()
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect()
}

fn fixture_agent(sys: &tempfile::TempDir) -> Agent {
    let procfs = fixtures().join("proc");
    // Fabric link state comes from this machine's network namespace (rtnetlink), not from the
    // tree: the fabric interface is one that exists nowhere, reported as missing.
    let config = sys.path().join("golden.toml");
    std::fs::write(&config, "[fabric]\ninterfaces = [\"golden0\"]\n").unwrap();
    let root = sys.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let agent = Agent::start(&[
        &format!("--config.file={}", config.display()),
        &format!("--path.procfs={}", procfs.display()),
        &format!("--path.sysfs={}", sys.path().join("sys").display()),
        // An empty /dev: this machine's kernel log and NVMe nodes would make the output vary.
        &format!("--path.dev={}", sys.path().display()),
        // One sample only: the window gauges need two, so the output is fully deterministic.
        "--collector.diskstats.interval=1h",
        "--collector.fabric.interval=1h",
        // The fixture tree has no Docker engine (this machine's would make the output vary), and
        // an empty root no data root, so the engine is absent rather than unreachable.
        &format!("--collector.docker.socket={}", fixtures().join("docker.sock").display()),
        &format!("--path.rootfs={}", root.display()),
    ]);
    agent.wait_ready();
    agent
}

#[test]
fn metrics_match_golden_file() {
    let sys = fixture_sysfs();
    let agent = fixture_agent(&sys);
    let got = normalise(&agent.metrics());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fixtures.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).expect("golden file exists (UPDATE_GOLDEN=1 writes it)");
    if got != want {
        let diff: Vec<String> = got
            .lines()
            .zip(want.lines().chain(std::iter::repeat("<missing>")))
            .filter(|(g, w)| g != w)
            .take(10)
            .map(|(g, w)| format!("got:  {g}\nwant: {w}"))
            .collect();
        panic!(
            "/metrics differs from {} ({} vs {} lines):\n{}",
            path.display(),
            got.lines().count(),
            want.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn raw_counters_equal_the_fixture_fields() {
    let sys = fixture_sysfs();
    let agent = fixture_agent(&sys);
    let body = agent.metrics();
    let exclude = Regex::new(DEFAULT_EXCLUDE).unwrap();
    let text = std::fs::read_to_string(fixtures().join("proc/diskstats")).unwrap();
    let mut expected_devices = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let dev = f[2];
        let labels = format!("{{device=\"{dev}\"}}");
        let n = |i: usize| f[i].parse::<f64>().unwrap();
        let get = |name: &str| sample(&body, &format!("{name}{labels}"));
        if exclude.is_match(dev) {
            assert_eq!(get("storwatch_disk_reads_completed_total"), None, "{dev} must be excluded");
            continue;
        }
        expected_devices.push(dev);
        let checks = [
            ("storwatch_disk_reads_completed_total", n(3)),
            ("storwatch_disk_reads_merged_total", n(4)),
            ("storwatch_disk_read_bytes_total", n(5) * 512.0),
            ("storwatch_disk_read_time_seconds_total", n(6) / 1000.0),
            ("storwatch_disk_writes_completed_total", n(7)),
            ("storwatch_disk_writes_merged_total", n(8)),
            ("storwatch_disk_written_bytes_total", n(9) * 512.0),
            ("storwatch_disk_write_time_seconds_total", n(10) / 1000.0),
            ("storwatch_disk_io_now", n(11)),
            ("storwatch_disk_io_time_seconds_total", n(12) / 1000.0),
            ("storwatch_disk_io_time_weighted_seconds_total", n(13) / 1000.0),
        ];
        for (name, want) in checks {
            assert_eq!(get(name), Some(want), "{name}{labels}");
        }
        let discards = [
            ("storwatch_disk_discards_completed_total", 14, 1.0),
            ("storwatch_disk_discards_merged_total", 15, 1.0),
            ("storwatch_disk_discarded_bytes_total", 16, 512.0),
            ("storwatch_disk_discard_time_seconds_total", 17, 0.001),
            ("storwatch_disk_flush_requests_total", 18, 1.0),
            ("storwatch_disk_flush_requests_time_seconds_total", 19, 0.001),
        ];
        for (name, i, scale) in discards {
            assert_eq!(get(name), f.get(i).map(|v| v.parse::<f64>().unwrap() * scale), "{name}{labels}");
        }
    }
    let mut reported: Vec<&str> = samples(&body, "storwatch_disk_reads_completed_total")
        .into_iter()
        .map(|(l, _)| l.trim_start_matches("device=\"").trim_end_matches('"'))
        .collect();
    reported.sort();
    expected_devices.sort();
    assert_eq!(reported, expected_devices);
    assert_eq!(expected_devices.len(), 13, "every whole device of the fixture");
    // sda has queue/ in the fixture: its facts come through.
    assert!(body.contains("storwatch_disk_info{device=\"sda\",major=\"8\",minor=\"0\",model=\"\",serial=\"\",rotational=\"1\",logical_block_size=\"512\"} 1"));
    assert_eq!(sample(&body, "storwatch_collector_success{collector=\"diskstats\"}"), Some(1.0));
}

#[test]
fn promtool_accepts_the_exposition() {
    let Some(promtool) = common::tool("promtool") else { return };
    let sys = fixture_sysfs();
    let agent = fixture_agent(&sys);
    // Two samples so the window gauges and checks are there too.
    let agent2 = Agent::start(&[
        &format!("--path.procfs={}", fixtures().join("proc").display()),
        &format!("--path.sysfs={}", sys.path().join("sys").display()),
        "--collector.diskstats.interval=200ms",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(700));
    for body in [agent.metrics(), agent2.metrics()] {
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
    }
    let body = agent2.metrics();
    assert!(body.contains("storwatch_check_ok{check=\"storage_latency\",subject=\"sda\"} 1"), "{body}");
}
