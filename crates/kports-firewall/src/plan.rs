//! `kports firewall plan`: rules that open exactly what each source needs, for nft, iptables,
//! firewalld or ufw, checked against the current ruleset.
//!
//! What the rules do, whatever the backend: a required port is accepted from the sources that
//! need it (etcd from control-plane nodes, NodePorts from everyone, ...) and rejected from every
//! other source; loopback and established connections are accepted; nothing else is touched.
//! The rules live in kports's own table (`inet kports`) or chain (`KPORTS-INPUT`) and are safe to
//! apply twice: the table and chain are added if missing and only kports's own chain is flushed.
//!
//! An `accept` in kports's own nftables table does not override a `drop` in another table's base
//! chain (drops are final, accepts only end their own base chain). So the plan judges the
//! ruleset as it would be after applying, and names every rule elsewhere that would still block a
//! wanted connection, with the rule to add in that chain.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kports_core::Proto;
use serde::Serialize;

use crate::eval::{Evaluator, Judgement, Packet, RuleRef};
use crate::iptables;
use crate::model::*;
use crate::ranges::subtract;
use crate::required::{RequiredPort, SourceKind};

/// The nft table and chain kports owns.
pub const NFT_TABLE: &str = "kports";
pub const NFT_CHAIN: &str = "input";
/// The iptables chain kports owns (in the filter table, jumped to from INPUT).
pub const IPT_CHAIN: &str = "KPORTS-INPUT";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanBackend {
    Nft,
    Iptables,
    Firewalld,
    Ufw,
}

/// What to plan for.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub backend: PlanBackend,
    pub ports: Vec<RequiredPort>,
    /// Everyone who may use the cluster, the nodes among them (`--sources`).
    pub sources: Vec<AddrRange>,
    pub control_plane: Vec<AddrRange>,
    pub load_balancers: Vec<AddrRange>,
    /// firewalld zone to add rules to (default: the zone firewalld reports, else `public`).
    pub zone: Option<String>,
}

/// A (port, source) the plan opens or closes, and how it is judged now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Intent {
    pub port: String,
    pub component: String,
    pub source: String,
    pub open: bool,
    /// The verdict for the current ruleset.
    pub now: Judgement,
    /// Whether the current ruleset already does what the plan wants.
    pub already: Option<bool>,
}

/// A rule outside kports's table or chain that would still block a wanted connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub port: String,
    pub source: String,
    pub blocked_by: RuleRef,
    /// The command that opens it in that chain.
    pub fix: String,
}

/// One line of kports's own chain, compared with what is there now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    /// `+` added, `-` removed by the flush, `=` already there.
    pub op: char,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub backend: PlanBackend,
    /// A shell script that applies the plan (safe to run twice).
    pub script: String,
    pub intents: Vec<Intent>,
    /// kports's own chain: what would be added, kept, and removed.
    pub chain_diff: Vec<DiffLine>,
    pub conflicts: Vec<Conflict>,
    pub notes: Vec<String>,
}

/// A port opened to some sources.
#[derive(Debug, Clone)]
struct Allow {
    port: RequiredPort,
    sources: Vec<AddrRange>,
}

fn allows(req: &PlanRequest, notes: &mut Vec<String>) -> Vec<Allow> {
    let mut out = Vec::new();
    for p in &req.ports {
        let sources = match p.from {
            SourceKind::All | SourceKind::Nodes => req.sources.clone(),
            SourceKind::ControlPlane => req.control_plane.clone(),
            SourceKind::LoadBalancers => req.load_balancers.clone(),
            SourceKind::SelfOnly => Vec::new(),
        };
        if sources.is_empty() && p.from != SourceKind::SelfOnly {
            let flag = match p.from {
                SourceKind::ControlPlane => "--control-plane",
                SourceKind::LoadBalancers => "--load-balancers",
                _ => "--sources",
            };
            notes.push(format!(
                "{} ({}) is needed by {} sources but none were given ({flag}): it stays closed",
                p.label(),
                p.component,
                p.from.as_str()
            ));
        }
        out.push(Allow {
            port: p.clone(),
            sources,
        });
    }
    out
}

