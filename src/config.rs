//! The optional TOML config file. Its defaults are the spec's thresholds, so no file is needed;
//! an unknown key, a wrong type or a bad value is an error naming the file, line and problem.
//!
//! ```toml
//! [checks.storage_latency]
//! enabled = true
//! max = "5ms"
//!
//! [filesystems]
//! paths = ["/var/lib/docker", "/var/lib/docker/volumes"]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub checks: Checks,
    pub filesystems: Filesystems,
}

/// Paths whose filesystem is reported and judged: the Docker data root and volume paths.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Filesystems {
    pub paths: Vec<PathBuf>,
}

impl Default for Filesystems {
    fn default() -> Self {
        Filesystems { paths: vec!["/var/lib/docker".into(), "/var/lib/docker/volumes".into()] }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    pub storage_latency: LatencyCheck,
    pub device_errors: DeviceErrorsCheck,
    pub io_scheduler: SchedulerCheck,
    pub writeback: WritebackCheck,
    pub filesystem: FilesystemCheck,
    pub kernel: KernelCheck,
    pub resources: ResourcesCheck,
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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceErrorsCheck {
    pub enabled: bool,
    /// A storage error in the kernel log within this window fails its device.
    #[serde(deserialize_with = "positive_duration")]
    pub window: Duration,
    /// Kernel log classes that do not fail the check (still counted).
    #[serde(deserialize_with = "class_names")]
    pub ignore: Vec<String>,
}

impl Default for DeviceErrorsCheck {
    fn default() -> Self {
        DeviceErrorsCheck {
            enabled: true,
            window: Duration::from_secs(15 * 60),
            ignore: vec!["pcie_aer_correctable".into()],
        }
    }
}

fn class_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(bad) = v.iter().find(|c| crate::collectors::kmsg::classify::Class::from_name(c).is_none()) {
        return Err(serde::de::Error::custom(format!(
            "unknown kernel log class {bad:?} (see the README's kmsg classes)"
        )));
    }
    Ok(v)
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerCheck {
    pub enabled: bool,
    /// Schedulers allowed on non-rotational devices (blk-mq names of deadline and noop).
    #[serde(deserialize_with = "non_empty_names")]
    pub allowed: Vec<String>,
}

impl Default for SchedulerCheck {
    fn default() -> Self {
        SchedulerCheck { enabled: true, allowed: vec!["mq-deadline".into(), "none".into()] }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WritebackCheck {
    pub enabled: bool,
    /// Required `vm.dirty_ratio`, percent.
    #[serde(deserialize_with = "percent")]
    pub dirty_ratio: u32,
    /// Required `vm.dirty_background_ratio`, percent.
    #[serde(deserialize_with = "percent")]
    pub dirty_background_ratio: u32,
}

impl Default for WritebackCheck {
    fn default() -> Self {
        WritebackCheck { enabled: true, dirty_ratio: 15, dirty_background_ratio: 5 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemCheck {
    pub enabled: bool,
    /// Filesystem types allowed under the paths of `[filesystems]`.
    #[serde(deserialize_with = "non_empty_names")]
    pub allowed: Vec<String>,
}

impl Default for FilesystemCheck {
    fn default() -> Self {
        FilesystemCheck { enabled: true, allowed: vec!["xfs".into(), "ext4".into()] }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KernelCheck {
    pub enabled: bool,
    /// The oldest kernel release allowed, e.g. "5.4".
    #[serde(deserialize_with = "version")]
    pub min_version: (u32, u32, u32),
}

impl Default for KernelCheck {
    fn default() -> Self {
        KernelCheck { enabled: true, min_version: (5, 4, 0) }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesCheck {
    pub enabled: bool,
    /// Online CPUs the host must have.
    #[serde(deserialize_with = "positive_count")]
    pub min_cpus: u32,
    /// Memory the host must have, e.g. "8GiB".
    #[serde(deserialize_with = "size")]
    pub min_memory: u64,
}

impl Default for ResourcesCheck {
    fn default() -> Self {
        ResourcesCheck { enabled: true, min_cpus: 4, min_memory: 8 << 30 }
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

fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .ok()
        .filter(|v| *v <= 100)
        .ok_or_else(|| serde::de::Error::custom(format!("{v} is not a percentage from 0 to 100")))
}

fn positive_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| serde::de::Error::custom(format!("{v} must be a whole number greater than zero")))
}

fn non_empty_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if v.is_empty() || v.iter().any(|s| s.trim().is_empty()) {
        return Err(serde::de::Error::custom("must list at least one name, and no empty ones"));
    }
    Ok(v)
}

fn version<'de, D: Deserializer<'de>>(d: D) -> Result<(u32, u32, u32), D::Error> {
    let s = String::deserialize(d)?;
    parse_version(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("invalid version {s:?}; write it like \"5.4\"")))
}

/// The leading `major.minor[.patch]` of a kernel release such as `6.1.0-18-amd64`.
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let end = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let mut parts = s[..end].split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        None | Some("") => 0,
        Some(p) => p.parse().ok()?,
    };
    Some((major, minor, patch))
}

/// The dotted key written on 1-based `line`: the last `[table]` header above it plus the key left
/// of `=`, or the header itself when the line is one. None for anything else.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let header = |l: &str| l.strip_prefix('[').and_then(|l| l.strip_suffix(']')).map(|h| h.trim().to_owned());
    if let Some(h) = header(here) {
        return Some(h);
    }
    let key = here.split_once('=')?.0.trim();
    let table = lines[..line - 1].iter().rev().find_map(|l| header(l.trim()));
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    })
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    parse_size(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("invalid size {s:?}; write it like \"8GiB\"")))
}

/// A size with a binary unit (B, KiB, MiB, GiB, TiB), e.g. "8GiB" or "512 MiB".
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

impl Config {
    /// Parses a config file's text; the error names the file, line, column, key and problem.
    pub fn parse(path: &Path, text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            let place = e.span().map(|span| {
                let start = span.start.min(text.len());
                let before = text.get(..start).unwrap_or("");
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                match key_at(text, line) {
                    Some(key) => format!("line {line}, column {column}, key {key}: "),
                    None => format!("line {line}, column {column}: "),
                }
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
        assert_eq!((c.checks.writeback.dirty_ratio, c.checks.writeback.dirty_background_ratio), (15, 5));
        assert_eq!(c.checks.resources.min_memory, 8 * 1024 * 1024 * 1024);
        assert_eq!(c.checks.kernel.min_version, (5, 4, 0));
    }

    #[test]
    fn values() {
        let c = parse(
            "[checks.storage_latency]\nmax = \"20ms\"\nenabled = false\n\
             [checks.resources]\nmin_cpus = 2\nmin_memory = \"512 MiB\"\n\
             [checks.kernel]\nmin_version = \"6.1.2\"\n\
             [filesystems]\npaths = [\"/data\"]\n",
        )
        .unwrap();
        assert_eq!(c.checks.storage_latency, LatencyCheck { enabled: false, max: Duration::from_millis(20) });
        assert_eq!((c.checks.resources.min_cpus, c.checks.resources.min_memory), (2, 512 << 20));
        assert_eq!(c.checks.kernel.min_version, (6, 1, 2));
        assert_eq!(c.filesystems.paths, [PathBuf::from("/data")]);
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let cases = [
            (
                "[checks.storage_latency]\nmax = \"5ms\"\nmaxx = 3\n",
                "line 3, column 1, key checks.storage_latency.maxx: unknown field `maxx`",
            ),
            (
                "[checks.storage_latency]\nenabled = \"yes\"\n",
                "line 2, column 11, key checks.storage_latency.enabled: invalid type",
            ),
            (
                "[checks.storage_latency]\nmax = \"fast\"\n",
                "line 2, column 7, key checks.storage_latency.max: invalid duration \"fast\"",
            ),
            ("[checks.storage_latency]\nmax = \"0s\"\n", "greater than zero"),
            ("[checks\n", "line 1, column"),
            ("[check.storage_latency]\n", "unknown field `check`"),
            ("[checks.latency]\n", "line 1, column 9, key checks.latency: unknown field `latency`"),
            (
                "# c\n[checks]\nkernel = { enabled = 1 }\n",
                "line 3, column 22, key checks.kernel: invalid type",
            ),
            (
                "[checks.writeback]\ndirty_ratio = -1\n",
                "line 2, column 15, key checks.writeback.dirty_ratio: -1 is not a percentage",
            ),
            ("[checks.writeback]\ndirty_ratio = 101\n", "101 is not a percentage"),
            ("[checks.resources]\nmin_cpus = 0\n", "0 must be a whole number greater than zero"),
            ("[checks.resources]\nmin_memory = \"8GB\"\n", "invalid size \"8GB\""),
            ("[checks.kernel]\nmin_version = \"five\"\n", "invalid version \"five\""),
            ("[checks.io_scheduler]\nallowed = []\n", "must list at least one name"),
            (
                "[checks.device_errors]\nignore = [\"ata_media\", \"bogus\"]\n",
                "unknown kernel log class \"bogus\"",
            ),
            ("[checks.filesystem]\nallowed = \"xfs\"\n", "invalid type: string \"xfs\", expected a sequence"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with("config file x.toml: "), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn versions_and_sizes() {
        assert_eq!(parse_version("6.18.44-fc-v669"), Some((6, 18, 44)));
        assert_eq!(parse_version("5.4"), Some((5, 4, 0)));
        assert_eq!(parse_version("4.19.0-26-amd64"), Some((4, 19, 0)));
        assert_eq!(parse_version("6"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("99999999999 TiB"), None);
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn never_panics_near_valid(text in "(\\[checks(\\.(storage_latency|writeback|resources|kernel))?\\]\n|enabled = (true|1)\n|(max|min_memory|min_version) = \"[0-9a-zA-Z. ]{0,6}\"\n|(dirty_ratio|min_cpus) = -?[0-9]{0,12}\n|[a-z=\" \n]{0,10}){0,6}") {
            let _ = parse(&text);
        }

        #[test]
        fn version_and_size_never_panic(s in "\\PC{0,30}") {
            let _ = (parse_version(&s), parse_size(&s));
        }
    }
}
