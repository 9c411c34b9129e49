//! Who the firewall is judged from: the one chooser of sources for `kports check`, `kports
//! firewall check` and `kports firewall plan`.
//!
//! A required port is judged from the kind of peer that needs it ([`SourceKind`]). For each kind
//! the addresses come from, in order: what the user gave (`--sources`, `--control-plane`,
//! `--load-balancers`), the peers the census shows (the API server this node connects to, etcd
//! peers, clients of a local API server), and for everyone and the nodes one representative
//! address standing for any other host. The control plane falls back to `--sources` (standing
//! in for it); when nothing shows it, it is not judged, and the chooser says so.
//!
//! The chooser is pure; where each source's packets arrive (`dst`, `iif`) is filled in by the
//! caller from the node's routes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kports_core::catalog::{Peer, Protocol, Role, Roles};
use kports_core::flags::{self, Host};
use kports_core::resolve::Resolved;
use kports_core::{Interface, Proto, SockState, Socket, Warning};

use crate::model::AddrRange;
use crate::required::SourceKind;
use crate::verdicts::SourceAddr;

/// At most this many addresses of each kind are taken from the census.
pub const MAX_PER_KIND: usize = 8;

/// How kports knows a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--sources`: for the control plane, standing in for it.
    Sources,
    /// `--control-plane`.
    ControlPlane,
    /// `--load-balancers`.
    LoadBalancers,
    /// A peer the census shows, and why it is one (`the API server this node connects to`).
    Peer(&'static str),
    /// No source known: an address standing for any other host.
    AnyOtherHost,
}

impl Origin {
    /// Whether the user gave it.
    pub fn is_given(self) -> bool {
        matches!(
            self,
            Origin::Sources | Origin::ControlPlane | Origin::LoadBalancers
        )
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Sources => "--sources",
            Origin::ControlPlane => "--control-plane",
            Origin::LoadBalancers => "--load-balancers",
            Origin::Peer(why) => why,
            Origin::AnyOtherHost => "any other host",
        })
    }
}

/// A source to judge from, the kind of peer it stands for, and how kports knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSource {
    pub kind: SourceKind,
    pub source: SourceAddr,
    pub origin: Origin,
}

/// Addresses of the cluster's other hosts that the census shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    /// Control-plane hosts: where the API server is (the one this node connects to, the
    /// `server:` of the kubeconfig files of the kubelet and kube-proxy).
    pub control_plane: Vec<(IpAddr, &'static str)>,
    /// The other members of this node's etcd cluster: etcd's `--initial-cluster` and its peer
    /// connections. An etcd peer needs etcd's ports here, not the kubelet's.
    pub etcd: Vec<(IpAddr, &'static str)>,
    /// This node's own address (its first global IPv4 one, else IPv6): a control-plane node's
    /// control-plane source when no other is known.
    pub this_node: Option<IpAddr>,
    /// Other nodes: the control plane, and clients of a local API server.
    pub nodes: Vec<(IpAddr, &'static str)>,
}

/// The ports of the resolved entries for `component` whose peers include `peer` (any peer when
/// `None`): the catalog's default and where the running component's flags moved it.
fn ports_of(resolved: &[Resolved], component: &str, peer: Option<Peer>) -> Vec<u16> {
    let mut out = Vec::new();
    for r in resolved {
        let e = &r.entry;
        if e.component != component
            || e.protocol != Protocol::Tcp
            || peer.is_some_and(|p| !e.reached_by.contains(&p))
        {
            continue;
        }
        for p in [e.port, r.port] {
            if p.is_single() && !out.contains(&p.first) {
                out.push(p.first);
            }
        }
    }
    out
}

fn add_peer(v: &mut Vec<(IpAddr, &'static str)>, a: IpAddr, why: &'static str) {
    if v.len() < MAX_PER_KIND && !v.iter().any(|x| x.0 == a) {
        v.push((a, why));
    }
}

/// The members of etcd's `--initial-cluster` (`m1=https://192.0.2.11:2380,m2=...`): their
/// addresses, names left out (kports does not resolve names).
pub fn initial_cluster(cmdline: &str) -> Vec<IpAddr> {
    let Some(v) = flags::value(cmdline, "--initial-cluster") else {
        return Vec::new();
    };
    v.split(',')
        .filter_map(|m| m.split_once('=').map(|(_, url)| url))
        .filter_map(|url| flags::parse_urls("--initial-cluster", url).ok())
        .flatten()
        .filter_map(|(h, _)| match h {
            Host::Ip(ip) => Some(ip),
            Host::Name(_) => None,
        })
        .collect()
}

/// The address of the API server a kubeconfig file names (`server: https://192.0.2.11:6443`);
/// `None` for a name (kports does not resolve names) or a file without one.
pub fn kubeconfig_server(text: &str) -> Option<IpAddr> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))?
        .trim()
        .trim_matches(['"', '\'']);
    match flags::parse_urls("server", line).ok()?.first()? {
        (Host::Ip(ip), _) => Some(*ip),
        (Host::Name(_), _) => None,
    }
}

