//! What this node probes in one round: its selected peers ([`crate::peers`]) from the peers it
//! knows ([`crate::discovery`] or an inventory), each with the ports this node needs of it.
//!
//! Pure: the prober (kports-probe) takes the targets and returns rows for [`crate::ProbeRow`].

use std::net::IpAddr;

use crate::discovery::Peer;
use crate::peers::{Cluster, Member, Need, Policy, needs_between};

/// One peer to probe this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// Every address of the peer (one per family on dual-stack): each is probed.
    pub addresses: Vec<IpAddr>,
    /// The ports this node needs of it (never empty).
    pub needs: Vec<Need>,
}

/// The targets of node `me` among `known` under `policy`, in name order. A peer with no
/// address or of which `me` needs nothing is left out. `me` absent from `known` (its own Node
/// not seen yet) plans as a worker.
pub fn targets(me: &str, known: &[Peer], policy: &Policy, needs: &[Need]) -> Vec<Target> {
    let cluster = Cluster::new(known.iter().map(Peer::member).collect());
    let mine = known.iter().find(|p| p.name == me).map_or_else(
        || Member::new(me, [kports_core::catalog::Role::Worker]),
        Peer::member,
    );
    cluster
        .select(me, policy)
        .into_iter()
        .filter_map(|m| {
            let peer = known.iter().find(|p| p.name == m.name)?;
            let needs: Vec<Need> = needs_between(needs, &mine, m).cloned().collect();
            (!needs.is_empty() && !peer.addresses.is_empty()).then(|| Target {
                name: peer.name.clone(),
                addresses: peer.addresses.clone(),
                needs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kports_core::catalog::{Catalog, Role};

    fn peer(name: &str, role: Role, addr: Option<&str>) -> Peer {
        Peer {
            name: name.into(),
            roles: [role].into_iter().collect(),
            addresses: addr.into_iter().map(|a| a.parse().unwrap()).collect(),
            agent: None,
        }
    }

    #[test]
    fn a_worker_probes_the_api_server_and_the_overlay() {
        let needs = crate::peers::needs(&Catalog::builtin().unwrap(), &["flannel".to_string()]);
        let known = [
            peer("cp1", Role::ControlPlane, Some("192.0.2.1")),
            peer("w1", Role::Worker, Some("192.0.2.11")),
            peer("w2", Role::Worker, Some("192.0.2.12")),
            peer("w3", Role::Worker, None),
        ];
        let t = targets("w1", &known, &Policy::default(), &needs);
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["cp1", "w2"], "w3 has no address; w1 is itself");
        let ports = |t: &Target| t.needs.iter().map(|n| n.port).collect::<Vec<_>>();
        assert!(ports(&t[0]).contains(&6443));
        assert!(
            !ports(&t[0]).contains(&10250),
            "only the control plane needs the kubelet"
        );
        assert_eq!(ports(&t[1]), [8472]);
        let cp = targets("cp1", &known, &Policy::default(), &needs);
        assert!(ports(&cp[0]).contains(&10250));
        // Not yet in the list itself: planned as a worker.
        let new = targets("w9", &known, &Policy::default(), &needs);
        assert_eq!(new.len(), 3);
    }
}
