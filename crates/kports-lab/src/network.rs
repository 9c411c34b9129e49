//! Building the lab's network from the plan, with `ip` and `bridge` batches.
//!
//! Nothing here touches the host's namespace: every link is created inside a lab namespace
//! (`ip -n`), the fabric bridge has no address and no uplink, and no namespace gets a default
//! route, so lab traffic cannot leave the lab. The batch contents are pure functions so tests
//! read exactly what will be run.

use anyhow::Context as _;

use crate::plan::{
    FABRIC, FABRIC_BRIDGE, Node, POD_NETWORK, Plan, VXLAN_ID, VXLAN_PORT, netns_name,
};
use crate::state::Paths;
use crate::sys;

/// MTU of pod interfaces: the fabric's 1500 minus VXLAN's 50 bytes, as flannel sets it.
const POD_MTU: u32 = 1450;

/// Name of a node's port on the fabric bridge.
pub fn fabric_port(node: &Node) -> String {
    format!("veth-{}", node.name)
}

/// The fabric namespace's batch: the bridge and one port per node, whose peer is the node's
/// `eth0`.
pub fn fabric_batch(plan: &Plan) -> Vec<String> {
    let mut v = vec![
        "link set lo up".to_string(),
        format!("link add {FABRIC_BRIDGE} type bridge"),
        format!("link set {FABRIC_BRIDGE} up"),
    ];
    for n in &plan.nodes {
        let port = fabric_port(n);
        v.push(format!(
            "link add {port} type veth peer name eth0 netns {}",
            n.netns()
        ));
        v.push(format!("link set {port} master {FABRIC_BRIDGE}"));
        v.push(format!("link set {port} up"));
    }
    v
}

/// A node's batch: `eth0`'s addresses, `cni0` with the pod's veth, `flannel.1`, and a route,
/// a permanent neighbour entry per peer's VTEP (as flannel writes them).
pub fn node_batch(plan: &Plan, n: &Node) -> Vec<String> {
    let pod_veth = format!("veth-{}", n.pod_name());
    let mut v = vec![
        "link set lo up".to_string(),
        format!("addr add {}/24 dev eth0", n.ipv4),
        // nodad: the address is usable at once instead of after duplicate detection.
        format!("addr add {}/64 dev eth0 nodad", n.ipv6),
        "link set eth0 up".into(),
        "link add cni0 type bridge".into(),
        format!("addr add {}/24 dev cni0", n.cni_gateway()),
        "link set cni0 up".into(),
        format!(
            "link add {pod_veth} mtu {POD_MTU} type veth peer name eth0 mtu {POD_MTU} netns {}",
            netns_name(&n.pod_name())
        ),
        format!("link set {pod_veth} master cni0"),
        format!("link set {pod_veth} up"),
        format!(
            "link add flannel.1 type vxlan id {VXLAN_ID} local {} dev eth0 dstport {VXLAN_PORT} nolearning",
            n.ipv4
        ),
        format!("link set flannel.1 address {}", n.vtep_mac()),
        format!("addr add {}/32 dev flannel.1", n.vtep_ip()),
        "link set flannel.1 up".into(),
    ];
    for peer in plan.nodes.iter().filter(|p| p.name != n.name) {
        v.push(format!(
            "route add {}/24 via {} dev flannel.1 onlink",
            peer.pod_subnet(),
            peer.vtep_ip()
        ));
        v.push(format!(
            "neigh add {} lladdr {} dev flannel.1 nud permanent",
            peer.vtep_ip(),
            peer.vtep_mac()
        ));
    }
    v
}

/// A node's `bridge` batch: where to send each peer's VTEP MAC (the VXLAN forwarding table).
pub fn fdb_batch(plan: &Plan, n: &Node) -> Vec<String> {
    plan.nodes
        .iter()
        .filter(|p| p.name != n.name)
        .map(|p| format!("fdb append {} dev flannel.1 dst {}", p.vtep_mac(), p.ipv4))
        .collect()
}

/// A pod's batch: its address and a route to the pod network through `cni0` (no default
/// route: the lab has no way out).
pub fn pod_batch(n: &Node) -> Vec<String> {
    let (net, len) = POD_NETWORK;
    vec![
        "link set lo up".into(),
        format!("addr add {}/24 dev eth0", n.pod_ip()),
        "link set eth0 up".into(),
        format!("route add {net}/{len} via {}", n.cni_gateway()),
    ]
}

/// The lab's /etc/hosts: every node's name with its addresses, as a cluster's DNS or hosts
/// files give them (kubeadm warns about a host name that does not resolve).
pub fn hosts_file(plan: &Plan) -> String {
    let mut s = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for n in &plan.nodes {
        s.push_str(&format!("{} {}\n{} {}\n", n.ipv4, n.name, n.ipv6, n.name));
    }
    s
}

