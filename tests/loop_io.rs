//! Real I/O through this machine's kernel. A loop device gets a known number of direct writes: the
//! agent's completed-writes counter must rise by exactly that number, and its window gauges must
//! agree with `iostat -x` (sysstat) over the same window. Then a loop device is removed while the
//! agent runs and re-created with fresh counters: the other disk keeps being reported, the loop
//! device leaves the metrics and comes back, and no gauge goes negative or absurd.
//!
//! Needs root (loop devices), `losetup`, `dd` and `iostat`; without them the tests say why and
//! pass, except under CI=true, where they fail. Both tests take one lock: loop devices are a
//! machine-wide resource, and the iostat comparison wants a quiet machine.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::loopdev::{LoopDevice, serial};
use common::{Agent, in_ci, require_root, sample, samples, tool};

const WRITES: &str = "storwatch_disk_writes_completed_total";
const WRITTEN: &str = "storwatch_disk_written_bytes_total";
const MERGED: &str = "storwatch_disk_writes_merged_total";
const READS: &str = "storwatch_disk_reads_completed_total";
const OPS: &str = "storwatch_disk_operations_per_second";
const BYTES: &str = "storwatch_disk_bytes_per_second";
const AWAIT: &str = "storwatch_disk_await_seconds";
const UTIL: &str = "storwatch_disk_utilization_ratio";
const DEPTH: &str = "storwatch_disk_queue_depth";
const WINDOW: &str = "storwatch_disk_window_seconds";
const LAST_SUCCESS: &str = "storwatch_collector_last_success_timestamp_seconds{collector=\"diskstats\"}";
const SUCCESS: &str = "storwatch_collector_success{collector=\"diskstats\"}";
const ERRORS: &str = "storwatch_collector_errors_total";

/// Root, /dev/loop-control and the tools, or a skip (a failure under CI=true) saying what is missing.
fn prerequisites(tools: &[&str]) -> bool {
    if !require_root() {
        return false;
    }
    if !Path::new("/dev/loop-control").exists() {
        assert!(!in_ci(), "/dev/loop-control is required under CI=true (modprobe loop)");
        eprintln!("skipping: no /dev/loop-control (the loop driver is not loaded)");
        return false;
    }
    tools.iter().all(|t| tool(t).is_some())
}

fn series(name: &str, dev: &str) -> String {
    format!("{name}{{device=\"{dev}\"}}")
}

