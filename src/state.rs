//! The agent's running state: the model, and what a scrape encodes from it. A source's new sample
//! goes into the model; then that source's families and the checks that read it are rebuilt from
//! the model, and published with the source's self metrics. A scrape only encodes what was
//! published, and reads the agent's own `/proc/self` for the `process_*` series.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::checks::{self, CheckResult};
use crate::error::{CollectError, ErrorKind};
use crate::families;
use crate::metrics::{self, Family, Format};
use crate::model::Model;
use crate::process;
use crate::sources::Collected;

/// One source's latest run and what it published.
#[derive(Debug, Default)]
struct Slot {
    runs: u64,
    success: bool,
    duration: Duration,
    last_success: Option<SystemTime>,
    errors: BTreeMap<ErrorKind, u64>,
    /// What the collector was denied (a file, a socket, a privilege), from its first run that
    /// was: said once in the log and kept as a series.
    denied: BTreeSet<String>,
    published: Arc<Published>,
}

/// A source's families as of its last successful run.
#[derive(Debug, Default)]
struct Published {
    families: Vec<Family>,
    /// `families` encoded once per run and format, on the first scrape that asks for it.
    text: OnceLock<String>,
    openmetrics: OnceLock<String>,
}

impl Published {
    fn encoded(&self, format: Format) -> &str {
        let cell = match format {
            Format::Text => &self.text,
            Format::OpenMetrics => &self.openmetrics,
        };
        cell.get_or_init(|| {
            let mut out = String::new();
            metrics::encode_into(&mut out, format, &self.families);
            out
        })
    }
}

/// What scrapes read.
#[derive(Debug, Default)]
struct Outputs {
    slots: BTreeMap<&'static str, Slot>,
    /// The latest results of each enabled check.
    checks: BTreeMap<&'static str, Arc<Vec<CheckResult>>>,
}

/// Shared between the source threads (writers) and the HTTP server (reader).
#[derive(Debug)]
pub struct State {
    build_info: Family,
    config: checks::Config,
    families: families::Options,
    /// The enabled checks, so each shows in the failing summary even with nothing to judge yet.
    enabled: Vec<&'static str>,
    /// Written by the source threads, one at a time.
    model: Mutex<Model>,
    outputs: Mutex<Outputs>,
}

