//! Host settings the spec judges: kernel release, writeback sysctls, CPUs, memory, and the
//! filesystem under each Docker path (from mountinfo).
//!
//! ```text
//! /proc/sys/kernel/osrelease         6.1.0-18-amd64
//! /proc/sys/vm/dirty_ratio           20
//! /sys/devices/system/cpu/online     0-3,6
//! /proc/meminfo                      MemTotal:       24684084 kB
//! /proc/1/mountinfo (proc(5))        42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw,discard
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CollectError, Collector, Output, read_attr};
use crate::checks;
use crate::config::{Checks, parse_version};
use crate::metrics::Family;
use crate::paths::Paths;

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

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    pub options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl Mount {
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro") || self.super_options.split(',').any(|o| o == "ro")
    }
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal =
            b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = u32::from(d[0] - b'0') * 64 + u32::from(d[1] - b'0') * 8 + u32::from(d[2] - b'0');
                out.push(v as u8); // at most 0o777 = 511: the kernel only writes bytes, so wrap
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo: the good lines, and the 1-based numbers of the bad ones.
pub fn parse_mountinfo(s: &str) -> (Vec<Mount>, Vec<usize>) {
    let mut mounts = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in s.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-");
        match sep {
            Some(sep) if sep >= 6 && fields.len() >= sep + 3 => mounts.push(Mount {
                mount_point: unescape(fields[4]),
                options: fields[5].to_owned(),
                fstype: unescape(fields[sep + 1]),
                source: unescape(fields[sep + 2]),
                super_options: fields.get(sep + 3).copied().unwrap_or("").to_owned(),
            }),
            _ => bad.push(i + 1),
        }
    }
    (mounts, bad)
}

/// The mount that holds `path`: the last-mounted one among those with the longest mount point
/// that is `path` or one of its ancestors.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point) && best.is_none_or(|b| m.mount_point.len() >= b.mount_point.len())
        {
            best = Some(m);
        }
    }
    best
}

pub struct Host {
    paths: Paths,
    interval: Duration,
    checks: Checks,
    watched: Vec<PathBuf>,
}

impl Host {
    pub fn new(paths: Paths, interval: Duration, checks: Checks, watched: Vec<PathBuf>) -> Self {
        Host { paths, interval, checks, watched }
    }

    fn mountinfo(&self, errors: &mut Vec<CollectError>) -> Option<Vec<Mount>> {
        read_mountinfo(&self.paths, errors)
    }
}

/// The host's mounts: `/proc/1/mountinfo` (else `/proc/self/mountinfo`), bad lines as errors.
pub fn read_mountinfo(paths: &Paths, errors: &mut Vec<CollectError>) -> Option<Vec<Mount>> {
    // PID 1's view is the host's even when the agent runs in its own mount namespace.
    let path = [paths.proc("1/mountinfo"), paths.proc("self/mountinfo")].into_iter().find(|p| p.exists())?;
    let text = std::fs::read(&path).map_err(|e| errors.push(CollectError::io(&path, &e))).ok()?;
    let (mounts, bad) = parse_mountinfo(&String::from_utf8_lossy(&text));
    for n in bad {
        errors.push(CollectError::parse(&path, format_args!("line {n}: not a mountinfo line")));
    }
    Some(mounts)
}

impl Collector for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Result<Output, CollectError> {
        let mut errors = Vec::new();
        let mut read = |path: PathBuf| {
            read_attr(&path)
                .unwrap_or_else(|e| {
                    errors.push(e);
                    None
                })
                .map(|v| (path, v))
        };
        let release = read(self.paths.proc("sys/kernel/osrelease")).map(|(_, v)| v);
        let vm: Vec<Option<(PathBuf, String)>> =
            ["dirty_ratio", "dirty_background_ratio", "dirty_bytes", "dirty_background_bytes"]
                .into_iter()
                .map(|n| read(self.paths.proc("sys/vm").join(n)))
                .collect();
        let cpus = read(self.paths.sys("devices/system/cpu/online"));
        let meminfo = read(self.paths.proc("meminfo"));
        let mut number = |v: Option<(PathBuf, String)>, parse: fn(&str) -> Option<u64>| {
            let (path, text) = v?;
            let n = parse(&text);
            if n.is_none() {
                errors.push(CollectError::parse(
                    &path,
                    format_args!("unexpected content {:?}", text.chars().take(40).collect::<String>()),
                ));
            }
            n
        };
        let vm: Vec<Option<u64>> = vm.into_iter().map(|v| number(v, |s| s.parse().ok())).collect();
        let cpus = number(cpus, parse_cpu_list);
        let memory = number(meminfo, parse_memtotal);
        let mounts = self.mountinfo(&mut errors);

