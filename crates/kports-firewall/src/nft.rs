//! Parser for `nft -j list ruleset`, through the typed schema of the `nftables` crate.
//!
//! Each element of the `nftables` array is read on its own, so one statement the schema does
//! not know costs that rule only: the rule stays in its chain as an unknown action, with a
//! warning, and never looks like an accept. Rule texts come from `nft -a list ruleset` (matched
//! by handle) when it is given, otherwise they are written from the parsed rule.
//!
//! Tables of the `arp`, `bridge` and `netdev` families are skipped: the input path of an IP
//! packet for a local socket is walked from prerouting on.

use std::borrow::Cow;
use std::collections::HashMap;

use nftables::expr::{Expression, NamedExpression, Payload, SetItem, Verdict};
use nftables::schema;
use nftables::stmt::{Match, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

pub use crate::display::action_text;
use crate::display::render;
use crate::model::*;
use crate::{Error, Result};

/// Rule texts from `nft -a list ruleset`, keyed by (family, table, handle).
pub type RuleTexts = HashMap<(String, String, u64), String>;

/// Reads the `# handle N` rule lines of `nft -a list ruleset`.
pub fn parse_rule_texts(listing: &str) -> RuleTexts {
    let mut out = RuleTexts::new();
    let mut table: Option<(String, String)> = None;
    for line in listing.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("table ") {
            let mut it = rest.split_whitespace();
            if let (Some(f), Some(n)) = (it.next(), it.next()) {
                table = Some((f.to_string(), n.trim_end_matches('{').to_string()));
            }
            continue;
        }
        let Some((body, h)) = l.rsplit_once("# handle ") else {
            continue;
        };
        let Ok(h) = h.trim().parse::<u64>() else {
            continue;
        };
        let body = body.trim();
        if body.is_empty()
            || body.starts_with("chain ")
            || body.starts_with("set ")
            || body.starts_with("map ")
            || body.ends_with('{')
        {
            continue;
        }
        if let Some((f, n)) = &table {
            out.insert((f.clone(), n.clone(), h), body.to_string());
        }
    }
    out
}

/// One element of the `nftables` array, split by kind without being parsed further.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow, default)]
    table: Option<&'a RawValue>,
    #[serde(borrow, default)]
    chain: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rule: Option<&'a RawValue>,
    #[serde(borrow, default)]
    set: Option<&'a RawValue>,
    #[serde(borrow, default)]
    map: Option<&'a RawValue>,
}

/// Where a rule belongs, read apart from its statements so a rule kports cannot read still
/// keeps its place.
#[derive(Deserialize)]
struct RuleHead<'a> {
    #[serde(borrow)]
    family: Cow<'a, str>,
    #[serde(borrow)]
    table: Cow<'a, str>,
    #[serde(borrow)]
    chain: Cow<'a, str>,
    #[serde(default)]
    handle: Option<u64>,
}

/// A named set or map: the typed schema lacks some of their types (a `verdict` map), so the
/// fields kports reads are taken here, and each element is parsed on its own.
#[derive(Deserialize)]
struct RawSet<'a> {
    #[serde(borrow)]
    family: Cow<'a, str>,
    #[serde(borrow)]
    table: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, rename = "type", default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    map: Option<&'a RawValue>,
    #[serde(borrow, default)]
    elem: Option<Vec<&'a RawValue>>,
}

/// The `nftables` array of a listing.
#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(borrow)]
    nftables: Vec<&'a RawValue>,
}

