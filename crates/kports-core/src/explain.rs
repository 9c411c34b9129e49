//! `kports explain PORT|COMPONENT`: what normally listens there, who connects and why, where
//! kubeadm binds it, and what this node has there right now.
//!
//! The "right now" part counts established connections per peer, and names the client process
//! when the client is on this node (its end of the connection is in the same census). That is
//! what makes the catalog's explanations visible: etcd's 2379 shows one line per API server with
//! many connections, 2380 a few per peer member.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use crate::catalog::{Catalog, Entry, Expect, PortRange, Protocol};
use crate::check::{self, Input};
use crate::finding::{Finding, Setting, SocketEvidence};
use crate::resolve::Resolved;
use crate::{Proto, SockState, Socket, Warning};

/// What the user asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `2379`, `tcp/2379`, `2379/udp`.
    Port {
        protocol: Option<Protocol>,
        port: u16,
    },
    /// A component (`etcd`, `kube-apiserver`, `apiserver`) or a CNI (`flannel`).
    Name(String),
}

impl Subject {
    pub fn parse(s: &str) -> Result<Subject, String> {
        let s = s.trim();
        let proto = |p: &str| match p.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(format!("`{other}` is not tcp or udp")),
        };
        let port = crate::catalog::parse_port;
        if let Some((a, b)) = s.split_once('/') {
            return if a.chars().all(|c| c.is_ascii_digit()) {
                Ok(Subject::Port {
                    protocol: Some(proto(b)?),
                    port: port(a)?,
                })
            } else {
                Ok(Subject::Port {
                    protocol: Some(proto(a)?),
                    port: port(b)?,
                })
            };
        }
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Subject::Port {
                protocol: None,
                port: port(s)?,
            });
        }
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(format!(
                "`{s}` is neither a port (2379, tcp/2379) nor a component name (etcd)"
            ));
        }
        Ok(Subject::Name(s.to_ascii_lowercase()))
    }
}

/// One port explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub protocol: Protocol,
    /// The port on this node (after flags and devices), or the range.
    pub port: PortRange,
    /// The catalog's entry; none when the catalog has nothing on this port.
    pub entry: Option<Entry>,
    /// Whether this node's role and CNI need the entry.
    pub needed_here: bool,
    pub configured_by: Vec<Setting>,
    pub now: Now,
}

/// What the node has on the port right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Now {
    pub listeners: Vec<SocketEvidence>,
    /// Established connections to the port, by remote address and client process.
    pub inbound: Vec<PeerCount>,
    /// Established connections from this node to that port elsewhere (or on loopback).
    pub outbound: Vec<PeerCount>,
    /// What `kports check` says about the port.
    pub findings: Vec<Finding>,
}

/// Connections from (or to) one address, with the process on this node's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerCount {
    pub address: IpAddr,
    /// For inbound: the client process when the client runs on this node. For outbound: the
    /// local process that connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub connections: usize,
}

impl Now {
    pub fn established_in(&self) -> usize {
        self.inbound.iter().map(|p| p.connections).sum()
    }

    pub fn established_out(&self) -> usize {
        self.outbound.iter().map(|p| p.connections).sum()
    }
}

/// etcd's two ports side by side, as this node has them now: the client port (every API server
/// keeps a pool of connections there) and the peer port (a few connections per other member,
/// none on a single member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdContrast {
    pub client_port: u16,
    /// Established connections into the client port, and from how many addresses.
    pub client_connections: usize,
    pub client_peers: usize,
    pub peer_port: u16,
    /// Established connections to or from the peer port, and with how many addresses.
    pub peer_connections: usize,
    pub peer_peers: usize,
}

