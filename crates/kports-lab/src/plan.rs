//! The lab's address plan: node names, namespaces, addresses and pod subnets.
//!
//! Everything here derives from two numbers (control-plane nodes, workers), so the state file
//! stores only those and every command recomputes the same plan. Addresses come from the
//! documentation ranges (192.0.2.0/24, 2001:db8::/64) and flannel's default pod network
//! (10.244.0.0/16), which never route anywhere outside the lab.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Prefix of every network namespace the lab creates; `down` removes every one that has it.
pub const NETNS_PREFIX: &str = "kports-";
/// The namespace that holds the fabric bridge the nodes' `eth0` links plug into.
pub const FABRIC: &str = "fabric";
/// Name of the bridge inside the fabric namespace.
pub const FABRIC_BRIDGE: &str = "fabric0";
/// UDP port of the VXLAN device, flannel's kernel default.
pub const VXLAN_PORT: u16 = 8472;
/// VXLAN network identifier flannel uses for `flannel.1`.
pub const VXLAN_ID: u32 = 1;
/// The pod network every node's pod subnet is carved from.
pub const POD_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 244, 0, 0), 16);
/// Limits that keep the lab small enough for a laptop (etcd wants an odd member count).
pub const MAX_CONTROL_PLANE: u8 = 5;
pub const MAX_WORKERS: u8 = 9;

/// How many nodes of each role: `--nodes CP,WORKERS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub control_plane: u8,
    pub workers: u8,
    /// How many of the workers (the first ones) also run an etcd member joined to the cluster,
    /// as RKE's etcd-and-worker nodes do (`--etcd-workers`).
    #[serde(default)]
    pub etcd_workers: u8,
}

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            control_plane: 1,
            workers: 2,
            etcd_workers: 0,
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.control_plane, self.workers)
    }
}

impl FromStr for Counts {
    type Err = String;

    fn from_str(s: &str) -> Result<Counts, String> {
        let usage = || {
            format!(
                "`{s}` is not CP,WORKERS (for example 1,2: one control-plane node and two workers)"
            )
        };
        let (cp, w) = s.split_once(',').ok_or_else(usage)?;
        let cp: u8 = cp.trim().parse().map_err(|_| usage())?;
        let w: u8 = w.trim().parse().map_err(|_| usage())?;
        if !(1..=MAX_CONTROL_PLANE).contains(&cp) {
            return Err(format!(
                "the lab needs 1 to {MAX_CONTROL_PLANE} control-plane nodes, not {cp}"
            ));
        }
        if w > MAX_WORKERS {
            return Err(format!(
                "the lab has room for at most {MAX_WORKERS} workers, not {w}"
            ));
        }
        Ok(Counts {
            control_plane: cp,
            workers: w,
            etcd_workers: 0,
        })
    }
}

/// What a node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// One node of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `cp1`, `w1`, ...: also the node's host name.
    pub name: String,
    pub role: Role,
    /// A worker that also runs an etcd member (a control-plane node always does).
    pub etcd: bool,
    /// Position in the plan; picks the pod subnet `10.244.INDEX.0/24` as flannel would.
    pub index: u8,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

impl Node {
    /// The node's roles as kports's catalog names them: every etcd member is an etcd node (a
    /// control-plane node with stacked etcd is `control-plane,etcd`, as kubeadm makes it).
    pub fn roles(&self) -> Vec<kports_core::catalog::Role> {
        use kports_core::catalog::Role as R;
        let mut v = vec![match self.role {
            Role::ControlPlane => R::ControlPlane,
            Role::Worker => R::Worker,
        }];
        if self.etcd {
            v.push(R::Etcd);
        }
        v
    }

    /// The node's network namespace.
    pub fn netns(&self) -> String {
        netns_name(&self.name)
    }

    /// Short name of the node's one pod (also its host name and `kports lab exec` target).
    pub fn pod_name(&self) -> String {
        format!("{}-pod", self.name)
    }

