//! What the agent holds between rounds: the latest report and probes, ready to serve.
//!
//! A [`Round`] comes from the binary's collector; [`AgentState::update`] redacts its documents,
//! serializes them once (every request for the plain document is a copy of shared bytes, so a
//! busy scraper costs no serialization) and feeds the metrics. Until the first report arrives
//! the agent is alive but not ready.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use kports_core::Proto;
use kports_core::catalog::Severity;
use serde::Serialize;
use serde_json::Value;

use crate::metrics::Metrics;
use crate::redact::redact_document;

/// How one probe ended, named as `kports probe -o json` names it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeStatus {
    /// TCP: the handshake completed. UDP: a kports responder answered.
    Open,
    /// TCP: a reset or ICMP port-unreachable.
    Refused,
    /// TCP: no answer before the timeout.
    Filtered,
    /// ICMP host or network unreachable, administratively prohibited, or no route.
    Unreachable,
    /// UDP: ICMP port-unreachable.
    Closed,
    /// UDP: no answer, which an open port and a drop both give.
    #[serde(rename = "open|filtered")]
    OpenFiltered,
}

impl ProbeStatus {
    pub const ALL: [ProbeStatus; 6] = [
        ProbeStatus::Open,
        ProbeStatus::Refused,
        ProbeStatus::Filtered,
        ProbeStatus::Unreachable,
        ProbeStatus::Closed,
        ProbeStatus::OpenFiltered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Open => "open",
            ProbeStatus::Refused => "refused",
            ProbeStatus::Filtered => "filtered",
            ProbeStatus::Unreachable => "unreachable",
            ProbeStatus::Closed => "closed",
            ProbeStatus::OpenFiltered => "open|filtered",
        }
    }

    /// Whether the far side (or the path) answered, so the latency means something.
    pub fn answered(self) -> bool {
        !matches!(self, ProbeStatus::Filtered | ProbeStatus::OpenFiltered)
    }
}

/// One probe of one peer's port: the fixed fields of `kports probe -o json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeRow {
    pub source: String,
    /// The peer's name.
    pub target: String,
    pub target_address: IpAddr,
    pub proto: Proto,
    pub port: u16,
    pub status: ProbeStatus,
    pub errno: Option<String>,
    pub latency_ms: f64,
    /// The catalog component the port belongs to (`kubelet`), when known.
    pub component: Option<String>,
}

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
    pub rows: Vec<ProbeRow>,
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
    probes: Option<Arc<Served<Vec<ProbeRow>>>>,
    /// The last round said this agent does not probe.
    no_prober: bool,
}

/// The probes as the API serves them.
#[derive(Debug)]
pub(crate) enum LatestProbes {
    Served(Arc<Served<Vec<ProbeRow>>>),
    NotYet,
    NoProber,
}

/// The agent's shared state: cheap to clone, one per process.
#[derive(Debug, Clone)]
pub struct AgentState {
    hostname: Arc<str>,
    latest: Arc<RwLock<Latest>>,
    pub(crate) metrics: Arc<Metrics>,
}

/// The envelope of `/api/v1/probes`, shaped like every kports document.
#[derive(Serialize)]
pub(crate) struct ProbesDocument<'a> {
    pub(crate) schema: u32,
    pub(crate) kind: &'static str,
    pub(crate) hostname: &'a str,
    pub(crate) items: &'a [&'a ProbeRow],
    pub(crate) warnings: [(); 0],
}

impl AgentState {
    pub fn new(hostname: &str) -> AgentState {
        AgentState {
            hostname: hostname.into(),
            latest: Arc::default(),
            metrics: Arc::new(Metrics::new()),
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
                let rows: Vec<&ProbeRow> = run.rows.iter().collect();
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

    pub(crate) fn probes_bytes(&self, rows: &[&ProbeRow]) -> Bytes {
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

    /// Ready once a report has been taken.
    pub fn ready(&self) -> bool {
        self.report().is_some()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
