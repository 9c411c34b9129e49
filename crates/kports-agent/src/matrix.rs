//! `/api/v1/matrix`: every node's report and probes, this node's from its own state and the
//! others' gathered from their agents ([`crate::gather`]), in one document the page draws.
//!
//! Gathering fans out to every peer, so one answer is kept for [`CACHE_FOR`] and computed by
//! one request at a time: a page open on many screens costs the peers one round of requests
//! per period, not one per screen.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use kports_probe::row::Row;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::gather::{AgentAnswer, Gather, Gathered, NodeEntry, Source};

/// How long one gathered matrix is served before the peers are asked again.
pub const CACHE_FOR: Duration = Duration::from_secs(5);

/// The matrix document (`kind: "matrix"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixDocument {
    pub schema: u32,
    pub kind: String,
    /// The node whose agent gathered it.
    pub hostname: String,
    /// Every node, in name order: whether its agent answered, and its report.
    pub nodes: Vec<NodeEntry>,
    /// Every probe of every node that answered, in (source, target, proto, port) order.
    pub items: Vec<Row>,
    pub warnings: Vec<String>,
}

/// Joins what each node gave into one document.
pub fn document(hostname: &str, mut gathered: Vec<Gathered>) -> MatrixDocument {
    gathered.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    gathered.dedup_by(|a, b| a.node.name == b.node.name);
    let mut items: Vec<Row> = Vec::new();
    let mut nodes = Vec::with_capacity(gathered.len());
    for g in gathered {
        items.extend(g.rows);
        nodes.push(g.node);
    }
    items.sort_by(|a, b| {
        (&a.source, &a.target, a.proto, a.port, a.target_address).cmp(&(
            &b.source,
            &b.target,
            b.proto,
            b.port,
            b.target_address,
        ))
    });
    let warnings = nodes
        .iter()
        .filter_map(|n| match &n.agent {
            AgentAnswer::NoAnswer(why) => Some(format!(
                "the agent on {} did not answer ({why}): its report and its probes are missing",
                n.name
            )),
            _ => None,
        })
        .collect();
    MatrixDocument {
        schema: kports_core::SCHEMA_VERSION,
        kind: "matrix".into(),
        hostname: hostname.into(),
        nodes,
        items,
        warnings,
    }
}

/// Where the matrix's other nodes are, and how to ask them.
#[derive(Debug, Clone)]
pub struct Peers {
    pub gather: Gather,
    /// Every other node (not only those this node probes).
    pub sources: Vec<Source>,
}

/// The last gathered matrix, shared by every request.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl Cache {
    /// The cached answer if fresh, else `make()`'s, kept for [`CACHE_FOR`].
    pub(crate) async fn get_or<F>(&self, make: F) -> Bytes
    where
        F: std::future::Future<Output = Bytes>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, bytes)) = &*last
            && at.elapsed() < CACHE_FOR
        {
            return bytes.clone();
        }
        let bytes = make.await;
        *last = Some((Instant::now(), bytes.clone()));
        bytes
    }
}

/// Serialized once per gathering.
pub(crate) fn bytes(doc: &MatrixDocument) -> Bytes {
    // Strings, numbers, enums and JSON values: always serializable.
    Bytes::from(serde_json::to_vec(doc).unwrap_or_default())
}

pub(crate) type SharedPeers = Arc<std::sync::RwLock<Option<Peers>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use kports_probe::{Status, Transport};

    fn row(source: &str, target: &str, port: u16) -> Row {
        Row {
            source: source.into(),
            target: target.into(),
            target_address: "192.0.2.1".parse().unwrap(),
            proto: Transport::Tcp,
            port,
            status: Status::Open,
            errno: None,
            latency_ms: Duration::from_millis(1),
            component: None,
        }
    }

    fn node(name: &str, agent: AgentAnswer) -> NodeEntry {
        NodeEntry {
            name: name.into(),
            roles: vec![],
            agent_url: None,
            agent,
            report: None,
        }
    }

    #[test]
    fn nodes_and_rows_in_order_and_a_silent_agent_warned_once() {
        let doc = document(
            "cp1",
            vec![
                Gathered {
                    node: node("w1", AgentAnswer::Answered),
                    rows: vec![row("w1", "cp1", 6443)],
                },
                Gathered {
                    node: node("cp1", AgentAnswer::Answered),
                    rows: vec![row("cp1", "w1", 10250), row("cp1", "w1", 10250 - 1)],
                },
                Gathered {
                    node: node("w2", AgentAnswer::NoAnswer("timeout".into())),
                    rows: vec![],
                },
            ],
        );
        let names: Vec<&str> = doc.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["cp1", "w1", "w2"]);
        let keys: Vec<(&str, u16)> = doc
            .items
            .iter()
            .map(|r| (r.source.as_str(), r.port))
            .collect();
        assert_eq!(keys, [("cp1", 10249), ("cp1", 10250), ("w1", 6443)]);
        assert_eq!(doc.warnings.len(), 1);
        assert!(doc.warnings[0].contains("w2"));
        let back: MatrixDocument = serde_json::from_slice(&bytes(&doc)).unwrap();
        assert_eq!(back, doc);
    }

    #[tokio::test(start_paused = true)]
    async fn one_gathering_per_period() {
        let cache = Cache::default();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let make = || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Bytes::from_static(b"x")
        };
        cache.get_or(make()).await;
        cache.get_or(make()).await;
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::advance(CACHE_FOR + Duration::from_millis(1)).await;
        cache.get_or(make()).await;
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