/// Parses `nft -j list ruleset` (or `nft -j list table ...`); `texts` (from
/// [`parse_rule_texts`]) supplies rule texts, otherwise they are written from the parsed rule.
/// Returns the tables and warnings about elements kports could not read.
pub fn parse_json(json: &str, texts: Option<&RuleTexts>) -> Result<(Vec<Table>, Vec<String>)> {
    let doc: Doc<'_> = serde_json::from_str(json).map_err(|e| {
        if e.is_data() {
            Error::NftShape
        } else {
            Error::NftJson(e)
        }
    })?;
    let mut tables: Vec<Table> = Vec::new();
    let mut warnings = Vec::new();
    // Sets first: rules refer to them by name.
    let mut rules: Vec<&RawValue> = Vec::new();
    for raw in doc.nftables {
        let item: Item<'_> = match serde_json::from_str(raw.get()) {
            Ok(i) => i,
            Err(e) => {
                warnings.push(format!(
                    "skipped an nft object kports cannot read ({e}): {}",
                    clip(raw.get())
                ));
                continue;
            }
        };
        if let Some(r) = item.rule {
            rules.push(r);
        } else if let Some(v) = item.set.or(item.map) {
            match serde_json::from_str::<RawSet<'_>>(v.get()) {
                Ok(set) => {
                    let Some(ti) = find(&tables, &set.family, &set.table) else {
                        continue;
                    };
                    let (set, w) = raw_set(&set);
                    warnings.extend(w);
                    tables[ti].add_set(set);
                }
                Err(e) => warnings.push(format!(
                    "skipped an nft set kports cannot read ({e}): {}",
                    clip(raw.get())
                )),
            }
        } else if let Some(v) = item.table {
            match serde_json::from_str::<schema::Table<'_>>(v.get()) {
                Ok(t) => {
                    if let Some(fam) = family(t.family) {
                        tables.push(Table::new(Backend::Nft, fam, t.name.into_owned()));
                    }
                }
                Err(e) => warnings.push(format!(
                    "skipped an nft object kports cannot read ({e}): {}",
                    clip(raw.get())
                )),
            }
        } else if let Some(v) = item.chain {
            match serde_json::from_str::<schema::Chain<'_>>(v.get()) {
                Ok(c) => chain(&mut tables, &c),
                Err(e) => warnings.push(format!(
                    "skipped an nft object kports cannot read ({e}): {}",
                    clip(raw.get())
                )),
            }
        }
    }
    for raw in rules {
        // Each rule's JSON is parsed once; only a rule the typed schema refuses is read again,
        // for the head that places it.
        let rule = match serde_json::from_str::<schema::Rule<'_>>(raw.get()) {
            Ok(rule) => rule,
            Err(_) => {
                unreadable_rule(&mut tables, &mut warnings, raw, texts);
                continue;
            }
        };
        let Some(fam) = family(rule.family) else {
            continue;
        };
        let Some(ti) = find(&tables, fam.as_str(), &rule.table) else {
            continue;
        };
        let handle = rule.handle.map(u64::from);
        let text = handle
            .and_then(|h| {
                texts.and_then(|t| t.get(&(fam.as_str().to_string(), rule.table.to_string(), h)))
            })
            .cloned();
        let (conds, action) = statements(&rule.expr);
        let text = text
            .or_else(|| rule_text(&rule.expr, fam, rule.comment.as_deref()))
            .unwrap_or_else(|| render(&conds, &action));
        tables[ti].chain_mut(&rule.chain).rules.push(Rule {
            handle,
            text,
            conds,
            action,
        });
    }
    Ok((tables, warnings))
}

/// A rule whose statements the typed schema refuses: kept, where its head places it, as a rule
/// kports cannot read (its action unknown), or skipped with a warning when even the head is
/// unreadable.
fn unreadable_rule(
    tables: &mut [Table],
    warnings: &mut Vec<String>,
    raw: &RawValue,
    texts: Option<&RuleTexts>,
) {
    let head: RuleHead<'_> = match serde_json::from_str(raw.get()) {
        Ok(h) => h,
        Err(e) => {
            warnings.push(format!(
                "skipped an nft rule kports cannot read ({e}): {}",
                clip(raw.get())
            ));
            return;
        }
    };
    let Some(ti) = find(tables, &head.family, &head.table) else {
        return;
    };
    let handle = head.handle;
    let text = handle
        .and_then(|h| {
            texts.and_then(|t| t.get(&(head.family.to_string(), head.table.to_string(), h)))
        })
        .cloned();
    warnings.push(format!(
        "rule {} {} {} handle {} has a statement kports cannot read",
        head.family,
        head.table,
        head.chain,
        handle.unwrap_or(0)
    ));
    tables[ti].chain_mut(&head.chain).rules.push(Rule {
        handle,
        text: text.unwrap_or_else(|| clip(raw.get())),
        conds: Vec::new(),
        action: Action::Unknown("a rule kports cannot read".into()),
    });
}

/// The tables `nft -j list tables` names: (family, name), in the families kports reads.
pub fn parse_table_list(json: &str) -> Result<Vec<(TableFamily, String)>> {
    let (tables, _) = parse_json(json, None)?;
    Ok(tables.into_iter().map(|t| (t.family, t.name)).collect())
}

