//! Peers from the Kubernetes API: one watch on Nodes (names, addresses, roles) and one on the
//! agent DaemonSet's pods (where the peer agents answer).
//!
//! Both go through kube-rs's `watcher`: it lists once, then watches from the list's
//! resourceVersion with bookmarks; when a watch ends (the API server closes it every few
//! minutes, a connection drops) it watches again from the last resourceVersion it saw, and
//! lists again only when the server answers `410 Gone` (that version is too old). Errors are
//! retried with backoff and do not end discovery; the last one is kept for the operator.
//!
//! The joins are pure ([`Inventory`]): events in, peers out, tested without a server. The
//! watch itself is tested against a local HTTP server that speaks the API's list and watch
//! wire format (`tests/discovery.rs`); no real API server runs in the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kports_core::catalog::Role;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::peers::Member;

/// The label prefix of a node's roles.
pub const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";

/// One node of the cluster as discovery knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub roles: BTreeSet<Role>,
    /// `InternalIP` addresses (one per family on dual-stack); `ExternalIP` ones when a node
    /// has no internal address.
    pub addresses: Vec<IpAddr>,
    /// The address of the kports agent running on it (its pod's IP; with `hostNetwork`, a node
    /// address), when one is running and ready.
    pub agent: Option<IpAddr>,
}

impl Peer {
    pub fn member(&self) -> Member {
        Member::new(self.name.clone(), self.roles.iter().copied())
    }
}

/// What discovery knows now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// Every node, in name order.
    pub peers: Vec<Peer>,
    /// Both initial lists have completed.
    pub synced: bool,
    /// The last watch error seen since discovery started (every error is retried with
    /// backoff).
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeInfo {
    roles: BTreeSet<Role>,
    addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PodInfo {
    node: String,
    ip: IpAddr,
}

/// The joined state of the two watches.
#[derive(Debug, Default)]
pub struct Inventory {
    nodes: BTreeMap<String, NodeInfo>,
    pods: BTreeMap<String, PodInfo>,
    node_init: Option<BTreeMap<String, NodeInfo>>,
    pod_init: Option<BTreeMap<String, PodInfo>>,
    nodes_synced: bool,
    pods_synced: bool,
}

/// A node's roles from its `node-role.kubernetes.io/*` labels; a node with neither a
/// control-plane nor an etcd label is a worker.
pub fn roles_of(node: &Node) -> BTreeSet<Role> {
    let mut roles = BTreeSet::new();
    for key in node.labels().keys() {
        match key.strip_prefix(ROLE_LABEL_PREFIX) {
            Some("control-plane" | "master") => roles.insert(Role::ControlPlane),
            Some("etcd") => roles.insert(Role::Etcd),
            Some("worker") => roles.insert(Role::Worker),
            _ => false,
        };
    }
    if !roles.contains(&Role::ControlPlane) && !roles.contains(&Role::Etcd) {
        roles.insert(Role::Worker);
    }
    roles
}

fn node_info(node: &Node) -> NodeInfo {
    let addrs = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let of_type = |t: &str| -> Vec<IpAddr> {
        addrs
            .iter()
            .filter(|a| a.type_ == t)
            .filter_map(|a| a.address.parse().ok())
            .collect()
    };
    let mut addresses = of_type("InternalIP");
    if addresses.is_empty() {
        addresses = of_type("ExternalIP");
    }
    NodeInfo {
        roles: roles_of(node),
        addresses,
    }
}

/// A running, ready pod's node and address.
fn pod_info(pod: &Pod) -> Option<PodInfo> {
    let node = pod.spec.as_ref()?.node_name.clone()?;
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if status.phase.as_deref() != Some("Running") || !ready {
        return None;
    }
    let ip = status.pod_ip.as_ref()?.parse().ok()?;
    Some(PodInfo { node, ip })
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

impl Inventory {
    pub fn apply_node(&mut self, event: Event<Node>) {
        match event {
            Event::Init => self.node_init = Some(BTreeMap::new()),
            Event::InitApply(n) => {
                if let Some(init) = &mut self.node_init {
                    init.insert(n.name_any(), node_info(&n));
                }
            }
            Event::InitDone => {
                if let Some(init) = self.node_init.take() {
                    self.nodes = init;
                }
                self.nodes_synced = true;
            }
            Event::Apply(n) => {
                self.nodes.insert(n.name_any(), node_info(&n));
            }
            Event::Delete(n) => {
                self.nodes.remove(&n.name_any());
            }
        }
    }

    pub fn apply_pod(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.pod_init = Some(BTreeMap::new()),
            Event::InitApply(p) => {
                if let (Some(init), Some(info)) = (&mut self.pod_init, pod_info(&p)) {
                    init.insert(pod_key(&p), info);
                }
            }
            Event::InitDone => {
                if let Some(init) = self.pod_init.take() {
                    self.pods = init;
                }
                self.pods_synced = true;
            }
            Event::Apply(p) => match pod_info(&p) {
                Some(info) => {
                    self.pods.insert(pod_key(&p), info);
                }
                None => {
                    self.pods.remove(&pod_key(&p));
                }
            },
            Event::Delete(p) => {
                self.pods.remove(&pod_key(&p));
            }
        }
    }

    /// Every node with its agent, in name order.
    pub fn peers(&self) -> Vec<Peer> {
        let agents: BTreeMap<&str, IpAddr> = self
            .pods
            .values()
            .map(|p| (p.node.as_str(), p.ip))
            .collect();
        self.nodes
            .iter()
            .map(|(name, n)| Peer {
                name: name.clone(),
                roles: n.roles.clone(),
                addresses: n.addresses.clone(),
                agent: agents.get(name.as_str()).copied(),
            })
            .collect()
    }

    pub fn synced(&self) -> bool {
        self.nodes_synced && self.pods_synced
    }
}

/// The peers of an inventory file (kports-probe's): each node's agent answers on its first
/// address (the agent runs with the host's network).
pub fn from_inventory(inv: &kports_probe::inventory::Inventory) -> Vec<Peer> {
    let mut peers: Vec<Peer> = inv
        .nodes
        .iter()
        .map(|n| Peer {
            name: n.name.clone(),
            roles: n.roles.iter().copied().collect(),
            addresses: n.addresses(),
            agent: Some(n.address),
        })
        .collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    peers
}

/// Whether this process runs in a Kubernetes pod (the kubelet sets the API's address).
pub fn in_a_pod() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// A client of the API server from the pod's service account (in-cluster configuration).
pub fn in_cluster_client() -> Result<Client, String> {
    let config = kube::Config::incluster()
        .map_err(|e| format!("cannot read the pod's in-cluster configuration: {e}"))?;
    Client::try_from(config).map_err(|e| format!("cannot make a Kubernetes client: {e}"))
}

/// A client of the API server that `file`'s current context names (an agent outside a pod).
pub async fn kubeconfig_client(file: &std::path::Path) -> Result<Client, String> {
    let what = file.display();
    let kubeconfig = kube::config::Kubeconfig::read_from(file)
        .map_err(|e| format!("cannot read the kubeconfig {what}: {e}"))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| format!("cannot use the kubeconfig {what}: {e}"))?;
    Client::try_from(config).map_err(|e| format!("cannot make a Kubernetes client: {e}"))
}

