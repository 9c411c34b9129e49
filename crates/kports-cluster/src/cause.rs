//! Why a cell of the matrix fails, in one line: the near side's probe status and route joined
//! with the far side's listener and firewall verdict.
//!
//! Pure. The order of the questions follows a packet: can the near side send at all (a route,
//! its own link), does the far side exist on the network (its link, its address), does its
//! firewall let the packet in, and does something listen where the packet arrives. When the far
//! side lets it in and listens, the loss is between the nodes, and the cause says so.

use std::net::IpAddr;

use kports_probe::row::Row;
use kports_probe::{Errno, Status};
use serde::Serialize;

use crate::report::{Listener, NodeDoc, RouteDoc, Verdict, VerdictDoc};

/// What the cause was made from: the far side's listeners and verdict, the near side's route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Evidence {
    /// What listens on the port on the far side; `null` when the far side did not say.
    pub listeners: Option<Vec<Listener>>,
    /// The far side's firewall verdict for packets from the near side; `null` when unknown.
    pub firewall: Option<VerdictDoc>,
    /// The near side's route towards the target address; `null` when unknown.
    pub route: Option<RouteDoc>,
    /// Why a side is unknown (`w2 sent no report: ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

/// What is known about one node for the join.
#[derive(Debug, Clone, Copy)]
pub enum Side<'a> {
    Reported(&'a NodeDoc),
    /// No report, and why.
    Missing(&'a str),
}

/// Whether a node is cut off from the others: no probe of it got an answer from its host, and
/// none it made got one from a peer's (or it sent no report to say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Isolation {
    /// Every probe of it went unanswered or unreachable (and one at least said so).
    pub unreached: bool,
    /// Every probe it made went unanswered or unreachable (and one at least said so).
    pub reaches_none: bool,
}

/// What kind of cause a failing cell has: the part of the path that explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The near side could not send the probe.
    ProbeFailed,
    /// The near side has no route to the address.
    NoRoute,
    /// A link on the way, on either side, is down.
    LinkDown,
    /// The far side sent no report; its side is unknown.
    NoReport,
    /// No peer reaches the node and it reaches none, and nothing more specific explains it.
    CutOff,
    /// The address probed is not the far side's.
    NotAnAddress,
    /// The far side does not serve the port (another role).
    NotServed,
    /// The far side's firewall drops or rejects it.
    Firewall,
    /// The far side's firewall verdict is not known.
    FirewallUnknown,
    /// Nothing listens there, or only on loopback or another address.
    Listener,
    /// The far side accepts and listens: something between the nodes.
    Between,
}

impl Kind {
    /// Whether the cause says the node is out of the network, not one port of it.
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Kind::NoRoute | Kind::LinkDown | Kind::NoReport | Kind::CutOff
        )
    }
}

/// The join of one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub cause: Option<String>,
    pub kind: Option<Kind>,
    pub evidence: Evidence,
}

/// Explains `row`, probed by `near` (its source) of `far` (its target). `source_address` is
/// the near side's address the probe left from, when known. `cut_off` is `Some(name)` when
/// the source or target node is cut off from every peer.
pub fn explain(
    row: &Row,
    near: Side<'_>,
    far: Side<'_>,
    source_address: Option<IpAddr>,
    far_isolation: Isolation,
    near_isolation: Isolation,
) -> Explained {
    let mut ev = Evidence::default();
    if let Side::Reported(n) = near {
        ev.route = n.route(row.target_address).cloned();
    }
    let port_doc = match far {
        Side::Reported(f) => f.port(row.proto, row.port),
        Side::Missing(_) => None,
    };
    if let Some(p) = port_doc {
        ev.listeners = Some(p.listeners.clone());
        ev.firewall = source_address.and_then(|s| p.verdict_from(s)).cloned();
    }
    if let Side::Missing(why) = far {
        ev.unknown = Some(format!("{} sent no report: {why}", row.target));
    }
    if !row.status.is_failure() {
        return Explained {
            cause: None,
            kind: None,
            evidence: ev,
        };
    }
    let (kind, cause) = cause(
        row,
        near,
        far,
        source_address,
        &ev,
        far_isolation,
        near_isolation,
    );
    Explained {
        cause: Some(cause),
        kind: Some(kind),
        evidence: ev,
    }
}

fn label(row: &Row) -> String {
    format!("{}/{}", row.proto, row.port)
}