/// A source's families and the results of the checks that read it.
type Rebuilt = (Vec<Family>, Vec<(&'static str, Vec<CheckResult>)>);

fn internal() -> CollectError {
    CollectError::new(ErrorKind::Internal, "deriving or judging the sample panicked")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A writer that panicked mid-update leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub fn new(sources: &[&'static str], config: checks::Config, families: families::Options) -> State {
        let mut build_info =
            Family::info("storwatch_build_info", "The storwatch version and the revision it was built from.");
        build_info
            .push([("version", env!("CARGO_PKG_VERSION")), ("revision", env!("STORWATCH_REVISION"))], 1.0);
        let slots = sources.iter().map(|&c| (c, Slot::default())).collect();
        let enabled = checks::enabled(&config);
        let outputs = Outputs { slots, checks: BTreeMap::new() };
        State { build_info, config, families, enabled, model: Mutex::default(), outputs: Mutex::new(outputs) }
    }

    /// Publishes one run of `source`: its sample into the model and the outputs rebuilt from it
    /// on success; its errors either way.
    pub fn publish(&self, source: &'static str, duration: Duration, result: Result<Collected, CollectError>) {
        let (mut errors, mut ok) = match &result {
            Ok(c) => (c.errors.iter().map(|e| e.kind).collect::<Vec<_>>(), true),
            Err(e) => (vec![e.kind], false),
        };
        let denied: Vec<(String, String)> = match &result {
            Ok(c) => c.errors.iter().collect::<Vec<_>>(),
            Err(e) => vec![e],
        }
        .into_iter()
        .filter_map(|e| Some((e.denied()?.to_owned(), e.to_string())))
        .collect();
        let mut model = lock(&self.model);
        // A panic while deriving or judging is caught here, as one in a source is by its thread:
        // counted as `internal`, the source's outputs withdrawn, and the agent runs on.
        let rebuilt = catch_unwind(AssertUnwindSafe(|| self.rebuild(&mut model, source, result)))
            .or_else(|_| {
                errors.push(ErrorKind::Internal);
                ok = false;
                tracing::error!(message = "deriving or judging a sample panicked", collector = source);
                catch_unwind(AssertUnwindSafe(|| self.rebuild(&mut model, source, Err(internal()))))
            })
            .unwrap_or_default();
        drop(model);
        let (families, judged) = rebuilt;
        let mut outputs = lock(&self.outputs);
        let slot = outputs.slots.entry(source).or_default();
        slot.runs += 1;
        slot.duration = duration;
        slot.success = ok;
        for kind in errors {
            *slot.errors.entry(kind).or_default() += 1;
        }
        for (what, error) in denied {
            if slot.denied.insert(what.clone()) {
                tracing::warn!(
                    message = "collector lacks a privilege; what it needs is not read (said once)",
                    collector = source,
                    what = what.as_str(),
                    error = error.as_str(),
                );
            }
        }
        if ok {
            slot.last_success = Some(SystemTime::now());
        }
        slot.published = Arc::new(Published { families, ..Published::default() });
        for (name, results) in judged {
            outputs.checks.insert(name, Arc::new(results));
        }
    }

    /// A run skipped because the source has nothing new: it counts as a run, and as a success
    /// when the last real run was one (the source was looked at and is as it was).
    pub fn unchanged(&self, source: &'static str) {
        let mut outputs = lock(&self.outputs);
        let slot = outputs.slots.entry(source).or_default();
        slot.runs += 1;
        if slot.success {
            slot.last_success = Some(SystemTime::now());
        }
    }

    /// Takes a run into the model, and rebuilds the source's families and the checks that read it.
    fn rebuild(
        &self,
        model: &mut Model,
        source: &'static str,
        result: Result<Collected, CollectError>,
    ) -> Rebuilt {
        match result {
            Ok(c) => {
                model.update(c);
            }
            // A failed source has no current samples: stale values would mislead.
            Err(e) => model.fail(source, &e),
        }
        let now = Instant::now();
        let families = families::build(model, source, &self.families);
        let judged = checks::judge_inputs_of(source, model, &self.config, now);
        (families, judged)
    }

    /// Ready once every enabled source has run at least once.
    pub fn ready(&self) -> bool {
        lock(&self.outputs).slots.values().all(|s| s.runs > 0)
    }

    /// Encodes the latest snapshot; nothing is sampled here.
    pub fn encode(&self, format: Format) -> String {
        let mut own = vec![self.build_info.clone()];
        // The agent's own process, read from /proc/self now, as the official clients do.
        own.extend(process::families(&process::read(Path::new("/proc"))));
        let (published, judged): (Vec<Arc<Published>>, Vec<Arc<Vec<CheckResult>>>) = {
            let outputs = lock(&self.outputs);
            own.extend(self_families(&outputs.slots));
            let judged = self.enabled.iter().filter_map(|c| outputs.checks.get(c).cloned()).collect();
            (outputs.slots.values().map(|s| s.published.clone()).collect(), judged)
        };
        let check_families = checks::families(&self.enabled, judged.iter().flat_map(|r| r.iter()));
        let collected: Vec<&str> = published.iter().map(|p| p.encoded(format)).collect();
        let mut out = String::with_capacity(collected.iter().map(|c| c.len()).sum::<usize>() + 16 * 1024);
        metrics::encode_into(&mut out, format, &own);
        collected.iter().for_each(|c| out.push_str(c));
        metrics::encode_into(&mut out, format, &check_families);
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

fn self_families(slots: &BTreeMap<&'static str, Slot>) -> Vec<Family> {
    let mut success = Family::gauge(
        "storwatch_collector_success",
        "1 when the collector's last run read its source, 0 when it failed.",
    );
    let mut duration =
        Family::gauge("storwatch_collector_duration_seconds", "How long the collector's last run took.");
    let mut last = Family::gauge(
        "storwatch_collector_last_success_timestamp_seconds",
        "Unix time of the collector's last successful run.",
    );
    let mut denied = Family::gauge(
        "storwatch_collector_privilege_missing",
        "1 for each file, socket, device or privilege the collector was denied (EACCES or EPERM) since the agent started: what its deployment does not grant.",
    );
    let mut errors = Family::counter(
        "storwatch_collector_errors_total",
        "Errors met by the collector, by kind (io, parse, permission, ioctl, timeout, internal), partial failures included.",
    );
    for (name, s) in slots.iter().filter(|(_, s)| s.runs > 0) {
        success.push([("collector", name)], if s.success { 1.0 } else { 0.0 });
        duration.push([("collector", name)], s.duration.as_secs_f64());
        if let Some(t) = s.last_success {
            last.push([("collector", name)], t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64());
        }
        for kind in ErrorKind::ALL {
            let n = s.errors.get(&kind).copied().unwrap_or(0);
            errors.push([("collector", name), ("kind", kind.as_str())], n as f64);
        }
        for what in &s.denied {
            denied.push([("collector", name), ("what", what.as_str())], 1.0);
        }
    }
    vec![success, duration, last, errors, denied]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{Sample, host};

    fn host_sample(release: &str) -> Collected {
        let s = host::Sample { release: Ok(release.into()), cpus: Ok(2), ..host::Sample::default() };
        Collected::new(Sample::Host(s), Vec::new())
    }

    #[test]
    fn a_sample_publishes_its_families_and_checks_and_a_failure_withdraws_them() {
        let state = State::new(&["host", "kmsg"], checks::Config::default(), families::Options::default());
        assert!(!state.ready());
        state.publish("host", Duration::from_millis(3), Ok(host_sample("4.19.0-26-amd64")));
        let text = state.encode(Format::Text);
        assert!(text.contains("storwatch_host_kernel_info{release=\"4.19.0-26-amd64\"} 1\n"), "{text}");
        assert!(text.contains("storwatch_check_ok{check=\"kernel\",subject=\"kernel\"} 0\n"), "{text}");
        assert!(text.contains("storwatch_check_ok{check=\"resources\",subject=\"cpus\"} 0\n"));
        assert!(text.contains("storwatch_checks_failing{check=\"kernel\"} 1\n"));
        assert!(
            text.contains("storwatch_checks_failing{check=\"storage_latency\"} 0\n"),
            "enabled, nothing judged"
        );
        assert!(text.contains("storwatch_collector_errors_total{collector=\"host\",kind=\"timeout\"} 0\n"));
        assert!(!state.ready(), "kmsg has not run");
        let failed = CollectError::new(ErrorKind::Io, "/proc/sys/kernel/osrelease: gone");
        state.publish("host", Duration::from_millis(1), Err(failed));
        let text = state.encode(Format::Text);
        assert!(!text.contains("storwatch_host_kernel_info"), "a failed source's families go");
        assert!(!text.contains("storwatch_check_ok{check=\"kernel\""), "and so do the verdicts judged on it");
        assert!(
            text.contains("storwatch_check_unknown{check=\"kernel\",subject=\"kernel\"} 1\n"),
            "which are unknown: {text}"
        );
        assert!(text.contains("storwatch_checks_unknown{check=\"resources\"} 2\n"));
        assert!(text.contains("storwatch_checks_failing{check=\"kernel\"} 0\n"));
        assert!(text.contains("storwatch_collector_success{collector=\"host\"} 0\n"));
        assert!(text.contains("storwatch_collector_errors_total{collector=\"host\",kind=\"io\"} 1\n"));
        assert!(!text.contains("storwatch_collector_privilege_missing{"), "io is no privilege: {text}");
        let denied = CollectError::new(ErrorKind::Permission, "/proc/1/mountstats: Permission denied");
        for _ in 0..2 {
            let c = Collected::new(Sample::Host(host::Sample::default()), vec![denied.clone()]);
            state.publish("host", Duration::from_millis(1), Ok(c));
        }
        let text = state.encode(Format::Text);
        assert!(
            text.contains(
                "storwatch_collector_privilege_missing{collector=\"host\",what=\"/proc/1/mountstats\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("storwatch_collector_errors_total{collector=\"host\",kind=\"permission\"} 2\n")
        );
        state.publish("host", Duration::from_millis(1), Ok(host_sample("6.1.0")));
        let text = state.encode(Format::Text);
        assert!(text.contains("storwatch_check_ok{check=\"kernel\",subject=\"kernel\"} 1\n"));
        assert!(text.contains("storwatch_check_unknown{check=\"kernel\",subject=\"kernel\"} 0\n"));
        assert!(
            text.contains("storwatch_check_unknown{check=\"resources\",subject=\"memory\"} 1\n"),
            "MemTotal not in the sample: {text}"
        );
    }
}