fn op_series(name: &str, dev: &str, op: &str) -> String {
    format!("{name}{{device=\"{dev}\",op=\"{op}\"}}")
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn last_success(body: &str) -> Option<f64> {
    sample(body, LAST_SUCCESS)
}

/// The first scrape showing a diskstats sample published after unix time `t`.
fn sample_after(agent: &Agent, t: f64, timeout: Duration) -> String {
    agent.wait_for(timeout, &format!("a diskstats sample after {t}"), |b| {
        last_success(b).is_some_and(|s| s > t)
    })
}

/// The diskstats error counters, every kind.
fn error_counts(body: &str) -> Vec<(String, f64)> {
    samples(body, ERRORS)
        .into_iter()
        .filter(|(labels, _)| labels.contains("collector=\"diskstats\""))
        .map(|(labels, v)| (labels.to_owned(), v))
        .collect()
}

/// This device's line of /proc/diskstats, if listed.
fn diskstats_line(dev: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/diskstats").unwrap();
    text.lines().find(|l| l.split_whitespace().nth(2) == Some(dev)).map(str::to_owned)
}

/// `count` 4 KiB writes with O_DIRECT at the start of `node`; how long dd took.
fn dd_direct(node: &Path, count: u32) -> Duration {
    let started = Instant::now();
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", node.display()))
        .args(["bs=4k", &format!("count={count}"), "oflag=direct", "status=none"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dd to {} failed: {}",
        node.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// The first whole disk with a `device` link in sysfs (real or virtual hardware: vda, sda, nvme0n1).
fn real_disk() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("device").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().find(|n| diskstats_line(n).is_some())
}

/// A child process killed on drop, so a failed assertion does not leave iostat behind.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn wait(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A number field of a device's object in iostat's JSON: `"w/s": 250.00`.
fn json_number(object: &serde_json::Value, key: &str) -> f64 {
    object[key].as_f64().unwrap_or_else(|| panic!("no number {key:?} in {object}"))
}

/// The object of `dev` in the last report of `iostat -d -x -o JSON`
/// (`sysstat.hosts[0].statistics[-1].disk[]`).
fn iostat_device(json: &str, dev: &str) -> serde_json::Value {
    let doc: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("iostat JSON ({e}):\n{json}"));
    let last = doc["sysstat"]["hosts"][0]["statistics"].as_array().and_then(|s| s.last()).cloned();
    let disks =
        last.as_ref().and_then(|l| l["disk"].as_array()).unwrap_or_else(|| panic!("no report:\n{json}"));
    disks
        .iter()
        .find(|d| d["disk_device"] == dev)
        .cloned()
        .unwrap_or_else(|| panic!("iostat did not report {dev}:\n{json}"))
}

/// `actual` is within `rel` of `expected`, plus `abs` for iostat's printed rounding.
fn assert_close(what: &str, actual: f64, expected: f64, rel: f64, abs: f64) {
    let bound = rel * expected.abs() + abs;
    assert!(
        (actual - expected).abs() <= bound,
        "{what}: agent {actual} vs iostat {expected}, differ by {} > bound {bound}",
        (actual - expected).abs()
    );
}

#[test]
fn direct_writes_match_the_count_and_iostat() {
    let _serial = serial();
    if !prerequisites(&["losetup", "dd", "iostat"]) {
        return;
    }
    // Attached before the agent starts, so any probing at attach (udev's blkid where udev runs)
    // falls before the window. The device's counters need not be zero (losetup -d does not reset
    // them); only deltas are compared.
    let lo = LoopDevice::attach(64 << 20, false);
    let dev = lo.name();
    let include = format!("--collector.diskstats.device-include=^{dev}$");
    let agent = Agent::start(&[&include, "--collector.diskstats.interval=8s"]);

    // The agent's first sample, at unix time `a`, opens its window W = [a, a + 8].
    let before = sample_after(&agent, 0.0, Duration::from_secs(20));
    let a = last_success(&before).unwrap();
    let lag = unix_now() - a;
    assert!(lag < 1.0, "the first sample is already {lag:.3} s old; the plan below needs it fresh");
    let writes_before = sample(&before, &series(WRITES, &dev)).expect("the loop device is reported");
    let written_before = sample(&before, &series(WRITTEN, &dev)).unwrap();
    let merged_before = sample(&before, &series(MERGED, &dev)).unwrap();
    let reads_before = sample(&before, &series(READS, &dev)).unwrap();

    // iostat's window: it samples at start-up, sleeps 8 s, samples and prints one report (-y
    // drops the since-boot report). It starts right now, within `lag` + spawn time of `a`.
    // LC_ALL=C: a locale with a decimal comma would garble the JSON numbers.
    let iostat = Command::new("iostat")
        .env("LC_ALL", "C")
        .args(["-d", "-x", "-y", "-o", "JSON", &dev, "8", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let iostat = KillOnDrop(Some(iostat));
    let iostat_started = unix_now();

    // The burst at about a + 2 s: inside [a, a + 8] and inside iostat's window.
    let until_burst = a + 2.0 - unix_now();
    assert!(until_burst > 0.5, "start-up took too long: {until_burst:.3} s left before the burst");
    std::thread::sleep(Duration::from_secs_f64(until_burst));
    let burst_started = unix_now();
    let took = dd_direct(&lo.node(), 2000);
    assert!(
        took < Duration::from_secs(4),
        "dd of 2000 direct 4 KiB writes took {took:?}; it must end well inside both 8 s windows \
         (a + 2 s + 4 s < a + 8 s) for the comparison to hold. Is the machine overloaded?"
    );

    // The agent's next sample closes W.
    let after = sample_after(&agent, a + 4.0, Duration::from_secs(14));
    let b = last_success(&after).unwrap();
    let out = iostat.wait();
    let iostat_ended = unix_now();
    assert!(out.status.success(), "iostat failed: {}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8(out.stdout).unwrap();

    // The count: exact. O_DIRECT writes from dd go one at a time (queue depth 1), so nothing
    // can merge, and nothing else writes to this device.
    let writes = sample(&after, &series(WRITES, &dev)).unwrap() - writes_before;
    let written = sample(&after, &series(WRITTEN, &dev)).unwrap() - written_before;
    let merged = sample(&after, &series(MERGED, &dev)).unwrap() - merged_before;
    let reads = sample(&after, &series(READS, &dev)).unwrap() - reads_before;
    assert_eq!(writes, 2000.0, "completed writes rose by {writes}, not 2000 ({merged} merged)");
    assert_eq!(written, 2000.0 * 4096.0, "bytes written");

    // The agent's own arithmetic: Δcount / window, exactly.
    let window = sample(&after, WINDOW).expect("a window was published");
    assert!((7.9..9.0).contains(&window), "agent window {window} s, expected about 8 s");
    assert!((b - a - window).abs() < 0.1, "published {:.3} s apart, window {window}", b - a);
    let iops = sample(&after, &op_series(OPS, &dev, "write")).unwrap();
    let bps = sample(&after, &op_series(BYTES, &dev, "write")).unwrap();
    let await_s = sample(&after, &op_series(AWAIT, &dev, "write")).unwrap();
    let util = sample(&after, &series(UTIL, &dev)).unwrap();
    let depth = sample(&after, &series(DEPTH, &dev)).unwrap();
    assert!((iops * window - 2000.0).abs() < 1e-6, "iops {iops} × window {window} ≠ 2000");
    assert!((bps * window - 2000.0 * 4096.0).abs() < 1e-3, "bytes/s {bps} × window {window}");

    let io = iostat_device(&json, &dev);
    let (io_wps, io_wkbs, io_await) =
        (json_number(&io, "w/s"), json_number(&io, "wkB/s"), json_number(&io, "w_await"));
    let (io_util, io_aqu) = (json_number(&io, "util"), json_number(&io, "aqu-sz"));
    eprintln!(
        "{dev}: {writes} writes ({merged} merged, {reads} reads) in a {took:?} burst starting a+{:.3} s\n\
         agent  window {window:.4} s [a, a+{:.3}]: {iops:.3} w/s, {:.3} wkB/s, w_await {:.4} ms, util {:.4} %, aqu-sz {depth:.5}\n\
         iostat window ≈{:.4} s [a+{:.3}, a+{:.3}]: {io_wps} w/s, {io_wkbs} wkB/s, w_await {io_await} ms, util {io_util} %, aqu-sz {io_aqu}",
        burst_started - a,
        b - a,
        bps / 1024.0,
        await_s * 1000.0,
        util * 100.0,
        2000.0 / io_wps,
        iostat_started - a,
        iostat_ended - a,
    );

    // Agent against iostat. Both compute from the same kernel counters, and both windows hold
    // the whole burst with no other I/O on the device, so every Δcounter is identical:
    //
    // * w_await = Δwrite_ticks / Δwrites does not depend on the window at all. iostat prints it
    //   in ms with 2 decimals, so the only difference is that rounding: 0.005 ms (+ float slack).
    // * w/s, wkB/s, util (Δio_ticks / T) and aqu-sz (Δtime_in_queue / T) divide the same Δ by
    //   different window lengths T: the agent's is its sleep on an 8 s grid (monotonic clock),
    //   iostat's its own 8 s sleep measured in /proc/uptime's 10 ms ticks. The ratio of the two
    //   results is T_iostat / T_agent; each T overshoots 8 s only by scheduling latency (a few
    //   ms here), so they agree to well under 1 %. The bound, 3 %, allows 240 ms of difference
    //   between the two sleeps, which only a badly overloaded machine reaches, while a real
    //   error (a wrong unit, sectors taken as bytes, a window off by one interval) is 2x or
    //   more. Added: half of iostat's last printed digit (0.005), doubled for slack: 0.01.
    assert_close("w_await (ms)", await_s * 1000.0, io_await, 0.0, 0.005 + 1e-6);
    assert_close("w/s", iops, io_wps, 0.03, 0.01);
    assert_close("wkB/s", bps / 1024.0, io_wkbs, 0.03, 0.01);
    assert_close("util (%)", util * 100.0, io_util, 0.03, 0.01);
    assert_close("aqu-sz", depth, io_aqu, 0.03, 0.01);
}

/// Every window gauge of `dev` present in `body` is a plausible number: no negative, NaN or huge
/// value from a counter that went backwards when the device was re-created.
fn assert_sane(body: &str, dev: &str) {
    let label = format!("device=\"{dev}\"");
    let limits = [(OPS, 1e6), (BYTES, 1e11), (AWAIT, 10.0), (UTIL, 1.0), (DEPTH, 1e4)];
    for (name, max) in limits {
        for (labels, v) in samples(body, name).into_iter().filter(|(l, _)| l.contains(&label)) {
            assert!(v.is_finite() && (0.0..=max).contains(&v), "{name}{{{labels}}} = {v}:\n{body}");
        }
    }
    if let Some(w) = sample(body, WINDOW) {
        assert!(w > 0.0 && w < 10.0, "window {w}");
    }
}

/// Whether any diskstats family has a sample for `dev` (other collectors, such as the sysfs
/// queue settings on their own interval, may still list it for a while).
fn in_diskstats(body: &str, dev: &str) -> bool {
    let label = format!("device=\"{dev}\"");
    let families = [WRITES, WRITTEN, MERGED, READS, OPS, BYTES, AWAIT, UTIL, DEPTH, "storwatch_disk_io_now"];
    families
        .iter()
        .chain(&["storwatch_disk_info"])
        .any(|name| samples(body, name).iter().any(|(labels, _)| labels.split(',').any(|l| l == label)))
}

fn has_window(body: &str, dev: &str) -> bool {
    sample(body, &op_series(OPS, dev, "write")).is_some()
}

#[test]
fn a_device_that_vanishes_and_comes_back() {
    let _serial = serial();
    if !prerequisites(&["losetup", "dd"]) {
        return;
    }
    let Some(disk) = real_disk() else {
        assert!(!in_ci(), "a disk with a sysfs device link is required under CI=true");
        eprintln!("skipping: no disk with a device link in /sys/block to watch beside the loop device");
        return;
    };
    let lo = LoopDevice::attach(16 << 20, false);
    let dev = lo.name();
    let include = format!("--collector.diskstats.device-include=^({dev}|{disk})$");
    let mut agent = Agent::start(&[&include, "--collector.diskstats.interval=1s"]);
    let long = Duration::from_secs(10);
    let writes = |b: &str| sample(b, &series(WRITES, &dev));

    // Writes on the device, and a window over them.
    let before = sample_after(&agent, 0.0, long);
    let base = writes(&before).expect("the loop device is reported");
    dd_direct(&lo.node(), 100);
    let body = agent.wait_for(long, "100 writes and a window", |b| {
        writes(b) == Some(base + 100.0) && has_window(b, &dev)
    });
    assert_sane(&body, &dev);
    let errors = error_counts(&body);
    assert!(!errors.is_empty(), "no error counters:\n{body}");

    // Detach. On this kernel the disk stays listed in /proc/diskstats with its old counters
    // (a detached loop device is still a disk, only without backing); only LOOP_CTL_REMOVE
    // deletes it.
    lo.detach();
    eprintln!("after losetup -d: /proc/diskstats line {:?}", diskstats_line(&dev));
    lo.remove();
    assert_eq!(diskstats_line(&dev), None, "{dev} still listed after LOOP_CTL_REMOVE");

    // The agent drops it and goes on with the other disk. The error counters stay where they
    // were: a device leaving /proc/diskstats is hot-unplug, not a failure to read anything. The
    // agent reads a device's sysfs facts only for a device listed in the same read, and a sysfs
    // file that is not there counts as "not present" (unreadable sysfs files, which are errors,
    // are covered in tests/faults.rs).
    let gone =
        agent.wait_for(long, &format!("{dev} leaving the diskstats metrics"), |b| !in_diskstats(b, &dev));
    let mut t = last_success(&gone).unwrap();
    for _ in 0..2 {
        let body = sample_after(&agent, t, long);
        t = last_success(&body).unwrap();
        assert!(!in_diskstats(&body, &dev), "{dev} is back while removed:\n{body}");
        assert!(sample(&body, &series(READS, &disk)).is_some(), "{disk} no longer reported:\n{body}");
        assert!(has_window(&body, &disk), "{disk} has no window gauges:\n{body}");
        assert_eq!(sample(&body, SUCCESS), Some(1.0));
        assert_eq!(error_counts(&body), errors, "a vanished device is not an error");
        assert!(agent.alive(), "the agent exited");
    }

    // Back with the same number: a new disk whose counters start from zero.
    lo.add();
    let line = diskstats_line(&dev).expect("listed again after LOOP_CTL_ADD");
    assert!(
        line.split_whitespace().skip(3).all(|f| f == "0"),
        "a re-created loop device should start from zero: {line}"
    );
    lo.reattach();
    dd_direct(&lo.node(), 10);
    let body = agent.wait_for(long, &format!("{dev} back with 10 writes and a window"), |b| {
        writes(b) == Some(10.0) && has_window(b, &dev)
    });
    assert_sane(&body, &dev);
    assert!(has_window(&body, &disk));
    assert_eq!(error_counts(&body), errors);

    // Gone and back within one interval: the agent never sees it missing, only its counters
    // going from 10 back to 3. That window has no rates for it rather than huge ones.
    let fresh = sample_after(&agent, last_success(&body).unwrap(), long);
    let quick = Instant::now();
    lo.detach();
    lo.remove();
    lo.add();
    lo.reattach();
    dd_direct(&lo.node(), 3);
    eprintln!("removed, re-added and written in {:?}", quick.elapsed());
    let mut t = last_success(&fresh).unwrap();
    let deadline = Instant::now() + long;
    loop {
        let body = sample_after(&agent, t, long);
        t = last_success(&body).unwrap();
        assert_sane(&body, &dev);
        assert!(has_window(&body, &disk), "{disk} has no window gauges:\n{body}");
        assert_eq!(error_counts(&body), errors);
        if writes(&body) == Some(3.0) && has_window(&body, &dev) {
            break;
        }
        assert!(Instant::now() < deadline, "{dev} has no window after the reset:\n{body}");
    }

    assert!(agent.alive(), "the agent exited");
    let log = agent.drain_log();
    assert!(!log.iter().any(|l| l.contains("panic")), "{log:#?}");
}
