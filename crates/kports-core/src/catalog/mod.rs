//! The port catalog: every port a node of each role and CNI uses, as data.
//!
//! The built-in catalog is `catalog/ports.toml`, compiled into the binary; a user's file in the
//! same format extends or overrides it (custom NodePort range, external etcd, non-default ports).
//! Each entry is one (component, protocol, port or range) with what it is for, who must reach
//! it, where kubeadm binds it, which roles and CNI it belongs to, and where the facts come from.
//! Parsing never panics: a bad file is refused with the line, the column and the reason, both for
//! TOML errors and for entries that parse but make no sense (port 0, a backwards range, an unknown
//! role, the same key twice).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::finding::FindingId;

mod parse;

use parse::{apply, err_at, new_entry, parse_file, ports, validate};

/// The built-in catalog's text.
pub const BUILTIN: &str = include_str!("../../catalog/ports.toml");
/// How the built-in catalog is named in errors and in `source` of user entries.
pub const BUILTIN_NAME: &str = "builtin catalog";

/// `readonly-port-open, legacy-insecure-port, forbidden-port-open`.
fn absent_findings() -> String {
    FindingId::ABSENT.map(FindingId::as_str).join(", ")
}

/// A catalog file that kports refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct CatalogError {
    /// File name as the user gave it (or [`BUILTIN_NAME`]).
    pub file: String,
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    pub message: String,
}

/// Transport (or IP) protocol of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// An IP protocol rather than a port (IP-in-IP 4, GRE 47, ESP 50): `port` holds its number.
    Ip,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Ip => "ip",
        }
    }

    /// The census protocol, for tcp and udp.
    pub fn proto(self) -> Option<crate::Proto> {
        match self {
            Protocol::Tcp => Some(crate::Proto::Tcp),
            Protocol::Udp => Some(crate::Proto::Udp),
            Protocol::Ip => None,
        }
    }
}

/// A port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(p: u16) -> PortRange {
        PortRange { first: p, last: p }
    }

    pub fn contains(self, p: u16) -> bool {
        (self.first..=self.last).contains(&p)
    }

    pub fn is_single(self) -> bool {
        self.first == self.last
    }

    /// A port (`10250`) or a range (`30000-32767`) as a user types it: every command parses
    /// ports with this, so each says the same about `0` or `70000`.
    pub fn parse(s: &str) -> Result<PortRange, String> {
        match s.split_once('-') {
            Some((a, b)) => {
                let (first, last) = (parse_port(a)?, parse_port(b)?);
                if first > last {
                    return Err(format!("the range {first}-{last} is backwards"));
                }
                Ok(PortRange { first, last })
            }
            None => parse_port(s).map(PortRange::single),
        }
    }
}

