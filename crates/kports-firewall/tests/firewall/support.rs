//! Helpers shared by the test modules: fixtures by name, packets, short verdict strings.

use std::path::PathBuf;

use kports_firewall::capture::{Capture, SaveSource, assemble};
use kports_firewall::model::{Backend, Ruleset, parse_cidr};
use kports_firewall::{Evaluator, Judgement, Packet};

pub fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A ruleset from an `nft -j` fixture (with its `nft -a` listing for rule texts).
pub fn nft(name: &str) -> Ruleset {
    let c = Capture {
        nft_json: Some(Ok(fixture(&format!("{name}.nft.json")))),
        nft_text: Some(Ok(fixture(&format!("{name}.nft.txt")))),
        ..Capture::default()
    };
    let (rs, warnings) = assemble(&c);
    assert!(warnings.is_empty(), "{warnings:?}");
    rs
}

/// A ruleset from an iptables-save text.
pub fn save(text: &str, backend: Backend, v6: bool) -> Ruleset {
    let c = Capture {
        saves: vec![(SaveSource { backend, v6 }, Ok(text.to_string()))],
        ..Capture::default()
    };
    let (rs, warnings) = assemble(&c);
    assert!(warnings.is_empty(), "{warnings:?}");
    rs
}

/// A new connection: `tcp`/`udp`, port, source address or CIDR.
pub fn pkt(proto: &str, port: u16, src: &str) -> Packet {
    let src = parse_cidr(src).unwrap();
    Packet {
        v6: src.v6,
        proto: if proto == "tcp" { 6 } else { 17 },
        dport: port,
        src,
        dst: None,
        iif: None,
    }
}

pub fn judge(rs: &Ruleset, p: &Packet) -> Judgement {
    Evaluator::new(rs).judge(p)
}

/// `accept`, `drop`, ... and the deciding rule's chain and position: `reject ip filter INPUT #3`.
pub fn short(j: &Judgement) -> String {
    let r = match j {
        Judgement::Accept { by } => by.iter().rev().find(|r| r.position.is_some()).or(by.last()),
        Judgement::Drop { by } | Judgement::Reject { by, .. } => Some(by),
        Judgement::Depends { at, .. } => Some(at),
        Judgement::Unknown { .. } => None,
    };
    match r {
        Some(r) => format!(
            "{} {} {} {}",
            j.word(),
            r.table,
            r.chain,
            r.position.map_or("policy".to_string(), |p| format!("#{p}"))
        ),
        None => j.word().to_string(),
    }
}
