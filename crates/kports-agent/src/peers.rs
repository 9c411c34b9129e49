//! Which peers a node probes, so that per-node work stays O(k) as the cluster grows.
//!
//! Up to [`Policy::full_mesh_up_to`] nodes, every node probes every other. Beyond that a node
//! probes:
//!
//! 1. every control-plane node (workers must reach the API server, and there are few of them);
//! 2. every etcd member, when it is one (members must reach each other on 2380);
//! 3. the [`Policy::k`] other nodes with the highest rendezvous score `score(me, peer)`
//!    (highest-random-weight hashing): each node's choice is its own, stable, and adding or
//!    removing one node changes about `k` choices in the whole cluster (1/n of them);
//! 4. its successor on a ring of all nodes ordered by the hash of their names, so that every
//!    node is probed by at least one other even when no score picked it.
//!
//! So a node probes at most `control planes + etcd members + k + 1` peers
//! ([`Policy::bound`]). What this does not give, and kports says so: at scale a control-plane
//! node checks the kubelet port (which only the control plane needs) of `k + 1` workers, a
//! sample, not all of them; every Kubernetes node is still probed by at least one peer on what
//! that peer needs of it (the overlay, at least), and every worker checks every API server.
//!
//! The hash is FNV-1a followed by the SplitMix64 finalizer, fixed here rather than taken from
//! the standard library (whose hasher may change between Rust versions), so agents of different
//! builds agree on the choices.

use std::collections::BTreeSet;

use kports_core::Proto;
use kports_core::catalog::{Catalog, Expect, Network, Peer, Role};

/// A node of the cluster as peer selection sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub name: String,
    pub roles: BTreeSet<Role>,
}

impl Member {
    pub fn new(name: impl Into<String>, roles: impl IntoIterator<Item = Role>) -> Member {
        Member {
            name: name.into(),
            roles: roles.into_iter().collect(),
        }
    }

    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// How many peers to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Up to this many nodes, every node probes every other.
    pub full_mesh_up_to: usize,
    /// Beyond it, how many peers each node picks by rendezvous score (on top of the control
    /// plane, the etcd members and its ring successor).
    pub k: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            full_mesh_up_to: 50,
            k: 16,
        }
    }
}

