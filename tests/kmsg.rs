//! The kernel log collector on this machine's real /dev/kmsg (root): lines of every class written
//! into the kernel log are counted exactly, per whole device, and near misses count nothing; a
//! flood of 100,000 records is counted exactly where records survived, with the lost ones counted;
//! without CAP_SYSLOG the collector fails cleanly and says which privilege is missing.
//!
//! Lines written from user space arrive with facility 1; the agent accepts them. Every injected
//! line ends in `[storwatch test]` so an operator reading dmesg on a test machine can tell.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{Agent, sample};

const MARK: &str = " [storwatch test]";

/// The tests share the one kernel log.
static KMSG: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    KMSG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes one record. Each write opens /dev/kmsg afresh: under printk_devkmsg=ratelimit the
/// kernel limits writes per open file (10 per 5 s), not per writer. Level 6 (info) keeps the
/// lines off a slow serial console; the classes do not depend on the level.
fn inject(line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .expect("/dev/kmsg opens for writing (root)");
    f.write_all(format!("<6>{line}{MARK}\n").as_bytes()).unwrap();
}

/// Sets a sysctl under /proc/sys/kernel for the life of the guard, then restores it.
struct Sysctl(&'static str, String);

impl Sysctl {
    fn set(name: &'static str, value: &str) -> Sysctl {
        let path = format!("/proc/sys/kernel/{name}");
        let old = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, value).unwrap();
        Sysctl(name, old)
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("/proc/sys/kernel/{}", self.0), &self.1);
    }
}

/// The key a corpus subject (tests/data/kmsg-corpus.tsv) is counted under on the synthetic host
/// (tests/common/host_sysfs.rs): a disk's name, or `kind:subject` for the other subjects.
fn expected_key(subject: &str) -> String {
    let (kind, name) = subject.split_once(':').unwrap_or((subject, ""));
    let disk = |d: &str| d.to_owned();
    match (kind, name) {
        ("ata", p) => disk(["sda", "sdb", "sdc", "sdd"][p.parse::<usize>().unwrap() - 1]),
        ("nvme", c) => disk(c),
        ("block", d) if d.starts_with("dm-") => format!("dm:{d}"),
        ("block", d) if d.starts_with("nvme") => disk(d.split('p').next().unwrap()),
        ("block", d) => disk(d.trim_end_matches(|c: char| c.is_ascii_digit())),
        ("md", m) => format!("md:{m}"),
        ("scsi", "1:0:0:0") => disk("sdb"),
        ("scsi", "7:0:1:0") => disk("sdg"),
        // The NVMe function, and the root port above it with nvme0 alone below.
        ("pci", "0000:01:00.0" | "0000:00:1c.0") => disk("nvme0"),
        // The bridge above the SAS HBA: no NVMe controller to name.
        ("pci", b) => format!("pci:{b}"),
        ("iscsi", n) => format!("iscsi:session{n}"),
        ("nfs", server) => format!("nfs:{server}"),
        ("devnum", "8:16") => disk("sdb"),
        ("devnum", "8:32") => disk("sdc"),
        ("none", _) => "none:".to_owned(),
        _ => panic!("no expectation for {subject}"),
    }
}

/// (verdict, subject, line) of tests/data/kmsg-corpus.tsv.
fn corpus() -> Vec<(String, String, String)> {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kmsg-corpus.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, '\t').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

/// Every error series of both kernel log families as (key, class) -> count: a disk by its name,
/// any other subject as `kind:subject`.
fn counts(body: &str) -> BTreeMap<(String, String), f64> {
    let value = |labels: &str, key: &str| {
        labels.split(&format!("{key}=\"")).nth(1).unwrap().split('"').next().unwrap().to_owned()
    };
    let disks = common::samples(body, "storwatch_kernel_storage_errors_total")
        .into_iter()
        .map(|(l, v)| ((value(l, "device"), value(l, "class")), v));
    let others = common::samples(body, "storwatch_kernel_subject_errors_total")
        .into_iter()
        .map(|(l, v)| ((format!("{}:{}", value(l, "kind"), value(l, "subject")), value(l, "class")), v));
    disks.chain(others).collect()
}

