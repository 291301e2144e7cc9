//! What a Docker engine (or anything listening on its socket) answers: the HTTP/1.1 response
//! framing, then the JSON bodies of the API calls the collector makes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storwatch::sources::docker::{api, http};

fuzz_target!(|data: &[u8]| {
    let _ = http::parse_response(data, false);
    if let Ok(Some(r)) = http::parse_response(data, true) {
        let _ = api::parse::<api::Version>(&r.body);
    }
    let _ = api::parse::<api::Version>(data);
    let _ = api::parse::<api::Info>(data);
    let _ = api::parse::<api::Volumes>(data);
    let _ = api::parse::<Vec<api::Container>>(data);
    let _ = api::parse::<api::DiskUsage>(data);
    let _ = api::parse_events(data);
});
