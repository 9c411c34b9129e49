//! System tests of `kports lab`: they bring up real labs (network namespaces, etcd, the
//! component stand-ins), so they need root, and they run one at a time (one lab per machine).
//! Every test holds a [`Lab`] guard that runs `kports lab down` when the test ends, also when
//! an assertion fails. A lab left up by someone else makes the tests fail rather than remove it.
//!
//! Network probes go only to lab addresses, from inside lab namespaces, with a 2 s connect
//! timeout and a bounded number of attempts.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::RwLockWriteGuard;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{KPORTS, kports, kports_ok, lab_turn, require_root, text};
const RUN_DIR: &str = "/run/kports-lab";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a command inside a lab node through `kports lab exec`.
fn exec(node: &str, cmd: &[&str]) -> String {
    let mut args = vec!["lab", "exec", node, "--"];
    args.extend_from_slice(cmd);
    kports_ok(&args)
}

fn exec_json(node: &str, cmd: &[&str]) -> Value {
    let out = exec(node, cmd);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{cmd:?} in {node}: not JSON ({e}):\n{out}"))
}

/// A lab that goes down when the guard is dropped, whatever happened in between.
struct Lab {
    /// Taken by [`Lab::down`], which keeps the turn for what the test checks afterwards.
    turn: Option<RwLockWriteGuard<'static, ()>>,
}

impl Lab {
    fn up(args: &[&str]) -> Lab {
        let turn = lab_turn();
        assert!(
            !Path::new(RUN_DIR).exists() && lab_namespaces().is_empty(),
            "a kports lab is already up on this machine; run `kports lab down` before the tests"
        );
        let lab = Lab { turn: Some(turn) };
        let mut a = vec!["lab", "up"];
        a.extend_from_slice(args);
        kports_ok(&a);
        lab
    }

    /// Takes the lab down and keeps the turn, so that no other lab test's lab comes up while
    /// the caller checks that nothing is left.
    fn down(mut self) -> Option<RwLockWriteGuard<'static, ()>> {
        let out = kports(&["lab", "down"]);
        assert!(
            out.status.success(),
            "kports lab down failed: {}",
            text(&out.stderr)
        );
        self.turn.take()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.turn.is_none() {
            return;
        }
        let out = kports(&["lab", "down"]);
        if !out.status.success() {
            eprintln!("kports lab down failed: {}", text(&out.stderr));
            if !thread::panicking() {
                panic!("kports lab down failed: {}", text(&out.stderr));
            }
        }
    }
}

fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("kports-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Mount points that belong to a lab (its UTS namespaces, its network namespaces).
fn lab_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(RUN_DIR) || m.starts_with("/run/netns/kports-"))
        .map(String::from)
        .collect()
}

/// Pids of live (not zombie) processes that run a program from the lab's directory or
/// name it on their command line: what a lab starts.
fn lab_processes() -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let dir = e.path();
        let exe = std::fs::read_link(dir.join("exe")).unwrap_or_default();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let ours = exe.starts_with(RUN_DIR) || text(&cmdline).contains(RUN_DIR);
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if ours && !zombie && pid != std::process::id() {
            v.push(pid);
        }
    }
    v
}

