//! System tests: as root, in network namespaces made here, kports's census is compared with
//! `ss` and `ip` on the same namespace. Traffic stays on loopback and on addresses that exist only
//! inside these namespaces.

use serde_json::Value;

use crate::support::{KPORTS, Ns, SsLine, kp_endpoint, parse_ss};

/// The namespace of a small control-plane node: etcd (with a forked helper sharing its
/// sockets), an API server with clients to etcd, a controller manager under its full 23-byte
/// name, a UDP listener, and a kubelet with a secret on its command line.
fn control_plane() -> (Ns, Pids) {
    let mut ns = Ns::new();
    node_address(&ns);
    let (etcd, etcd_child) = ns.spawn(
        "etcd",
        &[
            "--listen",
            "tcp:127.0.0.1:2379",
            "--listen",
            "tcp:192.0.2.10:2379",
            "--listen",
            "tcp:192.0.2.10:2380",
            "--listen",
            "tcp:127.0.0.1:2381",
            "--fork",
            "--name=cp1",
        ],
    );
    let (apiserver, _) = ns.spawn(
        "kube-apiserver",
        &[
            "--listen",
            "tcp:[::]:6443",
            "--connect",
            "127.0.0.1:2379:12",
            "--connect",
            "192.0.2.10:2380:1",
            "--etcd-servers=https://127.0.0.1:2379",
        ],
    );
    let (kcm, _) = ns.spawn(
        "kube-controller-manager",
        &[
            "--listen",
            "tcp:127.0.0.1:10257",
            "--bind-address=127.0.0.1",
        ],
    );
    let (kubelet, _) = ns.spawn(
        "kubelet",
        &[
            "--listen",
            "tcp:0.0.0.0:10250",
            "--listen",
            "tcp:127.0.0.1:10248",
            "--listen",
            "udp:0.0.0.0:30053",
            "--token=s3cr3t-value",
            "--basic-auth=user:s3cr3t-two",
            "--password",
            "s3cr3t-three",
            "https://bob:s3cr3t-four@127.0.0.1:6443/",
            "Authorization: Bearer s3cr3t-five",
            "--use-service-account-credentials=true",
        ],
    );
    (
        ns,
        Pids {
            etcd,
            etcd_child: etcd_child.unwrap(),
            apiserver,
            kcm,
            kubelet,
        },
    )
}

/// `eth0` with the node's addresses: one end of a veth pair whose other end stays in the
/// namespace too, so nothing leaves it.
fn node_address(ns: &Ns) {
    ns.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0-peer",
    ]);
    ns.ip(&["addr", "add", "192.0.2.10/24", "dev", "eth0"]);
    ns.ip(&["addr", "add", "2001:db8::10/64", "dev", "eth0", "nodad"]);
    ns.ip(&["link", "set", "eth0-peer", "up"]);
    ns.ip(&["link", "set", "eth0", "up"]);
}

struct Pids {
    etcd: u32,
    etcd_child: u32,
    apiserver: u32,
    kcm: u32,
    kubelet: u32,
}

/// kports's sockets in the notation of `parse_ss`.
fn as_ss(items: &Value) -> Vec<SsLine> {
    let mut v: Vec<SsLine> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let state = match s["state"].as_str().unwrap() {
                "listen" => "LISTEN",
                "unconn" => "UNCONN",
                "established" => "ESTAB",
                other => panic!("unexpected state {other}"),
            };
            let mut pids: Vec<u32> = s["processes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["pid"].as_u64().unwrap() as u32)
                .collect();
            pids.sort_unstable();
            SsLine {
                netid: s["proto"].as_str().unwrap().into(),
                state: state.into(),
                local: kp_endpoint(&s["local_address"], &s["local_port"]),
                peer: if state == "ESTAB" {
                    kp_endpoint(&s["remote_address"], &s["remote_port"])
                } else {
                    String::new()
                },
                pids,
            }
        })
        .collect();
    v.sort();
    v
}

/// `ss ARGS` in the namespace; `netid` names the protocol when only one is asked for.
fn ss(ns: &Ns, netid: &str, args: &[&str]) -> Vec<SsLine> {
    let out = ns.exec("ss", args);
    assert!(out.status.success());
    let mut v = parse_ss(&String::from_utf8_lossy(&out.stdout), netid);
    for l in &mut v {
        if l.state != "ESTAB" {
            l.peer.clear();
        }
    }
    v.sort();
    v
}

