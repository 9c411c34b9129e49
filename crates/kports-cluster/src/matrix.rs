//! The join: every node's report and its probes of its peers become the node x required-port
//! matrix, a cause for every failing cell ([`crate::cause`]) and a summary line per node.
//!
//! Pure: the nodes' documents in, the matrix out. A node that sent no report still appears,
//! through its peers' probes of it; when none of them reaches it either, its cells say it is
//! down or cut off rather than blaming every port.

use std::collections::BTreeSet;
use std::net::IpAddr;

use kports_core::catalog::Role;
use kports_probe::row::Row;
use kports_probe::{Status, Transport};
use serde::Serialize;

use crate::cause::{self, Evidence, Isolation, Side};
use crate::report::NodeDoc;

/// One node as the join sees it.
#[derive(Debug, Clone)]
pub struct NodeInput {
    pub name: String,
    /// From the inventory (empty for saved reports: then from the report's interfaces).
    pub addresses: Vec<IpAddr>,
    /// The roles the inventory gives (empty: the report's own).
    pub roles: Vec<Role>,
    /// The node's report, or why there is none.
    pub report: Result<NodeDoc, String>,
}

/// A cell: a probe row with its cause (`null` when it passed) and evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    #[serde(flatten)]
    pub row: Row,
    pub cause: Option<String>,
    /// What part of the path explains the failure (null when it passed).
    pub cause_kind: Option<cause::Kind>,
    pub evidence: Evidence,
}

impl Cell {
    pub fn failed(&self) -> bool {
        self.row.status.is_failure()
    }
}

/// How a node fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Every probe from and to it passed.
    Ok,
    /// Some probes from or to it failed.
    Failing,
    /// No peer reaches it and it reaches none (or sent no report).
    CutOff,
    /// It sent no report, but peers reach it.
    NoReport,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ok => "ok",
            NodeState::Failing => "failing",
            NodeState::CutOff => "cut-off",
            NodeState::NoReport => "no-report",
        }
    }
}

/// A summary line of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSummary {
    pub name: String,
    pub roles: Vec<Role>,
    pub state: NodeState,
    /// Why it has no report, or what else to know.
    pub note: Option<String>,
    /// Probes this node made, and how many failed.
    pub probes_sent: usize,
    pub failed_sent: usize,
    /// Probes of this node by its peers, and how many failed.
    pub probes_received: usize,
    pub failed_received: usize,
}

/// The matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub cells: Vec<Cell>,
    pub nodes: Vec<NodeSummary>,
}

impl Matrix {
    pub fn failing(&self) -> usize {
        self.cells.iter().filter(|c| c.failed()).count()
    }

    /// Whether every node reported and every cell passed.
    pub fn clean(&self) -> bool {
        self.failing() == 0 && self.nodes.iter().all(|n| n.state == NodeState::Ok)
    }

    /// The ports of the matrix's columns, in order.
    pub fn ports(&self) -> Vec<(Transport, u16)> {
        let set: BTreeSet<(Transport, u16)> = self
            .cells
            .iter()
            .map(|c| (c.row.proto, c.row.port))
            .collect();
        set.into_iter().collect()
    }
}

/// Whether the probes `pick` selects show no sign of life: there is at least one that says
/// something (not `open|filtered`, not `unknown`), and none got an answer from the far host's
/// own stack (`open`, or a refusal: a reset or port unreachable come from a running host).
fn no_sign_of_life(rows: &[&Row], pick: impl Fn(&Row) -> bool) -> bool {
    let mut any = false;
    for r in rows.iter().filter(|r| pick(r)) {
        match r.status {
            Status::OpenFiltered | Status::Unknown => {}
            Status::Open | Status::Refused | Status::Closed => return false,
            Status::Filtered | Status::Unreachable => any = true,
        }
    }
    any
}

