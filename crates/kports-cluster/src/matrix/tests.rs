//! The join and its causes on fixtures: one cluster of cp1, w1, w2, broken one way per test.

use std::time::Duration;

use kports_probe::{Errno, Status};

use super::*;
use crate::report::{Iface, Listener, PortDoc, RouteDoc, Verdict, VerdictDoc};

const CP1: &str = "192.0.2.11";
const W1: &str = "192.0.2.21";
const W2: &str = "192.0.2.22";
const RULE: &str = "nft inet filter input #3 (handle 3): tcp dport 10250 drop";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn any() -> Listener {
    Listener {
        address: ip("::"),
        process: Some("kubelet".into()),
    }
}

fn accept(from: &str) -> VerdictDoc {
    VerdictDoc {
        from: from.into(),
        source_kind: None,
        verdict: Verdict::Accept,
        with: None,
        rule: None,
    }
}

fn port(port: u16, component: &str, listeners: Vec<Listener>, from: &[&str]) -> PortDoc {
    PortDoc {
        proto: Transport::Tcp,
        port,
        component: component.into(),
        listeners,
        firewall: from.iter().map(|f| accept(f)).collect(),
    }
}

fn row(source: &str, target: &str, addr: &str, port: u16, status: Status) -> Row {
    Row {
        source: source.into(),
        target: target.into(),
        target_address: ip(addr),
        proto: Transport::Tcp,
        port,
        status,
        errno: match status {
            Status::Refused => Some(Errno(libc::ECONNREFUSED)),
            Status::Unreachable => Some(Errno(libc::EHOSTUNREACH)),
            _ => None,
        },
        latency_ms: Duration::from_millis(1),
        component: Some(
            if port == 6443 {
                "kube-apiserver"
            } else {
                "kubelet"
            }
            .into(),
        ),
    }
}

fn doc(name: &str, addr: &str, roles: Vec<Role>, ports: Vec<PortDoc>, probes: Vec<Row>) -> NodeDoc {
    let routes = probes
        .iter()
        .map(|r| RouteDoc {
            to: r.target_address,
            dev: Some("eth0".into()),
            src: Some(ip(addr)),
        })
        .collect();
    NodeDoc {
        name: name.into(),
        hostname: name.into(),
        roles,
        cni: vec![],
        interfaces: vec![Iface {
            name: "eth0".into(),
            state: "up".into(),
            addresses: vec![format!("{addr}/24")],
        }],
        ports,
        findings: vec![],
        firewall_read: true,
        probes: Some(probes),
        routes,
    }
}

/// cp1 probes both kubelets; each worker probes the API server. `w2_kubelet` is what cp1's
/// probe of w2:10250 saw.
fn cluster(w2_kubelet: Status) -> Vec<NodeInput> {
    let cp1 = doc(
        "cp1",
        CP1,
        vec![Role::ControlPlane],
        vec![
            port(6443, "kube-apiserver", vec![any()], &[W1, W2]),
            port(10250, "kubelet", vec![any()], &[]),
        ],
        vec![
            row("cp1", "w1", W1, 10250, Status::Open),
            row("cp1", "w2", W2, 10250, w2_kubelet),
        ],
    );
    let w = |name: &str, a: &str| {
        doc(
            name,
            a,
            vec![Role::Worker],
            vec![port(10250, "kubelet", vec![any()], &[CP1])],
            vec![row(name, "cp1", CP1, 6443, Status::Open)],
        )
    };
    [
        ("cp1", CP1, cp1),
        ("w1", W1, w("w1", W1)),
        ("w2", W2, w("w2", W2)),
    ]
    .into_iter()
    .map(|(n, a, d)| NodeInput {
        name: n.into(),
        addresses: vec![ip(a)],
        roles: vec![],
        report: Ok(d),
    })
    .collect()
}

fn w2_kubelet(nodes: &mut [NodeInput]) -> &mut PortDoc {
    &mut nodes[2].report.as_mut().unwrap().ports[0]
}

/// The only failing cell's cause.
fn only_cause(m: &Matrix) -> String {
    let failing: Vec<&Cell> = m.cells.iter().filter(|c| c.failed()).collect();
    assert_eq!(failing.len(), 1, "{failing:#?}");
    failing[0].cause.clone().unwrap()
}

#[test]
fn a_clean_cluster_has_no_failing_cell_and_every_node_is_ok() {
    let m = join(&cluster(Status::Open));
    assert_eq!(m.cells.len(), 4);
    assert!(m.clean());
    assert!(m.cells.iter().all(|c| c.cause.is_none()));
    assert!(m.nodes.iter().all(|n| n.state == NodeState::Ok));
    assert_eq!(m.ports(), [(Transport::Tcp, 6443), (Transport::Tcp, 10250)]);
}