/// The contrast of etcd's client and peer ports when `query` is about etcd (2379, 2380 or the
/// name), at the ports the running etcd's flags set.
pub fn etcd_contrast(query: &Subject, input: &Input<'_>) -> Option<EtcdContrast> {
    let port_of = |default: u16| -> Option<u16> {
        input
            .resolved
            .iter()
            .find(|r| {
                r.entry.component == "etcd"
                    && r.entry.protocol == Protocol::Tcp
                    && r.entry.port == PortRange::single(default)
            })
            .map(|r| r.port.first)
    };
    let (client, peer) = (port_of(2379)?, port_of(2380)?);
    let about = match query {
        Subject::Port { protocol, port } => {
            protocol.is_none_or(|p| p == Protocol::Tcp) && (*port == client || *port == peer)
        }
        Subject::Name(n) => n.eq_ignore_ascii_case("etcd"),
    };
    if !about {
        return None;
    }
    let count = |port: u16, either_end: bool| -> (usize, usize) {
        let conns: Vec<&Socket> = input
            .sockets
            .iter()
            .filter(|s| s.proto == Proto::Tcp && s.state == SockState::Established)
            .filter(|s| s.local_port == port || (either_end && s.remote_port == port))
            .collect();
        let mut addrs: Vec<IpAddr> = conns.iter().map(|s| s.remote_address).collect();
        addrs.sort_unstable();
        addrs.dedup();
        (conns.len(), addrs.len())
    };
    let (client_connections, client_peers) = count(client, false);
    let (peer_connections, peer_peers) = count(peer, true);
    Some(EtcdContrast {
        client_port: client,
        client_connections,
        client_peers,
        peer_port: peer,
        peer_connections,
        peer_peers,
    })
}

/// The explanations for `query`; empty when a name matches nothing.
pub fn explain(query: &Subject, input: &Input<'_>) -> (Vec<Explanation>, Vec<Warning>) {
    let warnings = Vec::new();
    let resolved = input.resolved;
    let report = check::check(input);
    let listeners: Vec<&Socket> = input.sockets.iter().filter(|s| s.is_listener()).collect();
    // An entry of a CNI backend the node does not use is an alternative, not needed here.
    let needed =
        |r: &Resolved| r.entry.applies_to(input.roles, input.cnis) && r.not_in_use.is_none();

    let mut out = Vec::new();
    match query {
        Subject::Port { protocol, port } => {
            let protocols: Vec<Protocol> = match protocol {
                Some(p) => vec![*p],
                None => vec![Protocol::Tcp, Protocol::Udp],
            };
            for protocol in protocols {
                let port = PortRange::single(*port);
                let mut any = false;
                for r in resolved {
                    let e = &r.entry;
                    if e.protocol != protocol || !r.port.contains(port.first) {
                        continue;
                    }
                    // Another component's connections out to the port matter only where it runs.
                    if e.direction == crate::catalog::Direction::Out && !needed(r) {
                        continue;
                    }
                    // A wide optional range (a runtime's random port) explains a port only when
                    // its component holds it.
                    if !r.port.is_single()
                        && e.expect == Expect::Optional
                        && !holds_now(e, &listeners, protocol, port)
                    {
                        continue;
                    }
                    any = true;
                    out.push(build(
                        Some(e),
                        needed(r),
                        protocol,
                        port,
                        r.settings.clone(),
                        input.sockets,
                        &report.findings,
                    ));
                }
                let here = listeners
                    .iter()
                    .any(|s| Some(s.proto) == protocol.proto() && s.local_port == port.first);
                if !any && (here || protocols_len(query) == 1 || protocol == Protocol::Tcp) {
                    out.push(build(
                        None,
                        false,
                        protocol,
                        port,
                        Vec::new(),
                        input.sockets,
                        &report.findings,
                    ));
                }
            }
        }
        Subject::Name(name) => {
            for r in resolved {
                let e = &r.entry;
                if matches_name(e, name) {
                    out.push(build(
                        Some(e),
                        needed(r),
                        e.protocol,
                        r.port,
                        r.settings.clone(),
                        input.sockets,
                        &report.findings,
                    ));
                }
            }
            // Entries this node needs first, then catalog order.
            out.sort_by_key(|x| !x.needed_here);
        }
    }
    (out, warnings)
}

