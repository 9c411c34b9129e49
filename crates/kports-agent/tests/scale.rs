//! Peer selection at 5,000 simulated nodes: per-node probes and metric series stay under the
//! bound, the union covers every pair of roles that must talk, and one more node moves about
//! 1/n of the choices.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kports_agent::ProbeRun;
use kports_agent::metrics::Metrics;
use kports_agent::peers::{Cluster, Member, Need, Policy, needs, needs_between};
use kports_core::Proto;
use kports_core::catalog::{Catalog, Role};
use kports_probe::Status;
use kports_probe::row::Row;

const NODES: usize = 5_000;

fn members(n: usize) -> Vec<Member> {
    let mut m = Vec::with_capacity(n);
    m.extend((1..=3).map(|i| Member::new(format!("cp{i}"), [Role::ControlPlane])));
    m.extend((1..=3).map(|i| Member::new(format!("etcd{i}"), [Role::Etcd])));
    m.extend((m.len()..n).map(|i| Member::new(format!("w{i:05}"), [Role::Worker])));
    m
}

fn flannel_needs() -> Vec<Need> {
    needs(&Catalog::builtin().unwrap(), &["flannel".to_string()])
}

/// The rows one node's probes would give (every port open).
fn rows(me: &Member, peers: &[&Member], needs: &[Need]) -> Vec<Row> {
    peers
        .iter()
        .flat_map(|p| {
            needs_between(needs, me, p).map(|n| Row {
                source: me.name.clone(),
                target: p.name.clone(),
                target_address: "192.0.2.1".parse().unwrap(),
                proto: n.proto.into(),
                port: n.port,
                status: Status::Open,
                errno: None,
                latency_ms: Duration::from_millis(1),
                component: Some(n.component.clone()),
            })
        })
        .collect()
}

fn series(rows: Vec<Row>) -> usize {
    let m = Metrics::new();
    m.observe_probes(&ProbeRun {
        rows,
        took: Duration::from_secs(1),
    });
    m.series()
}

