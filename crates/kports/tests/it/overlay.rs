//! `kports overlay --lab`: the lab's flannel-style VXLAN carries traffic between every pair of
//! nodes; a drop of udp/8472 on one node fails exactly the pairs with that node, naming its
//! firewall rule; an underlay MTU too small for VXLAN's 50 bytes is named; a forwarding entry
//! missing on one node is named on that node.
//!
//! Root, one lab at a time (the lab turn), a lab without components (the overlay is the lab's
//! network, not a component's); a guard runs `kports lab down` when a test ends.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::support::{BareLab, kports, text};

/// `kports overlay --lab -o json`: (exit code, rows).
fn overlay() -> (i32, Vec<Value>) {
    let out = kports(&["overlay", "--lab", "-o", "json", "--echo-timeout", "500ms"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "overlay: not JSON ({e}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert_eq!(doc["kind"], "overlay");
    (
        out.status.code().unwrap_or(-1),
        doc["items"].as_array().unwrap().clone(),
    )
}

/// (source, target) of the rows that did not pass, with their cause.
fn failing(rows: &[Value]) -> BTreeSet<(String, String, String)> {
    rows.iter()
        .filter(|r| r["verdict"] != "pass")
        .map(|r| {
            (
                r["source"].as_str().unwrap().into(),
                r["target"].as_str().unwrap().into(),
                r["cause"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn set(v: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    v.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[test]
fn a_clean_overlay_passes_and_a_dropped_vxlan_port_names_the_rule() {
    let _lab = BareLab::up();
    let (code, rows) = overlay();
    assert_eq!(rows.len(), 6, "{rows:#?}");
    assert_eq!(failing(&rows), BTreeSet::new(), "{rows:#?}");
    assert_eq!(code, 0);
    assert!(
        rows.iter()
            .all(|r| r["device"] == "flannel.1" && r["port"] == 8472)
    );
    // Each target's device counted the source's echoes.
    assert!(
        rows.iter().all(|r| r["target_rx"].as_u64().unwrap() >= 5),
        "{rows:#?}"
    );

    let out = kports(&["lab", "fault", "w1", "drop", "udp/8472"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, rows) = overlay();
    assert_eq!(code, 1);
    assert_eq!(
        failing(&rows),
        set(&[
            ("cp1", "w1", "requests-lost"),
            ("w2", "w1", "requests-lost"),
            ("w1", "cp1", "replies-lost"),
            ("w1", "w2", "replies-lost"),
        ]),
        "{rows:#?}"
    );
    for r in rows.iter().filter(|r| r["verdict"] != "pass") {
        assert_eq!(r["firewall"]["node"], "w1", "{r:#?}");
        assert_eq!(r["firewall"]["verdict"], "drop", "{r:#?}");
        let m = r["message"].as_str().unwrap();
        assert!(m.contains("w1's firewall drops udp/8472"), "{m}");
        assert!(m.contains("udp dport 8472 drop"), "{m}");
    }
}

#[test]
fn an_underlay_mtu_too_small_for_vxlan_is_named() {
    let _lab = BareLab::up();
    // w2's link to the fabric carries 1400 bytes; flannel.1 still sends 1450 + 50.
    let out = Command::new("ip")
        .args(["-n", "kports-w2", "link", "set", "eth0", "mtu", "1400"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, rows) = overlay();
    assert_eq!(code, 1);
    assert_eq!(
        failing(&rows),
        set(&[
            ("cp1", "w2", "mtu"),
            ("w1", "w2", "mtu"),
            ("w2", "cp1", "mtu"),
            ("w2", "w1", "mtu"),
        ]),
        "{rows:#?}"
    );
    for r in rows.iter().filter(|r| r["verdict"] != "pass") {
        // Small echoes pass: the path is open, only the size fails.
        assert!(r["small"]["received"].as_u64().unwrap() > 0, "{r:#?}");
        let m = r["message"].as_str().unwrap();
        assert!(m.contains("w2's eth0 has 1400"), "{m}");
        assert!(m.contains("needs 1500"), "{m}");
    }
}

#[test]
fn a_missing_fdb_entry_is_named_on_the_side_that_lacks_it() {
    let _lab = BareLab::up();
    // cp1 forgets where w1's VTEP MAC lives (as when flannel's lease for w1 was not seen).
    let out = Command::new("bridge")
        .args([
            "-n",
            "kports-cp1",
            "fdb",
            "del",
            "02:6b:70:00:00:01",
            "dev",
            "flannel.1",
            "dst",
            "192.0.2.21",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, rows) = overlay();
    assert_eq!(code, 1);
    assert_eq!(
        failing(&rows),
        set(&[("cp1", "w1", "missing-fdb"), ("w1", "cp1", "missing-fdb")]),
        "{rows:#?}"
    );
    for r in rows.iter().filter(|r| r["verdict"] != "pass") {
        let m = r["message"].as_str().unwrap();
        assert!(
            m.starts_with(
                "cp1's flannel.1 has no forwarding (FDB) entry for w1's tunnel endpoint 192.0.2.21"
            ),
            "{m}"
        );
    }
}
