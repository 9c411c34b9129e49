//! From what the user asked (targets, roles, ports) to the list of probes: pure, no IO except
//! through the name resolver the caller passes in.
//!
//! A target is an inventory node's name (its addresses and roles), an address, a CIDR (every
//! host address in it, at most [`MAX_CIDR_ADDRESSES`]) or a host name (resolved). Ports come
//! from `--ports`, or else from the roles (`--roles`, or the inventory's): the catalog's ports
//! each role must serve to other nodes. The whole plan is bounded by [`MAX_PROBES`].

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::IpAddr;

use kports_core::catalog::{Catalog, Direction, Expect, Network, Peer, Protocol, Role};

use crate::inventory::Inventory;
use crate::probe::Probe;
use crate::status::Transport;

/// The most addresses one CIDR may stand for.
pub const MAX_CIDR_ADDRESSES: u64 = 4096;
/// The most probes one run may hold.
pub const MAX_PROBES: usize = 100_000;

/// A protocol and port to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    pub transport: Transport,
    pub port: u16,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.transport, self.port)
    }
}

/// A request kports refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("`{0}`: {1}")]
    Ports(String, String),
    #[error("`{0}`: {1}")]
    Target(String, String),
    #[error("cannot resolve `{0}`: {1}")]
    Resolve(String, String),
    #[error(
        "no ports to probe on {0}: it has no roles; give --roles (control-plane, worker, etcd) or --ports"
    )]
    NoPorts(String),
    #[error("more than {MAX_PROBES} probes in one run; probe fewer targets or ports")]
    TooMany,
    #[error("nothing to probe: give targets or --inventory")]
    Nothing,
}

/// Parses `--ports`: `6443,10250,udp/8472,tcp/30000-30010` (TCP when no protocol is named).
pub fn parse_ports(s: &str) -> Result<Vec<PortSpec>, PlanError> {
    let bad = |item: &str, why: &str| PlanError::Ports(item.to_string(), why.to_string());
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(bad(s, "an empty item; write ports as 6443,10250,udp/8472"));
        }
        let (transport, rest) = match item.split_once('/') {
            Some(("tcp", r)) => (Transport::Tcp, r),
            Some(("udp", r)) => (Transport::Udp, r),
            Some((p, _)) => return Err(bad(item, &format!("`{p}` is not tcp or udp"))),
            None => (Transport::Tcp, item),
        };
        let r = kports_core::catalog::PortRange::parse(rest).map_err(|why| bad(item, &why))?;
        out.extend((r.first..=r.last).map(|port| PortSpec { transport, port }));
    }
    let mut seen = HashSet::new();
    out.retain(|p| seen.insert(*p));
    Ok(out)
}

/// The ports a node of `roles` (with CNIs `cnis`) must serve to other nodes, from the catalog:
/// entries of those roles on the host network that the node listens on (not optional, not
/// reserved ranges, not outbound) and that another node (control plane, node, etcd member, API
/// server) must reach. Ports only this node or load balancers use are left out. Each port comes
/// with the component that serves it.
pub fn role_ports(catalog: &Catalog, roles: &[Role], cnis: &[String]) -> Vec<(PortSpec, String)> {
    let mut out: Vec<(PortSpec, String)> = Vec::new();
    for e in &catalog.entries {
        let transport = match e.protocol {
            Protocol::Tcp => Transport::Tcp,
            Protocol::Udp => Transport::Udp,
            Protocol::Ip => continue,
        };
        let served_to_nodes = e.reached_by.iter().any(|p| {
            matches!(
                p,
                Peer::ControlPlane | Peer::Nodes | Peer::Etcd | Peer::Apiserver
            )
        });
        if !roles.iter().any(|r| e.applies_to((*r).into(), cnis))
            || e.network != Network::Host
            || e.expect != Expect::Listening
            || e.direction == Direction::Out
            || e.addon
            || !e.port.is_single()
            || !served_to_nodes
        {
            continue;
        }
        let spec = PortSpec {
            transport,
            port: e.port.first,
        };
        if !out.iter().any(|(p, _)| *p == spec) {
            out.push((spec, e.component.clone()));
        }
    }
    out
}