impl Peers {
    /// Adds where a kubeconfig file says the API server is, unless it is this node or loopback.
    pub fn add_api_server(&mut self, a: IpAddr, why: &'static str, own: &[IpAddr]) {
        let a = a.to_canonical();
        if a.is_loopback() || a.is_unspecified() || own.contains(&a) {
            return;
        }
        add_peer(&mut self.control_plane, a, why);
        add_peer(&mut self.nodes, a, why);
    }
}

/// The node's own addresses.
pub fn own_addresses(interfaces: &[Interface]) -> Vec<IpAddr> {
    interfaces
        .iter()
        .flat_map(|i| i.addresses.iter().map(|a| a.address))
        .collect()
}

/// The peers the census shows: established TCP connections to an API server port (the control
/// plane, or a load balancer in front of it), etcd's `--initial-cluster` and connections to or
/// from etcd's peer port (the other members), and connections into a local API server (nodes
/// and users). Loopback and the node's own addresses are left out.
pub fn peers(resolved: &[Resolved], sockets: &[Socket], interfaces: &[Interface]) -> Peers {
    let apiserver = ports_of(resolved, "kube-apiserver", None);
    let etcd_peer = ports_of(resolved, "etcd", Some(Peer::Etcd));
    let own = own_addresses(interfaces);
    let mut p = Peers {
        this_node: primary_interface(interfaces, false)
            .or_else(|| primary_interface(interfaces, true))
            .map(|(_, a)| a),
        ..Peers::default()
    };
    let add = add_peer;
    let mut etcd_seen = false;
    for s in sockets {
        if s.component == Some("etcd") && !etcd_seen {
            if let Some(proc) = s.processes.first() {
                etcd_seen = true;
                for a in initial_cluster(&proc.cmdline) {
                    let a = a.to_canonical();
                    if !a.is_loopback() && !own.contains(&a) {
                        add(&mut p.etcd, a, "a member in etcd's --initial-cluster");
                    }
                }
            }
        }
    }
    for s in sockets {
        if s.proto != Proto::Tcp || s.state != SockState::Established {
            continue;
        }
        let remote = s.remote_address.to_canonical();
        if remote.is_loopback() || remote.is_unspecified() || own.contains(&remote) {
            continue;
        }
        if apiserver.contains(&s.remote_port) {
            add(
                &mut p.control_plane,
                remote,
                "the API server this node connects to",
            );
        } else if etcd_peer.contains(&s.remote_port) || etcd_peer.contains(&s.local_port) {
            add(
                &mut p.etcd,
                remote,
                "an etcd peer this node is connected to",
            );
        } else if apiserver.contains(&s.local_port) {
            add(&mut p.nodes, remote, "a client of this API server");
        }
    }
    let mut nodes = p.control_plane.clone();
    for (a, why) in std::mem::take(&mut p.nodes)
        .into_iter()
        .chain(p.etcd.clone())
    {
        add(&mut nodes, a, why);
    }
    p.nodes = nodes;
    p
}

/// An address that stands for "any other host": from the documentation range of the family the
/// node has a global address of (IPv4 first).
pub fn representative(interfaces: &[Interface]) -> AddrRange {
    let global = |v6: bool| {
        interfaces.iter().any(|i| {
            i.addresses
                .iter()
                .any(|a| a.address.is_ipv6() == v6 && a.scope == "global")
        })
    };
    if !global(false) && global(true) {
        AddrRange::single(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)))
    } else {
        AddrRange::single(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)))
    }
}

