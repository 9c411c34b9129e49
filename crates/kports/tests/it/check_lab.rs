//! `kports check` on `kports lab`: a clean lab node reports no error, and each injected fault
//! (a stopped or re-bound component, a port taken, a firewall drop) gives exactly the expected
//! finding. And `kports firewall plan` applied in every lab node with the real `nft` and
//! `iptables` binaries: real connections between the nodes show that exactly the intended
//! (source, port) pairs get through, and `kports firewall check` judges each one as it went; on a
//! node with a default-deny firewall of its own (nft, iptables-nft, iptables-legacy), the plan
//! opens what is wanted in that firewall too, a second run changes nothing, and `--remove`
//! restores the ruleset exactly.
//!
//! These tests bring up real labs (root; one lab per machine, so they run one at a time and fail
//! rather than touch a lab someone else left up). A guard runs `kports lab down` when a test
//! ends, passed or failed. A fault's effect is read by re-running the check a bounded number of
//! times until the component's listeners have settled (never a timing assertion). A process that
//! takes a port is a stand-in this test starts in the node's namespace and kills by pid.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::RwLockWriteGuard;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::support::{KPORTS, kports, kports_ok, lab_turn};

const STANDIN: &str = include_str!("support/standin.py");
const RUN_DIR: &str = "/run/kports-lab";

/// A lab that goes down when the guard is dropped.
struct Lab {
    _turn: RwLockWriteGuard<'static, ()>,
}

impl Lab {
    fn up() -> Lab {
        Lab::up_with(&[])
    }

    /// `kports lab up ARGS`.
    fn up_with(args: &[&str]) -> Lab {
        let turn = lab_turn();
        assert!(
            !Path::new(RUN_DIR).exists(),
            "a kports lab is already up on this machine; run `kports lab down` first"
        );
        let lab = Lab { _turn: turn };
        let mut a = vec!["lab", "up"];
        a.extend_from_slice(args);
        kports_ok(&a);
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
                format!("{}/{port}", f["protocol"].as_str().unwrap_or("-")),
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
    // The lab's control plane runs a stacked etcd member, as kubeadm's does.
    for (node, roles) in [
        ("cp1", serde_json::json!(["control-plane", "etcd"])),
        ("w1", serde_json::json!(["worker"])),
        ("w2", serde_json::json!(["worker"])),
    ] {
        let (code, doc) = check(node, &[]);
        assert_eq!(findings(&doc), [], "{node}: {doc:#}");
        assert_eq!(code, 0, "{node}");
        assert_eq!(doc["context"]["roles"]["value"], roles, "{node}");
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
    // `kports firewall check` without --sources judges from the same peer, and says so.
    let kubelet_from_cp = |doc: &Value| -> Value {
        let rows = doc["items"].as_array().unwrap();
        let row = rows
            .iter()
            .find(|r| r["port"]["lo"] == 10250 && r["source_kind"] == "control-plane")
            .unwrap_or_else(|| panic!("no 10250 row for the control plane: {doc:#}"));
        assert_eq!(row["source"], "192.0.2.11", "{row:#}");
        assert_eq!(row["expect_open"], true, "{row:#}");
        row["ok"].clone()
    };
    // `firewall check` has `check`'s exit status: 1 with a required port dropped (w1), 0 on a
    // node without a fault (w2); `--fail-on never` always 0.
    let fw_status = |node: &str, extra: &[&str]| -> (bool, Value) {
        let kports = env!("CARGO_BIN_EXE_kports");
        let mut cmd = vec![kports, "firewall", "check", "-o", "json"];
        cmd.extend_from_slice(extra);
        let (ok, out, err) = lab_exec(node, &cmd);
        let doc = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("firewall check in {node}: not JSON ({e}):\n{out}{err}"));
        (ok, doc)
    };
    let (ok, _) = fw_status("w1", &[]);
    assert!(!ok, "a dropped kubelet port fails firewall check");
    let (ok, _) = fw_status("w1", &["--fail-on", "never"]);
    assert!(ok);
    let (ok, w2) = fw_status("w2", &[]);
    assert!(ok, "w2 has no fault: {w2:#}");
    assert_eq!(w2["context"]["summary"]["blocked"], 0, "{w2:#}");
    let fw = |node: &str| -> Value { fw_status(node, &["--fail-on", "never"]).1 };
    let doc = fw("w1");
    assert_eq!(doc["context"]["summary"]["blocked"], 1, "{doc:#}");
    let notes = doc["context"]["notes"].to_string();
    assert!(
        notes.contains("control plane: 192.0.2.11 (the API server this node connects to)"),
        "{notes}"
    );
    assert_eq!(
        kubelet_from_cp(&doc),
        false,
        "the drop is seen without --sources"
    );
    assert_eq!(kubelet_from_cp(&fw("w2")), true, "w2 has no fault");
    // The fault is on w1 only.
    assert_eq!(findings(&check("w2", &[]).1), []);
    // --no-firewall leaves the firewall out.
    let (code, doc) = check("w1", &["--no-firewall"]);
    assert_eq!(findings(&doc), [], "{doc:#}");
    assert_eq!(code, 0);

    kports_ok(&["lab", "fault", "w1", "clear"]);
    settles_to("w1", &[]);
}

// ------------------------------------------------------------------ firewall plans on the lab
//
// Traffic stays inside the lab: every connection is made from a thread that has entered a lab
// node's network namespace, to another lab node's address. Never from the host namespace, whose
// own interfaces may sit in the same documentation range. Only the lab nodes' firewalls change.

/// Everyone who may use the lab cluster: the fabric the nodes sit on (`--sources`).
const LAB_NET: &str = "192.0.2.0/24";
/// The fabric's IPv6 prefix: not among the plans' sources, so closed to every node.
const LAB_NET6: &str = "2001:db8::/64";
/// One connect attempt; a timeout is an outcome, not a measurement.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// A lab node as `kports lab status -o json` describes it.
#[derive(Debug, Clone)]
struct LabNode {
    name: String,
    role: String,
    addr: Ipv4Addr,
    addr6: Ipv6Addr,
}

impl LabNode {
    fn addrs(&self) -> [IpAddr; 2] {
        [self.addr.into(), self.addr6.into()]
    }
}

fn lab_nodes() -> Vec<LabNode> {
    let status: Value = serde_json::from_str(&kports_ok(&["lab", "status", "-o", "json"])).unwrap();
    status["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| LabNode {
            name: n["name"].as_str().unwrap().to_string(),
            role: n["role"].as_str().unwrap().to_string(),
            addr: n["ipv4"].as_str().unwrap().parse().unwrap(),
            addr6: n["ipv6"].as_str().unwrap().parse().unwrap(),
        })
        .collect()
}