/// The component the catalog names for a port, when it names exactly one.
pub fn component_of(catalog: &Catalog, spec: PortSpec) -> Option<String> {
    let mut found: Option<&str> = None;
    for e in &catalog.entries {
        let same = matches!(
            (e.protocol, spec.transport),
            (Protocol::Tcp, Transport::Tcp) | (Protocol::Udp, Transport::Udp)
        );
        if !same || !e.port.is_single() || e.port.first != spec.port {
            continue;
        }
        match found {
            Some(c) if c != e.component => return None,
            _ => found = Some(&e.component),
        }
    }
    found.map(str::to_string)
}

/// One probe of the plan, with what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The target as the user named it (inventory name, address, host name), or the address
    /// for a CIDR's hosts.
    pub target: String,
    pub probe: Probe,
    pub component: Option<String>,
}

/// What to probe.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// As typed; empty means every node of the inventory.
    pub targets: &'a [String],
    pub inventory: Option<&'a Inventory>,
    /// `--roles`: for every target, instead of the inventory's.
    pub roles: Option<&'a [Role]>,
    pub cnis: &'a [String],
    /// `--ports`: for every target, instead of its roles' ports.
    pub ports: Option<&'a [PortSpec]>,
    pub catalog: &'a Catalog,
}

/// Expands a request into probes, in the order of the targets, then addresses, then ports;
/// an (address, protocol, port) is probed once even when two targets name it.
pub fn plan(
    req: &Request<'_>,
    mut resolve: impl FnMut(&str) -> io::Result<Vec<IpAddr>>,
) -> Result<Vec<Planned>, PlanError> {
    let mut named: Vec<(String, Vec<IpAddr>, Vec<Role>)> = Vec::new();
    if req.targets.is_empty() {
        let inv = req.inventory.ok_or(PlanError::Nothing)?;
        for n in &inv.nodes {
            named.push((n.name.clone(), n.addresses(), n.roles.clone()));
        }
    }
    for t in req.targets {
        let node = req
            .inventory
            .and_then(|inv| inv.nodes.iter().find(|n| n.name == *t));
        if let Some(n) = node {
            named.push((n.name.clone(), n.addresses(), n.roles.clone()));
        } else if let Ok(a) = t.parse::<IpAddr>() {
            check_address(t, a)?;
            named.push((t.clone(), vec![a], Vec::new()));
        } else if t.contains('/') {
            for a in expand_cidr(t)? {
                named.push((a.to_string(), vec![a], Vec::new()));
            }
        } else {
            let addrs = resolve(t).map_err(|e| PlanError::Resolve(t.clone(), e.to_string()))?;
            if addrs.is_empty() {
                return Err(PlanError::Resolve(t.clone(), "no addresses".into()));
            }
            for a in &addrs {
                check_address(t, *a)?;
            }
            named.push((t.clone(), addrs, Vec::new()));
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (target, addrs, node_roles) in named {
        let ports: Vec<(PortSpec, Option<String>)> = match req.ports {
            Some(ps) => ps
                .iter()
                .map(|p| (*p, component_of(req.catalog, *p)))
                .collect(),
            None => {
                let roles = req.roles.unwrap_or(&node_roles);
                let ps = role_ports(req.catalog, roles, req.cnis);
                if ps.is_empty() {
                    return Err(PlanError::NoPorts(target));
                }
                ps.into_iter().map(|(p, c)| (p, Some(c))).collect()
            }
        };
        for addr in &addrs {
            for (spec, component) in &ports {
                let probe = Probe {
                    addr: *addr,
                    port: spec.port,
                    transport: spec.transport,
                };
                if !seen.insert(probe) {
                    continue;
                }
                out.push(Planned {
                    target: target.clone(),
                    probe,
                    component: component.clone(),
                });
                if out.len() > MAX_PROBES {
                    return Err(PlanError::TooMany);
                }
            }
        }
    }
    Ok(out)
}

/// Addresses nothing can be probed at: unspecified, multicast, broadcast, and IPv6 link-local
/// (which needs an interface kports would have to guess).
fn check_address(target: &str, a: IpAddr) -> Result<(), PlanError> {
    let why = match a {
        _ if a.is_unspecified() => Some("the unspecified address cannot be probed"),
        _ if a.is_multicast() => Some("a multicast address cannot be probed"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address cannot be probed"),
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => {
            Some("a link-local address needs an interface; probe a global address")
        }
        _ => None,
    };
    match why {
        Some(w) => Err(PlanError::Target(target.to_string(), w.to_string())),
        None => Ok(()),
    }
}

/// Every host address of a CIDR: for IPv4 prefixes up to /30, without the network and
/// broadcast addresses. Refuses more than [`MAX_CIDR_ADDRESSES`].
pub fn expand_cidr(s: &str) -> Result<Vec<IpAddr>, PlanError> {
    let bad = |why: String| PlanError::Target(s.to_string(), why);
    let (a, p) = s.split_once('/').ok_or_else(|| bad("not a CIDR".into()))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| bad(format!("`{a}` is not an IP address")))?;
    let bits: u32 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = p
        .parse()
        .ok()
        .filter(|n| *n <= bits)
        .ok_or_else(|| bad(format!("`{p}` is not a prefix length from 0 to {bits}")))?;
    let host_bits = bits - prefix;
    let max_bits = MAX_CIDR_ADDRESSES.trailing_zeros();
    if host_bits > max_bits {
        return Err(bad(format!(
            "{} addresses; a CIDR may hold at most {MAX_CIDR_ADDRESSES} (an IPv4 /{} or an IPv6 /{})",
            if host_bits >= 64 {
                format!("2^{host_bits}")
            } else {
                (1u64 << host_bits).to_string()
            },
            32 - max_bits,
            128 - max_bits
        )));
    }
    let count = 1u128 << host_bits;
    let out: Vec<IpAddr> = match addr {
        IpAddr::V4(v4) => {
            let base = u32::from(v4) & u32::MAX.checked_shl(host_bits).unwrap_or(0);
            let (lo, hi) = if host_bits >= 2 {
                (1, count - 1)
            } else {
                (0, count)
            };
            (lo..hi)
                .map(|i| IpAddr::from(std::net::Ipv4Addr::from(base | i as u32)))
                .collect()
        }
        IpAddr::V6(v6) => {
            let base = u128::from(v6) & u128::MAX.checked_shl(host_bits).unwrap_or(0);
            (0..count)
                .map(|i| IpAddr::from(std::net::Ipv6Addr::from(base | i)))
                .collect()
        }
    };
    for a in &out {
        check_address(s, *a)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        match Catalog::builtin() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn specs(v: &[(PortSpec, String)]) -> Vec<String> {
        v.iter().map(|(p, c)| format!("{p} {c}")).collect()
    }

    #[test]
    fn ports_flag() {
        let p = parse_ports("6443, 10250,udp/8472,tcp/30000-30002,6443");
        let want: Vec<String> = [
            "tcp/6443",
            "tcp/10250",
            "udp/8472",
            "tcp/30000",
            "tcp/30001",
            "tcp/30002",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            p.map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            Ok(want)
        );
        for bad in ["", "0", "70000", "sctp/9", "10-9", "6443,", "http"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_ports_are_what_other_nodes_reach() {
        let c = catalog();
        let cp = role_ports(&c, &[Role::ControlPlane], &[]);
        assert_eq!(
            specs(&cp),
            [
                "tcp/6443 kube-apiserver",
                "tcp/2379 etcd",
                "tcp/2380 etcd",
                "tcp/10250 kubelet"
            ]
        );
        let w = role_ports(&c, &[Role::Worker], &["flannel".to_string()]);
        assert_eq!(specs(&w), ["tcp/10250 kubelet", "udp/8472 flannel"]);
        let etcd = role_ports(&c, &[Role::Etcd], &[]);
        assert_eq!(specs(&etcd), ["tcp/2379 etcd", "tcp/2380 etcd"]);
        assert!(role_ports(&c, &[], &[]).is_empty());
    }

    #[test]
    fn components_of_ports() {
        let c = catalog();
        let tcp = |port| PortSpec {
            transport: Transport::Tcp,
            port,
        };
        assert_eq!(
            component_of(&c, tcp(6443)).as_deref(),
            Some("kube-apiserver")
        );
        // flannel and Cilium both use udp/8472: the catalog cannot say which.
        let vxlan = PortSpec {
            transport: Transport::Udp,
            port: 8472,
        };
        assert_eq!(component_of(&c, vxlan), None);
        assert_eq!(component_of(&c, tcp(1)), None);
    }

    #[test]
    fn cidrs() {
        let v = expand_cidr("192.0.2.0/30").unwrap_or_default();
        assert_eq!(
            v.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["192.0.2.1", "192.0.2.2"]
        );
        assert_eq!(expand_cidr("192.0.2.9/32").map(|v| v.len()), Ok(1));
        assert_eq!(expand_cidr("192.0.2.8/31").map(|v| v.len()), Ok(2));
        assert_eq!(expand_cidr("10.0.0.0/20").map(|v| v.len()), Ok(4094));
        assert_eq!(expand_cidr("2001:db8::/126").map(|v| v.len()), Ok(4));
        let big = expand_cidr("10.0.0.0/8");
        assert!(
            matches!(&big, Err(PlanError::Target(_, m)) if m.contains("16777216 addresses")),
            "{big:?}"
        );
        assert!(expand_cidr("2001:db8::/64").is_err());
        assert!(expand_cidr("2001:db8::/0").is_err());
        assert!(expand_cidr("192.0.2.0/33").is_err());
        assert!(expand_cidr("nonsense/24").is_err());
        // A CIDR holding the broadcast address is refused rather than probed.
        assert!(expand_cidr("255.255.255.255/32").is_err());
    }

    fn no_dns(name: &str) -> io::Result<Vec<IpAddr>> {
        Err(io::Error::other(format!("no DNS in tests ({name})")))
    }

    #[test]
    fn plans_targets() {
        let c = catalog();
        let ports = parse_ports("6443,udp/8472").unwrap_or_default();
        let targets = vec![
            "192.0.2.1".to_string(),
            "2001:db8::1".to_string(),
            "192.0.2.1".to_string(),
        ];
        let req = Request {
            targets: &targets,
            inventory: None,
            roles: None,
            cnis: &[],
            ports: Some(&ports),
            catalog: &c,
        };
        let p = plan(&req, no_dns).unwrap_or_default();
        let got: Vec<String> = p
            .iter()
            .map(|p| {
                format!(
                    "{} {} {}/{} {:?}",
                    p.target, p.probe.addr, p.probe.transport, p.probe.port, p.component
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "192.0.2.1 192.0.2.1 tcp/6443 Some(\"kube-apiserver\")",
                "192.0.2.1 192.0.2.1 udp/8472 None",
                "2001:db8::1 2001:db8::1 tcp/6443 Some(\"kube-apiserver\")",
                "2001:db8::1 2001:db8::1 udp/8472 None",
            ]
        );
    }

    #[test]
    fn plan_refusals() {
        let c = catalog();
        let t = |s: &str| vec![s.to_string()];
        fn req<'a>(targets: &'a [String], catalog: &'a Catalog) -> Request<'a> {
            Request {
                targets,
                inventory: None,
                roles: None,
                cnis: &[],
                ports: None,
                catalog,
            }
        }
        let a = t("192.0.2.1");
        assert!(matches!(
            plan(&req(&a, &c), no_dns),
            Err(PlanError::NoPorts(n)) if n == "192.0.2.1"
        ));
        assert_eq!(plan(&req(&[], &c), no_dns), Err(PlanError::Nothing));
        let name = t("some-host");
        assert!(matches!(
            plan(&req(&name, &c), no_dns),
            Err(PlanError::Resolve(..))
        ));
        for bad in ["0.0.0.0", "224.0.0.1", "fe80::1", "ff02::1"] {
            let v = t(bad);
            assert!(
                matches!(plan(&req(&v, &c), no_dns), Err(PlanError::Target(..))),
                "{bad}"
            );
        }
        let ports = parse_ports("1-65535").unwrap_or_default();
        let many = t("192.0.2.0/29");
        let r = Request {
            ports: Some(&ports),
            ..req(&many, &c)
        };
        assert!(matches!(plan(&r, no_dns), Err(PlanError::TooMany)));
    }
}