    /// The node's pod subnet (a /24).
    pub fn pod_subnet(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.index, 0)
    }

    /// Address of `cni0`, the pods' gateway.
    pub fn cni_gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.index, 1)
    }

    /// The pod's address.
    pub fn pod_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.index, 2)
    }

    /// Address of `flannel.1` (flannel puts the subnet's network address on it, as a /32).
    pub fn vtep_ip(&self) -> Ipv4Addr {
        self.pod_subnet()
    }

    /// MAC address of `flannel.1`: fixed per node so that every peer's FDB and neighbour
    /// entries can be written before the device exists, as flannel does from its lease.
    pub fn vtep_mac(&self) -> String {
        format!("02:6b:70:00:00:{:02x}", self.index)
    }

    /// The node's own addresses, which a component may bind to besides loopback and wildcards.
    pub fn addresses(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.ipv4), IpAddr::V6(self.ipv6)]
    }
}

/// The namespace name of a node, pod or the fabric called `short`.
pub fn netns_name(short: &str) -> String {
    format!("{NETNS_PREFIX}{short}")
}

/// Every node of a lab with `counts`: control-plane nodes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub nodes: Vec<Node>,
}

impl Plan {
    pub fn new(counts: Counts) -> Plan {
        let cps =
            (1..=counts.control_plane).map(|i| (Role::ControlPlane, format!("cp{i}"), 10 + i));
        let workers = (1..=counts.workers).map(|i| (Role::Worker, format!("w{i}"), 20 + i));
        let etcd_workers = counts.etcd_workers.min(counts.workers);
        let nodes = cps
            .chain(workers)
            .zip(0u8..)
            .map(|((role, name, last), index)| Node {
                etcd: role == Role::ControlPlane || last - 20 <= etcd_workers,
                name,
                role,
                index,
                ipv4: Ipv4Addr::new(192, 0, 2, last),
                // The same digits as the IPv4 address's last byte, so 192.0.2.21 is 2001:db8::21.
                ipv6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, hex_digits(last)),
            })
            .collect();
        Plan { nodes }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn control_plane(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::ControlPlane)
    }

    /// The nodes that run an etcd member: every control-plane node and the etcd workers.
    pub fn etcd_members(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.etcd)
    }

    /// The node kubelets and kube-proxies talk to (kubeadm without a load balancer).
    pub fn first_control_plane(&self) -> Option<&Node> {
        self.control_plane().next()
    }

    /// Short names of every namespace of the plan: the fabric, then each node and its pod.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![FABRIC.to_string()];
        for n in &self.nodes {
            v.push(n.name.clone());
            v.push(n.pod_name());
        }
        v
    }

    /// Resolves what a user typed (`cp1`, `kports-cp1`, `w2-pod`, `fabric`) to a namespace's
    /// short name.
    pub fn target(&self, typed: &str) -> Result<String, String> {
        let short = typed.strip_prefix(NETNS_PREFIX).unwrap_or(typed);
        if self.namespaces().iter().any(|n| n == short) {
            Ok(short.to_string())
        } else {
            Err(format!(
                "the lab has no node or pod `{typed}`; it has {}",
                self.namespaces().join(", ")
            ))
        }
    }

    /// Resolves a node name (no pods, no fabric), for faults.
    pub fn resolve_node(&self, typed: &str) -> Result<&Node, String> {
        let short = typed.strip_prefix(NETNS_PREFIX).unwrap_or(typed);
        self.node(short).ok_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            format!(
                "the lab has no node `{typed}`; its nodes are {}",
                names.join(", ")
            )
        })
    }
}

