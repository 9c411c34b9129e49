//! `kports probe` against real firewall rules, side by side with nmap (root).
//!
//! Two network namespaces made by the test, joined by a veth pair, with addresses in
//! 192.0.2.0/25 and 2001:db8::/64 inside them only: the prober in one, and in the other a TCP
//! listener, a kports UDP responder, and one nft rule per kind of block. Every port must get its
//! status and errno, and every TCP status must be what `nmap -sT -Pn` says of the same port, in
//! the same run. A node that goes away in the middle of a run gets only statuses one of its
//! states gives. Nothing outside the two namespaces is ever probed.

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output};

use kports_probe::responder::Responder;
use serde_json::Value;

use crate::support::{KPORTS, kports, ns_turn};

/// The two namespaces; deleted on drop, also when an assertion fails (while the test still
/// holds its turn).
struct Pair {
    client: String,
    server: String,
    _turn: std::sync::RwLockReadGuard<'static, ()>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pair {
    fn new() -> Pair {
        let turn = ns_turn();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let p = Pair {
            client: format!("kp11c-{id}"),
            server: format!("kp11s-{id}"),
            _turn: turn,
        };
        ip(&["netns", "add", &p.client]);
        ip(&["netns", "add", &p.server]);
        let (c, s) = (p.client.as_str(), p.server.as_str());
        ip(&[
            "-n", c, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", s,
        ]);
        for (ns, dev, v4, v6) in [
            (c, "va", "192.0.2.1/25", "2001:db8::1/64"),
            (s, "vb", "192.0.2.2/25", "2001:db8::2/64"),
        ] {
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // The targets' kernel answers with ICMP errors at most once a second per destination
        // after a burst of 6; nmap runs right after kports, so without this some of its probes
        // of a `reject` would get no answer and read `filtered`. Per namespace.
        for knob in ["ipv4/icmp_ratelimit", "ipv6/icmp/ratelimit"] {
            let path = format!("/proc/sys/net/{knob}");
            let out = p.exec(s, &["sh", "-c", &format!("echo 0 > {path}")]);
            assert!(
                out.status.success(),
                "{path}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        p
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .unwrap()
    }

    fn netns_path(ns: &str) -> PathBuf {
        PathBuf::from(format!("/run/netns/{ns}"))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.server])
            .status();
    }
}

/// The server's rules: one per kind of block, by destination port.
const RULES: &str = "table inet kp11 {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 1001 drop
    tcp dport 1002 reject
    tcp dport 1003 reject with tcp reset
    tcp dport 1004 reject with icmpx type admin-prohibited
    tcp dport 1005 reject with icmpx type host-unreachable
    tcp dport 1006 reject with icmpx type no-route
    udp dport 2002 drop
    udp dport 2004 reject
    udp dport 2005 reject with icmpx type host-unreachable
  }
}
";

/// (port, status, errno over IPv4, errno over IPv6). 1007 and 2001: nothing listens; 1008: a
/// listener; 2003: a kports responder.
const TCP: [(u16, &str, Option<&str>, Option<&str>); 8] = [
    (1001, "filtered", None, None),
    (1002, "refused", Some("ECONNREFUSED"), Some("ECONNREFUSED")),
    (1003, "refused", Some("ECONNREFUSED"), Some("ECONNREFUSED")),
    (1004, "unreachable", Some("EHOSTUNREACH"), Some("EACCES")),
    (
        1005,
        "unreachable",
        Some("EHOSTUNREACH"),
        Some("EHOSTUNREACH"),
    ),
    (
        1006,
        "unreachable",
        Some("ENETUNREACH"),
        Some("ENETUNREACH"),
    ),
    (1007, "refused", Some("ECONNREFUSED"), Some("ECONNREFUSED")),
    (1008, "open", None, None),
];
const UDP: [(u16, &str, Option<&str>, Option<&str>); 5] = [
    (2001, "closed", Some("ECONNREFUSED"), Some("ECONNREFUSED")),
    (2002, "open|filtered", None, None),
    (2003, "open", None, None),
    (2004, "closed", Some("ECONNREFUSED"), Some("ECONNREFUSED")),
    (
        2005,
        "unreachable",
        Some("EHOSTUNREACH"),
        Some("EHOSTUNREACH"),
    ),
];

