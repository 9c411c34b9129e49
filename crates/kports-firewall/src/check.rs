//! `kports firewall check` as a pure function: required ports x sources -> verdicts.
//!
//! For every required port, the verdict is judged from each kind of source that needs it
//! (expected open) and, for ports that not everyone needs, from the rest of the given sources
//! (expected closed), so a check shows both holes and over-exposure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::eval::{Evaluator, Judgement, Packet};
use crate::model::AddrRange;
use crate::required::{RequiredPort, SourceKind};

/// A source address or range, with what is known about how its packets arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub range: AddrRange,
    /// The node address its packets are sent to.
    pub dst: Option<IpAddr>,
    /// The interface its packets arrive on.
    pub iif: Option<String>,
}

impl Source {
    pub fn new(range: AddrRange) -> Source {
        Source {
            range,
            dst: None,
            iif: None,
        }
    }

    /// The node itself, over loopback.
    pub fn loopback(v6: bool) -> Source {
        let a: IpAddr = if v6 {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        };
        Source {
            range: AddrRange::single(a),
            dst: Some(a),
            iif: Some("lo".into()),
        }
    }
}

/// The sources a check judges from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Everyone who may use the cluster (`--sources`); also the nodes.
    pub network: Vec<Source>,
    /// Control-plane nodes (`--control-plane`); the network stands in when empty.
    pub control_plane: Vec<Source>,
    /// Load balancers' health checkers.
    pub load_balancers: Vec<Source>,
}

/// One stretch of ports with one verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub lo: u16,
    pub hi: u16,
    pub judgement: Judgement,
}

/// One (port, source) line of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    pub port: RequiredPort,
    /// Who this source stands for: a [`SourceKind`] that needs the port, or `others`.
    pub source_kind: String,
    pub source: String,
    pub expect_open: bool,
    pub segments: Vec<Segment>,
    /// Whether every segment is as expected; `None` when some depend or are unknown.
    pub ok: Option<bool>,
}

/// Judges every required port from every kind of source that needs it, and from the others.
pub fn check(ev: &Evaluator<'_>, ports: &[RequiredPort], sources: &Sources) -> Vec<CheckRow> {
    let mut rows = Vec::new();
    let v6s: Vec<bool> = {
        let mut v: Vec<bool> = sources
            .network
            .iter()
            .chain(&sources.control_plane)
            .map(|s| s.range.v6)
            .collect();
        v.sort_unstable();
        v.dedup();
        if v.is_empty() { vec![false] } else { v }
    };
    for port in ports {
        let needing: Vec<Source> = match port.from {
            SourceKind::All | SourceKind::Nodes => sources.network.clone(),
            SourceKind::ControlPlane if sources.control_plane.is_empty() => sources.network.clone(),
            SourceKind::ControlPlane => sources.control_plane.clone(),
            SourceKind::LoadBalancers => sources.load_balancers.clone(),
            SourceKind::SelfOnly => v6s.iter().map(|&v6| Source::loopback(v6)).collect(),
        };
        for s in &needing {
            rows.push(row(ev, port, port.from.as_str(), s, true));
        }
        // Who should not reach it: the network, less the sources that need it.
        if matches!(port.from, SourceKind::All | SourceKind::Nodes) {
            continue;
        }
        for net in &sources.network {
            let holes: Vec<AddrRange> = needing.iter().map(|s| s.range).collect();
            for piece in subtract(net.range, &holes).into_iter().take(16) {
                let s = Source {
                    range: piece,
                    dst: net.dst,
                    iif: net.iif.clone(),
                };
                rows.push(row(ev, port, "others", &s, false));
            }
        }
    }
    rows
}

fn row(
    ev: &Evaluator<'_>,
    port: &RequiredPort,
    kind: &str,
    s: &Source,
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
        source_kind: kind.to_string(),
        source: s.range.to_string(),
        expect_open,
        segments,
        ok,
    }
}

/// `range` without the addresses of `holes`, as disjoint ranges in order.
pub fn subtract(range: AddrRange, holes: &[AddrRange]) -> Vec<AddrRange> {
    let mut out = vec![range];
    for h in holes {
        let mut next = Vec::new();
        for r in out {
            if !r.overlaps(h) {
                next.push(r);
                continue;
            }
            if h.lo > r.lo {
                next.push(AddrRange {
                    v6: r.v6,
                    lo: r.lo,
                    hi: h.lo - 1,
                });
            }
            if h.hi < r.hi {
                next.push(AddrRange {
                    v6: r.v6,
                    lo: h.hi + 1,
                    hi: r.hi,
                });
            }
        }
        out = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_cidr;

    #[test]
    fn subtracting_addresses() {
        let net = parse_cidr("198.51.100.0/24").unwrap();
        let pieces = subtract(
            net,
            &[
                parse_cidr("198.51.100.1").unwrap(),
                parse_cidr("198.51.100.3").unwrap(),
            ],
        );
        let text: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "198.51.100.0",
                "198.51.100.2",
                "198.51.100.4-198.51.100.255"
            ]
        );
        assert!(subtract(net, &[net]).is_empty());
        assert_eq!(subtract(net, &[parse_cidr("10.0.0.1").unwrap()]), vec![net]);
    }
}
