//! `kports firewall` run as a user runs it, inside a network namespace the test makes (root):
//! `check -o json` names the deciding rule, `plan --script` applies cleanly twice.

use std::process::Command;
use std::sync::RwLockReadGuard;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::support::{KPORTS, ns_turn};

/// A namespace of the test's own, removed on drop (while the test still holds its turn).
struct Ns {
    name: String,
    _turn: RwLockReadGuard<'static, ()>,
}

impl Ns {
    fn new() -> Ns {
        let turn = ns_turn();
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "kpfw-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
        Ns { name, _turn: turn }
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

const CLUSTER: [&str; 6] = [
    "--role",
    "worker",
    "--sources",
    "198.51.100.0/24",
    "--control-plane",
    "198.51.100.10",
];

#[test]
fn check_names_the_deciding_rule_in_json() {
    let ns = Ns::new();
    let (ok, _, err) = ns.run(&["nft", "add table inet t; add chain inet t input { type filter hook input priority 0; policy accept; }; add rule inet t input tcp dport 10250 reject"]);
    assert!(ok, "{err}");
    let mut args = vec![KPORTS, "firewall", "check", "-o", "json"];
    args.extend(CLUSTER);
    let (ok, out, err) = ns.run(&args);
    // A required port rejected for the control plane: exit 1, as `kports check` does.
    assert!(!ok, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["kind"], "firewall-check");
    let rows = doc["items"].as_array().unwrap();
    let kubelet = rows
        .iter()
        .find(|r| r["port"]["lo"] == 10250 && r["expect_open"] == true)
        .unwrap();
    assert_eq!(kubelet["ok"], false);
    let j = &kubelet["segments"][0]["judgement"];
    assert_eq!(j["verdict"], "reject");
    assert_eq!(j["by"]["table"], "inet t");
    assert_eq!(j["by"]["text"], "tcp dport 10250 reject");
    let nodeport = rows.iter().find(|r| r["port"]["lo"] == 30000).unwrap();
    assert_eq!(nodeport["ok"], true);
}

#[test]
fn plan_script_applies_twice_and_the_table_says_what_changes() {
    let ns = Ns::new();
    let mut args = vec![KPORTS, "firewall", "plan", "--backend", "nft", "--script"];
    args.extend(CLUSTER);
    let (ok, script, err) = ns.run(&args);
    assert!(ok, "{err}");
    assert!(script.contains("flush chain inet kports input"), "{script}");
    for _ in 0..2 {
        let (ok, _, err) = ns.run(&["sh", "-c", &script]);
        assert!(ok, "{err}");
    }
    let (_, listing, _) = ns.run(&["nft", "list", "table", "inet", "kports"]);
    assert_eq!(
        listing
            .matches("ip saddr 198.51.100.10 tcp dport 10250 accept")
            .count(),
        1,
        "{listing}"
    );
    let mut args = vec![KPORTS, "firewall", "plan", "--backend", "nft"];
    args.extend(CLUSTER);
    let (ok, out, err) = ns.run(&args);
    assert!(ok, "{err}");
    assert!(
        out.contains("= ip saddr 198.51.100.10 tcp dport 10250 accept"),
        "{out}"
    );
    assert!(!out.lines().any(|l| l.starts_with("+ ")), "{out}");
}

#[test]
fn role_is_detected_or_asked_for_and_ip_protocols_are_noted() {
    let ns = Ns::new();
    // Nothing runs in the namespace: the role cannot be detected.
    let (ok, _, err) = ns.run(&[KPORTS, "firewall", "check", "--sources", "198.51.100.0/24"]);
    assert!(!ok);
    assert!(err.contains("the node's role is unknown"), "{err}");
    assert!(err.contains("pass --role"), "{err}");
    let (ok, out, err) = ns.run(&[
        KPORTS,
        "firewall",
        "check",
        "--role",
        "worker",
        "--cni",
        "calico",
        "--sources",
        "198.51.100.0/24",
        "-o",
        "json",
    ]);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let notes = doc["context"]["notes"].as_array().unwrap();
    // The IP-in-IP note, and that --sources stands in for the unknown control plane.
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[1]
            .as_str()
            .unwrap()
            .starts_with("control plane: not known"),
        "{notes:?}"
    );
    assert!(
        notes[0]
            .as_str()
            .unwrap()
            .starts_with("IP protocol 4 for calico-node"),
        "{notes:?}"
    );
    // Calico's BGP port comes from the catalog, opened to the nodes.
    let rows = doc["items"].as_array().unwrap();
    let bgp = rows.iter().find(|r| r["port"]["lo"] == 179).unwrap();
    assert_eq!(bgp["port"]["from"], "nodes");
    assert_eq!(bgp["port"]["component"], "calico-node");
}

#[test]
fn check_without_sources_says_whom_it_judged_from_and_plan_asks_for_them() {
    let ns = Ns::new();
    // No peer connections in a fresh namespace: one address stands for any other host.
    let (ok, out, err) = ns.run(&[
        KPORTS, "firewall", "check", "--role", "worker", "-o", "json",
    ]);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let notes: Vec<&str> = doc["context"]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes.iter().any(|n| n.starts_with(
            "sources: no --sources and no peer connections seen; judged from 203.0.113.1"
        )),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("control plane: not known")),
        "{notes:?}"
    );
    let rows = doc["items"].as_array().unwrap();
    assert!(!rows.is_empty());

    let (ok, _, err) = ns.run(&[
        KPORTS,
        "firewall",
        "plan",
        "--backend",
        "nft",
        "--role",
        "worker",
    ]);
    assert!(!ok);
    assert!(err.contains("a plan needs --sources"), "{err}");
}

