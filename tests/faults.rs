//! Bad input from the host: garbled and truncated diskstats lines, unreadable sysfs files, the
//! diskstats file vanishing and coming back. The other devices keep being reported, the error
//! counters move, and the agent runs on.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Agent, fixture_procfs_copy, fixture_sysfs, sample};

const PARSE: &str = "storwatch_collector_errors_total{collector=\"diskstats\",kind=\"parse\"}";
const IO: &str = "storwatch_collector_errors_total{collector=\"diskstats\",kind=\"io\"}";
const PERMISSION: &str = "storwatch_collector_errors_total{collector=\"diskstats\",kind=\"permission\"}";
const SUCCESS: &str = "storwatch_collector_success{collector=\"diskstats\"}";

fn reads(body: &str, dev: &str) -> Option<f64> {
    sample(body, &format!("storwatch_disk_reads_completed_total{{device=\"{dev}\"}}"))
}

/// How long a test waits for what it expects to see in /metrics.
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn garbled_lines_and_unreadable_files_cost_only_themselves() {
    let proc = fixture_procfs_copy();
    let diskstats = proc.path().join("diskstats");
    let mut text = std::fs::read_to_string(&diskstats).unwrap();
    text.push_str("   8     48 sdd 1 2 3\n"); // truncated
    text.push_str("   8     64 sde 1 2 three 4 5 6 7 8 0 10 11\n"); // not a number
    text.push_str("\u{0}\u{1}garbage\n");
    text.push_str("   8     80 sdf 7 0 56 1 0 0 0 0 0 1 1"); // last line without newline is fine
    std::fs::write(&diskstats, text).unwrap();
    let sys = fixture_sysfs();
    // A sysfs attribute that cannot be read: a directory where a file should be (EISDIR).
    let rotational = sys.path().join("sys/block/sda/queue/rotational");
    std::fs::remove_file(&rotational).unwrap();
    std::fs::create_dir(&rotational).unwrap();

    let mut agent = Agent::start(&[
        &format!("--path.procfs={}", proc.path().display()),
        &format!("--path.sysfs={}", sys.path().join("sys").display()),
        "--collector.diskstats.interval=200ms",
    ]);
    agent.wait_ready();
    let body = agent.wait_for(WAIT, "a window", |b| b.contains("storwatch_disk_window_seconds "));
    assert_eq!(sample(&body, SUCCESS), Some(1.0));
    assert_eq!(reads(&body, "sda"), Some(25354637.0), "sda still reported");
    assert_eq!(reads(&body, "sdf"), Some(7.0), "the line after the garbage still counts");
    assert_eq!(reads(&body, "nvme0n1"), Some(47114.0));
    assert_eq!(reads(&body, "sdd"), None);
    assert_eq!(reads(&body, "sde"), None);
    assert!(sample(&body, PARSE).unwrap() >= 3.0, "three bad lines per run");
    assert!(sample(&body, IO).unwrap() >= 1.0, "the unreadable rotational file");
    // The facts that could be read are still there; the unreadable one is empty.
    assert!(body.contains("storwatch_disk_info{device=\"sda\",major=\"8\",minor=\"0\",model=\"\",serial=\"\",rotational=\"\",logical_block_size=\"512\"} 1"), "{body}");
    let first = sample(&body, PARSE).unwrap();
    let body = agent.wait_for(WAIT, "errors counted again", |b| sample(b, PARSE).unwrap() > first);
    assert_eq!(sample(&body, SUCCESS), Some(1.0));
    assert!(agent.alive());
    let log = agent.drain_log().join("\n");
    let warnings = log.lines().filter(|l| l.contains("collector error collector=\"diskstats\"")).count();
    assert_eq!(warnings, 1, "one warning, then rate-limited to one line a minute:\n{log}");
    assert!(log.contains("collector error collector=\"queue\""), "queue reads rotational too:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn diskstats_vanishing_truncated_and_back() {
    let proc = fixture_procfs_copy();
    let diskstats = proc.path().join("diskstats");
    let full = std::fs::read(&diskstats).unwrap();
    let mut agent = Agent::start(&[
        &format!("--path.procfs={}", proc.path().display()),
        "--path.sysfs=/nonexistent",
        "--collector.diskstats.interval=100ms",
    ]);
    agent.wait_ready();
    agent.wait_for(WAIT, "sda", |b| reads(b, "sda").is_some());

    std::fs::remove_file(&diskstats).unwrap();
    let body = agent.wait_for(WAIT, "failure", |b| sample(b, SUCCESS) == Some(0.0));
    assert!(sample(&body, IO).unwrap() >= 1.0);
    assert_eq!(reads(&body, "sda"), None, "no stale samples from a failed source");
    assert!(body.contains("storwatch_build_info{"), "the agent still serves");

    // Cut mid-line: the devices before the cut are reported, the cut line is a parse error.
    let cut = full.iter().position(|&b| b == b's').unwrap() + 200;
    std::fs::write(&diskstats, &full[..cut]).unwrap();
    let body = agent.wait_for(WAIT, "recovery", |b| sample(b, SUCCESS) == Some(1.0));
    assert_eq!(reads(&body, "sda"), Some(25354637.0));
    assert_eq!(reads(&body, "vda"), None, "vda comes after the cut");
    assert!(sample(&body, PARSE).unwrap() >= 1.0);

    std::fs::write(&diskstats, &full).unwrap();
    let body = agent.wait_for(WAIT, "vda back", |b| reads(b, "vda").is_some());
    let awaits = common::samples(&body, "storwatch_disk_await_seconds");
    assert!(awaits.iter().all(|(_, v)| v.is_finite() && *v >= 0.0), "{awaits:?}");
    assert!(agent.alive());
}

#[test]
fn permission_denied_is_its_own_kind() {
    if !common::require_root() {
        return;
    }
    // Root reads any file, so the agent runs as nobody here to meet a real EACCES.
    let sys = fixture_sysfs();
    std::fs::set_permissions(sys.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let device = sys.path().join("sys/block/sda/device");
    std::fs::create_dir(&device).unwrap();
    let model = device.join("model");
    std::fs::write(&model, "SECRET\n").unwrap();
    std::fs::set_permissions(&model, std::fs::Permissions::from_mode(0o000)).unwrap();
    let procfs = common::fixtures().join("proc");
    assert!(Path::new(&procfs).join("diskstats").exists());
    let agent = Agent::start_wrapped(
        &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        &[
            &format!("--path.procfs={}", procfs.display()),
            &format!("--path.sysfs={}", sys.path().join("sys").display()),
            "--collector.diskstats.interval=1h",
            "--collector.diskstats.device-include=^sd",
        ],
    );
    agent.wait_ready();
    let body = agent.metrics();
    assert!(sample(&body, PERMISSION).unwrap() >= 1.0, "{body}");
    assert_eq!(sample(&body, SUCCESS), Some(1.0));
    assert!(body.contains("storwatch_disk_info{device=\"sda\",major=\"8\",minor=\"0\",model=\"\",serial=\"\",rotational=\"1\""), "{body}");
    assert!(!body.contains("SECRET"));
}

/// A real EIO from the kernel: the fixture's `sda/queue/scheduler` becomes a link to
/// /proc/self/mem, which the kernel answers with EIO when read from offset 0 (address 0 is never
/// mapped). Only that file is lost: the queue collector counts an io error, sda's other queue
/// settings are still exported, and the agent serves on.
#[test]
fn eio_from_the_kernel_costs_only_that_file() {
    let sys = fixture_sysfs();
    let scheduler = sys.path().join("sys/block/sda/queue/scheduler");
    std::fs::remove_file(&scheduler).unwrap();
    std::os::unix::fs::symlink("/proc/self/mem", &scheduler).unwrap();
    let err = std::fs::read_to_string(&scheduler).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "the kernel answers EIO: {err}");

    let mut agent = Agent::start(&[
        &format!("--path.procfs={}", common::fixtures().join("proc").display()),
        &format!("--path.sysfs={}", sys.path().join("sys").display()),
        "--collector.queue.interval=200ms",
    ]);
    agent.wait_ready();
    let io = "storwatch_collector_errors_total{collector=\"queue\",kind=\"io\"}";
    let body = agent.wait_for(WAIT, "the EIO counted", |b| sample(b, io).is_some_and(|v| v >= 1.0));
    assert_eq!(sample(&body, "storwatch_collector_success{collector=\"queue\"}"), Some(1.0));
    assert_eq!(common::samples(&body, "storwatch_disk_scheduler_info"), [], "sda's was the only one");
    assert_eq!(
        sample(&body, "storwatch_disk_rotational{device=\"sda\"}"),
        Some(1.0),
        "sda's other files stay"
    );
    assert_eq!(sample(&body, "storwatch_disk_nr_requests{device=\"sda\"}"), Some(64.0));
    let first = sample(&body, io).unwrap();
    agent.wait_for(WAIT, "the EIO counted again", |b| sample(b, io).is_some_and(|v| v > first));
    assert!(agent.alive());
    let log = agent.drain_log().join("\n");
    assert!(log.contains("Input/output error"), "the log names the error:\n{log}");
}

/// /dev/kmsg going away under the reader. The kernel's own log cannot be closed under the agent,
/// so a FIFO at `<path.dev>/kmsg` stands in for it (a fake, said here). The test holds the FIFO
/// open read-write (a writer that never blocks): records written to it are counted like kernel
/// records; when the test closes it, the reader sees end of file and the kmsg collector fails and
/// says why (`collector_success` 0, an io error counted) while the other collectors go on; when
/// the FIFO has a writer again the reader reopens and counts on, not counting a replayed record
/// twice.
#[test]
fn the_kernel_log_closing_and_coming_back() {
    let (dev, fifo) = kmsg_fifo();
    let open = || std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    let write = |f: &mut std::fs::File, seq: u64| write_record(f, seq, seq * 1000);

    let mut w = open();
    let mut agent = Agent::start(&[
        &format!("--path.procfs={}", common::fixtures().join("proc").display()),
        &format!("--path.dev={}", dev.path().display()),
        "--collector.kmsg.interval=100ms",
        "--collector.diskstats.interval=200ms",
    ]);
    agent.wait_ready();
    let success = "storwatch_collector_success{collector=\"kmsg\"}";
    let errors = "storwatch_kernel_storage_errors_total{device=\"sdq\",class=\"block_io\"}";
    // One record per read, as /dev/kmsg gives them: the next is written once the last is counted.
    write(&mut w, 1);
    agent.wait_for(WAIT, "record 1", |b| sample(b, errors) == Some(1.0));
    write(&mut w, 2);
    let body = agent.wait_for(WAIT, "record 2", |b| sample(b, errors) == Some(2.0));
    assert_eq!(sample(&body, success), Some(1.0));

    drop(w); // no writer left: the reader reads end of file
    let body = agent.wait_for(WAIT, "kmsg failing", |b| sample(b, success) == Some(0.0));
    assert!(
        sample(&body, "storwatch_collector_errors_total{collector=\"kmsg\",kind=\"io\"}").unwrap() >= 1.0
    );
    assert_eq!(sample(&body, "storwatch_collector_success{collector=\"diskstats\"}"), Some(1.0));

    // Back: record 2 again (as a reopened /dev/kmsg replays the ring buffer), then a new one.
    let mut w = open();
    write(&mut w, 2);
    agent.wait_for(WAIT, "kmsg reading again", |b| sample(b, success) == Some(1.0));
    let records = "storwatch_kernel_log_records_total";
    // The replayed record has been read once the FIFO holds no unread bytes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending(&w) > 0 {
        assert!(Instant::now() < deadline, "record 2 never read again");
        std::thread::sleep(Duration::from_millis(20));
    }
    write(&mut w, 3);
    let body = agent.wait_for(WAIT, "record 3", |b| sample(b, errors) == Some(3.0));
    assert_eq!(sample(&body, records), Some(3.0), "records 1, 2 and 3, the replayed 2 not again");
    assert!(agent.alive());
    let log = agent.drain_log().join("\n");
    assert!(log.contains("the kernel log closed"), "{log}");
}

