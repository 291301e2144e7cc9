//! The Docker engine and its volumes, from the Engine API on its unix socket (`http.rs`, a small
//! blocking HTTP/1.1 client; `api.rs`, the JSON answers): engine version and storage driver, the
//! data root and every local volume with the filesystem that holds it (mountinfo, through the host
//! collector's parser) and its free space (statvfs), container volume mounts; and the checks
//! `docker_engine`, `capacity`, `mounts` and `filesystem` on them.
//!
//! An engine that is absent, stopped or answering garbage makes `storwatch_docker_up 0` (the
//! collector itself succeeds: that is its report) and the collector retries with backoff: after
//! the n-th failure in a row it skips the next 2^(n-1) - 1 runs, at most [`MAX_WAIT`] of them.

pub mod api;
pub mod http;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::host::{Mount, mount_of, read_mountinfo};
use super::{CollectError, Collector, ErrorKind, Output};
use crate::checks::{self, CheckResult};
use crate::config::Checks;
use crate::metrics::Family;
use crate::paths::Paths;

/// The longest wait between two attempts on a failing engine.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Each API request must finish within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Options from the flags (`--collector.docker.socket`, `--collector.docker.volume-sizes`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The engine's socket; None: `<path.rootfs>/var/run/docker.sock`.
    pub socket: Option<PathBuf>,
    /// Ask `/system/df` for each volume's size (the engine walks every volume: expensive).
    pub volume_sizes: bool,
}

/// What one successful pass read from the engine.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: api::Version,
    pub info: api::Info,
    pub volumes: Vec<api::Volume>,
    pub containers: Vec<api::Container>,
    pub sizes: Option<api::DiskUsage>,
}

/// Space on a filesystem, bytes (statvfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub size: u64,
    pub free: u64,
    pub available: u64,
}

/// statvfs(3) of `path`.
// The block counts and sizes are u64 on 64-bit Linux but narrower on some 32-bit targets.
#[allow(clippy::unnecessary_cast)]
pub fn statvfs(path: &Path) -> io::Result<Space> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path that outlives the call; `st` is valid for writes of a
    // statvfs struct.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let unit = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize } as u64;
    let bytes = |blocks: libc::fsblkcnt_t| (blocks as u64).saturating_mul(unit);
    Ok(Space { size: bytes(st.f_blocks), free: bytes(st.f_bfree), available: bytes(st.f_bavail) })
}

enum Failure {
    /// No socket at the path: no engine on this host.
    Absent,
    Error(CollectError),
}

pub struct Docker {
    paths: Paths,
    interval: Duration,
    socket: PathBuf,
    volume_sizes: bool,
    checks: Checks,
    /// `[filesystems] paths`: their `filesystem` results come from the host collector.
    watched: Vec<PathBuf>,
    failures: u32,
    skip: u64,
}