/// Plans rules for `req` against the current ruleset `rs`.
pub fn plan(rs: &Ruleset, req: &PlanRequest, firewalld_zone: Option<&str>) -> Plan {
    let mut notes = Vec::new();
    let allows = allows(req, &mut notes);
    let ev = Evaluator::new(rs);
    let intents = intents(&ev, req, &allows);
    let (script, chain_diff, simulated) = match req.backend {
        PlanBackend::Nft => nft_plan(rs, &allows),
        PlanBackend::Iptables => iptables_plan(rs, &allows, &mut notes),
        PlanBackend::Firewalld => {
            let zone = req.zone.as_deref().or(firewalld_zone).unwrap_or("public");
            (firewalld_script(&allows, zone), Vec::new(), None)
        }
        PlanBackend::Ufw => (ufw_script(&allows), Vec::new(), None),
    };
    let conflicts = match &simulated {
        Some(sim) => conflicts(&Evaluator::new(sim), &allows, |_| false),
        None => {
            let backend = req.backend;
            conflicts(&ev, &allows, move |r: &RuleRef| {
                owned_by_manager(backend, r)
            })
        }
    };
    if rs.unread.iter().any(|_| true) {
        let unread: Vec<String> = rs
            .unread
            .iter()
            .map(|u| format!("{} ({})", u.source, u.reason))
            .collect();
        notes.push(format!(
            "not readable: {}; conflicts with those rules cannot be shown",
            unread.join(", ")
        ));
    }
    if req.backend == PlanBackend::Firewalld {
        notes.push("rules are added to the running configuration and to the permanent one, without `firewall-cmd --reload` (a reload flushes kube-proxy's and the CNI's rules on the iptables backend)".into());
    }
    Plan {
        backend: req.backend,
        script,
        intents,
        chain_diff,
        conflicts,
        notes,
    }
}

fn intents(ev: &Evaluator<'_>, req: &PlanRequest, allows: &[Allow]) -> Vec<Intent> {
    let mut out = Vec::new();
    for a in allows {
        for s in &a.sources {
            out.push(intent(ev, &a.port, *s, true));
        }
        if matches!(a.port.from, SourceKind::All | SourceKind::Nodes) {
            continue;
        }
        for net in &req.sources {
            for piece in subtract(*net, &a.sources).into_iter().take(4) {
                out.push(intent(ev, &a.port, piece, false));
            }
        }
    }
    out
}

fn intent(ev: &Evaluator<'_>, port: &RequiredPort, src: AddrRange, open: bool) -> Intent {
    let p = Packet {
        v6: src.v6,
        proto: port.proto_number(),
        dport: port.lo,
        src,
        dst: None,
        iif: None,
    };
    let segs = ev.judge_ports(&p, port.lo, port.hi);
    // The first stretch that differs from the wish speaks for the range.
    let now = segs
        .iter()
        .find(|s| s.2.is_open() != Some(open))
        .or(segs.first())
        .map(|s| s.2.clone())
        .unwrap_or(Judgement::Unknown {
            reason: "no ports".into(),
        });
    let already = if segs.iter().all(|s| s.2.is_open() == Some(open)) {
        Some(true)
    } else if segs.iter().any(|s| s.2.is_open() == Some(!open)) {
        Some(false)
    } else {
        None
    };
    Intent {
        port: port.label(),
        component: port.component.clone(),
        source: src.to_string(),
        open,
        now,
        already,
    }
}

