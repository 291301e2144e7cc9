//! The Grafana dashboard (dashboards/storwatch.json), offline: it is what dashboards/build.py
//! writes; every PromQL expression parses (promql-parser); every metric it names is one the
//! agent exports; and the rules of grafana/dashboard-linter hold (reimplemented here: the linter
//! is a Go program, and the test suite needs no Go toolchain), plus
//! unique ids and a grid within 24 columns. No Grafana server can run here; the live test
//! (tests/e2e_prometheus.rs) runs the queries against a real Prometheus.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

const RATE_INTERVAL: &str = "7777s";

fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/storwatch.json")).unwrap();
    serde_json::from_str(&text).expect("dashboards/storwatch.json is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(children) = p["panels"].as_array() {
            out.extend(children.iter());
        }
    }
    out
}

/// (panel title, expr) of every target.
fn targets(d: &Value) -> Vec<(String, String)> {
    panels(d)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            p["targets"].as_array().into_iter().flatten().map(move |t| {
                (
                    title.clone(),
                    t["expr"].as_str().unwrap_or_else(|| panic!("{title}: target without expr")).to_owned(),
                )
            })
        })
        .collect()
}

/// The expression with Grafana's variables replaced so that it parses and the replacements can
/// be recognised: `$__rate_interval` becomes a range nothing else uses.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$job", "JOBVAR")
        .replace("$instance", "INSTANCEVAR")
        .replace("$device", "DEVICEVAR")
}

#[test]
fn committed_json_is_what_build_py_writes() {
    let Some(python) = common::tool("python3") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("storwatch.json");
    let status = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/build.py"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let built = std::fs::read_to_string(&out).unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/storwatch.json")).unwrap();
    assert!(built == committed, "dashboards/storwatch.json is stale: run python3 dashboards/build.py");
}