/// `Host: ADDR ()\tPorts: 1001/filtered/tcp//..., ...` to port -> state; ports nmap folds into
/// `Ignored State: closed (N)` get that state.
fn parse_nmap(grepable: &str, ports: &[u16]) -> BTreeMap<u16, String> {
    let mut out = BTreeMap::new();
    let line = grepable
        .lines()
        .find(|l| l.starts_with("Host:") && l.contains("Ports:"))
        .unwrap_or_else(|| panic!("no Ports line in nmap's output:\n{grepable}"));
    let mut ignored = None;
    for field in line.split('\t') {
        if let Some(list) = field.strip_prefix("Ports: ") {
            for entry in list.split(", ") {
                let mut it = entry.trim().split('/');
                let port: u16 = it.next().unwrap().parse().unwrap();
                let state = it.next().unwrap().to_string();
                out.insert(port, state);
            }
        } else if let Some(rest) = field.strip_prefix("Ignored State: ") {
            ignored = rest.split_whitespace().next().map(str::to_string);
        }
    }
    for p in ports {
        if !out.contains_key(p) {
            let state = ignored
                .clone()
                .unwrap_or_else(|| panic!("nmap did not report port {p}:\n{grepable}"));
            out.insert(*p, state);
        }
    }
    out
}

fn rows(stdout: &[u8]) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)));
    assert_eq!(doc["kind"], "probe");
    doc["items"].as_array().unwrap().clone()
}

