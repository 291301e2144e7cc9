//! The QEMU guest harness (tests/guest/) against the real kernel drivers: one boot with an emulated
//! NVMe and an AHCI SATA disk, both with a read error injected at sector 800, and a slow NVMe drive;
//! then nvme-cli, smartctl, hwmon, direct reads of the bad sector, the kernel log, a SMART critical
//! warning set over QMP while the guest runs, the slow drive's latency, and the agent itself, all
//! run inside the guest.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use common::{json_value, sections};

use std::time::{Duration, Instant};

#[test]
fn guest_runs_real_nvme_and_sata_drivers_with_injected_errors() {
    if !common::guest_available() || !["nvme", "smartctl", "dd"].iter().all(|t| common::tool(t).is_some()) {
        return;
    }
    let storwatch = env!("CARGO_BIN_EXE_storwatch");
    let nvme = common::tool("nvme").unwrap();
    let smartctl = common::tool("smartctl").unwrap();
    // GNU dd: busybox dd falls back to buffered reads when O_DIRECT refuses its unaligned buffer
    // (it does on sda), and the kernel then logs readahead and "Buffer I/O error" lines instead.
    let dd = common::tool("dd").unwrap();
    let dd = dd.to_str().unwrap();
    let script = format!(
        r#"
echo "=== version"; {storwatch} --version
echo "=== id-ctrl"; nvme id-ctrl /dev/nvme0 -o json
echo "=== smart-log"; nvme smart-log /dev/nvme0 -o json
echo "=== smartctl"; smartctl -a -j /dev/sda; echo "smartctl exit $?"
echo "=== hwmon"; cat /sys/class/hwmon/*/name
echo "=== dd-nvme"; {dd} if=/dev/nvme0n1 of=/dev/null bs=512 skip=800 count=8 iflag=direct; echo "dd exit $?"
echo "=== dd-sda"; {dd} if=/dev/sda of=/dev/null bs=512 skip=800 count=8 iflag=direct; echo "dd exit $?"
echo "=== critical-warning"
echo "waiting-for-warning"
for i in $(seq 300); do
    nvme smart-log /dev/nvme0 -o json | grep -q '"critical_warning":16' && break
    sleep 0.1
done
nvme smart-log /dev/nvme0 -o json | grep critical_warning
echo "=== latency"
{dd} if=/dev/nvme1n1 of=/dev/null bs=4096 count=50 iflag=direct 2> /dev/null
cat /sys/block/nvme1n1/stat
echo "=== dmesg"; dmesg
echo "=== kmsg"; {dd} if=/dev/kmsg bs=8192 iflag=nonblock 2> /dev/null
echo "=== metrics"
ip link set lo up
{storwatch} --web.listen-address=127.0.0.1:9747 2> /tmp/agent.log &
for i in $(seq 150); do wget -q -O - http://127.0.0.1:9747/metrics && break; sleep 0.2; done
kill $!
echo "=== end"
"#
    );
    let bins = [storwatch, nvme.to_str().unwrap(), smartctl.to_str().unwrap(), dd];
    let dir = tempfile::tempdir().unwrap();
    let (qmp, live) = (dir.path().join("qmp.sock"), dir.path().join("out"));
    let flags = [
        "--nvme-error-sector",
        "800",
        "--sata-error-sector",
        "800",
        "--latency-ns",
        "5000000",
        "--qmp",
        qmp.to_str().unwrap(),
        "--out",
        live.to_str().unwrap(),
    ];
    // When the guest says it waits, set the "volatile memory backup failed" bit (0x10) over QMP.
    let (qmp_sock, live_out) = (qmp.clone(), live.clone());
    let setter = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(150);
        while !String::from_utf8_lossy(&std::fs::read(&live_out).unwrap_or_default())
            .contains("waiting-for-warning")
        {
            if Instant::now() > deadline {
                return "the guest never got to waiting-for-warning".to_owned();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        common::guest_qmp(
            &qmp_sock,
            r#"{"execute":"qom-set","arguments":{"path":"/machine/peripheral/nvme0","property":"smart_critical_warning","value":16}}"#,
        )
    });
    let out = common::guest_run(&script, &flags, &bins);
    let s = sections(&out);
    assert!(s.contains_key("end"), "guest output incomplete:\n{out}");
    let reply = setter.join().unwrap();
    assert_eq!(reply, r#"{"return": {}}"#);

    // The agent's dynamic libraries came along.
    let version = s["version"];
    assert!(version.starts_with(&format!("storwatch {} ", env!("CARGO_PKG_VERSION"))), "{version}");

    // NVMe admin commands through the real nvme driver.
    assert_eq!(json_value(s["id-ctrl"], "sn").map(str::trim), Some("deadbeef"), "{}", s["id-ctrl"]);
    let kelvin: u32 = json_value(s["smart-log"], "temperature").unwrap().parse().unwrap();
    assert!((274..400).contains(&kelvin), "composite temperature {kelvin} K:\n{}", s["smart-log"]);

    // SATA SMART through SG_IO / SAT on libata.
    let smart = s["smartctl"];
    assert!(smart.contains("\"ata_smart_attributes\""), "{smart}");
    for name in ["Reallocated_Sector_Ct", "Power_On_Hours", "Airflow_Temperature_Cel"] {
        assert!(smart.contains(&format!("\"{name}\"")), "smartctl lacks {name}:\n{smart}");
    }

    // A critical warning set at run time shows in the SMART log the kernel reads.
    let cw = s["critical-warning"];
    assert!(cw.contains("\"critical_warning\":16"), "{cw}");

    // Every request to the null-co drive takes >= 5 ms: diskstats' read ticks per read say so.
    let stat: Vec<f64> = s["latency"].split_whitespace().map(|f| f.parse().unwrap()).collect();
    let (reads, ticks_ms) = (stat[0], stat[3]);
    assert!(reads >= 50.0 && ticks_ms / reads >= 5.0, "reads {reads}, read ticks {ticks_ms} ms");

    // hwmon: NVMe always; drivetemp cannot bind to QEMU's ide-hd (IDENTIFY word 93 is non-zero,
    // so ata_id_is_sata() is false), so it is checked only if it ever appears.
    let hwmon: Vec<&str> = s["hwmon"].lines().collect();
    assert!(hwmon.contains(&"nvme"), "{hwmon:?}");
    if !hwmon.contains(&"drivetemp") {
        eprintln!("note: drivetemp did not bind to the emulated SATA disk (expected with QEMU)");
    }

    // The injected errors reach user space and the kernel log, from the real drivers.
    for (section, errno) in [("dd-nvme", "No data available"), ("dd-sda", "Input/output error")] {
        let dd = s[section];
        assert!(dd.contains(errno) && dd.contains("dd exit 1"), "{section}: {dd}");
    }
    let dmesg = s["dmesg"];
    for line in [
        "nvme0n1: I/O Cmd(0x2) @ LBA 800, 1 blocks, I/O Error (sct 0x2 / sc 0x81)",
        "critical medium error, dev nvme0n1, sector 800 op 0x0:(READ)",
        "ata1.00: exception Emask",
        "ata1.00: failed command: READ FPDMA QUEUED",
        "ata1.00: status: { DRDY ERR }",
        "ata1.00: error: { ABRT }",
        "sd 0:0:0:0: [sda] tag#",
        "Sense Key : Aborted Command [current]",
        "I/O error, dev sda, sector 800 op 0x0:(READ)",
    ] {
        assert!(dmesg.contains(line), "dmesg lacks {line:?}:\n{dmesg}");
    }
    // The same records as /dev/kmsg gives them to the agent: priority 3 (KERN_ERR), facility 0.
    let kmsg = s["kmsg"];
    for text in ["nvme0n1: I/O Cmd(0x2) @ LBA 800", "I/O error, dev sda, sector 800"] {
        assert!(
            kmsg.lines().any(|l| l.starts_with("3,") && l.contains(&format!(";{text}"))),
            "/dev/kmsg lacks a prio 3 record {text:?}:\n{kmsg}"
        );
    }

    // The agent serves the guest's real disks.
    let metrics = s["metrics"];
    for dev in ["nvme0n1", "nvme1n1", "sda"] {
        let series = format!("storwatch_disk_reads_completed_total{{device=\"{dev}\"}}");
        assert!(common::sample(metrics, &series).is_some_and(|v| v > 0.0), "{series}:\n{metrics}");
    }
}