/// 21 -> 0x21: reads the decimal digits of `n` as hexadecimal.
fn hex_digits(n: u8) -> u16 {
    u16::from(n / 100) * 0x100 + u16::from(n / 10 % 10) * 0x10 + u16::from(n % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse() {
        assert_eq!(
            "1,2".parse::<Counts>(),
            Ok(Counts {
                control_plane: 1,
                workers: 2,
                etcd_workers: 0
            })
        );
        assert_eq!(
            " 3 , 0 ".parse::<Counts>(),
            Ok(Counts {
                control_plane: 3,
                workers: 0,
                etcd_workers: 0
            })
        );
        assert_eq!(Counts::default().to_string(), "1,2");
    }

    #[test]
    fn counts_reject_bad_input() {
        for bad in ["", "1", "1,", ",2", "a,b", "1,2,3", "-1,2", "1,-2", "300,1"] {
            let e = bad.parse::<Counts>().unwrap_err();
            assert!(e.contains("CP,WORKERS"), "{bad}: {e}");
        }
        assert!(
            "0,2"
                .parse::<Counts>()
                .unwrap_err()
                .contains("1 to 5 control-plane")
        );
        assert!(
            "6,2"
                .parse::<Counts>()
                .unwrap_err()
                .contains("1 to 5 control-plane")
        );
        assert!(
            "1,10"
                .parse::<Counts>()
                .unwrap_err()
                .contains("at most 9 workers")
        );
    }

    #[test]
    fn roles_as_the_catalog_names_them() {
        use kports_core::catalog::Role as R;
        let p = Plan::new(Counts {
            etcd_workers: 1,
            ..Counts::default()
        });
        let roles: Vec<Vec<R>> = p.nodes.iter().map(Node::roles).collect();
        assert_eq!(
            roles,
            [
                vec![R::ControlPlane, R::Etcd],
                vec![R::Worker, R::Etcd],
                vec![R::Worker]
            ]
        );
    }

    #[test]
    fn default_plan() {
        let p = Plan::new(Counts::default());
        let rows: Vec<(String, &str, String, String, String, String)> = p
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    n.role.as_str(),
                    n.ipv4.to_string(),
                    n.ipv6.to_string(),
                    n.pod_ip().to_string(),
                    n.vtep_mac(),
                )
            })
            .collect();
        let expected = [
            (
                "cp1",
                "control-plane",
                "192.0.2.11",
                "2001:db8::11",
                "10.244.0.2",
                "02:6b:70:00:00:00",
            ),
            (
                "w1",
                "worker",
                "192.0.2.21",
                "2001:db8::21",
                "10.244.1.2",
                "02:6b:70:00:00:01",
            ),
            (
                "w2",
                "worker",
                "192.0.2.22",
                "2001:db8::22",
                "10.244.2.2",
                "02:6b:70:00:00:02",
            ),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(a, b, c, d, e, f)| {
                (
                    a.to_string(),
                    *b,
                    c.to_string(),
                    d.to_string(),
                    e.to_string(),
                    f.to_string(),
                )
            })
            .collect();
        assert_eq!(rows, expected);
        assert_eq!(p.nodes[0].netns(), "kports-cp1");
        assert_eq!(p.nodes[2].cni_gateway().to_string(), "10.244.2.1");
        assert_eq!(p.nodes[2].vtep_ip().to_string(), "10.244.2.0");
    }

    #[test]
    fn largest_plan_has_distinct_addresses() {
        let p = Plan::new(Counts {
            control_plane: MAX_CONTROL_PLANE,
            workers: MAX_WORKERS,
            etcd_workers: 0,
        });
        assert_eq!(p.nodes.len(), 14);
        let distinct = |f: &dyn Fn(&Node) -> String| {
            p.nodes
                .iter()
                .map(f)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        assert_eq!(distinct(&|n| n.ipv4.to_string()), 14);
        assert_eq!(distinct(&|n| n.ipv6.to_string()), 14);
        assert_eq!(distinct(&|n| n.pod_subnet().to_string()), 14);
        assert_eq!(distinct(&|n| n.vtep_mac()), 14);
        assert_eq!(p.nodes[13].name, "w9");
        assert_eq!(p.nodes[13].ipv6.to_string(), "2001:db8::29");
    }

    #[test]
    fn targets() {
        let p = Plan::new(Counts::default());
        assert_eq!(p.target("cp1"), Ok("cp1".to_string()));
        assert_eq!(p.target("kports-w2"), Ok("w2".to_string()));
        assert_eq!(p.target("w1-pod"), Ok("w1-pod".to_string()));
        assert_eq!(p.target("fabric"), Ok("fabric".to_string()));
        let e = p.target("w3").unwrap_err();
        assert!(
            e.contains("no node or pod `w3`") && e.contains("cp1, cp1-pod, w1"),
            "{e}"
        );
        assert_eq!(
            p.resolve_node("kports-w1").map(|n| n.ipv4.to_string()),
            Ok("192.0.2.21".to_string())
        );
        assert!(
            p.resolve_node("w1-pod")
                .unwrap_err()
                .contains("its nodes are cp1, w1, w2")
        );
    }

    #[test]
    fn first_control_plane_is_cp1() {
        let p = Plan::new(Counts {
            control_plane: 3,
            workers: 1,
            etcd_workers: 0,
        });
        assert_eq!(
            p.first_control_plane().map(|n| n.name.as_str()),
            Some("cp1")
        );
        assert_eq!(p.control_plane().count(), 3);
    }
}
