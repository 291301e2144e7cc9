//! Every host path the agent reads goes through [`Paths`], so each collector can run against a
//! fixture tree or a host mounted under `/host` (node_exporter's `--path.*` flags).
//!
//! A path of the host's root (`--path.rootfs`) is resolved as a chroot into it would: an absolute
//! symlink inside the root (`/var/run -> /run`, as on every Debian) points into the root, not
//! into the agent's own filesystem, and `..` stops at the root ([`resolve_in`]).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// Symlinks followed in one resolution before it is a loop: the kernel's own limit (MAXSYMLINKS).
pub const MAX_SYMLINKS: usize = 40;

/// What a path that could not be resolved for a symlink loop becomes under the root: a name
/// nothing on a host has, so opening it fails (naming the loop) instead of following the loop's
/// symlink out of the root.
pub const LOOP_MARK: &str = ".storwatch-symlink-loop";

#[derive(Debug, Clone)]
pub struct Paths {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
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

    /// A host path (`/var/lib/docker`) as seen from here: under `--path.rootfs`, its symlinks
    /// resolved inside the root ([`resolve_in`]). A symlink loop gives a path under
    /// [`LOOP_MARK`], which does not exist.
    pub fn root(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        if self.rootfs == Path::new("/") {
            // The kernel resolves the same way on the real root.
            return p.to_owned();
        }
        resolve_in(&self.rootfs, p)
            .unwrap_or_else(|_| self.rootfs.join(LOOP_MARK).join(p.strip_prefix("/").unwrap_or(p)))
    }
}

/// `path` resolved inside `root` as the kernel would after `chroot(root)` (or `openat2` with
/// `RESOLVE_IN_ROOT`): each existing symlink is followed, an absolute target from `root`, a
/// relative one from its directory, and `..` never goes above `root`. From the first component
/// that is missing, not a directory or unreadable on, the rest is joined as it is, so the
/// caller's open fails there as the kernel's lookup would (it walks left to right). `Err`
/// (ELOOP) after [`MAX_SYMLINKS`] symlinks.
pub fn resolve_in(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut todo: VecDeque<OsString> = parts(path).collect();
    let mut done: Vec<OsString> = Vec::new();
    let mut followed = 0;
    while let Some(part) = todo.pop_front() {
        let dir = done.iter().fold(root.to_owned(), |p, c| p.join(c));
        if part == "." || part == ".." {
            if !dir.is_dir() {
                done.push(part);
                done.extend(todo.drain(..));
            } else if part == ".." {
                done.pop();
            }
            continue;
        }
        match link_target(&dir.join(&part), !todo.is_empty()) {
            Step::Into => done.push(part),
            Step::Stop => {
                done.push(part);
                done.extend(todo.drain(..));
            }
            Step::Follow(target) => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                if target.is_absolute() {
                    done.clear();
                }
                for p in parts(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(p);
                }
            }
        }
    }
    Ok(done.iter().fold(root.to_owned(), |p, c| p.join(c)))
}

/// The components of a path, `.` and `..` kept (`Path::components` drops an inner `.`, which
/// the kernel still requires to be a directory).
fn parts(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty())
        .map(|p| std::ffi::OsStr::from_bytes(p).to_owned())
}

enum Step {
    /// A directory (or the last component): go on below it.
    Into,
    /// A symlink to this target.
    Follow(PathBuf),
    /// Missing, unreadable, or a file with more to come: the lookup ends here.
    Stop,
}

