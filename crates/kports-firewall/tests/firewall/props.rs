//! Property tests: on any ruleset (random chains, jumps and gotos that may loop, sets, verdict
//! maps, unknown expressions) and any packet, the evaluator answers without panicking, and
//! on any text the iptables-save parser returns without panicking.

use kports_firewall::iptables::parse_save;
use kports_firewall::model::*;
use kports_firewall::{Evaluator, Judgement, Packet};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = Key> {
    prop_oneof![
        Just(Key::L4Proto),
        (
            any::<bool>(),
            prop::option::of(prop_oneof![Just(6u8), Just(17u8)])
        )
            .prop_map(|(d, proto)| Key::Port {
                dir: if d { Dir::Dst } else { Dir::Src },
                proto
            }),
        (any::<bool>(), prop::option::of(any::<bool>())).prop_map(|(d, v6)| Key::Addr {
            dir: if d { Dir::Dst } else { Dir::Src },
            v6
        }),
        Just(Key::Iifname),
        Just(Key::Oifname),
        Just(Key::CtState),
        Just(Key::NfProto),
        Just(Key::TcpSyn),
        Just(Key::Unknown("meta mark 0x1".into())),
        Just(Key::Concat(vec![
            Key::Addr {
                dir: Dir::Src,
                v6: Some(false)
            },
            Key::Port {
                dir: Dir::Dst,
                proto: None
            }
        ])),
    ]
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        (0u64..70000, 0u64..100).prop_map(|(a, w)| Val::Int(a, a + w)),
        (any::<bool>(), any::<u32>(), 0u8..=32).prop_map(|(v6, a, l)| Val::Addr(
            AddrRange::prefix(
                if v6 {
                    std::net::IpAddr::V6((u128::from(a) << 96).into())
                } else {
                    std::net::IpAddr::V4(a.into())
                },
                l
            )
        )),
        prop_oneof![
            Just("lo"),
            Just("eth*"),
            Just("new"),
            Just("established"),
            Just("ipv4")
        ]
        .prop_map(|s| Val::Str(s.into())),
        (0u64..70000, any::<u32>()).prop_map(|(p, a)| Val::Concat(vec![
            Val::Addr(AddrRange::single(std::net::IpAddr::V4(a.into()))),
            Val::Int(p, p)
        ])),
    ]
}

fn action(chains: usize) -> impl Strategy<Value = Action> {
    let target = (0..chains).prop_map(|c| format!("c{c}"));
    prop_oneof![
        Just(Action::Continue),
        Just(Action::Accept),
        Just(Action::Drop),
        Just(Action::Reject(None)),
        Just(Action::Return),
        target.clone().prop_map(Action::Jump),
        target.prop_map(Action::Goto),
        Just(Action::Jump("missing".into())),
        Just(Action::Unknown("queue".into())),
        prop::collection::vec(
            (
                val(),
                prop_oneof![
                    Just(Action::Accept),
                    Just(Action::Drop),
                    Just(Action::Jump("c0".into()))
                ]
            ),
            0..4
        )
        .prop_map(|m| Action::Vmap {
            key: Key::Port {
                dir: Dir::Dst,
                proto: None
            },
            map: VmapRef::Inline(m)
        }),
        Just(Action::Vmap {
            key: Key::L4Proto,
            map: VmapRef::Named("s0".into())
        }),
    ]
}

fn rule(chains: usize) -> impl Strategy<Value = Rule> {
    let cond = (
        key(),
        any::<bool>(),
        prop_oneof![
            prop::collection::vec(val(), 0..4).prop_map(Rhs::Vals),
            Just(Rhs::Set("s0".into())),
            Just(Rhs::Set("nope".into()))
        ],
    )
        .prop_map(|(key, neg, rhs)| Cond { key, neg, rhs });
    (prop::collection::vec(cond, 0..4), action(chains)).prop_map(|(conds, action)| Rule {
        handle: None,
        text: String::new(),
        conds,
        action,
    })
}