fn protocols_len(q: &Subject) -> usize {
    match q {
        Subject::Port {
            protocol: Some(_), ..
        } => 1,
        _ => 2,
    }
}

fn holds_now(e: &Entry, listeners: &[&Socket], protocol: Protocol, port: PortRange) -> bool {
    listeners.iter().any(|s| {
        Some(s.proto) == protocol.proto()
            && s.local_port == port.first
            && (s
                .component
                .is_some_and(|c| e.held_by.iter().any(|h| h == c))
                || s.processes.iter().any(|p| e.held_by.contains(&p.name)))
    })
}

/// Whether `name` names the entry's component, one of its holders, its CNI, or a unique part
/// of the component's name (`apiserver`, `scheduler`).
fn matches_name(e: &Entry, name: &str) -> bool {
    e.component == name
        || e.held_by.iter().any(|h| h == name)
        || e.cni.as_deref() == Some(name)
        || (name.len() >= 4 && e.component.contains(name))
}

fn build(
    entry: Option<&Entry>,
    needed_here: bool,
    protocol: Protocol,
    port: PortRange,
    configured_by: Vec<Setting>,
    sockets: &[Socket],
    findings: &[Finding],
) -> Explanation {
    let proto = protocol.proto();
    let listeners = sockets
        .iter()
        .filter(|s| s.is_listener() && Some(s.proto) == proto && port.contains(s.local_port))
        .filter(|s| match entry {
            // In a range, only the entry's own holders (a NodePort range shows everything).
            Some(e) if !port.is_single() && e.expect != Expect::Reserved => {
                s.component
                    .is_some_and(|c| e.held_by.iter().any(|h| h == c))
                    || s.processes.iter().any(|p| e.held_by.contains(&p.name))
            }
            _ => true,
        })
        .map(SocketEvidence::of)
        .collect();
    let (inbound, outbound) = if protocol == Protocol::Tcp && port.is_single() {
        connections(sockets, port.first)
    } else {
        (Vec::new(), Vec::new())
    };
    let findings = findings
        .iter()
        .filter(|f| {
            f.protocol == Some(protocol)
                && f.port
                    .is_some_and(|p| p.first <= port.last && port.first <= p.last)
        })
        .cloned()
        .collect();
    Explanation {
        protocol,
        port,
        entry: entry.cloned(),
        needed_here,
        configured_by,
        now: Now {
            listeners,
            inbound,
            outbound,
            findings,
        },
    }
}

/// Established TCP connections to and from `port`, grouped by peer address and local process.
fn connections(sockets: &[Socket], port: u16) -> (Vec<PeerCount>, Vec<PeerCount>) {
    let est: Vec<&Socket> = sockets
        .iter()
        .filter(|s| s.proto == Proto::Tcp && s.state == SockState::Established)
        .collect();
    // The client's end of a connection on this node, by its local endpoint.
    let by_local: HashMap<(IpAddr, u16), &Socket> = est
        .iter()
        .map(|s| ((s.local_address, s.local_port), *s))
        .collect();
    let mut inbound: BTreeMap<(IpAddr, Option<String>, Option<u32>), usize> = BTreeMap::new();
    let mut outbound: BTreeMap<(IpAddr, Option<String>, Option<u32>), usize> = BTreeMap::new();
    for s in &est {
        if s.local_port == port {
            let client = by_local
                .get(&(s.remote_address, s.remote_port))
                .filter(|c| c.remote_port == port)
                .and_then(|c| c.processes.first());
            *inbound
                .entry((
                    s.remote_address,
                    client.map(|p| p.name.clone()),
                    client.map(|p| p.pid),
                ))
                .or_default() += 1;
        } else if s.remote_port == port {
            let me = s.processes.first();
            *outbound
                .entry((
                    s.remote_address,
                    me.map(|p| p.name.clone()),
                    me.map(|p| p.pid),
                ))
                .or_default() += 1;
        }
    }
    let list = |m: BTreeMap<(IpAddr, Option<String>, Option<u32>), usize>| {
        let mut v: Vec<PeerCount> = m
            .into_iter()
            .map(|((address, process, pid), connections)| PeerCount {
                address,
                process,
                pid,
                connections,
            })
            .collect();
        v.sort_by(|a, b| {
            b.connections
                .cmp(&a.connections)
                .then(a.address.cmp(&b.address))
        });
        v
    };
    (list(inbound), list(outbound))
}