/// The namespace of this pod: `POD_NAMESPACE`, else the service account's namespace file.
pub fn own_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE").ok().or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|s| s.trim().to_string())
    })
}

/// Where the agent's own pods are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPods {
    pub namespace: String,
    /// A label selector matching the DaemonSet's pods (`app.kubernetes.io/name=kports`).
    pub selector: String,
}

/// One item of either watch (boxed: a Pod is a large struct).
enum Change {
    Node(Box<Result<Event<Node>, watcher::Error>>),
    Pod(Box<Result<Event<Pod>, watcher::Error>>),
}

/// Watches Nodes and the agent's pods through `client` and publishes every change to `tx`.
/// Runs until every receiver is gone.
pub async fn run(client: Client, pods: AgentPods, tx: watch::Sender<Discovered>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let agent_pods: Api<Pod> = Api::namespaced(client, &pods.namespace);
    let node_events = watcher(nodes, watcher::Config::default()).map(|e| Change::Node(Box::new(e)));
    let pod_events = watcher(
        agent_pods,
        watcher::Config::default().labels(&pods.selector),
    )
    .map(|e| Change::Pod(Box::new(e)));
    follow(futures::stream::select(node_events, pod_events), tx).await;
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    watcher::watcher(api, config).default_backoff()
}

