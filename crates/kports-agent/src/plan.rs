//! What this node probes in one round: its selected peers ([`crate::peers`]) from the peers it
//! knows ([`crate::discovery`] or an inventory), each with the ports this node needs of it.
//!
//! [`targets`] and [`planned`] are pure; [`probe`] runs the plan with kports-probe (bounded in
//! concurrency, each probe within its timeout) and gives its rows.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use kports_core::Proto;
use kports_core::catalog::Role;
use kports_probe::plan::Planned;

use crate::discovery::Peer;
use crate::peers::{Cluster, Member, Need, Policy, needs_between};
use crate::state::ProbeRun;

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

/// Every probe of `targets`: each address of each peer, each port needed of it; the ports of
/// `main_only` (the CNI's overlay, which runs over one address family) at the peer's first
/// address only, as `kports report --probe-peers` plans them.
pub fn planned(targets: &[Target], main_only: &[(Proto, u16)]) -> Vec<Planned> {
    let mut out = Vec::new();
    for t in targets {
        for (i, addr) in t.addresses.iter().enumerate() {
            for n in &t.needs {
                if i > 0 && main_only.contains(&(n.proto, n.port)) {
                    continue;
                }
                out.push(Planned {
                    target: t.name.clone(),
                    probe: kports_probe::Probe {
                        addr: *addr,
                        port: n.port,
                        transport: n.proto.into(),
                    },
                    component: Some(n.component.clone()),
                });
            }
        }
    }
    out
}

/// The ports probed at a peer's first (main) address only: the CNIs' (an overlay runs over
/// one address family) and those a component binds to one of the node's addresses (etcd's, on
/// the address it advertises).
pub fn main_address_only(catalog: &kports_core::catalog::Catalog) -> Vec<(Proto, u16)> {
    catalog
        .entries
        .iter()
        .filter(|e| e.cni.is_some() || e.bind == kports_core::catalog::BindScope::Node)
        .filter_map(|e| Some((e.protocol.proto()?, e.port.first)))
        .collect()
}

/// Probes `targets` from `me` and gives the rows of `kports probe -o json`. Blocking: the
/// probes run on a current-thread runtime of their own (call it from a blocking task).
pub fn probe(
    me: &str,
    targets: &[Target],
    main_only: &[(Proto, u16)],
    opts: kports_probe::Options,
) -> Result<ProbeRun, String> {
    let started = Instant::now();
    let plan = planned(targets, main_only);
    let probes: Vec<kports_probe::Probe> = plan.iter().map(|p| p.probe).collect();
    let outcomes =
        kports_probe::probe::run_blocking(&probes, opts, |_, _| {}).map_err(|e| e.to_string())?;
    Ok(ProbeRun {
        rows: kports_probe::row::rows(me, &plan, &outcomes),
        took: started.elapsed(),
    })
}

/// The UDP ports peers of any role need of a node with `roles`: where its responders answer.
pub fn udp_ports_of(needs: &[Need], roles: &BTreeSet<Role>) -> Vec<u16> {
    let ports: BTreeSet<u16> = needs
        .iter()
        .filter(|n| n.proto == Proto::Udp && roles.contains(&n.to))
        .map(|n| n.port)
        .collect();
    ports.into_iter().collect()
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
        let probes = planned(&t, &[]);
        assert_eq!(probes.len(), t[0].needs.len() + 1);
        // A dual-stack peer: every port at both addresses, the overlay's at the first only.
        let mut dual = t[1].clone();
        dual.addresses.push("2001:db8::12".parse().unwrap());
        dual.needs.push(Need {
            from: Role::Worker,
            to: Role::Worker,
            proto: Proto::Tcp,
            port: 10256,
            component: "kube-proxy".into(),
        });
        let p = planned(&[dual], &[(Proto::Udp, 8472)]);
        let got: Vec<(u16, bool)> = p
            .iter()
            .map(|p| (p.probe.port, p.probe.addr.is_ipv6()))
            .collect();
        assert_eq!(got, [(8472, false), (10256, false), (10256, true)]);
        assert!(probes.iter().any(|p| p.target == "w2"
            && p.probe.port == 8472
            && p.probe.transport == kports_probe::Transport::Udp
            && p.component.as_deref() == Some("flannel")));
        let main_only = main_address_only(&Catalog::builtin().unwrap());
        assert!(main_only.contains(&(Proto::Udp, 8472)));
        assert!(main_only.contains(&(Proto::Tcp, 2380)));
        assert!(!main_only.iter().any(|(_, p)| *p == 10250));
        let worker: BTreeSet<Role> = [Role::Worker].into_iter().collect();
        assert_eq!(udp_ports_of(&needs, &worker), [8472]);
    }

    #[test]
    fn probes_give_rows_of_the_plan() {
        // A listener on loopback and a port nothing listens on.
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open_port = open.local_addr().unwrap().port();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let need = |port| Need {
            from: Role::Worker,
            to: Role::ControlPlane,
            proto: Proto::Tcp,
            port,
            component: "kube-apiserver".into(),
        };
        let t = [Target {
            name: "cp1".into(),
            addresses: vec!["127.0.0.1".parse().unwrap()],
            needs: vec![need(open_port), need(closed_port)],
        }];
        let opts = kports_probe::Options {
            timeout: std::time::Duration::from_secs(5),
            concurrency: 4,
        };
        let run = probe("w1", &t, &[], opts).unwrap();
        let got: Vec<(u16, kports_probe::Status, &str)> = run
            .rows
            .iter()
            .map(|r| (r.port, r.status, r.source.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (open_port, kports_probe::Status::Open, "w1"),
                (closed_port, kports_probe::Status::Refused, "w1")
            ]
        );
    }
}
