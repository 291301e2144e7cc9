//! The mount table (proc(5) `/proc/<pid>/mountinfo`): the one parser of it, and the mount that
//! holds a path. Read by the host source (the filesystems of the watched paths) and the docker
//! source (those of the data root and the volumes).
//!
//! ```text
//! 42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw,discard
//! ```

use std::path::Path;

use crate::error::CollectError;
use crate::paths::Paths;

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

/// The host's mounts: `/proc/1/mountinfo` (else `/proc/self/mountinfo`), bad lines as errors.
pub fn read_mountinfo(paths: &Paths, errors: &mut Vec<CollectError>) -> Option<Vec<Mount>> {
    // PID 1's view is the host's even when the agent runs in its own mount namespace.
    let candidates = [paths.proc("1/mountinfo"), paths.proc("self/mountinfo")];
    let Some(path) = candidates.iter().find(|p| p.exists()) else {
        // Every procfs has them: a tree without is not a host without mounts.
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        errors.push(CollectError::io(&candidates[1], &e));
        return None;
    };
    let text = std::fs::read(path).map_err(|e| errors.push(CollectError::io(path, &e))).ok()?;
    let (mounts, bad) = parse_mountinfo(&String::from_utf8_lossy(&text));
    for n in bad {
        errors.push(CollectError::parse(path, format_args!("line {n}: not a mountinfo line")));
    }
    Some(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        fn never_panics(s in "\\PC{0,300}") {
            let (mounts, _) = parse_mountinfo(&s);
            let _ = mount_of(&mounts, Path::new("/var/lib/docker"));
            let _ = unescape(&s);
        }

        #[test]
        fn mountinfo_like_lines_never_panic(s in "([0-9]{1,3} ){2}[0-9:]{3,5} [/a-z\\\\0-7]{1,12} [/a-z\\\\0-7]{1,12} [a-z,]{0,10}( [a-z:0-9]{1,8}){0,2}( -)?( [a-z0-9/]{1,6}){0,3}\n{0,2}") {
            let _ = parse_mountinfo(&s);
        }
    }
}
