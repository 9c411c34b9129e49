//! What kind of node this is, and which CNI it runs, from what the census found.
//!
//! The roles come from the components that hold sockets, and compose: an API server, scheduler
//! or controller-manager makes a control-plane node (a stopped one among them does not change
//! that); an etcd member makes an etcd node; a kubelet or kube-proxy makes a worker (a
//! control-plane node runs them too, and its ports include theirs). So a kubeadm control plane
//! is `control-plane,etcd` and a node with the etcd and worker roles is `worker,etcd`.
//! The CNI comes from its agents' processes and from the devices it creates (`flannel.1`,
//! `cilium_host`, `vxlan.calico`, ...), so a node whose agent is down still shows its CNI. Both
//! are guesses with evidence, and `--role` / `--cni` override them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use crate::catalog::{Role, Roles};
use crate::{Interface, Socket};

/// Where a role or CNI came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectionSource {
    /// The user said so (`--role`, `--cni`).
    Flag,
    /// Guessed from the census.
    Detected,
}

impl DetectionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectionSource::Flag => "flag",
            DetectionSource::Detected => "detected",
        }
    }
}

/// A role or CNI, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detected<T> {
    pub value: T,
    /// `flag` when the user said so, `detected` otherwise.
    pub source: DetectionSource,
    /// What the guess rests on, one fact per line (`kube-apiserver (pid 812) holds tcp/6443`).
    pub evidence: Vec<String>,
}

impl<T> Detected<T> {
    pub fn given(value: T, flag: &str) -> Detected<T> {
        Detected {
            value,
            source: DetectionSource::Flag,
            evidence: vec![format!("given with {flag}")],
        }
    }
}

const CONTROL_PLANE: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
const NODE_AGENTS: &[&str] = &["kubelet", "kube-proxy"];

/// (component, CNI) for agents that identify their CNI.
const CNI_COMPONENTS: &[(&str, &str)] = &[
    ("calico-node", "calico"),
    ("calico-typha", "calico"),
    ("flannel", "flannel"),
    ("cilium-agent", "cilium"),
    ("cilium-envoy", "cilium"),
    ("cilium-operator", "cilium"),
    ("weave", "weave"),
    ("antrea-agent", "antrea"),
    ("antrea-controller", "antrea"),
    ("kube-router", "kube-router"),
];

/// (interface name or prefix ending in `*`, CNI) for devices only one CNI creates. `cni0` and
/// `tunl0` are left out: several CNIs (and the bridge plugin) make them.
const CNI_DEVICES: &[(&str, &str)] = &[
    ("flannel.1", "flannel"),
    ("flannel-wg", "flannel"),
    ("flannel-wg-v6", "flannel"),
    ("flannel-v6.1", "flannel"),
    ("flannel0", "flannel"),
    ("vxlan.calico", "calico"),
    ("vxlan-v6.calico", "calico"),
    ("wireguard.cali", "calico"),
    ("wg-v6.cali", "calico"),
    ("cali*", "calico"),
    ("cilium_host", "cilium"),
    ("cilium_net", "cilium"),
    ("cilium_vxlan", "cilium"),
    ("cilium_geneve", "cilium"),
    ("cilium_wg0", "cilium"),
    ("weave", "weave"),
    ("vethwe-*", "weave"),
    ("antrea-gw0", "antrea"),
    ("antrea-tun0", "antrea"),
    ("kube-bridge", "kube-router"),
];

/// Components seen in the census with one pid each: (component, pid, what shows it), from a
/// listener when the component has one (its lowest port reachable from outside, else its
/// lowest port on loopback), else from a connection it made
/// (the lowest remote address and port): the same node state gives the same evidence,
/// whatever order the kernel listed the sockets in.
fn components(sockets: &[Socket]) -> Vec<(&'static str, u32, String)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut listening: Vec<&Socket> = sockets.iter().filter(|s| s.is_listener()).collect();
    listening.sort_by_key(|s| {
        (
            s.local_address.is_loopback(),
            s.proto,
            s.local_port,
            s.local_address,
        )
    });
    let mut others: Vec<&Socket> = sockets.iter().filter(|s| !s.is_listener()).collect();
    others.sort_by_key(|s| (s.remote_address, s.remote_port));
    for s in listening.into_iter().chain(others) {
        let Some(c) = s.component else { continue };
        let pid = s.processes.first().map_or(0, |p| p.pid);
        if seen.insert(c) {
            let what = if s.is_listener() {
                format!("holds {}/{}", s.proto.as_str(), s.local_port)
            } else {
                match s.remote_address {
                    IpAddr::V6(a) => format!("is connected to [{a}]:{}", s.remote_port),
                    a => format!("is connected to {a}:{}", s.remote_port),
                }
            };
            out.push((c, pid, what));
        }
    }
    out
}

fn fact(c: &str, pid: u32, what: &str) -> String {
    if pid == 0 {
        format!("{c} {what}")
    } else {
        format!("{c} (pid {pid}) {what}")
    }
}

