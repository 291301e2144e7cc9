//! The Docker engine and its volumes, from the Engine API on its unix socket (`http.rs`, a small
//! blocking HTTP/1.1 client; `api.rs`, the JSON answers): engine version and storage driver, the
//! data root and every local volume with the filesystem that holds it (`super::mountinfo`) and its
//! free space (statvfs), container volume mounts.
//!
//! An engine that is absent, stopped or answering garbage gives a sample without an engine
//! (`storwatch_docker_up 0`; the source itself succeeds: that is its report) and the source
//! retries with backoff: after the n-th failure in a row it skips the next 2^(n-1) - 1 runs, at
//! most [`MAX_WAIT`] of them.
//!
//! Volumes and containers change when someone creates, removes, starts or stops one, far less
//! often than the collector runs. So a run asks the engine's event log (`/events` since the last
//! run, [`EVENTS`]) whether anything changed, and reads volumes and containers again only if so,
//! or after [`REFRESH`] (engine version and data root have no events). The filesystems' space is
//! read every run, and volume sizes too when asked for (they change without events).

pub mod api;
pub mod http;

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::mountinfo::{Mount, mount_of, read_mountinfo};
use super::{Collected, Sample as AnySample, Source};
use crate::error::{CollectError, ErrorKind};
use crate::paths::Paths;

/// The longest wait between two attempts on a failing engine.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// The engine's conventional data root: where it is, an engine should answer.
pub const DATA_ROOT: &str = "/var/lib/docker";
/// Each API request must finish within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest an unchanged engine answer is kept.
pub const REFRESH: Duration = Duration::from_secs(300);
/// The events that change what the collector reads: volumes and containers made, removed,
/// started, stopped (`die`), paused, renamed, and the engine reloading its configuration. Not
/// `exec_*` or `health_status`, which a container with a health check logs every few seconds.
pub const EVENTS: &str = r#"{"type":["container","volume","daemon"],"event":["create","destroy","start","die","pause","unpause","rename","reload"]}"#;
/// Events are asked for from this long before the last run's end, so an event the engine logged
/// late is not missed; events already seen are told apart by their time.
const OVERLAP: Duration = Duration::from_secs(1);

/// Options from the flags (`--collector.docker.socket`, `--collector.docker.volume-sizes`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The engine's socket; None: `<path.rootfs>/var/run/docker.sock`.
    pub socket: Option<PathBuf>,
    /// Ask `/system/df` for each volume's size (the engine walks every volume: expensive).
    pub volume_sizes: bool,
}

/// What one successful pass read from the engine.
#[derive(Debug, Clone, Default, PartialEq)]
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

/// A path the engine names (the data root, a local volume's mountpoint) and what holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub path: String,
    /// `data_root` or `volume`.
    pub role: &'static str,
    /// The mount holding it, when mountinfo could be read.
    pub mount: Option<Mount>,
    /// Its filesystem's space, when statvfs answered.
    pub space: Option<Space>,
}

/// What the engine answered, and the places it names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Engine {
    pub snapshot: Snapshot,
    /// The data root (when its path is absolute) and every local volume's path.
    pub places: Vec<Place>,
}

/// One attempt: the engine, or None when it is absent, did not answer, or the source is backing
/// off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub engine: Option<Engine>,
    /// Why there is no engine when there should be one: it answered with an error, or its socket
    /// is absent while its data root exists (the last attempt's, also while backing off). None:
    /// read, or no engine on this host.
    pub error: Option<String>,
}

pub struct Docker {
    paths: Paths,
    interval: Duration,
    socket: PathBuf,
    volume_sizes: bool,
    failures: u32,
    skip: u64,
    kept: Option<Kept>,
    /// The last attempt's error, repeated while backing off.
    error: Option<String>,
}

/// The last full answer, and how far the event log has been read since.
struct Kept {
    snapshot: Snapshot,
    fetched: Instant,
    /// Wall-clock time up to which events were asked for.
    until: Duration,
    /// The newest event seen (nanoseconds since the epoch).
    newest: i64,
}

