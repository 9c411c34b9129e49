//! The document a node gives about itself (`kports report -o json`), made from kports-node's
//! [`NodeReport`] and read back from a file or a node's output.
//!
//! It holds what the join needs of the far side (each required port's listeners and the
//! firewall's verdict for each peer that needs it) and of the near side (its probes of its peers
//! and its route to each), besides the node's roles, CNI, interfaces and findings. Building it
//! from a report is pure: the routes come from the caller.

use std::net::IpAddr;

use kports_core::catalog::{Role, Severity, SourceKind};
use kports_core::{Owner, SCHEMA_VERSION, Socket};
use kports_firewall::Evaluator;
use kports_firewall::eval::{Judgement, Packet, RuleRef};
use kports_firewall::model::AddrRange;
use kports_node::NodeReport;
use kports_probe::Transport;
use kports_probe::plan::role_ports;
use kports_probe::row::Row;
use serde::{Deserialize, Serialize};

/// The `kind` of the document.
pub const KIND: &str = "report";

/// One node's report: the one item of a `kports report` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDoc {
    /// The node's name in the cluster: the inventory's (`--self`), else its host name.
    pub name: String,
    pub hostname: String,
    /// Empty when kports could not tell.
    pub roles: Vec<Role>,
    pub cni: Vec<String>,
    pub interfaces: Vec<Iface>,
    /// The ports this node serves to other nodes (its roles' and CNI's).
    pub ports: Vec<PortDoc>,
    pub findings: Vec<FindingDoc>,
    /// Whether the firewall could be read; when not, every verdict is unknown.
    pub firewall_read: bool,
    /// This node's probes of its peers; `null` when it did not probe.
    pub probes: Option<Vec<Row>>,
    /// The route from this node to each peer address it probed.
    pub routes: Vec<RouteDoc>,
}

/// An interface and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iface {
    pub name: String,
    /// The operational state, as `kports node` shows it: `up`, `down`, `unknown`, ...
    pub state: String,
    /// `ADDRESS/PREFIX`.
    pub addresses: Vec<String>,
}

/// A port the node serves to other nodes: what listens there and what its firewall does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortDoc {
    pub proto: Transport,
    pub port: u16,
    pub component: String,
    /// Empty when nothing listens.
    pub listeners: Vec<Listener>,
    /// The verdict for packets from each peer (or, without peers, each kind of source).
    pub firewall: Vec<VerdictDoc>,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub address: IpAddr,
    /// The process holding it (`kernel` when no process does, such as a VXLAN device's port);
    /// `null` when kports could not tell.
    pub process: Option<String>,
}

/// What the firewall does to a packet to the port from `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictDoc {
    /// A peer's address, or the range (`192.0.2.0/24`, `192.0.2.5-192.0.2.9`) judged for a kind
    /// of source.
    pub from: String,
    /// The kind of source the range stands for; `null` for a peer of the inventory.
    pub source_kind: Option<SourceKind>,
    pub verdict: Verdict,
    /// How a reject answers (`tcp reset`, `icmp port-unreachable`), or what a verdict depends on.
    pub with: Option<String>,
    /// The deciding rule: `nft inet filter input #3 (handle 7): tcp dport 10250 drop`.
    pub rule: Option<String>,
}

/// A firewall's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
    /// Hangs on a condition kports cannot evaluate statically.
    Depends,
    Unknown,
}

impl Verdict {
    /// The verdict as a verb, for a sentence: `w2's firewall drops ...`.
    pub fn verb(self) -> &'static str {
        match self {
            Verdict::Accept => "accepts",
            Verdict::Drop => "drops",
            Verdict::Reject => "rejects",
            Verdict::Depends => "may drop",
            Verdict::Unknown => "has an unknown verdict on",
        }
    }
}

/// A finding of `kports check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingDoc {
    /// The finding id (docs/schema.md).
    pub id: String,
    pub severity: Severity,
    pub message: String,
}

/// The route towards a peer address: `dev` is `null` when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDoc {
    pub to: IpAddr,
    pub dev: Option<String>,
    pub src: Option<IpAddr>,
}

/// A peer of the node, with the route towards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub address: IpAddr,
    /// `(device, source address)`, from the node's routing table; `None`: no route.
    pub route: Option<(String, Option<IpAddr>)>,
}

/// The whole document as printed (the envelope of docs/schema.md), for reading it back.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportFile {
    pub schema: u32,
    pub kind: String,
    /// The node's report, alone (`items` is an array in every document).
    pub items: Vec<NodeDoc>,
}

/// A document kports refuses to join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("not JSON of a kports document: {0}")]
    Json(String),
    #[error("a `{0}` document, not a node report: make it with `kports report -o json`")]
    Kind(String),
    #[error(
        "schema {found}, but this kports reads schema {SCHEMA_VERSION}: use the same kports version on every node"
    )]
    Schema { found: u32 },
}

