//! `kports check` on `kports lab`: a clean lab node reports no error, and each injected fault
//! (a stopped or re-bound component, a port taken, a firewall drop) gives exactly the expected
//! finding.
//!
//! These tests bring up real labs (root; one lab per machine, so they run one at a time and fail
//! rather than touch a lab someone else left up). A guard runs `kports lab down` when a test
//! ends, passed or failed. A fault's effect is read by re-running the check a bounded number of
//! times until the component's listeners have settled (never a timing assertion). A process that
//! takes a port is a stand-in this test starts in the node's namespace and kills by pid.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use serde_json::Value;

const KPORTS: &str = env!("CARGO_BIN_EXE_kports");
const STANDIN: &str = include_str!("support/standin.py");
const RUN_DIR: &str = "/run/kports-lab";

/// One lab at a time.
static LAB: Mutex<()> = Mutex::new(());

fn kports(args: &[&str]) -> Output {
    Command::new(KPORTS)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kports {args:?}: {e}"))
}

fn kports_ok(args: &[&str]) {
    let out = kports(args);
    assert!(
        out.status.success(),
        "kports {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A lab that goes down when the guard is dropped.
struct Lab {
    _turn: MutexGuard<'static, ()>,
}

impl Lab {
    fn up() -> Lab {
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the lab tests create network namespaces and must run as root"
        );
        let turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            !Path::new(RUN_DIR).exists(),
            "a kports lab is already up on this machine; run `kports lab down` first"
        );
        let lab = Lab { _turn: turn };
        kports_ok(&["lab", "up"]);
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = kports(&["lab", "down"]);
        if !out.status.success() && !thread::panicking() {
            panic!(
                "kports lab down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `kports check -o json ARGS` inside a lab node: (exit code, document).
fn check(node: &str, args: &[&str]) -> (i32, Value) {
    let ns = format!("kports-{node}");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, KPORTS, "check", "-o", "json"])
        .args(args)
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check on {node}: not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

/// (id, severity, protocol/port), sorted.
fn findings(doc: &Value) -> Vec<Found> {
    let mut v: Vec<Found> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let port = match &f["port"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (
                f["id"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                format!("{}/{port}", f["protocol"].as_str().unwrap()),
            )
        })
        .collect();
    v.sort();
    v
}

/// A finding as the tests compare it: (id, severity, protocol/port).
type Found = (String, String, String);

fn f(id: &str, severity: &str, port: &str) -> Found {
    (id.to_string(), severity.to_string(), port.to_string())
}

/// Re-checks `node` until its findings are `expected` (at most 50 tries, 100 ms apart: a
/// restarted component needs a moment to listen), then asserts them.
fn settles_to(node: &str, expected: &[Found]) -> Value {
    let mut doc = Value::Null;
    for _ in 0..50 {
        doc = check(node, &[]).1;
        if findings(&doc) == expected {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(findings(&doc), expected, "{node}: {doc:#}");
    doc
}

/// A process named `name` holding `specs` in a lab node's namespace, killed by pid on drop.
struct Squatter {
    child: Child,
    dir: PathBuf,
}

impl Squatter {
    fn start(node: &str, name: &str, specs: &[&str]) -> Squatter {
        let dir = std::env::temp_dir().join(format!("kpc-lab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("standin.py"), STANDIN).unwrap();
        let exe = dir.join(name);
        if !exe.exists() {
            std::os::unix::fs::symlink("/usr/bin/python3", &exe).unwrap();
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", &format!("kports-{node}")])
            .arg(&exe)
            .arg(dir.join("standin.py"))
            .args(specs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let s = Squatter { child, dir };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{name} {specs:?} did not start");
        s
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn clean_lab_nodes_report_no_error() {
    let _lab = Lab::up();
    for (node, role) in [("cp1", "control-plane"), ("w1", "worker"), ("w2", "worker")] {
        let (code, doc) = check(node, &[]);
        assert_eq!(findings(&doc), [], "{node}: {doc:#}");
        assert_eq!(code, 0, "{node}");
        assert_eq!(doc["context"]["role"]["value"], role, "{node}");
        assert_eq!(
            doc["context"]["cni"]["value"],
            serde_json::json!(["flannel"]),
            "{node}"
        );
        // The kubelet's --read-only-port=0 turns 10255 off, and the check says so.
        let ro = doc["context"]["checked"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["entry"]["port"] == 10255)
            .unwrap();
        assert_eq!(ro["result"], "off", "{node}");
    }
}

#[test]
fn each_component_fault_gives_exactly_the_expected_finding() {
    let _lab = Lab::up();
    let cases: [(&str, &[&str], Vec<Found>); 10] = [
        (
            "cp1",
            &["stop", "kube-scheduler"],
            vec![f("port-not-listening", "error", "tcp/10259")],
        ),
        (
            "cp1",
            &["stop", "kube-apiserver"],
            vec![f("port-not-listening", "error", "tcp/6443")],
        ),
        (
            "cp1",
            &["bind", "kube-apiserver", "127.0.0.1"],
            vec![f("bound-loopback-only", "error", "tcp/6443")],
        ),
        (
            "cp1",
            &["bind", "kube-controller-manager", "0.0.0.0"],
            // Wider than kubeadm binds it, and the node's (empty) firewall lets anyone in.
            vec![
                f("bound-too-wide", "warning", "tcp/10257"),
                f("firewall-exposes-private-port", "warning", "tcp/10257"),
            ],
        ),
        (
            "cp1",
            &["bind", "kube-scheduler", "0.0.0.0"],
            vec![
                f("bound-too-wide", "warning", "tcp/10259"),
                f("firewall-exposes-private-port", "warning", "tcp/10259"),
            ],
        ),
        (
            "cp1",
            &["bind", "etcd", "0.0.0.0"],
            vec![f("bound-too-wide", "info", "tcp/2379")],
        ),
        (
            "w1",
            &["stop", "kubelet"],
            vec![
                f("port-not-listening", "error", "tcp/10250"),
                f("port-not-listening", "warning", "tcp/10248"),
            ],
        ),
        (
            "w1",
            &["stop", "kube-proxy"],
            vec![
                f("port-not-listening", "warning", "tcp/10249"),
                f("port-not-listening", "warning", "tcp/10256"),
            ],
        ),
        (
            "w1",
            &["bind", "kubelet", "127.0.0.1"],
            vec![f("bound-loopback-only", "error", "tcp/10250")],
        ),
        (
            "w1",
            &["bind", "kube-proxy", "127.0.0.1"],
            vec![f("bound-loopback-only", "error", "tcp/10256")],
        ),
    ];
    for (node, fault, expected) in cases {
        let mut args = vec!["lab", "fault", node];
        args.extend_from_slice(fault);
        kports_ok(&args);
        let mut expected = expected;
        expected.sort();
        let doc = settles_to(node, &expected);
        let worst = expected
            .iter()
            .map(|e| e.1.as_str())
            .find(|s| *s == "error");
        let (code, _) = check(node, &[]);
        assert_eq!(
            code,
            if worst.is_some() { 1 } else { 0 },
            "{node} {fault:?}"
        );
        // Every finding says how to see it.
        for item in doc["items"].as_array().unwrap() {
            assert!(
                item["command"].as_str().unwrap().starts_with("ss -"),
                "{item:#}"
            );
        }
        // `clear` restarts what was stopped and re-binds what was moved.
        kports_ok(&["lab", "fault", node, "clear"]);
        settles_to(node, &[]);
    }
    // An info finding fails only a pipeline that asks for it.
    kports_ok(&["lab", "fault", "cp1", "bind", "etcd", "0.0.0.0"]);
    settles_to("cp1", &[f("bound-too-wide", "info", "tcp/2379")]);
    assert_eq!(check("cp1", &["--fail-on", "info"]).0, 1);
    assert_eq!(check("cp1", &["--fail-on", "warning"]).0, 0);
}

#[test]
fn a_port_taken_by_another_process_is_a_conflict() {
    let _lab = Lab::up();
    kports_ok(&["lab", "fault", "cp1", "stop", "kube-scheduler"]);
    settles_to("cp1", &[f("port-not-listening", "error", "tcp/10259")]);
    let nc = Squatter::start("cp1", "nc", &["tcp:127.0.0.1:10259"]);
    let doc = settles_to("cp1", &[f("port-conflict", "error", "tcp/10259")]);
    let item = &doc["items"][0];
    assert_eq!(
        item["message"],
        format!(
            "tcp/10259 is held by nc (pid {}), not kube-scheduler; kubeadm preflight reports `[ERROR Port-10259]: Port 10259 is in use`",
            nc.pid()
        )
    );
    assert_eq!(
        item["evidence"]["sockets"][0]["processes"][0]["pid"],
        nc.pid()
    );

    // In the NodePort range of a worker: a warning.
    let squat = Squatter::start("w2", "python3", &["tcp:0.0.0.0:30080"]);
    let doc = settles_to("w2", &[f("port-conflict", "warning", "tcp/30080")]);
    assert!(doc["items"][0]["message"].as_str().unwrap().contains(&format!("python3 (pid {}) listens on tcp/30080, inside the NodePort Services range 30000-32767", squat.pid())));
}

#[test]
fn pre_install_on_a_joined_worker_names_every_holder() {
    let _lab = Lab::up();
    let (code, doc) = check("w1", &["--pre-install", "--role", "worker"]);
    assert_eq!(code, 1);
    let got = findings(&doc);
    let mut expected = vec![
        f("port-in-use", "error", "tcp/10248"),
        f("port-in-use", "error", "tcp/10249"),
        f("port-in-use", "error", "tcp/10250"),
        f("port-in-use", "error", "tcp/10256"),
        f("port-in-use", "error", "udp/8472"),
    ];
    expected.sort();
    assert_eq!(got, expected, "{doc:#}");
    let msg = |port: u64| {
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["port"] == port)
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        msg(10250).starts_with("[ERROR Port-10250]: Port 10250 is in use by kubelet (pid "),
        "{}",
        msg(10250)
    );
    assert!(
        msg(10256).starts_with("[ERROR Port-10256]: Port 10256 is in use by kube-proxy (pid "),
        "{}",
        msg(10256)
    );
}

#[test]
fn a_firewall_drop_of_the_kubelet_port_is_a_finding_until_cleared() {
    let _lab = Lab::up();
    kports_ok(&["lab", "fault", "w1", "drop", "tcp/10250"]);
    let expected = [f("firewall-blocks-required-port", "error", "tcp/10250")];
    let doc = settles_to("w1", &expected);
    let item = &doc["items"][0];
    // Judged from the control plane, whose address the kubelet's connection to the API
    // server shows; decided by the lab's fault rule, which the command lists.
    assert_eq!(
        item["command"], "nft -a list chain inet kports_lab_fault input",
        "{item:#}"
    );
    let message = item["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "the firewall drops tcp/10250 from 192.0.2.11 (the API server this node connects to), but the control plane must reach kubelet there"
        ),
        "{message}"
    );
    assert!(message.contains("tcp dport 10250 drop"), "{message}");
    let verdict = &item["evidence"]["firewall"][0];
    assert_eq!(verdict["verdict"], "drop", "{item:#}");
    assert_eq!(verdict["source_kind"], "control-plane", "{item:#}");
    assert!(
        verdict["rule"]
            .as_str()
            .unwrap()
            .contains("inet kports_lab_fault input"),
        "{item:#}"
    );
    assert_eq!(check("w1", &[]).0, 1, "an error reaches --fail-on error");
    // The fault is on w1 only.
    assert_eq!(findings(&check("w2", &[]).1), []);
    // --no-firewall leaves the firewall out.
    let (code, doc) = check("w1", &["--no-firewall"]);
    assert_eq!(findings(&doc), [], "{doc:#}");
    assert_eq!(code, 0);

    kports_ok(&["lab", "fault", "w1", "clear"]);
    settles_to("w1", &[]);
}
