//! Verdicts on rulesets captured from the real tools (see `fixtures/capture.sh`).

use kports_firewall::capture::{Capture, SaveSource, assemble};
use kports_firewall::detect::detect;
use kports_firewall::iptables::parse_save;
use kports_firewall::model::{Backend, TableFamily, Unread};
use kports_firewall::{Evaluator, Judgement};

use crate::kube_proxy;
use crate::support::*;

#[test]
fn firewalld_zone_rules_decide() {
    let rs = nft("firewalld");
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 6443, "198.51.100.5"))),
        "accept inet firewalld filter_IN_public_allow #4"
    );
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 10250, "198.51.100.10"))),
        "accept inet firewalld filter_IN_public_allow #5"
    );
    let j = judge(&rs, &pkt("tcp", 10250, "198.51.100.20"));
    assert_eq!(short(&j), "reject inet firewalld filter_IN_public #9");
    assert!(
        matches!(&j, Judgement::Reject { with, by } if with == "icmpx admin-prohibited" && by.handle == Some(41) && by.text == "reject with icmpx admin-prohibited"),
        "{j:?}"
    );
    // The whole /24: only one address of it is let in.
    match judge(&rs, &pkt("tcp", 10250, "198.51.100.0/24")) {
        Judgement::Depends {
            on,
            if_true,
            if_false,
            ..
        } => {
            assert_eq!(on, "ip saddr 198.51.100.10");
            assert_eq!((if_true.word(), if_false.word()), ("accept", "reject"));
        }
        j => panic!("{j:?}"),
    }
    // IPv6 meets the reverse-path check in prerouting first.
    match judge(&rs, &pkt("tcp", 22, "fd00::5")) {
        Judgement::Depends { on, at, .. } => {
            assert!(on.starts_with("fib"), "{on}");
            assert_eq!(at.chain, "filter_PREROUTING");
        }
        j => panic!("{j:?}"),
    }
    // From loopback: `iifname "lo" accept`.
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 10259, "127.0.0.1"))),
        "accept inet firewalld filter_INPUT #3"
    );
    let m = detect(&rs, &Capture::default());
    let f = m.firewalld.expect("firewalld detected");
    assert!(f.active);
    let zones: Vec<(String, String)> = f
        .zones
        .iter()
        .map(|z| (z.zone.clone(), z.matches.clone()))
        .collect();
    assert_eq!(
        zones,
        [
            ("public".to_string(), "iifname \"eth0\"".to_string()),
            ("public".to_string(), "default".to_string())
        ]
    );
    assert!(m.ufw.is_none());
}

#[test]
fn plain_nft_sets_maps_and_two_base_chains() {
    let rs = nft("plain");
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 22, "203.0.113.9"))),
        "accept inet filter input #5"
    );
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 10250, "198.51.100.10"))),
        "accept inet filter kubelet #1"
    );
    let mut p = pkt("tcp", 10250, "198.51.100.20");
    p.iif = Some("eth0".into());
    assert_eq!(short(&judge(&rs, &p)), "drop inet filter kubelet #2");
    p.iif = Some("cni0".into());
    assert_eq!(short(&judge(&rs, &p)), "accept inet filter input #3");
    // Named interval set of ports, from the right prefix only.
    let mut p = pkt("tcp", 31000, "198.51.100.7");
    p.iif = Some("eth0".into());
    assert_eq!(short(&judge(&rs, &p)), "accept inet filter input #6");
    // From elsewhere the mark decides: accept if marked, else the final reject.
    p.src = kports_firewall::model::parse_cidr("203.0.113.9").unwrap();
    match judge(&rs, &p) {
        Judgement::Depends {
            on,
            if_true,
            if_false,
            ..
        } => {
            assert!(on.contains("mark"), "{on}");
            assert_eq!((if_true.word(), if_false.word()), ("accept", "reject"));
        }
        j => panic!("{j:?}"),
    }
    // etcd from a non-control-plane address: the `ip extra` table's drop is final whatever
    // `inet filter` says.
    let mut p = pkt("tcp", 2379, "198.51.100.20");
    p.iif = Some("cni0".into());
    let j = judge(&rs, &p);
    assert_eq!(short(&j), "drop ip extra input #1");
    // NodePort UDP range: one stretch, one verdict.
    let mut p = pkt("udp", 30000, "203.0.113.9");
    p.iif = Some("eth0".into());
    let segs = Evaluator::new(&rs).judge_ports(&p, 30000, 32767);
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert_eq!(
        (segs[0].0, segs[0].1, short(&segs[0].2)),
        (30000, 32767, "accept inet filter input #7".to_string())
    );
}

