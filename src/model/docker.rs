//! The Docker engine's volumes and who mounts them.

use std::collections::{BTreeMap, BTreeSet};

use crate::sources::docker::Engine;

/// The containers (by name) that mount each volume, running or stopped.
pub fn volume_users(e: &Engine) -> BTreeMap<&str, BTreeSet<String>> {
    let mut users: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for c in &e.snapshot.containers {
        for m in c.mounts.iter().filter(|m| m.kind == "volume") {
            users.entry(m.name.as_str()).or_default().insert(c.name());
        }
    }
    users
}
