//! The nftables writer: kports's own table (`inet kports`), its rules, and the diff against
//! what the table holds now.

use super::*;

/// The rules of `inet kports input`, as `nft list` prints them, with their model.
pub(super) fn nft_rules(allows: &[Allow]) -> Vec<(String, Rule)> {
    let mut out = Vec::new();
    let rule = |conds: Vec<Cond>, action: Action, text: String| {
        (
            text.clone(),
            Rule {
                handle: None,
                text,
                conds,
                action,
            },
        )
    };
    let cond = |key: Key, vals: Vec<Val>| Cond {
        key,
        neg: false,
        rhs: Rhs::Vals(vals),
    };
    out.push(rule(
        vec![cond(
            Key::CtState,
            vec![Val::Str("established".into()), Val::Str("related".into())],
        )],
        Action::Accept,
        "ct state established,related accept".into(),
    ));
    out.push(rule(
        vec![cond(Key::Iifname, vec![Val::Str("lo".into())])],
        Action::Accept,
        "iifname \"lo\" accept".into(),
    ));
    for a in allows {
        for v6 in [false, true] {
            let srcs: Vec<AddrRange> = a.sources.iter().copied().filter(|s| s.v6 == v6).collect();
            if srcs.is_empty() {
                continue;
            }
            let fam = if v6 { "ip6" } else { "ip" };
            let set = if srcs.len() == 1 {
                srcs[0].to_string()
            } else {
                format!(
                    "{{ {} }}",
                    srcs.iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let proto = a.port.proto_number();
            let text = format!(
                "{fam} saddr {set} {} dport {} accept comment \"{}\"",
                a.port.proto.as_str(),
                port_nft(a.port.lo, a.port.hi),
                comment(a)
            );
            out.push(rule(
                vec![
                    cond(
                        Key::Addr {
                            dir: Dir::Src,
                            v6: Some(v6),
                        },
                        srcs.iter().map(|s| Val::Addr(*s)).collect(),
                    ),
                    cond(
                        Key::Port {
                            dir: Dir::Dst,
                            proto: Some(proto),
                        },
                        vec![Val::Int(a.port.lo.into(), a.port.hi.into())],
                    ),
                ],
                Action::Accept,
                text,
            ));
        }
    }
    for proto in [Proto::Tcp, Proto::Udp] {
        let ports = closed_ports(allows, proto);
        if ports.is_empty() {
            continue;
        }
        let list: Vec<String> = ports.iter().map(|&(lo, hi)| port_nft(lo, hi)).collect();
        let set = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("{{ {} }}", list.join(", "))
        };
        let (with, verb) = match proto {
            Proto::Tcp => (Some("tcp reset".to_string()), "reject with tcp reset"),
            Proto::Udp => (None, "reject"),
        };
        let pn = if proto == Proto::Tcp { 6 } else { 17 };
        let text = format!(
            "{} dport {set} {verb} comment \"kports: required ports, closed to other sources\"",
            proto.as_str()
        );
        out.push(rule(
            vec![cond(
                Key::Port {
                    dir: Dir::Dst,
                    proto: Some(pn),
                },
                ports
                    .iter()
                    .map(|&(lo, hi)| Val::Int(lo.into(), hi.into()))
                    .collect(),
            )],
            Action::Reject(with),
            text,
        ));
    }
    out
}

pub(super) fn nft_plan(rs: &Ruleset, allows: &[Allow]) -> (String, Vec<DiffLine>, Option<Ruleset>) {
    let rules = nft_rules(allows);
    let own = rs
        .tables
        .iter()
        .find(|t| t.backend == Backend::Nft && t.family == TableFamily::Inet && t.name == NFT_TABLE)
        .and_then(|t| t.chain(NFT_CHAIN));
    let current: Vec<String> = own
        .map(|c| c.rules.iter().map(|r| r.text.clone()).collect())
        .unwrap_or_default();
    let base = BaseChain {
        hook: Hook::Input,
        priority: -10,
        kind: ChainType::Filter,
        policy: Policy::Accept,
    };
    // A chain that holds the planned rules already, in order, is left as it is (flushing and
    // adding them again would change nothing but their handles).
    let unchanged = own.is_some_and(|c| {
        c.base.as_ref() == Some(&base)
            && c.rules.len() == rules.len()
            && c.rules
                .iter()
                .zip(&rules)
                .all(|(r, (t, _))| norm(&r.text) == norm(t))
    });
    let mut s = String::new();
    if unchanged {
        let _ = writeln!(
            s,
            "# inet {NFT_TABLE} {NFT_CHAIN} holds the planned rules already"
        );
    } else {
        s.push_str("nft -f - <<'EOF'\n");
        let _ = writeln!(s, "add table inet {NFT_TABLE}");
        let _ = writeln!(
            s,
            "add chain inet {NFT_TABLE} {NFT_CHAIN} {{ type filter hook input priority filter - 10; policy accept; }}"
        );
        let _ = writeln!(s, "flush chain inet {NFT_TABLE} {NFT_CHAIN}");
        for (text, _) in &rules {
            let _ = writeln!(s, "add rule inet {NFT_TABLE} {NFT_CHAIN} {text}");
        }
        s.push_str("EOF\n");
    }
    let planned: Vec<String> = rules.iter().map(|(t, _)| t.clone()).collect();
    let diff = diff(&current, &planned);
    let mut sim = rs.clone();
    sim.tables.retain(|t| {
        !(t.backend == Backend::Nft && t.family == TableFamily::Inet && t.name == NFT_TABLE)
    });
    let mut t = Table::new(Backend::Nft, TableFamily::Inet, NFT_TABLE);
    let c = t.chain_mut(NFT_CHAIN);
    c.base = Some(base);
    c.rules = rules.into_iter().map(|(_, r)| r).collect();
    sim.tables.push(t);
    (s, diff, Some(sim))
}
