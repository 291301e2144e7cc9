//! File system: the filesystem holding each watched path (`[filesystems] paths`: the Docker data
//! root and volumes directory), the engine's own data root and every local volume is one of the
//! allowed types (the manual's XFS or EXT4 on a persistent block device). A path the host source
//! watches is judged once, from the host's sample.

use std::time::Instant;

use serde::Deserialize;

use super::{ALL, CheckResult, Verdict, docker_unread};
use crate::model::Model;
use crate::values::non_empty_names;

pub const INPUTS: &[&str] = &["host", "docker"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Filesystem types allowed.
    #[serde(deserialize_with = "non_empty_names")]
    pub allowed: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, allowed: vec!["xfs".into(), "ext4".into()] }
    }
}

pub fn evaluate(model: &Model, cfg: &Config, _now: Instant) -> Vec<CheckResult> {
    let expected = || cfg.allowed.join(" or ");
    let watched = model.host().map(|h| h.filesystems.as_slice()).unwrap_or_default();
    let places = model.docker().and_then(|d| d.engine.as_ref()).map(|e| e.places.as_slice()).unwrap_or_default();
    let engine = places
        .iter()
        .filter(|p| !watched.iter().any(|(w, _)| *w == p.path))
        .filter_map(|p| Some((p.path.as_str(), p.mount.as_ref()?.fstype.as_str())));
    let mut out: Vec<CheckResult> = watched
        .iter()
        .map(|(path, m)| match m {
            Ok(m) => judge(cfg, path, &m.fstype),
            Err(why) => CheckResult::unknown("filesystem", path, expected(), why),
        })
        .chain(engine.map(|(path, fstype)| judge(cfg, path, fstype)))
        .collect();
    // The paths of a source that could not be read are unknown as a whole.
    let why: Vec<String> =
        [model.failure("host").map(str::to_owned), docker_unread(model)].into_iter().flatten().collect();
    if !why.is_empty() {
        out.push(CheckResult::unknown("filesystem", ALL, expected(), &why.join("; ")));
    }
    out
}

pub fn judge(cfg: &Config, path: &str, fstype: &str) -> CheckResult {
    CheckResult {
        check: "filesystem",
        subject: path.to_owned(),
        verdict: Verdict::of(cfg.allowed.iter().any(|a| a == fstype)),
        observed: fstype.to_owned(),
        expected: cfg.allowed.join(" or "),
        value: None,
        threshold: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        let fs = Config::default();
        assert!(judge(&fs, "/var/lib/docker", "xfs").ok());
        assert!(!judge(&fs, "/var/lib/docker", "btrfs").ok());
        assert_eq!(judge(&fs, "/v", "tmpfs").expected, "xfs or ext4");
    }
}