/// Joins the nodes' reports into the matrix.
pub fn join(nodes: &[NodeInput]) -> Matrix {
    let rows: Vec<&Row> = nodes
        .iter()
        .filter_map(|n| n.report.as_ref().ok())
        .flat_map(|d| d.probes.iter().flatten())
        .collect();
    let iso = |name: &str| Isolation {
        unreached: no_sign_of_life(&rows, |r| r.target == name),
        reaches_none: no_sign_of_life(&rows, |r| r.source == name),
    };
    let find = |name: &str| nodes.iter().find(|n| n.name == name);
    let side = |name: &str| -> Side<'_> {
        match find(name).map(|n| &n.report) {
            Some(Ok(d)) => Side::Reported(d),
            Some(Err(why)) => Side::Missing(why),
            None => Side::Missing("not in the inventory"),
        }
    };
    let mut cells: Vec<Cell> = rows
        .iter()
        .map(|row| {
            let near = side(&row.source);
            let far = side(&row.target);
            let source_address = source_address(find(&row.source), near, row.target_address);
            let e = cause::explain(
                row,
                near,
                far,
                source_address,
                iso(&row.target),
                iso(&row.source),
            );
            Cell {
                row: (*row).clone(),
                cause: e.cause,
                cause_kind: e.kind,
                evidence: e.evidence,
            }
        })
        .collect();
    cells.sort_by(|a, b| {
        (
            &a.row.target,
            a.row.proto,
            a.row.port,
            &a.row.source,
            a.row.target_address,
        )
            .cmp(&(
                &b.row.target,
                b.row.proto,
                b.row.port,
                &b.row.source,
                b.row.target_address,
            ))
    });
    let summaries = nodes
        .iter()
        .map(|n| {
            let sent: Vec<&Cell> = cells.iter().filter(|c| c.row.source == n.name).collect();
            let received: Vec<&Cell> = cells.iter().filter(|c| c.row.target == n.name).collect();
            let failed_sent = sent.iter().filter(|c| c.failed()).count();
            let failed_received = received.iter().filter(|c| c.failed()).count();
            // Cut off only when nothing more specific than the network explains its cells.
            let i = iso(&n.name);
            let network_only = sent
                .iter()
                .chain(&received)
                .filter(|c| c.failed())
                .all(|c| c.cause_kind.is_some_and(cause::Kind::is_network));
            let i = Isolation {
                unreached: i.unreached && network_only,
                reaches_none: i.reaches_none && network_only,
            };
            let (state, note) = match &n.report {
                Err(why) if i.unreached => (NodeState::CutOff, Some(format!("no report: {why}"))),
                Err(why) => (NodeState::NoReport, Some(format!("no report: {why}"))),
                Ok(_) if i.unreached && i.reaches_none => (NodeState::CutOff, None),
                Ok(d) if d.probes.is_none() => (
                    if failed_received > 0 {
                        NodeState::Failing
                    } else {
                        NodeState::Ok
                    },
                    Some("its report holds no probes of its peers".into()),
                ),
                Ok(_) if failed_sent + failed_received > 0 => (NodeState::Failing, None),
                Ok(_) => (NodeState::Ok, None),
            };
            let roles = match &n.report {
                Ok(d) if n.roles.is_empty() => d.roles.clone(),
                _ => n.roles.clone(),
            };
            NodeSummary {
                name: n.name.clone(),
                roles,
                state,
                note,
                probes_sent: sent.len(),
                failed_sent,
                probes_received: received.len(),
                failed_received,
            }
        })
        .collect();
    Matrix {
        cells,
        nodes: summaries,
    }
}

/// The address a probe towards `to` left `node` from: the route's source, else the node's
/// address of the same family.
fn source_address(node: Option<&NodeInput>, side: Side<'_>, to: IpAddr) -> Option<IpAddr> {
    if let Side::Reported(d) = side {
        if let Some(src) = d.route(to).and_then(|r| r.src) {
            return Some(src);
        }
    }
    node.and_then(|n| {
        n.addresses
            .iter()
            .find(|a| a.is_ipv6() == to.is_ipv6())
            .copied()
    })
}

#[cfg(test)]
mod tests;