#[test]
fn ufw_legacy_rules_and_policy() {
    let rs = save(
        &fixture("ufw.iptables-legacy-save.txt"),
        Backend::IptablesLegacy,
        false,
    );
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 6443, "203.0.113.9"))),
        "accept ip filter ufw-user-input #3"
    );
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 10250, "198.51.100.10"))),
        "accept ip filter ufw-user-input #2"
    );
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 10250, "203.0.113.9"))),
        "drop ip filter INPUT policy"
    );
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 445, "203.0.113.9"))),
        "drop ip filter ufw-skip-to-policy-input #1"
    );
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 31000, "203.0.113.9"))),
        "accept ip filter ufw-user-input #4"
    );
    assert_eq!(
        short(&judge(&rs, &pkt("udp", 31000, "203.0.113.9"))),
        "drop ip filter INPUT policy"
    );
    let c = Capture {
        files: vec![
            (
                "/etc/default/ufw".into(),
                Ok("DEFAULT_INPUT_POLICY=\"DROP\"\n".into()),
            ),
            ("/etc/ufw/ufw.conf".into(), Ok("ENABLED=yes\n".into())),
        ],
        ..Capture::default()
    };
    let u = detect(&rs, &c).ufw.expect("ufw detected");
    assert!(u.active);
    assert_eq!(u.enabled, Some(true));
    assert_eq!(u.default_input_policy.as_deref(), Some("DROP"));
    assert_eq!(u.input_policy.as_deref(), Some("DROP"));
}

#[test]
fn calico_and_cilium_depend_on_marks_and_ipsets() {
    let calico = save(
        &fixture("calico.iptables-nft-save.txt"),
        Backend::IptablesNft,
        false,
    );
    // Calico's raw table drops marked packets that fail the reverse-path check.
    match judge(&calico, &pkt("tcp", 10250, "198.51.100.10")) {
        Judgement::Depends {
            on, at, if_true, ..
        } => {
            assert_eq!(on, "-m mark --mark 0x40000/0x40000");
            assert_eq!(
                (at.table.as_str(), at.chain.as_str(), at.position),
                ("ip raw", "cali-PREROUTING", Some(4))
            );
            assert_eq!(if_true.word(), "drop");
        }
        j => panic!("{j:?}"),
    }
    let cilium = save(
        &fixture("cilium.iptables-nft-save.txt"),
        Backend::IptablesNft,
        false,
    );
    match judge(&cilium, &pkt("tcp", 10250, "198.51.100.10")) {
        Judgement::Depends { on, if_true, .. } => {
            assert_eq!(on, "-m mark --mark 0x200/0xf00");
            // NOTRACK changes the state later rules see: kports does not guess.
            assert_eq!(if_true.word(), "unknown");
        }
        j => panic!("{j:?}"),
    }
}

#[test]
fn iptables_nft_tables_replace_their_opaque_nft_listing() {
    // Through nft alone, iptables-nft's extensions are `xt` expressions.
    let seen_by_nft = nft("calico");
    let t = seen_by_nft
        .tables
        .iter()
        .find(|t| t.name == "filter")
        .unwrap();
    assert_eq!(t.backend, Backend::Nft);
    let text = format!(
        "{:?}",
        t.chains
            .iter()
            .find(|c| c.name == "cali-INPUT")
            .unwrap()
            .rules[0]
            .conds
    );
    assert!(text.contains("xt match set"), "{text}");
    // With iptables-nft-save, its reading replaces the nft one, table by table.
    let c = Capture {
        nft_json: Some(Ok(fixture("calico.nft.json"))),
        nft_text: Some(Ok(fixture("calico.nft.txt"))),
        saves: vec![(
            SaveSource {
                backend: Backend::IptablesNft,
                v6: false,
            },
            Ok(fixture("calico.iptables-nft-save.txt")),
        )],
        ..Capture::default()
    };
    let (rs, _) = assemble(&c);
    let names: Vec<(Backend, TableFamily, &str)> = rs
        .tables
        .iter()
        .map(|t| (t.backend, t.family, t.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (Backend::IptablesNft, TableFamily::Ip, "raw"),
            (Backend::IptablesNft, TableFamily::Ip, "filter")
        ]
    );
}

#[test]
fn kube_proxy_rules_captured_and_generated_agree() {
    let captured = save(
        &fixture("kube-proxy.iptables-nft-save.txt"),
        Backend::IptablesNft,
        false,
    );
    let generated = save(&kube_proxy::save(2000), Backend::IptablesNft, false);
    let filter_rules = |rs: &kports_firewall::Ruleset| {
        rs.tables
            .iter()
            .map(|t| t.chains.iter().map(|c| c.rules.len()).sum::<usize>())
            .sum::<usize>()
    };
    assert!(
        filter_rules(&captured) > 1500,
        "{}",
        filter_rules(&captured)
    );
    assert_eq!(filter_rules(&captured), filter_rules(&generated));
    let (a, b) = (Evaluator::new(&captured), Evaluator::new(&generated));
    let p = pkt("tcp", 30000, "203.0.113.9");
    let sa = a.judge_ports(&p, 30000, 32767);
    let sb = b.judge_ports(&p, 30000, 32767);
    let words = |s: &[(u16, u16, Judgement)]| {
        s.iter()
            .map(|(lo, hi, j)| format!("{lo}-{hi} {}", short(j)))
            .collect::<Vec<_>>()
    };
    assert_eq!(words(&sa), words(&sb));
    // A NodePort whose service has no endpoints is rejected by kube-proxy; a health check
    // node port is accepted; the others meet the INPUT policy.
    let i = (0..200)
        .find(|&i| kube_proxy::no_endpoints(i) && kube_proxy::is_node_port(i))
        .unwrap();
    let j = a.judge(&pkt("tcp", kube_proxy::node_port(i), "203.0.113.9"));
    assert_eq!(short(&j), "reject ip filter KUBE-EXTERNAL-SERVICES #1");
    let hp = (0..200).find_map(kube_proxy::health_port).unwrap();
    assert_eq!(
        short(&a.judge(&pkt("tcp", hp, "203.0.113.9"))),
        "accept ip filter KUBE-NODEPORTS #1"
    );
    let free = (30000..32767)
        .find(|p| {
            sa.iter().any(|(lo, hi, j)| {
                lo <= p && p <= hi && j.word() == "accept" && short(j).ends_with("policy")
            })
        })
        .unwrap();
    assert!(a.judge(&pkt("tcp", free, "203.0.113.9")).is_open() == Some(true));
    // KUBE-FIREWALL drops non-loopback sources to 127.0.0.0/8 only.
    let mut p = pkt("tcp", 10250, "203.0.113.9");
    p.dst = "127.0.0.1".parse().ok();
    assert_eq!(short(&a.judge(&p)), "drop ip filter KUBE-FIREWALL #1");
}

