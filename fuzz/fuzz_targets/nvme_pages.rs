//! NVMe admin command data: Identify Controller, SMART / Health log, Error log pages.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storwatch::sources::nvme::logs;

fuzz_target!(|data: &[u8]| {
    let Some((&which, page)) = data.split_first() else { return };
    match which % 3 {
        0 => drop(logs::parse_identify(page)),
        1 => {
            if let Ok(s) = logs::parse_smart(page) {
                let _ = s.spare_below_threshold();
            }
        }
        _ => {
            if let Ok(entries) = logs::parse_error_log(page) {
                for e in entries {
                    let _ = logs::status_type_name(e.status_code_type());
                }
            }
        }
    }
});