/// The node's roles, each with the components that show it; empty when nothing in the census
/// tells. A kubelet or kube-proxy makes a worker only beside no control-plane component: every
/// control-plane node runs them, and the control plane's ports include theirs.
pub fn detect_roles(sockets: &[Socket]) -> Detected<Roles> {
    let comps = components(sockets);
    let pick = |names: &[&str]| -> Vec<String> {
        comps
            .iter()
            .filter(|(c, _, _)| names.contains(c))
            .map(|(c, pid, port)| fact(c, *pid, port))
            .collect()
    };
    let mut roles = Roles::NONE;
    let mut evidence = Vec::new();
    let cp = pick(CONTROL_PLANE);
    if !cp.is_empty() {
        roles.insert(Role::ControlPlane);
        evidence.extend(cp);
    }
    let etcd = pick(&["etcd"]);
    if !etcd.is_empty() {
        roles.insert(Role::Etcd);
        evidence.extend(etcd);
    }
    let agents = pick(NODE_AGENTS);
    if !agents.is_empty() && !roles.contains(Role::ControlPlane) {
        roles.insert(Role::Worker);
        evidence.extend(agents);
    }
    if roles.is_empty() {
        evidence.push("no Kubernetes component holds a socket here".to_string());
    }
    Detected {
        value: roles,
        source: DetectionSource::Detected,
        evidence,
    }
}

