//! The TOML config file and the value syntaxes inside it; the web config file (exporter-toolkit
//! YAML); and the Authorization header a scraper sends.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use storwatch::config::Config;
use storwatch::values;
use storwatch::webconfig::{self, WebConfig};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Config::parse(Path::new("fuzz.toml"), &text);
    let _ = (values::parse_size(&text), values::parse_version(&text), values::parse_port_range(&text));
    // Checking a password runs bcrypt (tens of ms), too slow to fuzz; the header parser is here.
    let _ = WebConfig::parse(&text, Path::new("/nonexistent"));
    let _ = webconfig::parse_basic(data);
});
