//! The TOML config file, and the value syntaxes inside it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use storwatch::config::{self, Config};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Config::parse(Path::new("fuzz.toml"), &text);
    let _ = (config::parse_size(&text), config::parse_version(&text), config::parse_port_range(&text));
});