/// The pids and start times the state file records.
fn recorded_pids() -> Vec<(u32, u64)> {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{RUN_DIR}/state.json")).unwrap())
            .unwrap();
    state["procs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["pid"].as_u64()? as u32, p["start_time"].as_u64()?)))
        .collect()
}

/// Whether `pid` still runs with that start time (a zombie does not count).
fn runs(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.first() != Some(&"Z") && f.get(19).and_then(|s| s.parse::<u64>().ok()) == Some(start)
}

fn assert_nothing_left(context: &str) {
    assert_eq!(
        lab_namespaces(),
        Vec::<String>::new(),
        "{context}: namespaces left"
    );
    assert!(!Path::new(RUN_DIR).exists(), "{context}: {RUN_DIR} left");
    assert_eq!(lab_mounts(), Vec::<String>::new(), "{context}: mounts left");
    assert_eq!(
        lab_processes(),
        Vec::<u32>::new(),
        "{context}: processes left"
    );
}

/// Runs `f` on a thread inside the lab namespace `short` (`cp1`, `w1-pod`, ...).
fn in_netns<T: Send + 'static>(short: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/kports-{short}");
    thread::spawn(move || {
        let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on an open namespace descriptor; it moves only this thread, which ends here.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A TCP connect from inside `from` to `to`, with the short timeout.
fn connect_from(from: &str, to: &str) -> io::Result<()> {
    let to: SocketAddr = to.parse().unwrap();
    in_netns(from, move || {
        TcpStream::connect_timeout(&to, CONNECT_TIMEOUT).map(drop)
    })
}

/// Connects until it succeeds (at most `tries` attempts): for states that settle.
fn connect_eventually(from: &str, to: &str, tries: usize) -> io::Result<()> {
    let mut last = Ok(());
    for _ in 0..tries {
        last = connect_from(from, to);
        if last.is_ok() {
            return last;
        }
        thread::sleep(Duration::from_millis(200));
    }
    last
}

/// (address:port, component) of every TCP listener `kports listen` sees in `node`.
fn listeners(node: &str) -> BTreeSet<(String, String)> {
    let doc = exec_json(node, &[KPORTS, "listen", "-o", "json"]);
    assert_eq!(doc["hostname"], node);
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["proto"] == "tcp")
        .map(|s| {
            let a: std::net::IpAddr = s["local_address"].as_str().unwrap().parse().unwrap();
            let port = s["local_port"].as_u64().unwrap() as u16;
            (
                SocketAddr::new(a, port).to_string(),
                s["component"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, c)| (a.to_string(), c.to_string()))
        .collect()
}

const NODE_LISTENERS: [(&str, &str); 4] = [
    ("[::]:10250", "kubelet"),
    ("127.0.0.1:10248", "kubelet"),
    ("[::]:10256", "kube-proxy"),
    ("127.0.0.1:10249", "kube-proxy"),
];

/// Established connections into the local port `port` that `kports conns` counts in `node`.
fn established_in(node: &str, port: u64) -> u64 {
    let doc = exec_json(node, &[KPORTS, "conns", "--process", "etcd", "-o", "json"]);
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["direction"] == "in" && r["local_port"] == port)
        .map(|r| r["established"].as_u64().unwrap())
        .sum()
}

#[test]
fn up_and_down_twice_leave_nothing_behind() {
    require_root();
    for round in 1..=2 {
        let lab = Lab::up(&["--nodes", "1,1"]);
        let pids = recorded_pids();
        {
            assert_eq!(pids.len(), 8, "round {round}: 6 components on cp1, 2 on w1");
            assert!(
                pids.iter().all(|&(p, s)| runs(p, s)),
                "round {round}: every recorded process runs"
            );
            let mut ns = lab_namespaces();
            ns.sort();
            assert_eq!(
                ns,
                [
                    "kports-cp1",
                    "kports-cp1-pod",
                    "kports-fabric",
                    "kports-w1",
                    "kports-w1-pod"
                ]
            );
            assert_eq!(
                lab_mounts().len(),
                10,
                "5 network and 5 UTS namespace mounts"
            );

            let again = kports(&["lab", "up"]);
            assert_eq!(again.status.code(), Some(2));
            assert!(
                text(&again.stderr).contains("a lab is already up: run `kports lab down` first"),
                "{}",
                text(&again.stderr)
            );
        }
        let _turn = lab.down();
        assert!(
            pids.iter().all(|&(p, s)| !runs(p, s)),
            "round {round}: a recorded process survived down"
        );
        assert_nothing_left(&format!("after round {round}"));
    }
    // Within a turn of its own: another lab test's lab may be up as soon as a turn ends.
    let _turn = lab_turn();
    let out = kports_ok(&["lab", "down"]);
    assert_eq!(out, "No lab was up; nothing to remove.\n");
}

#[test]
fn down_cleans_up_after_a_killed_up() {
    let _turn = lab_turn();
    assert_nothing_left("before the test");
    // Kill `up` at a few points of its work; `down` must find whatever it had made.
    let mut rounds_with_leftovers = 0;
    for delay_ms in [30, 80, 150, 250, 400] {
        // `up` leads a process group of its own, and the whole group is killed, as Ctrl-C on a
        // terminal kills a command with the children it is waiting for: killing `up` alone
        // would leave an `ip netns add` it started to finish after `down` has looked.
        let mut child = Command::new(KPORTS)
            .args(["lab", "up"])
            .process_group(0)
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(delay_ms));
        let group = i32::try_from(child.id()).unwrap();
        // SAFETY: kill(2) with the negated pid of the group this test just created.
        assert_eq!(unsafe { libc::kill(-group, libc::SIGKILL) }, 0);
        child.wait().unwrap();
        // The group's other members are not our children: wait until none is left.
        let gone = Instant::now() + Duration::from_secs(10);
        // SAFETY: signal 0 only asks whether the group still has a member.
        while unsafe { libc::kill(-group, 0) } == 0 && Instant::now() < gone {
            thread::sleep(Duration::from_millis(10));
        }
        if !lab_namespaces().is_empty() || !lab_processes().is_empty() {
            rounds_with_leftovers += 1;
        }
        let out = kports(&["lab", "down"]);
        assert!(
            out.status.success(),
            "down after up killed at {delay_ms} ms: {}",
            text(&out.stderr)
        );
        assert_nothing_left(&format!("down after up killed at {delay_ms} ms"));
    }
    assert!(
        rounds_with_leftovers > 0,
        "no killed `up` left anything: the test proved nothing"
    );
}

#[test]
fn nodes_are_built_as_the_lab_says() {
    let _lab = Lab::up(&[]);
    let status: Value = serde_json::from_str(&kports_ok(&["lab", "status", "-o", "json"])).unwrap();
    assert_eq!(status["context"]["up"], true);
    let nodes = status["items"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cp1", "w1", "w2"]);

    for (k, n) in nodes.iter().enumerate() {
        let name = n["name"].as_str().unwrap();
        let v4 = n["ipv4"].as_str().unwrap();
        let v6 = n["ipv6"].as_str().unwrap();
        assert_eq!(
            exec(name, &["hostname"]).trim(),
            name,
            "host name of {name}"
        );
        assert_eq!(
            exec(&format!("{name}-pod"), &["hostname"]).trim(),
            format!("{name}-pod")
        );

        let doc = exec_json(name, &[KPORTS, "node", "-o", "json"]);
        let items = doc["items"].as_array().unwrap();
        let iface = |ifname: &str| {
            items
                .iter()
                .find(|i| i["name"] == ifname)
                .unwrap_or_else(|| panic!("{name} has no {ifname}: {doc}"))
        };
        let globals = |i: &Value| -> Vec<String> {
            i["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["scope"] == "global")
                .map(|a| format!("{}/{}", a["address"].as_str().unwrap(), a["prefix_len"]))
                .collect()
        };
        let eth0 = iface("eth0");
        assert_eq!(eth0["kind"], "veth");
        assert_eq!(globals(eth0), [format!("{v4}/24"), format!("{v6}/64")]);
        let cni0 = iface("cni0");
        assert_eq!(cni0["kind"], "bridge");
        assert_eq!(globals(cni0), [format!("10.244.{k}.1/24")]);
        let flannel = iface("flannel.1");
        assert_eq!(flannel["kind"], "vxlan");
        assert_eq!(flannel["tunnel_port"], 8472);
        assert_eq!(globals(flannel), [format!("10.244.{k}.0/32")]);
        assert_eq!(iface(&format!("veth-{name}-pod"))["master"], "cni0");
        // `kports node --kind bridge` names the bridge, as `ip addr show type bridge` does.
        let bridges = exec_json(name, &[KPORTS, "node", "--kind", "bridge", "-o", "json"]);
        let bridge_names: Vec<&str> = bridges["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(bridge_names, ["cni0"]);

        // No way out: no default route, v4 or v6, in the node or its pod.
        for ns in [name.to_string(), format!("{name}-pod")] {
            for fam in ["-4", "-6"] {
                assert_eq!(
                    exec(&ns, &["ip", fam, "route", "show", "default"]).trim(),
                    "",
                    "default route in {ns}"
                );
            }
        }

        let mut want = set(&NODE_LISTENERS);
        if n["role"] == "control-plane" {
            want.extend(set(&[
                ("127.0.0.1:2379", "etcd"),
                (&format!("{v4}:2379"), "etcd"),
                (&format!("{v4}:2380"), "etcd"),
                ("127.0.0.1:2381", "etcd"),
                ("[::]:6443", "kube-apiserver"),
                ("127.0.0.1:10257", "kube-controller-manager"),
                ("127.0.0.1:10259", "kube-scheduler"),
            ]));
        }
        assert_eq!(listeners(name), want, "listeners of {name}");
    }

    // The fabric bridge has no address and no link to the host.
    let fabric = exec_json("fabric", &["ip", "-j", "addr"]);
    for i in fabric.as_array().unwrap() {
        let global: Vec<&Value> = i["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["scope"] == "global")
            .collect();
        assert!(global.is_empty(), "the fabric has an address: {i}");
    }
    let host: Value = serde_json::from_slice(
        &Command::new("ip")
            .args(["-j", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let host_links: Vec<&str> = host
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    for lab_link in [
        "fabric0",
        "veth-cp1",
        "veth-w1",
        "veth-w2",
        "cni0",
        "flannel.1",
    ] {
        assert!(
            !host_links.contains(&lab_link),
            "{lab_link} leaked into the host's namespace"
        );
    }

    // Owners look like kubeadm's: full names and kubeadm's flags.
    let doc = exec_json("cp1", &[KPORTS, "listen", "-o", "json"]);
    let cmdline_of = |port: u64| -> String {
        let s = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["local_port"] == port)
            .unwrap();
        s["processes"][0]["cmdline"].as_str().unwrap().to_string()
    };
    assert!(cmdline_of(10257).starts_with(
        "kube-controller-manager --allocate-node-cidrs=true --bind-address=127.0.0.1"
    ));
    assert!(cmdline_of(6443).starts_with("kube-apiserver --advertise-address=192.0.2.11"));
    assert!(cmdline_of(6443).contains("--etcd-servers=http://127.0.0.1:2379"));
    assert!(cmdline_of(2380).starts_with("etcd "));
    assert!(
        cmdline_of(2380)
            .contains("--listen-client-urls=http://127.0.0.1:2379,http://192.0.2.11:2379")
    );
}

#[test]
fn etcd_client_port_is_busier_than_its_peer_port() {
    let _lab = Lab::up(&["--nodes", "1,0"]);
    // The API server opens its connections in the background: wait a bounded time for them.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut client = established_in("cp1", 2379);
    while client < 40 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(300));
        client = established_in("cp1", 2379);
    }
    let peer = established_in("cp1", 2380);
    assert!(
        client >= 40,
        "etcd's client port has {client} connections, the API server keeps 40"
    );
    assert!(client > peer, "2379 has {client}, 2380 has {peer}");
    assert_eq!(peer, 0, "a single member has no peer connections");
    // ss agrees that the API server holds them.
    let ss = exec(
        "cp1",
        &["ss", "-tnpH", "state", "established", "( dport = :2379 )"],
    );
    let from_apiserver = ss
        .lines()
        .filter(|l| l.contains("\"kube-apiserver\""))
        .count();
    assert!(
        from_apiserver >= 40,
        "{from_apiserver} connections from kube-apiserver:\n{ss}"
    );
}

#[test]
fn etcd_members_talk_to_their_peers() {
    let _lab = Lab::up(&["--nodes", "3,0", "--etcd", "stand-in"]);
    let status: Value = serde_json::from_str(&kports_ok(&["lab", "status", "-o", "json"])).unwrap();
    assert_eq!(status["context"]["etcd"], "stand-in");
    // Each member keeps 2 connections to each of the 2 others: 4 come in on each 2380.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut peer = established_in("cp1", 2380);
    while peer < 4 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(300));
        peer = established_in("cp1", 2380);
    }
    assert_eq!(peer, 4, "peer connections into cp1's 2380");
    assert!(established_in("cp1", 2379) > peer);
}

/// Serves one connection inside `ns` at `addr`: reads "ping", answers "pong".
fn pong_server(ns: &str, addr: &'static str) -> thread::JoinHandle<io::Result<()>> {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = thread::spawn(move || {
        in_netns(&ns, move || -> io::Result<()> {
            let l = TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            let _ = tx.send(());
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                    {
                        thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => return Err(e),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            if &buf == b"ping" {
                s.write_all(b"pong")
            } else {
                Err(io::Error::other("not a ping"))
            }
        })
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the pod's server did not start");
    h
}

fn ping_pong(from: &str, to: &'static str) -> io::Result<()> {
    let to: SocketAddr = to.parse().unwrap();
    in_netns(from, move || {
        let mut s = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)?;
        s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        if &buf == b"pong" {
            Ok(())
        } else {
            Err(io::Error::other("no pong"))
        }
    })
}

/// Packets sent and received by `flannel.1` in `node`.
fn vxlan_packets(node: &str) -> (u64, u64) {
    let v = exec_json(node, &["ip", "-j", "-s", "link", "show", "flannel.1"]);
    let s = &v[0]["stats64"];
    (
        s["tx"]["packets"].as_u64().unwrap(),
        s["rx"]["packets"].as_u64().unwrap(),
    )
}

#[test]
fn pod_traffic_crosses_the_vxlan() {
    let _lab = Lab::up(&[]);
    let (cp_tx, _) = vxlan_packets("cp1");
    let (_, w1_rx) = vxlan_packets("w1");
    let server = pong_server("w1-pod", "10.244.1.2:8080");
    ping_pong("cp1-pod", "10.244.1.2:8080").expect("cp1's pod reaches w1's pod");
    server.join().unwrap().expect("w1's pod answered");
    let (cp_tx2, _) = vxlan_packets("cp1");
    let (_, w1_rx2) = vxlan_packets("w1");
    assert!(
        cp_tx2 > cp_tx,
        "cp1's flannel.1 sent nothing ({cp_tx} -> {cp_tx2})"
    );
    assert!(
        w1_rx2 > w1_rx,
        "w1's flannel.1 received nothing ({w1_rx} -> {w1_rx2})"
    );

    // Worker to worker too.
    let server = pong_server("w1-pod", "10.244.1.2:8081");
    ping_pong("w2-pod", "10.244.1.2:8081").expect("w2's pod reaches w1's pod");
    server.join().unwrap().expect("w1's pod answered w2's");

    // Blocking VXLAN's UDP port on w1 cuts w1's pod off: the traffic really rides on 8472.
    kports_ok(&["lab", "fault", "w1", "drop", "udp/8472"]);
    let _server = pong_server("w1-pod", "10.244.1.2:8082");
    let e = ping_pong("cp1-pod", "10.244.1.2:8082").expect_err("VXLAN is blocked");
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    kports_ok(&["lab", "fault", "w1", "clear"]);
    let server = pong_server("w1-pod", "10.244.1.2:8083");
    ping_pong("cp1-pod", "10.244.1.2:8083").expect("cleared: cp1's pod reaches w1's pod again");
    server
        .join()
        .unwrap()
        .expect("w1's pod answered after the clear");
}

/// `node`'s entry in `kports lab status -o json`.
fn node_status(node: &str) -> Value {
    let status: Value = serde_json::from_str(&kports_ok(&["lab", "status", "-o", "json"])).unwrap();
    status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .unwrap()
        .clone()
}

/// The faults `lab status` says are in force on `node`, in JSON, and its table's FAULTS cell.
fn faults(node: &str) -> (Vec<String>, String) {
    let json = node_status(node)["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let table = kports_ok(&["lab", "status"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{node} ")) && l.contains("kports-"))
        .unwrap_or_else(|| panic!("no row of {node}:\n{table}"));
    let cell = row.split("/24").last().unwrap().trim().to_string();
    (json, cell)
}

/// Where `lab status` says `node`'s running components listen, as (address, component): the
/// set `kports listen` must find.
fn status_listeners(node: &str) -> BTreeSet<(String, String)> {
    node_status(node)["components"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["listens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a.as_str().unwrap().to_string(),
                        c["name"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn component_state(node: &str, component: &str) -> String {
    let n = node_status(node);
    let c = n["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == component)
        .unwrap();
    c["state"].as_str().unwrap().to_string()
}

#[test]
fn faults_show_up_and_clear() {
    let _lab = Lab::up(&["--nodes", "1,1"]);
    let kubelet = "192.0.2.21:10250";
    connect_from("cp1", kubelet).expect("the kubelet answers before any fault");

    // drop: the connect times out; the rule sits in the lab's own table.
    kports_ok(&["lab", "fault", "w1", "drop", "tcp/10250"]);
    let e = connect_from("cp1", kubelet).expect_err("dropped");
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    let table = exec("w1", &["nft", "list", "table", "inet", "kports_lab_fault"]);
    assert!(table.contains("tcp dport 10250 drop"), "{table}");
    // Loopback is let through, as host firewalls do.
    connect_from("w1", "127.0.0.1:10250").expect("loopback is not firewalled");

    assert_eq!(
        faults("w1"),
        (
            vec!["drop tcp/10250".to_string()],
            "drop tcp/10250".to_string()
        )
    );

    // reject: refused at once (an ICMP port unreachable looks like a closed port).
    kports_ok(&["lab", "fault", "w1", "reject", "tcp/10250"]);
    let e = connect_from("cp1", kubelet).expect_err("rejected");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    assert_eq!(
        faults("w1"),
        (
            vec!["reject tcp/10250".to_string()],
            "reject tcp/10250".to_string()
        )
    );

    // One fault cleared, the other kept.
    kports_ok(&["lab", "fault", "w1", "drop", "udp/8472"]);
    kports_ok(&["lab", "fault", "w1", "clear", "tcp/10250"]);
    connect_from("cp1", kubelet).expect("tcp/10250 cleared");
    assert_eq!(faults("w1").0, ["drop udp/8472"]);
    let out = kports(&["lab", "fault", "w1", "clear", "tcp/10250"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("w1 has no firewall fault on tcp/10250"),
        "{}",
        text(&out.stderr)
    );

    kports_ok(&["lab", "fault", "w1", "clear"]);
    assert_eq!(faults("w1"), (vec![], "-".to_string()));
    connect_from("cp1", kubelet).expect("cleared");
    let nft = exec("w1", &["nft", "list", "ruleset"]);
    assert!(
        !nft.contains("kports_lab_fault"),
        "the fault table is gone after clear:\n{nft}"
    );

    // stop: the listeners disappear; start brings them back.
    assert_eq!(status_listeners("w1"), set(&NODE_LISTENERS));
    kports_ok(&["lab", "fault", "w1", "stop", "kubelet"]);
    assert_eq!(component_state("w1", "kubelet"), "stopped");
    assert_eq!(
        faults("w1"),
        (
            vec!["kubelet stopped".to_string()],
            "kubelet stopped".to_string()
        )
    );
    // A stopped component listens nowhere, in the status as in fact.
    assert_eq!(status_listeners("w1"), listeners("w1"));
    let l = listeners("w1");
    assert!(!l.iter().any(|(_, c)| c == "kubelet"), "{l:?}");
    let e = connect_from("cp1", kubelet).expect_err("stopped");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    kports_ok(&["lab", "fault", "w1", "start", "kubelet"]);
    assert_eq!(component_state("w1", "kubelet"), "running");
    assert_eq!(listeners("w1"), set(&NODE_LISTENERS));

    // bind: the kubelet listens on loopback only; other nodes are refused, the node itself is not.
    kports_ok(&["lab", "fault", "w1", "bind", "kubelet", "127.0.0.1"]);
    let l = listeners("w1");
    assert!(
        l.contains(&("127.0.0.1:10250".to_string(), "kubelet".to_string())),
        "{l:?}"
    );
    assert!(
        !l.contains(&("[::]:10250".to_string(), "kubelet".to_string())),
        "{l:?}"
    );
    let e = connect_from("cp1", kubelet).expect_err("bound to loopback");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    connect_from("w1", "127.0.0.1:10250").expect("the node still reaches its kubelet on loopback");
    assert_eq!(faults("w1").0, ["kubelet bound to 127.0.0.1"]);
    assert_eq!(status_listeners("w1"), listeners("w1"));

    // The bind cleared alone: the kubelet as `up` made it.
    kports_ok(&["lab", "fault", "w1", "clear", "kubelet"]);
    assert_eq!(listeners("w1"), set(&NODE_LISTENERS));
    assert_eq!(faults("w1").0, Vec::<String>::new());

    // down: the node stops answering; up (or clear link) brings it back.
    kports_ok(&["lab", "fault", "w1", "down"]);
    let e = connect_from("cp1", kubelet).expect_err("node down");
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::HostUnreachable
        ),
        "{e}"
    );
    let link = exec_json("w1", &["ip", "-j", "link", "show", "eth0"]);
    assert_ne!(link[0]["operstate"], "UP", "{link}");
    assert_eq!(
        faults("w1"),
        (vec!["link down".to_string()], "link down".to_string())
    );
    kports_ok(&["lab", "fault", "w1", "up"]);
    connect_eventually("cp1", kubelet, 5).expect("node up again");
    kports_ok(&["lab", "fault", "w1", "down"]);
    kports_ok(&["lab", "fault", "w1", "clear", "link"]);
    connect_eventually("cp1", kubelet, 5).expect("node up again after clear link");
    assert_eq!(faults("w1").0, Vec::<String>::new());

    // A loopback-only component bound everywhere: the status says so, and where it listens.
    kports_ok(&["lab", "fault", "cp1", "bind", "kube-scheduler", "0.0.0.0"]);
    assert_eq!(faults("cp1").0, ["kube-scheduler bound to 0.0.0.0"]);
    assert_eq!(status_listeners("cp1"), listeners("cp1"));
    assert!(
        listeners("cp1").contains(&("[::]:10259".to_string(), "kube-scheduler".to_string())),
        "{:?}",
        listeners("cp1")
    );
}

#[test]
fn mistakes_are_usage_errors() {
    let _lab = Lab::up(&["--nodes", "1,1", "--etcd", "stand-in"]);
    let cases: [(&[&str], &str); 5] = [
        (
            &["lab", "fault", "w9", "down"],
            "the lab has no node `w9`; its nodes are cp1, w1",
        ),
        (
            &["lab", "fault", "w1", "stop", "etcd"],
            "etcd does not run on w1",
        ),
        (
            &["lab", "fault", "w1", "drop", "tcp/0"],
            "`0` is not a port number",
        ),
        (
            &["lab", "fault", "w1", "bind", "kubelet", "192.0.2.11"],
            "192.0.2.11 is not an address of w1",
        ),
        (
            &["lab", "exec", "w3", "--", "true"],
            "the lab has no node or pod `w3`",
        ),
    ];
    for (args, why) in cases {
        let out = kports(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(why),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // A failing command inside a node passes its exit code through.
    assert_eq!(
        kports(&["lab", "exec", "w1", "--", "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    // A command that does not exist, and one that cannot run: 127 and 126, as a shell says.
    let out = kports(&["lab", "exec", "w1", "--", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot run `/nonexistent`: no such command"),
        "{}",
        text(&out.stderr)
    );
    let out = kports(&["lab", "exec", "w1", "--", "/etc"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    // `kports` is this kports, whether or not one is on PATH.
    let out = Command::new(KPORTS)
        .args(["lab", "exec", "w1", "--", "kports", "--version"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout).split_whitespace().nth(1),
        Some(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn commands_fail_clearly_without_a_lab_or_without_root() {
    let _turn = lab_turn();
    let out = kports(&["lab", "fault", "w1", "down"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no lab is up: run `kports lab up` first"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        kports_ok(&["lab", "status"]),
        "No lab is up. Start one with `kports lab up`.\n"
    );

    // Without root, `status` reads what it can (it changes nothing); the others refuse and say
    // what they would change.
    let unprivileged = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", KPORTS])
            .args(args)
            .output()
            .expect("setpriv (util-linux) runs")
    };
    let out = unprivileged(&["lab", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "No lab is up. Start one with `kports lab up`.\n"
    );
    // Refused, as every command's errors are: exit 2.
    let out = unprivileged(&["lab", "up"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("kports lab up needs root: it creates network namespaces"),
        "{}",
        text(&out.stderr)
    );
    let out = unprivileged(&["lab", "down"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("kports lab down needs root: it deletes"),
        "{}",
        text(&out.stderr)
    );
}

/// The command lines of README.md's section on the lab, in order: the indented ones and the
/// `$ ` ones of its examples, with their trailing `# comments` cut, each with the output the
/// README shows under it (for the `$ ` ones).
fn readme_walkthrough() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let start = readme
        .find("## Learn on a practice cluster: kports lab")
        .expect("the README has a section on the lab");
    let section = &readme[start..];
    let section = section[3..]
        .find("\n## ")
        .map_or(section, |end| &section[..end + 3]);
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_fence = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let cmd = if in_fence {
            line.strip_prefix("$ ")
        } else {
            line.strip_prefix("    ")
        };
        match cmd {
            Some(c) if c.starts_with("kports ") || c.starts_with("cargo ") => {
                let c = c.split("  #").next().unwrap_or(c).trim();
                out.push((c.to_string(), Vec::new()));
            }
            _ if in_fence => {
                if let Some((_, shown)) = out.last_mut() {
                    shown.push(line.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// Whitespace-separated words of a line, for comparing table headers whatever the widths.
fn words(l: &str) -> Vec<&str> {
    l.split_whitespace().collect()
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let steps = readme_walkthrough();
    let cmds: Vec<&str> = steps.iter().map(|(c, _)| c.as_str()).collect();
    assert!(
        cmds.first().is_some_and(|c| c.starts_with("cargo build"))
            && cmds.contains(&"kports lab up")
            && cmds.contains(&"kports lab exec cp1 -- kports listen")
            && cmds.contains(&"kports lab fault w1 clear"),
        "{cmds:#?}"
    );
    let turn = lab_turn();
    assert!(
        !Path::new(RUN_DIR).exists() && lab_namespaces().is_empty(),
        "a kports lab is already up on this machine; run `kports lab down` before the tests"
    );
    // Down at the end, whatever happens.
    let _lab = Lab { turn: Some(turn) };
    // The section's first line builds kports and puts it on PATH; this build's kports stands
    // for it, and nothing else called kports is on PATH.
    let bin = Path::new(KPORTS)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let path = format!("{bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut ran = 0;
    let mut up = false;
    // `down` would end the walkthrough early: it runs last, as the guard's `kports lab down`.
    for (cmd, shown) in steps
        .iter()
        .filter(|(c, _)| !c.starts_with("cargo ") && c != "kports lab down")
    {
        // Another way to bring the lab up (`--etcd-workers 1`) replaces the lab before it, as
        // a reader trying it would: the walkthrough goes on in the new lab.
        if cmd.starts_with("kports lab up") && std::mem::replace(&mut up, true) {
            kports_ok(&["lab", "down"]);
        }
        let out = Command::new("sh")
            .args(["-c", cmd])
            .env("PATH", &path)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`{cmd}` failed ({}):\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        ran += 1;
        // kports's own tables: every header and row start the README shows is there (pids,
        // counts and MAC addresses differ from run to run; `...` stands for more rows).
        if cmd.contains("-- kports ") {
            let got = text(&out.stdout);
            for want in shown.iter().filter(|l| !l.trim().is_empty() && *l != "...") {
                let w = words(want);
                let found = got.lines().any(|g| {
                    let g = words(g);
                    if w.iter()
                        .all(|x| x.chars().all(|c| c.is_ascii_uppercase() || c == ' '))
                    {
                        g == w
                    } else {
                        g.len() == w.len() && g[..2] == w[..2]
                    }
                });
                assert!(
                    found,
                    "`{cmd}`: the README shows `{want}`, kports printed:\n{got}"
                );
            }
        }
    }
    assert!(ran >= 15, "only {ran} commands ran: {cmds:#?}");
}
