//! The iptables writer (both backends, IPv4 and IPv6): kports's own chain (`KPORTS-INPUT`)
//! jumped to from INPUT, and the diff against what the chain holds now.

use super::*;

/// The lines of kports's chain as `iptables-save` prints them, per family.
pub(super) fn ipt_lines(allows: &[Allow], v6: bool) -> Vec<String> {
    let mut out = vec![
        format!("-A {IPT_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        format!("-A {IPT_CHAIN} -i lo -j ACCEPT"),
    ];
    for a in allows {
        for s in a.sources.iter().filter(|s| s.v6 == v6) {
            let src = match s.prefix_len() {
                Some(l) => format!("{}/{l}", s.first()),
                None => s.to_string(),
            };
            let p = a.port.proto.as_str();
            let src_opt = if s.prefix_len().is_some() {
                format!("-s {src}")
            } else {
                format!("-m iprange --src-range {src}")
            };
            out.push(format!("-A {IPT_CHAIN} {src_opt} -p {p} -m {p} --dport {} -m comment --comment \"{}\" -j ACCEPT", port_ipt(a.port.lo, a.port.hi), comment(a)));
        }
    }
    for proto in [Proto::Tcp, Proto::Udp] {
        let ports = closed_ports(allows, proto);
        // multiport takes at most 15 ports, a range counting as two.
        let mut chunk: Vec<String> = Vec::new();
        let mut weight = 0;
        let mut chunks = Vec::new();
        for &(lo, hi) in &ports {
            let w = if lo == hi { 1 } else { 2 };
            if weight + w > 15 {
                chunks.push(std::mem::take(&mut chunk));
                weight = 0;
            }
            chunk.push(port_ipt(lo, hi));
            weight += w;
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        let with = match (proto, v6) {
            (Proto::Tcp, _) => "tcp-reset",
            (Proto::Udp, false) => "icmp-port-unreachable",
            (Proto::Udp, true) => "icmp6-port-unreachable",
        };
        let p = proto.as_str();
        for c in chunks {
            out.push(format!(
                "-A {IPT_CHAIN} -p {p} -m multiport --dports {} -m comment --comment \"kports: required ports, closed to other sources\" -j REJECT --reject-with {with}",
                c.join(",")
            ));
        }
    }
    out
}

pub(super) fn iptables_plan(
    rs: &Ruleset,
    allows: &[Allow],
    notes: &mut Vec<String>,
) -> (String, Vec<DiffLine>, Option<Ruleset>) {
    // Use the variant whose tables hold rules (kube-proxy's and the CNI's live there).
    let holds = |b: Backend| {
        rs.tables
            .iter()
            .any(|t| t.backend == b && t.chains.iter().any(|c| !c.rules.is_empty()))
    };
    let backend = if holds(Backend::IptablesLegacy) && !holds(Backend::IptablesNft) {
        Backend::IptablesLegacy
    } else {
        Backend::IptablesNft
    };
    let v = if backend == Backend::IptablesLegacy {
        "legacy"
    } else {
        "nft"
    };
    if holds(Backend::IptablesLegacy) && holds(Backend::IptablesNft) {
        notes.push("both iptables-legacy and iptables-nft tables hold rules; the plan uses iptables-nft (both are judged: a legacy drop still blocks)".into());
    }
    let mut script = String::new();
    let mut diff_lines = Vec::new();
    let mut sim = rs.clone();
    // Both families, even when every source is IPv4: a required port is closed to every other
    // source, IPv6 ones too (as the nft plan's `inet` table and the firewalld and ufw rules
    // close it), not left open to all of them.
    for v6 in [false, true] {
        let lines = ipt_lines(allows, v6);
        let pre = if v6 { "ip6tables" } else { "iptables" };
        let wait = if backend == Backend::IptablesLegacy {
            " -w"
        } else {
            ""
        };
        let family = if v6 {
            TableFamily::Ip6
        } else {
            TableFamily::Ip
        };
        let current: Vec<String> = rs
            .tables
            .iter()
            .find(|t| t.backend == backend && t.family == family && t.name == "filter")
            .and_then(|t| t.chain(IPT_CHAIN))
            .map(|c| c.rules.iter().map(|r| r.text.clone()).collect())
            .unwrap_or_default();
        // A chain that holds the planned rules already, in order, is left as it is.
        let unchanged = current.len() == lines.len()
            && current.iter().zip(&lines).all(|(c, l)| norm(c) == norm(l));
        if unchanged {
            let _ = writeln!(
                script,
                "# {pre}-{v} {IPT_CHAIN} holds the planned rules already"
            );
        } else {
            let _ = writeln!(
                script,
                "{pre}-{v}-restore{wait} --noflush <<'EOF'\n*filter\n:{IPT_CHAIN} - [0:0]"
            );
            for l in &lines {
                let _ = writeln!(script, "{l}");
            }
            let _ = writeln!(script, "COMMIT\nEOF");
        }
        let _ = writeln!(
            script,
            "{pre}-{v} -w -C INPUT -j {IPT_CHAIN} 2>/dev/null || {pre}-{v} -w -I INPUT 1 -j {IPT_CHAIN}"
        );
        diff_lines.extend(diff(&current, &lines));
        // The ruleset after applying: kports's chain, and the jump at the top of INPUT.
        let dump = format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:{IPT_CHAIN} - [0:0]\n{}\nCOMMIT\n",
            lines.join("\n")
        );
        let (parsed, _) = crate::iptables::parse_save(&dump, backend, v6);
        let Some(chain) = parsed
            .into_iter()
            .next()
            .and_then(|t| t.chain(IPT_CHAIN).cloned())
        else {
            continue;
        };
        let idx = match sim
            .tables
            .iter()
            .position(|t| t.backend == backend && t.family == family && t.name == "filter")
        {
            Some(i) => i,
            None => {
                let mut t = Table::new(backend, family, "filter");
                t.chain_mut("INPUT").base = Some(BaseChain {
                    hook: Hook::Input,
                    priority: 0,
                    kind: ChainType::Filter,
                    policy: Policy::Accept,
                });
                sim.tables.push(t);
                sim.tables.len() - 1
            }
        };
        let t = &mut sim.tables[idx];
        t.chain_mut(IPT_CHAIN).rules = chain.rules;
        let input = t.chain_mut("INPUT");
        if !input
            .rules
            .iter()
            .any(|r| r.action == Action::Jump(IPT_CHAIN.into()) && r.conds.is_empty())
        {
            input.rules.insert(
                0,
                Rule {
                    handle: None,
                    text: format!("-A INPUT -j {IPT_CHAIN}"),
                    conds: Vec::new(),
                    action: Action::Jump(IPT_CHAIN.into()),
                },
            );
        }
    }
    (script, diff_lines, Some(sim))
}