/// The CNI plugins the node runs (usually one; Canal is Calico and Flannel together).
pub fn detect_cni(sockets: &[Socket], interfaces: &[Interface]) -> Detected<Vec<String>> {
    let mut found: Vec<String> = Vec::new();
    let mut evidence = Vec::new();
    let mut add = |cni: &str, why: String, evidence: &mut Vec<String>| {
        if !found.iter().any(|f| f == cni) {
            found.push(cni.to_string());
        }
        evidence.push(why);
    };
    for (c, pid, port) in components(sockets) {
        if let Some((_, cni)) = CNI_COMPONENTS.iter().find(|(comp, _)| *comp == c) {
            add(cni, fact(c, pid, &port), &mut evidence);
        }
    }
    let mut seen_devices = BTreeSet::new();
    for i in interfaces {
        let hit = CNI_DEVICES
            .iter()
            .find(|(pat, _)| match pat.strip_suffix('*') {
                Some(prefix) => i.name.starts_with(prefix),
                None => i.name == *pat,
            });
        if let Some((pat, cni)) = hit {
            // One line per pattern: a node with 40 cali* veths needs one.
            if seen_devices.insert(*pat) {
                let port = i
                    .tunnel_port
                    .map(|p| format!(", UDP port {p}"))
                    .unwrap_or_default();
                add(
                    cni,
                    format!("device {} ({}{port})", i.name, i.kind),
                    &mut evidence,
                );
            }
        }
    }
    if found.is_empty() {
        evidence.push("no CNI agent process and no CNI device found".to_string());
    }
    Detected {
        value: found,
        source: DetectionSource::Detected,
        evidence,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;
    use crate::{Family, Owner, ProcessRef, Proto, SockState};

    /// A listening socket held by `process` (pid) recognised as `component`.
    pub(crate) fn listener(
        proto: Proto,
        addr: &str,
        port: u16,
        process: &str,
        pid: u32,
        component: Option<&'static str>,
    ) -> Socket {
        let local: IpAddr = addr.parse().unwrap();
        let unspecified: IpAddr = if local.is_ipv4() {
            "0.0.0.0".parse().unwrap()
        } else {
            "::".parse().unwrap()
        };
        let kernel = process == "kernel";
        Socket {
            proto,
            family: if local.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            state: if proto == Proto::Tcp {
                SockState::Listen
            } else {
                SockState::Close
            },
            local_address: local,
            local_port: port,
            remote_address: unspecified,
            remote_port: 0,
            inode: if kernel {
                0
            } else {
                u64::from(pid) * 100 + u64::from(port)
            },
            uid: 0,
            interface: None,
            cgroup_id: None,
            processes: if kernel {
                crate::no_processes()
            } else {
                Arc::new(vec![Arc::new(ProcessRef {
                    pid,
                    name: process.to_string(),
                    cmdline: process.to_string(),
                    secrets: Vec::new(),
                    container_id: None,
                    pod_uid: None,
                })])
            },
            owner: if kernel {
                Owner::Kernel
            } else {
                Owner::Process
            },
            component,
            netns: None,
            cgroup: None,
        }
    }

    pub(crate) fn iface(name: &str, kind: &str, tunnel_port: Option<u16>) -> Interface {
        Interface {
            index: 3,
            name: name.into(),
            kind: kind.into(),
            state: "up".into(),
            mtu: 1450,
            mac: None,
            master: None,
            tunnel_port,
            addresses: vec![],
            netns: None,
        }
    }

    fn tcp(port: u16, c: &'static str, pid: u32) -> Socket {
        listener(Proto::Tcp, "0.0.0.0", port, c, pid, Some(c))
    }

    fn roles(list: &[Role]) -> Roles {
        list.iter().copied().collect()
    }

    #[test]
    fn the_same_node_gives_the_same_evidence_in_any_socket_order() {
        let lo = |port, c, pid| listener(Proto::Tcp, "127.0.0.1", port, c, pid, Some(c));
        let a = [
            lo(10248, "kubelet", 1),
            tcp(10250, "kubelet", 1),
            tcp(10256, "kube-proxy", 2),
            lo(10249, "kube-proxy", 2),
            tcp(10257, "kube-proxy", 2),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(detect_roles(&a).evidence, detect_roles(&b).evidence);
        assert_eq!(
            detect_roles(&b).evidence,
            [
                "kubelet (pid 1) holds tcp/10250",
                "kube-proxy (pid 2) holds tcp/10256"
            ]
        );
    }

    #[test]
    fn control_plane_even_with_the_api_server_stopped() {
        let s = [tcp(10250, "kubelet", 1), tcp(10259, "kube-scheduler", 3)];
        let d = detect_roles(&s);
        assert_eq!(d.value, Role::ControlPlane.into());
        assert_eq!(d.evidence, ["kube-scheduler (pid 3) holds tcp/10259"]);
    }

    #[test]
    fn a_kubeadm_control_plane_is_control_plane_and_etcd() {
        let mut c = tcp(46230, "kube-apiserver", 7);
        c.state = crate::SockState::Established;
        c.remote_address = "127.0.0.1".parse().unwrap();
        c.remote_port = 2379;
        let d = detect_roles(&[c, tcp(2379, "etcd", 2), tcp(10250, "kubelet", 1)]);
        assert_eq!(d.value, roles(&[Role::ControlPlane, Role::Etcd]));
        assert_eq!(d.value.to_string(), "control-plane,etcd");
        assert_eq!(
            d.evidence,
            [
                "kube-apiserver (pid 7) is connected to 127.0.0.1:2379",
                "etcd (pid 2) holds tcp/2379"
            ]
        );
    }

    #[test]
    fn worker_worker_and_etcd_etcd_only_and_unknown() {
        assert_eq!(
            detect_roles(&[tcp(10250, "kubelet", 1), tcp(10256, "kube-proxy", 2)]).value,
            Role::Worker.into()
        );
        // A worker whose kubelet is down still has kube-proxy.
        assert_eq!(
            detect_roles(&[tcp(10256, "kube-proxy", 2)]).value,
            Role::Worker.into()
        );
        let both = detect_roles(&[tcp(2380, "etcd", 2), tcp(10250, "kubelet", 1)]);
        assert_eq!(both.value, roles(&[Role::Worker, Role::Etcd]));
        assert_eq!(both.value.to_string(), "worker,etcd");
        assert_eq!(
            both.evidence,
            [
                "etcd (pid 2) holds tcp/2380",
                "kubelet (pid 1) holds tcp/10250"
            ]
        );
        assert_eq!(
            detect_roles(&[tcp(2379, "etcd", 2)]).value,
            Role::Etcd.into()
        );
        let sshd = listener(Proto::Tcp, "0.0.0.0", 22, "sshd", 9, None);
        let none = detect_roles(&[sshd]);
        assert!(none.value.is_empty());
        assert_eq!(none.value.to_string(), "unknown");
        assert_eq!(
            none.evidence,
            ["no Kubernetes component holds a socket here"]
        );
    }

    #[test]
    fn roles_serialize_as_an_array() {
        let r = roles(&[Role::Etcd, Role::Worker]);
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"["worker","etcd"]"#);
        assert_eq!(serde_json::to_string(&Roles::NONE).unwrap(), "[]");
    }

    #[test]
    fn cni_from_devices_when_the_agent_is_down() {
        let ifs = [
            iface("eth0", "veth", None),
            iface("cni0", "bridge", None),
            iface("flannel.1", "vxlan", Some(8472)),
        ];
        let d = detect_cni(&[], &ifs);
        assert_eq!(d.value, ["flannel"]);
        assert_eq!(d.evidence, ["device flannel.1 (vxlan, UDP port 8472)"]);
    }

    #[test]
    fn cni_from_agents_and_canal() {
        let s = [
            tcp(9099, "calico-node", 4),
            listener(
                Proto::Udp,
                "0.0.0.0",
                8472,
                "kernel",
                0,
                Some("vxlan (kernel)"),
            ),
        ];
        let ifs = [
            iface("cali12345", "veth", None),
            iface("cali67890", "veth", None),
            iface("flannel.1", "vxlan", Some(8472)),
        ];
        let d = detect_cni(&s, &ifs);
        assert_eq!(d.value, ["calico", "flannel"]);
        assert_eq!(d.evidence.len(), 3, "{:?}", d.evidence);
        let none = detect_cni(
            &[],
            &[iface("cni0", "bridge", None), iface("tunl0", "ipip", None)],
        );
        assert!(none.value.is_empty());
    }
}