fn host_sysfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::host_sysfs::build(dir.path());
    dir
}

/// The agent with the kernel log collector alone (and the HTTP server), on `sys`.
fn kmsg_agent(sys: &tempfile::TempDir, interval: &str) -> Agent {
    let agent = Agent::start(&[
        &format!("--path.sysfs={}", sys.path().display()),
        &format!("--collector.kmsg.interval={interval}"),
        "--no-collector.diskstats",
        "--no-collector.queue",
        "--no-collector.host",
    ]);
    agent.wait_ready();
    agent
}

fn prerequisites() -> bool {
    common::require_root() && Path::new("/dev/kmsg").exists()
}

#[test]
fn every_class_counted_exactly_per_device_and_near_misses_count_nothing() {
    let _serial = serial();
    if !prerequisites() {
        return;
    }
    let sys = host_sysfs();
    let agent = kmsg_agent(&sys, "1s");
    let before = counts(&agent.metrics());

    // Each line k+1 times, so a count that is right by accident is unlikely.
    let mut want = before.clone();
    // Lines that only say more about a failure before them are for the real corpus's test.
    for (k, (class, subject, line)) in corpus().iter().filter(|c| c.0 != "continues").enumerate() {
        let times = k % 3 + 1;
        for _ in 0..times {
            inject(line);
        }
        *want.entry((expected_key(subject), class.clone())).or_default() += times as f64;
    }
    let near =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kmsg-near-misses.txt"))
            .unwrap();
    for line in near.lines().filter(|l| !l.starts_with('#')) {
        inject(line);
    }
    let records_before = sample(&agent.metrics(), "storwatch_kernel_log_records_total").unwrap();
    // A final marker of a known class tells when everything before it was read.
    inject("I/O error, dev sdz, sector 1 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0");
    *want.entry(("sdz".to_owned(), "block_io".to_owned())).or_default() += 1.0;
    let key = ("sdz".to_owned(), "block_io".to_owned());
    let started = Instant::now();
    let body =
        agent.wait_for(Duration::from_secs(5), "the final marker", |b| counts(b).get(&key) == want.get(&key));
    eprintln!("all lines counted {:?} after the last write", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(2), "counted within about a second of the write");
    assert_eq!(
        counts(&body),
        want,
        "every (device, class) rose by exactly what was written, and nothing else did"
    );
    assert!(sample(&body, "storwatch_kernel_log_records_total").unwrap() > records_before);
    assert_eq!(sample(&body, "storwatch_collector_success{collector=\"kmsg\"}"), Some(1.0));

    // The device_errors check fails for a device with a fresh error, from the kernel log's view.
    assert_eq!(
        sample(&body, "storwatch_check_ok{check=\"device_errors\",subject=\"sda\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "storwatch_check_ok{check=\"device_errors\",subject=\"md0\"}"),
        Some(0.0),
        "an md array is judged under its own name"
    );
    assert!(
        !body.contains("storwatch_check_ok{check=\"device_errors\",subject=\"\"}"),
        "errors without a subject (CPU throttling) are counted, not judged"
    );
}

/// The key a real corpus row's device column (tests/data/kmsg-real.tsv) names; None for `-`.
fn real_key(device: &str) -> Option<String> {
    match device {
        "-" => None,
        d if d.starts_with("nfs:") || d.starts_with("pci:") => Some(d.to_owned()),
        d if d.starts_with("iscsi:") => {
            let n =
                d.trim_start_matches("iscsi:").trim_start_matches("session").trim_start_matches("connection");
            Some(format!("iscsi:session{}", n.split(':').next().unwrap()))
        }
        d if d.starts_with("dm-") => Some(format!("dm:{d}")),
        d if d.starts_with("md") => Some(format!("md:{d}")),
        d => Some(d.to_owned()),
    }
}

/// The real corpus (tests/data/kmsg-real.tsv: kernel lines from public bug reports, normalized onto
/// the synthetic host) written into the real /dev/kmsg one line at a time, with the agent reading
/// it and a sysfs laid out like the host: after each line, what rose and on which subject. Unrelated
/// records between incidents (as a real log has) end each incident's context.
#[test]
fn real_kernel_lines_counted_on_the_right_subject() {
    let _serial = serial();
    if !prerequisites() {
        return;
    }
    let sys = host_sysfs();
    let agent = kmsg_agent(&sys, "100ms");
    let _unlimited = Sysctl::set("printk_devkmsg", "on\n");
    let mut kmsg = std::fs::OpenOptions::new().write(true).open("/dev/kmsg").unwrap();
    let rows: Vec<Vec<String>> =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kmsg-real.tsv"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.splitn(5, '\t').map(str::to_owned).collect())
            .collect();
    let body = agent.metrics();
    let mut records = sample(&body, "storwatch_kernel_log_records_total").unwrap();
    let mut before = counts(&body);
    let (mut incident, mut fails, mut counted) = (String::new(), 0, 0);
    let mut incidents: BTreeMap<String, bool> = BTreeMap::new();
    let (mut wrong, mut missed) = (Vec::new(), Vec::new());
    for row in &rows {
        let (verdict, device, line) = (&row[2], &row[3], &row[4]);
        if row[0] != incident {
            incident.clone_from(&row[0]);
            for _ in 0..20 {
                kmsg.write_all(format!("<6>storwatch test: between incidents{MARK}\n").as_bytes()).unwrap();
            }
            records += 20.0;
        }
        // The line as the kernel wrote it: no mark of ours, which would change its end.
        kmsg.write_all(format!("<3>{line}\n").as_bytes()).unwrap();
        records += 1.0;
        let body = agent.wait_for(Duration::from_secs(10), "the line read", |b| {
            sample(b, "storwatch_kernel_log_records_total").unwrap() >= records
        });
        let after = counts(&body);
        let rose: Vec<&(String, String)> =
            after.iter().filter(|(k, v)| before.get(*k).is_none_or(|b| *v > b)).map(|(k, _)| k).collect();
        let want = real_key(device);
        if verdict == "benign" && !rose.is_empty() {
            wrong.push(format!("benign line counted on {rose:?}: {line}"));
        }
        if let Some(w) = &want
            && let Some(k) = rose.iter().find(|(k, _)| k != w)
        {
            wrong.push(format!("counted on {k:?}, not {w}: {line}"));
        }
        if verdict == "fail" {
            fails += 1;
            let ok = !rose.is_empty() && want.as_ref().is_none_or(|w| rose.iter().all(|(k, _)| k == w));
            counted += usize::from(ok);
            *incidents.entry(row[0].clone()).or_default() |= ok;
            if !ok {
                missed.push(format!("{} {device}: {line}", row[0]));
            }
        }
        before = after;
    }
    let seen = incidents.values().filter(|v| **v).count();
    eprintln!(
        "real corpus through /dev/kmsg: failure lines {counted}/{fails}, incidents {seen}/{}",
        incidents.len()
    );
    for m in &missed {
        eprintln!("not counted: {m}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(fails >= 250, "the corpus holds {fails} failure lines");
    assert!(counted * 100 >= fails * 90, "{counted} of {fails} failure lines");
    assert!(seen * 100 >= incidents.len() * 95, "{seen} of {} incidents", incidents.len());
}

/// A quiet log is not sampled again (the reader says nothing changed), yet the collector stays
/// alive for the liveness series, and a new line is still counted within its interval.
#[test]
fn a_quiet_log_keeps_the_collector_alive_and_new_lines_count_promptly() {
    let _serial = serial();
    if !prerequisites() {
        return;
    }
    let agent = Agent::start(&[
        "--collector.kmsg.interval=1s",
        "--no-collector.diskstats",
        "--no-collector.queue",
        "--no-collector.host",
    ]);
    agent.wait_ready();
    let last = |b: &str| {
        sample(b, "storwatch_collector_last_success_timestamp_seconds{collector=\"kmsg\"}").unwrap()
    };
    let t0 = last(&agent.metrics());
    std::thread::sleep(Duration::from_millis(2500));
    let body = agent.metrics();
    assert!(
        last(&body) >= t0 + 1.5,
        "the collector was looked at while the log was quiet: {t0} -> {}",
        last(&body)
    );
    assert_eq!(sample(&body, "storwatch_collector_success{collector=\"kmsg\"}"), Some(1.0));
    let key = ("sdquiet".to_owned(), "block_io".to_owned());
    let before = counts(&body).get(&key).copied().unwrap_or(0.0);
    inject("I/O error, dev sdquiet, sector 1 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0");
    agent.wait_for(Duration::from_secs(5), "the new line", |b| {
        counts(b).get(&key).copied().unwrap_or(0.0) == before + 1.0
    });
}

#[test]
fn flood_counted_exactly_where_records_survived() {
    let _serial = serial();
    if !prerequisites() {
        return;
    }
    let mut agent =
        Agent::start(&["--no-collector.diskstats", "--no-collector.queue", "--no-collector.host"]);
    agent.wait_ready();
    let pid = agent.child.id();
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_owned();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    let body = agent.metrics();
    let key = ("sdflood".to_owned(), "block_io".to_owned());
    let count0 = counts(&body).get(&key).copied().unwrap_or(0.0);
    let lost0 = sample(&body, "storwatch_kernel_log_records_lost_total").unwrap();
    let rss0 = rss();

    // As fast as possible: one open file, no per-file rate limit.
    const N: u32 = 100_000;
    let unlimited = Sysctl::set("printk_devkmsg", "on\n");
    let mut kmsg = std::fs::OpenOptions::new().write(true).open("/dev/kmsg").unwrap();
    let started = Instant::now();
    for i in 0..N {
        let line = format!(
            "<6>I/O error, dev sdflood, sector {i} op 0x1:(WRITE) flags 0x0 phys_seg 1 prio class 0{MARK}\n"
        );
        kmsg.write_all(line.as_bytes()).unwrap();
    }
    let wrote = started.elapsed();
    drop(unlimited);
    inject("I/O error, dev sdfloodend, sector 0 op 0x1:(WRITE) flags 0x0 phys_seg 1 prio class 0");
    let end = ("sdfloodend".to_owned(), "block_io".to_owned());
    let before_end = counts(&body).get(&end).copied().unwrap_or(0.0);
    let body = agent.wait_for(Duration::from_secs(30), "the end marker", |b| {
        counts(b).get(&end).copied().unwrap_or(0.0) > before_end
    });
    let counted = counts(&body)[&key] - count0;
    let lost = sample(&body, "storwatch_kernel_log_records_lost_total").unwrap() - lost0;
    let rss1 = rss();
    eprintln!(
        "flood: {N} records written in {wrote:?} ({:.0}/s); counted {counted}, lost {lost}; RSS {rss0} kB -> {rss1} kB",
        f64::from(N) / wrote.as_secs_f64()
    );
    assert!(counted <= f64::from(N), "never counted twice");
    assert!(counted + lost >= f64::from(N), "every record is either counted or counted as lost");
    assert!(rss1 < rss0 + 2048, "memory flat: {rss0} kB -> {rss1} kB");
    assert!(agent.alive());
}

#[test]
fn without_cap_syslog_the_collector_fails_and_says_why() {
    let _serial = serial();
    if !prerequisites() {
        return;
    }
    let _restrict = Sysctl::set("dmesg_restrict", "1\n");
    let mut agent = Agent::start_wrapped(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ],
        &["--no-collector.queue", "--no-collector.host"],
    );
    agent.wait_ready();
    let body = agent.wait_for(Duration::from_secs(5), "a failed kmsg run", |b| {
        sample(b, "storwatch_collector_success{collector=\"kmsg\"}") == Some(0.0)
    });
    assert!(
        sample(&body, "storwatch_collector_errors_total{collector=\"kmsg\",kind=\"permission\"}").unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(&body, "storwatch_collector_success{collector=\"diskstats\"}"),
        Some(1.0),
        "the rest runs on"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let log = agent.drain_log().join("\n");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("collector=\"kmsg\"")).collect();
    assert_eq!(lines.len(), 1, "logged once:\n{log}");
    assert!(lines[0].contains("CAP_SYSLOG") && lines[0].contains("dmesg_restrict=1"), "{}", lines[0]);
}

/// Real drivers: in the QEMU guest (tests/guest), direct reads of a sector that blkdebug fails
/// on the NVMe drive and the AHCI disk make the real nvme, libata and sd drivers log their own
/// lines; the agent in the guest counts each with the right disk, exactly as often as the
/// guest's own dmesg shows it.
#[test]
fn real_driver_errors_in_the_guest_are_counted_on_the_right_disk() {
    if !common::guest_available() || common::tool("dd").is_none() {
        return;
    }
    let storwatch = env!("CARGO_BIN_EXE_storwatch");
    // GNU dd: busybox dd falls back to buffered reads on sda (tests/guest/README.md).
    let dd = common::tool("dd").unwrap();
    let dd = dd.to_str().unwrap();
    let script = format!(
        r#"
ip link set lo up
{storwatch} --web.listen-address=127.0.0.1:9747 --collector.kmsg.interval=1s --no-collector.queue --no-collector.host 2> /tmp/agent.log &
for i in $(seq 150); do wget -q -O /dev/null http://127.0.0.1:9747/-/ready && break; sleep 0.2; done
{dd} if=/dev/nvme0n1 of=/dev/null bs=512 skip=800 count=1 iflag=direct || true
{dd} if=/dev/sda of=/dev/null bs=512 skip=800 count=1 iflag=direct || true
sleep 3
echo "=== metrics"; wget -q -O - http://127.0.0.1:9747/metrics
echo "=== dmesg"; dmesg
echo "=== end"
"#
    );
    let out = common::guest_run(
        &script,
        &["--nvme-error-sector", "800", "--sata-error-sector", "800"],
        &[storwatch, dd],
    );
    let s = common::sections(&out);
    let (metrics, dmesg) = (s["metrics"], s["dmesg"]);
    let got = counts(metrics);
    // The oracle: the guest kernel's own log, matched here with plain substrings.
    let seen = |needle: &str, also: &str| {
        dmesg.lines().filter(|l| l.contains(needle) && l.contains(also)).count() as f64
    };
    let expect = [
        (("nvme0n1", "nvme_media"), seen("nvme0n1: I/O Cmd(0x2) @ LBA 800", "(sct 0x2 /")),
        (("nvme0n1", "block_medium"), seen("critical medium error, dev nvme0n1, sector 800", "")),
        (
            ("sda", "ata_exception"),
            seen("ata1.00: exception Emask", "") + seen("ata1.00: failed command:", ""),
        ),
        (("sda", "ata_command"), seen("ata1.00: error: { ABRT }", "")),
        (("sda", "scsi_command"), seen("sd 0:0:0:0: [sda] tag#", "FAILED Result:")),
        // The sense key, and the sense data that follows it.
        (
            ("sda", "scsi_sense"),
            seen("sd 0:0:0:0: [sda] tag#", "Sense Key : Aborted Command")
                + seen("sd 0:0:0:0: [sda] tag#", "Add. Sense:"),
        ),
        (("sda", "block_io"), seen("I/O error, dev sda, sector 800", "")),
        (("sda", "ata_ncq_disabled"), seen("ata1.00: NCQ disabled due to excessive errors", "")),
        (
            ("sda", "ata_link_reset"),
            seen("ata1: hard resetting link", "") + seen("ata1: soft resetting link", ""),
        ),
    ];
    for ((device, class), want) in &expect[..4] {
        assert!(*want >= 1.0, "the guest kernel logged no {class} line for {device}:\n{dmesg}");
    }
    // Exactly these, and nothing else: the AHCI controller's empty ports say `ataN: SATA link
    // down` at boot, which counts nothing.
    let want: BTreeMap<(String, String), f64> = expect
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|((d, c), n)| (((*d).to_owned(), (*c).to_owned()), *n))
        .collect();
    assert_eq!(got, want, "{metrics}\n{dmesg}");
    assert!(seen(": SATA link down", "") >= 1.0, "the empty ports' boot lines are there:\n{dmesg}");
    assert!(!dmesg.lines().any(|l| l.contains("ata1: SATA link down")), "ata1 holds sda");
    assert_eq!(sample(metrics, "storwatch_check_ok{check=\"device_errors\",subject=\"sda\"}"), Some(0.0));
    assert_eq!(sample(metrics, "storwatch_check_ok{check=\"device_errors\",subject=\"nvme0n1\"}"), Some(0.0));
}

/// Real filesystem and journal code on a disk that fails: in the QEMU guest, ext4 on a
/// device-mapper disk (dm-0, linear over the AHCI disk) whose table is then swapped for the
/// `error` target, as a disk behind a failed path or controller. Writes then fail, and ext4, jbd2
/// and the buffer cache log their own lines; the agent counts each on dm-0 (its own subject, not
/// a disk) as often as the guest's dmesg shows it, and nothing on sda.
#[test]
fn ext4_on_a_failing_disk_in_the_guest_is_counted_on_its_device() {
    let (Some(mkfs), Some(dmsetup)) = (common::tool("mkfs.ext4"), common::tool("dmsetup")) else {
        assert!(
            !common::in_ci(),
            "mkfs.ext4 and dmsetup are required under CI=true (scripts/install-guest-deps.sh)"
        );
        return;
    };
    if !common::guest_available() {
        return;
    }
    let storwatch = env!("CARGO_BIN_EXE_storwatch");
    let (mkfs, dmsetup) = (mkfs.to_str().unwrap(), dmsetup.to_str().unwrap());
    let script = format!(
        r#"
export DM_DISABLE_UDEV=1
ip link set lo up
{storwatch} --web.listen-address=127.0.0.1:9747 --collector.kmsg.interval=1s --no-collector.queue --no-collector.host 2> /tmp/agent.log &
for i in $(seq 150); do wget -q -O /dev/null http://127.0.0.1:9747/-/ready && break; sleep 0.2; done
{dmsetup} create disk0 --table "0 131072 linear /dev/sda 0"
{mkfs} -q -F /dev/dm-0
mkdir -p /mnt && mount -t ext4 /dev/dm-0 /mnt
echo data > /mnt/before && sync
{dmsetup} suspend disk0 && {dmsetup} load disk0 --table "0 131072 error" && {dmsetup} resume disk0
echo more > /mnt/after; sync; touch /mnt/later; sync
sleep 6
echo "=== metrics"; wget -q -O - http://127.0.0.1:9747/metrics
echo "=== dmesg"; dmesg
echo "=== end"
"#
    );
    let out = common::guest_run(&script, &["--timeout", "180"], &[storwatch, mkfs, dmsetup]);
    let s = common::sections(&out);
    assert!(s.contains_key("end"), "guest output incomplete:\n{out}");
    let (metrics, dmesg) = (s["metrics"], s["dmesg"]);
    let got = counts(metrics);
    let seen =
        |needle: &str| dmesg.lines().filter(|l| l.contains(needle) && l.contains("dm-0")).count() as f64;
    let expect = [
        // `... on dev dm-0, logical block 1, lost sync page write` and `... on device dm-0, logical block 8706`.
        ("buffer_io", seen("Buffer I/O error on dev")),
        (
            "jbd2_abort",
            seen("Aborting journal on device dm-0-8")
                + seen("journal superblock for dm-0-8")
                + seen("JBD2: Detected IO errors while flushing file data on dm-0-8"),
        ),
        ("ext4_error", seen("EXT4-fs error (device dm-0)")),
        (
            "ext4_io",
            seen("EXT4-fs warning (device dm-0): ext4_end_bio")
                + seen("EXT4-fs (dm-0): I/O error while writing superblock"),
        ),
        ("fs_readonly", seen("EXT4-fs (dm-0): Remounting filesystem read-only")),
    ];
    let want: BTreeMap<(String, String), f64> = expect
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(class, n)| (("dm:dm-0".to_owned(), (*class).to_owned()), *n))
        .collect();
    assert!(want.len() >= 3, "the guest kernel logged too few of the expected lines:\n{dmesg}");
    assert!(
        want.contains_key(&("dm:dm-0".to_owned(), "jbd2_abort".to_owned())),
        "no journal abort:\n{dmesg}"
    );
    // Empty AHCI ports log `link down` at boot: nothing of that is counted.
    assert_eq!(got, want, "{metrics}\n{dmesg}");
    assert_eq!(sample(metrics, "storwatch_check_ok{check=\"device_errors\",subject=\"dm-0\"}"), Some(0.0));
}