#[test]
fn unreadable_sources_make_open_verdicts_unknown() {
    let c = Capture {
        nft_json: Some(Err("nft is not installed (not found in PATH)".into())),
        saves: vec![(
            SaveSource {
                backend: Backend::IptablesLegacy,
                v6: false,
            },
            Ok(fixture("ufw.iptables-legacy-save.txt")),
        )],
        legacy_names: vec![(false, Ok("filter\n".into()))],
        ..Capture::default()
    };
    let (rs, _) = assemble(&c);
    assert_eq!(
        rs.unread,
        [Unread {
            source: "nft".into(),
            reason: "nft is not installed (not found in PATH)".into()
        }]
    );
    // What ufw accepts might still be dropped by nft rules kports could not read...
    match judge(&rs, &pkt("tcp", 6443, "203.0.113.9")) {
        // The unread source first; what the readable rules say after it, as no verdict.
        Judgement::Unknown { reason } => assert!(
            reason.starts_with(
                "nft could not be read (see the warnings); the rules that could: accept"
            ),
            "{reason}"
        ),
        j => panic!("{j:?}"),
    }
    // ...but a drop is final wherever it is.
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 10250, "203.0.113.9"))),
        "drop ip filter INPUT policy"
    );
    // A legacy dump that fails matters only when the kernel holds legacy tables.
    let c = Capture {
        saves: vec![(
            SaveSource {
                backend: Backend::IptablesLegacy,
                v6: false,
            },
            Err("not found".into()),
        )],
        legacy_names: vec![(false, Ok(String::new()))],
        ..Capture::default()
    };
    assert!(assemble(&c).0.unread.is_empty());
    let c = Capture {
        legacy_names: vec![(false, Ok("filter\n".into()))],
        ..c
    };
    assert_eq!(assemble(&c).0.unread.len(), 1);
}

#[test]
fn malformed_save_lines_are_kept_as_unknown_rules() {
    let text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -m comment --comment \"unterminated -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n-A INPUT -s not-an-address -j DROP\ngarbage line\nCOMMIT\n-A OUTSIDE -j DROP\n";
    let (tables, warnings) = parse_save(text, Backend::IptablesNft, false);
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.line == 4 && w.message.contains("unterminated quote"))
    );
    let rs = kports_firewall::Ruleset {
        tables,
        unread: Vec::new(),
    };
    // Port 22 is decided before the unreadable rule; port 80 is not.
    assert_eq!(
        short(&judge(&rs, &pkt("tcp", 22, "203.0.113.9"))),
        "accept ip filter INPUT #1"
    );
    match judge(&rs, &pkt("tcp", 80, "203.0.113.9")) {
        Judgement::Unknown { reason } => assert!(reason.contains("cannot read"), "{reason}"),
        j => panic!("{j:?}"),
    }
}

/// Rule texts written from `nft -j` (what kports reads on a node) are the lines `nft -a list
/// ruleset` prints, for every native nft rule of the fixtures.
#[test]
fn rule_texts_written_from_json_are_what_nft_prints() {
    use kports_firewall::nft::{parse_json, parse_rule_texts};
    let mut compared = 0;
    let mut differ = Vec::new();
    for name in ["firewalld", "plain"] {
        let listing = parse_rule_texts(&fixture(&format!("{name}.nft.txt")));
        let (tables, _) = parse_json(&fixture(&format!("{name}.nft.json")), None).unwrap();
        for t in &tables {
            for c in &t.chains {
                for r in &c.rules {
                    let key = (
                        t.family.as_str().to_string(),
                        t.name.clone(),
                        r.handle.unwrap(),
                    );
                    let want = &listing[&key];
                    compared += 1;
                    if &r.text != want {
                        differ.push(format!("{want}\n  vs {}", r.text));
                    }
                }
            }
        }
    }
    assert!(compared > 40, "{compared}");
    assert!(
        differ.is_empty(),
        "{} of {compared}:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
