//! `kports cluster` and `kports report`: the bad-input paths and a cluster on loopback (no lab),
//! and the matrix of a real `kports lab` (root): a clean lab has no failing cell, and each fault
//! (a drop, each kind of reject, a stopped component, a component bound to loopback, a node
//! whose link is down) shows exactly the right cells with the right status and cause, and etcd
//! members on workers reach each other on 2380 until one drops it. One lab serves every fault
//! of a test, mended between them; only lab addresses are ever probed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::RwLockWriteGuard;

use serde_json::Value;

use crate::support::{KPORTS, kports, lab_turn};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn bad_input_is_refused_with_exit_status_2() {
    let dir = std::env::temp_dir().join(format!("kp11-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("hosts.yaml");
    std::fs::write(
        &inv,
        "nodes:\n  - name: n1\n    address: 127.0.0.1\n    roles: [worker]\n",
    )
    .unwrap();
    let not_report = dir.join("probe.json");
    std::fs::write(&not_report, r#"{"schema":1,"kind":"probe","items":[]}"#).unwrap();
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    let inv_s = inv.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["cluster"], "required"),
        (vec!["cluster", "--via", "ssh {address}"], "--inventory"),
        (
            vec!["cluster", "--inventory", inv_s, "--via", "ssh {host}"],
            "`{host}` is not a placeholder",
        ),
        (
            vec!["cluster", "--inventory", inv_s, "--via", "ssh 'x"],
            "unterminated",
        ),
        (
            vec![
                "cluster",
                "--inventory",
                "/nonexistent/h.yaml",
                "--via",
                "ssh {address}",
            ],
            "/nonexistent/h.yaml",
        ),
        (
            vec!["cluster", not_report.to_str().unwrap()],
            "a `probe` document, not a node report",
        ),
        (vec!["cluster", garbage.to_str().unwrap()], "not JSON"),
        (vec!["cluster", "/nonexistent/w1.json"], "cannot open"),
        (
            vec![
                "cluster",
                "--inventory",
                inv_s,
                "--via",
                "env",
                "--remote-kports",
                "/nonexistent/kports",
            ],
            "no node gave a report",
        ),
        (vec!["report", "--self", "n1"], "--inventory"),
        (
            vec!["cluster", "--lab", "--via", "ssh {name}"],
            "cannot be used with",
        ),
    ];
    for (args, says) in cases {
        let out = kports(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(says),
            "{args:?} should say {says:?}: {}",
            text(&out)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two "nodes" on loopback addresses, each report made by this same binary through a `--via`
/// that runs it here: every cell probes only the inventory's loopback addresses, and the saved
/// reports join to the same matrix as the live run.
#[test]
fn via_runs_each_node_and_saved_reports_join_the_same() {
    crate::support::require_root();
    let dir = std::env::temp_dir().join(format!("kp11-via-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("hosts.yaml");
    std::fs::write(
        &inv,
        "nodes:\n  - name: n1\n    address: 127.0.0.1\n    roles: [worker]\n  - name: n2\n    address: 127.0.0.2\n    roles: [control-plane]\n",
    )
    .unwrap();
    let inv_s = inv.to_str().unwrap();
    let out = kports(&[
        "cluster",
        "--inventory",
        inv_s,
        "--via",
        "env KPORTS_NODE={name} KPORTS_AT={address}",
        "--remote-kports",
        KPORTS,
        "--probe-timeout",
        "500ms",
        "-o",
        "json",
    ]);
    let doc: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(doc["kind"], "cluster");
    let nodes: Vec<&str> = doc["context"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["n1", "n2"]);
    let cells = doc["items"].as_array().unwrap();
    // n1 (a worker) needs the API server of n2; n2 (the control plane) the kubelet of n1.
    let probed: BTreeSet<(String, String, u64)> = cells
        .iter()
        .map(|c| {
            (
                c["source"].as_str().unwrap().to_string(),
                c["target_address"].as_str().unwrap().to_string(),
                c["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        probed.contains(&("n1".into(), "127.0.0.2".into(), 6443)),
        "{probed:?}"
    );
    assert!(
        probed.contains(&("n2".into(), "127.0.0.1".into(), 10250)),
        "{probed:?}"
    );
    for c in cells {
        let a = c["target_address"].as_str().unwrap();
        assert!(a == "127.0.0.1" || a == "127.0.0.2", "probed {a}");
        assert!(c["cause"].is_null() == (c["status"] == "open" || c["status"] == "open|filtered"));
        assert!(c["evidence"].is_object());
    }
    // Each node's report saved and joined from files gives the same cells.
    let mut files = Vec::new();
    for (name, _) in [("n1", "127.0.0.1"), ("n2", "127.0.0.2")] {
        let mut child = Command::new(KPORTS)
            .args(["report", "-o", "json", "--inventory", "-", "--self", name])
            .args(["--probe-peers", "--probe-timeout", "500ms"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&std::fs::read(&inv).unwrap())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let f = dir.join(format!("{name}.json"));
        std::fs::write(&f, &o.stdout).unwrap();
        files.push(f.to_str().unwrap().to_string());
    }
    let mut args = vec!["cluster", "-o", "json"];
    args.extend(files.iter().map(String::as_str));
    let saved = kports(&args);
    let sdoc: Value =
        serde_json::from_slice(&saved.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&saved)));
    let key = |d: &Value| -> BTreeSet<(String, String, u64, String)> {
        d["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["source"].as_str().unwrap().to_string(),
                    c["target_address"].as_str().unwrap().to_string(),
                    c["port"].as_u64().unwrap(),
                    c["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(key(&sdoc), key(&doc));
    std::fs::remove_dir_all(&dir).unwrap();
}

const RUN_DIR: &str = "/run/kports-lab";

/// A lab that goes down when the guard is dropped, passed or failed.
struct Lab {
    _turn: RwLockWriteGuard<'static, ()>,
}

impl Lab {
    fn up(args: &[&str]) -> Lab {
        let turn = lab_turn();
        assert!(
            !Path::new(RUN_DIR).exists(),
            "a kports lab is already up on this machine; run `kports lab down` first"
        );
        let lab = Lab { _turn: turn };
        let mut a = vec!["lab", "up"];
        a.extend_from_slice(args);
        let out = kports(&a);
        assert!(out.status.success(), "kports lab up: {}", text(&out));
        lab
    }

    fn fault(&self, node: &str, args: &[&str]) {
        let mut a = vec!["lab", "fault", node];
        a.extend_from_slice(args);
        let out = kports(&a);
        assert!(out.status.success(), "{a:?}: {}", text(&out));
    }

    /// Loads an nft script into a node's namespace.
    fn nft(&self, node: &str, script: &str) {
        let mut child = Command::new(KPORTS)
            .args(["lab", "exec", node, "--", "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "nft in {node}: {}", text(&out));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = kports(&["lab", "down"]);
        if !out.status.success() && !std::thread::panicking() {
            panic!("kports lab down failed: {}", text(&out));
        }
    }
}

/// A failing cell as the tests compare it: (source, target, family, proto/port, status).
type Failing = (String, String, u8, String, String);

fn cluster() -> (i32, Value) {
    let out = kports(&["cluster", "--lab", "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kports cluster --lab: not JSON ({e}): {}", text(&out)));
    (out.status.code().unwrap_or(-1), doc)
}

/// The failing cells, with the cause of each.
fn failing(doc: &Value) -> BTreeMap<Failing, String> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["cause"].is_null())
        .map(|c| {
            let addr = c["target_address"].as_str().unwrap();
            (
                (
                    c["source"].as_str().unwrap().to_string(),
                    c["target"].as_str().unwrap().to_string(),
                    if addr.contains(':') { 6 } else { 4 },
                    format!("{}/{}", c["proto"].as_str().unwrap(), c["port"]),
                    c["status"].as_str().unwrap().to_string(),
                ),
                c["cause"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn cell(s: &str, t: &str, family: u8, port: &str, status: &str) -> Failing {
    (s.into(), t.into(), family, port.into(), status.into())
}

/// Runs the matrix until its failing cells are `expected` (at most 10 runs: a restarted
/// component needs a moment to listen), then asserts them and the exit status; returns the
/// causes.
fn settles_to(expected: &[Failing]) -> (BTreeMap<Failing, String>, Value) {
    let want: BTreeSet<Failing> = expected.iter().cloned().collect();
    let mut last = (0, Value::Null);
    for _ in 0..10 {
        last = cluster();
        let got: BTreeSet<Failing> = failing(&last.1).into_keys().collect();
        if got == want {
            break;
        }
    }
    let (code, doc) = last;
    let got = failing(&doc);
    let keys: BTreeSet<Failing> = got.keys().cloned().collect();
    assert_eq!(keys, want, "{got:#?}");
    assert_eq!(code, if want.is_empty() { 0 } else { 1 });
    // Only the lab's own addresses are probed.
    let lab: BTreeSet<&str> = [
        "192.0.2.11",
        "192.0.2.21",
        "192.0.2.22",
        "2001:db8::11",
        "2001:db8::21",
        "2001:db8::22",
    ]
    .into();
    for c in doc["items"].as_array().unwrap() {
        let a = c["target_address"].as_str().unwrap();
        assert!(lab.contains(a), "probed {a}, not a lab address");
    }
    (got, doc)
}

fn assert_cause(causes: &BTreeMap<Failing, String>, c: &Failing, says: &str) {
    let cause = &causes[c];
    assert!(cause.contains(says), "{c:?}: {cause:?} should say {says:?}");
}

const REJECTS: &str = "table inet kp11cluster {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname \"lo\" accept
    tcp dport 10250 reject with tcp reset
  }
}
";

#[test]
fn the_lab_matrix_is_clean_and_each_fault_shows_exactly_its_cells_and_cause() {
    let lab = Lab::up(&[]);
    // Every node's ICMP errors answer every probe (the kernel limits them per destination).
    for n in ["cp1", "w1", "w2"] {
        for knob in ["ipv4/icmp_ratelimit", "ipv6/icmp/ratelimit"] {
            let set = format!("echo 0 > /proc/sys/net/{knob}");
            let out = kports(&["lab", "exec", n, "--", "sh", "-c", &set]);
            assert!(out.status.success(), "{knob}: {}", text(&out));
        }
    }
    let (_, clean) = settles_to(&[]);
    let states: Vec<&str> = clean["context"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["ok", "ok", "ok"]);
    // Every required pair is in the matrix: the workers reach the API server, the control
    // plane every kubelet, over both families.
    assert!(clean["items"].as_array().unwrap().len() >= 8);

    // A drop, a stopped component and one bound to loopback, on three nodes at once.
    lab.fault("w2", &["drop", "tcp/10250"]);
    lab.fault("w1", &["stop", "kubelet"]);
    lab.fault("cp1", &["bind", "kube-apiserver", "127.0.0.1"]);
    let expected = [
        cell("cp1", "w2", 4, "tcp/10250", "filtered"),
        cell("cp1", "w2", 6, "tcp/10250", "filtered"),
        cell("cp1", "w1", 4, "tcp/10250", "refused"),
        cell("cp1", "w1", 6, "tcp/10250", "refused"),
        cell("w1", "cp1", 4, "tcp/6443", "refused"),
        cell("w1", "cp1", 6, "tcp/6443", "refused"),
        cell("w2", "cp1", 4, "tcp/6443", "refused"),
        cell("w2", "cp1", 6, "tcp/6443", "refused"),
    ];
    let (causes, _) = settles_to(&expected);
    assert_cause(
        &causes,
        &expected[0],
        "kubelet on w2 listens on *:10250; w2's firewall drops tcp/10250 from 192.0.2.11 (nft inet kports_lab_fault input",
    );
    assert_cause(&causes, &expected[1], "drops tcp/10250 from 2001:db8::11");
    for c in &expected[2..4] {
        assert_cause(
            &causes,
            c,
            "nothing listens on tcp/10250 on w1: kubelet is not running there",
        );
    }
    for c in &expected[4..] {
        assert_cause(
            &causes,
            c,
            "kube-apiserver on cp1 listens on 127.0.0.1:6443 only: bound to loopback",
        );
    }
    for n in ["cp1", "w1", "w2"] {
        lab.fault(n, &["clear"]);
    }

    // Each kind of reject: ICMP port unreachable (the lab's own), a TCP reset, and ICMP
    // administratively prohibited and host unreachable.
    lab.fault("w2", &["reject", "tcp/10250"]);
    lab.nft("w1", REJECTS);
    lab.nft(
        "cp1",
        &REJECTS.replace(
            "tcp dport 10250 reject with tcp reset",
            "tcp dport 6443 reject with icmpx type admin-prohibited",
        ),
    );
    let expected = [
        cell("cp1", "w2", 4, "tcp/10250", "refused"),
        cell("cp1", "w2", 6, "tcp/10250", "refused"),
        cell("cp1", "w1", 4, "tcp/10250", "refused"),
        cell("cp1", "w1", 6, "tcp/10250", "refused"),
        cell("w1", "cp1", 4, "tcp/6443", "unreachable"),
        cell("w1", "cp1", 6, "tcp/6443", "unreachable"),
        cell("w2", "cp1", 4, "tcp/6443", "unreachable"),
        cell("w2", "cp1", 6, "tcp/6443", "unreachable"),
    ];
    let (causes, _) = settles_to(&expected);
    assert_cause(
        &causes,
        &expected[0],
        "kubelet on w2 listens on *:10250; w2's firewall rejects tcp/10250 from 192.0.2.11 with",
    );
    assert_cause(
        &causes,
        &expected[2],
        "kubelet on w1 listens on *:10250; w1's firewall rejects tcp/10250 from 192.0.2.11 with tcp reset (nft inet kp11cluster input",
    );
    assert_cause(
        &causes,
        &expected[4],
        "kube-apiserver on cp1 listens on *:6443; cp1's firewall rejects tcp/6443 from 192.0.2.21 with icmpx admin-prohibited",
    );
    lab.nft("w1", "delete table inet kp11cluster\n");
    lab.nft("cp1", "delete table inet kp11cluster\n");
    lab.fault("w2", &["clear"]);
    lab.nft(
        "w2",
        &REJECTS.replace(
            "reject with tcp reset",
            "reject with icmpx type host-unreachable",
        ),
    );
    lab.nft(
        "cp1",
        &REJECTS.replace(
            "tcp dport 10250 reject with tcp reset",
            "tcp dport 6443 reject with icmpx type no-route",
        ),
    );
    let expected = [
        cell("cp1", "w2", 4, "tcp/10250", "unreachable"),
        cell("cp1", "w2", 6, "tcp/10250", "unreachable"),
        cell("w1", "cp1", 4, "tcp/6443", "unreachable"),
        cell("w1", "cp1", 6, "tcp/6443", "unreachable"),
        cell("w2", "cp1", 4, "tcp/6443", "unreachable"),
        cell("w2", "cp1", 6, "tcp/6443", "unreachable"),
    ];
    let (causes, doc) = settles_to(&expected);
    assert_cause(
        &causes,
        &expected[0],
        "w2's firewall rejects tcp/10250 from 192.0.2.11 with icmpx host-unreachable",
    );
    assert_cause(
        &causes,
        &expected[2],
        "cp1's firewall rejects tcp/6443 from 192.0.2.21 with icmpx no-route",
    );
    // The errno of each: host unreachable, and no route (the near side has one: the far
    // side's answer says so).
    for c in doc["items"].as_array().unwrap() {
        if c["status"] == "unreachable" {
            let want = if c["port"] == 6443 {
                "ENETUNREACH"
            } else {
                "EHOSTUNREACH"
            };
            assert_eq!(c["errno"], want, "{c}");
        }
    }
    lab.nft("w2", "delete table inet kp11cluster\n");
    lab.nft("cp1", "delete table inet kp11cluster\n");
    settles_to(&[]);

    // A node whose link is down: shown as cut off, every failing cell about it.
    lab.fault("w2", &["down"]);
    let (_, doc) = cluster();
    let causes = failing(&doc);
    // Exactly the TCP cells to and from w2 (whether a probe of it times out or its neighbour
    // lookup fails first depends on the kernel's timers, so the status is either); a UDP cell
    // of the overlay may or may not read failing, but only ever with w2.
    let tcp: BTreeSet<(String, String, u8, String)> = causes
        .keys()
        .filter(|c| c.3.starts_with("tcp/"))
        .map(|c| (c.0.clone(), c.1.clone(), c.2, c.3.clone()))
        .collect();
    let want: BTreeSet<(String, String, u8, String)> = [
        ("cp1", "w2", 4, "tcp/10250"),
        ("cp1", "w2", 6, "tcp/10250"),
        ("w2", "cp1", 4, "tcp/6443"),
        ("w2", "cp1", 6, "tcp/6443"),
    ]
    .into_iter()
    .map(|(a, b, f, p)| (a.to_string(), b.to_string(), f, p.to_string()))
    .collect();
    assert_eq!(tcp, want, "{causes:#?}");
    for (c, cause) in &causes {
        assert!(c.0 == "w2" || c.1 == "w2", "{c:?} does not involve w2");
        assert!(
            cause.starts_with("w2's route to ") || cause.starts_with("w2's eth0"),
            "{c:?}: {cause}"
        );
        assert!(cause.contains("eth0 (down)"), "{c:?}: {cause}");
    }
    let w2 = doc["context"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "w2")
        .unwrap();
    assert_eq!(w2["state"], "cut-off", "{w2}");
    let others: Vec<&Value> = doc["context"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["name"] != "w2")
        .collect();
    for n in others {
        assert_eq!(
            n["failed_sent"].as_u64().unwrap() + n["failed_received"].as_u64().unwrap() > 0,
            n["state"] == "failing",
            "{n}"
        );
    }
}

/// etcd members on workers (`--etcd-workers 2`): every member reaches every other on 2380, and
/// a drop on one member shows exactly the two cells of the other members' probes of it.
#[test]
fn etcd_members_reach_each_other_and_a_drop_between_them_is_named() {
    let lab = Lab::up(&["--etcd-workers", "2"]);
    let (_, clean) = settles_to(&[]);
    let peer: BTreeSet<(String, String)> = clean["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["port"] == 2380)
        .map(|c| {
            assert_eq!(c["status"], "open", "{c}");
            (
                c["source"].as_str().unwrap().to_string(),
                c["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let members = ["cp1", "w1", "w2"];
    let every_pair: BTreeSet<(String, String)> = members
        .iter()
        .flat_map(|a| members.iter().map(move |b| (a.to_string(), b.to_string())))
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(peer, every_pair);
    lab.fault("w1", &["drop", "tcp/2380"]);
    let expected = [
        cell("cp1", "w1", 4, "tcp/2380", "filtered"),
        cell("w2", "w1", 4, "tcp/2380", "filtered"),
    ];
    let (causes, _) = settles_to(&expected);
    assert_cause(
        &causes,
        &expected[0],
        "etcd on w1 listens on 192.0.2.21:2380; w1's firewall drops tcp/2380 from 192.0.2.11 (nft inet kports_lab_fault input",
    );
    assert_cause(
        &causes,
        &expected[1],
        "w1's firewall drops tcp/2380 from 192.0.2.22",
    );
}
