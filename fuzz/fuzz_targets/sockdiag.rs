//! One datagram of a netlink sock_diag (inet_diag) dump, as recv(2) returns it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storwatch::sources::fabric::sockdiag;

fuzz_target!(|data: &[u8]| {
    let mut parsed = sockdiag::Parsed::default();
    sockdiag::parse_datagram(data, &mut parsed);
});
