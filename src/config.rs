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
    pub fabric: Fabric,
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
    pub nvme_health: NvmeHealthCheck,
    pub sata_health: SataHealthCheck,
    pub thermal: ThermalCheck,
    pub io_scheduler: SchedulerCheck,
    pub writeback: WritebackCheck,
    pub filesystem: FilesystemCheck,
    pub kernel: KernelCheck,
    pub resources: ResourcesCheck,
    pub network_bandwidth: NetworkBandwidthCheck,
    pub packet_loss: PacketLossCheck,
    pub docker_engine: DockerEngineCheck,
    pub capacity: CapacityCheck,
    pub mounts: MountsCheck,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyCheck {
    pub enabled: bool,
    /// Mean read and write latency per device over the window must stay below this.
    #[serde(deserialize_with = "positive_duration")]
    pub max: Duration,
    /// Judge the window's p99 from the eBPF latency histograms (biolatency collector) for an
    /// operation they saw requests of; false: always the diskstats mean.
    pub p99: bool,
}

impl Default for LatencyCheck {
    fn default() -> Self {
        LatencyCheck { enabled: true, max: Duration::from_millis(5), p99: true }
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

/// NVMe health from the controller's SMART log.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NvmeHealthCheck {
    pub enabled: bool,
    /// A rise of the media error count within this window fails the controller.
    #[serde(deserialize_with = "positive_duration")]
    pub window: Duration,
}

impl Default for NvmeHealthCheck {
    fn default() -> Self {
        NvmeHealthCheck { enabled: true, window: Duration::from_secs(15 * 60) }
    }
}

/// SATA / SCSI disk health from SMART (SG_IO) and the SCSI iostat counters.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SataHealthCheck {
    pub enabled: bool,
    /// A rise of a failure-relevant SMART attribute, or a new I/O error or timeout, within this
    /// window fails the disk.
    #[serde(deserialize_with = "positive_duration")]
    pub window: Duration,
}

impl Default for SataHealthCheck {
    fn default() -> Self {
        SataHealthCheck { enabled: true, window: Duration::from_secs(15 * 60) }
    }
}

/// Drive temperatures and thermal throttling.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ThermalCheck {
    pub enabled: bool,
    /// A thermal-management transition within this window fails the controller.
    #[serde(deserialize_with = "positive_duration")]
    pub window: Duration,
    /// °C; the limit for a drive that reports no warning temperature of its own (WCTEMP 0).
    #[serde(deserialize_with = "temperature")]
    pub max_temperature: u32,
}

impl Default for ThermalCheck {
    fn default() -> Self {
        ThermalCheck { enabled: true, window: Duration::from_secs(15 * 60), max_temperature: 70 }
    }
}

fn temperature<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .ok()
        .filter(|v| (1..=150).contains(v))
        .ok_or_else(|| serde::de::Error::custom(format!("{v} is not a temperature from 1 to 150 °C")))
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

/// The storage fabric: interfaces, targets and the active probe (`[fabric]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Fabric {
    /// Fabric interfaces; empty: every physical interface.
    #[serde(deserialize_with = "interface_names")]
    pub interfaces: Vec<String>,
    /// Storage targets as `ip:port` (`[v6]:port` for IPv6).
    #[serde(deserialize_with = "socket_addrs")]
    pub targets: Vec<std::net::SocketAddr>,
    /// Remote ports whose established connections are storage targets (3260 iSCSI, 2049 NFS,
    /// 6789 and 3300 Ceph monitors, 6800-7300 Ceph OSDs): numbers or `"a-b"` ranges.
    #[serde(deserialize_with = "port_ranges")]
    pub ports: Vec<(u16, u16)>,
    pub probe: Probe,
}

impl Default for Fabric {
    fn default() -> Self {
        Fabric {
            interfaces: Vec::new(),
            targets: Vec::new(),
            ports: vec![(3260, 3260), (2049, 2049), (6789, 6789), (3300, 3300), (6800, 7300)],
            probe: Probe::default(),
        }
    }
}

