//! Every host path the agent reads goes through [`Paths`], so each collector can run against a
//! fixture tree or a host mounted under `/host` (node_exporter's `--path.*` flags).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    // Accepted now so deployments need no flag changes; read by the mount and kernel log collectors.
    #[allow(dead_code)]
    pub rootfs: PathBuf,
    #[allow(dead_code)]
    pub dev: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths { procfs: "/proc".into(), sysfs: "/sys".into(), rootfs: "/".into(), dev: "/dev".into() }
    }
}

impl Paths {
    pub fn proc(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.procfs.join(rel)
    }

    pub fn sys(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.sysfs.join(rel)
    }

    /// A host path (`/var/lib/docker`) as seen from here: under `--path.rootfs`.
    pub fn root(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        self.rootfs.join(p.strip_prefix("/").unwrap_or(p))
    }
}