impl Docker {
    pub fn new(paths: Paths, interval: Duration, options: &Options) -> Self {
        let socket = options.socket.clone().unwrap_or_else(|| paths.root("/var/run/docker.sock"));
        Docker {
            paths,
            interval,
            socket,
            volume_sizes: options.volume_sizes,
            failures: 0,
            skip: 0,
            kept: None,
            error: None,
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        let body = self.raw_get(path)?;
        api::parse(&body).map_err(|e| self.invalid_json(path, &e))
    }

    /// An answer to `GET path` that is not the JSON asked for.
    fn invalid_json(&self, path: &str, e: &serde_json::Error) -> Failure {
        Failure::Error(CollectError {
            kind: ErrorKind::Parse,
            message: format!("{} GET {path}: invalid JSON: {e}", self.socket.display()),
        })
    }

    /// The body of a successful answer to `GET path`.
    fn raw_get(&self, path: &str) -> Result<Vec<u8>, Failure> {
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
        Ok(response.body)
    }

    fn fetch(&self) -> Result<Snapshot, Failure> {
        let version = self.get("/version")?;
        let info = self.get("/info")?;
        let volumes: api::Volumes = self.get("/volumes")?;
        let containers = self.get("/containers/json?all=1")?;
        let sizes = self.sizes()?;
        Ok(Snapshot { version, info, volumes: volumes.volumes, containers, sizes })
    }

    fn sizes(&self) -> Result<Option<api::DiskUsage>, Failure> {
        if self.volume_sizes { self.get("/system/df?type=volume").map(Some) } else { Ok(None) }
    }

    /// Whether the engine logged an event that changes the kept answer since it was read (and
    /// the event log's time read up to now); true when the kept answer is too old.
    fn changed(&mut self, now: Duration) -> Result<bool, Failure> {
        let Some(kept) = &self.kept else { return Ok(true) };
        if kept.fetched.elapsed() >= REFRESH || now < kept.until {
            return Ok(true);
        }
        let since = kept.until.saturating_sub(OVERLAP);
        let path = format!(
            "/events?since={}.{:09}&until={}.{:09}&filters={}",
            since.as_secs(),
            since.subsec_nanos(),
            now.as_secs(),
            now.subsec_nanos(),
            query_escape(EVENTS)
        );
        let response = self.raw_get(&path)?;
        let events = api::parse_events(&response).map_err(|e| self.invalid_json("/events", &e))?;
        let newest = events.iter().map(|e| e.time_nano).max().unwrap_or(i64::MIN);
        let Some(kept) = &mut self.kept else { return Ok(true) };
        kept.until = now;
        Ok(newest > kept.newest)
    }

    /// The engine's answer now: the kept one when nothing changed, else a new full read.
    fn answer(&mut self) -> Result<Snapshot, Failure> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        if !self.changed(now)? {
            let sizes = self.sizes()?;
            if let Some(kept) = &mut self.kept {
                kept.snapshot.sizes = sizes;
                return Ok(kept.snapshot.clone());
            }
        }
        let snapshot = self.fetch()?;
        // Every event up to `now` is in this answer.
        let at = i64::try_from(now.as_nanos()).unwrap_or(i64::MAX);
        let newest = self.kept.as_ref().map_or(at, |k| k.newest.max(at));
        let kept = Kept { snapshot, fetched: Instant::now(), until: now, newest };
        Ok(self.kept.insert(kept).snapshot.clone())
    }

    /// No socket: no engine on this host, unless the engine's (conventional) data root exists
    /// under the root: then the socket should be there, and its absence is an error.
    fn data_root_without_engine(&self) -> Option<CollectError> {
        let root = self.paths.root(DATA_ROOT);
        root.is_dir().then(|| {
            CollectError::new(
                ErrorKind::Io,
                format!(
                    "{}: no socket, but the engine's data root {} exists (a wrong --collector.docker.socket, or the socket not mounted)",
                    self.socket.display(),
                    root.display()
                ),
            )
        })
    }

    /// After the n-th failure in a row, skip the next 2^(n-1) - 1 runs (at most MAX_WAIT).
    fn back_off(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let most = (MAX_WAIT.as_secs_f64() / self.interval.as_secs_f64()).max(1.0) as u64 - 1;
        self.skip = ((1u64 << self.failures.min(40)) / 2).saturating_sub(1).min(most);
    }
}

impl Source for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        if self.skip > 0 {
            self.skip -= 1;
            let sample = Sample { engine: None, error: self.error.clone() };
            return Ok(Collected::new(AnySample::Docker(sample), Vec::new()));
        }
        match self.answer() {
            Ok(snapshot) => {
                self.failures = 0;
                self.error = None;
                let mut errors = Vec::new();
                let mounts = read_mountinfo(&self.paths, &mut errors);
                let places = places(&snapshot, &self.paths, mounts.as_deref(), &mut errors);
                let engine = Engine { snapshot, places };
                Ok(Collected::new(AnySample::Docker(Sample { engine: Some(engine), error: None }), errors))
            }
            Err(failure) => {
                // What the engine answered before it failed may be stale when it is back.
                self.kept = None;
                self.back_off();
                let errors = match failure {
                    Failure::Absent => self.data_root_without_engine().into_iter().collect(),
                    Failure::Error(e) => vec![e],
                };
                self.error = errors.first().map(|e| e.to_string());
                Ok(Collected::new(
                    AnySample::Docker(Sample { engine: None, error: self.error.clone() }),
                    errors,
                ))
            }
        }
    }
}