#[test]
fn five_thousand_nodes_stay_bounded_and_covered() {
    let all = members(NODES);
    let cluster = Cluster::new(all.clone());
    let policy = Policy::default();
    let needs = flannel_needs();
    let bound = policy.bound(&cluster);
    assert_eq!(bound, 6 + policy.k + 1);

    // The metric series of one peer with every port group, to scale the series bound.
    let groups: BTreeSet<&str> = needs.iter().map(|n| n.component.as_str()).collect();
    let max_ports = all[..8]
        .iter()
        .flat_map(|a| all[..8].iter().map(|b| needs_between(&needs, a, b).count()))
        .max()
        .unwrap();
    // Per peer: one `kports_peer_ports` series per group; per group one latency histogram;
    // the rest is fixed. Measured on a node that probes one peer of every kind.
    let fixed = series(Vec::new());
    let per_group_histogram = {
        let one = rows(&all[0], &[&all[1]], &needs);
        let g = one
            .iter()
            .filter_map(|r| r.component.clone())
            .collect::<BTreeSet<_>>()
            .len();
        (series(one) - fixed - g) / g
    };
    let series_bound = fixed + bound * groups.len() + groups.len() * per_group_histogram;

    let mut covered: BTreeSet<&Need> = BTreeSet::new();
    let mut probed_by: BTreeMap<&str, usize> = BTreeMap::new();
    let mut worker_to_cp = 0;
    let mut etcd_pairs = 0;
    let mut max_seen = (0, 0, 0);
    for me in cluster.members() {
        let peers = cluster.select(&me.name, &policy);
        assert!(
            peers.len() <= bound,
            "{} probes {} peers",
            me.name,
            peers.len()
        );
        let my_rows = rows(me, &peers, &needs);
        assert!(
            my_rows.len() <= bound * max_ports,
            "{}: {} probes",
            me.name,
            my_rows.len()
        );
        for p in &peers {
            let between: Vec<&Need> = needs_between(&needs, me, p).collect();
            if !between.is_empty() {
                *probed_by.entry(p.name.as_str()).or_default() += 1;
            }
            for n in &needs {
                if me.roles.contains(&n.from)
                    && p.roles.contains(&n.to)
                    && between
                        .iter()
                        .any(|b| (b.proto, b.port) == (n.proto, n.port))
                {
                    covered.insert(n);
                }
            }
            if me.roles.contains(&Role::Worker) && p.roles.contains(&Role::ControlPlane) {
                assert!(between.iter().any(|b| b.port == 6443));
                worker_to_cp += 1;
            }
            if me.roles.contains(&Role::Etcd) && p.roles.contains(&Role::Etcd) {
                assert!(between.iter().any(|b| b.port == 2380));
                etcd_pairs += 1;
            }
        }
        let s = series(my_rows.clone());
        assert!(
            s <= series_bound,
            "{}: {s} series > {series_bound}",
            me.name
        );
        if peers.len() > max_seen.0 {
            max_seen = (peers.len(), my_rows.len(), s);
        }
    }
    // The busiest node's numbers, for the record.
    eprintln!(
        "{NODES} nodes, k={}: at most {} peers, {} probes, {} series per node (bounds {bound}, {}, {series_bound})",
        policy.k,
        max_seen.0,
        max_seen.1,
        max_seen.2,
        bound * max_ports,
    );

    // Every pair of roles that must talk is covered by the union of the choices.
    let must: BTreeSet<&Need> = needs.iter().collect();
    let missing: Vec<_> = must.difference(&covered).collect();
    assert!(missing.is_empty(), "not covered: {missing:?}");
    let named = [
        (Role::Worker, Role::ControlPlane, Proto::Tcp, 6443),
        (Role::ControlPlane, Role::Worker, Proto::Tcp, 10250),
        (Role::Etcd, Role::Etcd, Proto::Tcp, 2380),
        (Role::ControlPlane, Role::ControlPlane, Proto::Tcp, 2380),
        (Role::Worker, Role::Worker, Proto::Udp, 8472),
        (Role::Worker, Role::ControlPlane, Proto::Udp, 8472),
        (Role::ControlPlane, Role::Worker, Proto::Udp, 8472),
    ];
    for (from, to, proto, port) in named {
        assert!(
            covered
                .iter()
                .any(|n| (n.from, n.to, n.proto, n.port) == (from, to, proto, port)),
            "{from:?} -> {to:?} {proto:?}/{port}"
        );
    }
    // Where the rule is "always", it holds for every pair, not only for the roles.
    assert_eq!(worker_to_cp, (NODES - 6) * 3);
    assert_eq!(etcd_pairs, 3 * 2);
    // Every Kubernetes node is probed by at least one peer that needs something of it.
    for m in cluster
        .members()
        .iter()
        .filter(|m| !m.roles.contains(&Role::Etcd))
    {
        assert!(
            probed_by.get(m.name.as_str()).copied().unwrap_or(0) >= 1,
            "{} unprobed",
            m.name
        );
    }
}

#[test]
fn one_more_node_moves_about_one_nth_of_the_choices() {
    let policy = Policy::default();
    let before = Cluster::new(members(NODES));
    let mut grown = members(NODES);
    grown.push(Member::new("w-new", [Role::Worker]));
    let after = Cluster::new(grown);
    let mut total = 0;
    let mut moved = 0;
    let mut chose_new = 0;
    for m in before.members() {
        let a: BTreeSet<&str> = before
            .select(&m.name, &policy)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let b: BTreeSet<&str> = after
            .select(&m.name, &policy)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        total += a.len();
        moved += a.difference(&b).count();
        chose_new += usize::from(b.contains("w-new"));
    }
    eprintln!("one node added to {NODES}: {moved} of {total} choices moved");
    // The new node displaces one choice wherever it is picked (about k nodes pick it, plus one
    // ring predecessor): about total/n choices, never a reshuffle.
    assert!(chose_new >= 1);
    assert_eq!(moved, chose_new);
    assert!(moved <= 2 * total / NODES + 2, "{moved} of {total}");
}