fn endpoint(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V6(v6) if v6.is_unspecified() => format!("*:{port}"),
        IpAddr::V4(v4) if v4.is_unspecified() => format!("*:{port}"),
        IpAddr::V6(_) => format!("[{a}]:{port}"),
        IpAddr::V4(_) => format!("{a}:{port}"),
    }
}

fn listening(ls: &[Listener], port: u16) -> String {
    let mut v: Vec<String> = ls.iter().map(|l| endpoint(l.address, port)).collect();
    v.dedup();
    v.join(", ")
}

/// Whether an interface's operational state means no packet passes (`lowerlayerdown`: its
/// cable, or the other end of its veth, is down).
fn is_down(state: &str) -> bool {
    ["down", "lowerlayerdown", "notpresent"]
        .iter()
        .any(|d| state.eq_ignore_ascii_case(d))
}

/// The interface of `node` that holds `address`, with its state, when it is down.
fn down_interface(node: &NodeDoc, address: IpAddr) -> Option<String> {
    let a = address.to_string();
    node.interfaces
        .iter()
        .find(|i| i.addresses.iter().any(|x| x.split('/').next() == Some(&a)) && is_down(&i.state))
        .map(|i| format!("{} ({})", i.name, i.state))
}

/// The interface `name` of `node`, with its state, when it is down.
fn named_down(node: &NodeDoc, name: &str) -> Option<String> {
    node.interfaces
        .iter()
        .find(|i| i.name == name && is_down(&i.state))
        .map(|i| format!("{} ({})", i.name, i.state))
}

/// The first interface of `node` with addresses that is down (not loopback).
fn any_down(node: &NodeDoc) -> Option<String> {
    node.interfaces
        .iter()
        .find(|i| is_down(&i.state) && i.name != "lo" && !i.addresses.is_empty())
        .map(|i| format!("{} ({})", i.name, i.state))
}

/// Whether a listener on `l` takes packets sent to `to`.
fn accepts_at(l: &Listener, to: IpAddr) -> bool {
    l.address == to
        || (l.address.is_unspecified() && (l.address.is_ipv6() || to.is_ipv4()))
        || l.address.to_canonical() == to.to_canonical()
}

