//! The node report on replayed nodes: detection, the one source chooser, every view, errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use kports_core::catalog::{Role, Roles};
use kports_core::finding::FindingId;
use kports_core::role::DetectionSource;
use kports_core::settings::Known;
use kports_firewall::model::parse_cidr;
use kports_firewall::plan::PlanBackend;
use kports_firewall::required::SourceKind;
use kports_firewall::sources::Origin;
use kports_node::{Error, NodeReport, Options, Replay, Unseen};

const CP: &str = "192.0.2.11";

fn worker() -> Replay {
    Replay::example_worker()
}

#[test]
fn a_worker_is_detected_and_its_blocked_kubelet_found_from_the_control_plane() {
    let node = NodeReport::build(&worker(), &Options::default()).unwrap();
    assert_eq!(node.hostname, "w1");
    assert_eq!(node.roles.value, Roles::from(Role::Worker));
    assert_eq!(node.roles.source, DetectionSource::Detected);
    let fw = node.firewall.as_ref().unwrap();
    // The one chooser: the API server this node connects to is the control plane, routed on eth0.
    let cp: Vec<_> = fw.sources.of(SourceKind::ControlPlane).collect();
    assert_eq!(cp.len(), 1);
    assert_eq!(cp[0].source.range.to_string(), CP);
    assert_eq!(
        cp[0].origin,
        Origin::Peer("the API server this node connects to")
    );
    assert_eq!(cp[0].source.iif.as_deref(), Some("eth0"));
    let checked = node.check(None, false);
    let ids: Vec<(&str, String)> = checked
        .report
        .findings
        .iter()
        .map(|f| (f.id.as_str(), f.place()))
        .collect();
    assert_eq!(
        ids,
        [("firewall-blocks-required-port", "tcp/10250".to_string())]
    );
    assert_eq!(
        checked.report.findings[0].evidence.firewall[0].source,
        "192.0.2.11 (the API server this node connects to)"
    );
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
}

#[test]
fn firewall_check_and_plan_use_the_same_sources_as_the_check() {
    let net = [parse_cidr("192.0.2.0/24").unwrap()];
    let node = NodeReport::build(
        &worker(),
        &Options {
            sources: net.to_vec(),
            ..Options::default()
        },
    )
    .unwrap();
    let fc = node.firewall_check().unwrap();
    let kubelet: Vec<(&str, &str, Option<bool>)> = fc
        .rows
        .iter()
        .filter(|r| r.port.lo == 10250)
        .map(|r| (r.source_kind.as_str(), r.source.as_str(), r.ok))
        .collect();
    assert_eq!(
        kubelet,
        [
            ("control-plane", CP, Some(false)),
            ("others", "192.0.2.0-192.0.2.10", Some(true)),
            ("others", "192.0.2.12-192.0.2.255", Some(true)),
        ]
    );
    assert!(
        fc.notes
            .iter()
            .any(|n| n == "control plane: 192.0.2.11 (the API server this node connects to)"),
        "{:?}",
        fc.notes
    );
    // The plan opens the kubelet to the control plane the census shows.
    let fp = node.firewall_plan(PlanBackend::Nft, None, false).unwrap();
    assert!(fp.plan.script.contains("192.0.2.11"), "{}", fp.plan.script);
}

#[test]
fn a_plan_without_sources_or_role_is_refused_and_a_check_without_role_judges_nothing() {
    let node = NodeReport::build(&worker(), &Options::default()).unwrap();
    assert!(matches!(
        node.firewall_plan(PlanBackend::Nft, None, false),
        Err(Error::PlanNeedsSources)
    ));
    let empty = Replay {
        hostname: "x".into(),
        ..Replay::default()
    };
    let with_sources = Options {
        sources: vec![parse_cidr("192.0.2.0/24").unwrap()],
        ..Options::default()
    };
    let node = NodeReport::build(&empty, &with_sources).unwrap();
    let e = node
        .firewall_plan(PlanBackend::Nft, None, false)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the node's role is unknown (no Kubernetes component holds a socket here): pass --role"
    );
    // `firewall check` judges nothing, as `check` does, and says why in a warning.
    let fc = node.firewall_check().unwrap();
    assert!(fc.rows.is_empty() && fc.unseen.is_empty());
    let w: Vec<(&str, &str)> = fc
        .warnings
        .iter()
        .map(|w| (w.code, w.message.as_str()))
        .collect();
    assert_eq!(
        w,
        [(
            "role-unknown",
            "no required port is judged: the node's role is unknown (no Kubernetes component holds a socket here): pass --role"
        )]
    );
}

