//! Reads a node's firewall: `nft` listings, every `*-save` variant, the legacy table list, and
//! firewalld's and ufw's configuration files, each through [`crate::runner`].
//!
//! Nothing here interprets what was read; `kports_firewall::capture::assemble` does. A source that
//! fails keeps its reason, so the verdicts that depend on it come out unknown.

use std::time::Duration;

use kports_firewall::capture::{Capture, SaveSource};
use kports_firewall::detect::{FIREWALLD_CONF, UFW_CONF, UFW_DEFAULTS};

use crate::runner::run;

/// Reads everything [`Capture`] holds from the calling process's network namespace.
pub fn capture(timeout: Duration) -> Capture {
    let text = |r: Result<String, crate::runner::RunError>| r.map_err(|e| e.to_string());
    let mut c = Capture {
        nft_json: Some(text(run("nft", &["-j", "list", "ruleset"], timeout))),
        nft_text: Some(text(run("nft", &["-a", "list", "ruleset"], timeout))),
        ..Capture::default()
    };
    for v6 in [false, true] {
        let file = SaveSource {
            backend: kports_firewall::model::Backend::IptablesLegacy,
            v6,
        }
        .legacy_names_file();
        let names = crate::limits::read_text(std::path::Path::new(file), &crate::limits::CONFIG)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(String::new())
                } else {
                    Err(e)
                }
            });
        c.legacy_names
            .push((v6, names.map_err(|e| format!("{file}: {e}"))));
    }
    for src in SaveSource::ALL {
        // Skip legacy dumps when the kernel holds no legacy tables: running the legacy tool
        // would load the x_tables modules for nothing.
        if src.backend == kports_firewall::model::Backend::IptablesLegacy
            && c.legacy_in_use(src.v6) == Some(false)
        {
            continue;
        }
        c.saves.push((src, text(run(src.command(), &[], timeout))));
    }
    for path in [FIREWALLD_CONF, UFW_DEFAULTS, UFW_CONF] {
        if let Ok(s) = crate::limits::read_text(std::path::Path::new(path), &crate::limits::CONFIG)
        {
            c.files.push((path.to_string(), Ok(s)));
        }
    }
    c
}

/// The interface and local address the kernel would use towards `addr` (`ip route get`), which
/// is also where that peer's packets arrive on a symmetric network.
pub fn route_to(
    addr: std::net::IpAddr,
    timeout: Duration,
) -> Option<(String, Option<std::net::IpAddr>)> {
    let out = run("ip", &["-j", "route", "get", &addr.to_string()], timeout).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let r = v.as_array()?.first()?;
    let dev = r.get("dev")?.as_str()?.to_string();
    let src = r
        .get("prefsrc")
        .and_then(|s| s.as_str())
        .and_then(|s| s.parse().ok());
    Some((dev, src))
}
