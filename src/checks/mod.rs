//! The checks engine: every check of the spec (the README's Checks table), one module each with
//! its config section (`[checks.<name>]`, defaults = the spec) and its judgement, a plain
//! function of the whole model: `evaluate(model, config, now) -> Vec<CheckResult>`. A
//! judgement across sources (one thermal verdict per drive, the latency of a disk from its eBPF
//! p99 or its diskstats mean) is one function in one place.
//!
//! Adding a check: its file here, and its name in the [`registry!`] line below. `/metrics` shows
//! each result as `storwatch_check_ok{check,subject}` and `storwatch_check_unknown{check,subject}`,
//! with the value judged and the threshold beside it where they are numbers, and per-check counts
//! of failing and unknown subjects; `storwatch check` prints the same results.
//!
//! A verdict is pass, fail or unknown. Unknown is a subject the check should judge but whose
//! source could not be read: its reason is in `observed`, and the source counted the error. A
//! source that is disabled, or has not run yet, is judged nothing (no result at all).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::Family;
use crate::model::Model;

/// A check's answer for one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// The source the subject is judged on could not be read.
    Unknown,
}

impl Verdict {
    /// Pass when `ok`, else fail.
    pub fn of(ok: bool) -> Verdict {
        if ok { Verdict::Pass } else { Verdict::Fail }
    }
}

/// One subject's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub check: &'static str,
    pub subject: String,
    pub verdict: Verdict,
    /// What was seen, for people (`20`, `bfq`, `6.1.0-18-amd64`); for an unknown verdict, why
    /// nothing could be seen.
    pub observed: String,
    /// What the rule wants, for people (`= 15`, `mq-deadline or none`, `< 5ms`).
    pub expected: String,
    /// The value judged in the check's base unit, where it is a number.
    pub value: Option<f64>,
    /// The threshold in the same unit, where there is one.
    pub threshold: Option<f64>,
}

/// The JSON has `ok` (true only for pass, as before verdicts had three states) beside `verdict`.
impl Serialize for CheckResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("CheckResult", 8)?;
        st.serialize_field("check", self.check)?;
        st.serialize_field("subject", &self.subject)?;
        st.serialize_field("ok", &self.ok())?;
        st.serialize_field("verdict", &self.verdict)?;
        st.serialize_field("observed", &self.observed)?;
        st.serialize_field("expected", &self.expected)?;
        st.serialize_field("value", &self.value)?;
        st.serialize_field("threshold", &self.threshold)?;
        st.end()
    }
}

impl CheckResult {
    /// True when the subject passed.
    pub fn ok(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// A subject that could not be judged: `reason` says which source could not be read.
    pub fn unknown(check: &'static str, subject: &str, expected: String, reason: &str) -> CheckResult {
        CheckResult {
            check,
            subject: subject.to_owned(),
            verdict: Verdict::Unknown,
            observed: format!("not read: {reason}"),
            expected,
            value: None,
            threshold: None,
        }
    }
}

/// The subject of an unknown result of a check whose subjects come from the source that could
/// not be read (devices, interfaces, volumes): every one of them.
pub const ALL: &str = "*";

/// Unknown results for `subjects` when `source` failed its last run; none when it was read, is
/// disabled or has not run (then there is nothing to say).
pub fn unread(
    model: &Model,
    source: &str,
    check: &'static str,
    subjects: &[&str],
    expected: impl Fn() -> String,
) -> Vec<CheckResult> {
    let Some(why) = model.failure(source) else { return Vec::new() };
    subjects.iter().map(|s| CheckResult::unknown(check, s, expected(), why)).collect()
}

/// Why the Docker engine could not be read: the source failed, or it answered with an error (or
/// was absent while its data root exists). None when it was read or is absent.
pub fn docker_unread(model: &Model) -> Option<String> {
    if let Some(why) = model.failure("docker") {
        return Some(why.to_owned());
    }
    model.docker()?.error.as_ref().map(|e| format!("Docker engine: {e}"))
}

/// A check as the engine runs it.
pub struct Check {
    pub name: &'static str,
    /// The sources it reads: it is judged again when one of them has a new sample.
    pub inputs: &'static [&'static str],
    enabled: fn(&Config) -> bool,
    evaluate: fn(&Model, &Config, Instant) -> Vec<CheckResult>,
}

