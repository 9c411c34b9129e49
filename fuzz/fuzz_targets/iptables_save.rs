//! `iptables-save` text: the first byte picks the dump (iptables-nft or -legacy, IPv4 or
//! IPv6), the next seven the packet to judge (`kports_fuzz::chosen_packet`), the rest is the
//! dump's text, assembled into a ruleset that then judges the packet, alone and over a range
//! of ports.
#![no_main]

use kports_firewall::capture::{Capture, SaveSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Some((packet, rest)) = rest.split_first_chunk::<7>() else {
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
    kports_fuzz::assemble_and_judge_chosen(&c, *packet);
});
