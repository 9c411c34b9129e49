//! `kports firewall plan`: rules that open exactly what each source needs, for nft, iptables,
//! firewalld or ufw, checked against the current ruleset.
//!
//! What the rules do, whatever the backend: a required port is accepted from the sources that
//! need it (etcd from control-plane nodes, NodePorts from everyone, ...) and rejected from every
//! other source; loopback and established connections are accepted; elsewhere, only a narrow
//! accept before a drop that would still block a wanted connection (below).
//! The rules live in kports's own table (`inet kports`) or chain (`KPORTS-INPUT`) and are safe to
//! apply twice: the table and chain are added if missing and only kports's own chain is flushed,
//! or left as it is when it holds the planned rules already.
//!
//! An `accept` in kports's own nftables table does not override a `drop` in another table's base
//! chain (drops are final, accepts only end their own base chain). So the plan judges the
//! ruleset as it would be after applying, and where a rule elsewhere would still block a wanted
//! connection, the nft and iptables scripts insert a narrow accept before it, tagged as kports's
//! (`openings.rs`); with `own_table_only` they do not, and the plan names every such rule with
//! the command that opens it there.
//!
//! One writer per backend: `nft.rs`, `iptables.rs`, `firewalld.rs`, `ufw.rs`; what they share
//! (the allows, intents, conflicts, comments and the diff) is here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kports_core::Proto;
use serde::Serialize;

use crate::eval::{Evaluator, Judgement, Packet, RuleRef};

use crate::model::*;
use crate::ranges::subtract;
use crate::required::{RequiredPort, SourceKind};

mod firewalld;
mod iptables;
mod nft;
mod openings;
mod ufw;

pub use openings::{Opening, Removal, TAG, removal};

use firewalld::firewalld_script;
use iptables::iptables_plan;
use nft::nft_plan;
use ufw::ufw_script;

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
    /// The other etcd members (etcd's `--initial-cluster`, its peer connections).
    pub etcd: Vec<AddrRange>,
    pub load_balancers: Vec<AddrRange>,
    /// firewalld zone to add rules to (default: the zone firewalld reports, else `public`).
    pub zone: Option<String>,
    /// Write only kports's own table or chain: a drop elsewhere stays, and is reported.
    pub own_table_only: bool,
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
    /// A wanted opening that a drop in another table or chain still blocks after the plan is
    /// applied (with `own_table_only`, or where no accept can be inserted): that rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub still_blocked_by: Option<String>,
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
    /// Accepts the script adds to (or keeps in) other tables' chains, before their drops.
    pub openings: Vec<Opening>,
    /// Rules outside kports's table or chain that still block a wanted connection after the
    /// script has run.
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
            SourceKind::EtcdPeers => req.etcd.clone(),
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
    // The ruleset the plan builds on: without the accepts kports added to other chains before
    // (they are judged again, kept or deleted), unless the plan must not touch other chains.
    let (base, tagged) = if req.own_table_only {
        (rs.clone(), Vec::new())
    } else {
        openings::split_tagged(rs)
    };
    let (mut script, chain_diff, simulated) = match req.backend {
        PlanBackend::Nft => nft_plan(&base, &allows),
        PlanBackend::Iptables => iptables_plan(&base, &allows, &mut notes),
        PlanBackend::Firewalld => {
            let zone = req.zone.as_deref().or(firewalld_zone).unwrap_or("public");
            (firewalld_script(&allows, zone), Vec::new(), None)
        }
        PlanBackend::Ufw => (ufw_script(&allows), Vec::new(), None),
    };
    let mut opened = Vec::new();
    let found = match simulated {
        Some(mut sim) => {
            if !req.own_table_only {
                let inserts = openings::open_elsewhere(&mut sim, &allows);
                let (part, o) = openings::openings_script(&inserts, &tagged);
                script.push_str(&part);
                opened = o;
            }
            conflicts(&Evaluator::new(&sim), &allows, |_| false)
        }
        None => {
            let backend = req.backend;
            conflicts(&ev, &allows, move |r: &RuleRef| {
                owned_by_manager(backend, r)
            })
        }
    };
    let mut intents = intents;
    for x in intents.iter_mut().filter(|x| x.open) {
        x.still_blocked_by = found
            .iter()
            .find(|(wanted, c)| *wanted == x.port && c.source == x.source)
            .map(|(_, c)| c.blocked_by.to_string());
    }
    let conflicts: Vec<Conflict> = found.into_iter().map(|(_, c)| c).collect();
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
        openings: opened,
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
        still_blocked_by: None,
    }
}