/// Bytes written to a FIFO and not read yet.
fn pending(f: &std::fs::File) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, on a descriptor `f` keeps open.
    assert_eq!(unsafe { libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n) }, 0);
    n
}

/// A FIFO standing in for /dev/kmsg at `<dir>/kmsg` (the directory is the agent's `--path.dev`).
fn kmsg_fifo() -> (tempfile::TempDir, std::path::PathBuf) {
    let dev = tempfile::tempdir().unwrap();
    let fifo = dev.path().join("kmsg");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    (dev, fifo)
}

/// One kernel log record, in /dev/kmsg's format: a block I/O error on `sdq`.
fn write_record(f: &mut std::fs::File, seq: u64, timestamp_us: u64) {
    let line = format!(
        "3,{seq},{timestamp_us},-;I/O error, dev sdq, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2\n"
    );
    std::io::Write::write_all(f, line.as_bytes()).unwrap();
}

/// The wall clock jumping a day forward, then a day back, under a running agent. The machine's
/// clock cannot be moved under a test, so libfaketime (Debian's `faketime`) moves CLOCK_REALTIME
/// for the agent alone and leaves its monotonic clock. A storage error logged just now stays
/// "just now" for the device_errors check, because ages come from the monotonic clock; its
/// exported timestamp moves with the wall clock; the disk rates, on the monotonic clock too, keep
/// their window; the agent serves on.
#[test]
fn the_wall_clock_jumping() {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    if !Path::new(lib).exists() {
        assert!(!common::in_ci(), "{lib} missing: scripts/install-test-deps.sh installs faketime");
        eprintln!("skipped: {lib} missing (apt-get install faketime)");
        return;
    }
    let (dev, fifo) = kmsg_fifo();
    let clock = dev.path().join("clock");
    std::fs::write(&clock, "+0\n").unwrap();
    let mut w = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    let preload = format!("LD_PRELOAD={lib}");
    let file = format!("FAKETIME_TIMESTAMP_FILE={}", clock.display());
    let wrapper = ["env", &preload, &file, "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"];
    let mut agent = Agent::start_wrapped(
        &wrapper,
        &[
            &format!("--path.procfs={}", common::fixtures().join("proc").display()),
            &format!("--path.dev={}", dev.path().display()),
            "--collector.kmsg.interval=100ms",
            "--collector.diskstats.interval=200ms",
        ],
    );
    agent.wait_ready();
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    write_record(&mut w, 1, now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000);
    let last = "storwatch_kernel_storage_last_error_timestamp_seconds{device=\"sdq\",class=\"block_io\"}";
    let verdict = "storwatch_check_ok{check=\"device_errors\",subject=\"sdq\"}";
    let body = agent.wait_for(WAIT, "the error", |b| sample(b, last).is_some());
    assert_eq!(sample(&body, verdict), Some(0.0), "an error just now fails the check");
    let logged = sample(&body, last).unwrap();
    let real_now =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((logged - real_now()).abs() < 5.0, "logged {logged}, now {}", real_now());

    let success = "storwatch_collector_last_success_timestamp_seconds{collector=\"kmsg\"}";
    for (offset, days) in [("+1d", 1.0), ("-1d", -1.0)] {
        std::fs::write(&clock, format!("{offset}\n")).unwrap();
        let shifted =
            |b: &str| sample(b, success).is_some_and(|t| (t - real_now() - days * 86400.0).abs() < 60.0);
        let first = agent.wait_for(WAIT, "the jumped clock in the agent", shifted);
        // A whole kmsg run after the jump.
        let body = agent.wait_for(WAIT, "a run after the jump", |b| {
            shifted(b) && sample(b, success) > sample(&first, success)
        });
        assert_eq!(sample(&body, verdict), Some(0.0), "{offset}: the error is still recent");
        let moved = sample(&body, last).unwrap() - logged;
        assert!((moved - days * 86400.0).abs() < 5.0, "{offset}: the timestamp moved by {moved} s");
        let window = sample(&body, "storwatch_disk_window_seconds").unwrap();
        assert!(window > 0.0 && window < 60.0, "{offset}: the rates' window is {window} s");
        assert_eq!(sample(&body, "storwatch_collector_success{collector=\"diskstats\"}"), Some(1.0));
    }
    assert!(agent.alive());
}