/// What resolving goes on with at `path`; `more` when components follow it.
fn link_target(path: &Path, more: bool) -> Step {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::read_link(path).map_or(Step::Stop, Step::Follow),
        Ok(m) if m.is_dir() || !more => Step::Into,
        _ => Step::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::{MetadataExt, symlink};
    use std::path::Component;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["run", "var/lib/docker", "etc"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::write(r.join("run/docker.sock"), "").unwrap();
        symlink("/run", r.join("var/run")).unwrap();
        symlink("../../etc", r.join("var/lib/etc")).unwrap();
        symlink("../../../../../../run", r.join("var/lib/up")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("/loop1", r.join("loop2")).unwrap();
        d
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let d = tree();
        let r = d.path();
        let paths = Paths { rootfs: r.to_owned(), ..Paths::default() };
        assert_eq!(paths.root("/var/run/docker.sock"), r.join("run/docker.sock"));
        assert_eq!(paths.root("var/run/docker.sock"), r.join("run/docker.sock"), "relative = from /");
        assert_eq!(paths.root("/var/lib/etc"), r.join("etc"), "a relative link from its directory");
        assert_eq!(paths.root("/var/lib/up/docker.sock"), r.join("run/docker.sock"), "`..` stops at root");
        assert_eq!(paths.root("/../../run"), r.join("run"));
        assert_eq!(paths.root("/var/run/absent/x"), r.join("run/absent/x"), "missing parts joined");
        assert_eq!(paths.root("/var/run/absent/../.."), r.join("run/absent/../.."), "and not undone");
        assert_eq!(paths.root("/var/lib/docker"), r.join("var/lib/docker"));
        let looped = paths.root("/loop1/x");
        assert_eq!(looped, r.join(LOOP_MARK).join("loop1/x"));
        assert!(!looped.exists());
        assert_eq!(resolve_in(r, Path::new("/loop1")).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        // On the real root, the kernel resolves.
        assert_eq!(Paths::default().root("/var/run/docker.sock"), Path::new("/var/run/docker.sock"));
    }

    /// The kernel's own answer: `openat2(root, path, RESOLVE_IN_ROOT)` (Linux 5.6).
    fn kernel(root: &Path, path: &Path) -> io::Result<std::fs::Metadata> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        let dir = std::fs::File::open(root)?;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: open_how is plain data; zeroed is a valid value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT;
        // SAFETY: valid descriptor, NUL-terminated path, `how` valid for its size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just opened, owned from here.
        let f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        f.metadata()
    }

    const NAMES: [&str; 4] = ["a", "b", "c", "d"];

    /// A path of the names above, `..` and `.`, absolute or not.
    fn path_strategy() -> impl Strategy<Value = String> {
        let part = prop::sample::select(vec!["a", "b", "c", "d", "..", "."]);
        (any::<bool>(), prop::collection::vec(part, 0..6)).prop_map(|(abs, v)| match (abs, v.join("/")) {
            (true, p) => format!("/{p}"),
            (false, p) if p.is_empty() => ".".to_owned(),
            (false, p) => p,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Random trees of directories, files and symlinks (absolute, relative, with `..`, in
        /// loops) in a root inside a directory that has every name too (so an escape would
        /// find something): the resolved path stays inside the root, and names the file the
        /// kernel finds with RESOLVE_IN_ROOT, or nothing when the kernel finds nothing.
        #[test]
        fn resolves_as_the_kernel_does_in_root(
            entries in prop::collection::vec((path_strategy(), 0u8..3, path_strategy()), 0..12),
            query in path_strategy(),
        ) {
            let outer = tempfile::tempdir().unwrap();
            for n in NAMES {
                std::fs::create_dir_all(outer.path().join(n).join(n)).unwrap();
            }
            let root = outer.path().join("root");
            std::fs::create_dir(&root).unwrap();
            for (at, kind, target) in &entries {
                // Made where the kernel resolves `at` to (its parent must be a directory).
                let Ok(place) = resolve_in(&root, Path::new(at)) else { continue };
                if place == root || place.symlink_metadata().is_ok() {
                    continue;
                }
                let _ = match kind {
                    0 => std::fs::create_dir(&place),
                    1 => std::fs::write(&place, at),
                    _ => symlink(target, &place),
                };
            }
            let ours = resolve_in(&root, Path::new(&query));
            let theirs = kernel(&root, Path::new(&query));
            match (&ours, &theirs) {
                (Ok(p), Ok(k)) => {
                    prop_assert!(p.starts_with(&root), "{p:?} outside the root");
                    prop_assert!(!p.components().any(|c| c == Component::ParentDir), "{p:?}");
                    let m = std::fs::metadata(p);
                    prop_assert!(m.is_ok(), "{query:?}: kernel found it, {p:?} does not exist");
                    let m = m.unwrap();
                    prop_assert_eq!((m.dev(), m.ino()), (k.dev(), k.ino()), "{} -> {:?}", query, p);
                }
                (Ok(p), Err(e)) => {
                    prop_assert!(p.starts_with(&root));
                    prop_assert!(std::fs::metadata(p).is_err(), "{query:?}: kernel {e}, ours {p:?} exists");
                }
                (Err(_), Err(e)) => prop_assert_eq!(e.raw_os_error(), Some(libc::ELOOP)),
                (Err(e), Ok(_)) => prop_assert!(false, "{query:?}: ours {e}, the kernel resolved it"),
            }
        }
    }
}