/// A wanted connection a rule blocks.
#[derive(Debug, Clone)]
struct Blocked {
    /// The label of the wanted port (`tcp/30000-32767`).
    wanted: String,
    /// The stretch of it the rule blocks.
    port: RequiredPort,
    src: AddrRange,
    by: RuleRef,
}

/// Every wanted (port, source) that a rule of the ruleset `ev` walks blocks.
fn blockers(ev: &Evaluator<'_>, allows: &[Allow]) -> Vec<Blocked> {
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
                out.push(Blocked {
                    wanted: a.port.label(),
                    port: RequiredPort {
                        lo,
                        hi,
                        ..a.port.clone()
                    },
                    src: *s,
                    by: by.clone(),
                });
            }
        }
    }
    out
}

/// The conflicts, each with the label of the wanted port it blocks (a part of it, perhaps).
fn conflicts(
    ev: &Evaluator<'_>,
    allows: &[Allow],
    owned: impl Fn(&RuleRef) -> bool,
) -> Vec<(String, Conflict)> {
    blockers(ev, allows)
        .into_iter()
        .filter(|b| !owned(&b.by))
        .map(|b| {
            (
                b.wanted,
                Conflict {
                    port: b.port.label(),
                    source: b.src.to_string(),
                    fix: fix_command(&b.by, &b.port, b.src),
                    blocked_by: b.by,
                },
            )
        })
        .collect()
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
                "{} -p {} --dport {} -j ACCEPT",
                openings::ipt_source(src),
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

/// What the rule does, in at most [`COMMENT_MAX`] bytes (nft's limit is 128):
/// `kube-proxy tcp/30000-32767 from 192.0.2.0/24`.
fn comment(a: &Allow) -> String {
    let mut from: Vec<String> = a.sources.iter().map(ToString::to_string).collect();
    let head = format!("{} {} from ", a.port.component, a.port.label());
    let mut text = format!("{head}{}", from.join(", "));
    while text.len() > COMMENT_MAX && from.len() > 1 {
        from.pop();
        text = format!("{head}{} and others", from.join(", "));
    }
    if text.len() > COMMENT_MAX {
        text = format!("{head}{}", a.port.from.as_str());
    }
    text
}

/// The longest comment a plan writes.
const COMMENT_MAX: usize = 120;

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

// ---------------------------------------------------------------- iptables

// ---------------------------------------------------------------- firewalld and ufw

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
    fn comments_say_what_the_rule_opens_and_to_whom() {
        let port = RequiredPort::new(Proto::Tcp, 2380, 2380, SourceKind::EtcdPeers, "etcd");
        let few = Allow {
            port: port.clone(),
            sources: vec![
                parse_cidr("192.0.2.11").unwrap(),
                parse_cidr("192.0.2.12").unwrap(),
            ],
        };
        assert_eq!(comment(&few), "etcd tcp/2380 from 192.0.2.11, 192.0.2.12");
        let many = Allow {
            port,
            sources: (1..=40)
                .map(|i| parse_cidr(&format!("198.51.100.{i}")).unwrap())
                .collect(),
        };
        let c = comment(&many);
        assert!(c.len() <= COMMENT_MAX, "{c}");
        assert!(
            c.starts_with("etcd tcp/2380 from 198.51.100.1, 198.51.100.2, ")
                && c.ends_with(" and others"),
            "{c}"
        );
    }

    /// The kubelet's port, wanted open to the control plane 192.0.2.11 of 192.0.2.0/24.
    fn kubelet_request(backend: PlanBackend) -> PlanRequest {
        PlanRequest {
            backend,
            ports: vec![RequiredPort::new(
                Proto::Tcp,
                10250,
                10250,
                SourceKind::ControlPlane,
                "kubelet",
            )],
            sources: vec![parse_cidr("192.0.2.0/24").unwrap()],
            control_plane: vec![parse_cidr("192.0.2.11").unwrap()],
            etcd: Vec::new(),
            load_balancers: Vec::new(),
            zone: None,
            own_table_only: false,
        }
    }

    /// A host firewall of its own: iptables-nft's INPUT drops everything but loopback.
    fn host_drops_all() -> Ruleset {
        let (tables, warnings) = crate::iptables::parse_save(
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n",
            crate::model::Backend::IptablesNft,
            false,
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        Ruleset {
            tables,
            unread: Vec::new(),
        }
    }

    #[test]
    fn with_own_table_only_an_opening_another_tables_drop_still_blocks_says_so() {
        let req = PlanRequest {
            own_table_only: true,
            ..kubelet_request(PlanBackend::Nft)
        };
        let p = plan(&host_drops_all(), &req, None);
        let opening = p
            .intents
            .iter()
            .find(|x| x.open && x.source == "192.0.2.11")
            .unwrap();
        assert_eq!(
            opening.still_blocked_by.as_deref(),
            Some("iptables-nft ip filter INPUT: policy drop"),
            "{:#?}",
            p.intents
        );
        assert_eq!(p.conflicts.len(), 1, "{:#?}", p.conflicts);
        assert!(p.openings.is_empty());
        assert!(!p.script.contains("iptables"), "{}", p.script);
        // Without the host's drop nothing is still blocked.
        let open = plan(&Ruleset::default(), &req, None);
        assert!(open.intents.iter().all(|x| x.still_blocked_by.is_none()));
    }

    #[test]
    fn a_plan_opens_a_wanted_connection_another_tables_drop_would_block() {
        let req = kubelet_request(PlanBackend::Nft);
        let p = plan(&host_drops_all(), &req, None);
        assert_eq!(p.conflicts, [], "{:#?}", p.conflicts);
        assert!(p.intents.iter().all(|x| x.still_blocked_by.is_none()));
        assert_eq!(p.openings.len(), 1, "{:#?}", p.openings);
        let o = &p.openings[0];
        assert!(!o.present);
        assert_eq!(o.before.text, "policy drop");
        let spec = "-s 192.0.2.11/32 -p tcp -m tcp --dport 10250 -m comment --comment \"kports: kubelet tcp/10250 from 192.0.2.11\" -j ACCEPT";
        assert!(
            p.script.ends_with(&format!(
                "EOF\n# Accepts in other tables' chains, before the rule that would still block a wanted connection\niptables-nft -w -t filter -C INPUT {spec} 2>/dev/null || iptables-nft -w -t filter -A INPUT {spec}\n"
            )),
            "{}",
            p.script
        );
        // The same accept, once there, is kept: the next plan adds and deletes nothing.
        let (mut after, _) = crate::iptables::parse_save(
            &format!(
                "*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT {spec}\nCOMMIT\n"
            ),
            crate::model::Backend::IptablesNft,
            false,
        );
        let rs = Ruleset {
            tables: std::mem::take(&mut after),
            unread: Vec::new(),
        };
        let again = plan(&rs, &req, None);
        assert_eq!(again.openings.len(), 1);
        assert!(again.openings[0].present, "{:#?}", again.openings);
        assert_eq!(again.script, p.script);
        assert_eq!(again.conflicts, []);
    }

    #[test]
    fn an_iptables_drop_before_the_jump_to_kports_chain_gets_an_accept_before_it() {
        let (tables, warnings) = crate::iptables::parse_save(
            "*filter\n:INPUT ACCEPT [0:0]\n:KPORTS-INPUT - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 10250 -j DROP\n-A INPUT -j KPORTS-INPUT\nCOMMIT\n",
            crate::model::Backend::IptablesNft,
            false,
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        let rs = Ruleset {
            tables,
            unread: Vec::new(),
        };
        let p = plan(&rs, &kubelet_request(PlanBackend::Iptables), None);
        assert_eq!(p.conflicts, [], "{:#?}", p.conflicts);
        assert_eq!(p.openings.len(), 1, "{:#?}", p.openings);
        assert_eq!(p.openings[0].before.position, Some(2));
        assert!(
            p.script.contains("|| iptables-nft -w -t filter -I INPUT 2 -s 192.0.2.11/32 -p tcp -m tcp --dport 10250 -m comment --comment \"kports: kubelet tcp/10250 from 192.0.2.11\" -j ACCEPT\n"),
            "{}",
            p.script
        );
        // Kept to its own chain, the plan leaves the drop and says so.
        let own = plan(
            &rs,
            &PlanRequest {
                own_table_only: true,
                ..kubelet_request(PlanBackend::Iptables)
            },
            None,
        );
        assert!(own.openings.is_empty());
        assert_eq!(own.conflicts.len(), 1);
        assert_eq!(
            own.intents
                .iter()
                .find(|x| x.open)
                .and_then(|x| x.still_blocked_by.as_deref()),
            Some("iptables-nft ip filter INPUT #2: -A INPUT -p tcp -m tcp --dport 10250 -j DROP")
        );
    }

    #[test]
    fn iptables_closes_required_ports_over_ipv6_when_every_source_is_ipv4() {
        let req = kubelet_request(PlanBackend::Iptables);
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
