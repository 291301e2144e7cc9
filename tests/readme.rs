//! The README against the binary and the code, so the documentation cannot drift: every flag of
//! `--help` is in the flags table and every row of the table is a flag; every collector has its
//! section; every metric the code can export is in a metric table and every metric a table names
//! exists; the `storwatch check` example is what the binary prints on the fixture host.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::readme_section;
use regex::Regex;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_storwatch")).args(args).output().unwrap();
    assert!(out.status.success(), "storwatch {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The long flags `--help` defines (not the ones its descriptions mention).
fn flags(help: &str) -> BTreeSet<String> {
    let def = Regex::new(r"^(?:  -[a-zA-Z], |      )--([a-z][a-z0-9.-]*)").unwrap();
    help.lines().filter_map(|l| def.captures(l)).map(|c| format!("--{}", &c[1])).collect()
}

fn collectors() -> Vec<&'static str> {
    storwatch::sources::REGISTRY.iter().map(|s| s.name).collect()
}

#[test]
fn the_flags_table_is_the_flags_of_help() {
    let readme = common::readme();
    let table = readme_section(&readme, "## Flags");
    let flag = Regex::new(r"`(--[a-z<][a-z0-9.<>-]*)`").unwrap();
    let mut documented = BTreeSet::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split(" | ").next().unwrap();
        for c in flag.captures_iter(first) {
            let f = &c[1];
            if f.contains("<name>") {
                documented.extend(collectors().iter().map(|n| f.replace("<name>", n)));
            } else {
                documented.insert(f.to_owned());
            }
        }
    }
    let mut defined = flags(&help(&["--help"]));
    defined.remove("--help");
    let missing: Vec<_> = defined.difference(&documented).collect();
    assert!(missing.is_empty(), "flags of --help not in the README's flags table: {missing:?}");
    let stale: Vec<_> = documented.difference(&defined).collect();
    assert!(stale.is_empty(), "flags in the README's table that --help does not have: {stale:?}");

    // `storwatch check`'s own flags are described in its section.
    let check = readme_section(&readme, "## `storwatch check`");
    for f in flags(&help(&["check", "--help"])).difference(&defined) {
        if f != "--help" {
            assert!(check.contains(&format!("`{f}")), "the `storwatch check` section lacks {f}");
        }
    }
}

#[test]
fn every_collector_has_its_section() {
    let readme = common::readme();
    let part = readme_section(&readme, "## Collectors");
    let heads: BTreeSet<&str> = part.lines().filter_map(|l| l.strip_prefix("### ")).collect();
    let names: BTreeSet<&str> = collectors().into_iter().collect();
    assert_eq!(heads, names, "### sections under ## Collectors against the collectors of the registry");
}

/// Every `storwatch_*` and `process_*` name written as a string in the agent's code.
fn names_in_code() -> BTreeSet<String> {
    let name = Regex::new(r#""((?:storwatch|process)_[a-z0-9_]+)"#).unwrap();
    let mut found = BTreeSet::new();
    let mut dirs = vec![Path::new(ROOT).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.extend(name.captures_iter(&text).map(|c| c[1].to_owned()));
            }
        }
    }
    found
}

/// The metric names of the README's metric tables (the first cell of each row), with their
/// shorthands expanded: `storwatch_x_{a,b}_total`, and `_suffix` after a full name for a name
/// that shares a prefix of it (`storwatch_disk_reads_total`, `_writes_total`; `_bucket`).
/// A `{labels}` part at the end is not part of the name (`storwatch_build_info{version,revision}`).
/// Returns (full names, (full name, shorthand) pairs).
fn names_in_readme(readme: &str) -> (BTreeSet<String>, Vec<(String, String)>) {
    let token = Regex::new(r"`((?:storwatch|process)?_[a-z0-9_{},]+)`").unwrap();
    let labels = Regex::new(r"\{[a-z_,]*\}$").unwrap();
    let (mut full, mut short) = (BTreeSet::new(), Vec::new());
    for row in readme.lines().filter(|l| l.starts_with("| `storwatch_") || l.starts_with("| `process_")) {
        let first = row.split(" | ").next().unwrap();
        let mut base: Option<String> = None;
        for c in token.captures_iter(first) {
            let t = labels.replace(&c[1], "");
            let t = t.as_ref();
            if t.starts_with("storwatch_") || t.starts_with("process_") {
                let expanded = expand(t);
                base = expanded.first().cloned();
                full.extend(expanded);
            } else if let Some(b) = &base {
                short.extend(expand(t).into_iter().map(|s| (b.clone(), s)));
            }
        }
    }
    (full, short)
}

