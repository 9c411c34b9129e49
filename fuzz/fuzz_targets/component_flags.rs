//! A component's command line as kports reads its flags: every flag `kports check` looks up,
//! parsed as a port, an address, an endpoint, URLs and a range.
#![no_main]

use kports_core::flags;
use libfuzzer_sys::fuzz_target;

const FLAGS: &[&str] = &[
    "--secure-port",
    "--bind-address",
    "--listen-client-urls",
    "--listen-peer-urls",
    "--listen-metrics-urls",
    "--healthz-bind-address",
    "--metrics-bind-address",
    "--service-node-port-range",
    "--port",
    "--address",
];

fuzz_target!(|data: &[u8]| {
    let Ok(cmdline) = std::str::from_utf8(data) else {
        return;
    };
    for f in FLAGS {
        let Some(v) = flags::value(cmdline, f) else {
            continue;
        };
        let _ = flags::parse_port(f, v);
        if let Ok(h) = flags::parse_address(f, v) {
            let _ = (h.scope(), h.to_string());
        }
        let _ = flags::parse_endpoint(f, v);
        let _ = flags::parse_urls(f, v);
        let _ = flags::parse_range(f, v);
    }
});
