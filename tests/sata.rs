//! The SATA collector against QEMU's AHCI disk (ide-hd) and a virtio-scsi disk (scsi-hd), with the
//! guest's real libata, sd and virtio_scsi drivers, all in one boot (tests/guest/README.md):
//! 1. every SMART attribute's value, worst, threshold, raw and decoded raw, and the overall status,
//!    against `smartctl -j -A` / `smartctl -j -H` read right after; the link speed and SCSI
//!    counters against sysfs;
//! 2. the virtio-scsi disk: SMART "unsupported", asked once, no collector error, its counters read;
//! 3. blkdebug read errors on sda: the agent run as nobody (no CAP_SYS_RAWIO: SMART "denied", one
//!    log line, no errors) reads `ioerr_cnt` exactly as sysfs has it and fails the io_errors
//!    check, while a root agent's kernel log collector counts the libata and block classes on sda.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use common::{json_value, sections};

fn metric(body: &str, series: &str) -> f64 {
    common::sample(body, series).unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

fn hex(text: &str) -> f64 {
    let t = text.lines().next().unwrap().trim();
    u64::from_str_radix(t.strip_prefix("0x").unwrap(), 16).unwrap() as f64
}

/// The JSON objects of smartctl's `ata_smart_attributes.table`, one text per attribute.
fn smartctl_table(json: &str) -> Vec<&str> {
    let table = json.split("\"table\": [").nth(1).expect("smartctl -A has a table");
    let table = &table[..table.find("\n    ]").expect("end of the table")];
    table.split("\n      {").skip(1).collect()
}

fn field(obj: &str, key: &str) -> f64 {
    json_value(obj, key).unwrap_or_else(|| panic!("no {key} in {obj}")).parse().unwrap()
}

#[test]
fn sata_health_from_sg_io_in_a_guest() {
    if !common::guest_available() || !["smartctl", "dd", "setpriv"].iter().all(|t| common::tool(t).is_some())
    {
        return;
    }
    let storwatch = env!("CARGO_BIN_EXE_storwatch");
    let (smartctl, dd, setpriv) =
        (common::tool("smartctl").unwrap(), common::tool("dd").unwrap(), common::tool("setpriv").unwrap());
    let (smartctl, dd, setpriv) =
        (smartctl.to_str().unwrap(), dd.to_str().unwrap(), setpriv.to_str().unwrap());
    let helpers = common::GUEST_SH;
    let script = format!(
        r#"
set -u
ip link set lo up
A=http://127.0.0.1:9747 B=http://127.0.0.1:9748 K=http://127.0.0.1:9749
{helpers}echo "=== devices"
for d in sda sdb; do echo "$d $(readlink -f /sys/block/$d)"; done

# 1. Root agent: SMART against smartctl read right after.
{storwatch} --web.listen-address=127.0.0.1:9747 --collector.sata.interval=1s --no-collector.fabric --no-collector.docker --no-collector.nvme 2> /tmp/agent.log &
agent=$!
ready $A; runs $A sata 2
echo "=== fields"; scrape $A
echo "=== smartctl-a"; {smartctl} -j -A /dev/sda
echo "=== smartctl-h"; {smartctl} -j -H /dev/sda
echo "=== sysfs"; cat /sys/class/ata_link/link1/sata_spd /sys/class/ata_device/dev1.0/spdn_cnt
runs $A sata 3
echo "=== later"; scrape $A
kill $agent; wait $agent
echo "=== agent-log"; cat /tmp/agent.log

# 2. Read errors on sda, watched by the agent as nobody (SMART denied, sysfs counters only) and by
# a root agent's kernel log collector.
{setpriv} --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all {storwatch} --web.listen-address=127.0.0.1:9748 --collector.sata.interval=1s --no-collector.fabric --no-collector.docker --no-collector.kmsg 2> /tmp/agent-nobody.log &
nobody=$!
{storwatch} --web.listen-address=127.0.0.1:9749 --no-collector.sata --no-collector.fabric --no-collector.docker 2> /tmp/agent-kmsg.log &
kmsg=$!
ready $B; ready $K; runs $B sata 2
echo "=== before"; scrape $B; echo "=== before-ioerr"; cat /sys/block/sda/device/ioerr_cnt
{dd} if=/dev/sda of=/dev/null bs=512 skip=800 count=1 iflag=direct || true
runs $B sata 2; runs $K kmsg 2
echo "=== after"; scrape $B
echo "=== after-ioerr"; cat /sys/block/sda/device/ioerr_cnt /sys/block/sda/device/iotmo_cnt /sys/block/sdb/device/ioerr_cnt
echo "=== kmsg"; scrape $K
kill $nobody $kmsg; wait $nobody $kmsg
echo "=== nobody-log"; cat /tmp/agent-nobody.log
echo "=== dmesg"; dmesg
echo "=== end"
"#
    );
    let out = common::guest_run(
        &script,
        &["--sata-error-sector", "800", "--scsi-disk"],
        &[storwatch, smartctl, dd, setpriv],
    );
    let s = sections(&out);
    assert!(s.contains_key("end"), "guest output incomplete:\n{out}");
    let devices = s["devices"];
    assert!(devices.lines().any(|l| l.starts_with("sda ") && l.contains("/ata1/")), "{devices}");
    assert!(devices.lines().any(|l| l.starts_with("sdb ") && l.contains("/virtio")), "{devices}");

    // 1. Every attribute equals smartctl's, read right after.
    let (m, table) = (s["fields"], smartctl_table(s["smartctl-a"]));
    assert!(table.len() >= 7, "{table:?}");
    let exported = common::samples(m, "storwatch_sata_attribute_normalized");
    assert_eq!(exported.iter().filter(|(l, _)| l.contains(r#"device="sda""#)).count(), table.len(), "{m}");
    for attr in &table {
        let id = field(attr, "id");
        let name = json_value(attr, "name").unwrap();
        let labels = format!(r#"{{device="sda",id="{id}",name="{name}"}}"#);
        for (metric_name, key) in [
            ("storwatch_sata_attribute_normalized", "value"),
            ("storwatch_sata_attribute_worst", "worst"),
            ("storwatch_sata_attribute_threshold", "thresh"),
        ] {
            assert_eq!(
                metric(m, &format!("{metric_name}{labels}")),
                field(attr, key),
                "{metric_name}{labels}"
            );
        }
        // smartctl's raw object: {"value": 48-bit integer, "string": decoded per drivedb format}.
        let raw = attr.split("\"raw\": {").nth(1).unwrap();
        assert_eq!(
            metric(m, &format!("storwatch_sata_attribute_raw{labels}")),
            field(raw, "value"),
            "{labels}"
        );
        let shown: f64 = json_value(raw, "string").unwrap().split(' ').next().unwrap().parse().unwrap();
        assert_eq!(metric(m, &format!("storwatch_sata_attribute_decoded{labels}")), shown, "{labels}");
        let failing_now = json_value(attr, "when_failed").unwrap() == "FAILING_NOW";
        let series =
            format!(r#"storwatch_sata_attribute_failing{{device="sda",id="{id}",name="{name}",when="now"}}"#);
        assert_eq!(metric(m, &series), f64::from(u8::from(failing_now)));
    }
    let passed = json_value(s["smartctl-h"], "passed").unwrap() == "true";
    assert_eq!(metric(m, r#"storwatch_sata_smart_passed{device="sda"}"#), f64::from(u8::from(passed)));
    let temp = field(s["smartctl-a"].split("\"temperature\": {").nth(1).unwrap(), "current");
    assert_eq!(metric(m, r#"storwatch_sata_temperature_celsius{device="sda",source="smart"}"#), temp);
    assert_eq!(metric(m, r#"storwatch_sata_smart_state{device="sda",state="available"}"#), 1.0);
    // No drivetemp on QEMU's disk: SMART's temperature against the configured 70 °C.
    assert_eq!(metric(m, r#"storwatch_check_ok{check="thermal",subject="sda"}"#), 1.0);
    assert_eq!(metric(m, r#"storwatch_check_observed{check="thermal",subject="sda"}"#), temp);
    assert_eq!(metric(m, r#"storwatch_check_threshold{check="thermal",subject="sda"}"#), 70.0);
    eprintln!(
        "sata pass in the guest (TCG, sda SMART + sdb): {:.1} ms",
        metric(s["later"], r#"storwatch_collector_duration_seconds{collector="sata"}"#) * 1e3
    );
    assert_eq!(metric(m, r#"storwatch_check_ok{check="sata_health",subject="sda"}"#), 1.0);
    assert_eq!(metric(m, r#"storwatch_check_ok{check="sata_health",subject="sda attributes"}"#), 1.0);
    assert_eq!(metric(m, r#"storwatch_check_ok{check="sata_health",subject="sda io_errors"}"#), 1.0);
    // Link speed and speed-down count as libata's sysfs says.
    let mut sys = s["sysfs"].lines();
    let gbps: f64 = sys.next().unwrap().trim_end_matches(" Gbps").parse().unwrap();
    assert_eq!(metric(m, r#"storwatch_sata_link_speed_bytes_per_second{device="sda"}"#), gbps * 1e9 / 8.0);
    let spdn: f64 = sys.next().unwrap().parse().unwrap();
    assert_eq!(metric(m, r#"storwatch_sata_link_speed_downs_total{device="sda"}"#), spdn);

    // 2. The virtio-scsi disk: no ATA behind it. "unsupported", no error, asked once only (its
    // one ILLEGAL REQUEST is the agent's only error result on it), counters still read.
    for body in [m, s["later"]] {
        assert_eq!(metric(body, r#"storwatch_sata_smart_state{device="sdb",state="unsupported"}"#), 1.0);
        assert_eq!(metric(body, r#"storwatch_sata_agent_error_results_total{device="sdb"}"#), 1.0);
        assert!(common::sample(body, r#"storwatch_sata_smart_passed{device="sdb"}"#).is_none());
        assert_eq!(metric(body, r#"storwatch_check_ok{check="sata_health",subject="sdb io_errors"}"#), 1.0);
        assert!(!body.contains(r#"check="sata_health",subject="sdb""#), "no SMART subjects for sdb");
        assert!(!body.contains(r#"check="sata_health",subject="sdb attributes""#));
        for (labels, v) in common::samples(body, "storwatch_collector_errors_total") {
            assert!(!labels.contains("\"sata\"") || v == 0.0, "{labels} {v}");
        }
        assert!(metric(body, r#"storwatch_sata_io_requests_total{device="sdb"}"#) > 0.0);
    }
    // Five more passes on sda: each sends two CK_COND commands, and its own check conditions
    // are not taken for I/O errors.
    let l = s["later"];
    assert!(
        metric(l, r#"storwatch_sata_agent_error_results_total{device="sda"}"#)
            > metric(m, r#"storwatch_sata_agent_error_results_total{device="sda"}"#)
    );
    assert!(!s["agent-log"].contains("WARN") && !s["agent-log"].contains("ERROR"), "{}", s["agent-log"]);

    // 3. Read errors. As nobody: SMART denied, logged once, no errors; the counters are sysfs's.
    let (b, a) = (s["before"], s["after"]);
    let log = s["nobody-log"];
    assert_eq!(log.matches("CAP_SYS_RAWIO").count(), 1, "{log}");
    assert_eq!(metric(b, r#"storwatch_sata_smart_state{device="sda",state="denied"}"#), 1.0);
    assert_eq!(metric(a, r#"storwatch_sata_agent_error_results_total{device="sda"}"#), 0.0);
    assert_eq!(metric(b, r#"storwatch_check_ok{check="sata_health",subject="sda io_errors"}"#), 1.0);
    let (ioerr_before, ioerr_after) = (hex(s["before-ioerr"]), hex(s["after-ioerr"]));
    assert!(ioerr_after > ioerr_before, "the failed read raised ioerr_cnt");
    assert_eq!(metric(b, r#"storwatch_sata_io_errors_total{device="sda"}"#), ioerr_before);
    assert_eq!(metric(a, r#"storwatch_sata_io_errors_total{device="sda"}"#), ioerr_after);
    let after: Vec<&str> = s["after-ioerr"].lines().collect();
    assert_eq!(metric(a, r#"storwatch_sata_io_timeouts_total{device="sda"}"#), hex(after[1]));
    assert_eq!(metric(a, r#"storwatch_check_ok{check="sata_health",subject="sda io_errors"}"#), 0.0);
    assert!(metric(a, r#"storwatch_check_observed{check="sata_health",subject="sda io_errors"}"#) < 60.0);
    assert_eq!(metric(a, r#"storwatch_check_ok{check="sata_health",subject="sdb io_errors"}"#), 1.0);
    assert_eq!(metric(a, r#"storwatch_sata_io_errors_total{device="sdb"}"#), hex(after[2]));
    for (labels, v) in common::samples(a, "storwatch_collector_errors_total") {
        assert!(!labels.contains("\"sata\"") || v == 0.0, "{labels} {v}");
    }
    // The kernel log collector names the same disk, as often as the guest's dmesg.
    let (k, dmesg) = (s["kmsg"], s["dmesg"]);
    for (class, needles) in [
        ("ata_exception", &["ata1.00: exception Emask", "ata1.00: failed command:"][..]),
        ("block_io", &["I/O error, dev sda, sector 800"][..]),
    ] {
        let want = dmesg.lines().filter(|l| needles.iter().any(|n| l.contains(n))).count() as f64;
        assert!(want >= 1.0, "no {class} line in:\n{dmesg}");
        let series = format!(r#"storwatch_kernel_storage_errors_total{{device="sda",class="{class}"}}"#);
        assert_eq!(metric(k, &series), want, "{series}");
    }
    assert_eq!(metric(k, r#"storwatch_check_ok{check="device_errors",subject="sda"}"#), 0.0);
}