/// `a_{b,c}_d` as `a_b_d` and `a_c_d` (one brace group at most).
fn expand(t: &str) -> Vec<String> {
    match (t.find('{'), t.find('}')) {
        (Some(i), Some(j)) if i < j => {
            t[i + 1..j].split(',').map(|alt| format!("{}{alt}{}", &t[..i], &t[j + 1..])).collect()
        }
        _ => vec![t.to_owned()],
    }
}

/// Whether `name` is `base` cut before one of its underscores (or whole) followed by `short`.
fn shorthand_of(name: &str, base: &str, short: &str) -> bool {
    let cuts = base.match_indices('_').map(|(i, _)| i).chain([base.len()]);
    cuts.into_iter()
        .any(|i| name.len() == i + short.len() && name.starts_with(&base[..i]) && name.ends_with(short))
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let readme = common::readme();
    let code = names_in_code();
    assert!(code.len() > 150, "the code's metric names were not found: {}", code.len());
    let (full, short) = names_in_readme(&readme);
    // A metric the prose explains (the checks' series) is documented too.
    let prose: BTreeSet<String> = Regex::new(r"`((?:storwatch|process)_[a-z0-9_]+)(?:\{[a-z_,]*\})?`")
        .unwrap()
        .captures_iter(&readme)
        .map(|c| c[1].to_owned())
        .collect();
    let undocumented: Vec<_> = code
        .iter()
        .filter(|n| {
            !full.contains(*n) && !prose.contains(*n) && !short.iter().any(|(b, s)| shorthand_of(n, b, s))
        })
        .collect();
    assert!(undocumented.is_empty(), "metrics in the code without a README table row: {undocumented:?}");
    let unknown: Vec<_> = full.iter().filter(|n| !code.contains(*n)).collect();
    assert!(unknown.is_empty(), "metrics in the README's tables that the code does not have: {unknown:?}");
    let unknown: Vec<_> = short.iter().filter(|(b, s)| !code.iter().any(|n| shorthand_of(n, b, s))).collect();
    assert!(unknown.is_empty(), "shorthands in the README's tables that name no metric: {unknown:?}");
}