impl Check {
    pub fn enabled(&self, config: &Config) -> bool {
        (self.enabled)(config)
    }

    /// Its results on the model at time `now` (ages of rises and log errors are taken from it).
    pub fn evaluate(&self, model: &Model, config: &Config, now: Instant) -> Vec<CheckResult> {
        (self.evaluate)(model, config, now)
    }
}

/// Declares the check modules, the config struct with a section per check, and [`REGISTRY`], in
/// the order of the spec's table.
macro_rules! registry {
    ($($name:ident),* $(,)?) => {
        $(pub mod $name;)*

        /// Every check's config: the `[checks]` table of the config file.
        #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $(pub $name: $name::Config,)*
        }

        /// Every check, in the order of the spec's table.
        pub const REGISTRY: &[Check] = &[$(
            Check {
                name: stringify!($name),
                inputs: $name::INPUTS,
                enabled: |c| c.$name.enabled,
                evaluate: |m, c, now| $name::evaluate(m, &c.$name, now),
            },
        )*];
    };
}

registry![
    storage_latency,
    device_errors,
    nvme_health,
    sata_health,
    thermal,
    io_scheduler,
    writeback,
    network_bandwidth,
    packet_loss,
    filesystem,
    kernel,
    docker_engine,
    capacity,
    mounts,
    resources,
];

/// The names of the enabled checks, in the order of the spec's table.
pub fn enabled(config: &Config) -> Vec<&'static str> {
    REGISTRY.iter().filter(|c| c.enabled(config)).map(|c| c.name).collect()
}

/// The place of a check in the spec's table (for ordering reports).
pub fn rank(check: &str) -> usize {
    REGISTRY.iter().position(|c| c.name == check).unwrap_or(REGISTRY.len())
}

/// The results of each enabled check that reads `source`: what a new sample of it may change.
pub fn judge_inputs_of(
    source: &str,
    model: &Model,
    config: &Config,
    now: Instant,
) -> Vec<(&'static str, Vec<CheckResult>)> {
    REGISTRY
        .iter()
        .filter(|c| c.inputs.contains(&source) && c.enabled(config))
        .map(|c| (c.name, c.evaluate(model, config, now)))
        .collect()
}

/// Every enabled check's results on the model.
pub fn evaluate_all(model: &Model, config: &Config, now: Instant) -> Vec<CheckResult> {
    REGISTRY.iter().filter(|c| c.enabled(config)).flat_map(|c| c.evaluate(model, config, now)).collect()
}

/// Milliseconds with three decimals: `5.000ms`.
fn ms(seconds: f64) -> String {
    format!("{:.3}ms", seconds * 1000.0)
}

/// A duration for people: `15m`.
fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Seconds as a duration for people, whole seconds: `1m 30s`.
fn ago(seconds: f64) -> String {
    human(Duration::from_secs(seconds.max(0.0) as u64))
}