fn conflicts(
    ev: &Evaluator<'_>,
    allows: &[Allow],
    owned: impl Fn(&RuleRef) -> bool,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    for a in allows {
        for s in &a.sources {
            let p = Packet {
                v6: s.v6,
                proto: a.port.proto_number(),
                dport: a.port.lo,
                src: *s,
                dst: None,
                iif: None,
            };
            for (lo, hi, j) in ev.judge_ports(&p, a.port.lo, a.port.hi) {
                let Some(by) = j.blocker() else { continue };
                if owned(by) {
                    continue;
                }
                let port = RequiredPort {
                    lo,
                    hi,
                    ..a.port.clone()
                };
                out.push(Conflict {
                    port: port.label(),
                    source: s.to_string(),
                    fix: fix_command(by, &port, *s),
                    blocked_by: by.clone(),
                });
            }
        }
    }
    out
}

/// Rules that firewalld or ufw own: the plan for that manager changes their outcome.
fn owned_by_manager(b: PlanBackend, r: &RuleRef) -> bool {
    match b {
        PlanBackend::Firewalld => {
            r.table == "inet firewalld"
                || r.chain.starts_with("IN_")
                || r.chain.ends_with("_ZONES")
                || r.chain.starts_with("filter_IN")
        }
        PlanBackend::Ufw => {
            r.chain.starts_with("ufw") || (r.chain == "INPUT" && r.position.is_none())
        }
        _ => false,
    }
}

fn port_nft(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

fn port_ipt(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}:{hi}")
    }
}

/// The command that accepts `port` from `src` in the chain of rule `by`, before it.
fn fix_command(by: &RuleRef, port: &RequiredPort, src: AddrRange) -> String {
    let (_, table) = by.table.split_once(' ').unwrap_or(("", by.table.as_str()));
    match by.backend {
        Backend::Nft => {
            let fam = if src.v6 { "ip6" } else { "ip" };
            let m = format!(
                "{fam} saddr {src} {} dport {} accept",
                port.proto.as_str(),
                port_nft(port.lo, port.hi)
            );
            match (by.handle, by.position) {
                (Some(h), _) => {
                    format!("nft insert rule {} {} position {h} {m}", by.table, by.chain)
                }
                (None, Some(pos)) => format!(
                    "nft insert rule {} {} index {} {m}",
                    by.table,
                    by.chain,
                    pos - 1
                ),
                (None, None) => format!("nft add rule {} {} {m}", by.table, by.chain),
            }
        }
        Backend::IptablesNft | Backend::IptablesLegacy => {
            let v = if by.backend == Backend::IptablesNft {
                "nft"
            } else {
                "legacy"
            };
            let cmd = if src.v6 {
                format!("ip6tables-{v}")
            } else {
                format!("iptables-{v}")
            };
            let m = format!(
                "-s {src} -p {} --dport {} -j ACCEPT",
                port.proto.as_str(),
                port_ipt(port.lo, port.hi)
            );
            match by.position {
                Some(pos) => format!("{cmd} -w -t {table} -I {} {pos} {m}", by.chain),
                None => format!("{cmd} -w -t {table} -A {} {m}", by.chain),
            }
        }
    }
}

