//! `kports preflight --lab` on a lab brought up without components (nodes before Kubernetes is
//! installed): every port is open; a process squatting on a port is named with its pid; a
//! dropped port is a blocked path; nothing stays bound afterwards, also when the preflight is
//! killed midway; and only the lab's addresses are probed.
//!
//! Root, one lab at a time (the lab turn); a guard runs `kports lab down` when a test ends,
//! passed or failed. Waits for the lab's sockets to settle are bounded polls, never timing
//! assertions. The squatter is a process this test starts in a node and kills by pid.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{BareLab, KPORTS, kports, text};

const NODES: [&str; 3] = ["cp1", "w1", "w2"];

/// `kports preflight --lab -o json ARGS`: (exit code, rows).
fn preflight(args: &[&str]) -> (i32, Vec<Value>) {
    let mut a = vec!["preflight", "--lab", "-o", "json"];
    a.extend_from_slice(args);
    let out = kports(&a);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "preflight: not JSON ({e}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert_eq!(doc["kind"], "preflight");
    (
        out.status.code().unwrap_or(-1),
        doc["items"].as_array().unwrap().clone(),
    )
}

/// `ss -H -n -l -t -u -p` in a lab node: (proto, local endpoint, process) of every socket
/// bound there, except the kernel's VXLAN socket of `flannel.1` (no process).
fn bound_in(node: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("kports-{node}"),
            "ss",
            "-H",
            "-n",
            "-l",
            "-t",
            "-u",
            "-p",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ss in {node}: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.starts_with("udp") && l.contains(":8472") && !l.contains("pid=")))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Polls (bounded) until no node has a socket bound; returns what is left then.
