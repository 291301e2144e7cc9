//! Host setting families: kernel release, writeback sysctls, CPUs, memory and the filesystems of
//! the watched paths.

use super::{flag, info};
use crate::metrics::Family;
use crate::sources::host::Sample;

/// The vm sysctls, in `Sample::vm`'s order: name, help and the scale to base units.
const VM: [(&str, &str, f64); 4] = [
    ("storwatch_host_vm_dirty_ratio", "vm.dirty_ratio as a ratio (0 when vm.dirty_bytes is set).", 0.01),
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

pub fn families(s: &Sample) -> Vec<Family> {
    let mut out = Vec::new();
    if let Ok(release) = &s.release {
        out.push(info(
            "storwatch_host_kernel_info",
            "The running kernel release.",
            [vec![("release", release.as_str())]],
        ));
    }
    for ((name, help, scale), v) in VM.into_iter().zip(&s.vm) {
        if let Ok(v) = v {
            out.push(Family::gauge(name, help).with_value(*v as f64 * scale));
        }
    }
    if let Ok(n) = s.cpus {
        out.push(Family::gauge("storwatch_host_cpus", "Online CPUs.").with_value(n as f64));
    }
    if let Ok(m) = s.memory {
        out.push(
            Family::gauge("storwatch_host_memory_bytes", "Memory the kernel manages (MemTotal).")
                .with_value(m as f64),
        );
    }
    let filesystems: Vec<_> = s.filesystems.iter().filter_map(|(p, m)| Some((p, m.as_ref().ok()?))).collect();
    if !filesystems.is_empty() {
        out.push(info(
            "storwatch_path_filesystem_info",
            "The filesystem holding a watched path (the Docker data root and volume paths).",
            filesystems.iter().map(|(path, m)| {
                vec![
                    ("path", path.as_str()),
                    ("mountpoint", m.mount_point.as_str()),
                    ("fstype", m.fstype.as_str()),
                    ("source", m.source.as_str()),
                    ("options", m.options.as_str()),
                ]
            }),
        ));
        let mut ro = Family::gauge(
            "storwatch_path_filesystem_readonly",
            "1 when the filesystem holding a watched path is mounted read-only.",
        );
        for (path, m) in &filesystems {
            ro.push([("path", path)], flag(m.read_only()));
        }
        out.push(ro);
    }
    out
}