/// A port number, 1-65535 (0 is no port: the kernel picks one).
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{}` is not a port number (1-65535)", s.trim())),
        Ok(n) => Ok(n),
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Serialized as in the TOML: a number for one port, `"first-last"` for a range.
impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_single() {
            s.serialize_u16(self.first)
        } else {
            s.serialize_str(&self.to_string())
        }
    }
}

/// Who needs to reach a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Control-plane nodes only (the API server calling the kubelet or etcd's client port).
    ControlPlane,
    /// The other members of the etcd cluster (raft on 2380), wherever they run: on control-plane
    /// nodes (stacked), dedicated hosts, or workers that are etcd members too.
    EtcdPeers,
    /// Every node of the cluster (overlay networks, BGP).
    Nodes,
    /// Anyone who uses the cluster (API clients, NodePort clients).
    All,
    /// External load balancers' health checks.
    LoadBalancers,
    /// The node itself only (over loopback): open to no other source.
    SelfOnly,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ControlPlane => "control-plane",
            SourceKind::EtcdPeers => "etcd-peers",
            SourceKind::Nodes => "nodes",
            SourceKind::All => "all",
            SourceKind::LoadBalancers => "load-balancers",
            SourceKind::SelfOnly => "self",
        }
    }
}

impl SourceKind {
    /// How many hosts the kind lets in, widest highest: All > Nodes > ControlPlane >
    /// EtcdPeers > LoadBalancers > SelfOnly.
    fn width(self) -> u8 {
        match self {
            SourceKind::All => 5,
            SourceKind::Nodes => 4,
            SourceKind::ControlPlane => 3,
            SourceKind::EtcdPeers => 2,
            SourceKind::LoadBalancers => 1,
            SourceKind::SelfOnly => 0,
        }
    }

    /// The kind of source a catalog peer is.
    pub fn of_peer(p: Peer) -> SourceKind {
        match p {
            Peer::Clients => SourceKind::All,
            Peer::Nodes => SourceKind::Nodes,
            Peer::ControlPlane | Peer::Apiserver => SourceKind::ControlPlane,
            Peer::Etcd => SourceKind::EtcdPeers,
            Peer::LoadBalancers => SourceKind::LoadBalancers,
            Peer::SelfNode | Peer::Pods => SourceKind::SelfOnly,
        }
    }

    /// The widest kind among `peers` (6443, reached by everyone, is `All`; etcd's client port
    /// `ControlPlane`, its peer port `EtcdPeers`); `SelfOnly` when only the node itself or its pods connect.
    pub fn widest(peers: &[Peer]) -> SourceKind {
        peers
            .iter()
            .map(|&p| SourceKind::of_peer(p))
            .max_by_key(|k| k.width())
            .unwrap_or(SourceKind::SelfOnly)
    }
}

/// Which way connections go, seen from the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Others connect to this node.
    In,
    /// This node connects out (the port is on the far side).
    Out,
    /// Both: BGP sessions, overlays.
    Both,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Both => "both",
        }
    }
}

/// Who must be able to reach a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// The node itself (through loopback).
    #[serde(rename = "self")]
    SelfNode,
    /// Control-plane nodes.
    ControlPlane,
    /// Every node of the cluster.
    Nodes,
    /// External load balancers (health checks, traffic).
    LoadBalancers,
    /// The kube-apiserver (wherever it runs).
    Apiserver,
    /// The other members of the etcd cluster.
    Etcd,
    /// Pods.
    Pods,
    /// Anyone: users, external clients.
    Clients,
}

impl Peer {
    pub fn as_str(self) -> &'static str {
        match self {
            Peer::SelfNode => "self",
            Peer::ControlPlane => "control-plane",
            Peer::Nodes => "nodes",
            Peer::LoadBalancers => "load-balancers",
            Peer::Apiserver => "apiserver",
            Peer::Etcd => "etcd",
            Peer::Pods => "pods",
            Peer::Clients => "clients",
        }
    }

    /// How the peer is named in a sentence.
    pub fn describe(self) -> &'static str {
        match self {
            Peer::SelfNode => "this node",
            Peer::ControlPlane => "control-plane nodes",
            Peer::Nodes => "other nodes",
            Peer::LoadBalancers => "load balancers",
            Peer::Apiserver => "the API server",
            Peer::Etcd => "the other etcd members",
            Peer::Pods => "pods",
            Peer::Clients => "clients",
        }
    }
}

/// How widely a socket is bound, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindScope {
    /// 127.0.0.0/8 or ::1: only this node.
    Loopback,
    /// One or more of the node's own addresses.
    Node,
    /// The wildcard 0.0.0.0 or `::`: every address, present and future.
    Any,
}

impl BindScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BindScope::Loopback => "loopback",
            BindScope::Node => "node",
            BindScope::Any => "any",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            BindScope::Loopback => "loopback only",
            BindScope::Node => "the node's address",
            BindScope::Any => "every address",
        }
    }
}

/// A node's role in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
    /// A dedicated etcd member (external etcd).
    Etcd,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::ControlPlane, Role::Worker, Role::Etcd];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Etcd => "etcd",
        }
    }
}

/// The roles a node has: any combination of control plane, etcd member and worker. Empty when
/// nothing tells (an unknown role). Serialized as an array in the order of [`Role::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Roles(u8);

impl Roles {
    /// No role: unknown.
    pub const NONE: Roles = Roles(0);

    fn bit(r: Role) -> u8 {
        match r {
            Role::ControlPlane => 1,
            Role::Worker => 2,
            Role::Etcd => 4,
        }
    }

    pub fn contains(self, r: Role) -> bool {
        self.0 & Roles::bit(r) != 0
    }

    pub fn insert(&mut self, r: Role) {
        self.0 |= Roles::bit(r);
    }

