//! Block queue settings from `/sys/block/<dev>/queue/` (Documentation/ABI/stable/sysfs-block).
//!
//! ```text
//! queue/scheduler      mq-deadline kyber [bfq] none      (the active one in brackets)
//! queue/write_cache    write back
//! queue/io_timeout     30000                               (ms)
//! ```

use std::time::Duration;

use super::{Collected, DeviceFilter, Sample as AnySample, Source};
use crate::error::{CollectError, ErrorKind};
use crate::paths::Paths;
use crate::read::AttrDir;

/// The active scheduler and the available ones. A file without brackets names only the active
/// one (devices without a choice print `none`).
pub fn parse_scheduler(s: &str) -> Option<(String, Vec<String>)> {
    let mut active = None;
    let mut available = Vec::new();
    for token in s.split_ascii_whitespace() {
        let name = match token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(name) => {
                active = Some(name.to_owned());
                name
            }
            None => token,
        };
        available.push(name.to_owned());
    }
    match (active, available.as_slice()) {
        (Some(a), _) => Some((a, available)),
        (None, [only]) => Some((only.clone(), available)),
        _ => None,
    }
}

/// One device's queue settings; `None` where the file is absent or unreadable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSettings {
    pub scheduler: Option<(String, Vec<String>)>,
    pub rotational: Option<u64>,
    pub nr_requests: Option<u64>,
    pub read_ahead_kb: Option<u64>,
    pub max_sectors_kb: Option<u64>,
    /// `write back` (true) or `write through` (false).
    pub write_cache: Option<bool>,
    pub wbt_lat_usec: Option<u64>,
    pub io_timeout_ms: Option<u64>,
}

/// The queue files read, in [`QueueSettings`]' order.
const FILES: [&std::ffi::CStr; 8] = [
    c"scheduler",
    c"rotational",
    c"nr_requests",
    c"read_ahead_kb",
    c"max_sectors_kb",
    c"write_cache",
    c"wbt_lat_usec",
    c"io_timeout",
];

fn read_settings(paths: &Paths, device: &str, errors: &mut Vec<CollectError>) -> QueueSettings {
    let dir = paths.sys("block").join(device).join("queue");
    let raw: Vec<Option<String>> = match AttrDir::open(dir.clone()) {
        Ok(d) => FILES
            .iter()
            .map(|name| {
                d.attr(name).unwrap_or_else(|e| {
                    errors.push(e);
                    None
                })
            })
            .collect(),
        // A device without a queue directory (or gone meanwhile) has no settings.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![None; FILES.len()],
        Err(e) => {
            errors.push(CollectError::io(&dir, &e));
            vec![None; FILES.len()]
        }
    };
    let mut number = |i: usize, name: &str| {
        let v = raw[i].as_deref()?;
        v.parse::<u64>()
            .map_err(|_| {
                errors.push(CollectError::parse(&dir.join(name), format_args!("{v:?} is not a number")))
            })
            .ok()
    };
    QueueSettings {
        rotational: number(1, "rotational"),
        nr_requests: number(2, "nr_requests"),
        read_ahead_kb: number(3, "read_ahead_kb"),
        max_sectors_kb: number(4, "max_sectors_kb"),
        wbt_lat_usec: number(6, "wbt_lat_usec"),
        io_timeout_ms: number(7, "io_timeout"),
        scheduler: raw[0].as_deref().and_then(parse_scheduler),
        write_cache: raw[5].as_deref().and_then(|w| match w {
            "write back" => Some(true),
            "write through" => Some(false),
            _ => None,
        }),
    }
}

/// One read: every device that passes the filter, by name, with its settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub devices: Vec<(String, QueueSettings)>,
}

pub struct Queue {
    paths: Paths,
    filter: DeviceFilter,
    interval: Duration,
}

impl Queue {
    pub fn new(paths: Paths, filter: DeviceFilter, interval: Duration) -> Self {
        Queue { paths, filter, interval }
    }
}

impl Source for Queue {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn sample(&mut self) -> Result<Collected, CollectError> {
        let dir = self.paths.sys("block");
        let entries = std::fs::read_dir(&dir).map_err(|e| CollectError::io(&dir, &e))?;
        let all: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        if all.is_empty() {
            // Every Linux host has a block device (a disk, at least a loop or ram device): an
            // empty class is a sysfs that is not the host's, not a host without disks.
            return Err(CollectError::new(
                ErrorKind::Io,
                format!("{}: no block devices at all (not the host's sysfs?)", dir.display()),
            ));
        }
        let mut names: Vec<String> = all.into_iter().filter(|d| self.filter.matches(d)).collect();
        names.sort();
        let mut errors = Vec::new();
        let devices = names
            .into_iter()
            .map(|d| {
                let s = read_settings(&self.paths, &d, &mut errors);
                (d, s)
            })
            .collect();
        Ok(Collected::new(AnySample::Queue(Sample { devices }), errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn schedulers() {
        let (a, av) = parse_scheduler("mq-deadline kyber [bfq] none\n").unwrap();
        assert_eq!((a.as_str(), av.len()), ("bfq", 4));
        assert_eq!(parse_scheduler("[none] mq-deadline").unwrap().0, "none");
        assert_eq!(parse_scheduler("none").unwrap().0, "none");
        assert_eq!(parse_scheduler("noop deadline"), None);
        assert_eq!(parse_scheduler(""), None);
    }

    proptest! {
        #[test]
        fn scheduler_never_panics(s in "\\PC{0,80}") {
            if let Some((active, available)) = parse_scheduler(&s) {
                prop_assert!(available.contains(&active));
            }
        }
    }
}
