//! The optional TOML config file. Its defaults are the spec's thresholds, so no file is needed.
//!
//! ```toml
//! [checks.storage_latency]
//! enabled = true
//! max = "5ms"
//! ```

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub checks: Checks,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    pub storage_latency: LatencyCheck,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyCheck {
    pub enabled: bool,
    /// Mean read and write latency per device over the window must stay below this.
    #[serde(deserialize_with = "positive_duration")]
    pub max: Duration,
}

impl Default for LatencyCheck {
    fn default() -> Self {
        LatencyCheck { enabled: true, max: Duration::from_millis(5) }
    }
}

fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    match humantime::parse_duration(&s) {
        Ok(v) if !v.is_zero() => Ok(v),
        Ok(_) => Err(serde::de::Error::custom("duration must be greater than zero")),
        Err(e) => {
            Err(serde::de::Error::custom(format!("invalid duration {s:?} ({e}); write it like \"5ms\"")))
        }
    }
}

impl Config {
    /// Parses a config file's text; the error names the file, line, column and problem.
    pub fn parse(path: &Path, text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            let place = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            format!("config file {}: {}{}", path.display(), place.unwrap_or_default(), e.message())
        })
    }

    pub fn load(path: &Path) -> Result<Config, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("config file {}: {e}", path.display()))?;
        Config::parse(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("x.toml"), text)
    }

    #[test]
    fn empty_is_the_spec() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.checks.storage_latency.max, Duration::from_millis(5));
        assert!(c.checks.storage_latency.enabled);
    }

    #[test]
    fn values() {
        let c = parse("[checks.storage_latency]\nmax = \"20ms\"\nenabled = false\n").unwrap();
        assert_eq!(c.checks.storage_latency, LatencyCheck { enabled: false, max: Duration::from_millis(20) });
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let e = parse("[checks.storage_latency]\nmax = \"5ms\"\nmaxx = 3\n").unwrap_err();
        assert!(e.starts_with("config file x.toml: line 3, column 1: unknown field `maxx`"), "{e}");
        let e = parse("[checks.storage_latency]\nenabled = \"yes\"\n").unwrap_err();
        assert!(e.starts_with("config file x.toml: line 2, column 11: invalid type"), "{e}");
        let e = parse("[checks.storage_latency]\nmax = \"fast\"\n").unwrap_err();
        assert!(e.contains("line 2, column 7: invalid duration \"fast\""), "{e}");
        let e = parse("[checks.storage_latency]\nmax = \"0s\"\n").unwrap_err();
        assert!(e.contains("greater than zero"), "{e}");
        let e = parse("[checks\n").unwrap_err();
        assert!(e.starts_with("config file x.toml: line 1, column"), "{e}");
        let e = parse("[check.storage_latency]\n").unwrap_err();
        assert!(e.contains("unknown field `check`"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn never_panics_near_valid(text in "(\\[checks(\\.storage_latency)?\\]\n|enabled = (true|1)\n|max = \"[0-9a-z ]{0,6}\"\n|[a-z=\" \n]{0,10}){0,6}") {
            let _ = parse(&text);
        }
    }
}