#[test]
fn given_role_and_cni_win_and_a_bad_cni_is_refused() {
    let node = NodeReport::build(
        &worker(),
        &Options {
            roles: Some(Role::ControlPlane.into()),
            cni: Some(vec!["Flannel".into(), "none".into()]),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(node.roles.value, Roles::from(Role::ControlPlane));
    assert_eq!(node.roles.source, DetectionSource::Flag);
    assert_eq!(node.cni.value, ["flannel"]);
    let e = NodeReport::build(
        &worker(),
        &Options {
            cni: Some(vec!["bogus".into()]),
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("--cni bogus: the catalog knows "),
        "{e}"
    );
}

#[test]
fn a_failed_census_is_an_error_or_a_warning_as_asked() {
    let broken = Replay {
        census_error: Some("Permission denied".into()),
        ..worker()
    };
    let e = NodeReport::build(&broken, &Options::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Census(c) if c.is_permission() || c.to_string().contains("Permission denied"))
    );
    let node = NodeReport::build(
        &broken,
        &Options {
            census_required: false,
            roles: Some(Role::Worker.into()),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(node.census_warnings.len(), 1);
    assert_eq!(node.census_warnings[0].code, "census-failed");
    assert!(node.sockets.is_empty());
}

#[test]
fn catalog_files_are_read_through_the_io_and_refused_with_line_and_reason() {
    let path = PathBuf::from("/etc/kports/bad.toml");
    let mut r = worker();
    r.files.insert(
        path.clone(),
        "[[port]]\ncomponent = \"etcd\"\nprotocol = \"tcp\"\nport = 0\n".into(),
    );
    let o = Options {
        catalog: Some(path),
        ..Options::default()
    };
    let e = NodeReport::build(&r, &o).unwrap_err();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    assert_eq!(
        msg,
        "refusing the catalog file: /etc/kports/bad.toml:4:8: port 0 is not valid: use 1-65535"
    );
    let missing = Options {
        catalog: Some("/nonexistent.toml".into()),
        ..Options::default()
    };
    let e = NodeReport::build(&worker(), &missing).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot read the catalog file /nonexistent.toml"
    );
}

#[test]
fn a_report_without_the_firewall_refuses_firewall_views() {
    let node = NodeReport::build(
        &worker(),
        &Options {
            firewall: false,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(matches!(node.firewall_check(), Err(Error::FirewallNotRead)));
    // The check still runs, without firewall findings.
    assert!(node.check(None, false).report.findings.is_empty());
}

/// The prerequisite findings of a check: (id, fix).
fn prereqs(node: &NodeReport, pre_install: bool) -> Vec<(FindingId, String)> {
    node.check(None, pre_install)
        .report
        .findings
        .into_iter()
        .filter(|f| f.id.is_prereq())
        .map(|f| (f.id, f.fix))
        .collect()
}

#[test]
fn the_check_judges_the_replayed_settings_of_the_node() {
    // The example worker is set up right: no prerequisite finding.
    let node = NodeReport::build(&worker(), &Options::default()).unwrap();
    assert_eq!(prereqs(&node, false), []);
    // The settings the report holds are the captured ones, with the route to the API server
    // the census shows (from the replayed routes).
    let s = node.settings.as_ref().unwrap();
    assert_eq!(s.paths.len(), 1);
    assert_eq!(s.paths[0].peer.to_string(), CP);
    assert_eq!(s.paths[0].why, "the API server this node connects to");
    assert_eq!(s.paths[0].dev, Known::Known("eth0".to_string()));

    let mut w = worker();
    w.settings.as_mut().unwrap().ip_forward = Known::Known(0);
    let node = NodeReport::build(&w, &Options::default()).unwrap();
    assert_eq!(
        prereqs(&node, false),
        [(
            FindingId::IpForwardOff,
            "sysctl -w net.ipv4.ip_forward=1 (to keep it: `net.ipv4.ip_forward = 1` in /etc/sysctl.d/k8s.conf)".to_string()
        )]
    );
    let checked = node.check(None, false);
    let f = checked
        .report
        .findings
        .iter()
        .find(|f| f.id == FindingId::IpForwardOff)
        .unwrap();
    assert_eq!(
        (f.protocol, f.port, f.place()),
        (None, None, "-".to_string())
    );
    assert_eq!(f.evidence.settings[0].source, "net.ipv4.ip_forward");
    assert_eq!(f.evidence.settings[0].value, "0");

    // No route back to the API server: the path finding names it.
    let mut w = worker();
    w.routes.clear();
    let node = NodeReport::build(&w, &Options::default()).unwrap();
    let checked = node.check(None, false);
    let f: Vec<_> = checked
        .report
        .findings
        .iter()
        .filter(|f| f.id.is_prereq())
        .collect();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].id, FindingId::PathNoRoute);
    assert_eq!(
        f[0].message,
        "no route to 192.0.2.11, the API server this node connects to: Network is unreachable"
    );
}

#[test]
fn settings_not_captured_are_unknown_and_not_read_when_not_asked_for() {
    let mut w = worker();
    w.settings = None;
    let node = NodeReport::build(&w, &Options::default()).unwrap();
    let found = prereqs(&node, false);
    assert!(!found.is_empty());
    assert!(
        found.iter().all(|(id, _)| *id == FindingId::SettingUnknown),
        "{found:?}"
    );
    let node = NodeReport::build(
        &w,
        &Options {
            prerequisites: false,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(node.settings.is_none());
    assert_eq!(prereqs(&node, false), []);
}

/// The example worker as an etcd member too, told where its API server is by the kubelet's
/// kubeconfig only (no connection to it), with two other etcd members in `--initial-cluster`:
/// the control plane (192.0.2.11) and another worker (192.0.2.22).
fn worker_and_etcd() -> Replay {
    let mut r = worker();
    r.sockets
        .retain(|s| s.state != kports_core::SockState::Established);
    let mut etcd = r.sockets[0].clone();
    etcd.local_address = "192.0.2.21".parse().unwrap();
    etcd.local_port = 2380;
    etcd.inode = 77;
    etcd.component = Some("etcd");
    etcd.processes = std::sync::Arc::new(vec![std::sync::Arc::new(kports_core::ProcessRef {
        pid: 700,
        name: "etcd".into(),
        cmdline: "etcd --name w1 --initial-cluster=cp1=https://192.0.2.11:2380,w1=https://192.0.2.21:2380,w2=https://192.0.2.22:2380,w3=https://etcd-3.example:2380".into(),
        container_id: None,
        pod_uid: None,
        secrets: Vec::new(),
    })]);
    let mut client = etcd.clone();
    client.local_port = 2379;
    client.inode = 78;
    r.sockets.push(etcd);
    r.sockets.push(client);
    r.files.insert(
        PathBuf::from("/etc/kubernetes/kubelet.conf"),
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: AAAA\n    server: https://192.0.2.11:6443\n  name: kubernetes\n".into(),
    );
    for a in ["192.0.2.22", "203.0.113.1"] {
        r.routes.insert(
            a.parse().unwrap(),
            ("eth0".into(), Some("192.0.2.21".parse().unwrap())),
        );
    }
    r
}

#[test]
fn etcd_peers_come_from_the_initial_cluster_and_the_control_plane_from_the_kubeconfig() {
    let node = NodeReport::build(&worker_and_etcd(), &Options::default()).unwrap();
    assert_eq!(
        node.roles.value,
        [Role::Worker, Role::Etcd].into_iter().collect::<Roles>()
    );
    let fw = node.firewall.as_ref().unwrap();
    let of = |k: SourceKind| -> Vec<(String, String)> {
        fw.sources
            .of(k)
            .map(|s| (s.source.range.to_string(), s.origin.to_string()))
            .collect()
    };
    assert_eq!(
        of(SourceKind::ControlPlane),
        [(
            CP.to_string(),
            "the API server in the kubelet's kubeconfig".to_string()
        )]
    );
    // The other members, not this node and not a name kports cannot resolve.
    let member = "a member in etcd's --initial-cluster".to_string();
    assert_eq!(
        of(SourceKind::EtcdPeers),
        [
            (CP.to_string(), member.clone()),
            ("192.0.2.22".to_string(), member)
        ]
    );
    // An etcd peer that is a worker needs etcd's peer port here, not the kubelet.
    let fc = node.firewall_check().unwrap();
    let needs = |port: &str| -> Vec<String> {
        let mut v: Vec<String> = fc
            .rows
            .iter()
            .filter(|r| r.port.label() == port && r.expect_open)
            .map(|r| format!("{} {}", r.source_kind.as_str(), r.source))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        needs("tcp/2380"),
        ["etcd-peers 192.0.2.11", "etcd-peers 192.0.2.22"]
    );
    assert_eq!(needs("tcp/10250"), ["control-plane 192.0.2.11"]);
    // The plan opens 2380 to both members without being told, 10250 to the control plane only.
    let net = [parse_cidr("192.0.2.0/24").unwrap()];
    let node = NodeReport::build(
        &worker_and_etcd(),
        &Options {
            sources: net.to_vec(),
            ..Options::default()
        },
    )
    .unwrap();
    let fp = node.firewall_plan(PlanBackend::Nft, None, false).unwrap();
    let script = &fp.plan.script;
    for rule in [
        "ip saddr { 192.0.2.11, 192.0.2.22 } tcp dport 2380 accept",
        "ip saddr 192.0.2.11 tcp dport 10250 accept",
    ] {
        assert!(script.contains(rule), "{rule} in {script}");
    }
    assert!(
        !script.contains("192.0.2.22 tcp dport 10250")
            && !script.contains("192.0.2.22 } tcp dport 10250"),
        "{script}"
    );
}

#[test]
fn a_plan_that_cannot_find_the_control_plane_is_refused_and_a_control_plane_is_its_own() {
    let net = [parse_cidr("192.0.2.0/24").unwrap()];
    let options = |roles: Option<Roles>| Options {
        roles,
        sources: net.to_vec(),
        ..Options::default()
    };
    // The worker without its connection to the API server and without a kubeconfig.
    let mut lost = worker();
    lost.sockets
        .retain(|s| s.state != kports_core::SockState::Established);
    let node = NodeReport::build(&lost, &options(None)).unwrap();
    let e = node
        .firewall_plan(PlanBackend::Nft, None, false)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the plan opens tcp/10250 to the control plane, whose address kports cannot find (no connection to an API server, no readable kubeconfig): pass --control-plane ADDR"
    );
    // --control-plane gives it.
    let node = NodeReport::build(
        &lost,
        &Options {
            control_plane: vec![parse_cidr(CP).unwrap()],
            ..options(None)
        },
    )
    .unwrap();
    let fp = node.firewall_plan(PlanBackend::Nft, None, false).unwrap();
    assert!(
        fp.plan
            .script
            .contains("ip saddr 192.0.2.11 tcp dport 10250 accept"),
        "{}",
        fp.plan.script
    );
    // A control-plane node is its own control-plane source.
    let node = NodeReport::build(&lost, &options(Some(Role::ControlPlane.into()))).unwrap();
    let fp = node.firewall_plan(PlanBackend::Nft, None, false).unwrap();
    assert!(
        fp.plan
            .script
            .contains("ip saddr 192.0.2.21 tcp dport 10250 accept"),
        "{}",
        fp.plan.script
    );
    // The one chooser says so, for `check` and `firewall check` too.
    let notes = &node.firewall.as_ref().unwrap().sources.notes;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("control plane: this node (192.0.2.21), which is one")),
        "{notes:?}"
    );
}

#[test]
fn a_cni_backend_given_by_hand_requires_its_ports_only() {
    let flannel = |cni: &str| -> Result<Vec<String>, Error> {
        let node = NodeReport::build(
            &worker(),
            &Options {
                cni: Some(vec![cni.to_string()]),
                ..Options::default()
            },
        )?;
        Ok(node
            .required()?
            .0
            .iter()
            .filter(|p| p.component == "flannel")
            .map(|p| p.label())
            .collect())
    };
    assert_eq!(
        flannel("flannel:wireguard").unwrap(),
        ["udp/51820", "udp/51821"]
    );
    assert_eq!(flannel("Flannel:VXLAN").unwrap(), ["udp/8472"]);
    // No device shows the backend on the example worker: every backend's ports.
    assert_eq!(
        flannel("flannel").unwrap(),
        ["udp/8472", "udp/8285", "udp/51820", "udp/51821"]
    );
    assert_eq!(
        flannel("flannel:ipsec").unwrap_err().to_string(),
        "--cni flannel:ipsec: the catalog knows flannel's backends host-gw, udp, vxlan, wireguard"
    );
    assert_eq!(flannel("flannel:host-gw").unwrap(), Vec::<String>::new());
}

/// The example worker running flanneld (pid 700, connected to the API server, with `args`), and
/// `files` readable.
fn flannel_worker(args: &str, files: &[(&str, &str)]) -> Replay {
    let mut r = worker();
    let mut s = r.sockets[4].clone();
    s.local_port = 40001;
    s.inode += 1;
    s.component = Some("flannel");
    s.processes = std::sync::Arc::new(vec![std::sync::Arc::new(kports_core::ProcessRef {
        pid: 700,
        name: "flanneld".into(),
        cmdline: format!("/opt/bin/flanneld --ip-masq --kube-subnet-mgr {args}"),
        secrets: Vec::new(),
        container_id: None,
        pod_uid: None,
    })]);
    r.sockets.push(s);
    for (path, text) in files {
        r.files.insert(PathBuf::from(path), text.to_string());
    }
    r
}

fn flannel_ports(node: &NodeReport) -> Vec<String> {
    node.required()
        .unwrap()
        .0
        .iter()
        .filter(|p| p.component == "flannel")
        .map(|p| p.label())
        .collect()
}

#[test]
fn flannels_net_conf_decides_its_backend_and_port() {
    const WG: &str = r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}"#;
    // Inside flanneld's container, where the DaemonSet mounts it.
    let r = flannel_worker("", &[("/proc/700/root/etc/kube-flannel/net-conf.json", WG)]);
    let node = NodeReport::build(&r, &Options::default()).unwrap();
    assert_eq!(node.cni.value, ["flannel"]);
    assert_eq!(flannel_ports(&node), ["udp/51820", "udp/51821"]);
    let wg = node
        .resolved
        .iter()
        .find(|x| x.entry.component == "flannel" && x.port.first == 51820)
        .unwrap();
    assert_eq!(
        wg.in_use.as_deref(),
        Some("/etc/kube-flannel/net-conf.json of flanneld (pid 700): Backend.Type wireguard")
    );
    // --net-config-path, on the host; its VXLAN port moves 8472.
    let r = flannel_worker(
        "--net-config-path=/etc/flannel/net.json",
        &[(
            "/etc/flannel/net.json",
            r#"{"Backend": {"Type": "vxlan", "Port": 4789}}"#,
        )],
    );
    let node = NodeReport::build(&r, &Options::default()).unwrap();
    assert_eq!(flannel_ports(&node), ["udp/4789"]);
    // --cni wins over the file.
    let r = flannel_worker("", &[("/proc/700/root/etc/kube-flannel/net-conf.json", WG)]);
    let given = Options {
        cni: Some(vec!["flannel:udp".into()]),
        ..Options::default()
    };
    let node = NodeReport::build(&r, &given).unwrap();
    assert_eq!(flannel_ports(&node), ["udp/8285"]);
}

#[test]
fn a_bad_or_unknown_net_conf_is_a_warning_and_the_devices_decide() {
    let warnings = |node: &NodeReport| -> Vec<String> {
        node.check(None, false)
            .warnings
            .iter()
            .filter(|w| w.code.starts_with("cni-"))
            .map(|w| format!("{}: {}", w.code, w.message))
            .collect()
    };
    let r = flannel_worker("", &[("/etc/kube-flannel/net-conf.json", "{oops")]);
    let node = NodeReport::build(&r, &Options::default()).unwrap();
    assert_eq!(
        flannel_ports(&node),
        ["udp/8472", "udp/8285", "udp/51820", "udp/51821"]
    );
    let w = warnings(&node);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("cni-config-unreadable: /etc/kube-flannel/net-conf.json: not JSON"),
        "{w:?}"
    );
    let r = flannel_worker(
        "",
        &[(
            "/etc/kube-flannel/net-conf.json",
            r#"{"Backend": {"Type": "ipsec"}}"#,
        )],
    );
    let node = NodeReport::build(&r, &Options::default()).unwrap();
    assert_eq!(
        warnings(&node),
        [
            "cni-backend-unknown: /etc/kube-flannel/net-conf.json: Backend.Type ipsec: the catalog knows flannel's backends host-gw, udp, vxlan, wireguard, not ipsec: that backend's ports are not judged"
        ]
    );
}