#[test]
fn every_kind_of_block_gets_its_status_and_tcp_agrees_with_nmap() {
    let pair = Pair::new();
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &pair.server, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        nft.stdin
            .take()
            .unwrap()
            .write_all(RULES.as_bytes())
            .unwrap();
    }
    assert!(nft.wait().unwrap().success(), "nft -f failed");
    // The listener and the responder are bound inside the server namespace (from a thread that
    // entered it) and serve from here; dual-stack sockets answer both families.
    let (listener, udp) = kports_linux::netns::run_in(&Pair::netns_path(&pair.server), || {
        (
            TcpListener::bind("[::]:1008").unwrap(),
            UdpSocket::bind("[::]:2003").unwrap(),
        )
    })
    .unwrap();
    let responder = Responder::spawn(udp).unwrap();

    let tcp_ports = TCP.map(|t| t.0.to_string()).join(",");
    let udp_ports = UDP.map(|t| format!("udp/{}", t.0)).join(",");
    let ports = format!("{tcp_ports},{udp_ports}");
    // Over a second: an ICMPv6 answer may come only to the SYN resent after 1 s.
    let out = pair.exec(
        &pair.client,
        &[
            KPORTS,
            "probe",
            "192.0.2.2",
            "2001:db8::2",
            "--ports",
            &ports,
            "--timeout",
            "3s",
            "-o",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "some ports are blocked: exit 1; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&out.stdout);
    assert_eq!(rows.len(), 2 * (TCP.len() + UDP.len()));
    let mut seen = 0;
    for (addr, v6) in [("192.0.2.2", false), ("2001:db8::2", true)] {
        for (proto, table) in [("tcp", &TCP[..]), ("udp", &UDP[..])] {
            for (port, status, e4, e6) in table {
                let r = rows
                    .iter()
                    .find(|r| {
                        r["target_address"] == *addr && r["proto"] == proto && r["port"] == *port
                    })
                    .unwrap_or_else(|| panic!("no row for {addr} {proto}/{port}"));
                let errno = if v6 { e6 } else { e4 };
                assert_eq!(r["status"], *status, "{addr} {proto}/{port}: {r}");
                assert_eq!(
                    r["errno"],
                    errno.map_or(Value::Null, Value::from),
                    "{addr} {proto}/{port}: {r}"
                );
                seen += 1;
            }
        }
    }
    assert_eq!(seen, rows.len());

    // nmap on the same targets, port for port.
    let tcp: Vec<u16> = TCP.map(|t| t.0).to_vec();
    for (addr, family) in [("192.0.2.2", None), ("2001:db8::2", Some("-6"))] {
        // nmap waits as long as kports does: the ICMPv6 answer to a connect()'s first SYN can be
        // lost (it arrives while connect() still holds the socket), and only the SYN the kernel
        // resends after 1 s gets its answer. With nmap's own short timeouts on this fast link,
        // each of its attempts would give up before that and read a plain reject as filtered.
        let mut args = vec![
            "nmap",
            "-sT",
            "-Pn",
            "-n",
            "--initial-rtt-timeout",
            "2s",
            "--min-rtt-timeout",
            "2s",
            "--max-rtt-timeout",
            "3s",
            "--max-retries",
            "1",
            "-p",
            &tcp_ports,
            "-oG",
            "-",
        ];
        args.extend(family);
        args.push(addr);
        let out = pair.exec(&pair.client, &args);
        assert!(
            out.status.success(),
            "nmap: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nmap = parse_nmap(&String::from_utf8_lossy(&out.stdout), &tcp);
        for port in &tcp {
            let r = rows
                .iter()
                .find(|r| r["target_address"] == addr && r["proto"] == "tcp" && r["port"] == *port)
                .unwrap();
            let ours = match r["status"].as_str().unwrap() {
                "open" => "open",
                "refused" => "closed",
                "filtered" | "unreachable" => "filtered",
                other => panic!("unexpected TCP status {other}"),
            };
            assert_eq!(
                ours, nmap[port],
                "{addr} tcp/{port}: kports {r}, nmap {}",
                nmap[port]
            );
        }
    }
    drop(responder);
    drop(listener);
}

#[test]
fn no_route_and_the_own_firewall_are_unreachable_and_nothing_is_sent() {
    let pair = Pair::new();
    // Outside the namespaces' /25 and /64, and no default route: the kernel refuses at once.
    let out = pair.exec(
        &pair.client,
        &[
            KPORTS,
            "probe",
            "192.0.2.200",
            "2001:db8:1::1",
            "--ports",
            "1008,udp/2003",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let no_route = rows(&out.stdout);
    assert_eq!(no_route.len(), 4);
    for r in &no_route {
        assert_eq!(r["status"], "unreachable", "{r}");
        assert_eq!(r["errno"], "ENETUNREACH", "{r}");
    }
    // The prober's own output chain drops: a UDP send fails with EPERM at once; a TCP connect
    // does not see the error (the kernel keeps resending the SYN) and times out.
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &pair.client, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        nft.stdin
            .take()
            .unwrap()
            .write_all(
                b"table inet kp11out { chain output { type filter hook output priority 0; meta l4proto { tcp, udp } th dport 1009 drop\n }\n }\n",
            )
            .unwrap();
    }
    assert!(nft.wait().unwrap().success(), "nft -f failed");
    let out = pair.exec(
        &pair.client,
        &[
            KPORTS,
            "probe",
            "192.0.2.2",
            "2001:db8::2",
            "--ports",
            "1009,udp/1009",
            "--timeout",
            "1s",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let own = rows(&out.stdout);
    let got: Vec<String> = own
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["target_address"], r["proto"], r["status"], r["errno"]
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "\"192.0.2.2\" \"tcp\" \"filtered\" null",
            "\"192.0.2.2\" \"udp\" \"unreachable\" \"EPERM\"",
            "\"2001:db8::2\" \"tcp\" \"filtered\" null",
            "\"2001:db8::2\" \"udp\" \"unreachable\" \"EPERM\"",
        ]
    );
}

#[test]
fn a_clean_path_exits_zero_and_names_the_inventory_node() {
    let pair = Pair::new();
    let listener = kports_linux::netns::run_in(&Pair::netns_path(&pair.server), || {
        TcpListener::bind("[::]:6443").unwrap()
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("kp11-inv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("hosts.yaml");
    std::fs::write(
        &inv,
        "nodes:\n  - name: cp1\n    address: 192.0.2.2\n    address6: 2001:db8::2\n    roles: [control-plane]\n",
    )
    .unwrap();
    let out = pair.exec(
        &pair.client,
        &[
            KPORTS,
            "probe",
            "cp1",
            "--inventory",
            inv.to_str().unwrap(),
            "--ports",
            "6443",
            "-o",
            "json",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&out.stdout);
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {}/{} {} {}",
                r["target"],
                r["target_address"],
                r["proto"],
                r["port"],
                r["status"],
                r["component"]
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "\"cp1\" \"192.0.2.2\" \"tcp\"/6443 \"open\" \"kube-apiserver\"",
            "\"cp1\" \"2001:db8::2\" \"tcp\"/6443 \"open\" \"kube-apiserver\"",
        ]
    );
    drop(listener);
}

#[test]
fn loopback_rows_have_exactly_the_fixed_fields() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    // A port just freed: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let ports = format!("{port},{closed_port}");
    let out = kports(&["probe", "127.0.0.1", "--ports", &ports, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    // Piped: no progress bar, no other noise.
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let rows = rows(&out.stdout);
    let keys: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.as_object().unwrap().keys().map(String::as_str).collect())
        .collect();
    let mut want = vec![
        "source",
        "target",
        "target_address",
        "proto",
        "port",
        "status",
        "errno",
        "latency_ms",
        "component",
    ];
    want.sort_unstable();
    for mut k in keys {
        k.sort_unstable();
        assert_eq!(k, want);
    }
    assert_eq!(rows[0]["status"], "open");
    assert_eq!(rows[0]["errno"], Value::Null);
    assert_eq!(rows[1]["status"], "refused");
    assert_eq!(rows[1]["errno"], "ECONNREFUSED");
    assert!(rows[0]["latency_ms"].is_f64());

    let only_open = port.to_string();
    let out = kports(&["probe", "127.0.0.1", "--ports", &only_open]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("TARGET"), "{table}");
    assert!(table.ends_with("1 probes: 1 open\n"), "{table}");
    drop(open);
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("kp11-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("hosts.yaml");
    std::fs::write(&inv, "nodes:\n  - name: a\n    address: a.example\n").unwrap();
    let inv = inv.to_str().unwrap().to_string();
    let cases: [(&[&str], &str); 8] = [
        (
            &["probe", "127.0.0.1", "--roles", "worker", "--cni", "flanel"],
            "`flanel` is not a CNI kports knows",
        ),
        (
            &["probe", "127.0.0.0/8", "--ports", "1"],
            "a CIDR may hold at most 4096",
        ),
        (&["probe", "127.0.0.1"], "no ports to probe on 127.0.0.1"),
        (&["probe", "127.0.0.1", "--ports", "0"], "(1-65535)"),
        (
            &["probe", "127.0.0.1", "--ports", "1", "--timeout", "forever"],
            "not a duration",
        ),
        (
            &["probe", "--inventory", &inv],
            "hosts.yaml:3: `a.example` is not an IP address",
        ),
        (
            &["probe", "--inventory", "/nonexistent/hosts.yaml"],
            "No such file",
        ),
        (&["probe", "224.0.0.1", "--ports", "1"], "multicast"),
    ];
    for (args, want) in cases {
        let out = kports(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A node that stops answering in the middle of a probe run (its link goes down): the run
/// finishes, every port gets a status that one state of the node gives (the listener `open`,
/// the others `refused` while the node answers; `filtered` or `unreachable` once it does not),
/// and the exit status says something was not reachable. Bounded: 400 probes of at most 200 ms,
/// 8 at a time (about 5 s).
#[test]
fn a_node_that_stops_answering_mid_probe_gets_only_statuses_it_gave() {
    let pair = Pair::new();
    let listener = kports_linux::netns::run_in(&Pair::netns_path(&pair.server), || {
        TcpListener::bind("0.0.0.0:3000").unwrap()
    })
    .unwrap();
    // Even ports dropped (each probe waits its timeout), odd ones refused at once: the run
    // lasts seconds, and refused ports are still being probed when the node goes away.
    let even: Vec<String> = (3002..3400).step_by(2).map(|p| p.to_string()).collect();
    let rule = format!(
        "add table inet kpgone; add chain inet kpgone input {{ type filter hook input priority 0; policy accept; }}; add rule inet kpgone input tcp dport {{ {} }} drop",
        even.join(", ")
    );
    let out = pair.exec(&pair.server, &["nft", &rule]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = std::thread::scope(|s| {
        let probe = s.spawn(|| {
            pair.exec(
                &pair.client,
                &[
                    KPORTS,
                    "probe",
                    "192.0.2.2",
                    "--ports",
                    "tcp/3000-3399",
                    "--timeout",
                    "200ms",
                    "--concurrency",
                    "8",
                    "-o",
                    "json",
                ],
            )
        });
        // Some time into the run the node goes away (no timing is asserted: where this lands
        // changes only how many ports see which state).
        std::thread::sleep(std::time::Duration::from_millis(300));
        ip(&["-n", &pair.server, "link", "set", "vb", "down"]);
        let out = probe.join().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        rows(&out.stdout)
    });
    assert_eq!(rows.len(), 400);
    for r in &rows {
        let (port, status) = (r["port"].as_u64().unwrap(), r["status"].as_str().unwrap());
        let answered = match port {
            3000 => "open",
            p if p % 2 == 0 => "filtered",
            _ => "refused",
        };
        assert!(
            [answered, "filtered", "unreachable"].contains(&status),
            "{r:#}"
        );
    }
    drop(listener);
}
