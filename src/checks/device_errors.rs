//! Device errors, from the kernel log: no storage error on a device within the window (classes
//! in `ignore` aside, and lines that name no device).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, de::Error};

use super::{CheckResult, ago, human};
use crate::model::Model;
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
    let Some(k) = model.kernel() else { return Vec::new() };
    last_errors(cfg, &k.sample.errors)
        .into_iter()
        .map(|(device, (t, class))| judge(cfg, device, k.age(t, now), class.as_str()))
        .collect()
}

/// Per attributed device, its last error's printk time and class, ignored classes aside.
fn last_errors<'a>(cfg: &Config, errors: &'a BTreeMap<(String, Class), (u64, f64)>) -> BTreeMap<&'a str, (f64, Class)> {
    let mut last: BTreeMap<&str, (f64, Class)> = BTreeMap::new();
    for ((device, class), (_, t)) in errors {
        if device.is_empty() || cfg.ignore.iter().any(|i| i == class.as_str()) {
            continue;
        }
        let entry = last.entry(device).or_insert((*t, *class));
        if *t > entry.0 {
            *entry = (*t, *class);
        }
    }
    last
}

/// One device: `age` seconds since its last error, of class `class`.
pub fn judge(cfg: &Config, device: &str, age: f64, class: &str) -> CheckResult {
    let window = cfg.window.as_secs_f64();
    CheckResult {
        check: "device_errors",
        subject: device.to_owned(),
        ok: age > window,
        observed: format!("last kernel log error {} ago ({class})", ago(age)),
        expected: format!("none in the last {}", human(cfg.window)),
        value: Some(age),
        threshold: Some(window),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_ignored_classes() {
        let cfg = Config::default();
        let now = 10_000.0;
        let errors: BTreeMap<(String, Class), (u64, f64)> = [
            ("sda", Class::AtaMedia, now - 60.0),
            ("sda", Class::BlockMedium, now - 3600.0),
            ("sdb", Class::BlockIo, now - 3600.0),
            ("nvme0", Class::PcieAerCorrectable, now - 1.0),
            ("", Class::AtaLinkDown, now - 1.0),
        ]
        .iter()
        .map(|(d, c, t)| (((*d).to_owned(), *c), (1, *t)))
        .collect();
        let r: Vec<CheckResult> =
            last_errors(&cfg, &errors).into_iter().map(|(d, (t, c))| judge(&cfg, d, now - t, c.as_str())).collect();
        let verdicts: Vec<_> = r.iter().map(|r| (r.subject.as_str(), r.ok)).collect();
        assert_eq!(verdicts, [("sda", false), ("sdb", true)], "{r:?}");
        assert_eq!(r[0].value, Some(60.0));
        assert!(r[0].observed.contains("ata_media"), "{}", r[0].observed);
    }
}