/// `kports lab exec NODE -- CMD`: (success, stdout, stderr).
fn lab_exec(node: &str, cmd: &[&str]) -> (bool, String, String) {
    let mut args = vec!["lab", "exec", node, "--"];
    args.extend_from_slice(cmd);
    let out = kports(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kports lab exec NODE -- CMD`, which must succeed: its standard output.
fn lab_exec_ok(node: &str, cmd: &[&str]) -> String {
    let (ok, out, err) = lab_exec(node, cmd);
    assert!(ok, "{cmd:?} in {node} failed:\n{out}{err}");
    out
}

/// The firewall a plan is written for and applied with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fw {
    Nft,
    IptablesNft,
    /// `--backend iptables` writes to iptables-legacy when only its tables hold rules; the test
    /// puts one there first, as a node whose kube-proxy uses legacy iptables has.
    IptablesLegacy,
}

impl Fw {
    fn backend(self) -> &'static str {
        match self {
            Fw::Nft => "nft",
            Fw::IptablesNft | Fw::IptablesLegacy => "iptables",
        }
    }

    /// How the plan's script must load its rules.
    fn loader(self) -> &'static str {
        match self {
            Fw::Nft => "nft -f - <<'EOF'",
            Fw::IptablesNft => "iptables-nft-restore --noflush <<'EOF'",
            Fw::IptablesLegacy => "iptables-legacy-restore -w --noflush <<'EOF'",
        }
    }

    /// The iptables commands of each family.
    fn iptables(self) -> &'static [&'static str] {
        match self {
            Fw::Nft => &[],
            Fw::IptablesNft => &["iptables-nft", "ip6tables-nft"],
            Fw::IptablesLegacy => &["iptables-legacy", "ip6tables-legacy"],
        }
    }

    /// A rule that is there before the plan, for the legacy case (see above).
    const LEGACY_RULE: [&'static str; 7] = ["INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"];

    fn prepare(self, node: &str) {
        if self == Fw::IptablesLegacy {
            let mut cmd = vec!["iptables-legacy", "-w", "-A"];
            cmd.extend_from_slice(&Self::LEGACY_RULE);
            lab_exec_ok(node, &cmd);
        }
    }

    /// Takes kports's table or chain (and what `prepare` added) out of `node`.
    fn remove(self, node: &str) {
        if self == Fw::Nft {
            lab_exec_ok(node, &["nft", "delete", "table", "inet", "kports"]);
        }
        for &ipt in self.iptables() {
            lab_exec_ok(node, &[ipt, "-w", "-D", "INPUT", "-j", "KPORTS-INPUT"]);
            lab_exec_ok(node, &[ipt, "-w", "-F", "KPORTS-INPUT"]);
            lab_exec_ok(node, &[ipt, "-w", "-X", "KPORTS-INPUT"]);
        }
        if self == Fw::IptablesLegacy {
            let mut cmd = vec!["iptables-legacy", "-w", "-D"];
            cmd.extend_from_slice(&Self::LEGACY_RULE);
            lab_exec_ok(node, &cmd);
        }
    }
}

/// What the firewall commands print in `node`, without counters and comment lines.
fn firewall_listing(node: &str) -> String {
    let mut s = String::new();
    for cmd in [
        &["nft", "list", "ruleset"][..],
        &["iptables-nft-save"],
        &["iptables-legacy-save"],
        &["ip6tables-nft-save"],
        &["ip6tables-legacy-save"],
    ] {
        for line in lab_exec_ok(node, cmd).lines() {
            if line.starts_with('#') {
                continue;
            }
            // `:INPUT ACCEPT [12:3456]`, and nft's `counter packets N bytes M`.
            let line = line.split(" [").next().unwrap_or(line);
            let mut words: Vec<&str> = Vec::new();
            let mut it = line.split_whitespace().peekable();
            while let Some(w) = it.next() {
                words.push(w);
                if w == "counter" && it.peek() == Some(&"packets") {
                    it.nth(3);
                }
            }
            s.push_str(&words.join(" "));
            s.push('\n');
        }
    }
    s
}

/// `--sources` and `--control-plane`, as every firewall command here gets them.
fn cluster(cp: Ipv4Addr) -> [String; 4] {
    [
        "--sources".into(),
        LAB_NET.into(),
        "--control-plane".into(),
        cp.to_string(),
    ]
}

/// `kports firewall check -o json` in `node` (role and CNI detected), with the plans' sources
/// and `extra` arguments.
fn firewall_check(node: &str, cp: Ipv4Addr, extra: &[&str]) -> Value {
    let c = cluster(cp);
    let mut cmd = vec![
        KPORTS,
        "firewall",
        "check",
        "-o",
        "json",
        "--fail-on",
        "never",
    ];
    cmd.extend(c.iter().map(String::as_str));
    cmd.extend_from_slice(extra);
    let out = lab_exec_ok(node, &cmd);
    let doc: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("firewall check in {node}: not JSON ({e}):\n{out}"));
    assert!(
        doc["context"]["unread"].as_array().unwrap().is_empty(),
        "{node}: {doc:#}"
    );
    doc
}

/// Applies `kports firewall plan --backend B --script | sh` in `node`, and returns the script.
fn apply_plan(node: &str, fw: Fw, cp: Ipv4Addr) -> String {
    let c = cluster(cp);
    let mut plan = vec![
        KPORTS,
        "firewall",
        "plan",
        "--backend",
        fw.backend(),
        "--script",
    ];
    plan.extend(c.iter().map(String::as_str));
    let script = lab_exec_ok(node, &plan);
    // kports's chain is loaded, or left as it is when it holds the planned rules already.
    assert!(
        script.contains(fw.loader()) || script.contains(" holds the planned rules already"),
        "{node} {fw:?}:\n{script}"
    );
    // The plan's own failure must not pass as an empty script piped to sh.
    let mut cmd = vec![
        "sh",
        "-c",
        "s=$(\"$@\") || exit 1; printf '%s\\n' \"$s\" | sh",
        "sh",
    ];
    cmd.extend_from_slice(&plan);
    lab_exec_ok(node, &cmd);
    script
}

/// A second plan finds kports's chain as it wants it: nothing to add or remove, nothing blocked
/// elsewhere, every intent already met.
fn assert_plan_is_met(node: &str, fw: Fw, cp: Ipv4Addr) {
    let c = cluster(cp);
    let mut cmd = vec![
        KPORTS,
        "firewall",
        "plan",
        "--backend",
        fw.backend(),
        "-o",
        "json",
    ];
    cmd.extend(c.iter().map(String::as_str));
    let doc: Value = serde_json::from_str(&lab_exec_ok(node, &cmd)).unwrap();
    let p = &doc["context"];
    let diff = p["chain_diff"].as_array().unwrap();
    assert!(
        !diff.is_empty() && diff.iter().all(|d| d["op"] == "="),
        "{node} {fw:?}: a second plan still changes kports's chain: {diff:#?}"
    );
    assert_eq!(p["conflicts"], serde_json::json!([]), "{node} {fw:?}");
    let unmet: Vec<&Value> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["already"] != true)
        .collect();
    assert!(unmet.is_empty(), "{node} {fw:?}: {unmet:#?}");
}

/// Whether `range` as the check prints a source (`192.0.2.11`, `192.0.2.0/24`,
/// `192.0.2.12-192.0.2.255`, `2001:db8::/64`) holds `a`.
fn range_holds(range: &str, a: IpAddr) -> bool {
    // (is IPv6, the address as a number)
    let num = |a: IpAddr| match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    };
    let parse = |s: &str| s.parse::<IpAddr>().ok().map(num);
    let a = num(a);
    if let Some((lo, hi)) = range.split_once('-') {
        return matches!((parse(lo), parse(hi)), (Some(lo), Some(hi)) if lo <= a && a <= hi && lo.0 == a.0);
    }
    if let Some((net, len)) = range.split_once('/') {
        let (Some((v6, net)), Ok(len)) = (parse(net), len.parse::<u32>()) else {
            return false;
        };
        let width = if v6 { 128 } else { 32 };
        let host_bits = width - len.min(width);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        return v6 == a.0 && a.1 & mask == net & mask;
    }
    parse(range) == Some(a)
}

/// The check's rows for TCP port `port` judged from a source that holds `src`: whether the
/// catalog wants it open ("want") and the evaluator's verdict, one per row.
fn judged(doc: &Value, src: IpAddr, port: u16) -> Vec<(bool, String)> {
    let port = u64::from(port);
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["port"]["proto"] == "tcp"
                && r["port"]["lo"].as_u64() <= Some(port)
                && Some(port) <= r["port"]["hi"].as_u64()
                && range_holds(r["source"].as_str().unwrap(), src)
        })
        .map(|r| {
            let seg = r["segments"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["lo"].as_u64() <= Some(port) && Some(port) <= s["hi"].as_u64())
                .unwrap_or_else(|| panic!("no segment for {port}: {r:#}"));
            (
                r["expect_open"].as_bool().unwrap(),
                seg["judgement"]["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The TCP ports probed on one node, and the listeners this test starts for some of them.
#[derive(Debug, Clone, Default)]
struct Targets {
    ports: BTreeSet<u16>,
    /// `tcp:ADDR:PORT` specs for the stand-in: where a required port's component does not
    /// listen on one of the node's addresses (loopback-only components, etcd on IPv4 only),
    /// the stand-in does, and a port range (NodePorts) gets one inside it, so that the
    /// firewall, not the bind address, decides every outcome.
    added: Vec<String>,
}

/// Every required TCP port of `node` that has a listener (from `kports listen`), per the
/// check `doc`.
fn targets_of(node: &LabNode, doc: &Value) -> Targets {
    let listen: Value =
        serde_json::from_str(&lab_exec_ok(&node.name, &[KPORTS, "listen", "-o", "json"])).unwrap();
    let mut listening: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
    for s in listen["items"].as_array().unwrap() {
        if s["proto"] == "tcp" {
            let a: IpAddr = s["local_address"].as_str().unwrap().parse().unwrap();
            let p = s["local_port"].as_u64().unwrap() as u16;
            listening.entry(p).or_default().push(a);
        }
    }
    // Whether a listener on `l` takes connections to `to` (`[::]` takes IPv4 too, as the
    // lab's stand-ins bind it).
    let serves =
        |l: &IpAddr, to: &IpAddr| l == to || (l.is_unspecified() && (l.is_ipv6() || to.is_ipv4()));
    let spec = |a: IpAddr, p: u16| match a {
        IpAddr::V4(a) => format!("tcp:{a}:{p}"),
        IpAddr::V6(a) => format!("tcp:[{a}]:{p}"),
    };
    let mut t = Targets::default();
    let mut ranges = BTreeSet::new();
    for r in doc["items"].as_array().unwrap() {
        if r["port"]["proto"] == "tcp" {
            let lo = r["port"]["lo"].as_u64().unwrap() as u16;
            let hi = r["port"]["hi"].as_u64().unwrap() as u16;
            ranges.insert((lo, hi));
        }
    }
    for (lo, hi) in ranges {
        let port = if lo < hi {
            lo + 80.min(hi - lo)
        } else if listening.contains_key(&lo) {
            lo
        } else {
            continue;
        };
        let addrs = listening.get(&port).cloned().unwrap_or_default();
        for to in node.addrs() {
            if !addrs.iter().any(|l| serves(l, &to)) {
                t.added.push(spec(to, port));
            }
        }
        t.ports.insert(port);
    }
    t
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Connected,
    Refused,
    TimedOut,
    Failed(ErrorKind),
}

impl Outcome {
    /// What the evaluator's verdict means for a TCP connect.
    fn of_verdict(verdict: &str) -> Option<Outcome> {
        match verdict {
            "accept" => Some(Outcome::Connected),
            "reject" => Some(Outcome::Refused),
            "drop" => Some(Outcome::TimedOut),
            _ => None,
        }
    }
}

/// Runs `f` on a thread inside the lab node `node`'s network namespace.
fn in_netns<T: Send + 'static>(node: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/kports-{node}");
    thread::spawn(move || {
        let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on an open namespace descriptor; it moves only this thread, which ends
        // with the closure.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// One TCP connect from inside lab node `from`, no retry.
fn connect(from: &str, to: IpAddr, port: u16) -> Outcome {
    let to = SocketAddr::new(to, port);
    in_netns(from, move || {
        match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
            Ok(_) => Outcome::Connected,
            Err(e) => match e.kind() {
                ErrorKind::ConnectionRefused => Outcome::Refused,
                ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::TimedOut,
                k => Outcome::Failed(k),
            },
        }
    })
}

/// One connection attempt, with what the catalog wants and what the evaluator says.
#[derive(Debug, Clone)]
struct Attempt {
    from: String,
    to: String,
    dst: IpAddr,
    port: u16,
    want_open: bool,
    verdict: String,
    got: Outcome,
}

impl Attempt {
    /// Connects from `from` to `to`'s address of the family of `dst` and reads the catalog's
    /// wish (`expect_open`) and the evaluator's verdict for the source from the check `doc`.
    fn new(from: &LabNode, to: &LabNode, v6: bool, port: u16, doc: &Value) -> Attempt {
        let pick = |n: &LabNode| n.addrs()[usize::from(v6)];
        let (src, dst) = (pick(from), pick(to));
        let rows = judged(doc, src, port);
        // Sources are split so that each address is judged by one row per port.
        assert_eq!(
            rows.len(),
            1,
            "tcp/{port} on {} from {src}: {rows:?}",
            to.name
        );
        let (want_open, verdict) = rows.into_iter().next().unwrap();
        Attempt {
            from: from.name.clone(),
            to: to.name.clone(),
            dst,
            port,
            want_open,
            verdict,
            got: connect(&from.name, dst, port),
        }
    }

    /// Where reality differs from the plan's intent or from the evaluator's verdict.
    fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if (self.got == Outcome::Connected) != self.want_open {
            v.push(format!(
                "{self}: the catalog wants it {}",
                if self.want_open { "open" } else { "closed" }
            ));
        }
        match Outcome::of_verdict(&self.verdict) {
            Some(o) if o == self.got => {}
            Some(o) => v.push(format!("{self}: the evaluator's verdict means {o:?}")),
            None => v.push(format!("{self}: the evaluator does not decide")),
        }
        v
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {} {} {:?} (want {}, verdict {})",
            self.from,
            self.to,
            SocketAddr::new(self.dst, self.port),
            self.got,
            if self.want_open { "open" } else { "closed" },
            self.verdict
        )
    }
}

/// Connects from every lab node to every target port of every other node, over IPv4 and
/// IPv6, with the stand-in listeners up, and judges each attempt with `kports firewall check`
/// run in the target.
fn probe_all(nodes: &[LabNode], cp: Ipv4Addr, targets: &BTreeMap<String, Targets>) -> Vec<Attempt> {
    let _listeners = listeners(nodes, targets);
    nodes
        .iter()
        .flat_map(|to| probe_node(nodes, to, cp, &targets[&to.name]))
        .collect()
}

/// The stand-in listeners of `targets` (see [`Targets::added`]), up until dropped.
fn listeners(nodes: &[LabNode], targets: &BTreeMap<String, Targets>) -> Vec<Squatter> {
    nodes
        .iter()
        .filter(|n| targets.get(&n.name).is_some_and(|t| !t.added.is_empty()))
        .map(|n| {
            let specs: Vec<&str> = targets[&n.name].added.iter().map(String::as_str).collect();
            Squatter::start(&n.name, "python3", &specs)
        })
        .collect()
}

/// Connects from every other lab node to every target port of `to` (its listeners up), over
/// IPv4 and IPv6, all at once, and judges each attempt with `kports firewall check` run in `to`.
///
/// IPv4 attempts are judged with the plans' own sources. The plans' sources hold no IPv6
/// address, so every IPv6 source is one the plans close the required ports to: the catalog's
/// wish is "closed", and the verdict comes from a check that adds the IPv6 fabric.
fn probe_node(nodes: &[LabNode], to: &LabNode, cp: Ipv4Addr, targets: &Targets) -> Vec<Attempt> {
    let doc = firewall_check(&to.name, cp, &[]);
    let doc6 = firewall_check(&to.name, cp, &["--sources", LAB_NET6]);
    thread::scope(|scope| {
        let mut running = Vec::new();
        for from in nodes.iter().filter(|n| n.name != to.name) {
            for &port in &targets.ports {
                let (doc, doc6) = (&doc, &doc6);
                running.push(scope.spawn(move || Attempt::new(from, to, false, port, doc)));
                running.push(scope.spawn(move || {
                    let mut a = Attempt::new(from, to, true, port, doc6);
                    a.want_open = false;
                    a
                }));
            }
        }
        running
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn find<'a>(attempts: &'a [Attempt], from: &str, to: &str, port: u16) -> &'a Attempt {
    attempts
        .iter()
        .find(|a| a.from == from && a.to == to && a.port == port && a.dst.is_ipv4())
        .unwrap_or_else(|| panic!("{from} -> {to}:{port} was not tried"))
}

fn listing_of(attempts: &[Attempt]) -> String {
    attempts.iter().map(|a| format!("  {a}\n")).collect()
}

#[test]
fn firewall_plans_open_exactly_what_each_lab_node_needs() {
    let _lab = Lab::up();
    let nodes = lab_nodes();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["cp1", "w1", "w2"]);
    let cp = nodes[0].addr;
    let node = |name: &str| nodes.iter().find(|n| n.name == name).unwrap();

    // What each node needs (role detected as the lab built it), and where it listens.
    let mut targets = BTreeMap::new();
    for n in &nodes {
        let doc = firewall_check(&n.name, cp, &[]);
        let roles = if n.role == "control-plane" {
            serde_json::json!(["control-plane", "etcd"])
        } else {
            serde_json::json!([n.role])
        };
        assert_eq!(doc["context"]["roles"], roles, "{}: {doc:#}", n.name);
        targets.insert(n.name.clone(), targets_of(n, &doc));
    }
    let ports = |name: &str| -> Vec<u16> { targets[name].ports.iter().copied().collect() };
    assert_eq!(
        ports("cp1"),
        [
            2379, 2380, 2381, 6443, 10248, 10249, 10250, 10256, 10257, 10259, 30080
        ],
        "{targets:#?}"
    );
    for w in ["w1", "w2"] {
        assert_eq!(
            ports(w),
            [10248, 10249, 10250, 10256, 30080],
            "{targets:#?}"
        );
    }

    // Before any plan, every target connects from every other node, and the evaluator says
    // accept: whatever is refused later, the plan's rules refused it.
    let everything_connects = |when: &str| {
        let attempts = probe_all(&nodes, cp, &targets);
        assert!(
            attempts
                .iter()
                .all(|a| a.got == Outcome::Connected && a.verdict == "accept"),
            "{when}:\n{}",
            listing_of(&attempts)
        );
    };
    everything_connects("before any plan");

    for fw in [Fw::Nft, Fw::IptablesNft, Fw::IptablesLegacy] {
        for n in &nodes {
            fw.prepare(&n.name);
            apply_plan(&n.name, fw, cp);
            let once = firewall_listing(&n.name);
            apply_plan(&n.name, fw, cp);
            assert_eq!(
                once,
                firewall_listing(&n.name),
                "{} {fw:?}: applying the plan twice changed the ruleset",
                n.name
            );
            assert_plan_is_met(&n.name, fw, cp);
        }

        let attempts = probe_all(&nodes, cp, &targets);
        let problems: Vec<String> = attempts.iter().flat_map(Attempt::problems).collect();
        assert!(
            problems.is_empty(),
            "{fw:?}:\n{}\nevery attempt:\n{}",
            problems.join("\n"),
            listing_of(&attempts)
        );
        // The catalog's wishes, spelled out: the test cannot pass on a plan that closes all.
        let expect = [
            ("w1", "cp1", 6443, Outcome::Connected),
            ("w2", "cp1", 6443, Outcome::Connected),
            ("w1", "cp1", 2379, Outcome::Refused),
            ("w1", "cp1", 2380, Outcome::Refused),
            ("w1", "cp1", 10250, Outcome::Refused),
            ("w1", "cp1", 10257, Outcome::Refused),
            ("w1", "cp1", 30080, Outcome::Connected),
            ("cp1", "w1", 10250, Outcome::Connected),
            ("cp1", "w2", 10250, Outcome::Connected),
            ("w2", "w1", 10250, Outcome::Refused),
            ("w1", "w2", 10250, Outcome::Refused),
            ("cp1", "w1", 10248, Outcome::Refused),
            ("cp1", "w2", 10256, Outcome::Refused),
            ("w1", "w2", 30080, Outcome::Connected),
        ];
        for (from, to, port, want) in expect {
            assert_eq!(
                find(&attempts, from, to, port).got,
                want,
                "{fw:?} {from} -> {to}:{port}"
            );
        }

        if fw == Fw::Nft {
            // A rule that opens the kubelet of w1 to the whole fabric is caught: w2 gets
            // through, the evaluator sees why, and the catalog says it should not. (The check
            // judges w2 as part of a range, so the stray rule covers the range, not w2 alone.)
            lab_exec_ok(
                "w1",
                &[
                    "nft", "insert", "rule", "inet", "kports", "input", "ip", "saddr", LAB_NET,
                    "tcp", "dport", "10250", "accept",
                ],
            );
            let doc = firewall_check("w1", cp, &[]);
            let a = Attempt::new(node("w2"), node("w1"), false, 10250, &doc);
            assert_eq!((a.got, a.verdict.as_str()), (Outcome::Connected, "accept"));
            assert_eq!(
                a.problems(),
                [format!("{a}: the catalog wants it closed")],
                "{a}"
            );
            // Applying the plan again takes the stray rule out.
            apply_plan("w1", fw, cp);
            let doc = firewall_check("w1", cp, &[]);
            let a = Attempt::new(node("w2"), node("w1"), false, 10250, &doc);
            assert_eq!(a.got, Outcome::Refused, "{a}");
            assert!(a.problems().is_empty(), "{:?}", a.problems());
        }

        for n in &nodes {
            fw.remove(&n.name);
            let left = firewall_listing(&n.name);
            assert!(
                !left.contains("table inet kports {") && !left.contains("KPORTS-INPUT"),
                "{} {fw:?}: kports's rules are still there:\n{left}",
                n.name
            );
        }
        everything_connects(&format!("after removing the {fw:?} rules"));
    }
}

/// A host firewall of the node's own, as hardened hosts have: everything dropped but
/// established connections, loopback and ICMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostDeny {
    /// `table inet hostfw`, `policy drop` (a table beside kports's, and beside iptables-nft's).
    Nft,
    /// iptables-nft's INPUT with `policy DROP`.
    IptablesNft,
    /// iptables-legacy's INPUT ending in a `DROP` rule.
    IptablesLegacy,
}

impl HostDeny {
    fn set_up(self, node: &str) {
        match self {
            HostDeny::Nft => {
                lab_exec_ok(
                    node,
                    &[
                        "nft",
                        "add table inet hostfw; \
                         add chain inet hostfw input { type filter hook input priority 0; policy drop; }; \
                         add rule inet hostfw input ct state established,related accept; \
                         add rule inet hostfw input iifname \"lo\" accept; \
                         add rule inet hostfw input meta l4proto { icmp, ipv6-icmp } accept",
                    ],
                );
            }
            HostDeny::IptablesNft | HostDeny::IptablesLegacy => {
                let ipt = self.iptables();
                for rule in [
                    &[
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "RELATED,ESTABLISHED",
                        "-j",
                        "ACCEPT",
                    ][..],
                    &["-i", "lo", "-j", "ACCEPT"],
                    &["-p", "icmp", "-j", "ACCEPT"],
                ] {
                    let mut cmd = vec![ipt, "-w", "-A", "INPUT"];
                    cmd.extend_from_slice(rule);
                    lab_exec_ok(node, &cmd);
                }
                if self == HostDeny::IptablesNft {
                    lab_exec_ok(node, &[ipt, "-w", "-P", "INPUT", "DROP"]);
                } else {
                    lab_exec_ok(node, &[ipt, "-w", "-A", "INPUT", "-j", "DROP"]);
                }
            }
        }
    }

    fn tear_down(self, node: &str) {
        match self {
            HostDeny::Nft => lab_exec_ok(node, &["nft", "delete", "table", "inet", "hostfw"]),
            HostDeny::IptablesNft => lab_exec_ok(node, &["nft", "delete", "table", "ip", "filter"]),
            HostDeny::IptablesLegacy => {
                lab_exec_ok(node, &["iptables-legacy", "-w", "-F", "INPUT"])
            }
        };
    }

    fn iptables(self) -> &'static str {
        match self {
            HostDeny::IptablesLegacy => "iptables-legacy",
            _ => "iptables-nft",
        }
    }
}

/// The node's whole ruleset, to compare: `nft -j list ruleset` (every nftables table, the
/// iptables-nft ones too, with handles) without packet counters, and `iptables-legacy-save`
/// without counters and comment lines.
fn ruleset_of(node: &str) -> String {
    fn no_counters(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(c) = m.get_mut("counter") {
                    *c = Value::Null;
                }
                m.values_mut().for_each(no_counters);
            }
            Value::Array(a) => a.iter_mut().for_each(no_counters),
            _ => {}
        }
    }
    let mut nft: Value =
        serde_json::from_str(&lab_exec_ok(node, &["nft", "-j", "list", "ruleset"])).unwrap();
    no_counters(&mut nft);
    let mut s = serde_json::to_string_pretty(&nft).unwrap();
    for line in lab_exec_ok(node, &["iptables-legacy-save"]).lines() {
        if !line.starts_with('#') {
            s.push('\n');
            s.push_str(line.split(" [").next().unwrap_or(line));
        }
    }
    s
}

/// `kports firewall plan --backend B` in `node` with the plans' sources and `extra` arguments.
fn plan_in(node: &str, fw: Fw, cp: Ipv4Addr, extra: &[&str]) -> String {
    let c = cluster(cp);
    let mut cmd = vec![KPORTS, "firewall", "plan", "--backend", fw.backend()];
    cmd.extend(c.iter().map(String::as_str));
    cmd.extend_from_slice(extra);
    lab_exec_ok(node, &cmd)
}

#[test]
fn a_plan_opens_what_a_default_deny_host_firewall_blocks_and_removal_restores_it() {
    let _lab = Lab::up();
    let nodes = lab_nodes();
    let cp = nodes[0].addr;
    let w1 = nodes.iter().find(|n| n.name == "w1").unwrap();
    let doc = firewall_check("w1", cp, &[]);
    let targets = BTreeMap::from([("w1".to_string(), targets_of(w1, &doc))]);
    let _listeners = listeners(&nodes, &targets);
    // The accept kports tags in the host's chain for the control plane's kubelet connections.
    let tagged = format!("\"kports: kubelet tcp/10250 from {cp}\"");
    let removal = [KPORTS, "firewall", "plan", "--remove", "--script"];
    let remove = || {
        let mut cmd = vec![
            "sh",
            "-c",
            "s=$(\"$@\") || exit 1; printf '%s\\n' \"$s\" | sh",
            "sh",
        ];
        cmd.extend_from_slice(&removal);
        lab_exec_ok("w1", &cmd);
    };

    for (deny, fw) in [
        (HostDeny::Nft, Fw::Nft),
        (HostDeny::Nft, Fw::IptablesNft),
        (HostDeny::IptablesNft, Fw::Nft),
        (HostDeny::IptablesLegacy, Fw::Nft),
    ] {
        let round = format!("{deny:?} host firewall, {fw:?} plan");
        deny.set_up("w1");
        let before = ruleset_of("w1");
        // The host's firewall drops what the control plane needs of the kubelet.
        assert_eq!(
            connect("cp1", w1.addr.into(), 10250),
            Outcome::TimedOut,
            "{round}"
        );

        // Keeping to kports's own table or chain leaves every wanted opening blocked, and the
        // table says so: no row "opens".
        let own = plan_in("w1", fw, cp, &["--own-table-only"]);
        let kubelet = own
            .lines()
            .find(|l| l.starts_with("tcp/10250") && l.contains(&format!(" {cp} ")))
            .unwrap_or_else(|| panic!("{round}: no kubelet row:\n{own}"));
        assert!(kubelet.contains("still blocked by "), "{round}: {kubelet}");
        assert!(!own.contains(" opens "), "{round}:\n{own}");
        let own_script = plan_in("w1", fw, cp, &["--own-table-only", "--script"]);
        assert!(!own_script.contains(&tagged), "{round}:\n{own_script}");

        // The plan opens them in the host's chain, and the table says it opens them.
        let table = plan_in("w1", fw, cp, &[]);
        let kubelet = table
            .lines()
            .find(|l| l.starts_with("tcp/10250") && l.contains(&format!(" {cp} ")))
            .unwrap_or_else(|| panic!("{round}: no kubelet row:\n{table}"));
        assert!(kubelet.contains(" opens "), "{round}: {kubelet}");
        let script = apply_plan("w1", fw, cp);
        assert!(script.contains(&tagged), "{round}:\n{script}");
        let once = ruleset_of("w1");
        apply_plan("w1", fw, cp);
        assert_eq!(
            once,
            ruleset_of("w1"),
            "{round}: applying the plan twice changed the ruleset"
        );
        assert_plan_is_met("w1", fw, cp);

        let attempts = probe_node(&nodes, w1, cp, &targets["w1"]);
        let problems: Vec<String> = attempts
            .iter()
            .filter(|a| {
                let connected = a.got == Outcome::Connected;
                connected != a.want_open
                    || (Outcome::of_verdict(&a.verdict) == Some(Outcome::Connected)) != connected
            })
            .map(|a| a.to_string())
            .collect();
        assert!(
            problems.is_empty(),
            "{round}: wanted and connected, or the evaluator's verdict, differ:\n{}\nevery attempt:\n{}",
            problems.join("\n"),
            listing_of(&attempts)
        );
        for (from, port, open) in [
            ("cp1", 10250, true),
            ("w2", 10250, false),
            ("w2", 30080, true),
            ("cp1", 10248, false),
        ] {
            assert_eq!(
                find(&attempts, from, "w1", port).got == Outcome::Connected,
                open,
                "{round}: {from} -> w1:{port}"
            );
        }

        remove();
        assert_eq!(
            before,
            ruleset_of("w1"),
            "{round}: --remove did not restore the ruleset"
        );
        remove();
        assert_eq!(before, ruleset_of("w1"), "{round}: a second --remove");
        deny.tear_down("w1");
    }
}

/// The node's prerequisite findings (id, message) of a check document.
fn prereq_findings(doc: &Value) -> Vec<(String, String)> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            kports_core::finding::FindingId::PREREQ
                .iter()
                .any(|p| p.as_str() == f["id"])
        })
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_lab_node_whose_link_is_down_has_the_path_finding_until_it_is_up() {
    let _lab = Lab::up();
    // No default route in the lab, by design: its components are given their addresses
    // (--node-ip, --advertise-address), so none is needed and none is reported.
    assert_eq!(prereq_findings(&check("w1", &[]).1), []);
    // Inside the node as `kports lab exec` enters it (its own host name, the lab's hosts file),
    // the name resolves to the node's address.
    let doc: Value =
        serde_json::from_str(&lab_exec_ok("w1", &[KPORTS, "check", "-o", "json"])).unwrap();
    assert_eq!(doc["hostname"], "w1");
    assert_eq!(prereq_findings(&doc), []);
    let cp1 = lab_exec_ok("w1", &["getent", "hosts", "cp1"]);
    assert!(
        ["192.0.2.11", "2001:db8::11"].contains(&cp1.split_whitespace().next().unwrap_or("")),
        "{cp1}"
    );
    kports_ok(&["lab", "fault", "w1", "down"]);
    let (code, doc) = check("w1", &[]);
    let found = prereq_findings(&doc);
    assert_eq!(found.len(), 1, "{doc:#}");
    assert_eq!(
        found[0].0,
        kports_core::finding::FindingId::PathLinkDown.as_str()
    );
    assert!(
        found[0].1.starts_with("eth0 has no carrier"),
        "{}",
        found[0].1
    );
    assert!(
        found[0]
            .1
            .contains("192.0.2.11 (the API server this node connects to)"),
        "{}",
        found[0].1
    );
    assert_eq!(code, 1, "an error fails the check");
    // The other nodes' own links are up.
    assert_eq!(prereq_findings(&check("w2", &[]).1), []);
    kports_ok(&["lab", "fault", "w1", "up"]);
    assert_eq!(prereq_findings(&check("w1", &[]).1), []);
}

// ------------------------------------------------------ a worker that is also an etcd member

const CP1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const W1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
const W2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 22);

/// The remote addresses of `node`'s established connections to or from TCP port `port`.
fn established_with(node: &str, port: u16) -> BTreeSet<IpAddr> {
    let out = lab_exec_ok(node, &["ss", "-Htn", "state", "established"]);
    let mut v = BTreeSet::new();
    for line in out.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [.., local, peer] = cols[..] else {
            continue;
        };
        let parse = |ep: &str| -> Option<SocketAddr> {
            ep.replace("[::ffff:", "").replace(']', "").parse().ok()
        };
        let (Some(l), Some(p)) = (parse(local), parse(peer)) else {
            continue;
        };
        if l.port() == port || p.port() == port {
            v.insert(p.ip());
        }
    }
    v
}

/// `firewall check -o json --sources LAB_NET` in `node`, the control plane left to detection.
fn firewall_check_detected(node: &str) -> Value {
    let out = lab_exec_ok(
        node,
        &[
            KPORTS,
            "firewall",
            "check",
            "-o",
            "json",
            "--sources",
            LAB_NET,
            "--fail-on",
            "never",
        ],
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("firewall check in {node}: not JSON ({e}):\n{out}"))
}

/// `kports lab up --etcd-workers 2`: w1 and w2 each run an etcd member joined to cp1's, as
/// nodes with RKE's etcd and worker roles do. Both roles are detected and judged together, the
/// faults of a worker are found there, and the firewall's sources come from evidence: the
/// control plane from the API-server connection, the etcd peers from `--initial-cluster`.
#[test]
fn a_worker_with_an_etcd_member_is_judged_for_both_roles() {
    let _lab = Lab::up_with(&["--etcd-workers", "2"]);
    for node in ["w1", "w2"] {
        let (code, doc) = check(node, &[]);
        assert_eq!(findings(&doc), [], "{node}: {doc:#}");
        assert_eq!(code, 0, "{node}");
        assert_eq!(
            doc["context"]["roles"]["value"],
            serde_json::json!(["worker", "etcd"]),
            "{node}"
        );
    }
    // Joined, not alone: w1's member exchanges raft traffic with cp1's and w2's (bounded wait
    // for the peers' streams).
    let want = BTreeSet::from([IpAddr::V4(CP1), IpAddr::V4(W2)]);
    let mut peers = BTreeSet::new();
    for _ in 0..50 {
        peers = established_with("w1", 2380);
        if want.is_subset(&peers) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(want.is_subset(&peers), "w1's etcd peers: {peers:?}");

    // kube-proxy's metrics bound to 0.0.0.0: wider than kubeadm binds it.
    kports_ok(&["lab", "fault", "w1", "stop", "kube-proxy"]);
    {
        let _proxy = Squatter::start("w1", "kube-proxy", &["tcp:[::]:10256", "tcp:0.0.0.0:10249"]);
        settles_to(
            "w1",
            &[
                f("bound-too-wide", "warning", "tcp/10249"),
                f("firewall-exposes-private-port", "warning", "tcp/10249"),
            ],
        );
        assert_eq!(check("w1", &[]).0, 0, "warnings only");
    }
    kports_ok(&["lab", "fault", "w1", "clear"]);
    settles_to("w1", &[]);

    // Another program on the kubelet's port, with the kubelet stopped: a conflict, exit 1.
    kports_ok(&["lab", "fault", "w1", "stop", "kubelet"]);
    {
        let nginx = Squatter::start("w1", "nginx", &["tcp:0.0.0.0:10250"]);
        let doc = settles_to(
            "w1",
            &[
                f("port-conflict", "error", "tcp/10250"),
                f("port-not-listening", "warning", "tcp/10248"),
            ],
        );
        let conflict = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == "port-conflict")
            .unwrap();
        assert_eq!(
            conflict["evidence"]["sockets"][0]["processes"][0]["pid"],
            nginx.pid(),
            "{conflict:#}"
        );
        assert_eq!(check("w1", &[]).0, 1);
    }
    kports_ok(&["lab", "fault", "w1", "clear"]);
    settles_to("w1", &[]);

    // The kubelet serving its read-only port: found although the node is an etcd member too.
    {
        // A second kubelet, as the lab's own would be with --read-only-port=10255.
        let _ro = Squatter::start(
            "w1",
            "kubelet",
            &[
                "tcp:0.0.0.0:10255",
                "--node-ip=192.0.2.21",
                "--read-only-port=10255",
            ],
        );
        settles_to("w1", &[f("readonly-port-open", "warning", "tcp/10255")]);
        assert_eq!(check("w1", &[]).0, 0);
        assert_eq!(check("w1", &["--fail-on", "warning"]).0, 1);
    }
    settles_to("w1", &[]);

    // Sources from evidence: the control plane is where the API server is (cp1); w2, an etcd
    // peer only, needs etcd's ports here but not the kubelet's.
    let doc = firewall_check_detected("w1");
    let want = |src: Ipv4Addr, port: u16| -> Vec<bool> {
        judged(&doc, src.into(), port)
            .into_iter()
            .map(|(w, _)| w)
            .collect()
    };
    assert_eq!(want(CP1, 10250), [true], "{doc:#}");
    assert_eq!(want(W2, 10250), [false], "{doc:#}");
    assert_eq!(want(W2, 2380), [true], "{doc:#}");
    assert_eq!(want(CP1, 2380), [true], "{doc:#}");
    // The lab's flannel runs VXLAN (flannel.1): 8472 is its only required port.
    let flannel: BTreeSet<u64> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["port"]["component"] == "flannel")
        .map(|r| r["port"]["lo"].as_u64().unwrap())
        .collect();
    assert_eq!(flannel, BTreeSet::from([8472]), "{doc:#}");

    // A plan written without --control-plane keeps the control plane's way to the kubelet open
    // (real connections from the other nodes' namespaces), and the etcd peer's to etcd.
    let plan = [
        KPORTS,
        "firewall",
        "plan",
        "--backend",
        "nft",
        "--sources",
        LAB_NET,
        "--script",
    ];
    let mut cmd = vec![
        "sh",
        "-c",
        "s=$(\"$@\") || exit 1; printf '%s\\n' \"$s\" | sh",
        "sh",
    ];
    cmd.extend_from_slice(&plan);
    lab_exec_ok("w1", &cmd);
    assert_eq!(connect("cp1", W1.into(), 10250), Outcome::Connected);
    assert_eq!(connect("w2", W1.into(), 2380), Outcome::Connected);
    assert_ne!(connect("w2", W1.into(), 10250), Outcome::Connected);
    // And the check, judging from the same sources, agrees with the rules the plan wrote.
    let (code, doc) = check("w1", &["--sources", LAB_NET]);
    assert_eq!(findings(&doc), [], "{doc:#}");
    assert_eq!(code, 0);
}

/// On the control-plane node, `check` and `firewall check` (each choosing its sources as it
/// will) agree, fault by fault, on which required ports the firewall blocks.
#[test]
fn check_and_firewall_check_agree_on_what_is_blocked_on_the_control_plane() {
    let _lab = Lab::up();
    let blocked_by_check = || -> BTreeSet<String> {
        findings(&check("cp1", &[]).1)
            .into_iter()
            .filter(|(id, _, _)| id == "firewall-blocks-required-port")
            .map(|(_, _, port)| port)
            .collect()
    };
    let blocked_by_firewall_check = || -> (bool, BTreeSet<String>) {
        let (ok, out, err) = lab_exec("cp1", &[KPORTS, "firewall", "check", "-o", "json"]);
        let doc: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("firewall check: not JSON ({e}):\n{out}{err}"));
        let ports = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["expect_open"] == true && r["ok"] == false)
            .map(|r| {
                let (lo, hi) = (&r["port"]["lo"], &r["port"]["hi"]);
                let port = if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                };
                format!("{}/{port}", r["port"]["proto"].as_str().unwrap())
            })
            .collect();
        (ok, ports)
    };
    let (ok, none) = blocked_by_firewall_check();
    assert!(ok, "a clean lab node passes firewall check");
    assert_eq!(none, BTreeSet::new());
    assert_eq!(blocked_by_check(), BTreeSet::new());
    // A single control plane with a stacked etcd member: the API server reaches etcd over
    // loopback and no other member exists, so dropping 2379 or 2380 (or rejecting the kubelet's
    // port, which only the control plane, this node, needs) blocks no one who needs them; the
    // API server's port and the VXLAN port are needed by every other node.
    let cases: [(&[&str], &[&str]); 5] = [
        (&["drop", "tcp/2379"], &[]),
        (&["drop", "tcp/2380"], &[]),
        (&["reject", "tcp/10250"], &[]),
        (&["drop", "tcp/6443"], &["tcp/6443"]),
        (&["reject", "udp/8472"], &["udp/8472"]),
    ];
    for (fault, blocked) in cases {
        let mut args = vec!["lab", "fault", "cp1"];
        args.extend_from_slice(fault);
        kports_ok(&args);
        let (ok, fw) = blocked_by_firewall_check();
        let ck = blocked_by_check();
        assert_eq!(ck, fw, "{fault:?}: check {ck:?}, firewall check {fw:?}");
        let want: BTreeSet<String> = blocked.iter().map(|p| p.to_string()).collect();
        assert_eq!(ck, want, "{fault:?}");
        assert_eq!(
            ok,
            blocked.is_empty(),
            "{fault:?}: firewall check's exit status"
        );
        kports_ok(&["lab", "fault", "cp1", "clear"]);
    }
}
