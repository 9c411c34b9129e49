//! Which ports a node needs open, and from which kind of source.
//!
//! The firewall code reads required ports only through the [`PortCatalog`] trait. The port
//! catalog proper lives in kports-core; until it is wired in, [`BuiltinCatalog`] holds a minimal
//! list taken from the Kubernetes "Ports and Protocols" table and the CNI projects' own docs.

use kports_core::Proto;
use serde::Serialize;

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

/// Who needs to reach a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Control-plane nodes only (etcd peers, the API server calling the kubelet).
    ControlPlane,
    /// Every node of the cluster (overlay networks, BGP).
    Nodes,
    /// Anyone who uses the cluster (API clients, NodePort clients).
    All,
    /// External load balancers' health checks.
    LoadBalancers,
    /// The node itself only (over loopback): open to no other source.
    SelfOnly,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ControlPlane => "control-plane",
            SourceKind::Nodes => "nodes",
            SourceKind::All => "all",
            SourceKind::LoadBalancers => "load-balancers",
            SourceKind::SelfOnly => "self",
        }
    }
}

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

/// A source of required ports: the built-in list today, kports-core's catalog later.
pub trait PortCatalog {
    /// Every port a node of `role` needs, with the CNI's ports when `cni` is named.
    /// Unknown CNI names give no CNI ports; [`PortCatalog::cnis`] lists the known ones.
    fn required(&self, role: Role, cni: Option<&str>) -> Vec<RequiredPort>;

    /// CNI names this catalog knows.
    fn cnis(&self) -> Vec<&'static str>;
}

/// TEMPORARY: a minimal built-in list, to be replaced by the port catalog of kports-core once it
/// lands (see the crate README for how the two connect).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinCatalog;

impl PortCatalog for BuiltinCatalog {
    fn required(&self, role: Role, cni: Option<&str>) -> Vec<RequiredPort> {
        use Proto::{Tcp, Udp};
        use SourceKind::*;
        let mut v = Vec::new();
        if role == Role::ControlPlane {
            v.push(RequiredPort::new(Tcp, 6443, 6443, All, "kube-apiserver"));
            v.push(RequiredPort::new(Tcp, 2379, 2380, ControlPlane, "etcd"));
            v.push(RequiredPort::new(
                Tcp,
                10257,
                10257,
                SelfOnly,
                "kube-controller-manager",
            ));
            v.push(RequiredPort::new(
                Tcp,
                10259,
                10259,
                SelfOnly,
                "kube-scheduler",
            ));
        }
        // Every node, control plane included, runs a kubelet and kube-proxy and serves NodePorts.
        v.push(RequiredPort::new(
            Tcp,
            10250,
            10250,
            ControlPlane,
            "kubelet",
        ));
        v.push(RequiredPort::new(
            Tcp,
            10256,
            10256,
            LoadBalancers,
            "kube-proxy (healthz)",
        ));
        v.push(RequiredPort::new(
            Tcp,
            30000,
            32767,
            All,
            "NodePort Services",
        ));
        v.push(RequiredPort::new(
            Udp,
            30000,
            32767,
            All,
            "NodePort Services",
        ));
        match cni {
            Some("calico") => {
                v.push(RequiredPort::new(Tcp, 179, 179, Nodes, "calico (BGP)"));
                v.push(RequiredPort::new(Udp, 4789, 4789, Nodes, "calico (VXLAN)"));
                v.push(RequiredPort::new(Tcp, 5473, 5473, Nodes, "calico (Typha)"));
            }
            Some("flannel") => v.push(RequiredPort::new(Udp, 8472, 8472, Nodes, "flannel (VXLAN)")),
            Some("cilium") => {
                v.push(RequiredPort::new(Udp, 8472, 8472, Nodes, "cilium (VXLAN)"));
                v.push(RequiredPort::new(Tcp, 4240, 4240, Nodes, "cilium (health)"));
            }
            Some("weave") => {
                v.push(RequiredPort::new(Tcp, 6783, 6783, Nodes, "weave (control)"));
                v.push(RequiredPort::new(Udp, 6783, 6784, Nodes, "weave (data)"));
            }
            Some("antrea") => v.push(RequiredPort::new(Udp, 6081, 6081, Nodes, "antrea (Geneve)")),
            _ => {}
        }
        v
    }

    fn cnis(&self) -> Vec<&'static str> {
        vec!["calico", "flannel", "cilium", "weave", "antrea"]
    }
}
