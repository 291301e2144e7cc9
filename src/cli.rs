//! Command-line flags, named as the Prometheus exporters name theirs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeMap;

use clap::{Arg, ArgAction, Parser, ValueEnum};
use regex::Regex;

use crate::paths::Paths;
use crate::report::Output as ReportFormat;
use crate::sources::{DEFAULT_EXCLUDE, DeviceFilter, REGISTRY, docker};

const ABOUT: &str = "Storage health agent: disk latency and IOPS, judged against the operations \
manual's thresholds, exported for Prometheus. Runs on its built-in defaults with no arguments.";

#[derive(Debug, Parser)]
#[command(
    name = "storwatch",
    version = concat!(env!("CARGO_PKG_VERSION"), " (revision ", env!("STORWATCH_REVISION"), ")"),
    about = ABOUT,
    after_help = after_help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Subcommand>,

    /// Address to listen on for HTTP: host:port, or :port for every interface. Repeat it to
    /// listen on several addresses.
    #[arg(long = "web.listen-address", value_name = "ADDR", default_value = ":9747", value_parser = parse_listen, action = ArgAction::Append)]
    pub listen: Vec<ListenAddr>,

    /// Use the sockets systemd passes (socket activation, a storwatch.socket unit) instead of
    /// listening on --web.listen-address, which is then ignored.
    #[arg(long = "web.systemd-socket")]
    pub systemd_socket: bool,

    /// Path under which the metrics are exposed.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub telemetry_path: String,

    /// Prometheus exporter-toolkit web configuration (YAML): TLS, basic auth users with bcrypt
    /// hashes, extra security headers. See README "Running in production".
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Scrapes of the telemetry path served at once; more are answered 503. 0 means no limit.
    #[arg(long = "web.max-requests", value_name = "N", default_value = "40")]
    pub max_requests: usize,

    /// Connections open at once; beyond it new clients wait in the kernel's accept queue.
    #[arg(long = "web.max-connections", value_name = "N", default_value = "4096", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Time a client has to send its request headers (and finish the TLS handshake) before the
    /// connection is closed: slow clients cannot hold connections.
    #[arg(long = "web.read-header-timeout", value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    pub read_header_timeout: Duration,

    /// Lifetime of a connection, keep-alive included: its next response says `Connection: close`
    /// and the connection ends with it; one that sends no request within --web.read-header-timeout
    /// after its lifetime (or does not read its response in that time) is closed.
    #[arg(long = "web.connection-timeout", value_name = "DURATION", default_value = "2m", value_parser = parse_interval)]
    pub connection_timeout: Duration,

    /// Optional TOML file with check thresholds; without it the spec's defaults apply.
    #[arg(long = "config.file", value_name = "FILE", global = true)]
    pub config_file: Option<PathBuf>,

    /// procfs mount point.
    #[arg(long = "path.procfs", value_name = "DIR", default_value = "/proc", global = true)]
    pub procfs: PathBuf,

    /// sysfs mount point.
    #[arg(long = "path.sysfs", value_name = "DIR", default_value = "/sys", global = true)]
    pub sysfs: PathBuf,

    /// Root filesystem of the host (for running in a container with the host mounted, e.g. /host).
    #[arg(long = "path.rootfs", value_name = "DIR", default_value = "/", global = true)]
    pub rootfs: PathBuf,

    /// Device directory (kernel log and device nodes).
    #[arg(long = "path.dev", value_name = "DIR", default_value = "/dev", global = true)]
    pub dev: PathBuf,

    /// Regex of block devices to include. When set, the default exclude regex no longer applies.
    #[arg(long = "collector.diskstats.device-include", value_name = "REGEX", global = true)]
    pub diskstats_include: Option<Regex>,

    /// Regex of block devices to exclude [default: partitions, loop, ram, zram, fd: see README].
    #[arg(long = "collector.diskstats.device-exclude", value_name = "REGEX", global = true)]
    pub diskstats_exclude: Option<Regex>,

    /// The Docker engine's unix socket [default: <path.rootfs>/var/run/docker.sock].
    #[arg(long = "collector.docker.socket", value_name = "PATH", global = true)]
    pub docker_socket: Option<PathBuf>,

    /// Also read each volume's size (GET /system/df: the engine walks every volume; expensive).
    #[arg(long = "collector.docker.volume-sizes", global = true)]
    pub docker_volume_sizes: bool,

    #[command(flatten)]
    pub collectors: CollectorArgs,

    /// Only log messages at this level or above.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info", global = true)]
    pub log_level: LogLevel,

    /// Log format.
    #[arg(long = "log.format", value_name = "FORMAT", default_value = "logfmt", global = true)]
    pub log_format: LogFormat,
}

