//! What the agent holds between rounds: the latest report and probes, ready to serve.
//!
//! A [`Round`] comes from the binary's collector; [`AgentState::update`] redacts its documents,
//! serializes them once (every request for the plain document is a copy of shared bytes, so a
//! busy scraper costs no serialization) and feeds the metrics. Until the first report arrives
//! the agent is alive but not ready.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use kports_core::catalog::Severity;
use kports_probe::row::Row;
use serde::Serialize;
use serde_json::Value;

use crate::matrix::{self, Cache, Peers, SharedPeers};
use crate::metrics::Metrics;
use crate::redact::redact_document;
use kports_cluster::matrix::NodeInput;
use kports_cluster::report;
use kports_core::catalog::Role;

/// A finding of this node's report, as the metrics count it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
}

/// This node's report, as the binary made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The document `kports report -o json` prints (envelope included).
    pub document: Value,
    pub findings: Vec<Finding>,
    /// How long taking it took.
    pub took: Duration,
}

/// One round of probes of this node's peers.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRun {
    /// kports-probe's rows, as `kports probe -o json` prints them.
    pub rows: Vec<Row>,
    pub took: Duration,
}

/// What one round of the collector gives. A failed part keeps the previous document served
/// and counts as a failure in the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub report: Result<Report, String>,
    /// `None` when this agent does not probe its peers at all (no prober is built in).
    pub probes: Option<Result<ProbeRun, String>>,
}

/// The served form of a document: bytes serialized once, and what filters need.
#[derive(Debug)]
pub(crate) struct Served<T> {
    pub(crate) bytes: Bytes,
    pub(crate) data: T,
}

#[derive(Debug, Default)]
struct Latest {
    report: Option<Arc<Served<()>>>,
    probes: Option<Arc<Served<Vec<Row>>>>,
    /// The last round said this agent does not probe.
    no_prober: bool,
}

/// The probes as the API serves them.
#[derive(Debug)]
pub(crate) enum LatestProbes {
    Served(Arc<Served<Vec<Row>>>),
    NotYet,
    NoProber,
}

/// The agent's shared state: cheap to clone, one per process.
#[derive(Debug, Clone)]
pub struct AgentState {
    hostname: Arc<str>,
    latest: Arc<RwLock<Latest>>,
    pub(crate) metrics: Arc<Metrics>,
    /// The other nodes whose agents `/api/v1/matrix` asks (none until the binary sets them).
    pub(crate) peers: SharedPeers,
    pub(crate) matrix: Arc<Cache>,
}

/// The envelope of `/api/v1/probes`, shaped like every kports document.
#[derive(Serialize)]
pub(crate) struct ProbesDocument<'a> {
    pub(crate) schema: u32,
    pub(crate) kind: &'static str,
    pub(crate) hostname: &'a str,
    pub(crate) items: &'a [&'a Row],
    pub(crate) warnings: [(); 0],
}

impl AgentState {
    pub fn new(hostname: &str) -> AgentState {
        AgentState {
            hostname: hostname.into(),
            latest: Arc::default(),
            metrics: Arc::new(Metrics::new()),
            peers: Arc::default(),
            matrix: Arc::default(),
        }
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Takes in one round: documents to serve and observations for the metrics.
    pub fn update(&self, round: Round) {
        let report = match round.report {
            Ok(mut report) => {
                redact_document(&mut report.document);
                self.metrics.observe_report(&report);
                // A `Value` always serializes.
                serde_json::to_vec(&report.document).ok().map(|b| {
                    Arc::new(Served {
                        bytes: Bytes::from(b),
                        data: (),
                    })
                })
            }
            Err(_) => {
                self.metrics.observe_failure(crate::metrics::Phase::Report);
                None
            }
        };
        let no_prober = round.probes.is_none();
        let probes = match round.probes {
            None => None,
            Some(Ok(run)) => {
                self.metrics.observe_probes(&run);
                let rows: Vec<&Row> = run.rows.iter().collect();
                let bytes = self.probes_bytes(&rows);
                Some(Arc::new(Served {
                    bytes,
                    data: run.rows,
                }))
            }
            Some(Err(_)) => {
                self.metrics.observe_failure(crate::metrics::Phase::Probe);
                None
            }
        };
        let mut latest = self.latest.write().unwrap_or_else(|e| e.into_inner());
        if report.is_some() {
            latest.report = report;
        }
        if probes.is_some() {
            latest.probes = probes;
        }
        latest.no_prober = no_prober;
    }

    pub(crate) fn probes_bytes(&self, rows: &[&Row]) -> Bytes {
        let doc = ProbesDocument {
            schema: kports_core::SCHEMA_VERSION,
            kind: "probes",
            hostname: &self.hostname,
            items: rows,
            warnings: [],
        };
        // Rows are plain data (strings, numbers, enums): they always serialize.
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
    }

    pub(crate) fn report(&self) -> Option<Arc<Served<()>>> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .report
            .clone()
    }

    pub(crate) fn probes(&self) -> LatestProbes {
        let latest = self.latest.read().unwrap_or_else(|e| e.into_inner());
        match (&latest.probes, latest.no_prober) {
            (_, true) => LatestProbes::NoProber,
            (Some(p), false) => LatestProbes::Served(p.clone()),
            (None, false) => LatestProbes::NotYet,
        }
    }

    /// Sets the other nodes `/api/v1/matrix` gathers from (the peer source changes them).
    pub fn set_peers(&self, peers: Peers) {
        *self.peers.write().unwrap_or_else(|e| e.into_inner()) = Some(peers);
    }

    /// This node's part of the matrix: its own latest report.
    pub(crate) fn own(&self, roles: Vec<Role>, addresses: Vec<std::net::IpAddr>) -> NodeInput {
        let report = match self.report() {
            Some(r) => std::str::from_utf8(&r.bytes)
                .map_err(|e| e.to_string())
                .and_then(|t| report::parse(t).map_err(|e| format!("its own report: {e}"))),
            None => Err("its first report is not taken yet".to_string()),
        };
        NodeInput {
            name: self.hostname.to_string(),
            addresses,
            roles,
            report,
        }
    }

    /// The whole cluster's matrix: this node's report and its peers' (cached briefly).
    pub(crate) async fn matrix_bytes(&self) -> Bytes {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner()).clone();
        self.matrix
            .get_or(async {
                let me = self.hostname();
                let Some(p) = peers else {
                    return matrix::document(me, vec![self.own(Vec::new(), Vec::new())]);
                };
                let (mine, others): (Vec<_>, Vec<_>) =
                    p.sources.into_iter().partition(|s| s.name == me);
                let (roles, addresses) = mine
                    .into_iter()
                    .next()
                    .map(|s| (s.roles, s.addresses))
                    .unwrap_or_default();
                let mut all = vec![self.own(roles, addresses)];
                all.extend(p.gather.all(others).await);
                matrix::document(me, all)
            })
            .await
    }

    /// Ready once a report has been taken.
    pub fn ready(&self) -> bool {
        self.report().is_some()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