#[test]
fn listen_sees_every_listener_ss_sees_with_the_same_owners() {
    let (ns, p) = control_plane();
    let doc = ns.kports_json(&["listen", "--all-owners"]);
    assert_eq!(doc["schema"], kports_core::SCHEMA_VERSION);
    assert_eq!(doc["kind"], "listen");
    let ours = as_ss(&doc["items"]);
    let theirs = ss(&ns, "", &["-tulnpH"]);
    assert_eq!(ours, theirs);
    // The forked child shares etcd's listeners, and both are named.
    let l2379 = ours.iter().find(|l| l.local == "127.0.0.1:2379").unwrap();
    assert_eq!(l2379.pids, {
        let mut v = vec![p.etcd, p.etcd_child];
        v.sort_unstable();
        v
    });
    // The default (early-stopping) scan finds the same owners here: the child is found through
    // its parent.
    assert_eq!(as_ss(&ns.kports_json(&["listen"])["items"]), theirs);
}

#[test]
fn listen_names_processes_in_full_and_recognises_components() {
    let (ns, p) = control_plane();
    let doc = ns.kports_json(&["listen", "--port", "10257"]);
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{doc}");
    let s = &items[0];
    assert_eq!(s["component"], "kube-controller-manager");
    assert_eq!(s["processes"][0]["pid"], p.kcm);
    assert_eq!(s["processes"][0]["name"], "kube-controller-manager");
    // `ss` shows the kernel's 15-byte comm.
    let ss =
        String::from_utf8_lossy(&ns.exec("ss", &["-tlnpH", "sport = :10257"]).stdout).into_owned();
    assert!(ss.contains("\"kube-controller\""), "{ss}");

    let table = ns.kports(&["listen", "--component", "kubelet"]);
    assert!(table.contains("kubelet"), "{table}");
    assert_eq!(
        table.lines().count(),
        4,
        "header + 10250 + 10248 + udp 30053:\n{table}"
    );
    let by_pid = ns.kports_json(&["listen", "--process", &p.apiserver.to_string()]);
    assert_eq!(by_pid["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_pid["items"][0]["local_port"], 6443);
}

#[test]
fn filters_are_checked_against_what_they_filter() {
    let (ns, p) = control_plane();
    // The kernel's 15-byte comm, as `ss` shows it, and the alias `explain` takes.
    let by_comm = ns.kports_json(&["listen", "--process", "kube-controller"]);
    assert_eq!(
        by_comm["items"][0]["processes"][0]["pid"], p.kcm,
        "{by_comm}"
    );
    let by_alias = ns.kports_json(&["listen", "--component", "apiserver"]);
    assert_eq!(by_alias["items"][0]["local_port"], 6443, "{by_alias}");
    assert_eq!(by_alias["items"].as_array().unwrap().len(), 1);
    let conns = ns.kports_json(&["conns", "--process", "kube-controller"]);
    assert_eq!(conns["items"][0]["pids"][0], p.kcm, "{conns}");
    // Values that can never match: exit 2, the valid ones listed, nothing on stdout.
    for (args, says) in [
        (&["listen", "--component", "nosuch"][..], "one of: "),
        (&["listen", "--component", "proxy"], "could be any of"),
        (
            &["listen", "--process", "nosuch"],
            "the processes that do: ",
        ),
        (&["conns", "--process", "nosuch"], "the processes that do: "),
        (&["listen", "--port", "0"], "(1-65535)"),
        (&["conns", "--port", "65536"], "(1-65535)"),
        (&["node", "--kind", "nonsense"], "one of: bond, bridge"),
        (
            &["firewall", "check", "--role", "worker", "--iif", "nosuchif"],
            "its interfaces: ",
        ),
    ] {
        let out = ns.exec(KPORTS, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let err = String::from_utf8_lossy(&ns.exec(KPORTS, &["listen", "--process", "nosuch"]).stderr)
        .into_owned();
    assert!(err.contains("kube-controller-manager"), "{err}");
    // A valid filter that matches nothing: exit 0, an empty list, and a note saying so.
    for args in [
        &["listen", "--component", "etcd", "--port", "6443"][..],
        &["node", "--kind", "Bridge"],
        &["conns", "--port", "9"],
    ] {
        let out = ns.exec(KPORTS, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            err.contains("nothing on this node matches --"),
            "{args:?}: {err}"
        );
    }
    let doc = ns.kports_json(&["listen", "--component", "etcd", "--port", "6443"]);
    assert_eq!(doc["warnings"][0]["code"], "no-match", "{doc}");
}

#[test]
fn families_order_headers_and_watch() {
    let (ns, p) = control_plane();
    let families = |args: &[&str]| -> Vec<String> {
        ns.kports_json(args)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["family"].as_str().unwrap().to_string())
            .collect()
    };
    let v4 = families(&["listen", "-4"]);
    let v6 = families(&["listen", "-6"]);
    assert!(!v4.is_empty() && v4.iter().all(|f| f == "ipv4"), "{v4:?}");
    assert_eq!(v6, ["ipv6"], "the API server's [::]:6443 only");
    assert_eq!(v4.len() + v6.len(), families(&["listen"]).len());
    // --sort pid: the lowest pid's sockets first.
    let by_pid = ns.kports_json(&["listen", "--sort", "pid", "--proto", "tcp"]);
    let pids: Vec<u64> = by_pid["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["processes"][0]["pid"].as_u64().unwrap())
        .collect();
    // (By port, the default, the kubelet's 10250 comes before the controller manager's
    // 10257 though it started later.)
    assert!(pids.windows(2).all(|w| w[0] <= w[1]), "{pids:?}");
    assert!(p.kcm < p.kubelet);
    // --no-headers: the rows alone.
    let table = ns.kports(&["listen", "--no-headers", "--port", "10257"]);
    assert_eq!(table.lines().count(), 1, "{table}");
    assert!(table.contains("kube-controller-manager"), "{table}");
    // --watch piped: one JSON document per interval, until stopped (here after the second).
    let mut child = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns.name, KPORTS, "conns", "-o", "json", "--watch", "0.1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let docs: Vec<Value> = serde_json::Deserializer::from_reader(stdout)
        .into_iter::<Value>()
        .take(2)
        .map(Result::unwrap)
        .collect();
    // SAFETY: signals the child this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert_eq!(docs.len(), 2);
    assert!(
        docs.iter()
            .all(|d| d["kind"] == "conns" && d["items"].is_array())
    );
}

#[test]
fn secrets_on_command_lines_are_redacted() {
    let (ns, p) = control_plane();
    for args in [
        &["listen", "-o", "wide"][..],
        &["listen", "-o", "json"],
        &["conns", "-o", "json"],
        &["conns", "-o", "wide"],
        &["check", "--role", "control-plane"],
        &["check", "--role", "control-plane", "-o", "json"],
        &["explain", "10250"],
        &["explain", "10250", "-o", "json"],
    ] {
        let out = ns.exec(KPORTS, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.stdout.is_empty(),
            "kports {args:?} printed nothing: {text}"
        );
        assert!(
            !text.contains("s3cr3t"),
            "secret leaked by kports {args:?}:\n{text}"
        );
    }
    let doc = ns.kports_json(&["listen", "--process", &p.kubelet.to_string()]);
    let cmdline = doc["items"][0]["processes"][0]["cmdline"].as_str().unwrap();
    assert!(
        cmdline.ends_with(
            "--token=REDACTED --basic-auth=REDACTED --password REDACTED \
             https://bob:REDACTED@127.0.0.1:6443/ Authorization: Bearer REDACTED \
             --use-service-account-credentials=true"
        ),
        "{cmdline}"
    );
    // `check` warns that the kubelet's command line holds secrets, naming only the flags.
    let out = ns.exec(KPORTS, &["check", "--role", "control-plane", "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let finding = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "secret-on-command-line")
        .unwrap_or_else(|| panic!("no secret-on-command-line finding: {doc}"));
    assert_eq!(finding["severity"], "warning");
    let values: Vec<&str> = finding["evidence"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        values,
        [
            "--token=REDACTED",
            "--basic-auth=REDACTED",
            "--password REDACTED",
            "https://bob:REDACTED@127.0.0.1:6443/",
            "Authorization: Bearer REDACTED"
        ]
    );
    assert_eq!(finding["command"], format!("ps -o args= -p {}", p.kubelet));
}

#[test]
fn proc_fallback_agrees_with_netlink() {
    let (ns, _) = control_plane();
    for args in [&["listen", "--all-owners"][..], &["listen", "--all-states"]] {
        let mut a = args.to_vec();
        let netlink = as_ss(&ns.kports_json(&a)["items"]);
        a.extend(["--source", "proc"]);
        let proc = as_ss(&ns.kports_json(&a)["items"]);
        assert_eq!(netlink, proc, "{args:?}");
        assert!(netlink.len() >= 9, "{netlink:?}");
    }
}

#[test]
fn all_states_matches_ss_including_established_owners() {
    let (ns, _) = control_plane();
    let ours = as_ss(&ns.kports_json(&["listen", "--all-states", "--proto", "tcp"])["items"]);
    let theirs = ss(&ns, "tcp", &["-tanpH"]);
    assert_eq!(ours, theirs);
    assert!(ours.iter().filter(|l| l.state == "ESTAB").count() >= 26);
}

#[test]
fn conns_counts_per_listener_and_add_up_to_ss() {
    let (ns, p) = control_plane();
    let doc = ns.kports_json(&["conns"]);
    assert_eq!(doc["kind"], "conns");
    let rows = doc["items"].as_array().unwrap();
    let find = |dir: &str, addr: &str, port: u64| -> &Value {
        rows.iter()
            .find(|r| {
                r["direction"] == dir
                    && r[if dir == "in" {
                        "local_address"
                    } else {
                        "remote_address"
                    }] == addr
                    && r[if dir == "in" {
                        "local_port"
                    } else {
                        "remote_port"
                    }] == port
            })
            .unwrap_or_else(|| panic!("no {dir} row for {addr}:{port} in {doc}"))
    };
    let c2379 = find("in", "127.0.0.1", 2379);
    assert_eq!(c2379["established"], 12);
    assert_eq!(c2379["process"], "etcd");
    assert_eq!(c2379["component"], "etcd");
    assert_eq!(find("in", "192.0.2.10", 2380)["established"], 1);
    assert_eq!(find("in", "127.0.0.1", 2381)["established"], 0);
    let out = find("out", "127.0.0.1", 2379);
    assert_eq!(
        (out["established"].as_u64(), out["pids"][0].as_u64()),
        (Some(12), Some(u64::from(p.apiserver)))
    );

    let total: u64 = rows
        .iter()
        .map(|r| r["established"].as_u64().unwrap())
        .sum();
    let ss = String::from_utf8_lossy(&ns.exec("ss", &["-tanH", "state", "established"]).stdout)
        .lines()
        .count() as u64;
    assert_eq!(total, ss);

    // One line per etcd port: 2379 (both addresses), 2380, 2381.
    let by_port = ns.kports_json(&["conns", "--process", "etcd", "--by-port", "--inbound"]);
    let counts: Vec<(u64, u64)> = by_port["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["local_port"].as_u64().unwrap(),
                r["established"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [(2379, 12), (2380, 1), (2381, 0)]);
    // 2379's two addresses are named, not shown as a wildcard.
    let r = &by_port["items"][0];
    assert!(r["local_address"].is_null(), "{r}");
    assert_eq!(
        r["local_addresses"],
        serde_json::json!(["127.0.0.1", "192.0.2.10"])
    );
    let table = ns.kports(&["conns", "--process", "etcd", "--by-port", "--inbound"]);
    assert!(table.contains("127.0.0.1,192.0.2.10:2379"), "{table}");
    assert!(!table.contains("*:"), "{table}");
}

#[test]
fn conns_by_peer_breaks_down_by_remote_address() {
    let (mut ns, _) = control_plane();
    ns.spawn("kube-scheduler", &["--connect", "192.0.2.10:2379:3"]);
    let doc = ns.kports_json(&["conns", "--by-peer", "--port", "2379", "--inbound"]);
    let row = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["local_address"] == "192.0.2.10")
        .unwrap()
        .clone();
    assert_eq!(row["established"], 3);
    assert_eq!(
        row["peers"],
        serde_json::json!([{"remote_address": "192.0.2.10", "established": 3}])
    );
}

#[test]
fn node_matches_ip_addr() {
    let ns = Ns::new();
    ns.ip(&["link", "add", "cni0", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.244.0.1/24", "dev", "cni0"]);
    ns.ip(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
    ]);
    ns.ip(&["link", "set", "veth0", "master", "cni0"]);
    ns.ip(&[
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "8472",
        "nolearning",
    ]);
    ns.ip(&["addr", "add", "10.244.0.0/32", "dev", "flannel.1"]);
    node_address(&ns);
    for l in ["cni0", "veth0", "veth1", "flannel.1"] {
        ns.ip(&["link", "set", l, "up"]);
    }
    let doc = ns.kports_json(&["node"]);
    let ip: Value = serde_json::from_str(&ns.ip(&["-j", "-d", "addr"])).unwrap();
    let ours = doc["items"].as_array().unwrap();
    let theirs = ip.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o["name"], t["ifname"]);
        assert_eq!(o["mtu"], t["mtu"]);
        let kind = t["linkinfo"]["info_kind"]
            .as_str()
            .unwrap_or(if t["link_type"] == "loopback" {
                "loopback"
            } else {
                "device"
            });
        assert_eq!(o["kind"], kind, "{}", t["ifname"]);
        assert_eq!(
            o["state"].as_str().unwrap(),
            t["operstate"].as_str().unwrap().to_lowercase()
        );
        assert_eq!(o["master"].as_str(), t["master"].as_str());
        if t["link_type"] != "loopback" {
            assert_eq!(o["mac"], t["address"]);
        }
        // "address/prefix scope" lines, from fields named differently on each side.
        let addrs = |list: &Value, addr: &str, prefix: &str| -> Vec<String> {
            let mut v: Vec<String> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    format!(
                        "{}/{} {}",
                        a[addr].as_str().unwrap(),
                        a[prefix],
                        a["scope"].as_str().unwrap()
                    )
                })
                .collect();
            v.sort();
            v
        };
        let oa = addrs(&o["addresses"], "address", "prefix_len");
        let ta = addrs(&t["addr_info"], "local", "prefixlen");
        assert_eq!(oa, ta, "{}", t["ifname"]);
    }
    let vx = ours.iter().find(|i| i["name"] == "flannel.1").unwrap();
    assert_eq!(vx["tunnel_port"], 8472);
    // `--kind bridge` is `ip addr show type bridge`.
    let bridges = ns.kports_json(&["node", "--kind", "bridge"]);
    let names: Vec<&str> = bridges["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cni0"]);
}

#[test]
fn kernel_vxlan_socket_is_owned_by_the_kernel() {
    let ns = Ns::new();
    ns.ip(&[
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "8472",
        "nolearning",
    ]);
    ns.ip(&["link", "set", "flannel.1", "up"]);
    let doc = ns.kports_json(&["listen", "--proto", "udp"]);
    let items = doc["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for s in items {
        assert_eq!(s["local_port"], 8472);
        assert_eq!(s["owner"], "kernel");
        assert_eq!(s["processes"], serde_json::json!([]));
        assert_eq!(s["component"], "vxlan (kernel)");
    }
    // ss sees the same sockets, with no process.
    assert_eq!(as_ss(&doc["items"]), ss(&ns, "udp", &["-ulnpH"]));
}

#[test]
fn all_netns_finds_sockets_of_other_namespaces() {
    let (ns, p) = control_plane();
    let out = std::process::Command::new(KPORTS)
        .args(["listen", "--all-netns", "--all-owners", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mine: Vec<&Value> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["netns"]["name"] == ns.name.as_str())
        .collect();
    let theirs = ss(&ns, "", &["-tulnpH"]);
    assert_eq!(mine.len(), theirs.len());
    let kcm = mine.iter().find(|s| s["local_port"] == 10257).unwrap();
    assert_eq!(kcm["processes"][0]["pid"], p.kcm);
    // The table names the namespace.
    let table = String::from_utf8_lossy(
        &std::process::Command::new(KPORTS)
            .args(["listen", "--all-netns"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&ns.name) && l.contains("kube-controller-manager")),
        "{table}"
    );
}

#[test]
fn unix_listeners_with_owners() {
    let mut ns = Ns::new();
    let path = ns.dir().join("kubelet.sock");
    let spec = format!("unix:{}", path.display());
    let (pid, _) = ns.spawn("kubelet", &["--listen", &spec]);
    let doc = ns.kports_json(&["listen", "--unix", "--process", "kubelet"]);
    let u = doc["unix"].as_array().unwrap();
    assert_eq!(u.len(), 1, "{doc}");
    assert_eq!(u[0]["path"], path.display().to_string());
    assert_eq!(u[0]["state"], "listen");
    assert_eq!(u[0]["processes"][0]["pid"], pid);
    assert_eq!(u[0]["component"], "kubelet");
}

#[test]
fn unprivileged_run_says_unknown_and_names_the_capability() {
    let (ns, _) = control_plane();
    // setpriv drops to nobody with no capabilities, in the same namespace.
    let out = ns.exec(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            KPORTS,
            "listen",
            "-o",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = doc["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w["code"] == "owners-incomplete"
            && w["message"].as_str().unwrap().contains("CAP_SYS_PTRACE")),
        "{doc}"
    );
    for s in doc["items"].as_array().unwrap() {
        assert_eq!(s["owner"], "unknown", "{s}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CAP_SYS_PTRACE"), "{stderr}");

    // Across namespaces, the ones it cannot see are said to be missing.
    let out = ns.exec(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            KPORTS,
            "listen",
            "--all-netns",
            "-o",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "netns-hidden"),
        "{doc}"
    );
}

#[test]
fn pipe_closed_early_is_quiet() {
    let (mut ns, _) = control_plane();
    // Enough sockets that the table overflows the pipe and kports meets a closed pipe.
    ns.spawn("kube-scheduler", &["--connect", "127.0.0.1:2379:1500"]);
    let script = format!("{KPORTS} listen --all-states | head -1; exit ${{PIPESTATUS[0]}}");
    let out = ns.exec("bash", &["-c", &script]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(
        !stderr.contains("Broken pipe")
            && !stderr.contains("panicked")
            && !stderr.contains("kports:"),
        "{stderr}"
    );
}

#[test]
fn processes_exiting_mid_scan_are_skipped_without_error() {
    let ns = Ns::new();
    // A churn of short-lived processes, each holding a listener for a moment, bounded to 6 s
    // and 3,000 processes; the census runs meanwhile and must never fail or panic.
    let churn = "import os, socket, time\n\
                 end = time.time() + 6\n\
                 n = 0\n\
                 while time.time() < end and n < 3000:\n\
                 \x20   n += 1\n\
                 \x20   pid = os.fork()\n\
                 \x20   if pid == 0:\n\
                 \x20       s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); os._exit(0)\n\
                 \x20   os.waitpid(pid, 0)\n\
                 \x20   time.sleep(0.001)\n";
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", churn])
        .spawn()
        .unwrap();
    let commands = [
        &["listen", "--all-owners"][..],
        &["listen", "--all-states"],
        &["conns"],
        &["listen"],
    ];
    let mut runs = 0;
    // Census after census while the churn lasts (at most 300 runs).
    while runs < 300 && child.try_wait().unwrap().is_none() {
        let args = commands[runs % commands.len()];
        runs += 1;
        let out = ns.exec(KPORTS, &[args, &["-o", "json"][..]].concat());
        assert!(
            out.status.success(),
            "kports {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(doc["items"].is_array());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(runs >= 10, "only {runs} censuses ran during the churn");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn terminal_escapes_in_names_and_command_lines_are_shown_escaped() {
    let mut ns = Ns::new();
    let (pid, _) = ns.spawn(
        "evil\u{1b}[2Jd",
        &[
            "--listen",
            "tcp:127.0.0.1:18443",
            "--title=\u{1b}]0;pwned\u{07}",
            "--note=line\nforged row",
        ],
    );
    for args in [&["listen"][..], &["listen", "-o", "wide"], &["check"]] {
        let out = ns.exec(KPORTS, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{07}'),
            "kports {args:?} printed a raw escape: {text:?}"
        );
        assert!(text.contains("evil\\x1b[2Jd"), "kports {args:?}: {text}");
        assert!(
            !text.lines().any(|l| l.starts_with("forged row")),
            "kports {args:?}: {text}"
        );
    }
    let wide = ns.kports(&["listen", "-o", "wide"]);
    assert!(
        wide.contains("--title=\\x1b]0;pwned\\x07 --note=line\\nforged row"),
        "{wide}"
    );
    // JSON keeps the text as it is, escaped the JSON way.
    let doc = ns.kports_json(&["listen", "--process", &pid.to_string()]);
    assert_eq!(doc["items"][0]["processes"][0]["name"], "evil\u{1b}[2Jd");
}
