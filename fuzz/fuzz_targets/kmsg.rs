//! One /dev/kmsg record (bytes as read(2) returns them): parsed, unescaped and classified.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storwatch::sources::kmsg::{classify, record};

fuzz_target!(|data: &[u8]| {
    if let Some(r) = record::parse(data) {
        let _ = classify::classify(&r.message);
    }
    // The classifier also sees text that did not come through the record parser.
    let _ = classify::classify(&String::from_utf8_lossy(data));
});