/// Twelve chains, each jumping to the next six times, the last dropping tcp/9: a ruleset the
/// kernel accepts whose every path is 6^11 walks long if each jump is walked again. In
/// iptables-nft and in native nft, `check` answers, and tcp/9 is dropped by the last chain.
#[test]
fn check_answers_on_chains_that_jump_to_the_next_six_times() {
    let mut save =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    let mut nft = String::from(
        "add table inet ladder\nadd chain inet ladder c0 { type filter hook input priority 0; policy accept; }\n",
    );
    for i in 1..12 {
        save.push_str(&format!(":L{i} - [0:0]\n"));
        nft.push_str(&format!("add chain inet ladder c{i}\n"));
    }
    for i in 0..11 {
        let from = if i == 0 {
            "INPUT".to_string()
        } else {
            format!("L{i}")
        };
        for _ in 0..6 {
            save.push_str(&format!("-A {from} -j L{}\n", i + 1));
            nft.push_str(&format!("add rule inet ladder c{i} jump c{}\n", i + 1));
        }
    }
    save.push_str("-A L11 -p tcp -m tcp --dport 9 -j DROP\nCOMMIT\n");
    nft.push_str("add rule inet ladder c11 tcp dport 9 drop\n");

    let dir = std::env::temp_dir().join(format!("kpfw-ladder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let catalog = dir.join("discard.toml");
    std::fs::write(
        &catalog,
        "[[port]]\ncomponent = \"discard\"\nprotocol = \"tcp\"\nport = 9\npurpose = \"a port the ladder drops\"\nroles = [\"worker\"]\nreached_by = [\"nodes\"]\nbind = \"any\"\nexpect = \"optional\"\n",
    )
    .unwrap();
    let rules = dir.join("rules");
    for (loader, text) in [("iptables-nft-restore", &save), ("nft -f", &nft)] {
        let ns = Ns::new();
        std::fs::write(&rules, text).unwrap();
        let mut load: Vec<&str> = loader.split(' ').collect();
        load.push(rules.to_str().unwrap());
        let (ok, _, err) = ns.run(&load);
        assert!(ok, "{loader}: {err}");
        let mut args = vec![
            "timeout",
            "60",
            KPORTS,
            "firewall",
            "check",
            "--catalog",
            catalog.to_str().unwrap(),
            "-o",
            "json",
            "--fail-on",
            "never",
        ];
        args.extend(CLUSTER);
        let (ok, out, err) = ns.run(&args);
        assert!(ok, "{loader}: {err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let rows = doc["items"].as_array().unwrap();
        let discard = rows
            .iter()
            .find(|r| r["port"]["lo"] == 9 && r["port"]["proto"] == "tcp")
            .unwrap_or_else(|| panic!("{loader}: no tcp/9 row: {out}"));
        let j = &discard["segments"][0]["judgement"];
        assert_eq!(j["verdict"], "drop", "{loader}: {j}");
        let chain = j["by"]["chain"].as_str().unwrap();
        assert!(chain == "L11" || chain == "c11", "{loader}: {j}");
        // A port the ladder does not drop falls through to the accept policy.
        let kubelet = rows.iter().find(|r| r["port"]["lo"] == 10250).unwrap();
        assert_eq!(
            kubelet["segments"][0]["judgement"]["verdict"], "accept",
            "{loader}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// iptables-nft rules come from `iptables-nft-save`; a table it cannot show (native nft chains
/// in `ip mangle`) is read from nft instead, and its rule decides.
#[test]
fn check_reads_a_table_iptables_nft_save_calls_incompatible_from_nft() {
    let ns = Ns::new();
    let (ok, _, err) = ns.run(&[
        "iptables-nft",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "22",
        "-j",
        "ACCEPT",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = ns.run(&["nft", "add table ip mangle; add chain ip mangle x { type filter hook input priority 0; policy accept; }; add rule ip mangle x tcp dport 10250 drop"]);
    assert!(ok, "{err}");
    let (_, save, _) = ns.run(&["iptables-nft-save"]);
    assert!(save.contains("incompatible"), "{save}");
    let mut args = vec![KPORTS, "firewall", "check", "-o", "json"];
    args.extend(CLUSTER);
    let (ok, out, err) = ns.run(&args);
    // The kubelet's port dropped for the control plane: exit 1.
    assert!(!ok, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = doc["items"].as_array().unwrap();
    let kubelet = rows
        .iter()
        .find(|r| r["port"]["lo"] == 10250 && r["expect_open"] == true)
        .unwrap();
    let j = &kubelet["segments"][0]["judgement"];
    assert_eq!(j["verdict"], "drop", "{j}");
    assert_eq!(j["by"]["table"], "ip mangle", "{j}");
    assert_eq!(j["by"]["backend"], "nft", "{j}");
    assert_eq!(j["by"]["text"], "tcp dport 10250 drop", "{j}");
}