impl Fabric {
    /// Whether `port` is one of the storage ports.
    pub fn storage_port(&self, port: u16) -> bool {
        self.ports.iter().any(|(a, b)| (*a..=*b).contains(&port))
    }
}

/// The active probe: a TCP connect to each configured target every `interval`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Probe {
    pub enabled: bool,
    #[serde(deserialize_with = "positive_duration")]
    pub interval: Duration,
    /// A connect not completed in this time is a lost probe. Below 1 s (the kernel's initial
    /// SYN retransmission timeout), a lost SYN or SYN-ACK makes a lost probe.
    #[serde(deserialize_with = "positive_duration")]
    pub timeout: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        Probe { enabled: true, interval: Duration::from_secs(5), timeout: Duration::from_millis(500) }
    }
}

fn interface_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    // IFNAMSIZ is 16 with the NUL; the kernel refuses '/', ':' and whitespace in names.
    if let Some(bad) = v.iter().find(|n| {
        n.is_empty() || n.len() > 15 || n.contains(['/', ':']) || n.chars().any(char::is_whitespace)
    }) {
        return Err(serde::de::Error::custom(format!("{bad:?} is not a network interface name")));
    }
    Ok(v)
}

fn socket_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<std::net::SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| match s.parse::<std::net::SocketAddr>() {
            Ok(a) if a.port() != 0 => Ok(a),
            _ => Err(serde::de::Error::custom(format!(
                "invalid target {s:?}; write it as ip:port, like \"10.0.0.5:3260\" or \"[fd00::5]:3260\""
            ))),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortItem {
    Port(i64),
    Range(String),
}

/// One port (`3260`) or an inclusive range (`"6800-7300"`).
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
    (a > 0 && a <= b).then_some((a, b))
}

fn port_ranges<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u16, u16)>, D::Error> {
    Vec::<PortItem>::deserialize(d)?
        .into_iter()
        .map(|item| {
            let parsed = match &item {
                PortItem::Port(p) => u16::try_from(*p).ok().filter(|p| *p > 0).map(|p| (p, p)),
                PortItem::Range(s) => parse_port_range(s),
            };
            parsed.ok_or_else(|| {
                let shown = match item {
                    PortItem::Port(p) => p.to_string(),
                    PortItem::Range(s) => format!("{s:?}"),
                };
                serde::de::Error::custom(format!(
                    "invalid port {shown}; write a port from 1 to 65535 or a range like \"6800-7300\""
                ))
            })
        })
        .collect()
}

/// Link speed of the fabric interfaces.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkBandwidthCheck {
    pub enabled: bool,
    /// Least link speed, Mb/s (the manual's 10 Gbps).
    #[serde(deserialize_with = "positive_count")]
    pub min_speed_mbps: u32,
    /// Whether an interface that is up but reports no speed (virtio, bridges, bonds without
    /// slaves: sysfs `speed` -1 or EINVAL) fails; by default it is reported and passes.
    pub fail_unknown_speed: bool,
}

impl Default for NetworkBandwidthCheck {
    fn default() -> Self {
        NetworkBandwidthCheck { enabled: true, min_speed_mbps: 10_000, fail_unknown_speed: false }
    }
}

/// Loss on the storage fabric: each ratio over the window must be at most its bound.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PacketLossCheck {
    pub enabled: bool,
    /// (errors + drops) / (packets + errors + drops) of a fabric interface, both directions.
    #[serde(deserialize_with = "ratio")]
    pub max_interface_loss: f64,
    /// Retransmitted / sent segments of a target's connections.
    #[serde(deserialize_with = "ratio")]
    pub max_retransmit_ratio: f64,
    /// Failed / attempted probes of a target.
    #[serde(deserialize_with = "ratio")]
    pub max_probe_loss: f64,
}

impl Default for PacketLossCheck {
    fn default() -> Self {
        PacketLossCheck {
            enabled: true,
            max_interface_loss: 0.001,
            max_retransmit_ratio: 0.01,
            max_probe_loss: 0.0,
        }
    }
}