/// `s` as a URL query value: every byte but the unreserved ones (RFC 3986) percent-encoded.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The data root and each local volume's path, with the mount holding it (from the host's
/// mountinfo) and its space (statvfs under `--path.rootfs`).
pub fn places(
    s: &Snapshot,
    paths: &Paths,
    mounts: Option<&[Mount]>,
    errors: &mut Vec<CollectError>,
) -> Vec<Place> {
    let mut named: Vec<(&str, &'static str)> = Vec::new();
    if s.info.root_dir.starts_with('/') {
        named.push((&s.info.root_dir, "data_root"));
    } else {
        errors.push(CollectError::new(
            ErrorKind::Parse,
            format!("GET /info: DockerRootDir {:?} is not an absolute path", s.info.root_dir),
        ));
    }
    for v in &s.volumes {
        if v.driver == "local" && v.mountpoint.starts_with('/') {
            named.push((&v.mountpoint, "volume"));
        }
    }
    named
        .into_iter()
        .map(|(path, role)| {
            let mount = mounts.and_then(|m| mount_of(m, Path::new(path))).cloned();
            let seen = paths.root(path);
            let space = statvfs(&seen).map_err(|e| errors.push(CollectError::io(&seen, &e))).ok();
            Place { path: path.to_owned(), role, mount, space }
        })
        .collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::sources::mountinfo::parse_mountinfo;

    /// An engine answer with three volumes, one of them mounted read-only by one container and
    /// one shared by two; every path on `/`.
    pub fn snapshot() -> Snapshot {
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
    fn places_with_their_mounts_and_space() {
        let (mounts, _) = parse_mountinfo("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
        let mut errors = Vec::new();
        let p = places(&snapshot(), &Paths::default(), Some(&mounts), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let roles: Vec<_> = p.iter().map(|p| p.role).collect();
        assert_eq!(roles, ["data_root", "volume", "volume", "volume"]);
        assert!(p.iter().all(|p| p.mount.as_ref().is_some_and(|m| m.fstype == "ext4")));
        assert!(p.iter().all(|p| p.space.is_some_and(|s| s.size > 0)), "statvfs of / here");
    }

    #[test]
    fn a_bad_data_root_is_a_partial_error() {
        let mut s = snapshot();
        s.info.root_dir = String::new();
        s.volumes.clear();
        let mut errors = Vec::new();
        let p = places(&s, &Paths::default(), None, &mut errors);
        assert_eq!(errors.len(), 1);
        assert!(p.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = Options { socket: Some("/nonexistent/docker.sock".into()), volume_sizes: false };
        let empty = tempfile::tempdir().unwrap();
        let paths = Paths { rootfs: empty.path().into(), ..Paths::default() };
        let mut d = Docker::new(paths, Duration::from_secs(30), &options);
        let mut attempts = Vec::new();
        for run in 0..40 {
            let before = d.skip;
            let out = d.sample().unwrap();
            assert!(matches!(out.sample, AnySample::Docker(Sample { engine: None, error: None })));
            assert!(out.errors.is_empty(), "an absent socket is not an error");
            if before == 0 {
                attempts.push(run);
            }
        }
        // Waits of 1, 2, 4, 8 runs, then the 300 s cap (10 runs of 30 s).
        assert_eq!(attempts, [0, 1, 3, 7, 15, 25, 35]);
        // With the engine's data root under the root, an absent socket is an error, and stays
        // the sample's error while the source backs off.
        std::fs::create_dir_all(empty.path().join("var/lib/docker")).unwrap();
        let paths = Paths { rootfs: empty.path().into(), ..Paths::default() };
        let mut d = Docker::new(paths, Duration::from_secs(30), &options);
        let first = d.sample().unwrap();
        assert_eq!(first.errors.len(), 1);
        assert!(first.errors[0].message.contains("data root"), "{:?}", first.errors);
        let AnySample::Docker(Sample { error: Some(why), .. }) = d.sample().unwrap().sample else { panic!() };
        assert!(why.contains("/nonexistent/docker.sock"), "{why}");
    }
}