    /// Unknown: no role.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether any role of `self` is in `list`.
    pub fn any_in(self, list: &[Role]) -> bool {
        list.iter().any(|r| self.contains(*r))
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl From<Role> for Roles {
    fn from(r: Role) -> Roles {
        Roles(Roles::bit(r))
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(it: I) -> Roles {
        let mut s = Roles::NONE;
        for r in it {
            s.insert(r);
        }
        s
    }
}

impl fmt::Display for Roles {
    /// `control-plane,etcd`, or `unknown`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("unknown");
        }
        for (i, r) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(r.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for Roles {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Which network namespace the port is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The node's own (host network).
    Host,
    /// A pod's address: seen only inside the pod's namespace.
    Pod,
}

/// What `kports check` expects to find on the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The node's role needs it: missing is a finding.
    Listening,
    /// May listen (a feature, a mode, a pod on some nodes); checked when it does.
    Optional,
    /// Should not listen at all (the kubelet read-only port, legacy insecure ports).
    Absent,
    /// Kept free for something without a socket (NodePort ranges): other listeners are findings.
    Reserved,
    /// Nothing to see on this node (IP protocols, outbound connections): explained, never checked.
    None,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Listening => "listening",
            Expect::Optional => "optional",
            Expect::Absent => "absent",
            Expect::Reserved => "reserved",
            Expect::None => "none",
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A Kubernetes minor version, `1.30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    /// Parses `1.30`, `v1.30` or `1.30.2` (the patch is ignored).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut it = s.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        if let Some(patch) = it.next() {
            patch.split(['-', '+']).next()?.parse::<u32>().ok()?;
        }
        Some(Version { major, minor })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The Kubernetes versions an entry applies to: `all`, `1.13+`, `-1.22`, `1.13-1.22` or `1.30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Versions {
    pub min: Option<Version>,
    pub max: Option<Version>,
}

impl Versions {
    pub fn parse(s: &str) -> Option<Versions> {
        let s = s.trim();
        if s == "all" {
            return Some(Versions::default());
        }
        if let Some(min) = s.strip_suffix('+') {
            return Some(Versions {
                min: Some(Version::parse(min)?),
                max: None,
            });
        }
        if let Some(max) = s.strip_prefix('-') {
            return Some(Versions {
                min: None,
                max: Some(Version::parse(max)?),
            });
        }
        if let Some((a, b)) = s.split_once('-') {
            let (min, max) = (Version::parse(a)?, Version::parse(b)?);
            return (min <= max).then_some(Versions {
                min: Some(min),
                max: Some(max),
            });
        }
        let v = Version::parse(s)?;
        Some(Versions {
            min: Some(v),
            max: Some(v),
        })
    }

    pub fn contains(&self, v: Version) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (None, None) => f.write_str("all"),
            (Some(a), None) => write!(f, "{a}+"),
            (None, Some(b)) => write!(f, "-{b}"),
            (Some(a), Some(b)) if a == b => write!(f, "{a}"),
            (Some(a), Some(b)) => write!(f, "{a}-{b}"),
        }
    }
}

impl Serialize for Versions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Command-line flags of the running component that say which port or address it uses; they win
/// over the catalog's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// A port number (`--secure-port=6443`); 0 means the port is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// An IP address to bind (`--bind-address=127.0.0.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `HOST:PORT` (`--healthz-bind-address=0.0.0.0:10256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A comma-separated list of URLs (`--listen-client-urls=https://127.0.0.1:2379,...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls: Option<String>,
    /// A port range (`--service-node-port-range=30000-32767`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// Whose command line holds these flags, when not the entry's component's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
}

/// Where an entry was defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

/// The key of an entry: one per (component, protocol, port or range).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Key {
    pub component: String,
    pub protocol: Protocol,
    pub port: PortRange,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.component,
            self.protocol.as_str(),
            self.port
        )
    }
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub component: String,
    pub protocol: Protocol,
    pub port: PortRange,
    pub direction: Direction,
    /// What the port is for, in a few words.
    pub purpose: String,
    /// Who must be able to reach it.
    pub reached_by: Vec<Peer>,
    /// Where kubeadm (or the component's own default) binds it.
    pub bind: BindScope,
    /// The bind address in kubeadm's own terms (`https://127.0.0.1:2379 and https://ADVERTISE:2379`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_detail: Option<String>,
    pub roles: Vec<Role>,
    /// The CNI plugin this port belongs to; none for Kubernetes itself and add-ons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni: Option<String>,
    /// An add-on (CoreDNS, metrics-server, ingress-nginx) rather than a node component.
    pub addon: bool,
    pub network: Network,
    pub expect: Expect,
    /// Severity when an expected listener is missing.
    pub missing: Severity,
    /// Severity when the port is bound wider than `bind`.
    pub too_wide: Severity,
    /// Finding id raised when an `absent` port listens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding: Option<FindingId>,
    /// Severity of that finding.
    pub severity: Severity,
    /// Components or process names that may hold the socket (`kernel` for a socket no process
    /// holds, `vxlan (kernel)` for a VXLAN device's).
    pub held_by: Vec<String>,
    pub flags: Flags,
    /// Tunnel devices whose UDP port is this entry's port (`flannel.1`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tunnel_devices: Vec<String>,
    /// Devices that show the CNI backend this entry belongs to (`flannel-wg` for flannel's
    /// WireGuard); a name ending in `*` is a prefix. Where another backend's device of the same
    /// CNI is found and none of these, the entry is not in use on the node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backend_devices: Vec<String>,
    /// Processes that show that backend (`bird` for Calico's BGP), as the census names them;
    /// they count as the devices do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backend_processes: Vec<String>,
    /// The name of that backend (`vxlan`, `wireguard`), as `--cni flannel:wireguard` gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub versions: Versions,
    /// Who connects and why, for `kports explain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Where sources disagree about this port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disagreement: Option<String>,
    /// A URL or a file path where the facts come from.
    pub source: String,
    pub origin: Origin,
}

