//! Which ports a node needs open, and from which kind of source.
//!
//! The firewall code reads required ports through the [`PortCatalog`] trait, which kports-core's
//! port catalog implements: an entry becomes a [`RequiredPort`] when the node's role (and CNI)
//! need it, it is a port on the node's own network (not a pod's, not an add-on's), and traffic
//! comes in to it. Who needs it is the widest of its `reached_by` peers, as a [`SourceKind`].
//! IP protocols (IP-in-IP, GRE, ESP) have no port: they are left out and a note says so.
//! [`from_resolved`] works on the catalog after the running components' flags and tunnel devices
//! ([`kports_core::resolve`], the same resolution `kports check` uses), so a moved port is
//! judged where it really is.

use kports_core::Proto;
use kports_core::catalog::{Catalog, Direction, Entry, Expect, Network, Peer, PortRange, Protocol};
use kports_core::resolve::{self, Resolved};
use serde::Serialize;

/// A node's role (the catalog's).
pub use kports_core::catalog::{Role, Roles, SourceKind};

/// One port (or range) a node needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequiredPort {
    pub proto: Proto,
    pub lo: u16,
    pub hi: u16,
    /// Who needs it.
    pub from: SourceKind,
    /// What serves it: `kube-apiserver`, `etcd`, `calico (vxlan)`, ...
    pub component: String,
}

impl RequiredPort {
    pub fn new(proto: Proto, lo: u16, hi: u16, from: SourceKind, component: &str) -> RequiredPort {
        RequiredPort {
            proto,
            lo,
            hi,
            from,
            component: component.to_string(),
        }
    }

    /// `tcp/6443`, `udp/30000-32767`.
    pub fn label(&self) -> String {
        if self.lo == self.hi {
            format!("{}/{}", self.proto.as_str(), self.lo)
        } else {
            format!("{}/{}-{}", self.proto.as_str(), self.lo, self.hi)
        }
    }