#[test]
fn every_expression_parses_and_names_known_metrics() {
    let d = dashboard();
    let declared = promql::declared_families();
    let exposed = promql::exposition_names(&promql::golden_exposition());
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    let all = targets(&d);
    assert!(all.len() >= 40, "only {} targets", all.len());
    for (title, expr) in &all {
        let parsed = match promql::parse(&substitute(expr)) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{title}: does not parse: {e}"));
                continue;
            }
        };
        for s in promql::selectors(&parsed) {
            match s.name {
                Some(name) if promql::is_known(&name, &declared, &exposed) => {
                    used.insert(name);
                }
                Some(name) => problems.push(format!("{title}: {name} is not a metric storwatch exports")),
                None => problems.push(format!("{title}: a selector without a metric name in {expr}")),
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("{} metrics used by the dashboard: {used:?}", used.len());
    // The panels cover each collector.
    for prefix in [
        "storwatch_disk_",
        "storwatch_kernel_",
        "storwatch_nvme_",
        "storwatch_network_",
        "storwatch_fabric_",
        "storwatch_docker_",
        "storwatch_check",
        "storwatch_collector_",
        "storwatch_host_",
    ] {
        assert!(used.iter().any(|n| n.starts_with(prefix)), "no panel uses {prefix}*");
    }
}

/// The source scan behind `declared_families` must see every family the agent really exports:
/// on the fixtures (the golden file) and on this machine.
#[test]
fn declared_families_cover_the_agents_exposition() {
    let declared = promql::declared_families();
    assert!(declared.len() > 100, "{declared:?}");
    let mut exposed = promql::exposition_names(&promql::golden_exposition());
    let agent = common::Agent::start(&[]);
    agent.wait_ready();
    exposed.extend(promql::exposition_names(&agent.metrics()));
    // A histogram's samples are named after its family with `_bucket`, `_sum` and `_count`.
    let none = BTreeSet::new();
    let missing: Vec<_> = exposed.iter().filter(|n| !promql::is_known(n, &declared, &none)).collect();
    assert!(missing.is_empty(), "exported but not found in src/: {missing:?}");
}

#[test]
fn dashboard_linter_rules_hold() {
    let d = dashboard();
    let mut problems: Vec<String> = Vec::new();
    let schema = d["schemaVersion"].as_i64().unwrap();
    assert!((39..=41).contains(&schema), "schemaVersion {schema}");
    let uid = d["uid"].as_str().unwrap();
    assert!((8..=40).contains(&uid.len()), "uid {uid}");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));

    // template-datasource, template-job, template-instance, template-on-time-change-reload,
    // template-label-promql, template-uneditable (variables are not hidden and have no custom
    // values).
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let ds = vars.get("datasource").expect("a datasource variable");
    assert_eq!((ds["type"].as_str(), ds["query"].as_str()), (Some("datasource"), Some("prometheus")));
    for name in ["job", "instance", "device"] {
        let v = vars.get(name).unwrap_or_else(|| panic!("no {name} variable"));
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        assert_eq!(v["refresh"], 2, "{name}: refresh on time range change");
        let q = v["query"]["query"].as_str().unwrap();
        let inner = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(&format!(", {name})")));
        let inner = inner.unwrap_or_else(|| panic!("{name}: {q} is not label_values(<selector>, {name})"));
        let parsed = promql::parse(&substitute(inner)).unwrap();
        let declared = promql::declared_families();
        for s in promql::selectors(&parsed) {
            assert!(declared.contains(s.name.as_deref().unwrap()), "{name}: {q}");
        }
    }
    assert!(vars["instance"]["query"]["query"].as_str().unwrap().contains("$job"));
    assert!(vars["device"]["query"]["query"].as_str().unwrap().contains("$instance"));
    let known_vars: BTreeSet<&str> =
        vars.keys().copied().chain(["__rate_interval", "__interval", "__range"]).collect();

    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(i64, i64), String> = BTreeMap::new();
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or("").to_owned();
        let id = p["id"].as_i64().unwrap_or_else(|| panic!("{title}: no id"));
        if !ids.insert(id) {
            problems.push(format!("{title}: id {id} is not unique"));
        }
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        );
        if x < 0 || w <= 0 || h <= 0 || x + w > 24 {
            problems.push(format!("{title}: gridPos {g} outside the 24 columns"));
        }
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.clone()) {
                    problems.push(format!("{title} overlaps {other} at ({cx},{cy})"));
                }
            }
        }
        if p["type"] == "row" {
            continue;
        }
        // panel-title-description
        if title.is_empty() || p["description"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("panel {id}: title and description required"));
        }
        // panel-datasource
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: datasource is not $datasource"));
        }
        // panel-units
        let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
        const UNITS: [&str; 10] =
            ["s", "iops", "Bps", "percentunit", "celsius", "pps", "short", "none", "bytes", "decbytes"];
        if !UNITS.contains(&unit) {
            problems.push(format!("{title}: unit {unit:?} is not a Grafana unit this dashboard knows"));
        }
        // panel-no-targets
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{title}: no targets"));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            let r = t["refId"].as_str().unwrap_or("");
            if r.is_empty() || !refs.insert(r.to_owned()) {
                problems.push(format!("{title}: refId {r:?} empty or repeated"));
            }
            if t["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{title} {r}: target datasource is not $datasource"));
            }
            let expr = t["expr"].as_str().unwrap();
            for var in expr.split('$').skip(1) {
                let name: String =
                    var.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !known_vars.contains(name.as_str()) {
                    problems.push(format!("{title}: unknown variable ${name}"));
                }
            }
            let Ok(parsed) = promql::parse(&substitute(expr)) else { continue };
            for s in promql::selectors(&parsed) {
                let name = s.name.clone().unwrap_or_default();
                // target-job, target-instance
                for (label, var) in [("job", "JOBVAR"), ("instance", "INSTANCEVAR")] {
                    if !s.matchers.iter().any(|(l, op, v)| l == label && *op == "=~" && v == var) {
                        problems.push(format!("{title}: {name} lacks {label}=~\"${label}\""));
                    }
                }
                // target-rate-interval: rate-like functions over $__rate_interval.
                if let Some(range) = s.range {
                    let f = s.function.unwrap_or("");
                    if ["rate", "irate", "increase", "delta", "idelta", "deriv"].contains(&f)
                        && range != Duration::from_secs(7777)
                    {
                        problems.push(format!("{title}: {f}({name}[..]) must use $__rate_interval"));
                    }
                }
                // target-counter-agg: a counter is only shown through rate() or increase().
                if name.ends_with("_total") && !matches!(s.function, Some("rate" | "irate" | "increase")) {
                    problems.push(format!("{title}: counter {name} is not inside rate() or increase()"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(ids.len() >= 40);
}

/// The linter checks above catch what they claim: a broken copy of the dashboard fails them.
#[test]
fn linter_checks_reject_a_broken_dashboard() {
    let d = dashboard();
    let title_of_first_rate = targets(&d).into_iter().find(|(_, e)| e.contains("rate(")).unwrap();
    let bad = title_of_first_rate.1.replace("$__rate_interval", "5m");
    let parsed = promql::parse(&substitute(&bad)).unwrap();
    let ranged: Vec<_> = promql::selectors(&parsed).into_iter().filter(|s| s.range.is_some()).collect();
    assert!(ranged.iter().all(|s| s.range != Some(Duration::from_secs(7777))));
    assert!(
        promql::parse(&substitute(
            "sum(rate(storwatch_disk_reads_completed_total{job=~\"$job\"}[$__rate_interval])"
        ))
        .is_err()
    );
    let declared = promql::declared_families();
    assert!(!promql::is_known("storwatch_disk_read_latency_p99", &declared, &BTreeSet::new()));
}