async fn follow(changes: impl Stream<Item = Change>, tx: watch::Sender<Discovered>) {
    let mut inventory = Inventory::default();
    let mut last_error = None;
    tokio::pin!(changes);
    while let Some(change) = changes.next().await {
        // Objects of a list in progress change nothing published: joining the peers once
        // per listed object would cost O(n²) on a large cluster.
        let in_list = matches!(
            &change,
            Change::Node(e) if matches!(**e, Ok(Event::Init | Event::InitApply(_)))
        ) || matches!(
            &change,
            Change::Pod(e) if matches!(**e, Ok(Event::Init | Event::InitApply(_)))
        );
        match change {
            Change::Node(e) => match *e {
                Ok(e) => inventory.apply_node(e),
                Err(e) => last_error = Some(format!("watching Nodes: {e}")),
            },
            Change::Pod(e) => match *e {
                Ok(e) => inventory.apply_pod(e),
                Err(e) => last_error = Some(format!("watching the agent's pods: {e}")),
            },
        }
        if in_list {
            continue;
        }
        let now = Discovered {
            peers: inventory.peers(),
            synced: inventory.synced(),
            last_error: last_error.clone(),
        };
        tx.send_if_modified(|d| {
            let changed = *d != now;
            *d = now;
            changed
        });
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, addrs: &[(&str, &str)]) -> Node {
        let addresses: Vec<_> = addrs
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels, "resourceVersion": "1"},
            "status": {"addresses": addresses},
        }))
        .unwrap()
    }

    fn pod(name: &str, node: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system", "resourceVersion": "1"},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    #[test]
    fn inventory_nodes_are_peers_with_their_agents() {
        let inv = kports_probe::inventory::parse(
            "nodes:\n  - name: w1\n    address: 192.0.2.11\n    address6: 2001:db8::11\n    roles: [worker]\n  - name: cp1\n    address: 192.0.2.1\n    roles: [control-plane, etcd]\n",
            "inv.yaml",
        )
        .unwrap();
        let peers = from_inventory(&inv);
        assert_eq!(peers[0].name, "cp1");
        assert_eq!(
            peers[0].roles,
            [Role::ControlPlane, Role::Etcd].into_iter().collect()
        );
        assert_eq!(peers[1].addresses.len(), 2);
        assert_eq!(peers[1].agent, Some("192.0.2.11".parse().unwrap()));
    }

    #[test]
    fn roles_from_labels() {
        let roles = |labels| roles_of(&node("n", labels, &[]));
        let cp = [Role::ControlPlane].into_iter().collect::<BTreeSet<_>>();
        assert_eq!(
            roles(json!({"node-role.kubernetes.io/control-plane": ""})),
            cp
        );
        assert_eq!(roles(json!({"node-role.kubernetes.io/master": "true"})), cp);
        let w = [Role::Worker].into_iter().collect::<BTreeSet<_>>();
        assert_eq!(roles(json!({})), w);
        assert_eq!(roles(json!({"node-role.kubernetes.io/ingress": ""})), w);
        assert_eq!(roles(json!({"kubernetes.io/hostname": "n"})), w);
        let e = [Role::Etcd].into_iter().collect::<BTreeSet<_>>();
        assert_eq!(roles(json!({"node-role.kubernetes.io/etcd": ""})), e);
    }

    #[test]
    fn addresses_prefer_internal_ones() {
        let n = node(
            "n",
            json!({}),
            &[
                ("Hostname", "n"),
                ("ExternalIP", "198.51.100.7"),
                ("InternalIP", "192.0.2.7"),
                ("InternalIP", "2001:db8::7"),
            ],
        );
        assert_eq!(
            node_info(&n).addresses,
            [
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        let n = node(
            "n",
            json!({}),
            &[("ExternalIP", "198.51.100.7"), ("InternalIP", "not-an-ip")],
        );
        assert_eq!(
            node_info(&n).addresses,
            ["198.51.100.7".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn events_join_into_peers() {
        let mut inv = Inventory::default();
        inv.apply_node(Event::Init);
        inv.apply_node(Event::InitApply(node(
            "cp1",
            json!({"node-role.kubernetes.io/control-plane": ""}),
            &[("InternalIP", "192.0.2.1")],
        )));
        assert!(
            inv.peers().is_empty(),
            "a list in progress is not published"
        );
        inv.apply_node(Event::InitApply(node(
            "w1",
            json!({}),
            &[("InternalIP", "192.0.2.2")],
        )));
        inv.apply_node(Event::InitDone);
        assert!(!inv.synced());
        inv.apply_pod(Event::Init);
        inv.apply_pod(Event::InitApply(pod("kports-a", "cp1", "192.0.2.1", true)));
        inv.apply_pod(Event::InitApply(pod("kports-b", "w1", "192.0.2.2", false)));
        inv.apply_pod(Event::InitDone);
        assert!(inv.synced());
        let p = inv.peers();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].agent, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            p[1].agent, None,
            "an agent that is not ready is not a peer agent yet"
        );
        inv.apply_pod(Event::Apply(pod("kports-b", "w1", "192.0.2.2", true)));
        assert!(inv.peers()[1].agent.is_some());
        inv.apply_node(Event::Delete(node("w1", json!({}), &[])));
        assert_eq!(inv.peers().len(), 1);
        // A relist replaces everything at once: nodes gone meanwhile disappear.
        inv.apply_node(Event::Init);
        inv.apply_node(Event::InitApply(node("w9", json!({}), &[])));
        assert_eq!(inv.peers()[0].name, "cp1");
        inv.apply_node(Event::InitDone);
        let names: Vec<_> = inv.peers().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["w9"]);
    }
}
