//! Mounts: each container mount of a volume that is read-only (the manual: RW=false makes writes
//! fail, and `:ro` is for configuration only; it fails unless the volume is in
//! `allow_read_only`), and each volume mounted by more than one container (reported, and passing
//! unless `fail_shared`: sharing is legitimate for backup and init sidecars, and the manual asks
//! that it be known).

use std::time::Instant;

use serde::{Deserialize, Deserializer, de::Error};

use super::{ALL, CheckResult, Verdict, docker_unread};
use crate::model::Model;
use crate::model::docker::volume_users;

pub const INPUTS: &[&str] = &["docker"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Volumes that may be mounted read-only (configuration volumes); a read-only mount of any
    /// other volume fails.
    #[serde(deserialize_with = "volume_names")]
    pub allow_read_only: Vec<String>,
    /// Whether a volume mounted by more than one container fails (by default it is reported and
    /// passes).
    pub fail_shared: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, allow_read_only: Vec::new(), fail_shared: false }
    }
}

fn volume_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    // Docker's volume name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (one character is allowed too).
    let valid = |n: &str| {
        n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    if let Some(bad) = v.iter().find(|n| !valid(n)) {
        return Err(D::Error::custom(format!("{bad:?} is not a Docker volume name")));
    }
    Ok(v)
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    let Some(e) = model.docker().and_then(|d| d.engine.as_ref()) else {
        let expected = "read-write, or a volume in allow_read_only".to_owned();
        return docker_unread(model).map(|why| CheckResult::unknown("mounts", ALL, expected, &why)).into_iter().collect();
    };
    let mut out = Vec::new();
    for c in &e.snapshot.containers {
        for m in c.mounts.iter().filter(|m| m.kind == "volume" && !m.rw) {
            out.push(read_only(cfg, &c.name(), &m.destination, &m.name));
        }
    }
    let users = volume_users(e);
    for v in &e.snapshot.volumes {
        if let Some(names) = users.get(v.name.as_str()).filter(|n| n.len() > 1) {
            out.push(shared(cfg, &v.name, &names.iter().cloned().collect::<Vec<_>>()));
        }
    }
    out
}

/// A read-only mount of `volume` at `destination` in `container`. Subject
/// `<container>:<destination>`.
pub fn read_only(cfg: &Config, container: &str, destination: &str, volume: &str) -> CheckResult {
    let allowed = cfg.allow_read_only.iter().any(|v| v == volume);
    CheckResult {
        check: "mounts",
        subject: format!("{container}:{destination}"),
        verdict: Verdict::of(allowed),
        observed: format!("volume {volume} read-only{}", if allowed { " (allowed)" } else { "" }),
        expected: "read-write, or a volume in allow_read_only".to_owned(),
        value: Some(0.0),
        threshold: None,
    }
}

/// A volume mounted by several containers. Subject `volume <name>`; the value is the number of
/// containers.
pub fn shared(cfg: &Config, volume: &str, containers: &[String]) -> CheckResult {
    let mut names = containers.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if containers.len() > 5 {
        names.push_str(", ...");
    }
    CheckResult {
        check: "mounts",
        subject: format!("volume {volume}"),
        verdict: Verdict::of(!cfg.fail_shared),
        observed: format!("mounted by {} containers: {names}", containers.len()),
        expected: if cfg.fail_shared { "one container".to_owned() } else { "any (reported)".to_owned() },
        value: Some(containers.len() as f64),
        threshold: cfg.fail_shared.then_some(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_and_shared() {
        let cfg = Config::default();
        let r = read_only(&cfg, "db", "/data", "pg");
        assert!(!r.ok());
        assert_eq!((r.subject.as_str(), r.observed.as_str()), ("db:/data", "volume pg read-only"));
        let allow = Config { allow_read_only: vec!["pg".into()], ..cfg.clone() };
        assert!(read_only(&allow, "db", "/data", "pg").ok());
        let names = ["a".to_owned(), "b".to_owned()];
        let r = shared(&cfg, "pg", &names);
        assert!(r.ok());
        assert_eq!((r.subject.as_str(), r.observed.as_str()), ("volume pg", "mounted by 2 containers: a, b"));
        assert!(!shared(&Config { fail_shared: true, ..cfg }, "pg", &names).ok());
    }
}
