//! Loop devices for the tests that do real block I/O (tests/loop_io.rs, tests/biolatency.rs):
//! attached over a file in a temporary directory, detached (or re-created) on drop, and a lock so
//! the tests of one binary take turns with them.

use std::ffi::{c_int, c_ulong};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `<linux/loop.h>`: ioctls on /dev/loop-control taking a device number.
const LOOP_CTL_ADD: c_ulong = 0x4C80;
const LOOP_CTL_REMOVE: c_ulong = 0x4C81;

static LOOP_DEVICES: Mutex<()> = Mutex::new(());

/// One test at a time; a failed test leaves the lock poisoned, which is no reason to fail another.
pub fn serial() -> MutexGuard<'static, ()> {
    LOOP_DEVICES.lock().unwrap_or_else(|e| e.into_inner())
}

/// `ioctl(/dev/loop-control, request, index)`.
fn loop_control(request: c_ulong, index: u32) -> std::io::Result<c_int> {
    let ctl = File::options().read(true).write(true).open("/dev/loop-control")?;
    // SAFETY: both requests take the device number by value; the fd is open for the call.
    let r = unsafe { libc::ioctl(ctl.as_raw_fd(), request, c_ulong::from(index)) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r) }
}

/// A loop device over a sparse file in a temporary directory. Dropping it detaches the device,
/// and re-creates the node if a test removed it and failed before adding it back, so the machine
/// is left with the loop devices it had.
pub struct LoopDevice {
    index: u32,
    backing: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDevice {
    /// Attaches a new loop device over a sparse file of `size` bytes; with `direct_io` the device
    /// reaches its backing file with direct I/O, so its requests take the real disk's time.
    pub fn attach(size: u64, direct_io: bool) -> LoopDevice {
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("backing.img");
        File::create(&backing).unwrap().set_len(size).unwrap();
        let mut losetup = Command::new("losetup");
        losetup.args(["-f", "--show"]);
        if direct_io {
            losetup.arg("--direct-io=on");
        }
        let out = losetup.arg(&backing).output().unwrap();
        assert!(out.status.success(), "losetup -f failed: {}", String::from_utf8_lossy(&out.stderr));
        let node = String::from_utf8(out.stdout).unwrap();
        let index = node.trim().strip_prefix("/dev/loop").and_then(|n| n.parse().ok());
        let index = index.unwrap_or_else(|| panic!("losetup printed {node:?}"));
        LoopDevice { index, backing, _dir: dir }
    }

    pub fn name(&self) -> String {
        format!("loop{}", self.index)
    }

    pub fn node(&self) -> PathBuf {
        PathBuf::from(format!("/dev/loop{}", self.index))
    }

    /// (major, minor) from sysfs.
    pub fn dev(&self) -> (u32, u32) {
        let text = std::fs::read_to_string(format!("/sys/block/loop{}/dev", self.index)).unwrap();
        let (major, minor) = text.trim().split_once(':').unwrap();
        (major.parse().unwrap(), minor.parse().unwrap())
    }

    pub fn exists(&self) -> bool {
        Path::new(&format!("/sys/block/loop{}", self.index)).exists()
    }

    pub fn attached(&self) -> bool {
        Path::new(&format!("/sys/block/loop{}/loop/backing_file", self.index)).exists()
    }

    pub fn detach(&self) {
        let out = Command::new("losetup").arg("-d").arg(self.node()).output().unwrap();
        assert!(out.status.success(), "losetup -d failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn reattach(&self) {
        let out = Command::new("losetup").arg(self.node()).arg(&self.backing).output().unwrap();
        assert!(
            out.status.success(),
            "losetup {} failed: {}",
            self.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// LOOP_CTL_REMOVE: the disk goes away entirely (gendisk deleted, line gone from diskstats).
    /// EBUSY for a moment after a detach is retried.
    pub fn remove(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match loop_control(LOOP_CTL_REMOVE, self.index) {
                Ok(_) => return,
                Err(e) if e.raw_os_error() == Some(16) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("LOOP_CTL_REMOVE {}: {e}", self.name()),
            }
        }
    }

    /// LOOP_CTL_ADD with the same number: a new disk, counters from zero; devtmpfs makes the node.
    pub fn add(&self) {
        let n = loop_control(LOOP_CTL_ADD, self.index)
            .unwrap_or_else(|e| panic!("LOOP_CTL_ADD {}: {e}", self.name()));
        assert_eq!(n, self.index as c_int);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.node().exists() {
            assert!(Instant::now() < deadline, "{} did not appear", self.node().display());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if !self.exists() {
            let _ = loop_control(LOOP_CTL_ADD, self.index);
        } else if self.attached() {
            let _ = Command::new("losetup").arg("-d").arg(self.node()).status();
        }
    }
}