fn settle_unbound() -> Vec<String> {
    let start = Instant::now();
    loop {
        let left: Vec<String> = NODES
            .iter()
            .flat_map(|n| bound_in(n).into_iter().map(move |l| format!("{n}: {l}")))
            .collect();
        if left.is_empty() || start.elapsed() > Duration::from_secs(20) {
            return left;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The lab's node addresses, IPv4 and IPv6.
fn lab_addresses() -> BTreeSet<IpAddr> {
    ["11", "21", "22"]
        .iter()
        .flat_map(|d| {
            [
                format!("192.0.2.{d}").parse().unwrap(),
                format!("2001:db8::{d}").parse().unwrap(),
            ]
        })
        .collect()
}

fn key(r: &Value) -> (String, String, String, u64) {
    (
        r["source"].as_str().unwrap().into(),
        r["target"].as_str().unwrap().into(),
        r["proto"].as_str().unwrap().into(),
        r["port"].as_u64().unwrap(),
    )
}

#[test]
fn a_bare_lab_is_open_everywhere_and_nothing_stays_bound() {
    let _lab = BareLab::up();
    assert_eq!(
        settle_unbound(),
        Vec::<String>::new(),
        "bound before the preflight"
    );
    let (code, rows) = preflight(&[]);
    let bad: Vec<&Value> = rows.iter().filter(|r| r["verdict"] != "open").collect();
    assert!(bad.is_empty(), "not open: {bad:#?}");
    assert_eq!(code, 0);
    // cp1's 6443, 2379, 2380 and 10250 from two workers, each worker's 10250 from two peers,
    // over IPv4 and IPv6.
    assert_eq!(rows.len(), (4 * 2 + 2 * 2) * 2, "{rows:#?}");
    let cp1: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r["target"] == "cp1")
        .map(|r| r["port"].as_u64().unwrap())
        .collect();
    assert_eq!(cp1, BTreeSet::from([2379, 2380, 6443, 10250]));
    // Only the lab's own addresses are probed.
    let probed: BTreeSet<IpAddr> = rows
        .iter()
        .map(|r| r["target_address"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(probed, lab_addresses());
    assert_eq!(
        settle_unbound(),
        Vec::<String>::new(),
        "left bound after the preflight"
    );

    // UDP: the temporary responders answer kports's probes, so a UDP port reads `open`, not
    // `open|filtered`.
    let (code, rows) = preflight(&["--ports", "udp/8473,tcp/9000"]);
    assert_eq!(code, 0, "{rows:#?}");
    assert_eq!(rows.len(), 3 * 2 * 2 * 2, "{rows:#?}");
    assert!(
        rows.iter()
            .all(|r| r["status"] == "open" && r["verdict"] == "open"),
        "{rows:#?}"
    );
    assert!(rows.iter().any(|r| r["proto"] == "udp"));
    assert_eq!(settle_unbound(), Vec::<String>::new(), "left bound (UDP)");

    // A node whose IPv6 wildcard takes IPv6 only (net.ipv6.bindv6only, per namespace) still
    // holds its ports on IPv4.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            "kports-w1",
            "sysctl",
            "-qw",
            "net.ipv6.bindv6only=1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, rows) = preflight(&["--ports", "udp/8473,tcp/9000"]);
    assert_eq!(code, 0, "{rows:#?}");
    assert!(rows.iter().all(|r| r["verdict"] == "open"), "{rows:#?}");
    assert_eq!(
        settle_unbound(),
        Vec::<String>::new(),
        "left bound (bindv6only)"
    );
}

#[test]
fn a_squatter_is_named_and_a_drop_is_a_blocked_path() {
    let _lab = BareLab::up();
    // A process of this test holds w1's 10250 on loopback only: the kubelet could still not
    // bind *:10250 there.
    let mut squatter: Child = Command::new(KPORTS)
        .args(["lab", "exec", "w1", "--", "python3", "-c"])
        .arg(
            "import socket,sys\n\
             s=socket.socket()\n\
             s.bind(('127.0.0.1',10250))\n\
             s.listen()\n\
             print('ready',flush=True)\n\
             sys.stdin.read()",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = squatter.id();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(squatter.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    let out = kports(&["lab", "fault", "cp1", "drop", "tcp/2380"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let (code, rows) = preflight(&["--timeout", "1s"]);
    drop(squatter.stdin.take());
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = squatter.wait();

    assert_eq!(code, 1);
    let taken: Vec<&Value> = rows
        .iter()
        .filter(|r| r["verdict"] == "port-taken")
        .collect();
    assert_eq!(taken.len(), 1, "{rows:#?}");
    assert_eq!(
        key(taken[0]),
        ("w1".into(), "w1".into(), "tcp".into(), 10250)
    );
    let procs = taken[0]["holder"]["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "{taken:#?}");
    assert_eq!(procs[0]["pid"].as_u64(), Some(u64::from(pid)));
    assert_eq!(procs[0]["name"], "python3");
    assert!(
        taken[0]["cause"]
            .as_str()
            .unwrap()
            .contains(&format!("python3 (pid {pid})")),
        "{taken:#?}"
    );
    let blocked: BTreeSet<(String, String, String, u64)> = rows
        .iter()
        .filter(|r| r["verdict"] == "path-blocked")
        .map(key)
        .collect();
    assert_eq!(
        blocked,
        BTreeSet::from([
            ("w1".into(), "cp1".into(), "tcp".into(), 2380),
            ("w2".into(), "cp1".into(), "tcp".into(), 2380),
        ])
    );
    assert!(
        rows.iter()
            .filter(|r| r["verdict"] == "path-blocked")
            .all(|r| r["status"] == "filtered")
    );
    // Everything else is open: w1's 10250 is not dialled (it was never held).
    let others = rows
        .iter()
        .filter(|r| !["port-taken", "path-blocked"].contains(&r["verdict"].as_str().unwrap()));
    assert!(others.clone().all(|r| r["verdict"] == "open"), "{rows:#?}");
    assert_eq!(others.count(), 24 - 4 - 4);
    assert_eq!(
        settle_unbound(),
        Vec::<String>::new(),
        "left bound after the preflight"
    );
}

#[test]
fn nothing_stays_bound_when_the_preflight_is_killed_midway() {
    let _lab = BareLab::up();
    // A dropped port keeps the probes busy for their whole timeout, long after the holds are up.
    let out = kports(&["lab", "fault", "cp1", "drop", "tcp/6443"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut run = Command::new(KPORTS)
        .args(["preflight", "--lab", "--timeout", "30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Bounded wait until cp1 holds its ports.
    let start = Instant::now();
    while !bound_in("cp1").iter().any(|l| l.contains(":6443")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "cp1 never held 6443"
        );
        assert!(
            run.try_wait().unwrap().is_none(),
            "the preflight ended early"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        bound_in("w1").iter().any(|l| l.contains(":10250")),
        "w1 holds 10250 too"
    );
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(
        settle_unbound(),
        Vec::<String>::new(),
        "left bound after a kill"
    );
    // The probes it had started went with it: no process is left in a node.
    let start = Instant::now();
    while !in_lab_nodes().is_empty() && start.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        in_lab_nodes(),
        Vec::<u32>::new(),
        "processes left in the nodes"
    );
}

#[test]
fn a_node_whose_hold_dies_midway_is_unknown_not_blocked() {
    let _lab = BareLab::up();
    // cp1 drops 6443, so its peers' probes take their whole timeout while w1's hold is killed.
    let out = kports(&["lab", "fault", "cp1", "drop", "tcp/6443"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run = Command::new(KPORTS)
        .args(["preflight", "--lab", "-o", "json", "--timeout", "5s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let holder = loop {
        let pid = bound_in("w1")
            .iter()
            .filter(|l| l.contains(":10250"))
            .find_map(|l| {
                l.split("pid=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u32>()
                    .ok()
            });
        if let Some(pid) = pid {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "w1 never held 10250"
        );
        thread::sleep(Duration::from_millis(50));
    };
    // The hold is a process the preflight started for this test (kports in w1's namespace).
    let comm = std::fs::read_to_string(format!("/proc/{holder}/comm")).unwrap();
    assert_eq!(comm.trim(), "kports");
    let _ = Command::new("kill")
        .args(["-9", &holder.to_string()])
        .status();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = doc["items"].as_array().unwrap();
    let w1: Vec<&Value> = rows.iter().filter(|r| r["target"] == "w1").collect();
    assert!(!w1.is_empty());
    for r in &w1 {
        assert_eq!(r["verdict"], "unknown", "{r:#?}");
        assert!(
            r["cause"].as_str().unwrap().contains("ended before"),
            "{r:#?}"
        );
    }
    assert!(
        rows.iter()
            .all(|r| r["verdict"] != "path-blocked" || r["port"] == 6443)
    );
    assert_eq!(settle_unbound(), Vec::<String>::new(), "left bound");
}

/// Pids of live processes whose network namespace is one of the lab's nodes.
fn in_lab_nodes() -> Vec<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let nodes: Vec<u64> = NODES
        .iter()
        .filter_map(|n| std::fs::metadata(format!("/run/netns/kports-{n}")).ok())
        .map(|m| m.ino())
        .collect();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if nodes.contains(&m.ino()) && !zombie {
            v.push(pid);
        }
    }
    v
}

/// The inventory path: the nodes from a kports inventory, reached through a `--via` template
/// (`ip netns exec kports-{name}`, as `ssh root@{address}` would reach real nodes), for both the
/// preflight and the overlay check.
#[test]
fn an_inventory_and_a_via_template_reach_the_nodes() {
    let _lab = BareLab::up();
    let dir = std::env::temp_dir().join(format!("kports-preflight-via-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("nodes.yaml");
    std::fs::write(
        &inv,
        "nodes:\n\
         \x20 - {name: cp1, address: 192.0.2.11, roles: [control-plane]}\n\
         \x20 - {name: w1, address: 192.0.2.21, roles: [worker]}\n\
         \x20 - {name: w2, address: 192.0.2.22, roles: [worker]}\n",
    )
    .unwrap();
    let inv = inv.to_str().unwrap();
    let via = [
        "--inventory",
        inv,
        "--via",
        "ip netns exec kports-{name}",
        "--remote-kports",
        KPORTS,
    ];
    let run = |cmd: &str| {
        let mut a = vec![cmd, "-o", "json"];
        a.extend_from_slice(&via);
        let out = kports(&a);
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{cmd}: not JSON ({e}): {}", text(&out.stderr)));
        (out.status.code(), doc["items"].as_array().unwrap().clone())
    };
    let (code, rows) = run("preflight");
    assert_eq!(code, Some(0), "{rows:#?}");
    // IPv4 only: the inventory gives no address6.
    assert_eq!(rows.len(), 4 * 2 + 2 * 2, "{rows:#?}");
    assert!(rows.iter().all(|r| r["verdict"] == "open"), "{rows:#?}");
    assert_eq!(settle_unbound(), Vec::<String>::new(), "left bound");
    let (code, rows) = run("overlay");
    assert_eq!(code, Some(0), "{rows:#?}");
    assert_eq!(rows.len(), 6, "{rows:#?}");
    assert!(rows.iter().all(|r| r["verdict"] == "pass"), "{rows:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad input is refused with exit status 2 and a message, before anything runs (no root).
#[test]
fn bad_input_is_refused_with_a_reason() {
    let dir = std::env::temp_dir().join(format!("kports-preflight-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("nodes.yaml");
    std::fs::write(
        &inv,
        "nodes:\n  - name: a\n    address: 127.0.0.1\n    roles: [worker]\n",
    )
    .unwrap();
    let inv = inv.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["preflight"], "--inventory"),
        (&["preflight", "--inventory", inv], "--via"),
        (
            &["preflight", "--inventory", inv, "--via", "ssh {host}"],
            "{host}",
        ),
        (
            &["preflight", "--inventory", inv, "--via", "ssh 'x"],
            "quote",
        ),
        (&["preflight", "--hold"], "--ports"),
        (
            &["preflight", "--lab", "--hold", "--ports", "1"],
            "cannot be used",
        ),
        (
            &[
                "preflight",
                "--inventory",
                inv,
                "--via",
                "true",
                "--cni",
                "nope",
            ],
            "nope",
        ),
        (
            &["preflight", "--inventory", "/nonexistent", "--via", "true"],
            "/nonexistent",
        ),
        (&["overlay"], "--inventory"),
        (
            &["overlay", "--inventory", inv, "--via", "true"],
            "two nodes",
        ),
        (
            &["overlay", "--node", "--ping", "not-an-address"],
            "not-an-address",
        ),
    ];
    for (args, says) in cases {
        let out = kports(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} should say {says}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
