//! `/api/v1/matrix`: the whole cluster's matrix, as `kports cluster -o json` gives it (the
//! same join: kports-cluster's, with a cause for every failing cell), from this node's own
//! report and the reports its peers' agents give ([`crate::gather`]).
//!
//! The document is `kports cluster`'s (`kind: "cluster"`, the cells as `items`, `nodes` and
//! `failing` in `context`), and its `context` also holds `reports`: each node's report without
//! its probes (those are the cells), for the page's node list (roles, component health,
//! findings). Gathering fans out to every peer, so one answer is kept for [`CACHE_FOR`] and
//! made by one request at a time: a page open on many screens costs the peers one round of
//! requests per period, not one per screen.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use kports_cluster::matrix::{NodeInput, join};
use kports_cluster::report::NodeDoc;
use kports_core::Warning;
use kports_core::document::Document;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::gather::{Gather, Source};

/// How long one gathered matrix is served before the peers are asked again.
pub const CACHE_FOR: Duration = Duration::from_secs(5);

/// The `kind` of the document (the same as `kports cluster`'s).
pub const KIND: &str = "cluster";

/// Joins the nodes' reports into the matrix document (serialized).
pub fn document(hostname: &str, mut nodes: Vec<NodeInput>) -> Bytes {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|a, b| a.name == b.name);
    let m = join(&nodes);
    let warnings: Vec<Warning> = nodes
        .iter()
        .filter_map(|n| {
            let why = n.report.as_ref().err()?;
            Some(Warning::new(
                "node-no-report",
                format!("{} gave no report: {why}", n.name),
            ))
        })
        .collect();
    let reports: Vec<Option<NodeDoc>> = nodes
        .iter()
        .map(|n| {
            n.report.as_ref().ok().map(|d| NodeDoc {
                probes: None,
                ..d.clone()
            })
        })
        .collect();
    let context = serde_json::json!({
        "nodes": m.nodes,
        "failing": m.failing(),
        "reports": reports,
    });
    let doc = Document::new(KIND, hostname, &m.cells, &warnings).with_context(context);
    // Plain data (strings, numbers, enums): always serializable.
    Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
}

/// Where the matrix's other nodes are, and how to ask them.
#[derive(Debug, Clone)]
pub struct Peers {
    pub gather: Gather,
    /// Every node (not only those this node probes); this node's own entry gives its roles
    /// and addresses.
    pub sources: Vec<Source>,
}

/// The last gathered matrix, shared by every request.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl Cache {
    /// The cached answer if fresh, else `make`'s, kept for [`CACHE_FOR`].
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

pub(crate) type SharedPeers = Arc<std::sync::RwLock<Option<Peers>>>;

#[cfg(test)]
mod tests {
    use super::*;

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