/// Bytes in GiB with one decimal: `10.0GiB`.
fn gib(bytes: u64) -> String {
    format!("{:.1}GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Whether a rise `seconds` ago is within `window`.
fn within(seconds: Option<f64>, window: Duration) -> bool {
    seconds.is_some_and(|a| a <= window.as_secs_f64())
}

/// A version's code, as LINUX_VERSION_CODE: major << 16 | minor << 8 | min(patch, 255).
pub fn version_code((major, minor, patch): (u32, u32, u32)) -> f64 {
    f64::from(major) * 65536.0 + f64::from(minor.min(255)) * 256.0 + f64::from(patch.min(255))
}

/// The check families for every result, in one place so each family appears once in the
/// exposition. `enabled` lists every enabled check, so a passing one shows 0 failing.
pub fn families<'a>(
    enabled: &[&'static str],
    results: impl IntoIterator<Item = &'a CheckResult>,
) -> Vec<Family> {
    let mut ok =
        Family::gauge("storwatch_check_ok", "1 when the subject complies with the check, 0 when not.");
    let mut value =
        Family::gauge("storwatch_check_observed", "The value the check judged, in the check's base unit.");
    let mut threshold = Family::gauge(
        "storwatch_check_threshold",
        "The threshold the check judged the subject against, in the check's base unit.",
    );
    let mut unknown = Family::gauge(
        "storwatch_check_unknown",
        "1 when the subject could not be judged: the source it is judged on could not be read (the collector's errors say why).",
    );
    let mut counts: BTreeMap<&str, (u32, u32)> = enabled.iter().map(|c| (*c, (0, 0))).collect();
    for r in results {
        let labels = [("check", r.check), ("subject", r.subject.as_str())];
        let count = counts.entry(r.check).or_default();
        unknown.push(labels, if r.verdict == Verdict::Unknown { 1.0 } else { 0.0 });
        match r.verdict {
            Verdict::Unknown => {
                count.1 += 1;
                continue;
            }
            Verdict::Fail => count.0 += 1,
            Verdict::Pass => {}
        }
        ok.push(labels, if r.ok() { 1.0 } else { 0.0 });
        if let Some(v) = r.value {
            value.push(labels, v);
        }
        if let Some(t) = r.threshold {
            threshold.push(labels, t);
        }
    }
    let mut failing = Family::gauge(
        "storwatch_checks_failing",
        "Subjects failing each enabled check on this host (0: compliant).",
    );
    let mut unjudged = Family::gauge(
        "storwatch_checks_unknown",
        "Subjects of each enabled check that could not be judged on this host (0: every one was).",
    );
    for (check, (f, u)) in counts {
        failing.push([("check", check)], f64::from(f));
        unjudged.push([("check", check)], f64::from(u));
    }
    vec![ok, unknown, value, threshold, failing, unjudged]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_and_config_agree() {
        let mut cfg = Config::default();
        let names: Vec<_> = REGISTRY.iter().map(|c| c.name).collect();
        assert_eq!(enabled(&cfg), names, "every check on by default");
        assert_eq!(names.len(), 15);
        cfg.packet_loss.enabled = false;
        cfg.device_errors.enabled = false;
        let on = enabled(&cfg);
        assert!(!on.contains(&"packet_loss") && !on.contains(&"device_errors"));
        assert!(on.contains(&"network_bandwidth") && on.contains(&"resources"));
        assert_eq!(rank("storage_latency"), 0);
        assert_eq!(rank("resources"), 14);
        for c in REGISTRY {
            assert!(!c.inputs.is_empty(), "{}", c.name);
            for i in c.inputs {
                assert!(crate::sources::names().any(|s| s == *i), "{}: no source {i}", c.name);
            }
        }
    }

    #[test]
    fn an_empty_model_judges_nothing() {
        let results = evaluate_all(&Model::default(), &Config::default(), Instant::now());
        assert!(results.is_empty(), "{results:?}");
    }

    #[test]
    fn families_count_failing_per_check() {
        let result = |subject: &str, ok| CheckResult {
            check: "storage_latency",
            subject: subject.into(),
            verdict: Verdict::of(ok),
            observed: String::new(),
            expected: String::new(),
            value: Some(0.01),
            threshold: Some(0.005),
        };
        let unknown = CheckResult::unknown("storage_latency", ALL, "< 5ms".into(), "diskstats failed");
        let results = [result("sda", true), result("sdb", false), unknown];
        let f = families(&["storage_latency", "kernel"], &results);
        assert_eq!(f[0].samples.len(), 2, "no verdict for the unknown subject");
        assert_eq!(f[0].samples[1].value, 0.0);
        let unknown: Vec<_> = f[1].samples.iter().map(|s| (s.labels[1].1.as_str(), s.value)).collect();
        assert_eq!(unknown, [("sda", 0.0), ("sdb", 0.0), ("*", 1.0)]);
        assert_eq!(f[3].samples[0].value, 0.005);
        let per_check = |f: &Family| -> Vec<(String, f64)> {
            f.samples.iter().map(|s| (s.labels[0].1.clone(), s.value)).collect()
        };
        assert_eq!(per_check(&f[4]), [("kernel".into(), 0.0), ("storage_latency".into(), 1.0)]);
        assert_eq!(per_check(&f[5]), [("kernel".into(), 0.0), ("storage_latency".into(), 1.0)]);
    }

    #[test]
    fn texts() {
        assert_eq!(ms(0.005), "5.000ms");
        assert_eq!(ago(90.4), "1m 30s");
        assert_eq!(ago(-1.0), "0s");
        assert_eq!(gib(10 << 30), "10.0GiB");
        assert!(within(Some(60.0), Duration::from_secs(60)) && !within(Some(61.0), Duration::from_secs(60)));
        assert!(!within(None, Duration::from_secs(60)));
        assert_eq!(version_code((5, 4, 0)), 328704.0);
    }
}