/// tests/data/errfs.c, built and mounted on a temporary directory; unmounted when dropped.
/// None (a skip, or a failure under CI) without root, gcc or libfuse3's headers.
struct ErrFs {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl ErrFs {
    fn mount() -> Option<ErrFs> {
        if !common::require_root() || common::tool("gcc").is_none() || common::tool("pkg-config").is_none() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let flags =
            std::process::Command::new("pkg-config").args(["--cflags", "--libs", "fuse3"]).output().unwrap();
        if !flags.status.success() {
            assert!(!common::in_ci(), "libfuse3-dev is required under CI=true; scripts/test.sh installs it");
            eprintln!("skipping: libfuse3-dev is not installed");
            return None;
        }
        let bin = dir.path().join("errfs");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/errfs.c");
        let built = std::process::Command::new("gcc")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .args(String::from_utf8_lossy(&flags.stdout).split_whitespace())
            .status()
            .unwrap();
        assert!(built.success(), "building {}", src.display());
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let child = std::process::Command::new(&bin).args(["-f", "-s"]).arg(&mnt).spawn().unwrap();
        let fs = ErrFs { child, dir };
        let deadline = Instant::now() + WAIT;
        while std::fs::read_to_string(fs.file("value")).ok().as_deref() != Some("42000\n") {
            assert!(Instant::now() < deadline, "errfs did not come up on {}", mnt.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(fs)
    }

    fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("mnt").join(name)
    }
}

impl Drop for ErrFs {
    fn drop(&mut self) {
        // SIGTERM: libfuse unmounts and exits.
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// EAGAIN from a sysfs attribute, as hwmon drivers answer while a sensor is busy. No file on an
/// ordinary filesystem can return it, so the attribute is a link into errfs (tests/data/errfs.c),
/// a FUSE filesystem whose `eagain` file the real kernel reads as EAGAIN: a stand-in for the
/// driver, said here. The chip's other sensor, read through the same FUSE mount, is still
/// exported; the hwmon collector counts an io error every run and says which file; the agent serves on.
#[test]
fn eagain_from_a_sensor_costs_only_that_reading() {
    let Some(fs) = ErrFs::mount() else { return };
    let err = std::fs::read(fs.file("eagain")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EAGAIN), "the kernel answers EAGAIN: {err}");
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    let chip = sys.join("devices/platform/busy.0/hwmon/hwmon0");
    std::fs::create_dir_all(&chip).unwrap();
    std::fs::write(chip.join("name"), "busy\n").unwrap();
    std::os::unix::fs::symlink(fs.file("eagain"), chip.join("temp1_input")).unwrap();
    std::os::unix::fs::symlink(fs.file("value"), chip.join("temp2_input")).unwrap();
    std::os::unix::fs::symlink("../../../busy.0", chip.join("device")).unwrap();
    std::fs::create_dir_all(sys.join("class/hwmon")).unwrap();
    std::os::unix::fs::symlink("../../devices/platform/busy.0/hwmon/hwmon0", sys.join("class/hwmon/hwmon0"))
        .unwrap();
    std::fs::create_dir_all(sys.join("block")).unwrap();

    let mut agent = Agent::start(&[
        &format!("--path.sysfs={}", sys.display()),
        &format!("--path.procfs={}", common::fixtures().join("proc").display()),
        "--collector.hwmon.interval=200ms",
    ]);
    agent.wait_ready();
    let io = "storwatch_collector_errors_total{collector=\"hwmon\",kind=\"io\"}";
    let body = agent.wait_for(WAIT, "the EAGAIN counted", |b| sample(b, io).is_some_and(|v| v >= 1.0));
    assert_eq!(sample(&body, "storwatch_collector_success{collector=\"hwmon\"}"), Some(1.0));
    let temp = |sensor: &str| {
        sample(
            &body,
            &format!("storwatch_hwmon_temp_celsius{{chip=\"platform_busy_0\",sensor=\"{sensor}\"}}"),
        )
    };
    assert_eq!(temp("temp2"), Some(42.0), "the readable sensor, through the same FUSE mount");
    assert_eq!(temp("temp1"), None, "the busy sensor is left out, not reported as 0");
    let first = sample(&body, io).unwrap();
    agent.wait_for(WAIT, "the EAGAIN counted again", |b| sample(b, io).is_some_and(|v| v > first));
    assert!(agent.alive());
    let log = agent.drain_log().join("\n");
    assert!(
        log.contains("temp1_input") && log.contains("Resource temporarily unavailable"),
        "the log names the file and the error:\n{log}"
    );
}