/// The interface and address packets from other hosts most likely arrive on when no route says:
/// the first interface that is up, not loopback, not a tunnel or bridge, with a global address of
/// the family.
pub fn primary_interface(interfaces: &[Interface], v6: bool) -> Option<(String, IpAddr)> {
    let mut candidates: Vec<&Interface> = interfaces
        .iter()
        .filter(|i| i.kind != "loopback" && i.state != "down")
        .collect();
    // Physical and virtual Ethernet first; tunnels and bridges of CNIs last.
    candidates.sort_by_key(|i| {
        (
            matches!(
                i.kind.as_str(),
                "vxlan" | "geneve" | "wireguard" | "bridge" | "ipip" | "dummy"
            ),
            i.index,
        )
    });
    candidates.iter().find_map(|i| {
        i.addresses
            .iter()
            .find(|a| a.address.is_ipv6() == v6 && a.scope == "global")
            .map(|a| (i.name.clone(), a.address))
    })
}

/// The addresses the user gave.
#[derive(Debug, Clone, Copy, Default)]
pub struct Given<'a> {
    /// `--sources`: everyone who uses the cluster, the nodes among them.
    pub sources: &'a [AddrRange],
    /// `--control-plane`.
    pub control_plane: &'a [AddrRange],
    /// `--load-balancers`.
    pub load_balancers: &'a [AddrRange],
}

/// The sources chosen, and how: `notes` for a reader of the firewall's own commands,
/// `warnings` for what is not judged at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chosen {
    pub sources: Vec<KindSource>,
    pub notes: Vec<String>,
    pub warnings: Vec<Warning>,
}

impl Chosen {
    /// The sources of one kind.
    pub fn of(&self, kind: SourceKind) -> impl Iterator<Item = &KindSource> {
        self.sources.iter().filter(move |s| s.kind == kind)
    }

    /// The control plane's addresses that are known (given or seen), not stood in for.
    pub fn control_plane(&self) -> Vec<AddrRange> {
        self.of(SourceKind::ControlPlane)
            .filter(|s| s.origin != Origin::Sources)
            .map(|s| s.source.range)
            .collect()
    }

    /// The ranges of one kind.
    pub fn ranges(&self, kind: SourceKind) -> Vec<AddrRange> {
        self.of(kind).map(|s| s.source.range).collect()
    }
}

