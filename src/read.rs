//! Reading small kernel files (sysfs attributes, procfs files) in as few system calls as the
//! kernel allows, with "absent" kept apart from "failed".

use std::ffi::CStr;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::CollectError;

/// Reads a small file in as few system calls as the kernel allows: open, one read, close. A sysfs
/// attribute is at most a page and comes whole in one read, so a read shorter than a page is the
/// whole file (no size query, no second read for end of file, as `std::fs::read` makes: on a host
/// with thousands of devices these are most of a collection's cost). Longer files are read on to
/// their end.
pub fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    read_to_end_small(std::fs::File::open(path)?)
}

/// The first read goes into a page on the stack and only what came is allocated: a 4 KiB heap
/// buffer per attribute is past the allocator's small-size caches and cost more than the read.
fn read_to_end_small(mut file: std::fs::File) -> io::Result<Vec<u8>> {
    const PAGE: usize = 4096;
    let mut page = [0u8; PAGE];
    let first = loop {
        match file.read(&mut page) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    let mut buf = page[..first].to_vec();
    if first == PAGE {
        file.read_to_end(&mut buf)?;
    }
    Ok(buf)
}

/// A sysfs directory whose attributes are read by name: the directory's path is walked once,
/// then each open walks one component (`openat`). Path lookup is most of the kernel's cost of
/// a small sysfs read, so a device's eight queue files cost about a third less this way.
pub struct AttrDir {
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl AttrDir {
    /// Opens `path` as an `O_PATH` directory handle (no read permission needed).
    pub fn open(path: PathBuf) -> io::Result<AttrDir> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
        // SAFETY: `c` is a valid NUL-terminated string; the returned descriptor is checked and
        // owned from here on.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(AttrDir { fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }, path })
    }

    /// Reads the attribute `name` (a path relative to the directory) as [`read_small`] does.
    pub fn read(&self, name: &CStr) -> io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        // SAFETY: `self.fd` is an open directory descriptor and `name` is NUL-terminated; the
        // returned descriptor is checked and owned by the File.
        let fd =
            unsafe { libc::openat(self.fd.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        read_to_end_small(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    }

    /// Reads the attribute `name` as [`read_attr`] does.
    pub fn attr(&self, name: &CStr) -> Result<Option<String>, CollectError> {
        attr_text(self.read(name), || self.path(name))
    }

    /// The path of the attribute `name`, for error messages.
    pub fn path(&self, name: &CStr) -> PathBuf {
        self.path.join(name.to_string_lossy().as_ref())
    }
}

/// Reads a small sysfs/procfs attribute, trimmed. `Ok(None)` when the file does not exist:
/// "not present here" is not an error.
pub fn read_attr(path: &Path) -> Result<Option<String>, CollectError> {
    attr_text(read_small(path), || path.to_owned())
}

/// [`read_attr`] that records a failure in `errors` and goes on with `None`: a source reading
/// many attributes reports each one it could not read and exports the rest.
pub fn attr_or_note(path: &Path, errors: &mut Vec<CollectError>) -> Option<String> {
    read_attr(path).unwrap_or_else(|e| {
        errors.push(e);
        None
    })
}

/// A read attribute as trimmed text; an absent one is `None`, another failure an io error on
/// `path` (made only then).
fn attr_text(
    read: io::Result<Vec<u8>>,
    path: impl FnOnce() -> PathBuf,
) -> Result<Option<String>, CollectError> {
    match read {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CollectError::io(&path(), &e)),
    }
}

/// The entries of a directory, sorted; empty when it cannot be read.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| it.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The last component of a path as text ("" for none).
pub fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_small_reads_whole_files_of_any_length() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 4095, 4096, 4097, 8192, 20_000] {
            let path = dir.path().join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            assert_eq!(read_small(&path).unwrap(), data, "{len} bytes");
        }
        assert_eq!(read_small(&dir.path().join("absent")).unwrap_err().kind(), io::ErrorKind::NotFound);
        // Real kernel files: a sysfs attribute and a procfs file longer than a page on most hosts.
        assert_eq!(
            read_small(Path::new("/sys/kernel/mm/transparent_hugepage/enabled")).ok(),
            std::fs::read("/sys/kernel/mm/transparent_hugepage/enabled").ok()
        );
        let maps = read_small(Path::new("/proc/self/mounts")).unwrap();
        assert!(maps.ends_with(b"\n") && maps.len() > 100);
    }

    #[test]
    fn absent_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), " 42\n").unwrap();
        assert_eq!(read_attr(&dir.path().join("a")).unwrap().as_deref(), Some("42"));
        assert_eq!(read_attr(&dir.path().join("b")).unwrap(), None);
        let mut errors = Vec::new();
        assert_eq!(attr_or_note(dir.path(), &mut errors), None, "a directory: EISDIR");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.starts_with(&dir.path().display().to_string()), "{:?}", errors);
        let d = AttrDir::open(dir.path().to_owned()).unwrap();
        assert_eq!(d.attr(c"a").unwrap().as_deref(), Some("42"));
        assert_eq!(d.attr(c"b").unwrap(), None);
    }
}