/// The Docker engine: version in a range, storage driver (the manual's 20.10.x to 25.0.x, overlay2).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DockerEngineCheck {
    pub enabled: bool,
    /// The oldest engine version allowed, e.g. "20.10".
    #[serde(deserialize_with = "version")]
    pub min_version: (u32, u32, u32),
    /// The newest allowed: "25.0" allows every 25.0.x; "25.0.3" allows up to 25.0.3.
    #[serde(deserialize_with = "version_upper")]
    pub max_version: (u32, u32, u32),
    /// Storage drivers allowed (`docker info` Driver).
    #[serde(deserialize_with = "non_empty_names")]
    pub storage_drivers: Vec<String>,
}

impl Default for DockerEngineCheck {
    fn default() -> Self {
        DockerEngineCheck {
            enabled: true,
            min_version: (20, 10, 0),
            max_version: (25, 0, u32::MAX),
            storage_drivers: vec!["overlay2".into()],
        }
    }
}

/// Free space on the filesystem of the Docker data root and of each local volume.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityCheck {
    pub enabled: bool,
    /// Space available to unprivileged writers, as a share of the filesystem's size.
    #[serde(deserialize_with = "ratio")]
    pub min_free_ratio: f64,
    /// And at least this much, e.g. "10GiB" ("0B": the ratio alone).
    #[serde(deserialize_with = "size")]
    pub min_free: u64,
}

impl Default for CapacityCheck {
    fn default() -> Self {
        CapacityCheck { enabled: true, min_free_ratio: 0.1, min_free: 0 }
    }
}

/// Container volume mounts: read-only ones and volumes shared by several containers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MountsCheck {
    pub enabled: bool,
    /// Volumes that may be mounted read-only (configuration volumes); a read-only mount of any
    /// other volume fails.
    #[serde(deserialize_with = "volume_names")]
    pub allow_read_only: Vec<String>,
    /// Whether a volume mounted by more than one container fails (by default it is reported and
    /// passes).
    pub fail_shared: bool,
}

impl Default for MountsCheck {
    fn default() -> Self {
        MountsCheck { enabled: true, allow_read_only: Vec::new(), fail_shared: false }
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
        return Err(serde::de::Error::custom(format!("{bad:?} is not a Docker volume name")));
    }
    Ok(v)
}

fn version_upper<'de, D: Deserializer<'de>>(d: D) -> Result<(u32, u32, u32), D::Error> {
    let s = String::deserialize(d)?;
    let v = parse_version(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("invalid version {s:?}; write it like \"25.0\"")))?;
    // "25.0" means the whole 25.0.x series.
    let with_patch = s.trim().split(|c: char| !c.is_ascii_digit() && c != '.').next().unwrap_or("");
    Ok(if with_patch.split('.').filter(|p| !p.is_empty()).count() < 3 { (v.0, v.1, u32::MAX) } else { v })
}

fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!("{v} is not a ratio from 0 to 1")))
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
        assert_eq!(
            c.checks.storage_latency,
            LatencyCheck { enabled: false, max: Duration::from_millis(20), p99: true }
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
        let d = Fabric::default();
        assert!([3260, 2049, 6789, 3300, 6800, 7300].iter().all(|p| d.storage_port(*p)));
        assert_eq!(parse_port_range("1-1"), Some((1, 1)));
        assert_eq!(parse_port_range("x"), None);
    }

    #[test]
    fn sata_values() {
        let c = parse("[checks.sata_health]\nwindow = \"30m\"\n").unwrap();
        assert_eq!(
            c.checks.sata_health,
            SataHealthCheck { enabled: true, window: Duration::from_secs(1800) }
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
            NvmeHealthCheck { enabled: true, window: Duration::from_secs(3600) }
        );
        assert_eq!((c.checks.thermal.enabled, c.checks.thermal.max_temperature), (false, 55));
        assert_eq!(c.checks.thermal.window, Duration::from_secs(900));
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
            let _ = (parse_version(&s), parse_size(&s), parse_port_range(&s));
        }
    }
}
