//! Bad input from the host: garbled and truncated diskstats lines, unreadable sysfs files, the
//! diskstats file vanishing and coming back. The other devices keep being reported, the error
//! counters move, and the agent runs on.

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

/// Polls /metrics until `done` holds, for at most 10 s.
fn wait_for(agent: &Agent, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = agent.metrics();
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what} not seen in 10 s:\n{body}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

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
    let body = wait_for(&agent, "a window", |b| b.contains("storwatch_disk_window_seconds "));
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
    let body = wait_for(&agent, "errors counted again", |b| sample(b, PARSE).unwrap() > first);
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
    wait_for(&agent, "sda", |b| reads(b, "sda").is_some());

    std::fs::remove_file(&diskstats).unwrap();
    let body = wait_for(&agent, "failure", |b| sample(b, SUCCESS) == Some(0.0));
    assert!(sample(&body, IO).unwrap() >= 1.0);
    assert_eq!(reads(&body, "sda"), None, "no stale samples from a failed source");
    assert!(body.contains("storwatch_build_info{"), "the agent still serves");

    // Cut mid-line: the devices before the cut are reported, the cut line is a parse error.
    let cut = full.iter().position(|&b| b == b's').unwrap() + 200;
    std::fs::write(&diskstats, &full[..cut]).unwrap();
    let body = wait_for(&agent, "recovery", |b| sample(b, SUCCESS) == Some(1.0));
    assert_eq!(reads(&body, "sda"), Some(25354637.0));
    assert_eq!(reads(&body, "vda"), None, "vda comes after the cut");
    assert!(sample(&body, PARSE).unwrap() >= 1.0);

    std::fs::write(&diskstats, &full).unwrap();
    let body = wait_for(&agent, "vda back", |b| reads(b, "vda").is_some());
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