/// Records a chain, and where it is attached if it is a base chain on the input path.
fn chain(tables: &mut [Table], c: &schema::Chain<'_>) {
    let Some(fam) = family(c.family) else { return };
    let Some(ti) = find(tables, fam.as_str(), &c.table) else {
        return;
    };
    let chain = tables[ti].chain_mut(&c.name);
    let hook = match c.hook {
        Some(NfHook::Input) => Some(Hook::Input),
        Some(NfHook::Prerouting) => Some(Hook::Prerouting),
        _ => None,
    };
    if let Some(hook) = hook {
        let kind = match c._type {
            Some(NfChainType::NAT) => ChainType::Nat,
            Some(NfChainType::Route) => ChainType::Route,
            _ => ChainType::Filter,
        };
        let policy = if c.policy == Some(NfChainPolicy::Drop) {
            Policy::Drop
        } else {
            Policy::Accept
        };
        chain.base = Some(BaseChain {
            hook,
            priority: c.prio.unwrap_or(0),
            kind,
            policy,
        });
    }
}

/// The table of that family and name (a ruleset has a handful, so a scan is cheapest).
fn find(tables: &[Table], fam: &str, name: &str) -> Option<usize> {
    tables
        .iter()
        .position(|t| t.family.as_str() == fam && t.name == name)
}

fn clip(s: &str) -> String {
    if s.len() > 160 {
        let mut end = 160;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

fn family(f: NfFamily) -> Option<TableFamily> {
    match f {
        NfFamily::IP => Some(TableFamily::Ip),
        NfFamily::IP6 => Some(TableFamily::Ip6),
        NfFamily::INet => Some(TableFamily::Inet),
        _ => None,
    }
}

fn type_key(name: &str) -> Key {
    match name {
        "ipv4_addr" => Key::Addr {
            dir: Dir::Src,
            v6: Some(false),
        },
        "ipv6_addr" => Key::Addr {
            dir: Dir::Src,
            v6: Some(true),
        },
        "inet_service" => Key::Port {
            dir: Dir::Dst,
            proto: None,
        },
        "inet_proto" => Key::L4Proto,
        "ifname" => Key::Iifname,
        "ct_state" => Key::CtState,
        other => Key::Unknown(other.to_string()),
    }
}

/// A named set or map from its JSON object.
fn raw_set(v: &RawSet<'_>) -> (NamedSet, Vec<String>) {
    let name = v.name.to_string();
    let mut warnings = Vec::new();
    let key = match v.kind.map(|k| k.get()) {
        Some(k) if k.starts_with('"') => match serde_json::from_str::<Cow<'_, str>>(k) {
            Ok(t) => type_key(&t),
            Err(_) => Key::Unknown("set type".into()),
        },
        Some(k) if k.starts_with('[') => match serde_json::from_str::<Vec<Cow<'_, str>>>(k) {
            Ok(ts) => Key::Concat(ts.iter().map(|t| type_key(t)).collect()),
            Err(_) => Key::Unknown("set type".into()),
        },
        _ => Key::Unknown("set type".into()),
    };
    let is_map = v.map.is_some();
    let is_verdict = v.map.map(|m| m.get().trim()) == Some("\"verdict\"");
    let (mut elems, mut verdicts) = (Vec::new(), Vec::new());
    for e in v.elem.iter().flatten() {
        let (k, action) = if is_map {
            match serde_json::from_str::<(&RawValue, &RawValue)>(e.get()) {
                Ok((k, val)) => {
                    let action = if is_verdict {
                        serde_json::from_str::<Statement<'_>>(val.get())
                            .ok()
                            .and_then(|s| verdict_stmt(&s))
                    } else {
                        None
                    };
                    (k, action.unwrap_or(Action::Unknown("a map value".into())))
                }
                Err(_) => {
                    warnings.push(format!(
                        "map {name}: element skipped (not a key : value pair)"
                    ));
                    continue;
                }
            }
        } else {
            (*e, Action::Continue)
        };
        let parsed = serde_json::from_str::<Expression<'_>>(k.get())
            .map_err(|e| e.to_string())
            .and_then(|x| vals(&x, &key));
        match parsed {
            Ok(vs) => {
                for x in vs {
                    elems.push(x);
                    verdicts.push(action.clone());
                }
            }
            Err(why) => warnings.push(format!("set {name}: element skipped ({why})")),
        }
    }
    (
        NamedSet {
            name,
            elems,
            verdicts: is_verdict.then_some(verdicts),
        },
        warnings,
    )
}

