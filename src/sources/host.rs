//! Host settings the spec judges: kernel release, writeback sysctls, CPUs, memory, and the
//! filesystem under each watched path (the Docker paths, from mountinfo).
//!
//! ```text
//! /proc/sys/kernel/osrelease         6.1.0-18-amd64
//! /proc/sys/vm/dirty_ratio           20
//! /sys/devices/system/cpu/online     0-3,6
//! /proc/meminfo                      MemTotal:       24684084 kB
//! /proc/1/mountinfo (proc(5))        42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw,discard
//! ```

use std::path::PathBuf;
use std::time::Duration;

use super::mountinfo::{Mount, mount_of, read_mountinfo};
use super::{Collected, Sample as AnySample, Source};
use crate::error::{CollectError, ErrorKind};
use crate::paths::Paths;
use crate::read::read_small;

/// Counts the CPUs in a kernel CPU list such as `0-3,6,8-9`. None when it is not one.
pub fn parse_cpu_list(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    s.split(',').try_fold(0u64, |n, part| {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
        n.checked_add(b.checked_sub(a)?.checked_add(1)?)
    })
}

/// `MemTotal` of /proc/meminfo, in bytes.
pub fn parse_memtotal(s: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kb: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => kb.checked_mul(1024),
        _ => None,
    }
}

/// The default `[filesystems] paths`: the Docker data root and its volumes.
pub fn default_watched() -> Vec<PathBuf> {
    vec!["/var/lib/docker".into(), "/var/lib/docker/volumes".into()]
}

/// The vm sysctls read, in [`Sample::vm`]'s order.
pub const VM: [&str; 4] = ["dirty_ratio", "dirty_background_ratio", "dirty_bytes", "dirty_background_bytes"];

/// A value read, or why it could not be (the error the source counted for it). Every file the
/// host source reads exists on every Linux host, so a missing one is an error too: a procfs
/// without `meminfo` is not a host without memory.
pub type Reading<T> = Result<T, String>;

/// One read of the host's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub release: Reading<String>,
    /// `vm.dirty_ratio`, `vm.dirty_background_ratio` (percent), `vm.dirty_bytes`,
    /// `vm.dirty_background_bytes`, as [`VM`] lists them.
    pub vm: [Reading<u64>; 4],
    pub cpus: Reading<u64>,
    /// MemTotal, bytes.
    pub memory: Reading<u64>,
    /// Each watched path with the mount holding it.
    pub filesystems: Vec<(String, Reading<Mount>)>,
}

impl Default for Sample {
    /// Nothing read.
    fn default() -> Self {
        let none = || Err("not read".to_owned());
        Sample {
            release: Err("not read".to_owned()),
            vm: [none(), none(), none(), none()],
            cpus: none(),
            memory: none(),
            filesystems: Vec::new(),
        }
    }
}

pub struct Host {
    paths: Paths,
    interval: Duration,
    watched: Vec<PathBuf>,
}

impl Host {
    pub fn new(paths: Paths, interval: Duration, watched: Vec<PathBuf>) -> Self {
        Host { paths, interval, watched }
    }

    pub fn read(&self) -> (Sample, Vec<CollectError>) {
        let mut errors = Vec::new();
        // Each failure is counted once, and its text kept as the reading's reason.
        let mut note = |e: CollectError| {
            let why = e.to_string();
            errors.push(e);
            why
        };
        let mut read = |path: PathBuf| match read_small(&path) {
            Ok(bytes) => Ok((path, String::from_utf8_lossy(&bytes).trim().to_owned())),
            Err(e) => Err(note(CollectError::io(&path, &e))),
        };
        let release = read(self.paths.proc("sys/kernel/osrelease")).map(|(_, v)| v);
        let vm = VM.map(|n| read(self.paths.proc("sys/vm").join(n)));
        let cpus = read(self.paths.sys("devices/system/cpu/online"));
        let meminfo = read(self.paths.proc("meminfo"));
        let mut number = |v: Reading<(PathBuf, String)>, parse: fn(&str) -> Option<u64>| {
            let (path, text) = v?;
            parse(&text).ok_or_else(|| {
                let shown: String = text.chars().take(40).collect();
                note(CollectError::parse(&path, format_args!("unexpected content {shown:?}")))
            })
        };
        let vm = vm.map(|v| number(v, |s| s.parse().ok()));
        let cpus = number(cpus, parse_cpu_list);
        let memory = number(meminfo, parse_memtotal);
        let before = errors.len();
        let mounts = read_mountinfo(&self.paths, &mut errors);
        let why = errors[before..].last().map_or_else(|| "mountinfo not read".to_owned(), |e| e.to_string());
        let filesystems = self
            .watched
            .iter()
            .map(|path| {
                let mount = match &mounts {
                    None => Err(why.clone()),
                    Some(m) => mount_of(m, path).cloned().ok_or_else(|| {
                        let e = CollectError::new(
                            ErrorKind::Parse,
                            format!("mountinfo: no mount holds {} (no root mount)", path.display()),
                        );
                        let why = e.to_string();
                        errors.push(e);
                        why
                    }),
                };
                (path.display().to_string(), mount)
            })
            .collect();
        (Sample { release, vm, cpus, memory, filesystems }, errors)
    }
}

impl Source for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        let (sample, errors) = self.read();
        Ok(Collected::new(AnySample::Host(sample), errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("0-18446744073709551615"), None);
    }

    #[test]
    fn meminfo() {
        assert_eq!(parse_memtotal("MemTotal:       24684084 kB\nMemFree: 1 kB\n"), Some(24684084 * 1024));
        assert_eq!(parse_memtotal("MemFree: 1 kB\n"), None);
        assert_eq!(parse_memtotal("MemTotal: 12"), None);
    }

    #[test]
    fn an_empty_procfs_is_an_error_per_file_not_a_host_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths { procfs: dir.path().into(), sysfs: dir.path().into(), ..Paths::default() };
        let host = Host::new(paths, Duration::from_secs(60), default_watched());
        let (s, errors) = host.read();
        // osrelease, four vm sysctls, cpu/online, meminfo, mountinfo.
        assert_eq!(errors.len(), 8, "{errors:?}");
        let why = s.memory.unwrap_err();
        assert!(why.contains("meminfo") && why.contains("No such file"), "{why}");
        assert!(s.release.is_err() && s.cpus.is_err() && s.vm.iter().all(Result::is_err));
        assert_eq!(s.filesystems.len(), 2);
        assert!(s.filesystems.iter().all(|(_, m)| m.as_ref().is_err_and(|w| w.contains("mountinfo"))));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,300}") {
            let _ = (parse_cpu_list(&s), parse_memtotal(&s));
        }
    }
}