/// Reads a node's report from the JSON `kports report -o json` printed.
pub fn parse(text: &str) -> Result<NodeDoc, ReadError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ReadError::Json(e.to_string()))?;
    match v.get("kind").and_then(|k| k.as_str()) {
        Some(KIND) => {}
        Some(other) => return Err(ReadError::Kind(other.to_string())),
        None => return Err(ReadError::Json("no `kind` field".into())),
    }
    let f: ReportFile = serde_json::from_value(v).map_err(|e| ReadError::Json(e.to_string()))?;
    if f.schema != SCHEMA_VERSION {
        return Err(ReadError::Schema { found: f.schema });
    }
    let n = f.items.len();
    let mut items = f.items.into_iter();
    match (items.next(), n) {
        (Some(doc), 1) => Ok(doc),
        _ => Err(ReadError::Json(format!(
            "{n} items, where a node's report has one"
        ))),
    }
}

/// `nft inet filter input #3 (handle 7): tcp dport 10250 drop`.
fn rule_text(r: &RuleRef) -> String {
    r.to_string()
}

fn verdict_of(j: &Judgement) -> (Verdict, Option<String>, Option<String>) {
    match j {
        Judgement::Accept { by } => (Verdict::Accept, None, by.last().map(rule_text)),
        Judgement::Drop { by } => (Verdict::Drop, None, Some(rule_text(by))),
        Judgement::Reject { by, with } => {
            (Verdict::Reject, Some(with.clone()), Some(rule_text(by)))
        }
        Judgement::Depends { on, at, .. } => {
            (Verdict::Depends, Some(on.clone()), Some(rule_text(at)))
        }
        Judgement::Unknown { reason } => (Verdict::Unknown, Some(reason.clone()), None),
    }
}

fn listeners(sockets: &[Socket], proto: Transport, port: u16) -> Vec<Listener> {
    let mut out: Vec<Listener> = sockets
        .iter()
        .filter(|s| s.is_listener() && s.local_port == port && s.proto.as_str() == proto.as_str())
        .map(|s| Listener {
            address: s.local_address,
            process: match (s.processes.first(), s.owner) {
                (Some(p), _) => Some(p.name.clone()),
                (None, Owner::Kernel) => Some("kernel".into()),
                (None, _) => None,
            },
        })
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address).then(a.process.cmp(&b.process)));
    out.dedup();
    out
}

