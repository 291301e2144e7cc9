//! Docker engine families: whether it answered, its version and driver, containers by state,
//! volumes and who mounts them, container mounts, and the filesystems of the data root and the
//! volumes with their space.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::docker::volume_users;

use super::{Col, flag, gauge, info, table};
use crate::metrics::Family;
use crate::sources::docker::{Place, Sample, Space};

fn up(v: f64) -> Family {
    Family::gauge("storwatch_docker_up", "1 when the Docker engine answered the last attempt, 0 when not.")
        .with_value(v)
}

const SPACE: &[Col<Space>] = &[
    gauge("storwatch_docker_filesystem_size_bytes", "Size of the filesystem holding the path.", |s| {
        Some(s.size as f64)
    }),
    gauge(
        "storwatch_docker_filesystem_free_bytes",
        "Free bytes on it, root's reserve included (f_bfree).",
        |s| Some(s.free as f64),
    ),
    gauge(
        "storwatch_docker_filesystem_avail_bytes",
        "Bytes available to unprivileged writers (f_bavail).",
        |s| Some(s.available as f64),
    ),
    gauge("storwatch_docker_filesystem_used_bytes", "Bytes in use on it (size - free).", |s| {
        Some(s.size.saturating_sub(s.free) as f64)
    }),
];

pub fn families(s: &Sample) -> Vec<Family> {
    let Some(e) = &s.engine else { return vec![up(0.0)] };
    let snap = &e.snapshot;
    let engine = info(
        "storwatch_docker_engine_info",
        "The Docker engine: version, API version, storage driver, data root.",
        [vec![
            ("version", snap.version.version.as_str()),
            ("api_version", snap.version.api_version.as_str()),
            ("min_api_version", snap.version.min_api_version.as_str()),
            ("storage_driver", snap.info.driver.as_str()),
            ("data_root", snap.info.root_dir.as_str()),
        ]],
    );

    let mut writable = Family::gauge(
        "storwatch_docker_container_mount_writable",
        "1 when a container's mount is read-write, 0 when read-only (RW false).",
    );
    let mut states: BTreeMap<&str, u64> =
        ["created", "running", "paused", "restarting", "removing", "exited", "dead"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
    for container in &snap.containers {
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
                flag(m.rw),
            );
        }
    }
    let mut containers =
        Family::gauge("storwatch_docker_containers", "Containers by state (running and stopped).");
    for (state, n) in &states {
        containers.push([("state", state)], *n as f64);
    }

    let users = volume_users(e);
    let volume_info = info(
        "storwatch_docker_volume_info",
        "A volume: driver, scope and path (its Mountpoint).",
        snap.volumes.iter().map(|v| {
            vec![
                ("volume", v.name.as_str()),
                ("driver", v.driver.as_str()),
                ("scope", v.scope.as_str()),
                ("path", v.mountpoint.as_str()),
            ]
        }),
    );
    let labels = info(
        "storwatch_docker_volume_label_info",
        "A label of a volume.",
        snap.volumes.iter().flat_map(|v| {
            v.labels.iter().map(|(k, value)| {
                vec![("volume", v.name.as_str()), ("label", k.as_str()), ("value", value.as_str())]
            })
        }),
    );
    let mut used_by = Family::gauge(
        "storwatch_docker_volume_containers",
        "Containers (running or stopped) that mount the volume.",
    );
    let mut dangling = 0u64;
    for v in &snap.volumes {
        let n = users.get(v.name.as_str()).map_or(0, BTreeSet::len);
        used_by.push([("volume", &v.name)], n as f64);
        dangling += u64::from(n == 0);
    }
    let dangling = Family::gauge(
        "storwatch_docker_volumes_dangling",
        "Volumes no container (running or stopped) mounts.",
    )
    .with_value(dangling as f64);

    let mut out = vec![up(1.0), engine, containers, volume_info, labels, used_by, dangling];
    if let Some(d) = &snap.sizes {
        let mut sizes = Family::gauge(
            "storwatch_docker_volume_size_bytes",
            "Bytes used by a volume (/system/df; only with --collector.docker.volume-sizes).",
        );
        for u in &d.volumes {
            if let Some(size) = u.usage.as_ref().map(|u| u.size).filter(|s| *s >= 0) {
                sizes.push([("volume", &u.name)], size as f64);
            }
        }
        out.push(sizes);
    }
    out.push(writable);

    let mounted: Vec<(&Place, &crate::sources::mountinfo::Mount)> =
        e.places.iter().filter_map(|p| Some((p, p.mount.as_ref()?))).collect();
    out.push(info(
        "storwatch_docker_filesystem_info",
        "The filesystem holding the Docker data root or a local volume's path.",
        mounted.iter().map(|(p, m)| {
            vec![
                ("path", p.path.as_str()),
                ("role", p.role),
                ("fstype", m.fstype.as_str()),
                ("mountpoint", m.mount_point.as_str()),
                ("source", m.source.as_str()),
            ]
        }),
    ));
    let mut ro = Family::gauge(
        "storwatch_docker_filesystem_readonly",
        "1 when the filesystem holding the path is mounted read-only.",
    );
    for (p, m) in &mounted {
        ro.push([("path", &p.path)], flag(m.read_only()));
    }
    out.push(ro);
    out.extend(table(SPACE, || {
        e.places.iter().filter_map(|p| Some(([("path", p.path.as_str())], p.space?)))
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::docker::{Engine, places};
    use crate::sources::mountinfo::parse_mountinfo;

    fn engine() -> Engine {
        // The docker source's test engine: three volumes on `/`, one read-only mount, one shared.
        let snapshot = crate::sources::docker::tests::snapshot();
        let (mounts, _) = parse_mountinfo("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
        let places = places(&snapshot, &crate::paths::Paths::default(), Some(&mounts), &mut Vec::new());
        Engine { snapshot, places }
    }

    #[test]
    fn engine_volumes_mounts_and_filesystems() {
        let families = families(&Sample { engine: Some(engine()), error: None });
        let family =
            |name: &str| families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(family("storwatch_docker_up").samples[0].value, 1.0);
        assert_eq!(family("storwatch_docker_volumes_dangling").samples[0].value, 1.0);
        let used: Vec<f64> =
            family("storwatch_docker_volume_containers").samples.iter().map(|s| s.value).collect();
        assert_eq!(used, [2.0, 1.0, 0.0]);
        assert_eq!(family("storwatch_docker_container_mount_writable").samples.len(), 3);
        assert_eq!(family("storwatch_docker_filesystem_info").samples.len(), 4);
        assert_eq!(family("storwatch_docker_filesystem_avail_bytes").samples.len(), 4);
        assert!(!families.iter().any(|f| f.name == "storwatch_docker_volume_size_bytes"));
        let down = super::families(&Sample::default());
        assert_eq!((down.len(), down[0].samples[0].value), (1, 0.0), "no engine: up 0 alone");
    }
}