/// Every component and CNI name the catalog knows (for a helpful error).
pub fn known_names(catalog: &Catalog) -> Vec<String> {
    let mut v: Vec<String> = catalog
        .entries
        .iter()
        .map(|e| e.component.clone())
        .chain(catalog.cnis().into_iter().map(String::from))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::Role;
    use crate::role::tests::listener;
    use crate::{Family, Owner, ProcessRef};

    fn conn(local: (&str, u16), remote: (&str, u16), process: &str, pid: u32) -> Socket {
        let mut s = listener(Proto::Tcp, local.0, local.1, process, pid, None);
        s.state = SockState::Established;
        s.remote_address = remote.0.parse().unwrap();
        s.remote_port = remote.1;
        s.family = Family::Ipv4;
        s.owner = Owner::Process;
        s.processes = Arc::new(vec![Arc::new(ProcessRef {
            pid,
            name: process.into(),
            cmdline: process.into(),
            secrets: Vec::new(),
            container_id: None,
            pod_uid: None,
        })]);
        s
    }

    /// A stacked control plane: the local API server has 3 connections to etcd over loopback,
    /// a second API server 2 over the network; etcd has one peer with 2 connections on 2380.
    fn etcd_node() -> Vec<Socket> {
        let mut v = vec![
            listener(Proto::Tcp, "127.0.0.1", 2379, "etcd", 200, Some("etcd")),
            listener(Proto::Tcp, "192.0.2.11", 2379, "etcd", 200, Some("etcd")),
            listener(Proto::Tcp, "192.0.2.11", 2380, "etcd", 200, Some("etcd")),
            listener(
                Proto::Tcp,
                "::",
                6443,
                "kube-apiserver",
                100,
                Some("kube-apiserver"),
            ),
        ];
        for i in 0..3 {
            v.push(conn(
                ("127.0.0.1", 40000 + i),
                ("127.0.0.1", 2379),
                "kube-apiserver",
                100,
            ));
            v.push(conn(
                ("127.0.0.1", 2379),
                ("127.0.0.1", 40000 + i),
                "etcd",
                200,
            ));
        }
        for i in 0..2 {
            v.push(conn(
                ("192.0.2.11", 2379),
                ("192.0.2.12", 50000 + i),
                "etcd",
                200,
            ));
            v.push(conn(
                ("192.0.2.11", 2380),
                ("192.0.2.13", 51000 + i),
                "etcd",
                200,
            ));
        }
        v
    }

    fn run(q: &str, sockets: &[Socket]) -> Vec<Explanation> {
        let catalog = Catalog::builtin().unwrap();
        let (resolved, _) = crate::resolve::resolve_all(&catalog, sockets, &[]);
        let input = Input {
            sockets,
            interfaces: &[],
            catalog: &catalog,
            resolved: &resolved,
            roles: Role::ControlPlane.into(),
            cnis: &[],
            version: None,
            pre_install: false,
        };
        explain(&Subject::parse(q).unwrap(), &input).0
    }

    #[test]
    fn etcd_client_and_peer_ports_side_by_side() {
        let est = |local: (&str, u16), remote: (&str, u16), pid: u32| {
            let mut s = listener(Proto::Tcp, local.0, local.1, "etcd", pid, Some("etcd"));
            s.state = SockState::Established;
            s.remote_address = remote.0.parse().unwrap();
            s.remote_port = remote.1;
            s
        };
        let sockets = [
            listener(Proto::Tcp, "192.0.2.11", 2379, "etcd", 2, Some("etcd")),
            listener(Proto::Tcp, "192.0.2.11", 2380, "etcd", 2, Some("etcd")),
            // Two API servers' pools on 2379, one member's streams on 2380 (in and out).
            est(("192.0.2.11", 2379), ("192.0.2.11", 40001), 2),
            est(("192.0.2.11", 2379), ("192.0.2.11", 40002), 2),
            est(("192.0.2.11", 2379), ("192.0.2.12", 40003), 2),
            est(("192.0.2.11", 2380), ("192.0.2.13", 50001), 2),
            est(("192.0.2.11", 50002), ("192.0.2.13", 2380), 2),
        ];
        let catalog = Catalog::builtin().unwrap();
        let (resolved, _) = crate::resolve::resolve_all(&catalog, &sockets, &[]);
        let input = Input {
            sockets: &sockets,
            interfaces: &[],
            catalog: &catalog,
            resolved: &resolved,
            roles: Role::Etcd.into(),
            cnis: &[],
            version: None,
            pre_install: false,
        };
        let want = Some(EtcdContrast {
            client_port: 2379,
            client_connections: 3,
            client_peers: 2,
            peer_port: 2380,
            peer_connections: 2,
            peer_peers: 1,
        });
        for q in ["2379", "2380", "etcd", "tcp/2380"] {
            assert_eq!(
                etcd_contrast(&Subject::parse(q).unwrap(), &input),
                want,
                "{q}"
            );
        }
        for q in ["2381", "udp/2379", "kubelet"] {
            assert_eq!(
                etcd_contrast(&Subject::parse(q).unwrap(), &input),
                None,
                "{q}"
            );
        }
    }

    #[test]
    fn other_flannel_backends_are_alternatives() {
        let catalog = Catalog::builtin().unwrap();
        let ifs = [crate::role::tests::iface("flannel.1", "vxlan", Some(8472))];
        let (resolved, _) = crate::resolve::resolve_all(&catalog, &[], &ifs);
        let cnis = ["flannel".to_string()];
        let input = Input {
            sockets: &[],
            interfaces: &ifs,
            catalog: &catalog,
            resolved: &resolved,
            roles: Role::Worker.into(),
            cnis: &cnis,
            version: None,
            pre_install: false,
        };
        let x = explain(&Subject::parse("flannel").unwrap(), &input).0;
        let needed: Vec<(String, bool)> = x
            .iter()
            .map(|e| (format!("{}/{}", e.protocol.as_str(), e.port), e.needed_here))
            .collect();
        assert_eq!(
            needed,
            [
                ("udp/8472".to_string(), true),
                ("udp/8285".to_string(), false),
                ("udp/51820".to_string(), false),
                ("udp/51821".to_string(), false),
            ]
        );
    }

    #[test]
    fn queries() {
        assert_eq!(
            Subject::parse("2379"),
            Ok(Subject::Port {
                protocol: None,
                port: 2379
            })
        );
        assert_eq!(
            Subject::parse("udp/8472"),
            Ok(Subject::Port {
                protocol: Some(Protocol::Udp),
                port: 8472
            })
        );
        assert_eq!(
            Subject::parse("8472/UDP"),
            Ok(Subject::Port {
                protocol: Some(Protocol::Udp),
                port: 8472
            })
        );
        assert_eq!(Subject::parse("Etcd"), Ok(Subject::Name("etcd".into())));
        assert!(Subject::parse("0").is_err());
        assert!(Subject::parse("sctp/1").is_err());
        assert!(Subject::parse("99999").is_err());
        assert!(Subject::parse("").is_err());
    }

    #[test]
    fn etcd_client_port_counts_api_servers() {
        let x = run("2379", &etcd_node());
        assert_eq!(x.len(), 1, "{x:#?}");
        let e = &x[0];
        assert_eq!(e.entry.as_ref().map(|e| e.component.as_str()), Some("etcd"));
        assert!(e.needed_here);
        assert!(
            e.entry
                .as_ref()
                .and_then(|e| e.clients.as_deref())
                .is_some_and(|c| c.contains("Every kube-apiserver"))
        );
        assert_eq!(e.now.listeners.len(), 2);
        assert_eq!(e.now.established_in(), 5);
        let local = &e.now.inbound[0];
        assert_eq!(
            (
                local.address.to_string(),
                local.process.as_deref(),
                local.pid,
                local.connections
            ),
            ("127.0.0.1".into(), Some("kube-apiserver"), Some(100), 3)
        );
        let remote = &e.now.inbound[1];
        assert_eq!(
            (
                remote.address.to_string(),
                remote.process.as_deref(),
                remote.connections
            ),
            ("192.0.2.12".into(), None, 2)
        );
        // The API server's own ends show as outbound connections to 2379.
        assert_eq!(e.now.established_out(), 3);
    }

    #[test]
    fn etcd_peer_port_has_a_few_per_member() {
        let x = run("tcp/2380", &etcd_node());
        assert_eq!(x[0].now.inbound.len(), 1);
        assert_eq!(x[0].now.established_in(), 2);
        assert!(
            x[0].entry
                .as_ref()
                .and_then(|e| e.clients.as_deref())
                .is_some_and(|c| c.contains("a few"))
        );
    }

    #[test]
    fn component_names_and_parts() {
        let ports = |q: &str| -> Vec<String> {
            run(q, &[])
                .iter()
                .map(|x| format!("{}/{}", x.protocol.as_str(), x.port))
                .collect()
        };
        assert_eq!(ports("etcd"), ["tcp/2379", "tcp/2380", "tcp/2381"]);
        assert_eq!(ports("apiserver"), ["tcp/6443", "tcp/8080"]);
        assert!(ports("flannel").contains(&"udp/8472".to_string()));
        assert!(ports("nosuchthing").is_empty());
    }

    #[test]
    fn a_port_the_catalog_does_not_know() {
        let s = [listener(Proto::Tcp, "0.0.0.0", 8000, "python3", 7, None)];
        let x = run("8000", &s);
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].entry, None);
        assert_eq!(x[0].now.listeners[0].processes[0].name, "python3");
        assert_eq!(x[0].now.findings[0].id.as_str(), "unexplained-listener");
    }

    #[test]
    fn a_port_with_several_owners_in_the_catalog() {
        let comps: Vec<String> = run("udp/8472", &[])
            .into_iter()
            .filter_map(|x| x.entry.map(|e| e.component))
            .collect();
        assert_eq!(comps, ["flannel", "cilium-agent"]);
        // The runtime's random-port range is not offered for a port it does not hold.
        assert!(run("40000", &[]).iter().all(|x| x.entry.is_none()));
        let s = [listener(
            Proto::Tcp,
            "127.0.0.1",
            40000,
            "containerd",
            8,
            Some("containerd"),
        )];
        assert_eq!(
            run("40000", &s)[0]
                .entry
                .as_ref()
                .map(|e| e.component.as_str()),
            Some("containerd")
        );
    }

    #[test]
    fn findings_about_the_port_come_along() {
        let s = [listener(
            Proto::Tcp,
            "127.0.0.1",
            6443,
            "kube-apiserver",
            100,
            Some("kube-apiserver"),
        )];
        let x = run("6443", &s);
        assert_eq!(
            x[0].now
                .findings
                .iter()
                .map(|f| f.id.as_str())
                .collect::<Vec<_>>(),
            ["bound-loopback-only"]
        );
    }
}
