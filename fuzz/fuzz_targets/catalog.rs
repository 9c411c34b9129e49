//! A user's catalog file (`--catalog`), applied on top of the built-in catalog, then used to
//! find the CNIs and the ports a role needs.
#![no_main]

use std::sync::OnceLock;

use kports_core::catalog::{Catalog, Role};
use libfuzzer_sys::fuzz_target;

static BUILTIN: OnceLock<Option<Catalog>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(builtin) = BUILTIN.get_or_init(|| Catalog::builtin().ok()).as_ref() else {
        return;
    };
    let mut c = builtin.clone();
    if let Err(e) = c.apply_user(text, "fuzz.toml") {
        assert!(
            e.line >= 1 && e.line <= text.lines().count().max(1) + 1,
            "{e}"
        );
        return;
    }
    let cnis: Vec<String> = c.cnis().iter().map(|s| s.to_string()).collect();
    for e in &c.entries {
        let _ = (
            e.label(),
            e.needed_scope(),
            e.applies_to(Role::Worker.into(), &cnis),
        );
    }
});