fn ruleset() -> impl Strategy<Value = Ruleset> {
    let table = (1usize..5).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::collection::vec(rule(n), 0..8), n),
            prop::collection::vec(val(), 0..5),
            any::<bool>(),
            prop_oneof![
                Just(TableFamily::Ip),
                Just(TableFamily::Ip6),
                Just(TableFamily::Inet)
            ],
            -300i32..300,
            any::<bool>(),
        )
    });
    prop::collection::vec(table, 0..4).prop_map(|tables| {
        let mut rs = Ruleset::default();
        for (i, (chains, set, drop, family, prio, prerouting)) in tables.into_iter().enumerate() {
            let mut t = Table::new(Backend::Nft, family, format!("t{i}"));
            for (c, rules) in chains.into_iter().enumerate() {
                let ch = t.chain_mut(&format!("c{c}"));
                ch.rules = rules;
                if c == 0 {
                    ch.base = Some(BaseChain {
                        hook: if prerouting {
                            Hook::Prerouting
                        } else {
                            Hook::Input
                        },
                        priority: prio,
                        kind: ChainType::Filter,
                        policy: if drop { Policy::Drop } else { Policy::Accept },
                    });
                }
            }
            let n = set.len();
            t.add_set(NamedSet {
                name: "s0".into(),
                elems: set,
                verdicts: Some(vec![Action::Accept; n]),
            });
            rs.tables.push(t);
        }
        rs
    })
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        prop_oneof![Just(6u8), Just(17u8), Just(1u8)],
        any::<u16>(),
        any::<u32>(),
        0u8..=32,
        prop::option::of(prop_oneof![Just("eth0"), Just("lo")]),
    )
        .prop_map(|(v6, proto, dport, a, l, iif)| {
            let ip = if v6 {
                std::net::IpAddr::V6((u128::from(a) << 96).into())
            } else {
                std::net::IpAddr::V4(a.into())
            };
            Packet {
                v6,
                proto,
                dport,
                src: AddrRange::prefix(ip, l),
                dst: None,
                iif: iif.map(str::to_string),
            }
        })
}

fn well_formed(j: &Judgement) -> bool {
    match j {
        Judgement::Accept { .. } | Judgement::Drop { .. } | Judgement::Reject { .. } => true,
        Judgement::Unknown { reason } => !reason.is_empty(),
        Judgement::Depends {
            on,
            if_true,
            if_false,
            ..
        } => {
            !on.is_empty()
                && well_formed(if_true)
                && well_formed(if_false)
                && if_true.word() != if_false.word()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn evaluator_always_answers(rs in ruleset(), p in packet()) {
        let ev = Evaluator::new(&rs);
        let j = ev.judge(&p);
        prop_assert!(well_formed(&j), "{j:?}");
        // Ranges: stretches cover the range exactly, in order.
        let segs = ev.judge_ports(&p, 1000, 1100);
        prop_assert_eq!(segs.first().map(|s| s.0), Some(1000));
        prop_assert_eq!(segs.last().map(|s| s.1), Some(1100));
        for w in segs.windows(2) {
            prop_assert_eq!(u32::from(w[0].1) + 1, u32::from(w[1].0));
        }
    }

    #[test]
    fn save_parser_never_panics(lines in prop::collection::vec(prop_oneof![
        Just("*filter".to_string()),
        Just(":INPUT DROP [0:0]".to_string()),
        Just("COMMIT".to_string()),
        "-A [A-Z]{1,5}( (!|-p|-s|-d|-i|-m|-j|-g|--dport|--ctstate|tcp|ACCEPT|10.0.0.0/8|\"a b|22:80|,)){0,8}".prop_map(|s| s),
        ".{0,40}",
    ], 0..20)) {
        let text = lines.join("\n");
        let (tables, _) = parse_save(&text, Backend::IptablesNft, false);
        let rs = Ruleset { tables, unread: Vec::new() };
        let p = Packet { v6: false, proto: 6, dport: 22, src: AddrRange::single("10.1.2.3".parse().unwrap()), dst: None, iif: None };
        prop_assert!(well_formed(&Evaluator::new(&rs).judge(&p)));
    }

    #[test]
    fn nft_parser_never_panics(json in "\\{\"nftables\": \\[(\\{\"(table|chain|rule|set)\": \\{\"family\": \"(ip|inet)\", \"(name|table|chain)\": \"t\"(, \"expr\": \\[\\{\"(accept|drop|match|xt)\": (null|\\{\\})\\}\\])?\\}\\}, ){0,4}\\{\"metainfo\": \\{\\}\\}\\]\\}") {
        let _ = kports_firewall::nft::parse_json(&json, None);
    }
}
