//! `/proc/net/{tcp,tcp6,udp,udp6}`: the first byte picks the file, the rest is its text.
#![no_main]

use kports_core::{Family, Proto};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let proto = if which & 1 == 0 {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let family = if which & 2 == 0 {
        Family::Ipv4
    } else {
        Family::Ipv6
    };
    let parsed = kports_linux::procnet::parse_inet(text, proto, family, u32::MAX);
    assert!(parsed.items.len() + parsed.malformed <= text.lines().count());
});