impl Policy {
    /// The most peers one node probes in `cluster` (the bound the selection keeps).
    pub fn bound(&self, cluster: &Cluster) -> usize {
        let n = cluster.members.len();
        if n <= self.full_mesh_up_to {
            return n.saturating_sub(1);
        }
        let always = cluster
            .members
            .iter()
            .filter(|m| m.has(Role::ControlPlane) || m.has(Role::Etcd))
            .count();
        always + self.k + 1
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stable hash of a node name.
pub fn name_hash(name: &str) -> u64 {
    mix(fnv1a(name.as_bytes()))
}

/// The rendezvous score of `peer` for `me` (from their name hashes).
fn score(me: u64, peer: u64) -> u64 {
    mix(me.rotate_left(29) ^ peer.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Every node of the cluster, ready for selection.
#[derive(Debug, Clone)]
pub struct Cluster {
    members: Vec<Member>,
    hashes: Vec<u64>,
    /// (hash, index) in hash order: the ring.
    ring: Vec<(u64, usize)>,
}

impl Cluster {
    /// The cluster of `members` (one per name: the first of duplicates is kept).
    pub fn new(mut members: Vec<Member>) -> Cluster {
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members.dedup_by(|a, b| a.name == b.name);
        let hashes: Vec<u64> = members.iter().map(|m| name_hash(&m.name)).collect();
        let mut ring: Vec<(u64, usize)> = hashes.iter().copied().zip(0..).collect();
        ring.sort_unstable();
        Cluster {
            members,
            hashes,
            ring,
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The peers `me` probes under `policy`, in name order. `me` need not be a member yet (an
    /// agent may start before its own Node is seen).
    pub fn select(&self, me: &str, policy: &Policy) -> Vec<&Member> {
        let mine = self.members.iter().find(|m| m.name == me);
        let others = || (0..self.members.len()).filter(|&i| self.members[i].name != me);
        if self.members.len() <= policy.full_mesh_up_to {
            return others().map(|i| &self.members[i]).collect();
        }
        let me_etcd = mine.is_some_and(|m| m.has(Role::Etcd) || m.has(Role::ControlPlane));
        let mut chosen = vec![false; self.members.len()];
        for i in others() {
            let m = &self.members[i];
            chosen[i] = m.has(Role::ControlPlane) || (me_etcd && m.has(Role::Etcd));
        }
        let h = name_hash(me);
        // The successor on the ring.
        let start = self.ring.partition_point(|(rh, _)| *rh <= h);
        if let Some(&(_, i)) = (0..self.ring.len())
            .map(|o| &self.ring[(start + o) % self.ring.len()])
            .find(|(_, i)| self.members[*i].name != me)
        {
            chosen[i] = true;
        }
        // The k best scores among the rest.
        let mut scored: Vec<(u64, usize)> = others()
            .filter(|&i| !chosen[i])
            .map(|i| (score(h, self.hashes[i]), i))
            .collect();
        let k = policy.k.min(scored.len());
        if k > 0 && k < scored.len() {
            scored.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        }
        for &(_, i) in &scored[..k] {
            chosen[i] = true;
        }
        (0..self.members.len())
            .filter(|&i| chosen[i])
            .map(|i| &self.members[i])
            .collect()
    }
}

/// A port that nodes of one role must reach on nodes of another (from the catalog).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub from: Role,
    pub to: Role,
    pub proto: Proto,
    pub port: u16,
    pub component: String,
}

/// Every port one node must reach on another, from the catalog's `roles` (where a port
/// listens) and `reached_by` (who needs it): a listening, single, host-network port of a node
/// component, of no CNI or of one in `cnis`.
pub fn needs(catalog: &Catalog, cnis: &[String]) -> Vec<Need> {
    let mut out = BTreeSet::new();
    for e in &catalog.entries {
        let Some(proto) = e.protocol.proto() else {
            continue;
        };
        let listens = e.expect == Expect::Listening
            && e.network == Network::Host
            && !e.addon
            && e.port.is_single()
            && e.cni.as_ref().is_none_or(|c| cnis.contains(c));
        if !listens {
            continue;
        }
        for peer in &e.reached_by {
            let from: &[Role] = match peer {
                Peer::ControlPlane | Peer::Apiserver => &[Role::ControlPlane],
                Peer::Nodes => &[Role::ControlPlane, Role::Worker],
                // The other members: nodes of the roles the entry itself runs on.
                Peer::Etcd => &e.roles,
                _ => &[],
            };
            for &f in from {
                for &t in &e.roles {
                    out.insert(Need {
                        from: f,
                        to: t,
                        proto,
                        port: e.port.first,
                        component: e.component.clone(),
                    });
                }
            }
        }
    }
    out.into_iter().collect()
}

/// The needs `from` has of `to`: what it probes on that peer.
pub fn needs_between<'a>(
    needs: &'a [Need],
    from: &'a Member,
    to: &'a Member,
) -> impl Iterator<Item = &'a Need> + 'a {
    let mut seen = BTreeSet::new();
    needs
        .iter()
        .filter(move |n| from.has(n.from) && to.has(n.to))
        .filter(move |n| seen.insert((n.proto, n.port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(workers: usize) -> Cluster {
        let mut m = vec![
            Member::new("cp1", [Role::ControlPlane]),
            Member::new("cp2", [Role::ControlPlane]),
        ];
        m.extend((0..workers).map(|i| Member::new(format!("w{i}"), [Role::Worker])));
        Cluster::new(m)
    }

    fn names(v: &[&Member]) -> Vec<String> {
        v.iter().map(|m| m.name.clone()).collect()
    }

    #[test]
    fn small_clusters_are_a_full_mesh() {
        let c = cluster(3);
        let p = Policy::default();
        assert_eq!(names(&c.select("w1", &p)), ["cp1", "cp2", "w0", "w2"]);
        assert_eq!(c.select("cp1", &p).len(), 4);
        assert_eq!(p.bound(&c), 4);
    }

    #[test]
    fn large_clusters_probe_the_control_plane_and_k_peers() {
        let c = cluster(200);
        let p = Policy {
            full_mesh_up_to: 50,
            k: 8,
        };
        let s = c.select("w7", &p);
        let n = names(&s);
        assert!(n.contains(&"cp1".to_string()) && n.contains(&"cp2".to_string()));
        assert!(!n.contains(&"w7".to_string()));
        // Two control planes, eight picks, and the ring successor unless a pick was it.
        assert!(s.len() == 11 || s.len() == 10, "{n:?}");
        assert!(s.len() <= p.bound(&c));
        // Stable: the same answer every time, and from a cluster built in another order.
        let mut shuffled = c.members().to_vec();
        shuffled.reverse();
        assert_eq!(names(&Cluster::new(shuffled).select("w7", &p)), n);
        // Not the same for every node.
        assert_ne!(names(&c.select("w8", &p)), n);
    }

    #[test]
    fn a_node_not_yet_seen_still_selects() {
        let c = cluster(100);
        let p = Policy {
            full_mesh_up_to: 10,
            k: 4,
        };
        let s = c.select("new-node", &p);
        assert!(s.len() >= 6 && s.len() <= 7, "{}", s.len());
    }

    #[test]
    fn name_hashes_are_fixed() {
        // Agents of different builds must agree: the hash is part of the behaviour.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(name_hash("cp1"), name_hash("cp1"));
        assert_ne!(name_hash("cp1"), name_hash("cp2"));
    }

    #[test]
    fn needs_come_from_the_catalog() {
        let catalog = Catalog::builtin().unwrap();
        let needs = needs(&catalog, &["flannel".to_string()]);
        let has = |from, to, proto, port| {
            needs
                .iter()
                .any(|n| n.from == from && n.to == to && n.proto == proto && n.port == port)
        };
        assert!(has(Role::Worker, Role::ControlPlane, Proto::Tcp, 6443));
        assert!(has(Role::ControlPlane, Role::Worker, Proto::Tcp, 10250));
        assert!(has(Role::Etcd, Role::Etcd, Proto::Tcp, 2380));
        assert!(has(
            Role::ControlPlane,
            Role::ControlPlane,
            Proto::Tcp,
            2380
        ));
        assert!(has(Role::Worker, Role::Worker, Proto::Udp, 8472));
        // Not needed between nodes: loopback-only ports, other CNIs' ports, workers to etcd.
        assert!(!has(Role::Worker, Role::ControlPlane, Proto::Tcp, 10259));
        assert!(!has(Role::Worker, Role::Worker, Proto::Tcp, 179));
        assert!(!has(Role::Worker, Role::Etcd, Proto::Tcp, 2380));
        assert!(!has(Role::Worker, Role::Worker, Proto::Tcp, 30000));
    }
}
