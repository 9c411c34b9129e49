//! `nft -j list ruleset` (before the first NUL byte) with `nft -a list ruleset` (after it),
//! assembled into a ruleset that is then judged as `kports firewall check` judges it.
#![no_main]

use kports_firewall::capture::Capture;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (json, text) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(json) = std::str::from_utf8(json) else {
        return;
    };
    let text = text.map(|t| String::from_utf8_lossy(t).into_owned());
    let c = Capture {
        nft_json: Some(Ok(json.to_string())),
        nft_text: text.map(Ok),
        ..Capture::default()
    };
    kports_fuzz::assemble_and_judge(&c);
});