#[test]
fn a_drop_on_the_far_side_names_the_listener_and_the_rule() {
    let mut nodes = cluster(Status::Filtered);
    w2_kubelet(&mut nodes).firewall = vec![VerdictDoc {
        from: CP1.into(),
        source_kind: None,
        verdict: Verdict::Drop,
        with: None,
        rule: Some(RULE.into()),
    }];
    let m = join(&nodes);
    assert_eq!(
        only_cause(&m),
        format!(
            "kubelet on w2 listens on *:10250; w2's firewall drops tcp/10250 from {CP1} ({RULE})"
        )
    );
    let cell = m.cells.iter().find(|c| c.failed()).unwrap();
    assert_eq!(
        cell.evidence.firewall.as_ref().unwrap().verdict,
        Verdict::Drop
    );
    assert_eq!(
        cell.evidence.route.as_ref().unwrap().dev.as_deref(),
        Some("eth0")
    );
    let states: Vec<NodeState> = m.nodes.iter().map(|n| n.state).collect();
    assert_eq!(
        states,
        [NodeState::Failing, NodeState::Ok, NodeState::Failing]
    );
    assert!(!m.clean());
}

#[test]
fn a_reject_names_how_it_answers() {
    let mut nodes = cluster(Status::Refused);
    w2_kubelet(&mut nodes).firewall = vec![VerdictDoc {
        from: CP1.into(),
        source_kind: None,
        verdict: Verdict::Reject,
        with: Some("tcp reset".into()),
        rule: Some("nft inet f input #1: tcp dport 10250 reject with tcp reset".into()),
    }];
    assert_eq!(
        only_cause(&join(&nodes)),
        format!(
            "kubelet on w2 listens on *:10250; w2's firewall rejects tcp/10250 from {CP1} with tcp reset (nft inet f input #1: tcp dport 10250 reject with tcp reset)"
        )
    );
}

#[test]
fn nothing_listening_and_a_loopback_bind_are_told_apart() {
    let mut nodes = cluster(Status::Refused);
    w2_kubelet(&mut nodes).listeners.clear();
    assert_eq!(
        only_cause(&join(&nodes)),
        "nothing listens on tcp/10250 on w2: kubelet is not running there"
    );
    w2_kubelet(&mut nodes).listeners = vec![Listener {
        address: ip("127.0.0.1"),
        process: Some("kubelet".into()),
    }];
    assert_eq!(
        only_cause(&join(&nodes)),
        "kubelet on w2 listens on 127.0.0.1:10250 only: bound to loopback, no other node reaches it"
    );
}

#[test]
fn filtered_while_the_far_side_accepts_is_something_between() {
    let m = join(&cluster(Status::Filtered));
    assert_eq!(
        only_cause(&m),
        "cp1 sees filtered but w2's own firewall accepts and kubelet on w2 listens on *:10250: something between the nodes drops it (a security group or router ACL)"
    );
}

#[test]
fn no_route_on_the_near_side_comes_first() {
    let mut nodes = cluster(Status::Unreachable);
    let cp1 = nodes[0].report.as_mut().unwrap();
    cp1.routes[1].dev = None;
    cp1.routes[1].src = None;
    assert_eq!(
        only_cause(&join(&nodes)),
        format!("cp1 has no route to {W2}")
    );
}

#[test]
fn a_port_the_far_side_does_not_serve_names_its_roles() {
    let mut nodes = cluster(Status::Open);
    // The inventory calls w1 a control-plane node, so w2 probes its API server.
    let w2 = nodes[2].report.as_mut().unwrap();
    w2.probes
        .as_mut()
        .unwrap()
        .push(row("w2", "w1", W1, 6443, Status::Refused));
    assert_eq!(
        only_cause(&join(&nodes)),
        "w1 does not serve tcp/6443 (kube-apiserver): its own report says it is worker"
    );
}

#[test]
fn a_node_that_never_answers_is_shown_as_such() {
    let mut nodes = cluster(Status::Filtered);
    nodes[2].report = Err("ssh did not finish within 30 s and was stopped".into());
    let m = join(&nodes);
    let c = only_cause(&m);
    assert_eq!(
        c,
        "w2 is down or cut off: no peer reaches it on any port, and it sent no report (ssh did not finish within 30 s and was stopped)"
    );
    let w2 = &m.nodes[2];
    assert_eq!(w2.state, NodeState::CutOff);
    assert_eq!(
        (w2.probes_received, w2.failed_received, w2.probes_sent),
        (1, 1, 0)
    );
    // w2's own probes are not there to fail: w1 stays ok.
    assert_eq!(m.nodes[1].state, NodeState::Ok);
}

