//! `storwatch check`: two samples of every source over a window into a model, every check judged
//! once on it, a report for people (a table) or machines (JSON). Exit status 0 all pass, 1 any
//! fails, 2 a source failed or a subject is unknown (its source could not be read).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::checks::{self, CheckResult, Verdict};
use crate::model::Model;
use crate::sources::Source;

#[derive(Debug, Serialize)]
pub struct Report {
    pub window_seconds: f64,
    /// True when every result passed and every collector read its source.
    pub passed: bool,
    pub failing: usize,
    /// Subjects that could not be judged: their source could not be read.
    pub unknown: usize,
    pub results: Vec<CheckResult>,
    /// Collectors that could not read their source: their checks are missing from `results`.
    pub errors: Vec<String>,
    /// Partial failures (a file or line that could not be read while the rest was).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match (self.errors.is_empty() && self.unknown == 0, self.failing) {
            (false, _) => 2,
            (true, 0) => 0,
            (true, _) => 1,
        }
    }
}

/// Reads every source twice, `window` apart, into a model and judges every enabled check on it.
pub fn evaluate(sources: &mut [Box<dyn Source>], config: &checks::Config, window: Duration) -> Report {
    let mut model = Model::default();
    for s in sources.iter_mut() {
        match s.sample() {
            Ok(c) => {
                model.update(c);
            }
            Err(e) => model.fail(s.name(), &e),
        }
    }
    std::thread::sleep(window);
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for s in sources.iter_mut() {
        match s.sample() {
            Ok(c) => {
                warnings.extend(c.errors.iter().map(|e| format!("{}: {e}", s.name())));
                model.update(c);
            }
            Err(e) => {
                errors.push(format!("collector {} failed: {e}", s.name()));
                model.fail(s.name(), &e);
            }
        }
    }
    let mut results = checks::evaluate_all(&model, config, Instant::now());
    results.sort_by(|a, b| (checks::rank(a.check), &a.subject).cmp(&(checks::rank(b.check), &b.subject)));
    let count = |v| results.iter().filter(|r| r.verdict == v).count();
    let (failing, unknown) = (count(Verdict::Fail), count(Verdict::Unknown));
    Report {
        window_seconds: window.as_secs_f64(),
        passed: failing == 0 && unknown == 0 && errors.is_empty(),
        failing,
        unknown,
        results,
        errors,
        warnings,
    }
}

/// The report as aligned columns; the verdict in colour when `colour`.
pub fn table(report: &Report, colour: bool) -> String {
    let header = ["CHECK", "SUBJECT", "OBSERVED", "EXPECTED", "VERDICT"];
    let rows: Vec<[&str; 5]> = report
        .results
        .iter()
        .map(|r| {
            let verdict = match r.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Unknown => "UNKNOWN",
            };
            [r.check, &r.subject, &r.observed, &r.expected, verdict]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        for (i, cell) in row.iter().enumerate().take(4) {
            out.push_str(&format!("{cell:<w$}  ", w = width[i]));
        }
        out.push_str(&match (colour, row[4]) {
            (true, "PASS") => "\x1b[32mPASS\x1b[0m".to_owned(),
            (true, "FAIL") => "\x1b[1;31mFAIL\x1b[0m".to_owned(),
            (true, "UNKNOWN") => "\x1b[1;33mUNKNOWN\x1b[0m".to_owned(),
            (_, v) => v.to_owned(),
        });
        out.push('\n');
    }
    let n = report.results.len();
    out.push_str(&format!(
        "\n{n} results over a {}s window: {} passed, {} failed",
        report.window_seconds,
        n - report.failing - report.unknown,
        report.failing
    ));
    if report.unknown > 0 {
        out.push_str(&format!(", {} unknown", report.unknown));
    }
    out.push('\n');
    out
}

/// How the report is printed (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns; colour on a terminal (NO_COLOR turns it off).
    Table,
    /// One JSON document.
    Json,
}

/// Runs the report and prints it; returns the exit status.
pub fn run(
    mut sources: Vec<Box<dyn Source>>,
    config: &checks::Config,
    window: Duration,
    format: Output,
) -> u8 {
    let report = evaluate(&mut sources, config, window);
    let text = match format {
        Output::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        Output::Table => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            table(&report, colour)
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if format == Output::Table {
        for w in &report.warnings {
            eprintln!("storwatch: warning: {w}");
        }
        for e in &report.errors {
            eprintln!("storwatch: error: {e}");
        }
    }
    report.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(check: &'static str, subject: &str, ok: bool) -> CheckResult {
        CheckResult {
            check,
            subject: subject.into(),
            verdict: Verdict::of(ok),
            observed: "o".into(),
            expected: "e".into(),
            value: None,
            threshold: None,
        }
    }

    #[test]
    fn table_and_exit_codes() {
        let mut r = Report {
            window_seconds: 3.0,
            passed: false,
            failing: 1,
            unknown: 0,
            results: vec![result("kernel", "kernel", true), result("writeback", "vm.dirty_ratio", false)],
            errors: vec![],
            warnings: vec![],
        };
        let t = table(&r, false);
        assert!(t.starts_with("CHECK      SUBJECT         OBSERVED  EXPECTED  VERDICT\n"), "{t}");
        assert!(t.contains("writeback  vm.dirty_ratio  o         e         FAIL\n"), "{t}");
        assert!(t.ends_with("2 results over a 3s window: 1 passed, 1 failed\n"));
        assert!(table(&r, true).contains("\x1b[1;31mFAIL\x1b[0m"));
        assert_eq!(r.exit_code(), 1);
        r.errors.push("collector host failed".into());
        assert_eq!(r.exit_code(), 2);
        r.errors.clear();
        r.failing = 0;
        assert_eq!(r.exit_code(), 0);
        r.results.push(CheckResult::unknown("resources", "memory", ">= 8GiB".into(), "/proc/meminfo: gone"));
        r.unknown = 1;
        assert_eq!(r.exit_code(), 2, "an unknown subject is an error");
        let t = table(&r, false);
        assert!(
            t.contains("resources  memory          not read: /proc/meminfo: gone  >= 8GiB   UNKNOWN\n"),
            "{t}"
        );
        assert!(t.ends_with("3 results over a 3s window: 2 passed, 0 failed, 1 unknown\n"), "{t}");
        let json = serde_json::to_value(&r.results[2]).unwrap();
        assert_eq!((json["ok"].as_bool(), json["verdict"].as_str()), (Some(false), Some("unknown")));
    }
}
