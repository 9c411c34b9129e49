//! `iptables-save` text: the first byte picks the dump (iptables-nft or -legacy, IPv4 or
//! IPv6), the rest is its text, assembled into a ruleset that is then judged.
#![no_main]

use kports_firewall::capture::{Capture, SaveSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let src = SaveSource::ALL[usize::from(which) % SaveSource::ALL.len()];
    let c = Capture {
        saves: vec![(src, Ok(text.to_string()))],
        legacy_names: vec![(src.v6, Ok("filter\n".to_string()))],
        ..Capture::default()
    };
    kports_fuzz::assemble_and_judge(&c);
});
