//! The agent's Prometheus metrics, in OpenMetrics text, with cardinality bounded in code.
//!
//! Series grow with the number of peers this node probes (k, see [`crate::peers`]), never with
//! the size of the cluster:
//!
//! | family | labels | series |
//! |---|---|---|
//! | `kports_peer_ports` (gauge: ports in a status) | `peer`, `group`, `status` | ≤ peers × groups × statuses seen |
//! | `kports_probe_latency_seconds` (histogram) | `group` | ≤ groups × buckets |
//! | `kports_scan_duration_seconds` (histogram) | `phase` | 2 × buckets |
//! | `kports_findings` (gauge) | `id`, `severity` | ≤ finding ids |
//! | `kports_refresh_failures_total` | `phase` | 2 |
//! | `kports_peers_probed` (gauge) | none | 1 |
//!
//! `group` is the catalog component a port belongs to (`kube-apiserver`, `kubelet`, `etcd`, a
//! CNI's agent): a short fixed list. The gauges hold the last round only (cleared each round),
//! so a peer that is no longer probed leaves no stale series. Each label has a hard cap
//! ([`MAX_PEERS`], [`MAX_GROUPS`], [`MAX_FINDING_IDS`]); values beyond it are counted under
//! `other`, so even a wrong peer selection cannot flood a Prometheus server.

use std::collections::BTreeSet;

use kports_core::catalog::Severity;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use kports_probe::Status;

use crate::state::{ProbeRun, Report};