#[test]
fn a_missing_report_with_a_reachable_node_says_its_side_is_unknown() {
    let mut nodes = cluster(Status::Open);
    nodes[2].report = Err("kports: command not found".into());
    let m = join(&nodes);
    assert_eq!(m.failing(), 0);
    assert_eq!(m.nodes[2].state, NodeState::NoReport);
    assert!(!m.clean());
}

#[test]
fn a_downed_link_on_the_far_side_is_named() {
    let mut nodes = cluster(Status::Unreachable);
    nodes[2].report.as_mut().unwrap().interfaces[0].state = "down".into();
    assert_eq!(
        only_cause(&join(&nodes)),
        format!("w2's eth0 (down), which holds {W2}, is down: w2 answers no peer there")
    );
}

#[test]
fn a_node_whose_link_is_down_is_cut_off_not_failing_port_by_port() {
    let mut nodes = cluster(Status::Filtered);
    let w2 = nodes[2].report.as_mut().unwrap();
    w2.interfaces[0].state = "lowerlayerdown".into();
    w2.probes.as_mut().unwrap()[0].status = Status::Unreachable;
    w2.probes.as_mut().unwrap()[0].errno = Some(Errno(libc::EHOSTUNREACH));
    // A UDP probe of it that nothing answers says nothing either way.
    let mut udp = row("w1", "w2", W2, 8472, Status::OpenFiltered);
    udp.proto = Transport::Udp;
    nodes[1]
        .report
        .as_mut()
        .unwrap()
        .probes
        .as_mut()
        .unwrap()
        .push(udp);
    let m = join(&nodes);
    let causes: Vec<&str> = m
        .cells
        .iter()
        .filter(|c| c.failed())
        .map(|c| c.cause.as_deref().unwrap())
        .collect();
    assert_eq!(
        causes,
        [
            "w2's route to 192.0.2.11 leaves by eth0 (lowerlayerdown), which is down",
            "w2's eth0 (lowerlayerdown), which holds 192.0.2.22, is down: w2 answers no peer there",
        ]
    );
    assert_eq!(m.nodes[2].state, NodeState::CutOff);
}

#[test]
fn refusals_are_a_sign_of_life_not_a_cut_off_node() {
    // cp1's API server bound to loopback (refused) and both kubelets down (refused): every
    // probe from and to cp1 fails, but every one was answered by a running host.
    let mut nodes = cluster(Status::Refused);
    nodes[0].report.as_mut().unwrap().probes.as_mut().unwrap()[0].status = Status::Refused;
    for w in &mut nodes[1..] {
        w.report.as_mut().unwrap().probes.as_mut().unwrap()[0].status = Status::Refused;
    }
    let m = join(&nodes);
    assert_eq!(m.failing(), 4);
    assert!(
        m.nodes.iter().all(|n| n.state == NodeState::Failing),
        "{:?}",
        m.nodes
    );
    assert!(
        m.cells
            .iter()
            .all(|c| !c.cause.as_deref().unwrap().contains("cut off"))
    );
}

#[test]
fn icmp_rejects_on_both_sides_are_the_firewalls_not_a_cut_off_node() {
    // w2's kubelet rejected with host-unreachable, and cp1's API server with no-route for w2:
    // every probe from and to w2 is unreachable, but both firewalls say why.
    let mut nodes = cluster(Status::Unreachable);
    let reject = |from: &str, with: &str| VerdictDoc {
        from: from.into(),
        source_kind: None,
        verdict: Verdict::Reject,
        with: Some(with.into()),
        rule: None,
    };
    w2_kubelet(&mut nodes).firewall = vec![reject(CP1, "icmpx host-unreachable")];
    let cp1 = nodes[0].report.as_mut().unwrap();
    cp1.ports[0].firewall[1] = reject(W2, "icmpx no-route");
    let w2 = nodes[2].report.as_mut().unwrap();
    w2.probes.as_mut().unwrap()[0].status = Status::Unreachable;
    w2.probes.as_mut().unwrap()[0].errno = Some(Errno(libc::ENETUNREACH));
    let m = join(&nodes);
    let kinds: Vec<Option<crate::cause::Kind>> = m
        .cells
        .iter()
        .filter(|c| c.failed())
        .map(|c| c.cause_kind)
        .collect();
    assert_eq!(kinds, [Some(crate::cause::Kind::Firewall); 2]);
    assert_eq!(m.nodes[2].state, NodeState::Failing);
}