    pub fn proto_number(&self) -> u8 {
        match self.proto {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// The required ports of a node, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Required {
    pub ports: Vec<RequiredPort>,
    /// One line per entry that needs something kports does not judge (an IP protocol) or that
    /// a flag turned off.
    pub notes: Vec<String>,
}

/// A source of required ports: kports-core's port catalog.
pub trait PortCatalog {
    /// Every port a node of `role` needs, with the CNI's ports when `cni` is named, at the
    /// catalog's default ports. Unknown CNI names give no CNI ports; [`PortCatalog::cnis`]
    /// lists the known ones.
    fn required(&self, role: Role, cni: Option<&str>) -> Required;

    /// CNI names this catalog knows.
    fn cnis(&self) -> Vec<&str>;
}

impl PortCatalog for Catalog {
    fn required(&self, role: Role, cni: Option<&str>) -> Required {
        let cnis: Vec<String> = cni.map(str::to_string).into_iter().collect();
        from_resolved(&resolve::defaults(self), role.into(), &cnis)
    }

    fn cnis(&self) -> Vec<&str> {
        Catalog::cnis(self)
    }
}

/// Whether the firewall should let traffic in to `e` on a node with `roles` and `cnis`: one of
/// the roles and the CNI need it, it is on the node's own network, it is not an add-on, nothing should listen
/// there (`expect = "absent"`) or it is only connected out from here, and it is not a range of
/// loopback ports a runtime picks from at random (that range is the catalog's way of explaining
/// such listeners, not a range to close).
pub fn needed(e: &Entry, roles: Roles, cnis: &[String]) -> bool {
    e.applies_to(roles, cnis)
        && e.network == Network::Host
        && !e.addon
        && e.expect != Expect::Absent
        && e.direction != Direction::Out
        && (e.port.is_single() || SourceKind::widest(&e.reached_by) != SourceKind::SelfOnly)
}

/// The required port of entry `e` at `port` (its catalog default, or where flags moved it);
/// `None` for an IP protocol, which has no port.
pub fn required_port(e: &Entry, port: PortRange) -> Option<RequiredPort> {
    let proto = e.protocol.proto()?;
    Some(RequiredPort::new(
        proto,
        port.first,
        port.last,
        SourceKind::widest(&e.reached_by),
        &e.component,
    ))
}

/// Every port a node with `roles` (their union) and `cnis` needs, from the resolved catalog: the running
/// components' flags and the tunnel devices move ports (`--secure-port=7443`, `flannel.1`'s
/// `dstport 4789`) and a port a flag turned off is left out.
pub fn from_resolved(resolved: &[Resolved], roles: Roles, cnis: &[String]) -> Required {
    let mut out = Required::default();
    for r in resolved {
        let e = &r.entry;
        if !needed(e, roles, cnis) || r.not_in_use.is_some() {
            continue;
        }
        if e.protocol == Protocol::Ip {
            out.notes.push(format!(
                "IP protocol {} for {} ({}) is not a port: kports does not judge it; check that {} can send it",
                e.port,
                e.component,
                e.purpose,
                describe_peers(&e.reached_by)
            ));
            continue;
        }
        if r.off {
            let by = r.settings.first().map_or("a flag", |s| s.value.as_str());
            out.notes.push(format!(
                "{} of {} is turned off ({by}): not judged",
                e.label(),
                e.component
            ));
            continue;
        }
        if let Some(p) = required_port(e, r.port)
            && !out.ports.contains(&p)
        {
            out.ports.push(p);
        }
    }
    out
}

fn describe_peers(peers: &[Peer]) -> String {
    let v: Vec<&str> = peers
        .iter()
        .filter(|p| **p != Peer::SelfNode)
        .map(|p| p.describe())
        .collect();
    if v.is_empty() {
        "this node".to_string()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use kports_core::SockState;

    use super::*;
    use crate::findings::tests::{listen, socket};

    fn catalog() -> Catalog {
        Catalog::builtin().unwrap()
    }

    /// (label, from, component) of every required port.
    fn rows(r: &Required) -> Vec<(String, SourceKind, &str)> {
        r.ports
            .iter()
            .map(|p| (p.label(), p.from, p.component.as_str()))
            .collect()
    }

    fn from_of(r: &Required, label: &str) -> Vec<SourceKind> {
        r.ports
            .iter()
            .filter(|p| p.label() == label)
            .map(|p| p.from)
            .collect()
    }

    #[test]
    fn flannel_ports_follow_the_backend_in_use() {
        let c = catalog();
        let dev = |name: &str, kind: &str, port: Option<u16>| kports_core::Interface {
            index: 3,
            name: name.into(),
            kind: kind.into(),
            state: "up".into(),
            mtu: 1450,
            mac: None,
            master: None,
            tunnel_port: port,
            addresses: vec![],
            netns: None,
        };
        let flannel = |ifs: &[kports_core::Interface]| -> Vec<String> {
            let (resolved, _) = kports_core::resolve::resolve_all(&c, &[], ifs);
            from_resolved(&resolved, Role::Worker.into(), &["flannel".to_string()])
                .ports
                .iter()
                .filter(|p| p.component == "flannel")
                .map(RequiredPort::label)
                .collect()
        };
        assert_eq!(
            flannel(&[dev("flannel.1", "vxlan", Some(8472))]),
            ["udp/8472"]
        );
        // The VXLAN device's own port wins over the catalog's.
        assert_eq!(
            flannel(&[dev("flannel.1", "vxlan", Some(4789))]),
            ["udp/4789"]
        );
        assert_eq!(
            flannel(&[
                dev("flannel-wg", "wireguard", None),
                dev("flannel-wg-v6", "wireguard", None)
            ]),
            ["udp/51820", "udp/51821"]
        );
        assert_eq!(flannel(&[dev("flannel0", "tun", None)]), ["udp/8285"]);
        // Nothing shows the backend: every backend's ports, as before.
        assert_eq!(
            flannel(&[]),
            ["udp/8472", "udp/8285", "udp/51820", "udp/51821"]
        );
    }

    #[test]
    fn widest_peer_decides() {
        use Peer::*;
        assert_eq!(
            SourceKind::widest(&[SelfNode, ControlPlane, Nodes, LoadBalancers, Clients]),
            SourceKind::All
        );
        assert_eq!(
            SourceKind::widest(&[SelfNode, ControlPlane]),
            SourceKind::ControlPlane
        );
        assert_eq!(SourceKind::widest(&[Etcd]), SourceKind::EtcdPeers);
        assert_eq!(
            SourceKind::widest(&[Etcd, Apiserver]),
            SourceKind::ControlPlane
        );
        assert_eq!(SourceKind::widest(&[Apiserver]), SourceKind::ControlPlane);
        assert_eq!(
            SourceKind::widest(&[SelfNode, LoadBalancers]),
            SourceKind::LoadBalancers
        );
        assert_eq!(
            SourceKind::widest(&[LoadBalancers, ControlPlane]),
            SourceKind::ControlPlane
        );
        assert_eq!(SourceKind::widest(&[Pods, Nodes]), SourceKind::Nodes);
        assert_eq!(SourceKind::widest(&[SelfNode, Pods]), SourceKind::SelfOnly);
        assert_eq!(SourceKind::widest(&[]), SourceKind::SelfOnly);
    }

    #[test]
    fn control_plane_with_flannel_from_the_catalog() {
        let r = catalog().required(Role::ControlPlane, Some("flannel"));
        assert_eq!(from_of(&r, "tcp/6443"), [SourceKind::All]);
        assert_eq!(from_of(&r, "tcp/2379"), [SourceKind::ControlPlane]);
        assert_eq!(from_of(&r, "tcp/2380"), [SourceKind::EtcdPeers]);
        assert_eq!(from_of(&r, "tcp/10250"), [SourceKind::ControlPlane]);
        assert_eq!(from_of(&r, "tcp/10257"), [SourceKind::SelfOnly]);
        assert_eq!(from_of(&r, "tcp/10259"), [SourceKind::SelfOnly]);
        assert_eq!(from_of(&r, "tcp/30000-32767"), [SourceKind::All]);
        assert_eq!(from_of(&r, "udp/30000-32767"), [SourceKind::All]);
        assert_eq!(from_of(&r, "udp/8472"), [SourceKind::Nodes]);
        assert_eq!(from_of(&r, "tcp/10256"), [SourceKind::LoadBalancers]);
        // Ports nothing should serve, add-ons, pod ports and a runtime's random loopback
        // range are not required.
        for absent in [
            "tcp/10255",
            "tcp/10251",
            "tcp/10252",
            "tcp/80",
            "tcp/443",
            "udp/53",
            "tcp/1024-65535",
        ] {
            assert_eq!(from_of(&r, absent), [], "{absent}");
        }
        // No CNI but flannel.
        assert!(r.ports.iter().all(|p| p.lo != 179 && p.lo != 4240));
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn worker_has_no_control_plane_ports() {
        let r = catalog().required(Role::Worker, None);
        assert_eq!(
            rows(&r),
            [
                ("tcp/10250".to_string(), SourceKind::ControlPlane, "kubelet"),
                ("tcp/10248".to_string(), SourceKind::SelfOnly, "kubelet"),
                (
                    "tcp/10256".to_string(),
                    SourceKind::LoadBalancers,
                    "kube-proxy"
                ),
                ("tcp/10249".to_string(), SourceKind::SelfOnly, "kube-proxy"),
                ("tcp/30000-32767".to_string(), SourceKind::All, "kube-proxy"),
                ("udp/30000-32767".to_string(), SourceKind::All, "kube-proxy"),
            ]
        );
    }

    #[test]
    fn ip_protocols_are_left_out_with_a_note() {
        let r = catalog().required(Role::Worker, Some("calico"));
        assert_eq!(from_of(&r, "tcp/179"), [SourceKind::Nodes]);
        assert_eq!(from_of(&r, "udp/4789"), [SourceKind::Nodes]);
        // calico-node's outbound etcd connection is not an inbound port.
        assert_eq!(from_of(&r, "tcp/2379"), []);
        assert_eq!(
            r.notes,
            [
                "IP protocol 4 for calico-node (IP-in-IP encapsulation (IP protocol 4, not a port)) is not a port: kports does not judge it; check that other nodes can send it"
            ]
        );
    }

    #[test]
    fn unknown_cni_adds_nothing_and_cnis_lists_the_catalogs() {
        let c = catalog();
        assert_eq!(
            c.required(Role::Worker, Some("nosuch")),
            c.required(Role::Worker, None)
        );
        let names = PortCatalog::cnis(&c);
        for n in [
            "calico",
            "flannel",
            "cilium",
            "weave",
            "antrea",
            "kube-router",
        ] {
            assert!(names.contains(&n), "{n}");
        }
    }

    #[test]
    fn a_user_catalog_moving_a_port_moves_the_required_port() {
        let mut c = catalog();
        c.apply_user(
            "[[port]]\ncomponent = \"kube-apiserver\"\nprotocol = \"tcp\"\nport = 7443\nreplaces = 6443\n\n\
             [[port]]\ncomponent = \"kube-proxy\"\nprotocol = \"tcp\"\nport = \"20000-22767\"\nreplaces = \"30000-32767\"\n",
            "my.toml",
        )
        .unwrap();
        let r = c.required(Role::ControlPlane, None);
        assert_eq!(from_of(&r, "tcp/6443"), []);
        assert_eq!(from_of(&r, "tcp/7443"), [SourceKind::All]);
        assert_eq!(from_of(&r, "tcp/20000-22767"), [SourceKind::All]);
        assert_eq!(from_of(&r, "tcp/30000-32767"), []);
        assert_eq!(from_of(&r, "udp/30000-32767"), [SourceKind::All]);
    }

    #[test]
    fn a_running_components_flags_move_the_port_judged() {
        let sockets = [
            socket(
                SockState::Listen,
                "0.0.0.0:7443",
                "0.0.0.0:0",
                "kube-apiserver",
                100,
                "kube-apiserver --secure-port=7443 --service-node-port-range=31000-31999",
            ),
            listen("127.0.0.1:10259", "kube-scheduler", 200),
        ];
        let c = catalog();
        let (resolved, warnings) = resolve::resolve_all(&c, &sockets, &[]);
        let r = from_resolved(&resolved, Role::ControlPlane.into(), &[]);
        assert_eq!(from_of(&r, "tcp/6443"), []);
        assert_eq!(from_of(&r, "tcp/7443"), [SourceKind::All]);
        assert_eq!(from_of(&r, "tcp/31000-31999"), [SourceKind::All]);
        assert_eq!(from_of(&r, "udp/31000-31999"), [SourceKind::All]);
        assert!(warnings.is_empty(), "{warnings:?}");
        // A port a flag turns off is not judged, and a note says so.
        let sockets = [socket(
            SockState::Listen,
            "127.0.0.1:10257",
            "0.0.0.0:0",
            "kube-controller-manager",
            300,
            "kube-controller-manager --secure-port=0",
        )];
        let (resolved, _) = resolve::resolve_all(&c, &sockets, &[]);
        let r = from_resolved(&resolved, Role::ControlPlane.into(), &[]);
        assert_eq!(from_of(&r, "tcp/10257"), []);
        assert_eq!(
            r.notes,
            ["tcp/10257 of kube-controller-manager is turned off (--secure-port=0): not judged"]
        );
    }
}