/// Merges ports into sorted, non-adjacent ranges.
fn merge(mut v: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    v.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn closed_ports(allows: &[Allow], proto: Proto) -> Vec<(u16, u16)> {
    merge(
        allows
            .iter()
            .filter(|a| a.port.proto == proto)
            .map(|a| (a.port.lo, a.port.hi))
            .collect(),
    )
}

fn comment(a: &Allow) -> String {
    format!("{} from {}", a.port.component, a.port.from.as_str())
}

/// Normalises a rule text for comparison: no counters, single spaces.
fn norm(s: &str) -> String {
    let mut words: Vec<&str> = Vec::new();
    let mut it = s.split_whitespace().peekable();
    while let Some(w) = it.next() {
        if w == "counter" && it.peek() == Some(&"packets") {
            // counter packets N bytes M
            for _ in 0..4 {
                it.next();
            }
            continue;
        }
        words.push(w);
    }
    words.join(" ")
}

fn diff(current: &[String], planned: &[String]) -> Vec<DiffLine> {
    let cur: Vec<String> = current.iter().map(|s| norm(s)).collect();
    let mut out: Vec<DiffLine> = planned
        .iter()
        .map(|p| DiffLine {
            op: if cur.contains(&norm(p)) { '=' } else { '+' },
            text: p.clone(),
        })
        .collect();
    let planned_n: Vec<String> = planned.iter().map(|s| norm(s)).collect();
    for (c, raw) in cur.iter().zip(current) {
        if !planned_n.contains(c) {
            out.push(DiffLine {
                op: '-',
                text: raw.clone(),
            });
        }
    }
    out
}

// ---------------------------------------------------------------- nft

/// The rules of `inet kports input`, as `nft list` prints them, with their model.
fn nft_rules(allows: &[Allow]) -> Vec<(String, Rule)> {
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

fn nft_plan(rs: &Ruleset, allows: &[Allow]) -> (String, Vec<DiffLine>, Option<Ruleset>) {
    let rules = nft_rules(allows);
    let mut s = String::new();
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
    let current: Vec<String> = rs
        .tables
        .iter()
        .find(|t| t.backend == Backend::Nft && t.family == TableFamily::Inet && t.name == NFT_TABLE)
        .and_then(|t| t.chain(NFT_CHAIN))
        .map(|c| c.rules.iter().map(|r| r.text.clone()).collect())
        .unwrap_or_default();
    let planned: Vec<String> = rules.iter().map(|(t, _)| t.clone()).collect();
    let diff = diff(&current, &planned);
    let mut sim = rs.clone();
    sim.tables.retain(|t| {
        !(t.backend == Backend::Nft && t.family == TableFamily::Inet && t.name == NFT_TABLE)
    });
    let mut t = Table::new(Backend::Nft, TableFamily::Inet, NFT_TABLE);
    let c = t.chain_mut(NFT_CHAIN);
    c.base = Some(BaseChain {
        hook: Hook::Input,
        priority: -10,
        kind: ChainType::Filter,
        policy: Policy::Accept,
    });
    c.rules = rules.into_iter().map(|(_, r)| r).collect();
    sim.tables.push(t);
    (s, diff, Some(sim))
}

// ---------------------------------------------------------------- iptables

/// The lines of kports's chain as `iptables-save` prints them, per family.
fn ipt_lines(allows: &[Allow], v6: bool) -> Vec<String> {
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

fn iptables_plan(
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
        let _ = writeln!(
            script,
            "{pre}-{v}-restore{wait} --noflush <<'EOF'\n*filter\n:{IPT_CHAIN} - [0:0]"
        );
        for l in &lines {
            let _ = writeln!(script, "{l}");
        }
        let _ = writeln!(script, "COMMIT\nEOF");
        let _ = writeln!(
            script,
            "{pre}-{v} -w -C INPUT -j {IPT_CHAIN} 2>/dev/null || {pre}-{v} -w -I INPUT 1 -j {IPT_CHAIN}"
        );
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
        diff_lines.extend(diff(&current, &lines));
        // The ruleset after applying: kports's chain, and the jump at the top of INPUT.
        let dump = format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:{IPT_CHAIN} - [0:0]\n{}\nCOMMIT\n",
            lines.join("\n")
        );
        let (parsed, _) = iptables::parse_save(&dump, backend, v6);
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

// ---------------------------------------------------------------- firewalld and ufw

fn firewalld_script(allows: &[Allow], zone: &str) -> String {
    let mut s = String::new();
    let mut rules: Vec<String> = Vec::new();
    for a in allows {
        for src in &a.sources {
            let fam = if src.v6 { "ipv6" } else { "ipv4" };
            rules.push(format!(
                "rule priority=\"-10\" family=\"{fam}\" source address=\"{src}\" port port=\"{}\" protocol=\"{}\" accept",
                port_nft(a.port.lo, a.port.hi),
                a.port.proto.as_str()
            ));
        }
    }
    let mut closed: BTreeMap<&str, Vec<(u16, u16)>> = BTreeMap::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        closed.insert(proto.as_str(), closed_ports(allows, proto));
    }
    for (proto, ports) in closed {
        for (lo, hi) in ports {
            rules.push(format!(
                "rule priority=\"-5\" port port=\"{}\" protocol=\"{proto}\" reject",
                port_nft(lo, hi)
            ));
        }
    }
    for r in rules {
        // Adding a rule that exists is a warning, not an error: safe to run twice.
        let _ = writeln!(s, "firewall-cmd --zone={zone} --add-rich-rule='{r}'");
        let _ = writeln!(
            s,
            "firewall-cmd --permanent --zone={zone} --add-rich-rule='{r}'"
        );
    }
    s
}

fn ufw_script(allows: &[Allow]) -> String {
    let mut s = String::new();
    // Allows go first (prepend), the rejects after them (append); ufw skips rules it has.
    for a in allows {
        for src in &a.sources {
            let _ = writeln!(
                s,
                "ufw prepend allow proto {} from {src} to any port {} comment '{}'",
                a.port.proto.as_str(),
                port_ipt(a.port.lo, a.port.hi),
                comment(a)
            );
        }
    }
    for proto in [Proto::Tcp, Proto::Udp] {
        for (lo, hi) in closed_ports(allows, proto) {
            let _ = writeln!(
                s,
                "ufw reject proto {} to any port {} comment 'kports: closed to other sources'",
                proto.as_str(),
                port_ipt(lo, hi)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_port_ranges() {
        assert_eq!(
            merge(vec![
                (10257, 10257),
                (10250, 10250),
                (10256, 10256),
                (2379, 2380),
                (6443, 6443)
            ]),
            vec![(2379, 2380), (6443, 6443), (10250, 10250), (10256, 10257)]
        );
        assert_eq!(
            merge(vec![(30000, 32767), (31000, 31000)]),
            vec![(30000, 32767)]
        );
    }

    #[test]
    fn iptables_closes_required_ports_over_ipv6_when_every_source_is_ipv4() {
        let kubelet = RequiredPort::new(
            Proto::Tcp,
            10250,
            10250,
            SourceKind::ControlPlane,
            "kubelet",
        );
        let req = PlanRequest {
            backend: PlanBackend::Iptables,
            ports: vec![kubelet],
            sources: vec![parse_cidr("192.0.2.0/24").unwrap()],
            control_plane: vec![parse_cidr("192.0.2.11").unwrap()],
            load_balancers: Vec::new(),
            zone: None,
        };
        let p = plan(&Ruleset::default(), &req, None);
        assert!(
            p.script.contains("ip6tables-nft-restore --noflush"),
            "{}",
            p.script
        );
        assert!(
            p.script.contains("-A KPORTS-INPUT -p tcp -m multiport --dports 10250 -m comment --comment \"kports: required ports, closed to other sources\" -j REJECT --reject-with tcp-reset\nCOMMIT\nEOF\nip6tables-nft -w -C INPUT"),
            "{}",
            p.script
        );
        // The ruleset after applying refuses an IPv6 source, as the nft plan's does.
        let rs = Ruleset::default();
        let allowed = allows(&req, &mut Vec::new());
        let packet = Packet {
            v6: true,
            proto: 6,
            dport: 10250,
            src: parse_cidr("2001:db8::22").unwrap(),
            dst: None,
            iif: Some("eth0".into()),
        };
        for (backend, (_, _, sim)) in [
            ("iptables", iptables_plan(&rs, &allowed, &mut Vec::new())),
            ("nft", nft_plan(&rs, &allowed)),
        ] {
            let sim = sim.unwrap();
            assert_eq!(
                Evaluator::new(&sim).judge(&packet).word(),
                "reject",
                "{backend}"
            );
        }
    }

    #[test]
    fn normalising_counters() {
        assert_eq!(
            norm("tcp dport 22  counter packets 5 bytes 300 accept"),
            "tcp dport 22 accept"
        );
        assert_eq!(norm("iifname \"lo\" accept"), "iifname \"lo\" accept");
    }
}