impl Docker {
    pub fn new(
        paths: Paths,
        interval: Duration,
        options: &Options,
        checks: Checks,
        watched: Vec<PathBuf>,
    ) -> Self {
        let socket = options.socket.clone().unwrap_or_else(|| paths.root("/var/run/docker.sock"));
        Docker {
            paths,
            interval,
            socket,
            volume_sizes: options.volume_sizes,
            checks,
            watched,
            failures: 0,
            skip: 0,
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        let at = |what: String| format!("{} GET {path}: {what}", self.socket.display());
        let response = http::get(&self.socket, path, REQUEST_TIMEOUT).map_err(|e| match e {
            http::RequestError::Io(e) if e.kind() == io::ErrorKind::NotFound => Failure::Absent,
            http::RequestError::Io(e) => {
                let kind = if e.kind() == io::ErrorKind::PermissionDenied {
                    ErrorKind::Permission
                } else {
                    ErrorKind::Io
                };
                Failure::Error(CollectError { kind, message: at(e.to_string()) })
            }
            http::RequestError::Http(e) => {
                Failure::Error(CollectError { kind: ErrorKind::Parse, message: at(e.to_string()) })
            }
        })?;
        if !(200..300).contains(&response.status) {
            let text: String = String::from_utf8_lossy(&response.body).chars().take(120).collect();
            return Err(Failure::Error(CollectError {
                kind: ErrorKind::Io,
                message: at(format!("status {}: {}", response.status, text.trim())),
            }));
        }
        api::parse(&response.body).map_err(|e| {
            Failure::Error(CollectError { kind: ErrorKind::Parse, message: at(format!("invalid JSON: {e}")) })
        })
    }

    fn fetch(&self) -> Result<Snapshot, Failure> {
        let version = self.get("/version")?;
        let info = self.get("/info")?;
        let volumes: api::Volumes = self.get("/volumes")?;
        let containers = self.get("/containers/json?all=1")?;
        let sizes = if self.volume_sizes { Some(self.get("/system/df?type=volume")?) } else { None };
        Ok(Snapshot { version, info, volumes: volumes.volumes, containers, sizes })
    }

    /// After the n-th failure in a row, skip the next 2^(n-1) - 1 runs (at most MAX_WAIT).
    fn back_off(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let most = (MAX_WAIT.as_secs_f64() / self.interval.as_secs_f64()).max(1.0) as u64 - 1;
        self.skip = ((1u64 << self.failures.min(40)) / 2).saturating_sub(1).min(most);
    }
}

fn up(v: f64) -> Family {
    Family::gauge("storwatch_docker_up", "1 when the Docker engine answered the last attempt, 0 when not.")
        .with_value(v)
}

impl Collector for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Result<Output, CollectError> {
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(Output { families: vec![up(0.0)], ..Output::default() });
        }
        match self.fetch() {
            Ok(snapshot) => {
                self.failures = 0;
                let mut errors = Vec::new();
                let mounts = read_mountinfo(&self.paths, &mut errors);
                let (families, results) = report(
                    &snapshot,
                    &self.paths,
                    mounts.as_deref(),
                    &self.checks,
                    &self.watched,
                    &mut errors,
                );
                Ok(Output { families, checks: results, errors })
            }
            Err(failure) => {
                self.back_off();
                let errors = match failure {
                    Failure::Absent => Vec::new(),
                    Failure::Error(e) => vec![e],
                };
                Ok(Output { families: vec![up(0.0)], checks: Vec::new(), errors })
            }
        }
    }
}

/// A path the engine names (data root, volume mountpoint) and what holds it.
struct Place<'a> {
    path: &'a str,
    role: &'static str,
}