/// `192.0.2.11 (the API server this node connects to), ...`
fn describe(peers: &[(IpAddr, &str)]) -> String {
    peers
        .iter()
        .map(|(ip, why)| format!("{ip} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Chooses the sources of every kind (their `dst` and `iif` are for the caller to fill in from
/// routes): everyone from `--sources`, else `representative`; the nodes from `--sources`, else
/// the census's peers, else `representative`; the control plane from `--control-plane`, else
/// the census's peers, else `--sources` standing in for it, else not at all (a warning says so,
/// except on a control-plane node, which is its own control plane); load balancers only from
/// `--load-balancers`.
pub fn choose(peers: &Peers, given: &Given<'_>, representative: AddrRange, roles: Roles) -> Chosen {
    let mut out = Chosen::default();
    let mut add = |kind: SourceKind, range: AddrRange, origin: Origin| {
        out.sources.push(KindSource {
            kind,
            source: SourceAddr::new(range),
            origin,
        })
    };
    let seen = |v: &[(IpAddr, &'static str)]| -> Vec<(AddrRange, Origin)> {
        v.iter()
            .map(|&(a, why)| (AddrRange::single(a), Origin::Peer(why)))
            .collect()
    };
    let from_flag = |v: &[AddrRange], o: Origin| -> Vec<(AddrRange, Origin)> {
        v.iter().map(|&r| (r, o)).collect()
    };
    let any = vec![(representative, Origin::AnyOtherHost)];

    let all = if given.sources.is_empty() {
        any.clone()
    } else {
        from_flag(given.sources, Origin::Sources)
    };
    let nodes = if !given.sources.is_empty() {
        from_flag(given.sources, Origin::Sources)
    } else if !peers.nodes.is_empty() {
        out.notes.push(format!(
            "sources: the peers this node is connected to ({}); pass --sources to judge others",
            describe(&peers.nodes)
        ));
        seen(&peers.nodes)
    } else {
        out.notes.push(format!(
            "sources: no --sources and no peer connections seen; judged from {representative}, standing for any other host"
        ));
        any
    };
    let control_plane = if !given.control_plane.is_empty() {
        from_flag(given.control_plane, Origin::ControlPlane)
    } else if !peers.control_plane.is_empty() {
        out.notes
            .push(format!("control plane: {}", describe(&peers.control_plane)));
        seen(&peers.control_plane)
    } else if let Some(me) = peers
        .this_node
        .filter(|_| roles.contains(Role::ControlPlane))
    {
        out.notes.push(format!(
            "control plane: this node ({me}), which is one; pass --control-plane for the others"
        ));
        vec![(
            AddrRange::single(me),
            Origin::Peer("this node, a control-plane node"),
        )]
    } else {
        out.notes.push(
            "control plane: not known; the sources stand in for it (pass --control-plane)".into(),
        );
        if given.sources.is_empty() && !roles.contains(Role::ControlPlane) {
            out.warnings.push(Warning::new(
                "firewall-sources-unknown",
                "no connection shows the control plane's address: ports only the control plane needs (the kubelet's 10250, etcd) are not judged; pass --sources",
            ));
        }
        from_flag(given.sources, Origin::Sources)
    };
    let etcd = if !peers.etcd.is_empty() {
        out.notes
            .push(format!("etcd peers: {}", describe(&peers.etcd)));
        seen(&peers.etcd)
    } else if !roles.contains(Role::Etcd) && !roles.contains(Role::ControlPlane) {
        Vec::new()
    } else if !given.control_plane.is_empty() {
        out.notes.push(
            "etcd peers: none seen; the control plane stands in for them (stacked etcd)".into(),
        );
        from_flag(given.control_plane, Origin::ControlPlane)
    } else if !given.sources.is_empty() {
        out.notes
            .push("etcd peers: none seen; the sources stand in for them".into());
        from_flag(given.sources, Origin::Sources)
    } else {
        out.notes.push(
            "etcd peers: none in etcd's --initial-cluster or connections (a single member needs none)"
                .into(),
        );
        Vec::new()
    };
    let load_balancers = from_flag(given.load_balancers, Origin::LoadBalancers);
    for (kind, list) in [
        (SourceKind::All, all),
        (SourceKind::Nodes, nodes),
        (SourceKind::ControlPlane, control_plane),
        (SourceKind::EtcdPeers, etcd),
        (SourceKind::LoadBalancers, load_balancers),
    ] {
        for (range, origin) in list {
            add(kind, range, origin);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use kports_core::catalog::Catalog;
    use kports_core::resolve::resolve_all;

    use super::*;
    use crate::findings::tests::{CP, NODE, eth0, worker};
    use crate::model::parse_cidr;

    #[test]
    fn initial_cluster_and_kubeconfig_servers_are_read() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(
            initial_cluster(
                "etcd --name a --initial-cluster a=https://192.0.2.11:2380,b=https://[2001:db8::12]:2380,c=https://etcd-c:2380 --data-dir /x"
            ),
            [ip("192.0.2.11"), ip("2001:db8::12")]
        );
        assert!(initial_cluster("etcd --name a").is_empty());
        assert!(initial_cluster("etcd --initial-cluster=garbage").is_empty());
        assert_eq!(
            kubeconfig_server("clusters:\n- cluster:\n    server: \"https://192.0.2.11:6443\"\n"),
            Some(ip("192.0.2.11"))
        );
        assert_eq!(
            kubeconfig_server("    server: https://cp.example:6443\n"),
            None
        );
        assert_eq!(kubeconfig_server("apiVersion: v1\n"), None);
    }

    #[test]
    fn a_worker_knows_its_control_plane_from_the_api_server_connection() {
        let catalog = Catalog::builtin().unwrap();
        let (resolved, _) = resolve_all(&catalog, &worker(), &[eth0(NODE)]);
        let p = peers(&resolved, &worker(), &[eth0(NODE)]);
        let cp: IpAddr = CP.parse().unwrap();
        assert_eq!(
            p.control_plane,
            [(cp, "the API server this node connects to")]
        );
        assert_eq!(p.nodes, p.control_plane);
        let c = choose(
            &p,
            &Given::default(),
            representative(&[eth0(NODE)]),
            Role::Worker.into(),
        );
        let text: Vec<(SourceKind, String, String)> = c
            .sources
            .iter()
            .map(|k| (k.kind, k.source.range.to_string(), k.origin.to_string()))
            .collect();
        assert_eq!(
            text,
            [
                (
                    SourceKind::All,
                    "203.0.113.1".into(),
                    "any other host".into()
                ),
                (
                    SourceKind::Nodes,
                    CP.into(),
                    "the API server this node connects to".into()
                ),
                (
                    SourceKind::ControlPlane,
                    CP.into(),
                    "the API server this node connects to".into()
                ),
            ]
        );
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn sources_fall_back_to_the_given_ones_then_say_what_is_not_judged() {
        let p = Peers::default();
        let given = [parse_cidr("10.0.0.0/24").unwrap()];
        let flags = Given {
            sources: &given,
            ..Given::default()
        };
        let c = choose(&p, &flags, representative(&[]), Role::Worker.into());
        assert!(c.sources.iter().all(|k| k.origin == Origin::Sources));
        assert_eq!(c.sources.len(), 3);
        assert!(c.warnings.is_empty());
        // The control plane is stood in for, not known.
        assert_eq!(c.control_plane(), []);
        let c = choose(
            &p,
            &Given::default(),
            representative(&[]),
            Role::Worker.into(),
        );
        assert_eq!(
            c.sources.iter().map(|k| k.kind).collect::<Vec<_>>(),
            [SourceKind::All, SourceKind::Nodes]
        );
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].code, "firewall-sources-unknown");
        // A control-plane node is its own control plane: nothing to warn about.
        let c = choose(
            &p,
            &Given::default(),
            representative(&[]),
            Role::ControlPlane.into(),
        );
        assert!(c.warnings.is_empty());
        // It is judged from its own address, not from the sources standing in.
        let me = Peers {
            this_node: Some("10.0.0.5".parse().unwrap()),
            ..Peers::default()
        };
        let c = choose(&me, &flags, representative(&[]), Role::ControlPlane.into());
        let cp: Vec<(String, String)> = c
            .of(SourceKind::ControlPlane)
            .map(|k| (k.source.range.to_string(), k.origin.to_string()))
            .collect();
        assert_eq!(
            cp,
            [(
                "10.0.0.5".to_string(),
                "this node, a control-plane node".to_string()
            )]
        );
        // A worker's own address is never its control plane.
        let c = choose(&me, &flags, representative(&[]), Role::Worker.into());
        assert_eq!(c.control_plane(), []);
    }

    #[test]
    fn given_addresses_win_over_the_census_and_load_balancers_only_come_from_the_flag() {
        let catalog = Catalog::builtin().unwrap();
        let (resolved, _) = resolve_all(&catalog, &worker(), &[eth0(NODE)]);
        let p = peers(&resolved, &worker(), &[eth0(NODE)]);
        let net = [parse_cidr("192.0.2.0/24").unwrap()];
        let cp = [parse_cidr("192.0.2.12").unwrap()];
        let lb = [parse_cidr("198.51.100.7").unwrap()];
        let c = choose(
            &p,
            &Given {
                sources: &net,
                control_plane: &cp,
                load_balancers: &lb,
            },
            representative(&[eth0(NODE)]),
            Role::Worker.into(),
        );
        assert_eq!(c.ranges(SourceKind::All), net);
        assert_eq!(c.ranges(SourceKind::Nodes), net);
        assert_eq!(c.control_plane(), cp);
        assert_eq!(c.ranges(SourceKind::LoadBalancers), lb);
        // Without --control-plane, the API server this node connects to is the control plane.
        let c = choose(
            &p,
            &Given {
                sources: &net,
                ..Given::default()
            },
            representative(&[eth0(NODE)]),
            Role::Worker.into(),
        );
        assert_eq!(c.control_plane(), [parse_cidr(CP).unwrap()]);
        assert_eq!(
            c.notes,
            ["control plane: 192.0.2.11 (the API server this node connects to)"]
        );
    }
}
