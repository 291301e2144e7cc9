//! The optional TOML config file: `[checks.<name>]` (each check's section is its own module's
//! `Config`, in `crate::checks`), `[filesystems]` and `[fabric]` (the sources' settings). Its
//! defaults are the spec's thresholds, so no file is needed; an unknown key, a wrong type or a bad
//! value is an error naming the file, line, column, key and problem.
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

use serde::Deserialize;

use crate::checks;
use crate::sources::{fabric, host};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub checks: checks::Config,
    pub filesystems: Filesystems,
    pub fabric: fabric::Config,
}

/// Paths whose filesystem is reported and judged: the Docker data root and volume paths.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Filesystems {
    pub paths: Vec<PathBuf>,
}

impl Default for Filesystems {
    fn default() -> Self {
        Filesystems { paths: host::default_watched() }
    }
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
    use std::time::Duration;

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
        assert_eq!(
            c.checks.storage_latency,
            checks::storage_latency::Config { enabled: false, max: Duration::from_millis(20), p99: true }
        );
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
            (
                "[fabric]\ntargets = [\"10.0.0.5:3260\", \"nas:2049\"]\n",
                "line 2, column 11, key fabric.targets: invalid target \"nas:2049\"",
            ),
            ("[fabric]\ntargets = [\"10.0.0.5\"]\n", "invalid target \"10.0.0.5\""),
            ("[fabric]\ntargets = [\"10.0.0.5:0\"]\n", "invalid target \"10.0.0.5:0\""),
            ("[fabric]\nports = [3260, \"7300-6800\"]\n", "key fabric.ports: invalid port \"7300-6800\""),
            ("[fabric]\nports = [70000]\n", "key fabric.ports: invalid port 70000"),
            ("[fabric]\nports = [\"0-10\"]\n", "invalid port \"0-10\""),
            (
                "[fabric]\ninterfaces = [\"eth 0\"]\n",
                "key fabric.interfaces: \"eth 0\" is not a network interface name",
            ),
            (
                "[fabric.probe]\ntimeout = \"0s\"\n",
                "key fabric.probe.timeout: duration must be greater than zero",
            ),
            ("[fabric.probe]\nintervall = \"1s\"\n", "key fabric.probe.intervall: unknown field"),
            (
                "[checks.packet_loss]\nmax_retransmit_ratio = 1.5\n",
                "key checks.packet_loss.max_retransmit_ratio: 1.5 is not a ratio",
            ),
            ("[checks.packet_loss]\nmax_probe_loss = -0.1\n", "-0.1 is not a ratio"),
            (
                "[checks.nvme_health]\nwindow = \"soon\"\n",
                "line 2, column 10, key checks.nvme_health.window: invalid duration \"soon\"",
            ),
            ("[checks.nvme_health]\nmax = 3\n", "key checks.nvme_health.max: unknown field `max`"),
            (
                "[checks.thermal]\nmax_temperature = 200\n",
                "line 2, column 19, key checks.thermal.max_temperature: 200 is not a temperature",
            ),
            (
                "[checks.thermal]\nmax_temperature = \"70C\"\n",
                "key checks.thermal.max_temperature: invalid type",
            ),
            (
                "[checks.thermal]\nwindow = \"0s\"\n",
                "key checks.thermal.window: duration must be greater than zero",
            ),
            (
                "[checks.network_bandwidth]\nmin_speed_mbps = 0\n",
                "key checks.network_bandwidth.min_speed_mbps: 0 must be",
            ),
            (
                "[checks.docker_engine]\nmax_version = \"latest\"\n",
                "line 2, column 15, key checks.docker_engine.max_version: invalid version \"latest\"",
            ),
            (
                "[checks.docker_engine]\nstorage_drivers = []\n",
                "key checks.docker_engine.storage_drivers: must list",
            ),
            (
                "[checks.docker_engine]\nmin_versions = \"20.10\"\n",
                "key checks.docker_engine.min_versions: unknown field",
            ),
            (
                "[checks.capacity]\nmin_free_ratio = 10\n",
                "line 2, column 18, key checks.capacity.min_free_ratio: 10 is not a ratio",
            ),
            (
                "[checks.capacity]\nmin_free = \"10GB\"\n",
                "key checks.capacity.min_free: invalid size \"10GB\"",
            ),
            (
                "[checks.mounts]\nallow_read_only = [\"conf\", \"/etc\"]\n",
                "key checks.mounts.allow_read_only: \"/etc\" is not a Docker volume name",
            ),
            ("[checks.mounts]\nfail_shared = \"yes\"\n", "key checks.mounts.fail_shared: invalid type"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with("config file x.toml: "), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn docker_values() {
        let d = Config::default().checks;
        assert_eq!(
            (d.docker_engine.min_version, d.docker_engine.max_version),
            ((20, 10, 0), (25, 0, u32::MAX))
        );
        assert_eq!(d.docker_engine.storage_drivers, ["overlay2"]);
        assert_eq!((d.capacity.min_free_ratio, d.capacity.min_free), (0.1, 0));
        assert!(d.mounts.enabled && d.mounts.allow_read_only.is_empty() && !d.mounts.fail_shared);
        let c = parse(
            "[checks.docker_engine]\nmin_version = \"19.03\"\nmax_version = \"28.2.2\"\n\
             [checks.capacity]\nmin_free_ratio = 0.2\nmin_free = \"10GiB\"\n\
             [checks.mounts]\nallow_read_only = [\"app-config\", \"x\"]\nfail_shared = true\n",
        )
        .unwrap()
        .checks;
        assert_eq!((c.docker_engine.min_version, c.docker_engine.max_version), ((19, 3, 0), (28, 2, 2)));
        assert_eq!((c.capacity.min_free_ratio, c.capacity.min_free), (0.2, 10 << 30));
        assert_eq!(c.mounts.allow_read_only, ["app-config", "x"]);
        assert!(c.mounts.fail_shared);
        let c = parse("[checks.docker_engine]\nmax_version = \"28\"\n");
        assert!(c.unwrap_err().contains("invalid version \"28\""));
        let c = parse("[checks.docker_engine]\nmax_version = \"28.1-rc\"\n").unwrap();
        assert_eq!(c.checks.docker_engine.max_version, (28, 1, u32::MAX));
    }

    #[test]
    fn fabric_values() {
        let c = parse(
            "[fabric]\ninterfaces = [\"veth0\"]\ntargets = [\"10.0.0.5:3260\", \"[fd00::5]:2049\"]\n\
             ports = [3260, \"6800-7300\"]\n[fabric.probe]\nenabled = false\ninterval = \"1s\"\n\
             [checks.packet_loss]\nmax_probe_loss = 0.1\nmax_retransmit_ratio = 0\n",
        )
        .unwrap();
        let f = &c.fabric;
        assert_eq!(f.interfaces, ["veth0"]);
        assert_eq!(f.targets[1].to_string(), "[fd00::5]:2049");
        assert_eq!(f.ports, [(3260, 3260), (6800, 7300)]);
        assert!(f.storage_port(7000) && !f.storage_port(7301) && !f.storage_port(2049));
        assert_eq!((f.probe.enabled, f.probe.interval), (false, Duration::from_secs(1)));
        assert_eq!(f.probe.timeout, Duration::from_millis(500));
        assert_eq!(c.checks.packet_loss.max_probe_loss, 0.1);
        assert_eq!(c.checks.packet_loss.max_interface_loss, 0.001);
        let d = fabric::Config::default();
        assert!([3260, 2049, 6789, 3300, 6800, 7300].iter().all(|p| d.storage_port(*p)));
    }

    #[test]
    fn sata_values() {
        let c = parse("[checks.sata_health]\nwindow = \"30m\"\n").unwrap();
        assert_eq!(
            c.checks.sata_health,
            checks::sata_health::Config { enabled: true, window: Duration::from_secs(1800) }
        );
        assert_eq!(Config::default().checks.sata_health.window, Duration::from_secs(900));
        assert!(parse("[checks.sata_health]\nwindow = \"0s\"\n").is_err());
        assert!(parse("[checks.sata_health]\nthreshold = 1\n").is_err());
    }

    #[test]
    fn nvme_values() {
        let c = parse("[checks.nvme_health]\nwindow = \"1h\"\n[checks.thermal]\nenabled = false\nmax_temperature = 55\n")
            .unwrap();
        assert_eq!(
            c.checks.nvme_health,
            checks::nvme_health::Config { enabled: true, window: Duration::from_secs(3600) }
        );
        assert_eq!((c.checks.thermal.enabled, c.checks.thermal.max_temperature), (false, 55));
        assert_eq!(c.checks.thermal.window, Duration::from_secs(900));
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
    }
}
