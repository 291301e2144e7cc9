//! The text files of procfs and sysfs the collectors parse, hwmon values among them. The first
//! byte picks the parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storwatch::collectors::{biolatency, diskstats, fabric, host, hwmon, queue};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match which % 10 {
        0 => drop(diskstats::parse(rest)),
        1 => drop(diskstats::parse_vpd_pg80(rest)),
        2 => drop(host::parse_mountinfo(&text)),
        3 => drop((host::parse_cpu_list(&text), host::parse_memtotal(&text))),
        4 => drop(queue::parse_scheduler(&text)),
        5 => drop(fabric::tcp::parse_pairs(&text)),
        6 => drop(fabric::nfs::parse_mountstats(&text)),
        7 => drop(biolatency::parse_memlock(rest)),
        8 => drop(hwmon::parse_number(&text)),
        _ => drop(diskstats::parse_line(&text)),
    }
});
