//! `kports firewall check` as a pure function: required ports x sources -> verdicts.
//!
//! For every required port, the verdict is judged from each kind of source that needs it
//! (expected open) and, for ports that not everyone needs, from the rest of the given sources
//! (expected closed), so a check shows both holes and over-exposure. The sources come from the
//! one chooser, [`crate::sources::choose`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::eval::{Evaluator, Judgement, Packet};
use crate::model::AddrRange;
use crate::ranges::subtract;
use crate::required::{RequiredPort, SourceKind};
use crate::sources::{KindSource, Origin};

/// A source address or range, with what is known about how its packets arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddr {
    pub range: AddrRange,
    /// The node address its packets are sent to.
    pub dst: Option<IpAddr>,
    /// The interface its packets arrive on.
    pub iif: Option<String>,
}

impl SourceAddr {
    pub fn new(range: AddrRange) -> SourceAddr {
        SourceAddr {
            range,
            dst: None,
            iif: None,
        }
    }

    /// The node itself, over loopback.
    pub fn loopback(v6: bool) -> SourceAddr {
        let a: IpAddr = if v6 {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        };
        SourceAddr {
            range: AddrRange::single(a),
            dst: Some(a),
            iif: Some("lo".into()),
        }
    }
}

/// One stretch of ports with one verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub lo: u16,
    pub hi: u16,
    pub judgement: Judgement,
}

/// Who a row's source stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A kind of peer that needs the port (expected open).
    Needs(SourceKind),
    /// The rest of the network (expected closed).
    Others,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Needs(k) => k.as_str(),
            RowKind::Others => "others",
        }
    }
}

impl Serialize for RowKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One (port, source) line of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    pub port: RequiredPort,
    /// Who this source stands for: a [`SourceKind`] that needs the port, or `others`.
    pub source_kind: RowKind,
    pub source: String,
    pub expect_open: bool,
    pub segments: Vec<Segment>,
    /// Whether every segment is as expected; `None` when some depend or are unknown.
    pub ok: Option<bool>,
}

/// Judges every required port from every kind of source that needs it (the control plane's ports
/// from the nodes when the control plane is not known), and the ports not every node needs from
/// the rest of the nodes' sources.
pub fn check(ev: &Evaluator<'_>, ports: &[RequiredPort], sources: &[KindSource]) -> Vec<CheckRow> {
    let mut rows = Vec::new();
    let of = |kind: SourceKind| -> Vec<SourceAddr> {
        sources
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.source.clone())
            .collect()
    };
    let network = of(SourceKind::Nodes);
    let control_plane: Vec<SourceAddr> = sources
        .iter()
        .filter(|s| s.kind == SourceKind::ControlPlane && s.origin != Origin::Sources)
        .map(|s| s.source.clone())
        .collect();
    let v6s: Vec<bool> = {
        let mut v: Vec<bool> = network
            .iter()
            .chain(&control_plane)
            .map(|s| s.range.v6)
            .collect();
        v.sort_unstable();
        v.dedup();
        if v.is_empty() { vec![false] } else { v }
    };
    for port in ports {
        let needing: Vec<SourceAddr> = match port.from {
            SourceKind::All => of(SourceKind::All),
            SourceKind::Nodes => network.clone(),
            SourceKind::ControlPlane if control_plane.is_empty() => network.clone(),
            SourceKind::ControlPlane => control_plane.clone(),
            SourceKind::EtcdPeers => of(SourceKind::EtcdPeers),
            SourceKind::LoadBalancers => of(SourceKind::LoadBalancers),
            SourceKind::SelfOnly => v6s.iter().map(|&v6| SourceAddr::loopback(v6)).collect(),
        };
        for s in &needing {
            rows.push(row(ev, port, RowKind::Needs(port.from), s, true));
        }
        // Who should not reach it: the network, less the sources that need it.
        if matches!(port.from, SourceKind::All | SourceKind::Nodes) {
            continue;
        }
        for net in &network {
            let holes: Vec<AddrRange> = needing.iter().map(|s| s.range).collect();
            for piece in subtract(net.range, &holes).into_iter().take(16) {
                let s = SourceAddr {
                    range: piece,
                    dst: net.dst,
                    iif: net.iif.clone(),
                };
                rows.push(row(ev, port, RowKind::Others, &s, false));
            }
        }
    }
    rows
}

fn row(
    ev: &Evaluator<'_>,
    port: &RequiredPort,
    kind: RowKind,
    s: &SourceAddr,
    expect_open: bool,
) -> CheckRow {
    let p = Packet {
        v6: s.range.v6,
        proto: port.proto_number(),
        dport: port.lo,
        src: s.range,
        dst: s.dst,
        iif: s.iif.clone(),
    };
    let segments: Vec<Segment> = ev
        .judge_ports(&p, port.lo, port.hi)
        .into_iter()
        .map(|(lo, hi, judgement)| Segment { lo, hi, judgement })
        .collect();
    let mut ok = Some(true);
    for seg in &segments {
        match seg.judgement.is_open() {
            None => ok = ok.and(None),
            Some(open) if open != expect_open => {
                ok = Some(false);
                break;
            }
            Some(_) => {}
        }
    }
    CheckRow {
        port: port.clone(),
        source_kind: kind,
        source: s.range.to_string(),
        expect_open,
        segments,
        ok,
    }
}