/// Maps one snapshot to families and check results. `mounts` is the host's mountinfo.
pub fn report(
    s: &Snapshot,
    paths: &Paths,
    mounts: Option<&[Mount]>,
    c: &Checks,
    watched: &[PathBuf],
    errors: &mut Vec<CollectError>,
) -> (Vec<Family>, Vec<CheckResult>) {
    let mut results = Vec::new();
    let mut engine = Family::info(
        "storwatch_docker_engine_info",
        "The Docker engine: version, API version, storage driver, data root.",
    );
    engine.push(
        [
            ("version", &s.version.version),
            ("api_version", &s.version.api_version),
            ("min_api_version", &s.version.min_api_version),
            ("storage_driver", &s.info.driver),
            ("data_root", &s.info.root_dir),
        ],
        1.0,
    );
    if c.docker_engine.enabled {
        results.extend(checks::docker_engine(&c.docker_engine, &s.version.version, &s.info.driver));
    }

    // Which containers mount each volume, and every mount.
    let mut users: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut writable = Family::gauge(
        "storwatch_docker_container_mount_writable",
        "1 when a container's mount is read-write, 0 when read-only (RW false).",
    );
    let mut states: BTreeMap<&str, u64> =
        ["created", "running", "paused", "restarting", "removing", "exited", "dead"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
    for container in &s.containers {
        let name = container.name();
        *states.entry(container.state.as_str()).or_default() += 1;
        for m in &container.mounts {
            writable.push(
                [
                    ("container", &name),
                    ("type", &m.kind),
                    ("volume", &m.name),
                    ("destination", &m.destination),
                ],
                if m.rw { 1.0 } else { 0.0 },
            );
            if m.kind == "volume" {
                users.entry(m.name.as_str()).or_default().insert(name.clone());
                if !m.rw && c.mounts.enabled {
                    results.push(checks::read_only_mount(&c.mounts, &name, &m.destination, &m.name));
                }
            }
        }
    }
    let mut containers =
        Family::gauge("storwatch_docker_containers", "Containers by state (running and stopped).");
    for (state, n) in &states {
        containers.push([("state", state)], *n as f64);
    }

    let mut volume_info =
        Family::info("storwatch_docker_volume_info", "A volume: driver, scope and path (its Mountpoint).");
    let mut labels = Family::info("storwatch_docker_volume_label_info", "A label of a volume.");
    let mut used_by = Family::gauge(
        "storwatch_docker_volume_containers",
        "Containers (running or stopped) that mount the volume.",
    );
    let mut dangling = 0u64;
    let mut places = vec![Place { path: &s.info.root_dir, role: "data_root" }];
    for v in &s.volumes {
        volume_info.push(
            [("volume", &v.name), ("driver", &v.driver), ("scope", &v.scope), ("path", &v.mountpoint)],
            1.0,
        );
        for (key, value) in &v.labels {
            labels.push([("volume", &v.name), ("label", key), ("value", value)], 1.0);
        }
        let n = users.get(v.name.as_str()).map_or(0, BTreeSet::len);
        used_by.push([("volume", &v.name)], n as f64);
        dangling += u64::from(n == 0);
        if let (true, Some(names)) = (n > 1 && c.mounts.enabled, users.get(v.name.as_str())) {
            results.push(checks::shared_volume(
                &c.mounts,
                &v.name,
                &names.iter().cloned().collect::<Vec<_>>(),
            ));
        }
        if v.driver == "local" && v.mountpoint.starts_with('/') {
            places.push(Place { path: &v.mountpoint, role: "volume" });
        }
    }
    let dangling = Family::gauge(
        "storwatch_docker_volumes_dangling",
        "Volumes no container (running or stopped) mounts.",
    )
    .with_value(dangling as f64);

    let mut sizes = Family::gauge(
        "storwatch_docker_volume_size_bytes",
        "Bytes used by a volume (/system/df; only with --collector.docker.volume-sizes).",
    );
    for u in s.sizes.iter().flat_map(|d| &d.volumes) {
        if let Some(size) = u.usage.as_ref().map(|u| u.size).filter(|s| *s >= 0) {
            sizes.push([("volume", &u.name)], size as f64);
        }
    }

    let mut fs_info = Family::info(
        "storwatch_docker_filesystem_info",
        "The filesystem holding the Docker data root or a local volume's path.",
    );
    let mut ro = Family::gauge(
        "storwatch_docker_filesystem_readonly",
        "1 when the filesystem holding the path is mounted read-only.",
    );
    let mut size =
        Family::gauge("storwatch_docker_filesystem_size_bytes", "Size of the filesystem holding the path.");
    let mut free = Family::gauge(
        "storwatch_docker_filesystem_free_bytes",
        "Free bytes on it, root's reserve included (f_bfree).",
    );
    let mut avail = Family::gauge(
        "storwatch_docker_filesystem_avail_bytes",
        "Bytes available to unprivileged writers (f_bavail).",
    );
    let mut used =
        Family::gauge("storwatch_docker_filesystem_used_bytes", "Bytes in use on it (size - free).");
    if !s.info.root_dir.starts_with('/') {
        places.remove(0);
        errors.push(CollectError {
            kind: ErrorKind::Parse,
            message: format!("GET /info: DockerRootDir {:?} is not an absolute path", s.info.root_dir),
        });
    }
    for place in &places {
        let path = Path::new(place.path);
        if let Some(m) = mounts.and_then(|m| mount_of(m, path)) {
            fs_info.push(
                [
                    ("path", place.path),
                    ("role", place.role),
                    ("fstype", &m.fstype),
                    ("mountpoint", &m.mount_point),
                    ("source", &m.source),
                ],
                1.0,
            );
            ro.push([("path", place.path)], if m.read_only() { 1.0 } else { 0.0 });
            if c.filesystem.enabled && !watched.iter().any(|w| w == path) {
                results.push(checks::filesystem(&c.filesystem, place.path, &m.fstype));
            }
        }
        let seen = paths.root(path);
        match statvfs(&seen) {
            Ok(space) => {
                size.push([("path", place.path)], space.size as f64);
                free.push([("path", place.path)], space.free as f64);
                avail.push([("path", place.path)], space.available as f64);
                used.push([("path", place.path)], space.size.saturating_sub(space.free) as f64);
                if c.capacity.enabled {
                    results.push(checks::capacity(&c.capacity, place.path, space.size, space.available));
                }
            }
            Err(e) => errors.push(CollectError::io(&seen, &e)),
        }
    }

    let mut families = vec![up(1.0), engine, containers, volume_info, labels, used_by, dangling];
    if s.sizes.is_some() {
        families.push(sizes);
    }
    families.extend([writable, fs_info, ro, size, free, avail, used]);
    (families, results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::host::parse_mountinfo;

    fn snapshot() -> Snapshot {
        let volume = |name: &str, mountpoint: &str| api::Volume {
            name: name.into(),
            driver: "local".into(),
            mountpoint: mountpoint.into(),
            scope: "local".into(),
            labels: [("app".to_owned(), name.to_owned())].into(),
        };
        let mount = |name: &str, dest: &str, rw: bool| api::Mount {
            kind: "volume".into(),
            name: name.into(),
            destination: dest.into(),
            rw,
        };
        let container = |name: &str, state: &str, mounts: Vec<api::Mount>| api::Container {
            id: format!("{name}0123456789"),
            names: vec![format!("/{name}")],
            state: state.into(),
            mounts,
        };
        Snapshot {
            version: api::Version {
                version: "20.10.24+dfsg1".into(),
                api_version: "1.41".into(),
                min_api_version: "1.12".into(),
            },
            info: api::Info { driver: "overlay2".into(), root_dir: "/".into() },
            volumes: vec![volume("data", "/"), volume("conf", "/"), volume("idle", "/")],
            containers: vec![
                container(
                    "db",
                    "running",
                    vec![mount("data", "/data", true), mount("conf", "/etc/db", false)],
                ),
                container("backup", "exited", vec![mount("data", "/src", true)]),
            ],
            sizes: None,
        }
    }

    #[test]
    fn maps_engine_volumes_mounts_and_checks() {
        let (mounts, _) = parse_mountinfo("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
        let mut errors = Vec::new();
        let (families, results) =
            report(&snapshot(), &Paths::default(), Some(&mounts), &Checks::default(), &[], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let family =
            |name: &str| families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(family("storwatch_docker_up").samples[0].value, 1.0);
        assert_eq!(family("storwatch_docker_volumes_dangling").samples[0].value, 1.0);
        let used: Vec<f64> =
            family("storwatch_docker_volume_containers").samples.iter().map(|s| s.value).collect();
        assert_eq!(used, [2.0, 1.0, 0.0]);
        assert_eq!(family("storwatch_docker_container_mount_writable").samples.len(), 3);
        assert_eq!(family("storwatch_docker_filesystem_info").samples.len(), 4);
        let verdicts: Vec<(&str, &str, bool)> =
            results.iter().map(|r| (r.check, r.subject.as_str(), r.ok)).collect();
        assert!(verdicts.contains(&("docker_engine", "version", true)));
        assert!(verdicts.contains(&("docker_engine", "storage_driver", true)));
        assert!(verdicts.contains(&("mounts", "db:/etc/db", false)));
        assert!(verdicts.contains(&("mounts", "volume data", true)));
        assert!(verdicts.contains(&("filesystem", "/", true)));
        assert_eq!(results.iter().filter(|r| r.check == "capacity").count(), 4);
        assert!(!families.iter().any(|f| f.name == "storwatch_docker_volume_size_bytes"));

        // The data root among the watched paths: its filesystem result is the host collector's.
        let mut errors = Vec::new();
        let (_, results) = report(
            &snapshot(),
            &Paths::default(),
            Some(&mounts),
            &Checks::default(),
            &["/".into()],
            &mut errors,
        );
        assert!(!results.iter().any(|r| r.check == "filesystem"));
    }

    #[test]
    fn a_bad_data_root_is_a_partial_error() {
        let mut s = snapshot();
        s.info.root_dir = String::new();
        s.volumes.clear();
        let mut errors = Vec::new();
        let (families, _) = report(&s, &Paths::default(), None, &Checks::default(), &[], &mut errors);
        assert_eq!(errors.len(), 1);
        assert!(families.iter().any(|f| f.name == "storwatch_docker_engine_info"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = Options { socket: Some("/nonexistent/docker.sock".into()), volume_sizes: false };
        let mut d =
            Docker::new(Paths::default(), Duration::from_secs(30), &options, Checks::default(), vec![]);
        let mut attempts = Vec::new();
        for run in 0..40 {
            let before = d.skip;
            let out = d.collect().unwrap();
            assert_eq!(out.families[0].samples[0].value, 0.0);
            assert!(out.errors.is_empty(), "an absent socket is not an error");
            if before == 0 {
                attempts.push(run);
            }
        }
        // Waits of 1, 2, 4, 8 runs, then the 300 s cap (10 runs of 30 s).
        assert_eq!(attempts, [0, 1, 3, 7, 15, 25, 35]);
    }
}