/// Creates every namespace and link of `plan`.
pub fn build(paths: &Paths, plan: &Plan) -> anyhow::Result<()> {
    std::fs::create_dir_all(paths.root.join("uts")).context("cannot create the UTS directory")?;
    std::fs::write(paths.hosts(), hosts_file(plan))
        .with_context(|| format!("cannot write {}", paths.hosts().display()))?;
    for short in plan.namespaces() {
        let name = netns_name(&short);
        sys::run("ip", &["netns", "add", &name], None)?;
        sys::create_uts(&paths.uts(&short), &short)?;
    }
    sys::ip_batch(FABRIC, &fabric_batch(plan))?;
    for n in &plan.nodes {
        sys::ip_batch(&n.name, &node_batch(plan, n))?;
        let fdb = fdb_batch(plan, n);
        if !fdb.is_empty() {
            sys::run(
                "bridge",
                &["-n", &n.netns(), "-batch", "-"],
                Some(&(fdb.join("\n") + "\n")),
            )
            .with_context(|| format!("cannot program the VXLAN forwarding table of {}", n.name))?;
        }
        sys::ip_batch(&n.pod_name(), &pod_batch(n))?;
        sys::netns_sysctl(&n.name, "net.ipv4.ip_forward", "1")?;
    }
    Ok(())
}

/// Takes a node's link to the fabric down or up: from the node, `eth0` loses its carrier, as
/// when a cable is pulled; its addresses and routes stay.
pub fn set_link(n: &Node, up: bool) -> anyhow::Result<()> {
    let port = fabric_port(n);
    let state = if up { "up" } else { "down" };
    sys::run(
        "ip",
        &["-n", &netns_name(FABRIC), "link", "set", &port, state],
        None,
    )
    .with_context(|| format!("cannot take {}'s link {state}", n.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Counts;

    #[test]
    fn fabric_has_one_port_per_node_and_no_address() {
        let plan = Plan::new(Counts::default());
        let b = fabric_batch(&plan);
        assert!(
            b.contains(&"link add veth-w2 type veth peer name eth0 netns kports-w2".to_string())
        );
        assert_eq!(b.iter().filter(|l| l.contains("master fabric0")).count(), 3);
        assert!(
            !b.iter()
                .any(|l| l.starts_with("addr") || l.starts_with("route"))
        );
    }

    #[test]
    fn node_reaches_every_peer_through_flannel() {
        let plan = Plan::new(Counts::default());
        let w1 = plan.node("w1").unwrap();
        let b = node_batch(&plan, w1);
        assert!(b.contains(&"addr add 192.0.2.21/24 dev eth0".to_string()));
        assert!(b.contains(&"addr add 2001:db8::21/64 dev eth0 nodad".to_string()));
        assert!(b.contains(
            &"link add flannel.1 type vxlan id 1 local 192.0.2.21 dev eth0 dstport 8472 nolearning".to_string()
        ));
        assert!(
            b.contains(&"route add 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink".to_string())
        );
        assert!(
            b.contains(
                &"neigh add 10.244.2.0 lladdr 02:6b:70:00:00:02 dev flannel.1 nud permanent"
                    .to_string()
            )
        );
        // No route to its own subnet through the tunnel, and no default route anywhere.
        assert!(!b.iter().any(|l| l.contains("route add 10.244.1.0")));
        assert!(!b.iter().any(|l| l.contains("default")));
        assert_eq!(
            fdb_batch(&plan, w1),
            [
                "fdb append 02:6b:70:00:00:00 dev flannel.1 dst 192.0.2.11",
                "fdb append 02:6b:70:00:00:02 dev flannel.1 dst 192.0.2.22"
            ]
        );
    }

    #[test]
    fn pod_routes_only_the_pod_network() {
        let plan = Plan::new(Counts::default());
        let b = pod_batch(plan.node("w2").unwrap());
        assert_eq!(b[1], "addr add 10.244.2.2/24 dev eth0");
        assert_eq!(b[3], "route add 10.244.0.0/16 via 10.244.2.1");
    }

    #[test]
    fn hosts_file_names_every_node() {
        let plan = Plan::new(Counts::default());
        let h = hosts_file(&plan);
        assert!(h.starts_with("127.0.0.1 localhost\n"), "{h}");
        assert!(h.contains("192.0.2.11 cp1\n"), "{h}");
        assert!(h.contains("192.0.2.21 w1\n2001:db8::21 w1\n"), "{h}");
        assert_eq!(h.lines().count(), 2 + 2 * plan.nodes.len());
    }

    #[test]
    fn single_node_has_no_peers() {
        let plan = Plan::new(Counts {
            control_plane: 1,
            workers: 0,
            etcd_workers: 0,
        });
        let cp1 = plan.node("cp1").unwrap();
        assert!(fdb_batch(&plan, cp1).is_empty());
        assert!(
            !node_batch(&plan, cp1)
                .iter()
                .any(|l| l.starts_with("route"))
        );
    }
}