        let mut families = Vec::new();
        let mut results = Vec::new();
        let c = &self.checks;
        if let Some(release) = &release {
            let mut f = Family::info("storwatch_host_kernel_info", "The running kernel release.");
            f.push([("release", release)], 1.0);
            families.push(f);
            if c.kernel.enabled {
                results.push(checks::kernel(&c.kernel, release, parse_version(release)));
            }
        }
        let vm_families = [
            (
                "storwatch_host_vm_dirty_ratio",
                "vm.dirty_ratio as a ratio (0 when vm.dirty_bytes is set).",
                0.01,
            ),
            (
                "storwatch_host_vm_dirty_background_ratio",
                "vm.dirty_background_ratio as a ratio (0 when vm.dirty_background_bytes is set).",
                0.01,
            ),
            ("storwatch_host_vm_dirty_bytes", "vm.dirty_bytes (0 when vm.dirty_ratio is used).", 1.0),
            (
                "storwatch_host_vm_dirty_background_bytes",
                "vm.dirty_background_bytes (0 when vm.dirty_background_ratio is used).",
                1.0,
            ),
        ];
        for ((name, help, scale), v) in vm_families.into_iter().zip(&vm) {
            if let Some(v) = v {
                families.push(Family::gauge(name, help).with_value(*v as f64 * scale));
            }
        }
        if let (true, Some(ratio), Some(background)) = (c.writeback.enabled, vm[0], vm[1]) {
            results.extend(checks::writeback(&c.writeback, ratio, background));
        }
        if let Some(n) = cpus {
            families.push(Family::gauge("storwatch_host_cpus", "Online CPUs.").with_value(n as f64));
        }
        if let Some(m) = memory {
            families.push(
                Family::gauge("storwatch_host_memory_bytes", "Memory the kernel manages (MemTotal).")
                    .with_value(m as f64),
            );
        }
        if c.resources.enabled {
            results.extend(checks::resources(&c.resources, cpus, memory));
        }
        if let Some(mounts) = mounts {
            let mut info = Family::info(
                "storwatch_path_filesystem_info",
                "The filesystem holding a watched path (the Docker data root and volume paths).",
            );
            let mut ro = Family::gauge(
                "storwatch_path_filesystem_readonly",
                "1 when the filesystem holding a watched path is mounted read-only.",
            );
            for path in &self.watched {
                let Some(m) = mount_of(&mounts, path) else { continue };
                let p = path.display().to_string();
                info.push(
                    [
                        ("path", &p),
                        ("mountpoint", &m.mount_point),
                        ("fstype", &m.fstype),
                        ("source", &m.source),
                        ("options", &m.options),
                    ],
                    1.0,
                );
                ro.push([("path", &p)], if m.read_only() { 1.0 } else { 0.0 });
                if c.filesystem.enabled {
                    results.push(checks::filesystem(&c.filesystem, &p, &m.fstype));
                }
            }
            families.extend([info, ro]);
        }
        Ok(Output { families, checks: results, errors })
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
    fn mountinfo_and_the_mount_of_a_path() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
                    42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - xfs /dev/vdb rw\n\
                    43 42 0:50 / /var/lib/docker/volumes/my\\040vol ro,relatime shared:2 master:1 - tmpfs tmp\\134fs rw\n\
                    44 27 0:51 / /var/lib/dockerish rw - btrfs /dev/vdc rw\n\
                    broken line\n";
        let (mounts, bad) = parse_mountinfo(text);
        assert_eq!(bad, [5]);
        assert_eq!(mounts[2].mount_point, "/var/lib/docker/volumes/my vol");
        assert_eq!(mounts[2].source, "tmp\\fs");
        assert!(mounts[2].read_only() && !mounts[1].read_only());
        let of = |p: &str| mount_of(&mounts, Path::new(p)).map(|m| m.fstype.as_str());
        assert_eq!(of("/var/lib/docker"), Some("xfs"));
        assert_eq!(of("/var/lib/docker/volumes"), Some("xfs"));
        assert_eq!(of("/var/lib/docker/volumes/my vol/_data"), Some("tmpfs"));
        assert_eq!(of("/var/lib/dockerish2"), Some("ext4"), "a path prefix is not a parent");
        assert_eq!(of("/srv"), Some("ext4"));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,300}") {
            let (mounts, _) = parse_mountinfo(&s);
            let _ = mount_of(&mounts, Path::new("/var/lib/docker"));
            let _ = (parse_cpu_list(&s), parse_memtotal(&s), unescape(&s));
        }

        #[test]
        fn mountinfo_like_lines_never_panic(s in "([0-9]{1,3} ){2}[0-9:]{3,5} [/a-z\\\\0-7]{1,12} [/a-z\\\\0-7]{1,12} [a-z,]{0,10}( [a-z:0-9]{1,8}){0,2}( -)?( [a-z0-9/]{1,6}){0,3}\n{0,2}") {
            let _ = parse_mountinfo(&s);
        }
    }
}
