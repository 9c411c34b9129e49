//! `kports check`'s node prerequisites on a real kernel: each test makes its own network
//! namespace (`support::Ns`) set up as a flannel worker needs (forwarding on, a default route, a
//! VXLAN device with room for its encapsulation, a host name in /etc/hosts), and runs
//! `kports check` there in a UTS namespace of its own (`unshare --uts`) with a hosts file
//! bind-mounted in `ip netns exec`'s private mount namespace. Then it breaks one setting at a
//! time: each wrong setting gives exactly its finding, and the fixed one none.
//!
//! Root only. The namespace goes when the test ends, passed or failed. No traffic is sent: the
//! check reads settings and asks the kernel for routes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use kports_core::finding::FindingId;
use serde_json::Value;

use crate::support::{KPORTS, Ns, sh};

const HOST: &str = "kpq-node";

/// Whether `id` (a JSON finding id) is one of the node's prerequisites.
fn is_prereq(id: &str) -> bool {
    FindingId::PREREQ.iter().any(|p| p.as_str() == id)
}

/// A namespace set up as a flannel worker; removed on drop.
struct Node {
    ns: Ns,
}

impl Node {
    fn new() -> Node {
        let node = Node { ns: Ns::new() };
        node.hosts(&format!("127.0.0.1 localhost\n192.0.2.10 {HOST}\n"));
        for batch in [
            // Both ends inside: eth0p stands for the switch port.
            "link add eth0 type veth peer name eth0p",
            "link set eth0p up",
            "addr add 192.0.2.10/24 dev eth0",
            "link set eth0 up",
            "route add default via 192.0.2.1 dev eth0",
            "link add flannel.1 type vxlan id 1 local 192.0.2.10 dev eth0 dstport 8472 nolearning",
            "link set flannel.1 up",
            "link add cni0 type bridge",
            "link set cni0 up",
            // A pod's host-side veth, with the overlay's MTU as flannel sets it.
            "link add vethpod mtu 1450 type veth peer name podeth0 mtu 1450",
            "link set vethpod master cni0",
            "link set vethpod up",
        ] {
            node.ip(batch);
        }
        // An overlay peer whose route the check follows.
        sh(
            "bridge",
            &[
                "-n",
                &node.ns.name,
                "fdb",
                "append",
                "02:6b:70:00:00:01",
                "dev",
                "flannel.1",
                "dst",
                "192.0.2.1",
            ],
        );
        node.sysctl("net.ipv4.ip_forward", "1");
        node.sysctl("net.bridge.bridge-nf-call-iptables", "1");
        node
    }

    fn ip(&self, line: &str) {
        self.ns.ip(&line.split_whitespace().collect::<Vec<_>>());
    }