/// The example worker as an unprivileged user sees it: no socket's holder readable, and the
/// firewall's listing denied.
fn worker_without_privilege() -> Replay {
    let mut w = worker();
    for s in &mut w.sockets {
        s.processes = kports_core::no_processes();
        s.owner = kports_core::Owner::Unknown;
        s.component = None;
    }
    w.census_warnings = vec![kports_core::Warning::new(
        "owners-incomplete",
        "5 sockets show owner \"unknown\": kports cannot read the open files of 2 processes",
    )];
    w.firewall.saves[0].1 = Err("iptables-nft-save: permission denied".into());
    w
}

#[test]
fn a_node_kports_cannot_see_is_an_incomplete_check_not_a_clean_one() {
    let node = NodeReport::build(&worker_without_privilege(), &Options::default()).unwrap();
    assert!(node.roles.value.is_empty());
    let checked = node.check(None, false);
    assert_eq!(
        checked.unseen,
        [
            Unseen::Owners {
                sockets: 5,
                listeners: 4
            },
            Unseen::Rulesets {
                sources: vec!["iptables-nft-save".into()],
                privileged: false
            }
        ]
    );
    let codes: Vec<&str> = checked.warnings.iter().map(|w| w.code).collect();
    // The census's warning names the processes; the check does not say it again.
    assert_eq!(codes, ["owners-incomplete", "role-unknown", "incomplete"]);
    assert_eq!(
        checked.warnings[2].message,
        "incomplete: kports could not see who holds 4 listening sockets (run as root, or grant \
         CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH); the rules iptables-nft-save lists (run as root, \
         or grant CAP_NET_ADMIN); what it would find there is unknown, not absent"
    );
    // firewall check judges nothing without a role, and blames the privilege, not the role.
    let fc = node.firewall_check().unwrap();
    assert!(fc.rows.is_empty());
    let codes: Vec<&str> = fc.warnings.iter().map(|w| w.code).collect();
    assert_eq!(codes.last(), Some(&"incomplete"), "{codes:?}");
    let role = fc
        .warnings
        .iter()
        .find(|w| w.code == "role-unknown")
        .unwrap();
    assert!(
        role.message
            .contains("could not see who holds 4 listening sockets"),
        "{}",
        role.message
    );

    // Given the role, the verdicts are unknown (the ruleset), and say so without a verdict of
    // their own; the holders no longer matter to the firewall.
    let o = Options {
        roles: Some(Role::Worker.into()),
        ..Options::default()
    };
    let node = NodeReport::build(&worker_without_privilege(), &o).unwrap();
    let fc = node.firewall_check().unwrap();
    assert_eq!(
        fc.unseen,
        [Unseen::Rulesets {
            sources: vec!["iptables-nft-save".into()],
            privileged: false
        }]
    );
    assert_eq!(fc.summary.undecided, fc.summary.rows);
    let reasons: Vec<String> = fc
        .rows
        .iter()
        .flat_map(|r| r.segments.iter().map(|s| s.judgement.summary()))
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| r == "unknown: no ruleset could be read (iptables-nft-save: see the warnings)"),
        "{reasons:?}"
    );
    assert_eq!(fc.warnings.last().map(|w| w.code), Some("incomplete"));

    // Everything readable: nothing unseen, no `incomplete` warning.
    let node = NodeReport::build(&worker(), &Options::default()).unwrap();
    assert!(node.unseen().is_empty());
    assert!(
        node.check(None, false)
            .warnings
            .iter()
            .all(|w| w.code != "incomplete")
    );
}

