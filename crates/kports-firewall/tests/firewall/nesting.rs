//! Nested and repeated jumps and gotos, written as the real tools print them (iptables-save
//! text and `nft -j` JSON) and parsed by kports: every packet gets an answer, and the work spent
//! on it stays within a bound that grows linearly with the number of rules, whatever the shape.

use kports_firewall::capture::{Capture, SaveSource, assemble};
use kports_firewall::model::{Backend, Ruleset};
use kports_firewall::{Evaluator, Judgement};
use proptest::prelude::*;

use crate::support::pkt;

/// What a generated rule matches.
#[derive(Debug, Clone, Copy)]
enum Match {
    Always,
    /// `tcp dport N`.
    Port(u16),
    /// A packet mark, which kports cannot know: the walk forks.
    Mark,
    /// A source prefix.
    Src,
}

/// What a generated rule does; jump and goto targets are later chains, as the kernel wants
/// (no loops).
#[derive(Debug, Clone, Copy)]
enum Act {
    Accept,
    Drop,
    Return,
    Count,
    /// Jump to `n` chains further on.
    Jump(usize),
    Goto(usize),
}

type Chains = Vec<Vec<(Match, Act)>>;

fn chains() -> impl Strategy<Value = Chains> {
    let m = prop_oneof![
        4 => Just(Match::Always),
        2 => (7u16..12).prop_map(Match::Port),
        1 => Just(Match::Mark),
        1 => Just(Match::Src),
    ];
    let a = prop_oneof![
        1 => Just(Act::Accept),
        1 => Just(Act::Drop),
        1 => Just(Act::Return),
        1 => Just(Act::Count),
        6 => (1usize..3).prop_map(Act::Jump),
        2 => (1usize..3).prop_map(Act::Goto),
    ];
    prop::collection::vec(prop::collection::vec((m, a), 0..9), 1..15)
}

/// The ladder of the kernel-accepted ruleset that used to hang: each chain jumps to the next
/// `fan` times, the last drops tcp/9.
fn ladder(n: usize, fan: usize) -> Chains {
    let mut cs: Chains = (0..n - 1)
        .map(|_| vec![(Match::Always, Act::Jump(1)); fan])
        .collect();
    cs.push(vec![(Match::Port(9), Act::Drop)]);
    cs
}

/// Chain `i` of `n`: jumps beyond the last chain are dropped by the generator's caller.
fn target(i: usize, d: usize, n: usize) -> Option<usize> {
    (i + d < n).then_some(i + d)
}

fn iptables_save(cs: &Chains) -> String {
    let n = cs.len();
    let name = |i: usize| {
        if i == 0 {
            "INPUT".to_string()
        } else {
            format!("C{i}")
        }
    };
    let mut s =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 1..n {
        s.push_str(&format!(":{} - [0:0]\n", name(i)));
    }
    for (i, rules) in cs.iter().enumerate() {
        for &(m, a) in rules {
            let cond = match m {
                Match::Always => String::new(),
                Match::Port(p) => format!(" -p tcp -m tcp --dport {p}"),
                Match::Mark => " -m mark --mark 0x1".to_string(),
                Match::Src => " -s 10.0.0.0/8".to_string(),
            };
            let act = match a {
                Act::Accept => " -j ACCEPT".to_string(),
                Act::Drop => " -j DROP".to_string(),
                // iptables has no RETURN in a base chain: the policy applies, which an accept
                // policy makes the same.
                Act::Return => " -j RETURN".to_string(),
                Act::Count => String::new(),
                Act::Jump(d) => match target(i, d, n) {
                    Some(t) => format!(" -j {}", name(t)),
                    None => continue,
                },
                Act::Goto(d) => match target(i, d, n) {
                    Some(t) => format!(" -g {}", name(t)),
                    None => continue,
                },
            };
            s.push_str(&format!("-A {}{cond}{act}\n", name(i)));
        }
    }
    s.push_str("COMMIT\n");
    s
}

