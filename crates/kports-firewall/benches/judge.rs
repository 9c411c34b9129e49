//! Benchmark: judge every required port of a control-plane node with Calico (from the port
//! catalog) against kube-proxy's rules of a large cluster (about 20,000 rules), parsing
//! included. Prints the median of several runs.
//!
//! `cargo bench -p kports-firewall --bench judge` runs it; `... -- emit N` prints the generated
//! ruleset of about N rules instead (the fixture script uses that).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/kube_proxy.rs"]
mod kube_proxy;

use std::time::{Duration, Instant};

use kports_core::catalog::Catalog;
use kports_firewall::Evaluator;
use kports_firewall::capture::{Capture, SaveSource, assemble};
use kports_firewall::model::{Backend, parse_cidr};
use kports_firewall::required::{PortCatalog, Role, SourceKind};
use kports_firewall::sources::{KindSource, Origin};
use kports_firewall::verdicts::{SourceAddr, check};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.first().map(String::as_str) == Some("emit") {
        let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
        print!("{}", kube_proxy::save(n));
        return;
    }
    let rules = 22_000;
    let text = kube_proxy::save(rules);
    let lines = text.lines().filter(|l| l.starts_with("-A ")).count();
    let ports = Catalog::builtin()
        .unwrap()
        .required(Role::ControlPlane, Some("calico"))
        .ports;
    let source = |kind: SourceKind, range: &str, origin: Origin| KindSource {
        kind,
        source: SourceAddr {
            range: parse_cidr(range).unwrap(),
            dst: "198.51.100.1".parse().ok(),
            iif: Some("eth0".into()),
        },
        origin,
    };
    let sources = [
        source(SourceKind::All, "198.51.100.0/24", Origin::Sources),
        source(SourceKind::Nodes, "198.51.100.0/24", Origin::Sources),
        source(
            SourceKind::ControlPlane,
            "198.51.100.10",
            Origin::ControlPlane,
        ),
    ];
    let mut times: Vec<Duration> = Vec::new();
    let mut parse_times: Vec<Duration> = Vec::new();
    let mut verdicts = 0;
    for _ in 0..15 {
        let start = Instant::now();
        let capture = Capture {
            saves: vec![(
                SaveSource {
                    backend: Backend::IptablesNft,
                    v6: false,
                },
                Ok(text.clone()),
            )],
            ..Capture::default()
        };
        let (rs, _) = assemble(&capture);
        parse_times.push(start.elapsed());
        let ev = Evaluator::new(&rs);
        let rows = check(&ev, &ports, &sources);
        verdicts = rows.iter().map(|r| r.segments.len()).sum();
        times.push(start.elapsed());
        std::hint::black_box(rows);
    }
    times.sort();
    parse_times.sort();
    let median = times[times.len() / 2];
    println!(
        "judge: {lines} rules (kube-proxy, iptables-save), {} required ports of a control-plane node, {verdicts} verdicts: median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs (parsing included; parsing alone: median {:.1} ms)",
        ports.len(),
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len(),
        parse_times[parse_times.len() / 2].as_secs_f64() * 1e3
    );
}
