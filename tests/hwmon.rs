//! The hwmon collector: temperatures against node_exporter on the fixture tree, and synthetic
//! sysfs trees for what the fixture lacks (drivetemp, CPU throttle counters, failing files).
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Agent, fixture_sysfs, sample};

/// `name{a="x",b="y"} v` lines of `body` whose name starts with `prefix`, as
/// (name, sorted labels) -> value.
fn series(body: &str, prefix: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with(prefix)) {
        let (head, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = head.split_once('{').unwrap_or((head, "}"));
        let labels = labels
            .trim_end_matches('}')
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once("=\"").unwrap();
                (k.to_owned(), v.trim_end_matches('"').to_owned())
            })
            .collect();
        out.insert((name.to_owned(), labels), value.parse().unwrap());
    }
    out
}

struct NodeExporter(Child);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET /metrics over HTTP/1.0, so that Go's server answers without chunked encoding.
fn get_http10(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    Some(body.to_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn temperatures_equal_node_exporter_on_the_fixture() {
    let bin = Path::new("/usr/bin/prometheus-node-exporter");
    if !bin.is_file() {
        assert!(!common::in_ci(), "prometheus-node-exporter is not installed (scripts/install-test-deps.sh)");
        eprintln!("skipping: /usr/bin/prometheus-node-exporter missing (scripts/install-test-deps.sh)");
        return;
    }
    let sys = fixture_sysfs();
    let sysfs = sys.path().join("sys");
    let procfs = common::fixtures().join("proc");
    let addr = format!("127.0.0.1:{}", free_port());
    let _ne = NodeExporter(
        Command::new(bin)
            .arg(format!("--path.sysfs={}", sysfs.display()))
            .arg(format!("--path.procfs={}", procfs.display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(["--collector.disable-defaults", "--collector.hwmon", "--collector.thermal_zone"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let agent = Agent::start(&[
        &format!("--path.sysfs={}", sysfs.display()),
        &format!("--path.procfs={}", procfs.display()),
    ]);
    agent.wait_ready();
    let ours = agent.metrics();
    let deadline = Instant::now() + Duration::from_secs(20);
    let theirs = loop {
        if let Some(body) = get_http10(&addr) {
            break body;
        }
        assert!(Instant::now() < deadline, "node_exporter did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    };

    // Every temperature sample, chip names and sensor labels, by (chip, sensor).
    let rename = |m: BTreeMap<(String, BTreeMap<String, String>), f64>, from: &str| {
        m.into_iter().map(|((n, l), v)| ((n.replacen(from, "", 1), l), v)).collect::<BTreeMap<_, _>>()
    };
    let mut ours_t = rename(series(&ours, "storwatch_hwmon_"), "storwatch_hwmon_");
    let theirs_t = rename(series(&theirs, "node_hwmon_"), "node_hwmon_");
    ours_t.retain(|(n, _), _| n != "device_info");
    // node_exporter does not find the NVMe hwmon (not linked from class/hwmon); we do.
    let nvme: BTreeMap<_, _> =
        ours_t.iter().filter(|((_, l), _)| l["chip"] == "nvme_nvme0").map(|(k, v)| (k.clone(), *v)).collect();
    ours_t.retain(|(_, l), _| l["chip"] != "nvme_nvme0");
    let theirs_t: BTreeMap<_, _> = theirs_t
        .into_iter()
        .filter(|((n, l), _)| {
            n.starts_with("temp_")
                || n == "chip_names"
                || (n == "sensor_label" && l["sensor"].starts_with("temp"))
        })
        .collect();
    assert!(theirs_t.len() > 40, "node_exporter exported too little: {theirs_t:?}");
    assert_eq!(ours_t, theirs_t, "ours (left) vs node_exporter 1.5 (right)");

    let n = |name: &str, sensor: &str| {
        let key = (
            name.to_owned(),
            BTreeMap::from([("chip".into(), "nvme_nvme0".into()), ("sensor".into(), sensor.into())]),
        );
        nvme.get(&key).copied()
    };
    assert_eq!(n("temp_celsius", "temp1"), Some(43.85), "{nvme:?}");
    assert_eq!(n("temp_max_celsius", "temp1"), Some(84.85));
    assert_eq!(n("temp_crit_celsius", "temp1"), Some(94.85));
    assert!(ours.contains(
        "storwatch_hwmon_sensor_label{chip=\"nvme_nvme0\",sensor=\"temp1\",label=\"Composite\"} 1"
    ));
    for dev in ["nvme0", "nvme0n1"] {
        assert_eq!(
            sample(&ours, &format!("storwatch_hwmon_device_info{{chip=\"nvme_nvme0\",device=\"{dev}\"}}")),
            Some(1.0),
            "{dev}"
        );
        assert_eq!(
            sample(&ours, &format!("storwatch_device_temperature_celsius{{device=\"{dev}\"}}")),
            Some(43.85)
        );
        assert_eq!(
            sample(&ours, &format!("storwatch_device_thermal_throttling{{device=\"{dev}\"}}")),
            Some(0.0)
        );
    }
    assert_eq!(sample(&ours, "storwatch_check_ok{check=\"thermal\",subject=\"nvme0n1\"}"), Some(1.0));

    // Thermal zones and cooling devices, against node_exporter's thermal_zone collector.
    assert_eq!(
        sample(&ours, "storwatch_thermal_zone_temp_celsius{zone=\"0\",type=\"cpu-thermal\"}"),
        sample(&theirs, "node_thermal_zone_temp{type=\"cpu-thermal\",zone=\"0\"}"),
    );
    for state in ["cur_state", "max_state"] {
        let v = sample(&ours, &format!("storwatch_cooling_device_{state}{{name=\"0\",type=\"Processor\"}}"));
        assert!(v.is_some());
        assert_eq!(
            v,
            sample(&theirs, &format!("node_cooling_device_{state}{{name=\"0\",type=\"Processor\"}}"))
        );
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A synthetic tree: nothing real has a SATA disk with drivetemp, throttle counters or a sensor
/// that fails to read here, so the files are made by hand in the kernel's layout.
#[test]
fn drivetemp_throttle_counters_and_failing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys");
    // drivetemp on sda, at 61 °C against its SCT limit of 60 °C.
    let scsi = "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0";
    std::fs::create_dir_all(sys.join(scsi).join("block/sda")).unwrap();
    let hw = format!("{scsi}/hwmon/hwmon0");
    write(&sys, &format!("{hw}/name"), "drivetemp\n");
    write(&sys, &format!("{hw}/temp1_input"), "61000\n");
    write(&sys, &format!("{hw}/temp1_max"), "60000\n");
    write(&sys, &format!("{hw}/temp1_crit"), "70000\n");
    symlink("../../../0:0:0:0", sys.join(&hw).join("device")).unwrap();
    // A chip whose temp1_input fails to read (a directory: EISDIR) while temp2 reads.
    let bad = "devices/platform/broken.0/hwmon/hwmon1";
    std::fs::create_dir_all(sys.join(bad).join("temp1_input")).unwrap();
    write(&sys, &format!("{bad}/temp2_input"), "33000\n");
    write(&sys, &format!("{bad}/temp2_max"), "garbage\n");
    write(&sys, &format!("{bad}/name"), "broken\n");
    symlink("../../../broken.0", sys.join(bad).join("device")).unwrap();
    std::fs::create_dir_all(sys.join("class/hwmon")).unwrap();
    symlink(format!("../../{hw}"), sys.join("class/hwmon/hwmon0")).unwrap();
    symlink(format!("../../{bad}"), sys.join("class/hwmon/hwmon1")).unwrap();
    // Four CPUs, two cores with two threads each, one package.
    for (cpu, core, core_count) in [(0, 0, "5"), (1, 1, "7"), (2, 0, "5"), (3, 1, "7")] {
        let d = format!("devices/system/cpu/cpu{cpu}");
        write(&sys, &format!("{d}/topology/physical_package_id"), "0\n");
        write(&sys, &format!("{d}/topology/core_id"), &format!("{core}\n"));
        write(&sys, &format!("{d}/thermal_throttle/core_throttle_count"), core_count);
        write(&sys, &format!("{d}/thermal_throttle/package_throttle_count"), "9\n");
    }
    std::fs::create_dir_all(sys.join("block")).unwrap();

    let agent = Agent::start(&[
        &format!("--path.sysfs={}", sys.display()),
        &format!("--path.procfs={}", common::fixtures().join("proc").display()),
    ]);
    agent.wait_ready();
    let m = agent.metrics();
    assert_eq!(
        sample(&m, "storwatch_hwmon_chip_names{chip=\"target0:0:0_0:0:0:0\",chip_name=\"drivetemp\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "storwatch_hwmon_temp_celsius{chip=\"target0:0:0_0:0:0:0\",sensor=\"temp1\"}"),
        Some(61.0)
    );
    assert_eq!(
        sample(&m, "storwatch_hwmon_device_info{chip=\"target0:0:0_0:0:0:0\",device=\"sda\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&m, "storwatch_device_temperature_max_celsius{device=\"sda\"}"), Some(60.0));
    assert_eq!(sample(&m, "storwatch_device_thermal_throttling{device=\"sda\"}"), Some(1.0));
    // sda's thermal check is the sata collector's (the same drivetemp files): not judged twice.
    assert_eq!(sample(&m, "storwatch_check_ok{check=\"thermal\",subject=\"sda\"}"), None);

    // The failing files are left out and counted; the rest of the chip is there.
    assert_eq!(
        sample(&m, "storwatch_hwmon_temp_celsius{chip=\"platform_broken_0\",sensor=\"temp2\"}"),
        Some(33.0)
    );
    assert_eq!(sample(&m, "storwatch_hwmon_temp_celsius{chip=\"platform_broken_0\",sensor=\"temp1\"}"), None);
    assert_eq!(
        sample(&m, "storwatch_hwmon_temp_max_celsius{chip=\"platform_broken_0\",sensor=\"temp2\"}"),
        None
    );
    assert!(sample(&m, "storwatch_collector_errors_total{collector=\"hwmon\",kind=\"io\"}").unwrap() >= 1.0);
    assert!(
        sample(&m, "storwatch_collector_errors_total{collector=\"hwmon\",kind=\"parse\"}").unwrap() >= 1.0
    );
    assert_eq!(sample(&m, "storwatch_collector_success{collector=\"hwmon\"}"), Some(1.0));

    // Sibling threads counted once.
    assert_eq!(sample(&m, "storwatch_cpu_core_throttles_total{package=\"0\",core=\"0\"}"), Some(5.0));
    assert_eq!(sample(&m, "storwatch_cpu_core_throttles_total{package=\"0\",core=\"1\"}"), Some(7.0));
    assert_eq!(common::samples(&m, "storwatch_cpu_core_throttles_total").len(), 2);
    assert_eq!(common::samples(&m, "storwatch_cpu_package_throttles_total"), vec![("package=\"0\"", 9.0)]);
}

/// In the QEMU guest: the emulated NVMe's hwmon joined to nvme0 and nvme0n1; lowering its
/// `temp1_max` (Set Features, temperature threshold) below the current temperature flips the
/// throttling signal and the per-device thermal check.
#[test]
fn nvme_hwmon_joined_and_throttling_in_a_guest() {
    if !common::guest_available() {
        assert!(!common::in_ci(), "the QEMU guest harness is required under CI=true");
        return;
    }
    let storwatch = env!("CARGO_BIN_EXE_storwatch");
    let helpers = common::GUEST_SH;
    let script = format!(
        r#"
set -u
ip link set lo up
A=http://127.0.0.1:9747
{helpers}hw=$(ls -d /sys/class/nvme/nvme0/hwmon* /sys/class/nvme/nvme0/device/hwmon/hwmon* 2> /dev/null | head -n1)
echo "=== hwmon-dir"; echo "$hw"
{storwatch} --web.listen-address=127.0.0.1:9747 --collector.hwmon.interval=1s --no-collector.fabric 2> /tmp/agent.log &
agent=$!
ready $A; runs $A hwmon 1
echo "=== temp"; cat $hw/temp1_input
echo "=== before"; scrape $A | grep -E '^storwatch_(hwmon_device_info|device_|check_ok\{{check="thermal")'
echo 40000 > $hw/temp1_max
runs $A hwmon 2
echo "=== max"; cat $hw/temp1_max
echo "=== after"; scrape $A | grep -E '^storwatch_(hwmon_device_info|device_|check_ok\{{check="thermal")'
kill $agent; wait $agent
echo "=== agent-log"; cat /tmp/agent.log
echo "=== end"
"#
    );
    let out = common::guest_run(&script, &[], &[storwatch]);
    let s = common::sections(&out);
    assert!(s.contains_key("end"), "guest output incomplete:\n{out}");
    assert!(!s["hwmon-dir"].trim().is_empty(), "the guest kernel exposes no NVMe hwmon:\n{out}");
    let temp = s["temp"].trim().parse::<f64>().unwrap() / 1000.0;
    assert!(temp > 40.0, "the threshold set below must be under the drive's temperature: {temp}");
    let (before, after) = (s["before"], s["after"]);
    for dev in ["nvme0", "nvme0n1"] {
        assert_eq!(
            sample(before, &format!("storwatch_hwmon_device_info{{chip=\"nvme_nvme0\",device=\"{dev}\"}}")),
            Some(1.0),
            "{out}"
        );
        let t = sample(before, &format!("storwatch_device_temperature_celsius{{device=\"{dev}\"}}")).unwrap();
        assert!((t - temp).abs() <= 1.0, "{dev}: agent {t} °C, hwmon {temp} °C");
        assert_eq!(
            sample(before, &format!("storwatch_device_thermal_throttling{{device=\"{dev}\"}}")),
            Some(0.0),
            "{out}"
        );
        assert_eq!(
            sample(after, &format!("storwatch_device_thermal_throttling{{device=\"{dev}\"}}")),
            Some(1.0),
            "{out}"
        );
        assert_eq!(
            sample(after, &format!("storwatch_device_temperature_max_celsius{{device=\"{dev}\"}}")),
            Some(s["max"].trim().parse::<f64>().unwrap() / 1000.0)
        );
    }
    assert_eq!(
        sample(before, "storwatch_check_ok{check=\"thermal\",subject=\"nvme0n1\"}"),
        Some(1.0),
        "{out}"
    );
    assert_eq!(
        sample(after, "storwatch_check_ok{check=\"thermal\",subject=\"nvme0n1\"}"),
        Some(0.0),
        "{out}"
    );
}