fn nft_json(cs: &Chains) -> String {
    let n = cs.len();
    let name = |i: usize| format!("c{i}");
    let mut items = vec![
        r#"{"table": {"family": "inet", "name": "t", "handle": 1}}"#.to_string(),
        r#"{"chain": {"family": "inet", "table": "t", "name": "c0", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}"#.to_string(),
    ];
    for i in 1..n {
        items.push(format!(
            r#"{{"chain": {{"family": "inet", "table": "t", "name": "{}", "handle": {}}}}}"#,
            name(i),
            i + 1
        ));
    }
    let mut handle = 100;
    for (i, rules) in cs.iter().enumerate() {
        for &(m, a) in rules {
            let cond = match m {
                Match::Always => String::new(),
                Match::Port(p) => format!(
                    r#"{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "tcp", "field": "dport"}}}}, "right": {p}}}}}, "#
                ),
                Match::Mark => {
                    r#"{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 1}}, "#
                        .to_string()
                }
                Match::Src => r#"{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}}, "#.to_string(),
            };
            let act = match a {
                Act::Accept => r#"{"accept": null}"#.to_string(),
                Act::Drop => r#"{"drop": null}"#.to_string(),
                Act::Return => r#"{"return": null}"#.to_string(),
                Act::Count => r#"{"counter": {"packets": 0, "bytes": 0}}"#.to_string(),
                Act::Jump(d) => match target(i, d, n) {
                    Some(t) => format!(r#"{{"jump": {{"target": "{}"}}}}"#, name(t)),
                    None => continue,
                },
                Act::Goto(d) => match target(i, d, n) {
                    Some(t) => format!(r#"{{"goto": {{"target": "{}"}}}}"#, name(t)),
                    None => continue,
                },
            };
            handle += 1;
            items.push(format!(
                r#"{{"rule": {{"family": "inet", "table": "t", "chain": "{}", "handle": {handle}, "expr": [{cond}{act}]}}}}"#,
                name(i)
            ));
        }
    }
    format!(r#"{{"nftables": [{}]}}"#, items.join(", "))
}

fn both(cs: &Chains) -> [Ruleset; 2] {
    let ipt = Capture {
        saves: vec![(
            SaveSource {
                backend: Backend::IptablesNft,
                v6: false,
            },
            Ok(iptables_save(cs)),
        )],
        ..Capture::default()
    };
    let nft = Capture {
        nft_json: Some(Ok(nft_json(cs))),
        ..Capture::default()
    };
    [ipt, nft].map(|c| {
        let (rs, warnings) = assemble(&c);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(rs.unread.is_empty(), "{:?}", rs.unread);
        rs
    })
}

/// Rules plus chains: what the work bound is linear in.
fn size(rs: &Ruleset) -> u64 {
    rs.tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len() as u64 + 1)
        .sum()
}

/// Judges tcp/`port` and checks the work bound; returns the verdict.
fn judged(rs: &Ruleset, port: u16, src: &str) -> Judgement {
    let ev = Evaluator::new(rs);
    let j = ev.judge(&pkt("tcp", port, src));
    let bound = 2 * size(rs) + 2;
    assert!(
        ev.work() <= bound,
        "work {} over {bound} for {} rules and chains",
        ev.work(),
        size(rs)
    );
    if let Judgement::Unknown { reason } = &j {
        assert!(!reason.contains("too complex"), "{reason}");
    }
    j
}

#[test]
fn ladder_of_jumps_is_judged_in_linear_work() {
    for rs in both(&ladder(12, 6)) {
        match judged(&rs, 9, "203.0.113.9") {
            Judgement::Drop { by } => assert_eq!(by.chain.to_lowercase(), "c11", "{by:?}"),
            j => panic!("{j:?}"),
        }
        assert_eq!(judged(&rs, 22, "203.0.113.9").word(), "accept");
    }
    // As deep as the kernel lets jumps nest, and wider.
    for rs in both(&ladder(16, 12)) {
        assert_eq!(judged(&rs, 9, "203.0.113.9").word(), "drop");
    }
}

#[test]
fn forks_below_repeated_jumps_stay_bounded() {
    // Each chain asks for a mark (undecidable) then jumps to the next: the walk forks at every
    // level, and repeated jumps reuse the forked outcome instead of walking again.
    let mut cs: Chains = (0..11)
        .map(|_| {
            let mut v = vec![(Match::Mark, Act::Return)];
            v.extend(vec![(Match::Always, Act::Jump(1)); 6]);
            v
        })
        .collect();
    cs.push(vec![(Match::Port(9), Act::Drop)]);
    for rs in both(&cs) {
        let j = judged(&rs, 9, "203.0.113.9");
        assert!(matches!(j.word(), "depends" | "unknown"), "{j:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn nested_jumps_answer_within_linear_work(cs in chains(), port in 7u16..12, from_ten in any::<bool>()) {
        let src = if from_ten { "10.1.2.3" } else { "203.0.113.9" };
        let [ipt, nft] = both(&cs);
        let a = judged(&ipt, port, src);
        let b = judged(&nft, port, src);
        // The two back ends read the same rules: the same verdict.
        prop_assert_eq!(a.word(), b.word());
        // Across a whole source prefix too (forks where part of it matches).
        judged(&ipt, port, "10.0.0.0/7");
        judged(&nft, port, "10.0.0.0/7");
    }
}