impl Entry {
    pub fn key(&self) -> Key {
        Key {
            component: self.component.clone(),
            protocol: self.protocol,
            port: self.port,
        }
    }

    /// `tcp/6443`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.protocol.as_str(), self.port)
    }

    /// Whether a node with `roles` (any of them) and CNIs `cnis` needs this entry.
    pub fn applies_to(&self, roles: Roles, cnis: &[String]) -> bool {
        roles.any_in(&self.roles)
            && self
                .cni
                .as_ref()
                .is_none_or(|c| cnis.iter().any(|x| x == c))
    }

    /// The narrowest bind that lets every peer in `reached_by` in.
    pub fn needed_scope(&self) -> BindScope {
        if self.reached_by.iter().all(|p| *p == Peer::SelfNode) {
            BindScope::Loopback
        } else {
            BindScope::Node
        }
    }
}

/// The whole catalog after the user's file, if any, was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Catalog {
    pub entries: Vec<Entry>,
}

impl Catalog {
    /// The catalog shipped in the binary.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        let raws = parse_file(BUILTIN, BUILTIN_NAME)?;
        let mut c = Catalog::default();
        for r in raws {
            let e = new_entry(BUILTIN, BUILTIN_NAME, &r, true)?;
            c.entries.push(e);
        }
        Ok(c)
    }

    /// Applies a user's catalog file `text` (named `file` in errors) on top of this one.
    ///
    /// Entries are found through an index by key and removed ones left as holes until the end,
    /// so the time grows with the number of entries, not with its square.
    pub fn apply_user(&mut self, text: &str, file: &str) -> Result<(), CatalogError> {
        let raws = parse_file(text, file)?;
        let mut entries: Vec<Option<Entry>> = self.entries.iter().cloned().map(Some).collect();
        let mut index: HashMap<Key, usize> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key(), i))
            .collect();
        for r in raws {
            let component = r.component.get_ref().clone();
            let protocol = *r.protocol.get_ref();
            let key = Key {
                component: component.clone(),
                protocol,
                port: ports(text, file, &r.port, protocol)?,
            };
            let replaced = match &r.replaces {
                Some(p) => {
                    let port = ports(text, file, p, protocol)?;
                    let old = Key {
                        component,
                        protocol,
                        port,
                    };
                    match index.get(&old) {
                        Some(&i) => Some(i),
                        None => {
                            return Err(err_at(
                                text,
                                file,
                                p.span(),
                                format!("`replaces`: there is no entry {old} to replace"),
                            ));
                        }
                    }
                }
                None => index.get(&key).copied(),
            };
            if r.enabled.as_ref().is_some_and(|e| !*e.get_ref()) {
                match replaced.and_then(|i| Some((i, entries[i].take()?))) {
                    Some((_, old)) => {
                        index.remove(&old.key());
                    }
                    None => {
                        return Err(err_at(
                            text,
                            file,
                            r.span.clone(),
                            format!("`enabled = false`: there is no entry {key} to disable"),
                        ));
                    }
                }
                continue;
            }
            match replaced.and_then(|i| Some((i, entries[i].clone()?))) {
                Some((i, mut e)) => {
                    let old_key = e.key();
                    e.port = key.port;
                    e.origin = Origin {
                        file: file.to_string(),
                        line: r.line,
                    };
                    apply(text, file, &r, &mut e)?;
                    validate(text, file, &r, &e)?;
                    if r.replaces.is_some() && index.get(&key).is_some_and(|&j| j != i) {
                        return Err(err_at(
                            text,
                            file,
                            r.port.span(),
                            format!("{key} is already in the catalog"),
                        ));
                    }
                    index.remove(&old_key);
                    index.insert(e.key(), i);
                    entries[i] = Some(e);
                }
                None => {
                    let e = new_entry(text, file, &r, false)?;
                    index.insert(e.key(), entries.len());
                    entries.push(Some(e));
                }
            }
        }
        self.entries = entries.into_iter().flatten().collect();
        Ok(())
    }

    /// Names of every CNI the catalog knows.
    pub fn cnis(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .entries
            .iter()
            .filter_map(|e| e.cni.as_deref())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::parse::line_col;
    use super::*;
    use std::collections::HashSet;

    fn builtin() -> Catalog {
        Catalog::builtin().unwrap()
    }

    fn find<'a>(c: &'a Catalog, component: &str, protocol: Protocol, port: &str) -> &'a Entry {
        c.entries
            .iter()
            .find(|e| {
                e.component == component && e.protocol == protocol && e.port.to_string() == port
            })
            .unwrap_or_else(|| panic!("no entry {component} {protocol:?}/{port}"))
    }

    #[test]
    fn builtin_parses_and_has_no_duplicate_keys() {
        let c = builtin();
        assert!(c.entries.len() > 60, "{}", c.entries.len());
        let keys: HashSet<Key> = c.entries.iter().map(Entry::key).collect();
        assert_eq!(keys.len(), c.entries.len());
    }

    #[test]
    fn every_builtin_entry_has_a_source_and_a_sane_shape() {
        for e in builtin().entries {
            assert!(
                e.source.len() > 10 && !e.source.starts_with(BUILTIN_NAME),
                "{}: source {:?}",
                e.key(),
                e.source
            );
            assert!(
                e.port.first >= 1 && e.port.first <= e.port.last,
                "{}",
                e.key()
            );
            assert!(!e.reached_by.is_empty(), "{} has no reached_by", e.key());
            assert!(e.clients.is_some(), "{} does not say who connects", e.key());
            assert!(!e.held_by.is_empty());
        }
    }

    #[test]
    fn every_role_has_its_ports() {
        let c = builtin();
        let needed = |role: Role| -> HashSet<String> {
            c.entries
                .iter()
                .filter(|e| {
                    e.applies_to(role.into(), &[])
                        && matches!(e.expect, Expect::Listening | Expect::Reserved)
                })
                .map(Entry::label)
                .collect()
        };
        let cp = needed(Role::ControlPlane);
        for p in [
            "tcp/6443",
            "tcp/2379",
            "tcp/2380",
            "tcp/2381",
            "tcp/10250",
            "tcp/10257",
            "tcp/10259",
            "tcp/10248",
            "tcp/10256",
            "tcp/10249",
        ] {
            assert!(cp.contains(p), "control plane lacks {p}: {cp:?}");
        }
        let w = needed(Role::Worker);
        for p in [
            "tcp/10250",
            "tcp/10256",
            "tcp/30000-32767",
            "udp/30000-32767",
            "tcp/10248",
            "tcp/10249",
        ] {
            assert!(w.contains(p), "worker lacks {p}: {w:?}");
        }
        for p in ["tcp/6443", "tcp/2379", "tcp/10257"] {
            assert!(!w.contains(p), "worker must not need {p}");
        }
        let etcd = needed(Role::Etcd);
        assert!(
            etcd.contains("tcp/2379") && etcd.contains("tcp/2380") && !etcd.contains("tcp/6443"),
            "{etcd:?}"
        );
    }

    #[test]
    fn every_cni_and_addon_of_the_reference_is_covered() {
        let c = builtin();
        assert_eq!(
            c.cnis(),
            [
                "antrea",
                "calico",
                "cilium",
                "flannel",
                "kube-router",
                "weave"
            ]
        );
        for addon in ["coredns", "metrics-server", "ingress-nginx"] {
            assert!(
                c.entries.iter().any(|e| e.component == addon && e.addon),
                "{addon}"
            );
        }
        let out_of_table = [
            ("kubelet", "10248"),
            ("kube-proxy", "10249"),
            ("etcd", "2381"),
            ("kubelet", "10255"),
        ];
        for (comp, port) in out_of_table {
            find(&c, comp, Protocol::Tcp, port);
        }
        assert_eq!(
            find(&c, "kube-scheduler", Protocol::Tcp, "10251")
                .finding
                .map(FindingId::as_str),
            Some("legacy-insecure-port")
        );
        assert_eq!(
            find(&c, "kube-controller-manager", Protocol::Tcp, "10252")
                .finding
                .map(FindingId::as_str),
            Some("legacy-insecure-port")
        );
        assert_eq!(
            find(&c, "kubelet", Protocol::Tcp, "10255")
                .finding
                .map(FindingId::as_str),
            Some("readonly-port-open")
        );
    }

    #[test]
    fn the_flannel_port_disagreement_is_recorded() {
        let c = builtin();
        let f = find(&c, "flannel", Protocol::Udp, "8472");
        assert!(
            f.disagreement
                .as_deref()
                .is_some_and(|d| d.contains("4789") && d.contains("8472"))
        );
        assert_eq!(f.tunnel_devices, ["flannel.1"]);
        assert!(
            find(&c, "calico-node", Protocol::Udp, "4789")
                .disagreement
                .is_some()
        );
    }

    #[test]
    fn kubeadm_bind_scopes() {
        let c = builtin();
        let bind = |comp, port| find(&c, comp, Protocol::Tcp, port).bind;
        assert_eq!(bind("kube-apiserver", "6443"), BindScope::Any);
        assert_eq!(bind("etcd", "2379"), BindScope::Node);
        assert_eq!(bind("etcd", "2380"), BindScope::Node);
        assert_eq!(bind("etcd", "2381"), BindScope::Loopback);
        assert_eq!(bind("kube-scheduler", "10259"), BindScope::Loopback);
        assert_eq!(
            bind("kube-controller-manager", "10257"),
            BindScope::Loopback
        );
        assert_eq!(bind("kubelet", "10250"), BindScope::Any);
        assert_eq!(bind("kubelet", "10248"), BindScope::Loopback);
        assert_eq!(bind("kube-proxy", "10249"), BindScope::Loopback);
        assert_eq!(bind("kube-proxy", "10256"), BindScope::Any);
    }

    #[test]
    fn versions() {
        let v = |s: &str| Versions::parse(s).map(|v| v.to_string());
        assert_eq!(v("all").as_deref(), Some("all"));
        assert_eq!(v("1.13+").as_deref(), Some("1.13+"));
        assert_eq!(v("-1.22").as_deref(), Some("-1.22"));
        assert_eq!(v("1.13-1.22").as_deref(), Some("1.13-1.22"));
        assert_eq!(v("1.30").as_deref(), Some("1.30"));
        assert_eq!(v("1.22-1.13"), None);
        assert_eq!(v("one"), None);
        let legacy = Versions::parse("-1.22").unwrap();
        assert!(legacy.contains(Version::parse("v1.21.3").unwrap()));
        assert!(!legacy.contains(Version::parse("1.23").unwrap()));
    }

    // --- user files -------------------------------------------------------------------------

    fn user(text: &str) -> Result<Catalog, CatalogError> {
        let mut c = builtin();
        c.apply_user(text, "my.toml")?;
        Ok(c)
    }

    fn refused(text: &str) -> (usize, String) {
        let e = user(text).unwrap_err();
        assert_eq!(e.file, "my.toml");
        assert!(
            e.to_string().starts_with(&format!("my.toml:{}:", e.line)),
            "{e}"
        );
        (e.line, e.message)
    }

    #[test]
    fn user_file_overrides_only_the_fields_it_sets() {
        let c = user("[[port]]\ncomponent = \"kube-proxy\"\nprotocol = \"tcp\"\nport = 10249\nbind = \"any\"\n").unwrap();
        let e = find(&c, "kube-proxy", Protocol::Tcp, "10249");
        assert_eq!(e.bind, BindScope::Any);
        assert_eq!(e.purpose, "kube-proxy metrics (plain HTTP)");
        assert_eq!(
            e.origin,
            Origin {
                file: "my.toml".into(),
                line: 1
            }
        );
        assert_eq!(c.entries.len(), builtin().entries.len());
    }

    #[test]
    fn user_file_replaces_the_nodeport_range_and_adds_external_etcd() {
        let text = r#"
[[port]]
component = "kube-proxy"
protocol = "tcp"
port = "30000-35000"
replaces = "30000-32767"

[[port]]
component = "etcd"
protocol = "tcp"
port = 2379
roles = ["etcd"]

[[port]]
component = "my-agent"
protocol = "udp"
port = 7946
purpose = "gossip"
roles = ["worker"]
reached_by = ["nodes"]
bind = "any"
"#;
        let c = user(text).unwrap();
        assert!(c.entries.iter().any(|e| e.component == "kube-proxy"
            && e.protocol == Protocol::Tcp
            && e.port.to_string() == "30000-35000"));
        assert!(!c.entries.iter().any(|e| e.component == "kube-proxy"
            && e.protocol == Protocol::Tcp
            && e.port.to_string() == "30000-32767"));
        assert_eq!(find(&c, "etcd", Protocol::Tcp, "2379").roles, [Role::Etcd]);
        let mine = find(&c, "my-agent", Protocol::Udp, "7946");
        assert_eq!(mine.source, "my.toml:14");
        assert_eq!(mine.held_by, ["my-agent"]);
        assert_eq!(mine.expect, Expect::Listening);
    }

    #[test]
    fn every_entry_of_a_long_file_has_its_own_line() {
        let mut text = String::new();
        for k in 0..2000u32 {
            text.push_str(&format!(
                "[[port]]\ncomponent = \"agent-{k}\"\nprotocol = \"tcp\"\nport = {}\npurpose = \"p\"\nroles = [\"worker\"]\nreached_by = [\"nodes\"]\nbind = \"any\"\n\n",
                20000 + k
            ));
        }
        // Disabling a built-in entry leaves the others in order.
        text.push_str("[[port]]\ncomponent = \"kube-proxy\"\nprotocol = \"tcp\"\nport = 10256\nenabled = false\n");
        let c = user(&text).unwrap();
        assert!(!c.entries.iter().any(|e| e.label() == "tcp/10256"));
        let mine: Vec<&Entry> = c
            .entries
            .iter()
            .filter(|e| e.component.starts_with("agent-"))
            .collect();
        assert_eq!(mine.len(), 2000);
        for (k, e) in mine.iter().enumerate() {
            assert_eq!(e.component, format!("agent-{k}"));
            assert_eq!(e.origin.line, 9 * k + 1, "{}", e.component);
        }
        let e = user(&format!(
            "{text}[[port]]\ncomponent = \"agent-5\"\nprotocol = \"tcp\"\nport = 20005\n"
        ))
        .unwrap_err();
        assert_eq!((e.line, e.column), (9 * 2000 + 6, 1), "{e}");
        assert!(e.message.ends_with("already defined at line 46"), "{e}");
    }

    #[test]
    fn user_file_disables_an_entry() {
        let c = user("[[port]]\ncomponent = \"kube-proxy\"\nprotocol = \"tcp\"\nport = 10256\nenabled = false\n").unwrap();
        assert!(!c.entries.iter().any(|e| e.label() == "tcp/10256"));
    }

    #[test]
    fn toml_syntax_error_gives_line_and_reason() {
        let (line, msg) = refused(
            "[[port]]\ncomponent = \"etcd\"\nprotocol = \"tcp\"\nport = 2379\nroles = [\"etcd\"\n",
        );
        assert_eq!(line, 5, "{msg}");
        assert!(msg.contains("array") || msg.contains("]"), "{msg}");
    }

    #[test]
    fn unknown_role_is_refused() {
        let (line, msg) = refused(
            "[[port]]\ncomponent = \"etcd\"\nprotocol = \"tcp\"\nport = 2379\nroles = [\"master\"]\n",
        );
        assert_eq!(line, 5);
        assert!(
            msg.contains("master") && msg.contains("control-plane"),
            "{msg}"
        );
    }

    #[test]
    fn port_zero_and_out_of_range_are_refused() {
        let (line, msg) = refused("[[port]]\ncomponent = \"x\"\nprotocol = \"tcp\"\nport = 0\n");
        assert_eq!(
            (line, msg.as_str()),
            (4, "port 0 is not valid: use 1-65535")
        );
        let (line, msg) =
            refused("\n\n[[port]]\ncomponent = \"x\"\nprotocol = \"udp\"\nport = 70000\n");
        assert_eq!(
            (line, msg.as_str()),
            (6, "port 70000 is out of range 1-65535")
        );
    }

    #[test]
    fn backwards_range_is_refused() {
        let (line, msg) = refused(
            "[[port]]\ncomponent = \"kube-proxy\"\nprotocol = \"tcp\"\nport = \"32767-30000\"\n",
        );
        assert_eq!(line, 4);
        assert_eq!(msg, "range 32767-30000 is backwards: write 30000-32767");
    }

    #[test]
    fn duplicate_key_is_refused_with_both_lines() {
        let text = "[[port]]\ncomponent = \"kubelet\"\nprotocol = \"tcp\"\nport = 10250\nbind = \"any\"\n\n[[port]]\ncomponent = \"kubelet\"\nprotocol = \"tcp\"\nport = 10250\n";
        let (line, msg) = refused(text);
        assert_eq!(line, 7);
        assert_eq!(
            msg,
            "duplicate entry kubelet tcp/10250: already defined at line 1"
        );
    }

    #[test]
    fn unknown_field_and_bad_values_are_refused() {
        let (line, msg) =
            refused("[[port]]\ncomponent = \"x\"\nprotocol = \"tcp\"\nport = 1\nbnid = \"any\"\n");
        assert_eq!(line, 5);
        assert!(msg.contains("unknown field `bnid`"), "{msg}");
        let (line, msg) = refused("[[port]]\ncomponent = \"x\"\nprotocol = \"sctp\"\nport = 1\n");
        assert_eq!(line, 3);
        assert!(msg.contains("sctp"), "{msg}");
        let (line, msg) =
            refused("[[port]]\ncomponent = \"x\"\nprotocol = \"tcp\"\nport = \"http\"\n");
        assert_eq!(line, 4);
        assert!(msg.contains("`http` is not a port number"), "{msg}");
        let (line, msg) = refused(
            "[[port]]\ncomponent = \"etcd\"\nprotocol = \"tcp\"\nport = 2379\nversions = \"1.30-1.2\"\n",
        );
        assert_eq!(line, 5);
        assert!(msg.contains("versions `1.30-1.2`"), "{msg}");
    }

    #[test]
    fn new_entry_without_required_fields_is_refused() {
        let (line, msg) = refused(
            "# mine\n[[port]]\ncomponent = \"my-agent\"\nprotocol = \"tcp\"\nport = 9000\npurpose = \"x\"\n",
        );
        assert_eq!(line, 2);
        assert_eq!(
            msg,
            "new entry my-agent tcp/9000 lacks the fields roles, reached_by, bind"
        );
    }

    #[test]
    fn semantic_mistakes_are_refused() {
        let base = "[[port]]\ncomponent = \"my\"\nprotocol = \"tcp\"\npurpose = \"p\"\nroles = [\"worker\"]\nreached_by = [\"nodes\"]\nbind = \"any\"\n";
        let (line, msg) = refused(&format!(
            "{base}port = \"100-200\"\nexpect = \"listening\"\n"
        ));
        assert_eq!(line, 9);
        assert!(
            msg.starts_with("a range cannot be required to listen"),
            "{msg}"
        );
        let (line, msg) = refused(&format!("{base}port = 1\nexpect = \"absent\"\n"));
        assert_eq!(line, 9);
        assert!(msg.contains("needs `finding`"), "{msg}");
        let (line, msg) = refused(&format!(
            "{base}port = 1\nexpect = \"absent\"\nfinding = \"bad-thing\"\n"
        ));
        assert_eq!(line, 10);
        assert!(msg.starts_with("unknown finding `bad-thing`"), "{msg}");
        let (line, msg) = refused(&format!("{base}port = 1\nport_flag = \"secure-port\"\n"));
        assert_eq!(line, 9);
        assert!(msg.contains("not a flag name"), "{msg}");
        let (line, msg) =
            refused("[[port]]\ncomponent = \"x\"\nprotocol = \"tcp\"\nport = 1\nenabled = false\n");
        assert_eq!(line, 1);
        assert!(msg.contains("no entry x tcp/1 to disable"), "{msg}");
        let (line, msg) =
            refused("[[port]]\ncomponent = \"x\"\nprotocol = \"tcp\"\nport = 2\nreplaces = 1\n");
        assert_eq!(line, 5);
        assert!(msg.contains("no entry x tcp/1 to replace"), "{msg}");
        let (line, msg) = refused(
            "[[port]]\ncomponent = \"etcd\"\nprotocol = \"tcp\"\nport = 2379\nroles = []\n",
        );
        assert_eq!(line, 5);
        assert!(msg.starts_with("`roles` is empty"), "{msg}");
        let (line, msg) =
            refused("[[port]]\ncomponent = \"etcd\"\nprotocol = \"ip\"\nport = 300\n");
        assert_eq!(line, 4);
        assert_eq!(msg, "IP protocol number 300 is out of range 1-255");
    }

    #[test]
    fn empty_file_is_refused() {
        let (line, msg) = refused("# nothing\n");
        assert_eq!((line, msg.as_str()), (1, "no [[port]] entries"));
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_col("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