/// Turns a rule's statements into conditions and its action.
fn statements(stmts: &[Statement<'_>]) -> (Vec<Cond>, Action) {
    let mut conds = Vec::new();
    let mut action = Action::Continue;
    for s in stmts {
        match s {
            Statement::Match(m) => conds.extend(match_cond(m)),
            Statement::Accept(_) => action = Action::Accept,
            Statement::Drop(_) => action = Action::Drop,
            Statement::Return(_) => action = Action::Return,
            Statement::Continue(_) => action = Action::Continue,
            Statement::Jump(j) => action = Action::Jump(j.target.to_string()),
            Statement::Goto(j) => action = Action::Goto(j.target.to_string()),
            Statement::Reject(r) => {
                let v = r
                    .as_ref()
                    .and_then(|r| serde_json::to_value(r).ok())
                    .unwrap_or(Value::Null);
                let ty = v.get("type").and_then(Value::as_str);
                let code = v.get("expr").and_then(Value::as_str);
                action = Action::Reject(match (ty, code) {
                    (Some("tcp reset"), _) => Some("tcp reset".into()),
                    (Some(t), Some(c)) => Some(format!("{t} {c}")),
                    (Some(t), None) => Some(format!("{t} port-unreachable")),
                    _ => None,
                });
            }
            Statement::VerdictMap(vm) => {
                let key = key_of(&vm.key);
                let map = match &vm.data {
                    Expression::String(s) if s.starts_with('@') => {
                        VmapRef::Named(s[1..].to_string())
                    }
                    Expression::Named(NamedExpression::Set(items)) => {
                        let mut out = Vec::new();
                        for it in items {
                            let (k, a) = match it {
                                SetItem::Mapping(k, v) => (k, verdict_expr(v)),
                                SetItem::MappingStatement(k, st) => (k, verdict_stmt(st)),
                                SetItem::Element(_) => continue,
                            };
                            let a = a.unwrap_or(Action::Unknown("a map value".into()));
                            match vals(k, &key) {
                                Ok(vs) => out.extend(vs.into_iter().map(|v| (v, a.clone()))),
                                Err(why) => {
                                    action = Action::Unknown(format!(
                                        "a verdict map kports cannot read ({why})"
                                    ));
                                    return (conds, action);
                                }
                            }
                        }
                        VmapRef::Inline(out)
                    }
                    _ => {
                        action = Action::Unknown("a verdict map kports cannot read".into());
                        continue;
                    }
                };
                action = Action::Vmap { key, map };
            }
            Statement::Limit(_) => conds.push(unknown("limit rate")),
            Statement::Quota(_) => conds.push(unknown("quota")),
            Statement::CTCount(_) => conds.push(unknown("ct count")),
            Statement::Meter(_) => conds.push(unknown("meter")),
            Statement::XT(x) => {
                let kind = x
                    .as_ref()
                    .and_then(|v| v.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("match");
                let name = x
                    .as_ref()
                    .and_then(|v| v.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                match (kind, name) {
                    // A comment never changes a verdict.
                    ("match", "comment") => {}
                    ("match", n) => conds.push(unknown(&format!(
                        "xt match {n} (an iptables-nft rule; read with iptables-nft-save)"
                    ))),
                    (_, "LOG" | "NFLOG" | "MARK" | "CONNMARK" | "CHECKSUM" | "TCPMSS") => {}
                    (_, n) => action = Action::Unknown(format!("xt target {n}")),
                }
            }
            Statement::Notrack => {
                action = Action::Unknown("notrack (later state matches change)".into())
            }
            Statement::Queue(_) => {
                action = Action::Unknown("queue (the packet goes to a user-space program)".into())
            }
            Statement::DNAT(_)
            | Statement::SNAT(_)
            | Statement::Redirect(_)
            | Statement::Masquerade(_)
            | Statement::TProxy(_) => {
                action = Action::Unknown("nat or tproxy (the packet is redirected)".into())
            }
            Statement::SynProxy(_) => action = Action::Unknown("synproxy".into()),
            // counter, log, mangle (mark set), set add, ct helper/timeout: no verdict.
            _ => {}
        }
    }
    (conds, action)
}

fn unknown(text: &str) -> Cond {
    Cond {
        key: Key::Unknown(text.to_string()),
        neg: false,
        rhs: Rhs::Vals(Vec::new()),
    }
}

fn verdict_expr(e: &Expression<'_>) -> Option<Action> {
    match e {
        Expression::Verdict(v) => Some(match v {
            Verdict::Accept => Action::Accept,
            Verdict::Drop => Action::Drop,
            Verdict::Continue => Action::Continue,
            Verdict::Return => Action::Return,
            Verdict::Jump(j) => Action::Jump(j.target.to_string()),
            Verdict::Goto(j) => Action::Goto(j.target.to_string()),
        }),
        _ => None,
    }
}

fn verdict_stmt(s: &Statement<'_>) -> Option<Action> {
    Some(match s {
        Statement::Accept(_) => Action::Accept,
        Statement::Drop(_) => Action::Drop,
        Statement::Continue(_) => Action::Continue,
        Statement::Return(_) => Action::Return,
        Statement::Jump(j) => Action::Jump(j.target.to_string()),
        Statement::Goto(j) => Action::Goto(j.target.to_string()),
        _ => return None,
    })
}

fn key_of(e: &Expression<'_>) -> Key {
    match e {
        Expression::Named(NamedExpression::Payload(Payload::PayloadField(p))) => {
            let proto = proto_number(&p.protocol);
            match (p.protocol.as_ref(), p.field.as_ref()) {
                ("ip", "saddr") => Key::Addr {
                    dir: Dir::Src,
                    v6: Some(false),
                },
                ("ip", "daddr") => Key::Addr {
                    dir: Dir::Dst,
                    v6: Some(false),
                },
                ("ip6", "saddr") => Key::Addr {
                    dir: Dir::Src,
                    v6: Some(true),
                },
                ("ip6", "daddr") => Key::Addr {
                    dir: Dir::Dst,
                    v6: Some(true),
                },
                ("th", "dport") => Key::Port {
                    dir: Dir::Dst,
                    proto: None,
                },
                ("th", "sport") => Key::Port {
                    dir: Dir::Src,
                    proto: None,
                },
                ("tcp" | "udp" | "sctp" | "udplite" | "dccp", "dport") => Key::Port {
                    dir: Dir::Dst,
                    proto,
                },
                ("tcp" | "udp" | "sctp" | "udplite" | "dccp", "sport") => Key::Port {
                    dir: Dir::Src,
                    proto,
                },
                ("ip", "protocol") => Key::Concat(vec![Key::NfProto, Key::L4Proto]),
                ("ip6", "nexthdr") => Key::Concat(vec![Key::NfProto, Key::L4Proto]),
                (pr, f) => Key::Unknown(format!("{pr} {f}")),
            }
        }
        Expression::Named(NamedExpression::Meta(m)) => {
            let name = serde_json::to_value(m.key)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            match name.as_str() {
                "l4proto" => Key::L4Proto,
                "iifname" | "iif" => Key::Iifname,
                "oifname" | "oif" => Key::Oifname,
                "nfproto" => Key::NfProto,
                "pkttype" => Key::PktType,
                other => Key::Unknown(format!("meta {other}")),
            }
        }
        Expression::Named(NamedExpression::CT(ct)) => match ct.key.as_ref() {
            "state" => Key::CtState,
            "status" => Key::CtStatus,
            "direction" => Key::CtDirection,
            other => Key::Unknown(format!("ct {other}")),
        },
        Expression::Named(NamedExpression::Concat(parts)) => {
            Key::Concat(parts.iter().map(key_of).collect())
        }
        Expression::Named(NamedExpression::Fib(_)) => {
            Key::Unknown("fib (a routing lookup, e.g. reverse-path filtering)".into())
        }
        Expression::Named(NamedExpression::Socket(_)) => Key::Unknown("socket".into()),
        Expression::BinaryOperation(_) => {
            Key::Unknown(format!("{} (a bitwise expression)", short_json(e)))
        }
        other => Key::Unknown(short_json(other)),
    }
}

fn short_json(e: &Expression<'_>) -> String {
    let s = serde_json::to_string(e).unwrap_or_default();
    if s.len() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

fn match_cond(m: &Match<'_>) -> Vec<Cond> {
    let key = key_of(&m.left);
    if let Key::Unknown(w) = &key {
        let mut out = Vec::new();
        // A field of a transport header (`icmpv6 type`, `tcp flags`) implies that protocol,
        // as nft adds the dependency itself: a packet of another protocol never matches.
        if let Expression::Named(NamedExpression::Payload(Payload::PayloadField(p))) = &m.left
            && !matches!(
                p.protocol.as_ref(),
                "ip" | "ip6" | "th" | "ether" | "vlan" | "arp"
            )
            && let Some(n) = proto_number(&p.protocol)
        {
            out.push(Cond {
                key: Key::L4Proto,
                neg: false,
                rhs: Rhs::Vals(vec![Val::Int(n.into(), n.into())]),
            });
        }
        out.push(unknown(&format!(
            "{w} {} {}",
            op_symbol(m),
            short_json(&m.right)
        )));
        return out;
    }
    let op = op_symbol(m);
    // `ip protocol tcp` reads as "an IPv4 packet whose protocol is tcp".
    if let Key::Concat(ks) = &key
        && ks.as_slice() == [Key::NfProto, Key::L4Proto]
        && !matches!(&m.right, Expression::Named(NamedExpression::Concat(_)))
    {
        let fam = match &m.left {
            Expression::Named(NamedExpression::Payload(Payload::PayloadField(p)))
                if p.protocol == "ip6" =>
            {
                "ipv6"
            }
            _ => "ipv4",
        };
        let mut out = vec![Cond {
            key: Key::NfProto,
            neg: false,
            rhs: Rhs::Vals(vec![Val::Str(fam.into())]),
        }];
        out.extend(match_cond_with(Key::L4Proto, op, &m.right));
        return out;
    }
    match_cond_with(key, op, &m.right)
}

fn match_cond_with(key: Key, op: &str, right: &Expression<'_>) -> Vec<Cond> {
    if let Expression::String(s) = right
        && let Some(name) = s.strip_prefix('@')
    {
        return vec![Cond {
            key,
            neg: op == "!=",
            rhs: Rhs::Set(name.to_string()),
        }];
    }
    let vs = match vals(right, &key) {
        Ok(v) => v,
        Err(why) => {
            return vec![unknown(&format!(
                "{key} {op} {} ({why})",
                short_json(right)
            ))];
        }
    };
    match op {
        "==" | "in" => vec![Cond {
            key,
            neg: false,
            rhs: Rhs::Vals(vs),
        }],
        "!=" => vec![Cond {
            key,
            neg: true,
            rhs: Rhs::Vals(vs),
        }],
        "<" | ">" | "<=" | ">=" => match vs.as_slice() {
            [Val::Int(x, _)] => {
                let range = match op {
                    "<" if *x > 0 => Val::Int(0, x - 1),
                    "<" => {
                        return vec![Cond {
                            key,
                            neg: true,
                            rhs: Rhs::Vals(vec![Val::Int(0, u64::MAX)]),
                        }];
                    }
                    "<=" => Val::Int(0, *x),
                    ">" => Val::Int(x.saturating_add(1), u64::MAX),
                    _ => Val::Int(*x, u64::MAX),
                };
                vec![Cond {
                    key,
                    neg: false,
                    rhs: Rhs::Vals(vec![range]),
                }]
            }
            _ => vec![unknown(&format!("{key} {op} {}", short_json(right)))],
        },
        other => vec![unknown(&format!("{key} {other} {}", short_json(right)))],
    }
}

/// The operator as nft writes it. The crate names `<` and `>` the other way round, so the
/// serialized symbol is what counts.
fn op_symbol(m: &Match<'_>) -> &'static str {
    let s = serde_json::to_value(m.op)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match s.as_str() {
        "==" => "==",
        "!=" => "!=",
        "<" => "<",
        ">" => ">",
        "<=" => "<=",
        ">=" => ">=",
        "in" => "in",
        "&" => "&",
        _ => "?",
    }
}

/// The values an expression stands for, read as values of `key`.
fn vals(e: &Expression<'_>, key: &Key) -> Result<Vec<Val>, String> {
    match e {
        Expression::List(items) => items
            .iter()
            .map(|i| vals(i, key))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.concat()),
        Expression::Named(NamedExpression::Set(items)) => {
            let mut out = Vec::new();
            for it in items {
                match it {
                    SetItem::Element(x) => out.extend(vals(x, key)?),
                    _ => return Err("a mapping where a value was expected".into()),
                }
            }
            Ok(out)
        }
        Expression::Named(NamedExpression::Elem(el)) => vals(&el.val, key),
        Expression::Named(NamedExpression::Prefix(p)) => {
            let Expression::String(a) = p.addr.as_ref() else {
                return Err("prefix of a non-address".into());
            };
            let len = u8::try_from(p.len).map_err(|_| "prefix length out of range")?;
            let r =
                parse_cidr(&format!("{a}/{len}")).ok_or_else(|| format!("bad prefix {a}/{len}"))?;
            Ok(vec![Val::Addr(r)])
        }
        Expression::Range(r) => {
            let lo = one(&r.range[0], key)?;
            let hi = one(&r.range[1], key)?;
            match (lo, hi) {
                (Val::Int(a, _), Val::Int(_, b)) => Ok(vec![Val::Int(a.min(b), a.max(b))]),
                (Val::Addr(a), Val::Addr(b)) if a.v6 == b.v6 => Ok(vec![Val::Addr(AddrRange {
                    v6: a.v6,
                    lo: a.lo.min(b.lo),
                    hi: a.hi.max(b.hi),
                })]),
                _ => Err("a range of mixed values".into()),
            }
        }
        Expression::Named(NamedExpression::Concat(parts)) => {
            let keys: Vec<Key> = match key {
                Key::Concat(ks) if ks.len() == parts.len() => ks.clone(),
                _ => vec![Key::Unknown(String::new()); parts.len()],
            };
            let mut out = Vec::new();
            for (p, k) in parts.iter().zip(&keys) {
                out.push(one(p, k)?);
            }
            Ok(vec![Val::Concat(out)])
        }
        x => one(x, key).map(|v| vec![v]),
    }
}

fn one(e: &Expression<'_>, key: &Key) -> Result<Val, String> {
    match e {
        Expression::Number(n) => Ok(Val::Int(u64::from(*n), u64::from(*n))),
        Expression::Boolean(b) => Ok(Val::Int(u64::from(*b), u64::from(*b))),
        Expression::String(s) => string_val(s, key),
        Expression::Named(NamedExpression::Prefix(_))
        | Expression::Range(_)
        | Expression::Named(NamedExpression::Concat(_))
        | Expression::Named(NamedExpression::Elem(_)) => vals(e, key)?
            .into_iter()
            .next()
            .ok_or_else(|| "empty value".into()),
        other => Err(format!("value {}", short_json(other))),
    }
}

fn string_val(s: &str, key: &Key) -> Result<Val, String> {
    match key {
        Key::Addr { .. } => parse_cidr(s)
            .map(Val::Addr)
            .ok_or_else(|| format!("bad address {s}")),
        Key::Port { .. } => service_port(s)
            .map(|p| Val::Int(p.into(), p.into()))
            .ok_or_else(|| format!("unknown service {s}")),
        Key::L4Proto => proto_number(s)
            .map(|p| Val::Int(p.into(), p.into()))
            .ok_or_else(|| format!("unknown protocol {s}")),
        // A trailing `*` is a wildcard, as the evaluator reads it.
        Key::Iifname | Key::Oifname => Ok(Val::Str(s.to_string())),
        Key::NfProto | Key::CtState | Key::CtStatus | Key::CtDirection | Key::PktType => {
            Ok(Val::Str(s.to_ascii_lowercase()))
        }
        _ => Ok(Val::Str(s.to_string())),
    }
}

/// A rule as `nft list` prints it, written from its statements; `None` for a statement this
/// writer does not know (the caller then writes it from the parsed rule).
pub fn rule_text(
    stmts: &[Statement<'_>],
    fam: TableFamily,
    comment: Option<&str>,
) -> Option<String> {
    let mut parts: Vec<String> = Vec::with_capacity(stmts.len() + 1);
    for st in stmts {
        parts.push(stmt_text(st, fam)?);
    }
    if let Some(c) = comment {
        parts.push(format!("comment \"{c}\""));
    }
    Some(parts.join(" "))
}

fn stmt_text(st: &Statement<'_>, fam: TableFamily) -> Option<String> {
    Some(match st {
        Statement::Match(m) => {
            let left = expr_text(&m.left, None)?;
            let right = expr_text(&m.right, Some(&m.left))?;
            match op_symbol(m) {
                "==" | "in" => format!("{left} {right}"),
                "?" => return None,
                op => format!("{left} {op} {right}"),
            }
        }
        Statement::Accept(_) => "accept".into(),
        Statement::Drop(_) => "drop".into(),
        Statement::Return(_) => "return".into(),
        Statement::Continue(_) => "continue".into(),
        Statement::Jump(j) => format!("jump {}", j.target),
        Statement::Goto(j) => format!("goto {}", j.target),
        Statement::Reject(_) => {
            let (_, action) = statements(std::slice::from_ref(st));
            let Action::Reject(with) = action else {
                return None;
            };
            // nft leaves out the family's default answer.
            let default = match fam {
                TableFamily::Inet => "icmpx port-unreachable",
                TableFamily::Ip => "icmp port-unreachable",
                TableFamily::Ip6 => "icmpv6 port-unreachable",
            };
            match with {
                Some(w) if w != default => format!("reject with {w}"),
                _ => "reject".into(),
            }
        }
        Statement::Counter(nftables::stmt::Counter::Anonymous(c)) => {
            let c = c.clone().unwrap_or_default();
            format!(
                "counter packets {} bytes {}",
                c.packets.unwrap_or(0),
                c.bytes.unwrap_or(0)
            )
        }
        Statement::Counter(nftables::stmt::Counter::Named(n)) => format!("counter name {n}"),
        Statement::VerdictMap(vm) => format!(
            "{} vmap {}",
            expr_text(&vm.key, None)?,
            expr_text(&vm.data, Some(&vm.key))?
        ),
        _ => return None,
    })
}

/// An expression as nft prints it; `left` is the field a value is compared with, which decides
/// how a value looks (interface names quoted, marks in hex).
fn expr_text(e: &Expression<'_>, left: Option<&Expression<'_>>) -> Option<String> {
    let field = left.map(|l| key_of(l));
    Some(match e {
        Expression::String(s) if s.starts_with('@') => s.to_string(),
        Expression::String(s) => match field {
            Some(Key::Iifname | Key::Oifname) => format!("\"{s}\""),
            _ => s.to_string(),
        },
        Expression::Number(n) => match left {
            Some(Expression::Named(NamedExpression::Meta(_) | NamedExpression::CT(_))) if matches!(&field, Some(Key::Unknown(w)) if w.ends_with(" mark")) =>
            {
                format!("0x{n:08x}")
            }
            _ => n.to_string(),
        },
        // `fib ... oif missing`: a lookup that found nothing.
        Expression::Boolean(b)
            if matches!(left, Some(Expression::Named(NamedExpression::Fib(_)))) =>
        {
            if *b { "exists" } else { "missing" }.to_string()
        }
        Expression::Boolean(b) => b.to_string(),
        Expression::List(items) => items
            .iter()
            .map(|i| expr_text(i, left))
            .collect::<Option<Vec<_>>>()?
            .join(","),
        Expression::Range(r) => format!(
            "{}-{}",
            expr_text(&r.range[0], left)?,
            expr_text(&r.range[1], left)?
        ),
        Expression::Verdict(v) => match v {
            Verdict::Accept => "accept".into(),
            Verdict::Drop => "drop".into(),
            Verdict::Continue => "continue".into(),
            Verdict::Return => "return".into(),
            Verdict::Jump(j) => format!("jump {}", j.target),
            Verdict::Goto(j) => format!("goto {}", j.target),
        },
        Expression::Named(n) => match n {
            NamedExpression::Set(items) => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    out.push(match it {
                        // A verdict map's `[key, verdict]` pair.
                        SetItem::Element(Expression::List(pair))
                            if pair.len() == 2 && matches!(pair[1], Expression::Verdict(_)) =>
                        {
                            format!(
                                "{} : {}",
                                expr_text(&pair[0], left)?,
                                expr_text(&pair[1], None)?
                            )
                        }
                        SetItem::Element(x) => expr_text(x, left)?,
                        SetItem::Mapping(k, v) => {
                            format!("{} : {}", expr_text(k, left)?, expr_text(v, None)?)
                        }
                        SetItem::MappingStatement(k, st) => format!(
                            "{} : {}",
                            expr_text(k, left)?,
                            stmt_text(st, TableFamily::Inet)?
                        ),
                    });
                }
                format!("{{ {} }}", out.join(", "))
            }
            NamedExpression::Prefix(p) => format!("{}/{}", expr_text(&p.addr, left)?, p.len),
            NamedExpression::Concat(parts) => parts
                .iter()
                .map(|x| expr_text(x, None))
                .collect::<Option<Vec<_>>>()?
                .join(" . "),
            NamedExpression::Payload(Payload::PayloadField(p)) => {
                format!("{} {}", p.protocol, p.field)
            }
            NamedExpression::Meta(m) => {
                let name = serde_json::to_value(m.key).ok()?.as_str()?.to_string();
                match name.as_str() {
                    // nft prints these without `meta`.
                    "iif" | "oif" | "iifname" | "oifname" | "iifgroup" | "oifgroup" => name,
                    _ => format!("meta {name}"),
                }
            }
            NamedExpression::Fib(f) => {
                let v = serde_json::to_value(f).ok()?;
                let result = v.get("result")?.as_str()?;
                let mut flags: Vec<&str> = v
                    .get("flags")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                // The order nft prints them in (its flag bits).
                let order = ["saddr", "daddr", "mark", "iif", "oif"];
                flags.sort_by_key(|f| order.iter().position(|o| o == f));
                format!("fib {} {result}", flags.join(" . "))
            }
            NamedExpression::CT(ct) => match &ct.dir {
                None => format!("ct {}", ct.key),
                Some(_) => return None,
            },
            _ => return None,
        },
        Expression::BinaryOperation(_) => return None,
    })
}
