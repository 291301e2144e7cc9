//! The text files of procfs and sysfs the sources parse, hwmon values, NVMe device names and the
//! agent's own /proc/self files among them. The first byte picks the parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storwatch::process;
use storwatch::sources::{biolatency, diskstats, fabric, host, hwmon, mountinfo, nvme, queue};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match which % 10 {
        0 => drop(diskstats::parse(rest)),
        1 => drop(diskstats::parse_vpd_pg80(rest)),
        2 => drop(mountinfo::parse_mountinfo(&text)),
        3 => drop((
            host::parse_cpu_list(&text),
            host::parse_memtotal(&text),
            process::parse_stat(&text),
            process::parse_btime(&text),
            process::parse_limit(&text, "Max open files"),
        )),
        4 => drop(queue::parse_scheduler(&text)),
        5 => drop(fabric::tcp::parse_pairs(&text)),
        6 => drop(fabric::nfs::parse_mountstats(&text)),
        7 => drop(biolatency::parse_memlock(rest)),
        8 => drop((
            hwmon::parse_number(&text),
            nvme::names::namespace_device(&text),
            nvme::names::controller_of(&text),
        )),
        _ => drop(diskstats::parse_line(&text)),
    }
});