#[test]
fn a_ruleset_unread_though_kports_held_the_privilege_is_not_blamed_on_privilege() {
    let mut w = worker();
    w.firewall.saves[0].1 = Err(
        "iptables-nft-save did not finish within 60 s and was stopped; set \
         KPORTS_LISTING_TIMEOUT_SECS=SECONDS to allow more"
            .into(),
    );
    w.firewall.net_admin = Some(true);
    let o = Options {
        roles: Some(Role::Worker.into()),
        ..Options::default()
    };
    let node = NodeReport::build(&w, &o).unwrap();
    let checked = node.check(None, false);
    assert_eq!(
        checked.unseen,
        [Unseen::Rulesets {
            sources: vec!["iptables-nft-save".into()],
            privileged: true
        }]
    );
    let incomplete = checked
        .warnings
        .iter()
        .find(|w| w.code == "incomplete")
        .unwrap();
    assert_eq!(
        incomplete.message,
        "incomplete: kports could not see the rules iptables-nft-save lists (their warnings say \
         why); what it would find there is unknown, not absent"
    );
    let unread = node
        .firewall
        .as_ref()
        .unwrap()
        .warnings
        .iter()
        .find(|w| w.code == "firewall-unread")
        .unwrap();
    assert!(
        unread.message.contains("KPORTS_LISTING_TIMEOUT_SECS"),
        "{}",
        unread.message
    );

    // Without the privilege (or not knowing), privilege is what would help.
    w.firewall.net_admin = Some(false);
    let node = NodeReport::build(&w, &o).unwrap();
    assert_eq!(
        node.unseen()[0].remedy(),
        "run as root, or grant CAP_NET_ADMIN"
    );
}