fn cause(
    row: &Row,
    near: Side<'_>,
    far: Side<'_>,
    source_address: Option<IpAddr>,
    ev: &Evidence,
    far_isolation: Isolation,
    near_isolation: Isolation,
) -> (Kind, String) {
    let (s, t) = (row.source.as_str(), row.target.as_str());
    let what = label(row);
    if row.status == Status::Unknown {
        return (
            Kind::ProbeFailed,
            format!(
                "{s} could not send the probe ({}): nothing is known about {t}",
                row.errno
                    .map_or_else(|| "no errno".into(), |e| e.name().into_owned())
            ),
        );
    }
    if let Some(r) = &ev.route {
        match (&r.dev, near) {
            (None, _) => {
                return (
                    Kind::NoRoute,
                    format!("{s} has no route to {}", row.target_address),
                );
            }
            (Some(dev), Side::Reported(n)) => {
                if let Some(d) = named_down(n, dev) {
                    return (
                        Kind::LinkDown,
                        format!(
                            "{s}'s route to {} leaves by {d}, which is down",
                            row.target_address
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    if row.errno == Some(Errno(libc::ENETUNREACH)) && ev.route.is_none() {
        return (
            Kind::NoRoute,
            format!("{s} has no route to {} (ENETUNREACH)", row.target_address),
        );
    }
    let f = match far {
        Side::Missing(why) => {
            if far_isolation.unreached {
                return (
                    Kind::CutOff,
                    format!(
                        "{t} is down or cut off: no peer reaches it on any port, and it sent no report ({why})"
                    ),
                );
            }
            return (
                Kind::NoReport,
                format!(
                    "{s} sees {} on {t} {what}; {t} sent no report ({why}), so its side is unknown",
                    row.status
                ),
            );
        }
        Side::Reported(f) => f,
    };
    if let Some(dev) = down_interface(f, row.target_address) {
        return (
            Kind::LinkDown,
            format!(
                "{t}'s {dev}, which holds {}, is down: {t} answers no peer there",
                row.target_address
            ),
        );
    }
    if !f.interfaces.is_empty() && !f.has_address(row.target_address) {
        return (
            Kind::NotAnAddress,
            format!(
                "{} is not an address of {t} (its interfaces do not hold it)",
                row.target_address
            ),
        );
    }
    let Some(p) = f.port(row.proto, row.port) else {
        let roles: Vec<&str> = f.roles.iter().map(|r| r.as_str()).collect();
        let roles = if roles.is_empty() {
            "of unknown role".to_string()
        } else {
            roles.join(", ")
        };
        return (
            Kind::NotServed,
            format!(
                "{t} does not serve {what}{}: its own report says it is {roles}",
                row.component
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
        );
    };
    let comp = &p.component;
    let from = source_address.map_or_else(|| s.to_string(), |a| a.to_string());
    let listeners = &p.listeners;
    let reaches: Vec<&Listener> = listeners
        .iter()
        .filter(|l| accepts_at(l, row.target_address))
        .collect();
    let listen_text = if listeners.is_empty() {
        format!("nothing listens on {what} on {t}: {comp} is not running there")
    } else if reaches.is_empty() {
        if listeners.iter().all(|l| l.address.is_loopback()) {
            format!(
                "{comp} on {t} listens on {} only: bound to loopback, no other node reaches it",
                listening(listeners, row.port)
            )
        } else {
            format!(
                "{comp} on {t} listens on {}, not on {}",
                listening(listeners, row.port),
                row.target_address
            )
        }
    } else {
        String::new()
    };
    let listens_ok = listen_text.is_empty();
    let listen_phrase = if listens_ok {
        format!(
            "{comp} on {t} listens on {}",
            listening(listeners, row.port)
        )
    } else {
        listen_text.clone()
    };
    if let Some(v) = &ev.firewall {
        let rule = v
            .rule
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        match v.verdict {
            Verdict::Drop => {
                return (
                    Kind::Firewall,
                    format!("{listen_phrase}; {t}'s firewall drops {what} from {from}{rule}"),
                );
            }
            Verdict::Reject => {
                let with = v
                    .with
                    .as_deref()
                    .map(|w| format!(" with {w}"))
                    .unwrap_or_default();
                return (
                    Kind::Firewall,
                    format!(
                        "{listen_phrase}; {t}'s firewall rejects {what} from {from}{with}{rule}"
                    ),
                );
            }
            Verdict::Depends | Verdict::Unknown if listens_ok => {
                let why = v.with.as_deref().unwrap_or("no reason given");
                return (
                    Kind::FirewallUnknown,
                    format!(
                        "{listen_phrase}; {t}'s firewall verdict on {what} from {from} is not known ({why}){rule}"
                    ),
                );
            }
            _ => {}
        }
    }
    if !listens_ok {
        return (Kind::Listener, listen_text);
    }
    // Nothing on either side explains it: a node no peer reaches and that reaches none is cut
    // off (a link, a switch port, a route outside it).
    if near_isolation.reaches_none && near_isolation.unreached {
        let link = match near {
            Side::Reported(n) => any_down(n).map(|d| format!(" ({s}'s {d} is down)")),
            Side::Missing(_) => None,
        };
        return (
            Kind::CutOff,
            format!(
                "{s} is cut off: it reaches no peer and no peer reaches it{}",
                link.unwrap_or_default()
            ),
        );
    }
    if far_isolation.unreached && far_isolation.reaches_none {
        return (
            Kind::CutOff,
            format!("{t} is cut off: no peer reaches it and it reaches no peer"),
        );
    }
    let fw = match &ev.firewall {
        Some(v) if v.verdict == Verdict::Accept => format!("{t}'s own firewall accepts and "),
        Some(_) => String::new(),
        None if !f.firewall_read => format!("{t}'s firewall could not be read, but "),
        None => String::new(),
    };
    let between = match row.status {
        Status::Filtered => "something between the nodes drops it (a security group or router ACL)",
        Status::Refused | Status::Closed => {
            "something between the nodes rejects it (a firewall on the path)"
        }
        _ => "something between the nodes turns it away (a router or a firewall on the path)",
    };
    let seen = match row.errno {
        Some(e) if row.status == Status::Unreachable => format!("{} ({e})", row.status),
        _ => row.status.to_string(),
    };
    (
        Kind::Between,
        format!("{s} sees {seen} but {fw}{listen_phrase}: {between}"),
    )
}