/// At most this many peers get their own `peer` label value in one round.
pub const MAX_PEERS: usize = 512;
/// At most this many port groups get their own `group` label value.
pub const MAX_GROUPS: usize = 24;
/// At most this many finding ids get their own `id` label value.
pub const MAX_FINDING_IDS: usize = 64;
/// The label value standing for everything beyond a cap.
pub const OTHER: &str = "other";
/// The group of a port whose component is not known.
pub const UNKNOWN_GROUP: &str = "unknown";

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which part of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Report,
    Probe,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Report => "report",
            Phase::Probe => "probe",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
    group: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FindingLabels {
    id: String,
    severity: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms to about 3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn scan_histogram() -> Histogram {
    // 10 ms to about 82 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// The agent's registry and the handles that fill it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    peer_ports: Family<PeerLabels, Gauge>,
    latency: Family<GroupLabels, Histogram, fn() -> Histogram>,
    scan: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    findings: Family<FindingLabels, Gauge>,
    failures: Family<PhaseLabels, Counter>,
    peers_probed: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Maps label values to themselves until `cap` distinct ones are seen, then to [`OTHER`].
struct Capped {
    seen: BTreeSet<String>,
    cap: usize,
}

impl Capped {
    fn new(cap: usize) -> Capped {
        Capped {
            seen: BTreeSet::new(),
            cap,
        }
    }

    fn label(&mut self, value: &str) -> String {
        if self.seen.contains(value) || self.seen.len() < self.cap {
            self.seen.insert(value.to_string());
            value.to_string()
        } else {
            OTHER.to_string()
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kports");
        let peer_ports = Family::<PeerLabels, Gauge>::default();
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let scan = Family::new_with_constructor(scan_histogram as fn() -> Histogram);
        let findings = Family::<FindingLabels, Gauge>::default();
        let failures = Family::<PhaseLabels, Counter>::default();
        let peers_probed = Gauge::default();
        registry.register(
            "peer_ports",
            "Ports of a probed peer in each status at the last round, by port group",
            peer_ports.clone(),
        );
        registry.register_with_unit(
            "probe_latency",
            "Time to a probe's answer, by port group (probes without an answer are not observed)",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register_with_unit(
            "scan_duration",
            "Time one round took: the node's report, or the probes of its peers",
            Unit::Seconds,
            scan.clone(),
        );
        registry.register(
            "findings",
            "Findings of the node's last report, by id and severity",
            findings.clone(),
        );
        registry.register(
            "refresh_failures",
            "Rounds whose report or probes failed (the previous document stays served)",
            failures.clone(),
        );
        registry.register(
            "peers_probed",
            "Peers probed at the last round",
            peers_probed.clone(),
        );
        Metrics {
            registry,
            peer_ports,
            latency,
            scan,
            findings,
            failures,
            peers_probed,
        }
    }

    /// Replaces the findings with those of `report` and records how long it took.
    pub fn observe_report(&self, report: &Report) {
        self.scan
            .get_or_create(&PhaseLabels {
                phase: Phase::Report.as_str(),
            })
            .observe(report.took.as_secs_f64());
        self.findings.clear();
        let mut ids = Capped::new(MAX_FINDING_IDS);
        for f in &report.findings {
            let labels = FindingLabels {
                id: ids.label(&f.id),
                severity: severity_label(f.severity),
            };
            self.findings.get_or_create(&labels).inc();
        }
    }

    /// Replaces the per-peer statuses with those of `run` and records latencies and duration.
    pub fn observe_probes(&self, run: &ProbeRun) {
        self.scan
            .get_or_create(&PhaseLabels {
                phase: Phase::Probe.as_str(),
            })
            .observe(run.took.as_secs_f64());
        self.peer_ports.clear();
        let mut peers = Capped::new(MAX_PEERS);
        let mut groups = Capped::new(MAX_GROUPS);
        let mut probed = BTreeSet::new();
        for row in &run.rows {
            probed.insert(row.target.as_str());
            let group = groups.label(row.component.as_deref().unwrap_or(UNKNOWN_GROUP));
            if answered(row.status) {
                self.latency
                    .get_or_create(&GroupLabels {
                        group: group.clone(),
                    })
                    .observe(row.latency_ms.as_secs_f64());
            }
            let labels = PeerLabels {
                peer: peers.label(&row.target),
                group,
                status: row.status.as_str(),
            };
            self.peer_ports.get_or_create(&labels).inc();
        }
        self.peers_probed
            .set(i64::try_from(probed.len()).unwrap_or(i64::MAX));
    }

    /// Counts a failed part of a round.
    pub fn observe_failure(&self, phase: Phase) {
        self.failures
            .get_or_create(&PhaseLabels {
                phase: phase.as_str(),
            })
            .inc();
    }

    /// The whole registry in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// How many series (sample lines) [`Metrics::encode`] gives now.
    pub fn series(&self) -> usize {
        self.encode()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count()
    }
}

/// Whether the far side (or the path) answered, so the latency means something.
fn answered(s: Status) -> bool {
    !matches!(s, Status::Filtered | Status::OpenFiltered | Status::Unknown)
}

fn severity_label(s: Severity) -> &'static str {
    s.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Finding;
    use kports_probe::Transport;
    use kports_probe::row::Row;
    use std::time::Duration;

    fn row(peer: &str, component: &str, port: u16, status: Status) -> Row {
        Row {
            source: "n0".into(),
            target: peer.into(),
            target_address: "192.0.2.1".parse().unwrap(),
            proto: Transport::Tcp,
            port,
            status,
            errno: None,
            latency_ms: Duration::from_micros(1500),
            component: Some(component.into()),
        }
    }

    fn run(rows: Vec<Row>) -> ProbeRun {
        ProbeRun {
            rows,
            took: Duration::from_millis(40),
        }
    }

    #[test]
    fn statuses_per_peer_and_group_hold_the_last_round_only() {
        let m = Metrics::new();
        m.observe_probes(&run(vec![
            row("cp1", "kube-apiserver", 6443, Status::Open),
            row("w2", "kubelet", 10250, Status::Filtered),
        ]));
        let text = m.encode();
        assert!(
            text.contains("kports_peer_ports{peer=\"w2\",group=\"kubelet\",status=\"filtered\"} 1"),
            "{text}"
        );
        m.observe_probes(&run(vec![row(
            "cp1",
            "kube-apiserver",
            6443,
            Status::Refused,
        )]));
        let text = m.encode();
        assert!(!text.contains("peer=\"w2\""), "{text}");
        assert!(text.contains(
            "kports_peer_ports{peer=\"cp1\",group=\"kube-apiserver\",status=\"refused\"} 1"
        ));
        assert!(text.contains("kports_peers_probed 1"));
        // Latency observed for answered probes only: two rounds, one answered probe each.
        assert!(
            text.contains("kports_probe_latency_seconds_count{group=\"kube-apiserver\"} 2"),
            "{text}"
        );
        assert!(!text.contains("kports_probe_latency_seconds_count{group=\"kubelet\"}"));
        assert!(text.contains("kports_scan_duration_seconds_count{phase=\"probe\"} 2"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn findings_by_id_and_severity() {
        let m = Metrics::new();
        let f = |id: &str, severity| Finding {
            id: id.into(),
            severity,
        };
        m.observe_report(&Report {
            document: serde_json::json!({}),
            findings: vec![
                f("port-missing", Severity::Error),
                f("port-missing", Severity::Error),
                f("too-wide", Severity::Warning),
            ],
            took: Duration::from_millis(200),
        });
        let text = m.encode();
        assert!(
            text.contains("kports_findings{id=\"port-missing\",severity=\"error\"} 2"),
            "{text}"
        );
        assert!(text.contains("kports_findings{id=\"too-wide\",severity=\"warning\"} 1"));
        assert!(text.contains("kports_scan_duration_seconds_count{phase=\"report\"} 1"));
    }

    #[test]
    fn labels_beyond_their_caps_become_other() {
        let m = Metrics::new();
        let rows: Vec<Row> = (0..MAX_PEERS + 100)
            .map(|i| {
                row(
                    &format!("n{i}"),
                    &format!("c{}", i % (MAX_GROUPS + 5)),
                    1,
                    Status::Open,
                )
            })
            .collect();
        m.observe_probes(&run(rows));
        let text = m.encode();
        let peer_series = text
            .lines()
            .filter(|l| l.starts_with("kports_peer_ports{"))
            .count();
        // Each capped peer has one group; `other` peers spread over every group seen.
        assert!(peer_series <= MAX_PEERS + MAX_GROUPS + 1, "{peer_series}");
        assert!(text.contains("peer=\"other\""));
        assert!(text.contains("group=\"other\""));
        let groups = text
            .lines()
            .filter(|l| l.starts_with("kports_probe_latency_seconds_count{"))
            .count();
        assert_eq!(groups, MAX_GROUPS + 1);
        assert!(text.contains("kports_peers_probed 612"));
    }
}
