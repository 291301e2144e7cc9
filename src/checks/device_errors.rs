//! Device errors, from the kernel log: no storage error on a device within the window (classes
//! in `ignore` aside, and lines that name no device).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, de::Error};

use super::{ALL, CheckResult, Verdict, ago, human, unread};
use crate::model::Model;
use crate::sources::kmsg::Target;
use crate::sources::kmsg::classify::Class;
use crate::values::positive_duration;

pub const INPUTS: &[&str] = &["kmsg"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// A storage error in the kernel log within this window fails its device.
    #[serde(deserialize_with = "positive_duration")]
    pub window: Duration,
    /// Kernel log classes that do not fail the check (still counted).
    #[serde(deserialize_with = "class_names")]
    pub ignore: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { enabled: true, window: Duration::from_secs(15 * 60), ignore: vec!["pcie_aer_correctable".into()] }
    }
}

fn class_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(bad) = v.iter().find(|c| Class::from_name(c).is_none()) {
        return Err(D::Error::custom(format!("unknown kernel log class {bad:?} (see the README's kmsg classes)")));
    }
    Ok(v)
}

pub fn evaluate(model: &Model, cfg: &Config, now: Instant) -> Vec<CheckResult> {
    let Some(k) = model.kernel() else {
        return unread(model, "kmsg", "device_errors", &[ALL], || expected(cfg));
    };
    last_errors(cfg, &k.sample.errors)
        .into_iter()
        .map(|(subject, (t, class))| judge(cfg, &subject, k.age(t, now), class.as_str()))
        .collect()
}

/// Per attributed subject (a disk by name, anything else as `kind:name`), its last error's printk
/// time and class, ignored classes aside.
fn last_errors(cfg: &Config, errors: &BTreeMap<(Target, Class), (u64, f64)>) -> BTreeMap<String, (f64, Class)> {
    let mut last: BTreeMap<String, (f64, Class)> = BTreeMap::new();
    for ((target, class), (_, t)) in errors {
        let subject = target.label();
        if subject.is_empty() || cfg.ignore.iter().any(|i| i == class.as_str()) {
            continue;
        }
        let entry = last.entry(subject).or_insert((*t, *class));
        if *t > entry.0 {
            *entry = (*t, *class);
        }
    }
    last
}

fn expected(cfg: &Config) -> String {
    format!("none in the last {}", human(cfg.window))
}

/// One device: `age` seconds since its last error, of class `class`.
pub fn judge(cfg: &Config, device: &str, age: f64, class: &str) -> CheckResult {
    let window = cfg.window.as_secs_f64();
    CheckResult {
        check: "device_errors",
        subject: device.to_owned(),
        verdict: Verdict::of(age > window),
        observed: format!("last kernel log error {} ago ({class})", ago(age)),
        expected: expected(cfg),
        value: Some(age),
        threshold: Some(window),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::kmsg::Kind;

    #[test]
    fn window_and_ignored_classes() {
        let cfg = Config::default();
        let now = 10_000.0;
        let t = |kind, name: &str| Target { kind, name: name.to_owned() };
        let errors: BTreeMap<(Target, Class), (u64, f64)> = [
            (t(Kind::Disk, "sda"), Class::AtaMedia, now - 60.0),
            (t(Kind::Disk, "sda"), Class::BlockMedium, now - 3600.0),
            (t(Kind::Disk, "sdb"), Class::BlockIo, now - 3600.0),
            (t(Kind::Disk, "nvme0"), Class::PcieAerCorrectable, now - 1.0),
            (t(Kind::Md, "md0"), Class::MdDegraded, now - 5.0),
            (t(Kind::Nfs, "nas1"), Class::NfsTimeout, now - 5000.0),
            (t(Kind::None, ""), Class::CpuThrottle, now - 1.0),
        ]
        .into_iter()
        .map(|(d, c, t)| ((d, c), (1, t)))
        .collect();
        let r: Vec<CheckResult> =
            last_errors(&cfg, &errors).into_iter().map(|(d, (t, c))| judge(&cfg, &d, now - t, c.as_str())).collect();
        let verdicts: Vec<_> = r.iter().map(|r| (r.subject.as_str(), r.ok())).collect();
        assert_eq!(verdicts, [("md0", false), ("nfs:nas1", true), ("sda", false), ("sdb", true)], "{r:?}");
        assert_eq!(r[2].value, Some(60.0));
        assert!(r[2].observed.contains("ata_media"), "{}", r[2].observed);
    }
}