    fn sysctl(&self, key: &str, value: &str) {
        let out = self.ns.exec("sysctl", &["-qw", &format!("{key}={value}")]);
        assert!(
            out.status.success(),
            "sysctl {key}={value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The /etc/hosts the check sees.
    fn hosts(&self, text: &str) {
        std::fs::write(self.ns.dir().join("hosts"), text).unwrap();
    }

    /// The node's prerequisite findings from `kports check -o json` run as host `hostname`:
    /// (id, the message) sorted, and the exit code.
    fn check(&self, hostname: &str, cni: &str) -> (Vec<(String, String)>, i32) {
        self.check_with(hostname, cni, "")
    }

    /// As [`Node::check`], with more arguments for `kports check`.
    fn check_with(&self, hostname: &str, cni: &str, extra: &str) -> (Vec<(String, String)>, i32) {
        let script = format!(
            "mount --bind {} /etc/hosts && hostname {hostname} && exec {KPORTS} check --role worker --cni {cni} --no-firewall --fail-on error -o json {extra}",
            self.ns.dir().join("hosts").display()
        );
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns.name,
                "unshare",
                "--uts",
                "sh",
                "-c",
            ])
            .arg(&script)
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let mut v: Vec<(String, String)> = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| is_prereq(f["id"].as_str().unwrap()))
            .map(|f| {
                assert!(
                    f["fix"].is_string() || f["id"] == FindingId::SettingUnknown.as_str(),
                    "{f}"
                );
                (
                    f["id"].as_str().unwrap().to_string(),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        (v, out.status.code().unwrap_or(-1))
    }

    fn ids(&self, hostname: &str, cni: &str) -> BTreeSet<String> {
        self.check(hostname, cni)
            .0
            .into_iter()
            .map(|f| f.0)
            .collect()
    }

    /// Only `id` (however many times), then none once `fix` ran.
    fn breaks(&self, id: &str, hostname: &str, cni: &str) {
        let got = self.ids(hostname, cni);
        assert_eq!(
            got,
            BTreeSet::from([id.to_string()]),
            "{:#?}",
            self.check(hostname, cni)
        );
    }

    fn clean(&self, hostname: &str, cni: &str) {
        let (got, _) = self.check(hostname, cni);
        assert_eq!(got, [], "{}", self.ns.name);
    }
}

#[test]
fn a_worker_set_up_right_has_no_prerequisite_finding() {
    let node = Node::new();
    node.clean(HOST, "flannel");
}

#[test]
fn forwarding_and_bridge_netfilter_off_each_give_their_finding() {
    let node = Node::new();
    node.sysctl("net.ipv4.ip_forward", "0");
    node.breaks(FindingId::IpForwardOff.as_str(), HOST, "flannel");
    // An error: --fail-on error fails the check.
    assert_eq!(node.check(HOST, "flannel").1, 1);
    node.sysctl("net.ipv4.ip_forward", "1");
    node.clean(HOST, "flannel");
    node.sysctl("net.bridge.bridge-nf-call-iptables", "0");
    node.breaks(FindingId::BridgeNfCallOff.as_str(), HOST, "flannel");
    node.sysctl("net.bridge.bridge-nf-call-iptables", "1");
    node.clean(HOST, "flannel");
}

#[test]
fn host_name_invalid_or_resolving_elsewhere() {
    let node = Node::new();
    node.hosts("192.0.2.10 Node1\n");
    node.breaks(FindingId::HostnameInvalid.as_str(), "Node1", "flannel");
    node.hosts(&format!("192.0.2.99 {HOST}\n"));
    node.breaks(FindingId::HostnameNotLocal.as_str(), HOST, "flannel");
    node.hosts(&format!("192.0.2.10 {HOST}\n"));
    node.clean(HOST, "flannel");
}

#[test]
fn overlay_mtu_without_room_for_vxlan() {
    let node = Node::new();
    // The kernel refuses a VXLAN MTU above its device's less 50; a smaller NIC MTU set later
    // leaves the overlay too large, as on a node whose NIC MTU changed.
    node.ip("link set eth0 mtu 1480");
    node.breaks(FindingId::OverlayMtuTooLarge.as_str(), HOST, "flannel");
    node.ip("link set eth0 mtu 1500");
    node.clean(HOST, "flannel");
    node.ip("link set vethpod mtu 1500");
    node.breaks(FindingId::PodMtuExceedsOverlay.as_str(), HOST, "flannel");
    node.ip("link set vethpod mtu 1450");
    node.clean(HOST, "flannel");
}

#[test]
fn ephemeral_range_over_the_cluster_ports() {
    let node = Node::new();
    node.sysctl("net.ipv4.ip_local_port_range", "10000 60999");
    let got = node.ids(HOST, "flannel");
    assert_eq!(
        got,
        BTreeSet::from([
            FindingId::EphemeralOverlapsNodeport.as_str().to_string(),
            FindingId::EphemeralOverlapsPort.as_str().to_string()
        ])
    );
    node.sysctl("net.ipv4.ip_local_port_range", "32768 60999");
    node.clean(HOST, "flannel");
}

#[test]
fn strict_rp_filter_on_a_calico_device() {
    let node = Node::new();
    node.ip("link add cali0a1b mtu 1450 type veth peer name pod0a1b mtu 1450");
    node.sysctl("net.ipv4.conf.all.rp_filter", "0");
    node.sysctl("net.ipv4.conf.cali0a1b.rp_filter", "1");
    // Flannel alone does not need it loose.
    node.clean(HOST, "flannel");
    node.breaks(FindingId::RpFilterStrict.as_str(), HOST, "flannel,calico");
    node.sysctl("net.ipv4.conf.cali0a1b.rp_filter", "2");
    node.clean(HOST, "flannel,calico");
}

#[test]
fn no_default_route_and_a_link_without_carrier() {
    let node = Node::new();
    node.ip("route del default");
    // Before kubeadm runs, it will pick the node's address from the default route. (With no
    // kubelet running, a check after install cannot tell whether it is given --node-ip.)
    let ids_of =
        |found: Vec<(String, String)>| -> Vec<String> { found.into_iter().map(|f| f.0).collect() };
    assert_eq!(
        ids_of(node.check_with(HOST, "flannel", "--pre-install").0),
        [FindingId::NoDefaultRoute.as_str()]
    );
    node.clean(HOST, "flannel");
    node.ip("route add default via 192.0.2.1 dev eth0");
    assert_eq!(
        ids_of(node.check_with(HOST, "flannel", "--pre-install").0),
        [] as [&str; 0]
    );
    node.ip("link set eth0p down");
    node.breaks(FindingId::PathLinkDown.as_str(), HOST, "flannel");
    let (found, _) = node.check(HOST, "flannel");
    assert!(found[0].1.starts_with("eth0 has no carrier"), "{found:?}");
    node.ip("link set eth0p up");
    node.clean(HOST, "flannel");
}

#[test]
fn settings_are_read_per_network_namespace() {
    use kports_core::settings::Known;
    let node = Node::new();
    node.sysctl("net.ipv4.ip_local_port_range", "40000 50000");
    node.sysctl("net.ipv4.conf.eth0.rp_filter", "2");
    let path = PathBuf::from("/run/netns").join(&node.ns.name);
    let s = kports_linux::settings::read_in(
        &path,
        vec![("192.0.2.1".parse().unwrap(), "a test peer".into())],
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(s.ip_forward, Known::Known(1));
    assert_eq!(
        s.local_port_range,
        Known::Known(kports_core::catalog::PortRange {
            first: 40000,
            last: 50000
        })
    );
    assert_eq!(s.rp_filter_of("eth0").get().copied(), Some(2));
    let fl = s.link("flannel.1").unwrap();
    assert_eq!((fl.kind.as_str(), fl.mtu), ("vxlan", 1450));
    assert_eq!(fl.underlay.as_deref(), Some("eth0"));
    assert_eq!(s.default_routes(false).len(), 1);
    assert_eq!(
        s.paths.len(),
        1,
        "the test peer and the fdb peer are one address"
    );
    assert_eq!(s.paths[0].dev, Known::Known("eth0".to_string()));
    // The caller's own namespace is another one.
    let here = kports_linux::settings::read(&[], std::time::Duration::from_secs(10));
    assert!(here.link("flannel.1").is_none() || here.local_port_range != s.local_port_range);
}
