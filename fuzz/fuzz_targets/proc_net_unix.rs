//! `/proc/net/unix`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = kports_linux::procnet::parse_unix(text);
    assert!(parsed.items.len() + parsed.malformed <= text.lines().count());
});
