//! Command-line flags, named as the Prometheus exporters name theirs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use regex::Regex;

use crate::collectors::diskstats::DEFAULT_EXCLUDE;
use crate::paths::Paths;

const ABOUT: &str = "Storage health agent: disk latency and IOPS, judged against the operations \
manual's thresholds, exported for Prometheus. Runs on its built-in defaults with no arguments.";

#[derive(Debug, Parser)]
#[command(name = "storwatch", version = concat!(env!("CARGO_PKG_VERSION"), " (revision ", env!("STORWATCH_REVISION"), ")"), about = ABOUT)]
pub struct Cli {
    /// Address to listen on for HTTP: host:port, or :port for every interface.
    #[arg(long = "web.listen-address", value_name = "ADDR", default_value = ":9747", value_parser = parse_listen)]
    pub listen: ListenAddr,

    /// Path under which the metrics are exposed.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub telemetry_path: String,

    /// Optional TOML file with check thresholds; without it the spec's defaults apply.
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// procfs mount point.
    #[arg(long = "path.procfs", value_name = "DIR", default_value = "/proc")]
    pub procfs: PathBuf,

    /// sysfs mount point.
    #[arg(long = "path.sysfs", value_name = "DIR", default_value = "/sys")]
    pub sysfs: PathBuf,

    /// Root filesystem of the host (for running in a container with the host mounted, e.g. /host).
    #[arg(long = "path.rootfs", value_name = "DIR", default_value = "/")]
    pub rootfs: PathBuf,

    /// Device directory (kernel log and device nodes).
    #[arg(long = "path.dev", value_name = "DIR", default_value = "/dev")]
    pub dev: PathBuf,

    /// Enable the diskstats collector (default: enabled).
    #[arg(long = "collector.diskstats", overrides_with = "no_diskstats")]
    pub diskstats: bool,

    /// Disable the diskstats collector.
    #[arg(long = "no-collector.diskstats")]
    pub no_diskstats: bool,

    /// How often the diskstats collector samples; the rate and latency gauges cover this window.
    #[arg(long = "collector.diskstats.interval", value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    pub diskstats_interval: Duration,

    /// Regex of devices to include. When set, the default exclude regex no longer applies.
    #[arg(long = "collector.diskstats.device-include", value_name = "REGEX")]
    pub diskstats_include: Option<Regex>,

    /// Regex of devices to exclude [default: partitions, loop, ram, zram, fd: see README].
    #[arg(long = "collector.diskstats.device-exclude", value_name = "REGEX")]
    pub diskstats_exclude: Option<Regex>,

    /// Only log messages at this level or above.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info")]
    pub log_level: LogLevel,

    /// Log format.
    #[arg(long = "log.format", value_name = "FORMAT", default_value = "logfmt")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Logfmt,
    /// One JSON object a line.
    Json,
}

/// Where to listen: `:port` binds every interface (IPv6 dual-stack where available).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    AnyHost(u16),
    Addr(SocketAddr),
}

fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    if let Some(port) = s.strip_prefix(':') {
        return port.parse().map(ListenAddr::AnyHost).map_err(|_| format!("invalid port {port:?}"));
    }
    if let Ok(a) = s.parse() {
        return Ok(ListenAddr::Addr(a));
    }
    // host:port with a name, e.g. localhost:9747.
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(ListenAddr::Addr)
        .ok_or_else(|| format!("{s:?} is not host:port or :port"))
}

fn parse_telemetry_path(s: &str) -> Result<String, String> {
    match s {
        "/" => Err("\"/\" serves the landing page; choose another path".into()),
        s if s.starts_with('/') => Ok(s.to_owned()),
        _ => Err("must start with \"/\"".into()),
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_millis(100) => Ok(d),
        Ok(_) => Err("must be at least 100ms".into()),
        Err(e) => Err(format!("{e}; write it like \"5s\"")),
    }
}

impl Cli {
    pub fn paths(&self) -> Paths {
        Paths {
            procfs: self.procfs.clone(),
            sysfs: self.sysfs.clone(),
            rootfs: self.rootfs.clone(),
            dev: self.dev.clone(),
        }
    }

    pub fn diskstats_enabled(&self) -> bool {
        !self.no_diskstats
    }

    /// The default exclude regex applies only when neither regex was given.
    pub fn diskstats_filter(&self) -> crate::collectors::DeviceFilter {
        let exclude = match (&self.diskstats_include, &self.diskstats_exclude) {
            (_, Some(e)) => Some(e.clone()),
            (Some(_), None) => None,
            (None, None) => Some(Regex::new(DEFAULT_EXCLUDE).expect("default regex is valid")),
        };
        crate::collectors::DeviceFilter::new(self.diskstats_include.clone(), exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("storwatch").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = cli(&[]).unwrap();
        assert_eq!(c.listen, ListenAddr::AnyHost(9747));
        assert!(c.diskstats_enabled());
        assert_eq!(c.diskstats_interval, Duration::from_secs(5));
        let f = c.diskstats_filter();
        assert!(f.matches("sda") && !f.matches("sda1") && !f.matches("loop0"));
    }

    #[test]
    fn flags() {
        let c = cli(&[
            "--web.listen-address=127.0.0.1:0",
            "--no-collector.diskstats",
            "--collector.diskstats.device-include=^loop",
        ])
        .unwrap();
        assert_eq!(c.listen, ListenAddr::Addr("127.0.0.1:0".parse().unwrap()));
        assert!(!c.diskstats_enabled());
        let f = c.diskstats_filter();
        assert!(f.matches("loop3") && !f.matches("sda"));
        let c = cli(&["--no-collector.diskstats", "--collector.diskstats"]).unwrap();
        assert!(c.diskstats_enabled());
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--web.listen-address=nohost"][..],
            &["--web.listen-address=:99999"],
            &["--collector.diskstats.device-include=("],
            &["--collector.diskstats.interval=10ms"],
            &["--collector.diskstats.interval=soon"],
            &["--web.telemetry-path=metrics"],
            &["--log.format=xml"],
        ] {
            assert!(cli(args).is_err(), "{args:?}");
        }
    }
}