/// The note under the flags, naming every collector from the registry.
fn after_help() -> String {
    let names: Vec<&str> = REGISTRY.iter().map(|s| s.name).collect();
    format!(
        "Collector flags (--collector.<name>, --no-collector.<name>, --collector.<name>.interval) exist for: {}. \
         The device filter applies to diskstats, queue, sata and biolatency.",
        names.join(", ")
    )
}

#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Take two samples over --window, evaluate every check once and print a report. Exit status:
    /// 0 when every check passes, 1 when any fails, 2 on an error (bad flags or config, a
    /// collector that could not read its source).
    Check {
        /// Time between the two samples; rates and latencies cover this window.
        #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_interval)]
        window: Duration,
        /// Report format.
        #[arg(long, value_name = "FORMAT", default_value = "table")]
        output: ReportFormat,
    },
}

/// Per collector: enabled or not, and its interval. The flags are made from the registry.
#[derive(Debug, Clone, Default)]
pub struct CollectorArgs {
    pub enabled: BTreeMap<&'static str, bool>,
    pub intervals: BTreeMap<&'static str, Duration>,
}

/// The flag that turns every collector off unless it is named with `--collector.<name>`.
const DISABLE_DEFAULTS: &str = "collector.disable-defaults";

impl clap::Args for CollectorArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.arg(
            Arg::new(DISABLE_DEFAULTS)
                .long(DISABLE_DEFAULTS)
                .action(ArgAction::SetTrue)
                .global(true)
                .help("Disable every collector by default; only those named with --collector.<name> run"),
        );
        REGISTRY.iter().fold(cmd, |cmd, spec| {
            let (on, off, every) = (
                format!("collector.{}", spec.name),
                format!("no-collector.{}", spec.name),
                format!("collector.{}.interval", spec.name),
            );
            cmd.arg(
                Arg::new(on.clone())
                    .long(on)
                    .action(ArgAction::SetTrue)
                    .overrides_with(off.clone())
                    .global(true)
                    .help(format!(
                        "Enable the {} collector (default: enabled, unless --collector.disable-defaults): {}",
                        spec.name, spec.help
                    )),
            )
            .arg(
                Arg::new(off.clone())
                    .long(off)
                    .action(ArgAction::SetTrue)
                    .global(true)
                    .help(format!("Disable the {} collector", spec.name)),
            )
            .arg(
                Arg::new(every.clone())
                    .long(every)
                    .value_name("DURATION")
                    .default_value(spec.interval)
                    .value_parser(parse_interval)
                    .global(true)
                    .help(format!("How often the {} collector samples", spec.name)),
            )
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for CollectorArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = CollectorArgs::default();
        // As node_exporter: the last of --collector.<name> and --no-collector.<name> wins (each
        // overrides the other); a collector named by neither is on unless defaults are disabled.
        let default = !m.get_flag(DISABLE_DEFAULTS);
        for spec in REGISTRY {
            let (on, off) = (
                m.get_flag(&format!("collector.{}", spec.name)),
                m.get_flag(&format!("no-collector.{}", spec.name)),
            );
            args.enabled.insert(spec.name, on || (default && !off));
            let every = m.get_one::<Duration>(&format!("collector.{}.interval", spec.name)).copied();
            args.intervals.insert(spec.name, every.unwrap_or(Duration::from_secs(60)));
        }
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
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

    /// The enabled collectors (sources) with their intervals, in registry order.
    pub fn enabled_collectors(&self) -> Vec<(&'static str, Duration)> {
        REGISTRY
            .iter()
            .filter(|s| self.collectors.enabled[s.name])
            .map(|s| (s.name, self.collectors.intervals[s.name]))
            .collect()
    }

    pub fn docker_options(&self) -> docker::Options {
        docker::Options { socket: self.docker_socket.clone(), volume_sizes: self.docker_volume_sizes }
    }

    /// The default exclude regex applies only when neither regex was given.
    pub fn diskstats_filter(&self) -> DeviceFilter {
        let exclude = match (&self.diskstats_include, &self.diskstats_exclude) {
            (_, Some(e)) => Some(e.clone()),
            (Some(_), None) => None,
            (None, None) => Some(Regex::new(DEFAULT_EXCLUDE).expect("default regex is valid")),
        };
        DeviceFilter::new(self.diskstats_include.clone(), exclude)
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
        assert_eq!(c.listen, [ListenAddr::AnyHost(9747)]);
        assert!(!c.systemd_socket);
        let enabled = c.enabled_collectors();
        assert_eq!(
            enabled,
            [
                ("diskstats", Duration::from_secs(5)),
                ("kmsg", Duration::from_secs(5)),
                ("queue", Duration::from_secs(60)),
                ("host", Duration::from_secs(60)),
                ("fabric", Duration::from_secs(15)),
                ("nvme", Duration::from_secs(60)),
                ("sata", Duration::from_secs(60)),
                ("hwmon", Duration::from_secs(15)),
                ("docker", Duration::from_secs(30)),
                ("biolatency", Duration::from_secs(15))
            ]
        );
        assert!(c.command.is_none());
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
        assert_eq!(c.listen, [ListenAddr::Addr("127.0.0.1:0".parse().unwrap())]);
        assert_eq!(
            c.enabled_collectors().iter().map(|c| c.0).collect::<Vec<_>>(),
            ["kmsg", "queue", "host", "fabric", "nvme", "sata", "hwmon", "docker", "biolatency"]
        );
        let f = c.diskstats_filter();
        assert!(f.matches("loop3") && !f.matches("sda"));
        let c = cli(&["--no-collector.diskstats", "--collector.diskstats", "--collector.host.interval=2m"])
            .unwrap();
        assert_eq!(c.enabled_collectors()[0].0, "diskstats");
        assert_eq!(c.enabled_collectors()[3], ("host", Duration::from_secs(120)));
        let c = cli(&["check", "--window=1s", "--output=json", "--path.procfs=/x", "--no-collector.queue"])
            .unwrap();
        assert!(
            matches!(c.command, Some(Subcommand::Check { window, output: ReportFormat::Json }) if window == Duration::from_secs(1))
        );
        assert_eq!(c.procfs, PathBuf::from("/x"));
        assert_eq!(c.enabled_collectors().len(), 9);
    }

    #[test]
    fn repeated_listen_addresses_replace_the_default() {
        let c =
            cli(&["--web.listen-address=127.0.0.1:1", "--web.listen-address", ":2", "--web.systemd-socket"])
                .unwrap();
        assert_eq!(c.listen, [ListenAddr::Addr("127.0.0.1:1".parse().unwrap()), ListenAddr::AnyHost(2)]);
        assert!(c.systemd_socket);
    }

    #[test]
    fn disable_defaults_runs_only_the_named_collectors() {
        let names =
            |args: &[&str]| cli(args).unwrap().enabled_collectors().iter().map(|c| c.0).collect::<Vec<_>>();
        assert!(names(&["--collector.disable-defaults"]).is_empty());
        assert_eq!(
            names(&["--collector.disable-defaults", "--collector.host", "--collector.kmsg"]),
            ["kmsg", "host"]
        );
        // The last of --collector.<name> and --no-collector.<name> wins, as in node_exporter.
        assert_eq!(
            names(&["--collector.disable-defaults", "--collector.host", "--no-collector.host"]),
            [""; 0]
        );
        assert_eq!(
            names(&["--collector.disable-defaults", "--no-collector.host", "--collector.host"]),
            ["host"]
        );
        assert_eq!(names(&["--collector.host", "--no-collector.host"]).len(), 9);
        // Global: after the subcommand too.
        assert_eq!(names(&["check", "--collector.disable-defaults", "--collector.queue"]), ["queue"]);
    }

    #[test]
    fn help_names_every_collector_of_the_registry() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for spec in REGISTRY {
            assert!(help.contains(&format!("--collector.{}.interval", spec.name)), "{}", spec.name);
            assert!(after_help().contains(spec.name), "{}", spec.name);
        }
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
            &["check", "--output=yaml"],
            &["--collector.queue.interval=1ms"],
        ] {
            assert!(cli(args).is_err(), "{args:?}");
        }
    }
}