/// The README's `storwatch check` example is the binary's output on the fixture host: node_exporter's
/// captured /proc and /sys (tests/fixtures/node-exporter) with a kernel release, meminfo and
/// Debian's default writeback settings added.
#[test]
fn the_check_example_is_the_output_on_the_fixture_host() {
    let proc = common::whole_fixture_procfs();
    std::fs::write(proc.path().join("sys/vm/dirty_ratio"), "20\n").unwrap();
    std::fs::write(proc.path().join("sys/vm/dirty_background_ratio"), "10\n").unwrap();
    std::fs::remove_file(proc.path().join("meminfo")).unwrap();
    let sys = common::fixture_sysfs();
    let readme = common::readme();
    let part = readme_section(&readme, "## `storwatch check`");
    let block: Vec<&str> = part.lines().skip_while(|l| !l.starts_with("$ storwatch check")).collect();
    let end = block.iter().position(|l| *l == "$ echo $?").expect("the example ends with `$ echo $?`");
    let (command, shown, exit) = (block[0], block[1..end].join("\n"), block.get(end + 1).copied());
    let args: Vec<String> = command
        .split_whitespace()
        .skip(3)
        .map(|a| {
            a.trim_matches('\'')
                .replace("fixture/proc", proc.path().to_str().unwrap())
                .replace("fixture/sys", sys.path().join("sys").to_str().unwrap())
        })
        .collect();
    assert!(args.iter().any(|a| a.starts_with("--path.procfs=")), "{command}");
    let out = Command::new(env!("CARGO_BIN_EXE_storwatch"))
        .arg("check")
        .args(&args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout)
        .unwrap()
        .replace(proc.path().to_str().unwrap(), "fixture/proc")
        .replace(sys.path().join("sys").to_str().unwrap(), "fixture/sys");
    // Compared cell by cell: the columns' widths follow the temporary paths' lengths.
    let cells = |text: &str| -> Vec<Vec<String>> {
        let gap = Regex::new(r"\s{2,}").unwrap();
        text.lines().map(|l| gap.split(l.trim_end()).map(str::to_owned).collect()).collect()
    };
    assert_eq!(
        cells(&shown),
        cells(&printed),
        "the README's example differs from what `storwatch check` prints now:\n{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().map(|c| c.to_string());
    assert_eq!(exit, code.as_deref(), "the example's exit status");
}

/// The Quick start's Prometheus configuration, with its rule file pointed at this repository's
/// rules, is one `promtool check config` accepts (rules included).
#[test]
fn the_quick_start_scrape_config_is_valid() {
    let Some(promtool) = common::tool("promtool") else { return };
    let readme = common::readme();
    let part = readme_section(&readme, "## Quick start");
    let yaml: Vec<&str> =
        part.lines().skip_while(|l| *l != "```yaml").skip(1).take_while(|l| *l != "```").collect();
    assert!(yaml.iter().any(|l| l.contains("job_name: storwatch")), "{yaml:?}");
    let rules = Path::new(ROOT).join("alerts/storwatch.rules.yml");
    let installed = "- /usr/share/storwatch/alerts/storwatch.rules.yml";
    assert!(
        yaml.contains(&format!("  {installed}").as_str()),
        "the rules where the .deb installs them: {yaml:?}"
    );
    let config = yaml.join("\n").replace(installed, &format!("- {}", rules.display()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(promtool).args(["check", "config"]).arg(&file).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check config: {said}");
    assert!(said.contains("SUCCESS") && said.contains("rules found"), "{said}");
}

/// The README's config file example shows every key at its default, as it says, and so does the
/// packaged `/etc/storwatch/storwatch.toml` once uncommented: each parses to the defaults.
#[test]
fn the_config_examples_are_the_defaults() {
    use storwatch::config::Config;
    let readme = common::readme();
    let part = readme_section(&readme, "## Config file");
    let toml: Vec<&str> =
        part.lines().skip_while(|l| *l != "```toml").skip(1).take_while(|l| *l != "```").collect();
    assert!(toml.len() > 20, "{toml:?}");
    let parsed = Config::parse(Path::new("README.md"), &toml.join("\n")).unwrap();
    assert_eq!(parsed, Config::default(), "the README's config example is not the defaults");

    let packaged = std::fs::read_to_string(Path::new(ROOT).join("packaging/storwatch.toml")).unwrap();
    let uncommented: String = packaged
        .lines()
        .filter(|l| l.starts_with("# [") || l.starts_with("# ") && l[2..].contains(" = "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let parsed = Config::parse(Path::new("packaging/storwatch.toml"), &uncommented).unwrap();
    assert_eq!(parsed, Config::default(), "the packaged config, uncommented, is not the defaults");
    // Every table and key of the README's example is in the packaged file too.
    for line in toml.iter().filter(|l| !l.is_empty()) {
        let key = line.split(['=', '#']).next().unwrap().trim();
        if !key.is_empty() {
            assert!(uncommented.contains(key), "packaging/storwatch.toml lacks {key}");
        }
    }
}
