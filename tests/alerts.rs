//! The alert rules and the example Alertmanager config, with the real tools: `promtool check
//! rules` and `promtool test rules` (a firing and a not-firing case for every alert, and a
//! deliberately broken copy of the rules that the tests reject); every rule's labels,
//! annotations and runbook; every metric a rule names is one storwatch exports; `amtool
//! check-config` and `amtool config routes test` for the routing; and the inhibit rules in a
//! real Alertmanager (Debian's prometheus-alertmanager) on loopback.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_norway::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rules_path() -> PathBuf {
    root().join("alerts/storwatch.rules.yml")
}

fn rule_tests() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("alerts/tests"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every alerting rule of the rules file.
fn alert_rules() -> Vec<Value> {
    yaml(&rules_path())["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter().cloned())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[test]
fn promtool_check_rules_is_clean() {
    let Some(promtool) = common::tool("promtool") else { return };
    let out = Command::new(promtool)
        .args(["check", "rules", "--lint=all", "--lint-fatal"])
        .arg(rules_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let n = alert_rules().len();
    assert!(text.contains(&format!("SUCCESS: {n} rules found")), "{text}");
}

#[test]
fn promtool_test_rules_pass() {
    let Some(promtool) = common::tool("promtool") else { return };
    let out = Command::new(promtool).args(["test", "rules"]).args(rule_tests()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("SUCCESS").count(), rule_tests().len(), "{text}");
}

/// The unit tests can fail: the same tests against a copy of the rules with one severity and one
/// threshold changed, and with one alert removed, each fail.
#[test]
fn promtool_tests_reject_broken_rules() {
    let Some(promtool) = common::tool("promtool") else { return };
    let original = std::fs::read_to_string(rules_path()).unwrap();
    let mutations: [(&str, &str, &str); 5] = [
        // The I/O timeout alert demoted to a warning.
        (
            "scsi_abort\"} < 900\n        labels:\n          severity: critical",
            "scsi_abort\"} < 900\n        labels:\n          severity: warning",
            "StorwatchKernelIOTimeout",
        ),
        // The far-above-spec latency at twice instead of four times the threshold.
        ("(4 * storwatch_check_threshold", "(2 * storwatch_check_threshold", "StorwatchDiskLatencyCritical"),
        // The generic check alert no longer covering checks added later.
        (
            "storwatch_check_ok{check!~\"thermal",
            "storwatch_check_ok{check=~\"writeback|thermal",
            "StorwatchCheckFailing",
        ),
        // The generic check alert alerting sata_health a second time beside the SATA alerts.
        ("mounts|sata_health\"} == 0", "mounts\"} == 0", "StorwatchCheckFailing"),
        // Rising pending sectors demoted to a warning.
        (
            "[15m])\n            > 0\n        labels:\n          severity: critical",
            "[15m])\n            > 0\n        labels:\n          severity: warning",
            "StorwatchSataDefectsRising",
        ),
    ];
    for (from, to, alert) in mutations {
        assert!(original.contains(from), "{from}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tests")).unwrap();
        std::fs::write(dir.path().join("storwatch.rules.yml"), original.replacen(from, to, 1)).unwrap();
        let mut copies = Vec::new();
        for t in rule_tests() {
            let copy = dir.path().join("tests").join(t.file_name().unwrap());
            std::fs::copy(&t, &copy).unwrap();
            copies.push(copy);
        }
        let out = Command::new(&promtool).args(["test", "rules"]).args(&copies).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the tests did not notice {alert} changed:\n{text}");
        assert!(text.contains(&format!("alertname: {alert}")), "{alert}:\n{text}");
    }
}

/// Every alert has a case where it fires and one where it does not, in alerts/tests.
#[test]
fn every_alert_has_a_firing_and_a_silent_case() {
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for file in rule_tests() {
        for test in yaml(&file)["tests"].as_sequence().unwrap() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = s(&case["alertname"]).to_owned();
                if case["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()) {
                    firing.insert(name);
                } else {
                    silent.insert(name);
                }
            }
        }
    }
    let alerts: BTreeSet<String> = alert_rules().iter().map(|r| s(&r["alert"]).to_owned()).collect();
    let no_firing: Vec<_> = alerts.difference(&firing).collect();
    let no_silent: Vec<_> = alerts.difference(&silent).collect();
    assert!(
        no_firing.is_empty() && no_silent.is_empty(),
        "never firing: {no_firing:?}; never silent: {no_silent:?}"
    );
    let unknown: Vec<_> = firing.union(&silent).filter(|a| !alerts.contains(*a)).collect();
    assert!(unknown.is_empty(), "tests of alerts that do not exist: {unknown:?}");
}

/// Every rule: a severity of critical / warning / info, a summary sentence, a description naming
/// the instance, and a runbook_url whose anchor is a heading of docs/runbooks.md.
#[test]
fn every_rule_has_severity_annotations_and_a_runbook() {
    let runbook = std::fs::read_to_string(root().join("docs/runbooks.md")).unwrap();
    let anchors: BTreeSet<String> =
        runbook.lines().filter_map(|l| l.strip_prefix("## ")).map(|h| h.trim().to_lowercase()).collect();
    let mut problems = Vec::new();
    let mut names = BTreeMap::new();
    for r in alert_rules() {
        let alert = s(&r["alert"]);
        let severity = s(&r["labels"]["severity"]);
        if !["critical", "warning", "info"].contains(&severity) {
            problems.push(format!("{alert}: severity {severity:?}"));
        }
        *names.entry((alert.to_owned(), severity.to_owned())).or_insert(0) += 1;
        let a = &r["annotations"];
        let summary = s(&a["summary"]);
        if summary.is_empty() || !summary.ends_with('.') || summary.contains("{{") {
            problems.push(format!("{alert}: summary {summary:?} (a static sentence)"));
        }
        let description = s(&a["description"]);
        if !description.contains("$labels.instance") {
            problems.push(format!("{alert}: description does not name the instance"));
        }
        let url = s(&a["runbook_url"]);
        match url.split_once("docs/runbooks.md#") {
            Some((_, anchor)) if anchor == alert.to_lowercase() && anchors.contains(anchor) => {}
            _ => {
                problems.push(format!("{alert}: runbook_url {url:?} has no `## {alert}` in docs/runbooks.md"))
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(names.values().all(|n| *n == 1), "an alert name and severity twice: {names:?}");
}

/// The attribute ids of StorwatchSataDefectsRising and StorwatchSataCrcErrorsRising are, between
/// them and without overlap, exactly the failure-relevant attributes the `sata_health` check
/// watches (`rising_fails` in src/sources/sata/smart.rs), so excluding `sata_health` from
/// StorwatchCheckFailing loses no attribute, and an attribute added to the check shows up here.
#[test]
fn sata_rise_alerts_watch_the_checks_attributes() {
    let smart = std::fs::read_to_string(root().join("src/sources/sata/smart.rs")).unwrap();
    let watched: BTreeSet<String> = smart
        .lines()
        .filter_map(|l| l.trim().strip_prefix("k("))
        .filter(|l| l.trim_end().ends_with(", true),"))
        .map(|l| l.split(',').next().unwrap().trim().to_owned())
        .collect();
    assert!(watched.len() >= 10 && watched.contains("5") && watched.contains("199"), "{watched:?}");
    let ids = |alert: &str| -> BTreeSet<String> {
        let rule = alert_rules().into_iter().find(|r| s(&r["alert"]) == alert).expect(alert);
        let expr = s(&rule["expr"]).to_owned();
        // Each selector's id matcher: the current value and its 15 m minimum must name the same.
        let mut sets: Vec<BTreeSet<String>> = Vec::new();
        for m in ["id=~\"", "id=\""] {
            for (i, _) in expr.match_indices(m) {
                let rest = &expr[i + m.len()..];
                sets.push(rest[..rest.find('"').unwrap()].split('|').map(str::to_owned).collect());
            }
        }
        assert!(!sets.is_empty(), "{alert}: no id matcher");
        assert!(sets.iter().all(|s| *s == sets[0]), "{alert}: selectors name different ids: {sets:?}");
        sets.swap_remove(0)
    };
    let defects = ids("StorwatchSataDefectsRising");
    let crc = ids("StorwatchSataCrcErrorsRising");
    assert_eq!(crc, BTreeSet::from(["199".to_owned()]));
    assert!(defects.is_disjoint(&crc), "{defects:?} {crc:?}");
    let both: BTreeSet<String> = defects.union(&crc).cloned().collect();
    assert_eq!(both, watched, "the rise alerts' ids against smart.rs's rising_fails attributes");
}

/// Every metric a rule names is one storwatch exports (or Prometheus's `up`).
#[test]
fn every_metric_in_the_rules_exists() {
    let declared = promql::declared_families();
    let exposed = promql::exposition_names(&promql::golden_exposition());
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for r in alert_rules() {
        let alert = s(&r["alert"]);
        let expr = promql::parse(s(&r["expr"])).unwrap_or_else(|e| panic!("{alert}: {e}"));
        for sel in promql::selectors(&expr) {
            match sel.name {
                Some(n) if promql::is_known(&n, &declared, &exposed) => {
                    used.insert(n);
                }
                other => problems.push(format!("{alert}: {other:?} is not a metric storwatch exports")),
            }
        }
    }
    // The queries inside annotation templates (`printf "storwatch_x{...}" ... | query`).
    for r in alert_rules() {
        let alert = s(&r["alert"]);
        for text in r["annotations"].as_mapping().unwrap().values().filter_map(Value::as_str) {
            for (i, _) in text.match_indices("printf \"") {
                let name: String =
                    text[i + 8..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name.is_empty() {
                    continue; // a number format, `printf "%.0f" $value`
                }
                if promql::is_known(&name, &declared, &exposed) {
                    used.insert(name);
                } else {
                    problems.push(format!(
                        "{alert}: an annotation queries {name:?}, which storwatch does not export"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("{} metrics used by the rules: {used:?}", used.len());
}

#[test]
fn amtool_accepts_the_example_and_routes_by_severity() {
    let Some(amtool) = common::tool("amtool") else { return };
    let config = root().join("alerts/alertmanager.example.yml");
    let out = Command::new(&amtool).arg("check-config").arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("SUCCESS") && text.contains("2 inhibit rules"), "{text}");
    let route = |labels: &[&str], receiver: &str| {
        Command::new(&amtool)
            .args(["config", "routes", "test"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--verify.receivers={receiver}"))
            .args(labels)
            .output()
            .unwrap()
    };
    for (severity, receiver) in [("critical", "pager"), ("warning", "ticket"), ("info", "blackhole")] {
        let labels =
            [&format!("severity={severity}")[..], "alertname=StorwatchKernelIOTimeout", "device=nvme0"];
        let ok = route(&labels, receiver);
        assert!(ok.status.success(), "{severity} -> {receiver}: {}", String::from_utf8_lossy(&ok.stdout));
        // And the verification fails for a wrong receiver.
        let wrong = if receiver == "pager" { "ticket" } else { "pager" };
        assert!(!route(&labels, wrong).status.success(), "{severity} also routed to {wrong}");
    }
}

/// A running Alertmanager killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example's inhibit rules in a real Alertmanager: a critical alert for instance h1 and
/// device nvme0 suppresses the warning for the same instance and device, not one for another
/// device or another instance; StorwatchAgentDown suppresses the instance's warnings.
#[test]
fn alertmanager_inhibits_warnings_under_a_critical_on_the_same_device() {
    let Some(am) = common::tool("prometheus-alertmanager") else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = promql::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _am = Proc(
        Command::new(am)
            .arg(format!("--config.file={}", root().join("alerts/alertmanager.example.yml").display()))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err()
        || promql::http(&addr, "GET", "/-/ready", None).0 != 200
    {
        assert!(Instant::now() < deadline, "alertmanager not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let alert = |name: &str, severity: &str, instance: &str, device: Option<&str>| {
        let device = device.map(|d| format!(",\"device\":\"{d}\"")).unwrap_or_default();
        format!(
            "{{\"labels\":{{\"alertname\":\"{name}\",\"severity\":\"{severity}\",\"instance\":\"{instance}\"{device}}},\
             \"annotations\":{{\"summary\":\"test\"}}}}"
        )
    };
    let alerts = [
        alert("StorwatchKernelIOTimeout", "critical", "h1", Some("nvme0")),
        alert("StorwatchCheckFailing", "warning", "h1", Some("nvme0")),
        alert("StorwatchCheckFailing", "warning", "h1", Some("nvme1")),
        alert("StorwatchCheckFailing", "warning", "h2", Some("nvme0")),
        // A critical without a device mutes nothing but the agent-down rule's targets.
        alert("StorwatchDockerFilesystemReadOnly", "critical", "h2", None),
        alert("StorwatchCheckFailing", "warning", "h2", None),
        alert("StorwatchAgentDown", "critical", "h3", None),
        alert("StorwatchDiskLatencyHigh", "warning", "h3", Some("sda")),
    ];
    let (status, body) = promql::http(
        &addr,
        "POST",
        "/api/v2/alerts",
        Some(("application/json", &format!("[{}]", alerts.join(",")))),
    );
    assert_eq!(status, 200, "{body}");
    // Inhibition is evaluated when the alerts are listed; wait until all eight are there.
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (_, body) = promql::http(&addr, "GET", "/api/v2/alerts", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v.as_array().is_some_and(|a| a.len() == alerts.len()) {
            break v;
        }
        assert!(Instant::now() < deadline, "alerts not listed: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let state: BTreeMap<String, String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let l = &a["labels"];
            let key = format!(
                "{} {} {}",
                l["alertname"].as_str().unwrap(),
                l["instance"].as_str().unwrap(),
                l["device"].as_str().unwrap_or("-")
            );
            (key, a["status"]["state"].as_str().unwrap().to_owned())
        })
        .collect();
    let expect = [
        ("StorwatchKernelIOTimeout h1 nvme0", "active"),
        ("StorwatchCheckFailing h1 nvme0", "suppressed"),
        ("StorwatchCheckFailing h1 nvme1", "active"),
        ("StorwatchCheckFailing h2 nvme0", "active"),
        ("StorwatchDockerFilesystemReadOnly h2 -", "active"),
        ("StorwatchCheckFailing h2 -", "active"),
        ("StorwatchAgentDown h3 -", "active"),
        ("StorwatchDiskLatencyHigh h3 sda", "suppressed"),
    ];
    let expect: BTreeMap<String, String> =
        expect.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(state, expect);
}
