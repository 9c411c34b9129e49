//! System tests (root): a node and two peers in network namespaces the test creates (and
//! removes, even when it fails), the plan's rules applied inside the node's namespace with the
//! real `nft` and `iptables` binaries, and real connections from the peers to every required
//! port. Each attempt must succeed exactly when the plan means it to, and the evaluator's verdict
//! on the ruleset read back from the namespace must match what happened.
//!
//! Addresses are 198.51.100.0/24 and exist only inside these namespaces.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kports_core::catalog::Catalog;
use kports_firewall::capture::{Capture, SaveSource, assemble};
use kports_firewall::model::{Backend, Ruleset, parse_cidr};
use kports_firewall::plan::{Plan, PlanBackend, PlanRequest, plan};
use kports_firewall::required::{PortCatalog, Role};
use kports_firewall::{Evaluator, Judgement, Packet};

const NODE: &str = "198.51.100.1";
const CP: &str = "198.51.100.10";
const WORKER: &str = "198.51.100.20";
const LISTEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support_files/listen.py");
const TCP_PORTS: [u16; 10] = [
    6443, 2379, 2380, 10250, 10256, 10257, 10259, 30000, 31500, 32767,
];
const UDP_PORTS: [u16; 3] = [8472, 30000, 32767];

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the system tests create network namespaces and must run as root (CI does)"
    );
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node namespace with a bridge, two peers (control plane and worker) and a listener process.
struct Lab {
    node: String,
    cp: String,
    worker: String,
    listener: Option<Child>,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let base = format!(
            "kpfw-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            node: format!("{base}-node"),
            cp: format!("{base}-cp"),
            worker: format!("{base}-wk"),
            listener: None,
        };
        for ns in [&lab.node, &lab.cp, &lab.worker] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let n = lab.node.as_str();
        sh(&["ip", "-n", n, "link", "add", "br0", "type", "bridge"]);
        sh(&[
            "ip",
            "-n",
            n,
            "addr",
            "add",
            &format!("{NODE}/24"),
            "dev",
            "br0",
        ]);
        sh(&["ip", "-n", n, "link", "set", "br0", "up"]);
        for (i, (peer, addr)) in [(&lab.cp, CP), (&lab.worker, WORKER)]
            .into_iter()
            .enumerate()
        {
            let h = format!("h{i}");
            sh(&[
                "ip", "-n", n, "link", "add", &h, "type", "veth", "peer", "name", "e0", "netns",
                peer,
            ]);
            sh(&["ip", "-n", n, "link", "set", &h, "master", "br0", "up"]);
            sh(&[
                "ip",
                "-n",
                peer,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "e0",
            ]);
            sh(&["ip", "-n", peer, "link", "set", "e0", "up"]);
        }
        lab
    }

    /// Starts the listener on every probed port inside the node's namespace.
    fn listen(&mut self) {
        let tcp = TCP_PORTS.map(|p| p.to_string()).join(",");
        let udp = UDP_PORTS.map(|p| p.to_string()).join(",");
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.node,
                "python3",
                LISTEN,
                &format!("tcp={tcp}"),
                &format!("udp={udp}"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.listener = Some(child);
        assert_eq!(line.trim(), "ready", "listener did not start");
    }

    fn in_node(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.node];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Reads the node's rulesets as the collector does, from inside its namespace.
    fn capture(&self) -> Capture {
        let run = |args: &[&str]| -> Result<String, String> {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.node])
                .args(args)
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        };
        let mut c = Capture {
            nft_json: Some(run(&["nft", "-j", "list", "ruleset"])),
            nft_text: Some(run(&["nft", "-a", "list", "ruleset"])),
            ..Capture::default()
        };
        for v6 in [false, true] {
            let file = SaveSource {
                backend: Backend::IptablesLegacy,
                v6,
            }
            .legacy_names_file();
            c.legacy_names
                .push((v6, Ok(run(&["cat", file]).unwrap_or_default())));
        }
        for src in SaveSource::ALL {
            c.saves.push((src, run(&[src.command()])));
        }
        c
    }

    fn ruleset(&self) -> Ruleset {
        let (rs, warnings) = assemble(&self.capture());
        assert!(rs.unread.is_empty(), "{:?}", rs.unread);
        assert!(warnings.is_empty(), "{warnings:?}");
        rs
    }

    /// Everything the firewall commands print, for comparing before and after a re-apply.
    fn listing(&self) -> String {
        let counters = |s: String| {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.split(" [").next().unwrap_or(l).to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut s = self.in_node(&["nft", "list", "ruleset"]);
        for cmd in ["iptables-nft-save", "iptables-legacy-save"] {
            s.push_str(&counters(self.in_node(&[cmd])));
        }
        s
    }

    fn apply(&self, script: &str) {
        self.in_node(&["sh", "-c", &format!("set -e\n{script}")]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.listener.take() {
            // Only the process this test started, by its pid.
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.node, &self.cp, &self.worker] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Open,
    Refused,
    TimedOut,
    Other,
}

/// Runs `f` on a thread that has entered network namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).unwrap();
        // SAFETY: setns on a valid namespace fd changes only this (dedicated) thread's namespace.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

fn probe(ns: &str, proto: &str, addr: &str, port: u16) -> Outcome {
    let to: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let udp = proto == "udp";
    in_ns(ns, move || {
        let kind = |e: std::io::Error| match e.kind() {
            ErrorKind::ConnectionRefused => Outcome::Refused,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::TimedOut,
            _ => Outcome::Other,
        };
        if !udp {
            return match TcpStream::connect_timeout(&to, Duration::from_millis(1500)) {
                Ok(_) => Outcome::Open,
                Err(e) => kind(e),
            };
        }
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(to).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut buf = [0u8; 16];
        // Two tries, in case the first datagram waits for neighbour resolution.
        for _ in 0..2 {
            if let Err(e) = s.send(b"kports") {
                return kind(e);
            }
            match s.recv(&mut buf) {
                Ok(_) => return Outcome::Open,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => return kind(e),
            }
        }
        Outcome::TimedOut
    })
}

fn expected(j: &Judgement) -> Outcome {
    match j {
        Judgement::Accept { .. } => Outcome::Open,
        Judgement::Reject { .. } => Outcome::Refused,
        Judgement::Drop { .. } => Outcome::TimedOut,
        other => panic!("the evaluator should decide here: {}", other.summary()),
    }
}

fn request(backend: PlanBackend) -> PlanRequest {
    PlanRequest {
        backend,
        ports: Catalog::builtin()
            .unwrap()
            .required(Role::ControlPlane, Some("flannel"))
            .ports,
        sources: vec![parse_cidr("198.51.100.0/24").unwrap()],
        control_plane: vec![parse_cidr(CP).unwrap()],
        etcd: vec![parse_cidr(CP).unwrap()],
        load_balancers: Vec::new(),
        zone: None,
        own_table_only: false,
    }
}

/// Who the plan means to let in on each probed port.
fn wanted(proto: &str, port: u16, from: &str) -> bool {
    match (proto, port) {
        ("tcp", 6443) | ("tcp", 30000..=32767) | ("udp", _) => true,
        ("tcp", 2379 | 2380 | 10250) => from == CP,
        _ => false,
    }
}

/// Probes every port from both peers; checks the plan's intent and the evaluator's verdict.
fn probe_all(lab: &Lab, rs: &Ruleset, exceptions: &[(&str, u16, &str, Outcome)]) {
    let ev = Evaluator::new(rs);
    let mut tried = 0;
    for (ns, from) in [(&lab.cp, CP), (&lab.worker, WORKER)] {
        let attempts = TCP_PORTS
            .iter()
            .map(|&p| ("tcp", p))
            .chain(UDP_PORTS.iter().map(|&p| ("udp", p)));
        for (proto, port) in attempts {
            let got = probe(ns, proto, NODE, port);
            let want = exceptions
                .iter()
                .find(|e| e.0 == proto && e.1 == port && e.2 == from)
                .map(|e| e.3)
                .unwrap_or(if wanted(proto, port, from) {
                    Outcome::Open
                } else {
                    Outcome::Refused
                });
            assert_eq!(got, want, "{proto}/{port} from {from}");
            let src = parse_cidr(from).unwrap();
            let p = Packet {
                v6: false,
                proto: if proto == "tcp" { 6 } else { 17 },
                dport: port,
                src,
                dst: NODE.parse().ok(),
                iif: Some("br0".into()),
            };
            let j = ev.judge(&p);
            assert_eq!(
                expected(&j),
                got,
                "{proto}/{port} from {from}: evaluator says {}",
                j.summary()
            );
            tried += 1;
        }
    }
    assert_eq!(tried, 2 * (TCP_PORTS.len() + UDP_PORTS.len()));
    // The node itself reaches its self-only ports over loopback.
    for port in [10257, 10259] {
        assert_eq!(
            probe(&lab.node, "tcp", "127.0.0.1", port),
            Outcome::Open,
            "tcp/{port} from self"
        );
        let p = Packet {
            v6: false,
            proto: 6,
            dport: port,
            src: parse_cidr("127.0.0.1").unwrap(),
            dst: "127.0.0.1".parse().ok(),
            iif: Some("lo".into()),
        };
        assert_eq!(ev.judge(&p).is_open(), Some(true));
    }
}

/// Applies the plan twice and checks the second run changes nothing and the second plan finds
/// nothing to add.
fn apply_twice(lab: &Lab, p: &Plan, req: &PlanRequest) {
    lab.apply(&p.script);
    let once = lab.listing();
    lab.apply(&p.script);
    assert_eq!(
        once,
        lab.listing(),
        "applying the plan twice changed the ruleset"
    );
    let again = plan(&lab.ruleset(), req, None);
    let changed: Vec<_> = again.chain_diff.iter().filter(|d| d.op != '=').collect();
    assert!(
        changed.is_empty(),
        "a second plan still changes kports's chain: {changed:?}"
    );
    // Everything is as wanted, except what another table's drop still blocks (a conflict).
    let unmet: Vec<_> = again
        .intents
        .iter()
        .filter(|i| {
            i.already != Some(true)
                && !again
                    .conflicts
                    .iter()
                    .any(|c| c.port == i.port && c.source == i.source)
        })
        .collect();
    assert!(unmet.is_empty(), "{unmet:?}");
}

#[test]
fn nft_plan_opens_exactly_what_each_source_needs() {
    let mut lab = Lab::new();
    lab.listen();
    // Someone else's table drops the kubelet port: kports's own table cannot open it, and a
    // plan kept to that table (`own_table_only`) names the fix.
    lab.in_node(&["nft", "add table ip other"]);
    lab.in_node(&[
        "nft",
        "add chain ip other input { type filter hook input priority 0; policy accept; }",
    ]);
    lab.in_node(&["nft", "add rule ip other input tcp dport 10250 drop"]);
    let before = lab.ruleset();
    // Before: everything open except the dropped kubelet port.
    assert_eq!(probe(&lab.worker, "tcp", NODE, 2379), Outcome::Open);
    let own_table_only = PlanRequest {
        own_table_only: true,
        ..request(PlanBackend::Nft)
    };
    let p = plan(&before, &own_table_only, None);
    assert!(
        p.chain_diff.iter().all(|d| d.op == '+'),
        "{:?}",
        p.chain_diff
    );
    assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
    let c = &p.conflicts[0];
    assert_eq!(
        (
            c.port.as_str(),
            c.source.as_str(),
            c.blocked_by.table.as_str()
        ),
        ("tcp/10250", CP, "ip other")
    );
    // Not kept to its table, the plan inserts that accept itself, tagged, before the drop.
    let opening = plan(&before, &request(PlanBackend::Nft), None);
    assert_eq!(opening.conflicts, [], "{:?}", opening.conflicts);
    assert_eq!(opening.openings.len(), 1, "{:?}", opening.openings);
    assert_eq!(opening.openings[0].before, c.blocked_by);
    assert!(
        c.fix
            .starts_with("nft insert rule ip other input position "),
        "{}",
        c.fix
    );
    apply_twice(&lab, &p, &own_table_only);
    let after = lab.ruleset();
    probe_all(&lab, &after, &[("tcp", 10250, CP, Outcome::TimedOut)]);
    // The fix the plan names opens it.
    lab.in_node(&["sh", "-c", &c.fix]);
    let fixed = lab.ruleset();
    assert_eq!(probe(&lab.cp, "tcp", NODE, 10250), Outcome::Open);
    probe_all(&lab, &fixed, &[]);
}

#[test]
fn iptables_nft_plan_opens_exactly_what_each_source_needs() {
    let mut lab = Lab::new();
    lab.listen();
    let p = plan(&lab.ruleset(), &request(PlanBackend::Iptables), None);
    assert!(
        p.script.contains("iptables-nft-restore --noflush"),
        "{}",
        p.script
    );
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    apply_twice(&lab, &p, &request(PlanBackend::Iptables));
    probe_all(&lab, &lab.ruleset(), &[]);
}

#[test]
fn iptables_legacy_plan_opens_exactly_what_each_source_needs() {
    let mut lab = Lab::new();
    lab.listen();
    // Rules already in the legacy tables: the plan writes there too.
    lab.in_node(&[
        "iptables-legacy",
        "-w",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "9",
        "-j",
        "ACCEPT",
    ]);
    let p = plan(&lab.ruleset(), &request(PlanBackend::Iptables), None);
    assert!(
        p.script.contains("iptables-legacy-restore -w --noflush"),
        "{}",
        p.script
    );
    apply_twice(&lab, &p, &request(PlanBackend::Iptables));
    let rs = lab.ruleset();
    assert!(
        rs.tables
            .iter()
            .any(|t| t.backend == Backend::IptablesLegacy && t.chain("KPORTS-INPUT").is_some())
    );
    probe_all(&lab, &rs, &[]);
}

#[test]
fn generated_kube_proxy_rules_load_into_real_iptables_and_read_back_the_same() {
    let lab = Lab::new();
    let text = crate::kube_proxy::save(3000);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.node, "iptables-nft-restore"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let real = lab.ruleset();
    let (mine, _) = assemble(&Capture {
        saves: vec![(
            SaveSource {
                backend: Backend::IptablesNft,
                v6: false,
            },
            Ok(text),
        )],
        ..Capture::default()
    });
    let p = Packet {
        v6: false,
        proto: 6,
        dport: 30000,
        src: parse_cidr("203.0.113.0/24").unwrap(),
        dst: NODE.parse().ok(),
        iif: Some("br0".into()),
    };
    let a: Vec<(u16, u16, String)> = Evaluator::new(&real)
        .judge_ports(&p, 30000, 32767)
        .into_iter()
        .map(|(l, h, j)| (l, h, j.word().to_string()))
        .collect();
    let b: Vec<(u16, u16, String)> = Evaluator::new(&mine)
        .judge_ports(&p, 30000, 32767)
        .into_iter()
        .map(|(l, h, j)| (l, h, j.word().to_string()))
        .collect();
    assert!(a.len() > 10, "{a:?}");
    assert_eq!(a, b);
}