impl NodeDoc {
    /// The document of `report`, with the firewall judged for packets from each of `peers`
    /// (from each kind of source the report chose, when there are none). `name` is the node's
    /// name in the cluster.
    pub fn from_report(report: &NodeReport, name: &str, peers: &[Peer]) -> NodeDoc {
        let roles: Vec<Role> = report.roles.value.iter().collect();
        let cnis = &report.cni.value;
        let ev = report.firewall.as_ref().map(|f| Evaluator::new(&f.ruleset));
        let ports = role_ports(&report.catalog, &roles, cnis)
            .into_iter()
            .map(|(spec, component)| {
                let proto = spec.transport;
                let number = match proto {
                    Transport::Tcp => 6,
                    Transport::Udp => 17,
                };
                let judge = |ev: &Evaluator<'_>, src: AddrRange, dst, iif| {
                    let packet = Packet {
                        v6: src.v6,
                        proto: number,
                        dport: spec.port,
                        src,
                        dst,
                        iif,
                    };
                    ev.judge_ports(&packet, spec.port, spec.port)
                        .into_iter()
                        .next()
                        .map_or(
                            (Verdict::Unknown, Some("no verdict".into()), None),
                            |(_, _, j)| verdict_of(&j),
                        )
                };
                let firewall = match (&ev, report.firewall.as_ref()) {
                    (Some(ev), _) if !peers.is_empty() => peers
                        .iter()
                        .map(|p| {
                            let (iif, dst) = match &p.route {
                                Some((dev, src)) => (Some(dev.clone()), *src),
                                None => (None, None),
                            };
                            let (verdict, with, rule) =
                                judge(ev, AddrRange::single(p.address), dst, iif);
                            VerdictDoc {
                                from: p.address.to_string(),
                                source_kind: None,
                                verdict,
                                with,
                                rule,
                            }
                        })
                        .collect(),
                    (Some(ev), Some(fw)) => fw
                        .sources
                        .sources
                        .iter()
                        .map(|ks| {
                            let s = &ks.source;
                            let (verdict, with, rule) = judge(ev, s.range, s.dst, s.iif.clone());
                            VerdictDoc {
                                from: s.range.to_string(),
                                source_kind: Some(ks.kind),
                                verdict,
                                with,
                                rule,
                            }
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                PortDoc {
                    proto,
                    port: spec.port,
                    component,
                    listeners: listeners(&report.sockets, proto, spec.port),
                    firewall,
                }
            })
            .collect();
        let findings = report
            .check(None, false)
            .report
            .findings
            .iter()
            .map(|f| FindingDoc {
                id: f.id.as_str().to_string(),
                severity: f.severity,
                message: f.message.clone(),
            })
            .collect();
        let interfaces = report
            .interfaces
            .iter()
            .map(|i| Iface {
                name: i.name.clone(),
                state: i.state.clone(),
                addresses: i
                    .addresses
                    .iter()
                    .map(|a| format!("{}/{}", a.address, a.prefix_len))
                    .collect(),
            })
            .collect();
        NodeDoc {
            name: name.to_string(),
            hostname: report.hostname.clone(),
            roles,
            cni: cnis.clone(),
            interfaces,
            ports,
            findings,
            firewall_read: report
                .firewall
                .as_ref()
                .is_some_and(|f| f.ruleset.unread.is_empty()),
            probes: None,
            routes: peers
                .iter()
                .map(|p| RouteDoc {
                    to: p.address,
                    dev: p.route.as_ref().map(|(d, _)| d.clone()),
                    src: p.route.as_ref().and_then(|(_, s)| *s),
                })
                .collect(),
        }
    }

    /// The port's entry, if this node serves it.
    pub fn port(&self, proto: Transport, port: u16) -> Option<&PortDoc> {
        self.ports
            .iter()
            .find(|p| p.proto == proto && p.port == port)
    }

    /// The route towards `to`, when the node recorded one.
    pub fn route(&self, to: IpAddr) -> Option<&RouteDoc> {
        self.routes.iter().find(|r| r.to == to)
    }

    /// Whether `address` is one of the node's interface addresses.
    pub fn has_address(&self, address: IpAddr) -> bool {
        self.interfaces.iter().any(|i| {
            i.addresses
                .iter()
                .any(|a| a.split('/').next() == Some(address.to_string().as_str()))
        })
    }
}

impl PortDoc {
    /// The verdict for packets from `from` (an address of a peer): judged for that address,
    /// else for a range of a kind of source that holds it.
    pub fn verdict_from(&self, from: IpAddr) -> Option<&VerdictDoc> {
        let s = from.to_string();
        self.firewall.iter().find(|v| v.from == s).or_else(|| {
            let one = AddrRange::single(from);
            self.firewall
                .iter()
                .find(|v| parse_range(&v.from).is_some_and(|r| r.contains(&one)))
        })
    }
}

/// `192.0.2.0/24`, `192.0.2.5`, or `192.0.2.5-192.0.2.9`, as [`AddrRange`] writes them.
fn parse_range(s: &str) -> Option<AddrRange> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b): (IpAddr, IpAddr) = (a.parse().ok()?, b.parse().ok()?);
            let (a, b) = (AddrRange::single(a), AddrRange::single(b));
            (a.v6 == b.v6 && a.lo <= b.hi).then_some(AddrRange {
                v6: a.v6,
                lo: a.lo,
                hi: b.hi,
            })
        }
        None => kports_firewall::model::parse_cidr(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(from: &[(&str, Verdict)]) -> PortDoc {
        PortDoc {
            proto: Transport::Tcp,
            port: 10250,
            component: "kubelet".into(),
            listeners: vec![],
            firewall: from
                .iter()
                .map(|(f, v)| VerdictDoc {
                    from: (*f).into(),
                    source_kind: Some(SourceKind::Nodes),
                    verdict: *v,
                    with: None,
                    rule: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_peers_verdict_is_its_own_else_that_of_a_range_holding_it() {
        let p = port(&[
            ("192.0.2.11", Verdict::Drop),
            ("192.0.2.0/24", Verdict::Accept),
            ("2001:db8::5-2001:db8::9", Verdict::Reject),
            ("203.0.113.1", Verdict::Accept),
        ]);
        let at = |a: &str| p.verdict_from(a.parse().unwrap()).map(|v| v.verdict);
        assert_eq!(at("192.0.2.11"), Some(Verdict::Drop));
        assert_eq!(at("192.0.2.21"), Some(Verdict::Accept));
        assert_eq!(at("2001:db8::7"), Some(Verdict::Reject));
        assert_eq!(at("2001:db8::a"), None);
        assert_eq!(at("198.51.100.1"), None);
    }

    #[test]
    fn documents_of_another_kind_or_schema_are_refused() {
        assert_eq!(
            parse(r#"{"schema":2,"kind":"probe","items":[]}"#),
            Err(ReadError::Kind("probe".into()))
        );
        assert!(matches!(parse("[1,2]"), Err(ReadError::Json(_))));
        let other = SCHEMA_VERSION + 1;
        let doc = format!(
            r#"{{"schema":{other},"kind":"report","items":[{{"name":"w1","hostname":"w1","roles":[],"cni":[],"interfaces":[],"ports":[],"findings":[],"firewall_read":true,"probes":null,"routes":[]}}]}}"#
        );
        assert_eq!(parse(&doc), Err(ReadError::Schema { found: other }));
        let same = doc.replace(
            &format!(r#""schema":{other}"#),
            &format!(r#""schema":{SCHEMA_VERSION}"#),
        );
        assert_eq!(parse(&same).map(|d| d.name), Ok("w1".into()));
    }
}
