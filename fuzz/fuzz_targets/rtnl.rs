//! One datagram of a netlink RTM_GETLINK dump (rtnetlink), as recv(2) returns it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storwatch::sources::fabric::rtnl;

fuzz_target!(|data: &[u8]| {
    let mut parsed = rtnl::Parsed::default();
    rtnl::parse_datagram(data, &mut parsed);
});
