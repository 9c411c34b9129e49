//! `kports check` and `kports explain` run as a user runs them.
//!
//! CLI tests need nothing; system tests need root: each makes its own network namespace
//! (`kpc-PID-N`, never the lab's `kports-` prefix), gives it a node address from the
//! documentation range on a veth interface, and starts stand-in processes named like the
//! Kubernetes components (symlinks to python3 running a small listener script), so that the census
//! recognises them exactly as it recognises the real ones. A guard kills the stand-ins by pid and
//! deletes the namespace when the test ends, passed or failed. No traffic leaves the namespace;
//! every stand-in exits by itself after two minutes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::RwLockReadGuard;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::support::{KPORTS, ns_turn};

/// Binds and connects what its arguments say, prints `ready`, then waits (at most 120 s).
/// Arguments: `tcp:HOST:PORT`, `udp:HOST:PORT`, `connect:HOST:PORT`; anything starting with
/// `-` is a flag for kports to read and is ignored here.
const STANDIN: &str = include_str!("support/standin.py");

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace with stand-in processes; everything is removed on drop.
struct Node {
    ns: String,
    dir: PathBuf,
    children: Vec<Child>,
    _turn: RwLockReadGuard<'static, ()>,
}

impl Node {
    /// A fresh namespace with lo up and an `eth0` holding 192.0.2.10/24 and 2001:db8::10/64.
    fn new() -> Node {
        let turn = ns_turn();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let ns = format!("kpc-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("standin.py"), STANDIN).unwrap();
        run(Command::new("ip").args(["netns", "add", &ns]));
        // From here on the guard cleans up, whatever fails.
        let node = Node {
            ns,
            dir,
            children: Vec::new(),
            _turn: turn,
        };
        node.ip(&["link", "set", "lo", "up"]);
        // A veth pair with both ends inside: the kernel here has no dummy links.
        node.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ]);
        node.ip(&["link", "set", "eth0p", "up"]);
        node.ip(&["addr", "add", "192.0.2.10/24", "dev", "eth0"]);
        node.ip(&["addr", "add", "2001:db8::10/64", "dev", "eth0", "nodad"]);
        node.ip(&["link", "set", "eth0", "up"]);
        // A node that forwards and has a default route, as kubeadm requires (the node's
        // prerequisites are tested in the `prereq` module; these tests are about its ports). The
        // gateway is the documentation range's, inside the namespace's own veth: nothing answers.
        node.ip(&["route", "add", "default", "via", "192.0.2.1", "dev", "eth0"]);
        run(Command::new("ip").args([
            "netns",
            "exec",
            &node.ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]));
        node
    }

    fn ip(&self, args: &[&str]) {
        run(Command::new("ip").arg("-n").arg(&self.ns).args(args));
    }

    /// A flannel-style VXLAN device: the kernel then holds UDP `port`.
    fn vxlan(&self, name: &str, port: u16) {
        let port = port.to_string();
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "vxlan",
            "id",
            "1",
            "local",
            "192.0.2.10",
            "dev",
            "eth0",
            "dstport",
            &port,
            "nolearning",
        ]);
        self.ip(&["link", "set", name, "up"]);
    }

    /// Starts a process called `name` in the namespace that holds `specs`; returns its pid once
    /// every socket is in place.
    fn start(&mut self, name: &str, specs: &[&str]) -> u32 {
        let exe = self.dir.join(name);
        if !exe.exists() {
            std::os::unix::fs::symlink("/usr/bin/python3", &exe).unwrap();
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&exe)
            .arg(self.dir.join("standin.py"))
            .args(specs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        self.children.push(child);
        // `ip netns exec` execs the program, so the pid is the stand-in's. EOF (the stand-in
        // died) ends the read as surely as `ready` does.
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{name} {specs:?} did not start");
        pid
    }

    /// Runs kports in the namespace.
    fn kports(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, KPORTS])
            .args(args)
            .output()
            .unwrap()
    }

    /// `kports ARGS -o json`: (exit code, document).
    fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kports(&a);
        let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{a:?}: not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), doc)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for c in &mut self.children {
            drop(c.stdin.take());
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// (id, severity, protocol/port) of every finding, sorted.
fn findings(doc: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let port = match &f["port"] {
                Value::Number(n) => n.to_string(),
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

fn f(id: &str, severity: &str, port: &str) -> (String, String, String) {
    (id.to_string(), severity.to_string(), port.to_string())
}

/// A worker as kubeadm and flannel leave it.
fn clean_worker(node: &mut Node) {
    node.start(
        "kubelet",
        &[
            "tcp:[::]:10250",
            "tcp:127.0.0.1:10248",
            "--config=/var/lib/kubelet/config.yaml",
        ],
    );
    node.start("kube-proxy", &["tcp:[::]:10256", "tcp:127.0.0.1:10249"]);
    node.vxlan("flannel.1", 8472);
}

#[test]
fn clean_worker_has_no_finding_and_exits_0() {
    let mut node = Node::new();
    clean_worker(&mut node);
    let (code, doc) = node.json(&["check"]);
    assert_eq!(findings(&doc), [], "{doc:#}");
    assert_eq!(code, 0);
    assert_eq!(doc["kind"], "check");
    assert_eq!(doc["schema"], kports_core::SCHEMA_VERSION);
    let ctx = &doc["context"];
    assert_eq!(
        ctx["roles"]["value"],
        serde_json::json!(["worker"]),
        "{ctx:#}"
    );
    assert_eq!(ctx["roles"]["source"], "detected");
    assert_eq!(ctx["cni"]["value"], serde_json::json!(["flannel"]));
    let flannel = ctx["checked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["entry"]["component"] == "flannel" && c["entry"]["port"] == 8472)
        .unwrap();
    assert_eq!(flannel["result"], "ok");
    assert_eq!(flannel["listeners"][0]["local_port"], 8472);
    // `kernel` where every process's descriptors are readable; where one is not (a sandbox's
    // pid 1), the census says `unknown` rather than guess, and the check accepts either.
    assert!(
        ["kernel", "unknown"].contains(&flannel["listeners"][0]["owner"].as_str().unwrap()),
        "{flannel:#}"
    );
}

#[test]
fn worker_faults_give_exactly_the_expected_findings() {
    let mut node = Node::new();
    node.start(
        "kubelet",
        &[
            "tcp:127.0.0.1:10250",
            "tcp:127.0.0.1:10248",
            "tcp:0.0.0.0:10255",
        ],
    );
    node.start("kube-proxy", &["tcp:0.0.0.0:10249"]);
    let squatter = node.start("nc", &["tcp:0.0.0.0:31000"]);
    node.start("python3", &["tcp:0.0.0.0:8000", "tcp:[::1]:8001"]);
    let (code, doc) = node.json(&["check", "--role", "worker", "--cni", "none"]);
    assert_eq!(
        findings(&doc),
        [
            f("bound-loopback-only", "error", "tcp/10250"),
            f("bound-too-wide", "warning", "tcp/10249"),
            // The namespace has no firewall: kube-proxy's metrics on 0.0.0.0 are open to all.
            f("firewall-exposes-private-port", "warning", "tcp/10249"),
            f("port-conflict", "warning", "tcp/31000"),
            f("port-not-listening", "warning", "tcp/10256"),
            f("readonly-port-open", "warning", "tcp/10255"),
            f("unexplained-listener", "info", "tcp/8000"),
        ],
        "{doc:#}"
    );
    assert_eq!(code, 1, "an error reaches the default --fail-on error");
    let items = doc["items"].as_array().unwrap();
    let conflict = items.iter().find(|f| f["id"] == "port-conflict").unwrap();
    assert_eq!(
        conflict["evidence"]["sockets"][0]["processes"][0]["pid"],
        squatter
    );
    assert_eq!(
        conflict["evidence"]["sockets"][0]["processes"][0]["name"],
        "nc"
    );
    let lo = items
        .iter()
        .find(|f| f["id"] == "bound-loopback-only")
        .unwrap();
    assert_eq!(lo["command"], "ss -tlnp 'sport = :10250'");
    assert!(
        lo["message"]
            .as_str()
            .unwrap()
            .contains("loopback only (127.0.0.1)"),
        "{lo:#}"
    );
    // One finding for python3's two ports.
    let unexplained = items
        .iter()
        .find(|f| f["id"] == "unexplained-listener")
        .unwrap();
    assert_eq!(
        unexplained["evidence"]["sockets"].as_array().unwrap().len(),
        2
    );

    // --fail-on never: the same findings, exit 0.
    let (code, _) = node.json(&[
        "check",
        "--role",
        "worker",
        "--cni",
        "none",
        "--fail-on",
        "never",
    ]);
    assert_eq!(code, 0);
}

/// A worker that is also an etcd member (RKE lets a node take both roles): real processes named
/// etcd, kubelet and kube-proxy.
fn worker_and_etcd(node: &mut Node, kubelet: bool) {
    node.start(
        "etcd",
        &[
            "tcp:192.0.2.10:2379",
            "tcp:127.0.0.1:2379",
            "tcp:192.0.2.10:2380",
            "tcp:127.0.0.1:2381",
        ],
    );
    if kubelet {
        node.start("kubelet", &["tcp:[::]:10250", "tcp:127.0.0.1:10248"]);
    }
    node.start("kube-proxy", &["tcp:[::]:10256", "tcp:0.0.0.0:10249"]);
    node.vxlan("flannel.1", 8472);
}

#[test]
fn roles_compose_on_a_worker_that_is_an_etcd_member() {
    let mut node = Node::new();
    worker_and_etcd(&mut node, true);
    // The kubelet serving its read-only port.
    node.start("kubelet", &["tcp:0.0.0.0:10255"]);
    let (code, doc) = node.json(&["check"]);
    let ctx = &doc["context"];
    assert_eq!(
        ctx["roles"]["value"],
        serde_json::json!(["worker", "etcd"]),
        "{ctx:#}"
    );
    let evidence = ctx["roles"]["evidence"].as_array().unwrap();
    assert!(
        evidence[0].as_str().unwrap().starts_with("etcd (pid "),
        "{evidence:?}"
    );
    // kube-proxy's metrics on 0.0.0.0 (a worker's port) and the read-only port (no node's) are
    // found although the node is an etcd member too.
    let got = findings(&doc);
    for want in [
        f("bound-too-wide", "warning", "tcp/10249"),
        f("readonly-port-open", "warning", "tcp/10255"),
    ] {
        assert!(got.contains(&want), "{want:?} in {doc:#}");
    }
    assert!(
        !got.iter().any(|(id, _, port)| id == "port-not-listening"
            && ["tcp/2379", "tcp/2380", "tcp/10250"].contains(&port.as_str())),
        "{doc:#}"
    );
    assert_eq!(code, 0, "warnings only: {doc:#}");
    // `--role worker,etcd` judges the same ports.
    let (_, given) = node.json(&["check", "--role", "worker,etcd"]);
    assert_eq!(given["context"]["roles"]["value"], ctx["roles"]["value"]);
    assert_eq!(given["context"]["roles"]["source"], "flag");
    assert_eq!(findings(&given), got);
}

#[test]
fn a_squatter_on_the_kubelet_port_of_a_worker_and_etcd_member_is_an_error() {
    let mut node = Node::new();
    worker_and_etcd(&mut node, false);
    node.start("nginx", &["tcp:0.0.0.0:10250"]);
    let (code, doc) = node.json(&["check"]);
    assert_eq!(
        doc["context"]["roles"]["value"],
        serde_json::json!(["worker", "etcd"]),
        "{doc:#}"
    );
    assert!(
        findings(&doc).contains(&f("port-conflict", "error", "tcp/10250")),
        "{doc:#}"
    );
    assert_eq!(code, 1);
}

#[test]
fn the_read_only_port_is_found_on_a_node_of_unknown_role() {
    let mut node = Node::new();
    // A k3s agent's embedded kubelet: k3s does not tell kports the node's roles.
    node.start("k3s", &["tcp:0.0.0.0:10255"]);
    let (code, doc) = node.json(&["check"]);
    assert_eq!(doc["context"]["roles"]["value"], serde_json::json!([]));
    assert_eq!(
        findings(&doc),
        [f("readonly-port-open", "warning", "tcp/10255")],
        "{doc:#}"
    );
    assert_eq!(code, 0);
}

#[test]
fn control_plane_conflict_and_flags() {
    let mut node = Node::new();
    let nc = node.start("nc", &["tcp:0.0.0.0:6443"]);
    node.start(
        "etcd",
        &[
            "tcp:127.0.0.1:2379",
            "tcp:192.0.2.10:2379",
            "tcp:192.0.2.10:2380",
            "tcp:127.0.0.1:2381",
            "--listen-client-urls=https://127.0.0.1:2379,https://192.0.2.10:2379",
            "--listen-peer-urls=https://192.0.2.10:2380",
        ],
    );
    node.start(
        "kube-scheduler",
        &["tcp:127.0.0.1:10259", "--bind-address=127.0.0.1"],
    );
    node.start(
        "kube-controller-manager",
        &["tcp:0.0.0.0:10257", "--bind-address=0.0.0.0"],
    );
    clean_worker(&mut node);
    let (code, doc) = node.json(&["check"]);
    assert_eq!(
        doc["context"]["roles"]["value"],
        serde_json::json!(["control-plane", "etcd"]),
        "{doc:#}"
    );
    assert_eq!(
        findings(&doc),
        [
            f("bound-too-wide", "warning", "tcp/10257"),
            f("firewall-exposes-private-port", "warning", "tcp/10257"),
            f("port-conflict", "error", "tcp/6443")
        ],
        "{doc:#}"
    );
    assert_eq!(code, 1);
    let items = doc["items"].as_array().unwrap();
    assert_eq!(
        items[0]["message"],
        format!(
            "tcp/6443 is held by nc (pid {nc}), not kube-apiserver; kubeadm preflight reports `[ERROR Port-6443]: Port 6443 is in use`"
        )
    );
    let wide = &items[1];
    assert_eq!(
        wide["evidence"]["flags"][0]["value"],
        "--bind-address=0.0.0.0"
    );
    assert_eq!(
        wide["evidence"]["flags"][0]["source"],
        "kube-controller-manager"
    );

    // JUnit: one test case per port checked, a failure for the conflict only (warnings are
    // below --fail-on error).
    let out = node.kports(&["check", "-o", "junit"]);
    assert_eq!(out.status.code(), Some(1));
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert!(xml.contains("<failure type=\"port-conflict\""), "{xml}");
    let cases = xml.matches("<testcase ").count();
    let checked = doc["context"]["checked"].as_array().unwrap().len();
    assert_eq!(cases, checked, "{xml}");
    let out = node.kports(&["check", "-o", "junit", "--fail-on", "warning"]);
    assert_eq!(
        String::from_utf8(out.stdout)
            .unwrap()
            .matches("<failure ")
            .count(),
        2
    );
}

#[test]
fn stopped_component_and_loopback_apiserver() {
    let mut node = Node::new();
    node.start(
        "kube-apiserver",
        &["tcp:127.0.0.1:6443", "--bind-address=127.0.0.1"],
    );
    node.start(
        "etcd",
        &[
            "tcp:127.0.0.1:2379",
            "tcp:192.0.2.10:2379",
            "tcp:192.0.2.10:2380",
            "tcp:127.0.0.1:2381",
        ],
    );
    node.start("kube-controller-manager", &["tcp:127.0.0.1:10257"]);
    clean_worker(&mut node);
    // No kube-scheduler: stopped.
    let (code, doc) = node.json(&["check"]);
    assert_eq!(
        findings(&doc),
        [
            f("bound-loopback-only", "error", "tcp/6443"),
            f("port-not-listening", "error", "tcp/10259")
        ],
        "{doc:#}"
    );
    assert_eq!(code, 1);
}

#[test]
fn pre_install_names_the_holder() {
    let mut node = Node::new();
    let holder = node.start("nc", &["tcp:0.0.0.0:10250", "udp:0.0.0.0:30053"]);
    let (code, doc) = node.json(&["check", "--pre-install", "--role", "worker"]);
    assert_eq!(
        findings(&doc),
        [
            f("port-in-use", "error", "tcp/10250"),
            f("port-in-use", "warning", "udp/30053")
        ],
        "{doc:#}"
    );
    assert_eq!(code, 1);
    assert_eq!(
        doc["items"][0]["message"],
        format!(
            "[ERROR Port-10250]: Port 10250 is in use by nc (pid {holder}) (kubelet needs it: Kubelet API (HTTPS): logs, exec, attach, port-forward, metrics)"
        )
    );
    // A free node passes, in table form too.
    let free = Node::new();
    let out = free.kports(&["check", "--pre-install", "--role", "control-plane"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("pre-install check of") && text.contains("no findings"),
        "{text}"
    );
}

#[test]
fn explain_counts_connections_per_client() {
    let mut node = Node::new();
    node.start("etcd", &["tcp:127.0.0.1:2379", "tcp:192.0.2.10:2380"]);
    let api = node.start(
        "kube-apiserver",
        &[
            "tcp:[::]:6443",
            "connect:127.0.0.1:2379",
            "connect:127.0.0.1:2379",
            "connect:127.0.0.1:2379",
        ],
    );
    let (code, doc) = node.json(&["explain", "2379"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["kind"], "explain");
    let x = &doc["items"][0];
    assert_eq!(x["entry"]["component"], "etcd");
    assert_eq!(x["entry"]["bind"], "node");
    assert_eq!(x["now"]["inbound"][0]["connections"], 3, "{x:#}");
    assert_eq!(x["now"]["inbound"][0]["process"], "kube-apiserver");
    assert_eq!(x["now"]["inbound"][0]["pid"], api);
    let out = node.kports(&["explain", "etcd"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("tcp/2380  etcd: etcd peer traffic"), "{text}");
    assert!(
        text.contains("3 connections from 1 peer: 127.0.0.1 x3 (kube-apiserver pid"),
        "{text}"
    );
    // The two ports side by side: the API server's pool on 2379, no peer on a single member.
    for q in ["etcd", "2379", "2380"] {
        let out = node.kports(&["explain", q]);
        let text = String::from_utf8(out.stdout).unwrap();
        let contrast = text
            .split_once("etcd's two ports on this node now\n")
            .unwrap_or_else(|| panic!("no contrast for {q}: {text}"))
            .1;
        let lines: Vec<&str> = contrast.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("  tcp/2379   clients: "), "{text}");
        assert!(
            lines[0].ends_with(": 3 established from 1 address"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("  tcp/2380   the other etcd members only"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(": 0 established with 0 addresses"),
            "{text}"
        );
    }
}

#[test]
fn bad_catalog_file_is_refused_with_line_and_reason() {
    let dir = std::env::temp_dir().join(format!("kpc-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("mine.toml");
    let cases: [(&str, &str); 3] = [
        (
            "[[port]]\ncomponent = \"kube-proxy\"\nprotocol = \"tcp\"\nport = \"32767-30000\"\n",
            "mine.toml:4:8: range 32767-30000 is backwards: write 30000-32767",
        ),
        (
            "[[port]]\ncomponent = \"etcd\"\nprotocol = \"tcp\"\nport = 2379\nroles = [\"master\"]\n",
            "mine.toml:5:",
        ),
        (
            "[[port]]\ncomponent = \"a\"\nprotocol = \"tcp\"\nport = 1\n\n[[port]]\ncomponent = \"a\"\nprotocol = \"tcp\"\nport = 1\n",
            "mine.toml:6:1: duplicate entry a tcp/1: already defined at line 1",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&p, text).unwrap();
        let out = Command::new(KPORTS)
            .args(["check", "--catalog"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(out.stdout.is_empty());
    }
    // A good file is accepted and used.
    std::fs::write(
        &p,
        "[[port]]\ncomponent = \"kube-proxy\"\nprotocol = \"tcp\"\nport = 10256\nenabled = false\n",
    )
    .unwrap();
    let out = Command::new(KPORTS)
        .args(["explain", "tcp/10256", "--catalog"])
        .arg(&p)
        .arg("-o")
        .arg("json")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["items"][0]["entry"], Value::Null, "{doc:#}");
}

#[test]
fn endless_or_huge_catalog_files_are_refused_at_the_limit() {
    let out = Command::new(KPORTS)
        .args(["check", "--catalog", "/dev/zero"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        "kports: cannot read the catalog file /dev/zero: the catalog file is larger than \
         16777216 bytes (16 MiB), kports's limit; set KPORTS_MAX_CATALOG_BYTES=BYTES to raise it"
    );
    // The limit is the user's to raise (or lower).
    let out = Command::new(KPORTS)
        .args(["explain", "2379", "--catalog", "/dev/zero"])
        .env("KPORTS_MAX_CATALOG_BYTES", "1000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("larger than 1000 bytes (1000 B)"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(KPORTS)
        .args(["check", "--pre-install"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role"));
    let out = Command::new(KPORTS)
        .args(["explain", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(KPORTS)
        .args(["check", "--cni", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the catalog knows antrea, calico"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The flannel ports that `firewall check` requires on `node` (role given, sources given).
fn flannel_required(node: &Node) -> BTreeSet<u64> {
    let (_, doc) = node.json(&[
        "firewall",
        "check",
        "--role",
        "worker",
        "--sources",
        "192.0.2.0/24",
        "--control-plane",
        "192.0.2.11",
        "--fail-on",
        "never",
    ]);
    doc["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc:#}"))
        .iter()
        .filter(|r| r["port"]["component"] == "flannel")
        .map(|r| r["port"]["lo"].as_u64().unwrap())
        .collect()
}

/// A worker whose flannel runs the udp backend: its `flannel0` tun device shows it, so UDP 8285
/// alone is required (not VXLAN's 8472, not WireGuard's), and `check` wants flanneld on it.
#[test]
fn flannels_udp_backend_device_gives_its_own_port() {
    let mut node = Node::new();
    node.start("kubelet", &["tcp:[::]:10250", "tcp:127.0.0.1:10248"]);
    node.start("kube-proxy", &["tcp:[::]:10256", "tcp:127.0.0.1:10249"]);
    node.ip(&["tuntap", "add", "flannel0", "mode", "tun"]);
    node.ip(&["link", "set", "flannel0", "up"]);
    assert_eq!(flannel_required(&node), BTreeSet::from([8285]));
    let (code, doc) = node.json(&["check"]);
    assert_eq!(
        doc["context"]["cni"]["value"],
        serde_json::json!(["flannel"])
    );
    assert_eq!(
        findings(&doc),
        [f("port-not-listening", "warning", "udp/8285")],
        "{doc:#}"
    );
    assert_eq!(code, 0, "a warning");
    let evidence = doc["items"][0]["evidence"]["flags"].to_string();
    assert!(evidence.contains("device flannel0"), "{evidence}");
    node.start("flanneld", &["udp:0.0.0.0:8285"]);
    let (_, doc) = node.json(&["check"]);
    assert_eq!(findings(&doc), [], "{doc:#}");
}

/// flannel's net-conf.json (read where flanneld sees it) wins over a VXLAN device left from
/// before: the WireGuard backend's ports, at the ports the configuration gives.
#[test]
fn flannels_net_conf_wins_over_a_leftover_device() {
    let mut node = Node::new();
    node.start("kubelet", &["tcp:[::]:10250", "tcp:127.0.0.1:10248"]);
    node.start("kube-proxy", &["tcp:[::]:10256", "tcp:127.0.0.1:10249"]);
    node.vxlan("flannel.1", 8472);
    let conf = node.dir.join("net-conf.json");
    std::fs::write(
        &conf,
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "ListenPort": 51000}}"#,
    )
    .unwrap();
    let flag = format!("--net-config-path={}", conf.display());
    // flanneld holds its udp backend's port (not in use here, so only explained).
    node.start("flanneld", &["udp:0.0.0.0:8285", &flag]);
    assert_eq!(flannel_required(&node), BTreeSet::from([51000, 51821]));
    // No WireGuard device (this kernel may have none): nothing listens on either port, and
    // both lie in the namespace's ephemeral range, where an outgoing connection can take them.
    let (_, doc) = node.json(&["check"]);
    assert_eq!(
        findings(&doc),
        [
            f("ephemeral-overlaps-port", "warning", "udp/51000"),
            f("ephemeral-overlaps-port", "warning", "udp/51821"),
            f("port-not-listening", "warning", "udp/51000"),
            f("port-not-listening", "warning", "udp/51821")
        ],
        "{doc:#}"
    );
    // --cni wins over the file.
    let (_, doc) = node.json(&["check", "--cni", "flannel:vxlan"]);
    assert_eq!(findings(&doc), [], "{doc:#}");
    // A file flannel cannot read either: a warning, and the devices decide.
    std::fs::write(&conf, "{").unwrap();
    assert_eq!(flannel_required(&node), BTreeSet::from([8472]));
    let (_, doc) = node.json(&["check"]);
    let warnings = doc["warnings"].to_string();
    assert!(warnings.contains("cni-config-unreadable"), "{warnings}");
}
