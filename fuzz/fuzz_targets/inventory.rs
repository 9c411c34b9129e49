//! An inventory file (`kports probe --inventory`): kports's YAML, kubespray's hosts.yaml or its
//! INI file, recognised from the text, then the probe plan's use of it (every node's addresses
//! and roles). An error's line must be in the file.
#![no_main]

use kports_probe::inventory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match inventory::parse(text, "fuzz.yaml") {
        Ok(inv) => {
            assert!(inv.nodes.len() <= inventory::MAX_NODES);
            for n in &inv.nodes {
                let a = n.addresses();
                assert!(!a.is_empty() && a[0] == n.address);
                let _ = (n.roles.len(), n.name.len(), n.ssh.as_deref());
            }
        }
        Err(e) => {
            if let Some(l) = e.line {
                assert!(l >= 1 && l <= text.lines().count() as u64 + 1, "{e}");
            }
            let _ = e.to_string();
        }
    }
});
