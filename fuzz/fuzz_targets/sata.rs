//! What a SATA disk answers over SG_IO: SMART READ DATA and READ THRESHOLDS pages, the sense
//! buffer (fixed or descriptor format) with the ATA registers, and the sysfs counters beside them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storwatch::device::sense;
use storwatch::sources::sata::{self, smart};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            let thresholds = smart::parse_thresholds(rest).unwrap_or_default();
            if let Ok(page) = smart::parse_data(rest) {
                let attrs = smart::join(&page, &thresholds);
                let _ = smart::temperature(&attrs);
            }
        }
        1 => {
            if let Some(s) = sense::parse_sense(rest) {
                if let Some(r) = &s.registers {
                    let _ = (sense::smart_status(r), sense::status_ok(r), smart::power_mode(r.count));
                }
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let _ = (sata::parse_counter(&text), sata::parse_link_speed(&text));
        }
    }
});
