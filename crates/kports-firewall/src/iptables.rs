//! Parser for the `iptables-save` / `ip6tables-save` format (legacy and nf_tables variants).
//!
//! The format is line based: `*table`, `:CHAIN POLICY [packets:bytes]`, `-A CHAIN options...`,
//! `COMMIT`. Options are grouped as `[!] --option [values...]`; a match module (`-m NAME`) owns
//! the options that follow it. Modules kports understands become conditions it evaluates; any
//! other module becomes one "depends on" condition carrying its own words. A line kports cannot
//! read at all is kept as a rule whose outcome is unknown, with a warning: a malformed dump never
//! makes a port look open.

use std::borrow::Cow;

use crate::model::*;

/// Where the dump's chains sit: (table, chain) -> (hook, priority, chain type).
fn base_of(table: &str, chain: &str) -> Option<(Hook, i32, ChainType)> {
    Some(match (table, chain) {
        ("raw", "PREROUTING") => (Hook::Prerouting, -300, ChainType::Filter),
        ("mangle", "PREROUTING") => (Hook::Prerouting, -150, ChainType::Filter),
        ("mangle", "INPUT") => (Hook::Input, -150, ChainType::Filter),
        ("nat", "PREROUTING") => (Hook::Prerouting, -100, ChainType::Nat),
        ("filter", "INPUT") => (Hook::Input, 0, ChainType::Filter),
        ("security", "INPUT") => (Hook::Input, 50, ChainType::Filter),
        ("nat", "INPUT") => (Hook::Input, 100, ChainType::Nat),
        _ => return None,
    })
}

/// A problem with one line of a dump; the rest is still read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineWarning {
    pub line: usize,
    pub message: String,
}

/// Parses one `iptables-save` (or `ip6tables-save` when `v6`) dump into tables.
pub fn parse_save(text: &str, backend: Backend, v6: bool) -> (Vec<Table>, Vec<LineWarning>) {
    let family = if v6 {
        TableFamily::Ip6
    } else {
        TableFamily::Ip
    };
    let mut tables: Vec<Table> = Vec::new();
    let mut warnings = Vec::new();
    let mut cur: Option<Table> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let lineno = n + 1;
        let mut warn = |m: String| {
            warnings.push(LineWarning {
                line: lineno,
                message: m,
            })
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some(t) = cur.take() {
                warn(format!("table {} has no COMMIT", t.name));
                tables.push(t);
            }
            cur = Some(Table::new(backend, family, name.trim()));
            continue;
        }
        if line == "COMMIT" {
            match cur.take() {
                Some(t) => tables.push(t),
                None => warn("COMMIT outside a table".into()),
            }
            continue;
        }
        let Some(table) = cur.as_mut() else {
            warn(format!("line outside a table: {}", clip(line)));
            continue;
        };
        if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let (Some(name), Some(policy)) = (parts.next(), parts.next()) else {
                warn(format!(
                    "chain declaration without a policy: {}",
                    clip(line)
                ));
                continue;
            };
            let tname = table.name.clone();
            let chain = table.chain_mut(name);
            if let Some((hook, priority, kind)) = base_of(&tname, name) {
                let policy = if policy == "DROP" {
                    Policy::Drop
                } else {
                    Policy::Accept
                };
                chain.base = Some(BaseChain {
                    hook,
                    priority,
                    kind,
                    policy,
                });
            }
            continue;
        }
        // `iptables-save -c` puts counters first: `[12:3456] -A ...`.
        let body = match line.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or(rest, |(_, r)| r.trim_start()),
            None => line,
        };
        match parse_rule(body, table, v6) {
            Ok((chain, rule)) => table.chain_mut(&chain).rules.push(rule),
            Err(e) => {
                warn(format!("{e}: {}", clip(line)));
                // Keep the rule where it would have been, as an unknown: never let it vanish.
                if let Some(chain) = rule_chain(body) {
                    table.chain_mut(&chain).rules.push(Rule {
                        handle: None,
                        text: body.to_string(),
                        conds: Vec::new(),
                        action: Action::Unknown(format!("a rule kports cannot read ({e})")),
                    });
                }
            }
        }
    }
    if let Some(t) = cur.take() {
        warnings.push(LineWarning {
            line: text.lines().count(),
            message: format!("table {} has no COMMIT", t.name),
        });
        tables.push(t);
    }
    (tables, warnings)
}

fn clip(s: &str) -> String {
    if s.len() > 120 {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

fn rule_chain(body: &str) -> Option<String> {
    let mut it = body.split_whitespace();
    (it.next()? == "-A").then_some(())?;
    it.next().map(str::to_string)
}

/// Splits a line into words, honouring double quotes and backslash escapes as iptables-save
/// writes them (`--comment "a \"b\""`).
pub fn tokenize(s: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'"' && b[i] != b'\\' {
            i += 1;
        }
        if i >= b.len() || b[i].is_ascii_whitespace() {
            // A plain word: borrowed, no copy.
            out.push(Cow::Borrowed(&s[start..i]));
            continue;
        }
        let mut cur = String::from(&s[start..i]);
        let mut quoted = false;
        let mut chars = s[i..].char_indices();
        let mut end = s.len();
        while let Some((off, ch)) = chars.next() {
            match ch {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        cur.push(n);
                    }
                }
                '"' => quoted = !quoted,
                c if c.is_whitespace() && !quoted => {
                    end = i + off;
                    break;
                }
                c => cur.push(c),
            }
        }
        if quoted {
            return Err("unterminated quote".into());
        }
        out.push(Cow::Owned(cur));
        i = end;
    }
    Ok(out)
}

/// `[!] -opt [args...]`.
struct Opt<'a> {
    neg: bool,
    name: Cow<'a, str>,
    args: Vec<Cow<'a, str>>,
}

fn group(tokens: Vec<Cow<'_, str>>) -> Result<Vec<Opt<'_>>, String> {
    let mut out: Vec<Opt<'_>> = Vec::new();
    let mut neg = false;
    for t in tokens {
        if t == "!" {
            if neg {
                return Err("two `!` in a row".into());
            }
            neg = true;
        } else if t.starts_with('-')
            && t.len() > 1
            && !t[1..].starts_with(|c: char| c.is_ascii_digit())
        {
            out.push(Opt {
                neg,
                name: t,
                args: Vec::new(),
            });
            neg = false;
        } else {
            match out.last_mut() {
                // iptables-save writes `! ` before the value for a few old options (`-s ! x`).
                Some(o) => {
                    o.neg |= neg;
                    neg = false;
                    o.args.push(t);
                }
                None => return Err(format!("value `{t}` before any option")),
            }
        }
    }
    if neg {
        return Err("`!` at the end of the rule".into());
    }
    Ok(out)
}

fn parse_rule(body: &str, table: &Table, v6: bool) -> Result<(String, Rule), String> {
    let opts = group(tokenize(body)?)?;
    let mut chain: Option<String> = None;
    let mut conds: Vec<Cond> = Vec::new();
    let mut action = Action::Continue;
    let mut proto: Option<u8> = None;
    let mut module: Option<String> = None;
    // Options of a module kports does not know, gathered into one condition per module.
    let mut unknown: Option<(String, Vec<String>)> = None;
    let flush = |unknown: &mut Option<(String, Vec<String>)>, conds: &mut Vec<Cond>| {
        if let Some((m, words)) = unknown.take() {
            let text = if words.is_empty() {
                format!("-m {m}")
            } else {
                format!("-m {m} {}", words.join(" "))
            };
            conds.push(Cond {
                key: Key::Unknown(text),
                neg: false,
                rhs: Rhs::Vals(Vec::new()),
            });
        }
    };
    let mut i = 0;
    while i < opts.len() {
        let o = &opts[i];
        i += 1;
        let arg = |n: usize| {
            o.args
                .get(n)
                .map(|a| a.as_ref())
                .ok_or_else(|| format!("{} needs a value", o.name))
        };
        match o.name.as_ref() {
            "-A" | "--append" => chain = Some(arg(0)?.to_string()),
            "-p" | "--protocol" => {
                let p = arg(0)?;
                if p != "all" && p != "0" {
                    let n = proto_number(p).ok_or_else(|| format!("unknown protocol {p}"))?;
                    proto = Some(n);
                    conds.push(Cond {
                        key: Key::L4Proto,
                        neg: o.neg,
                        rhs: Rhs::Vals(vec![Val::Int(n.into(), n.into())]),
                    });
                }
            }
            "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                let dir = if o.name.starts_with("-s") || o.name.starts_with("--s") {
                    Dir::Src
                } else {
                    Dir::Dst
                };
                let mut vals = Vec::new();
                for a in arg(0)?.split(',') {
                    vals.push(Val::Addr(addr(a, v6)?));
                }
                conds.push(Cond {
                    key: Key::Addr { dir, v6: Some(v6) },
                    neg: o.neg,
                    rhs: Rhs::Vals(vals),
                });
            }
            "-i" | "--in-interface" => conds.push(Cond {
                key: Key::Iifname,
                neg: o.neg,
                rhs: Rhs::Vals(vec![ifname(arg(0)?)]),
            }),
            // Before routing and on input there is no output interface: iptables compares an
            // empty name, so `-o X` never matches and `! -o X` always does.
            "-o" | "--out-interface" => {
                let v = ifname(arg(0)?);
                if !o.neg {
                    conds.push(Cond {
                        key: Key::Oifname,
                        neg: false,
                        rhs: Rhs::Vals(vec![v]),
                    });
                }
            }
            "-f" | "--fragment" => conds.push(Cond {
                key: Key::Unknown("-f (a later fragment)".into()),
                neg: o.neg,
                rhs: Rhs::Vals(Vec::new()),
            }),
            "-m" | "--match" => {
                flush(&mut unknown, &mut conds);
                let m = arg(0)?.to_string();
                if !known_module(&m) {
                    unknown = Some((m.clone(), Vec::new()));
                }
                module = Some(m);
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                flush(&mut unknown, &mut conds);
                let target = arg(0)?;
                let goto = o.name == "-g" || o.name == "--goto";
                // Target options follow as their own groups.
                let mut topts: Vec<&Opt<'_>> = Vec::new();
                while i < opts.len() && !is_rule_option(&opts[i].name) {
                    topts.push(&opts[i]);
                    i += 1;
                }
                action = target_action(target, goto, &topts, table);
            }
            "-c" | "--set-counters" => {}
            name => {
                // `-p tcp --dport 22` loads the protocol's match implicitly.
                let m = module.as_deref().unwrap_or(match proto {
                    Some(6) => "tcp",
                    Some(17) => "udp",
                    Some(132) => "sctp",
                    _ => "",
                });
                if let Some((_, words)) = unknown.as_mut() {
                    if o.neg {
                        words.push("!".into());
                    }
                    words.push(name.to_string());
                    words.extend(o.args.iter().map(|a| a.to_string()));
                    continue;
                }
                if let Some(c) = module_option(m, o, proto, v6)? {
                    conds.push(c);
                }
            }
        }
    }
    flush(&mut unknown, &mut conds);
    let chain = chain.ok_or("no -A CHAIN")?;
    Ok((
        chain,
        Rule {
            handle: None,
            text: body.to_string(),
            conds,
            action,
        },
    ))
}

fn is_rule_option(name: &str) -> bool {
    matches!(
        name,
        "-m" | "--match" | "-p" | "-s" | "-d" | "-i" | "-o" | "-j" | "-g" | "-A"
    )
}

fn known_module(m: &str) -> bool {
    matches!(
        m,
        "tcp"
            | "udp"
            | "sctp"
            | "multiport"
            | "conntrack"
            | "state"
            | "comment"
            | "addrtype"
            | "iprange"
            | "pkttype"
    )
}

fn addr(a: &str, v6: bool) -> Result<AddrRange, String> {
    let r = parse_cidr(a).ok_or_else(|| format!("bad address {a}"))?;
    if r.v6 != v6 {
        return Err(format!("address {a} of the other family"));
    }
    Ok(r)
}

fn ifname(n: &str) -> Val {
    match n.strip_suffix('+') {
        Some(p) => Val::Str(format!("{p}*")),
        None => Val::Str(n.to_string()),
    }
}

/// `22`, `1000:2000`, `:1023`, `ssh`.
fn port_range(s: &str) -> Result<Val, String> {
    let one = |p: &str, dflt: u16| -> Result<u16, String> {
        if p.is_empty() {
            return Ok(dflt);
        }
        service_port(p).ok_or_else(|| format!("bad port {p}"))
    };
    match s.split_once(':') {
        Some((a, b)) => {
            let (a, b) = (one(a, 0)?, one(b, u16::MAX)?);
            Ok(Val::Int(a.min(b).into(), a.max(b).into()))
        }
        None => {
            let p = one(s, 0)?;
            Ok(Val::Int(p.into(), p.into()))
        }
    }
}

fn module_option(
    m: &str,
    o: &Opt<'_>,
    proto: Option<u8>,
    v6: bool,
) -> Result<Option<Cond>, String> {
    let arg = |n: usize| {
        o.args
            .get(n)
            .map(|a| a.as_ref())
            .ok_or_else(|| format!("{} needs a value", o.name))
    };
    let cond = |key: Key, vals: Vec<Val>| {
        Ok(Some(Cond {
            key,
            neg: o.neg,
            rhs: Rhs::Vals(vals),
        }))
    };
    let mod_proto = match m {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => proto,
    };
    match (m, o.name.as_ref()) {
        ("tcp" | "udp" | "sctp", "--dport" | "--destination-port") => cond(
            Key::Port {
                dir: Dir::Dst,
                proto: mod_proto,
            },
            vec![port_range(arg(0)?)?],
        ),
        ("tcp" | "udp" | "sctp", "--sport" | "--source-port") => cond(
            Key::Port {
                dir: Dir::Src,
                proto: mod_proto,
            },
            vec![port_range(arg(0)?)?],
        ),
        ("tcp", "--syn") => cond(Key::TcpSyn, vec![Val::Str("syn".into())]),
        ("tcp", "--tcp-flags") => {
            let flags = |s: &str| -> Vec<String> {
                match s.to_ascii_uppercase().as_str() {
                    "NONE" => Vec::new(),
                    "ALL" => ["FIN", "SYN", "RST", "PSH", "ACK", "URG"]
                        .map(String::from)
                        .to_vec(),
                    s => s.split(',').map(String::from).collect(),
                }
            };
            let (mask, cmp) = (flags(arg(0)?), flags(arg(1)?));
            // The first packet of a connection carries SYN alone.
            let seen: &[&str] = if mask.iter().any(|f| f == "SYN") {
                &["SYN"]
            } else {
                &[]
            };
            let holds = cmp.len() == seen.len() && cmp.iter().all(|f| seen.contains(&f.as_str()));
            cond(
                Key::TcpSyn,
                vec![Val::Str(if holds { "syn" } else { "other" }.into())],
            )
        }
        ("multiport", "--dports" | "--destination-ports") => {
            let vals = arg(0)?
                .split(',')
                .map(port_range)
                .collect::<Result<Vec<_>, _>>()?;
            cond(
                Key::Port {
                    dir: Dir::Dst,
                    proto: mod_proto,
                },
                vals,
            )
        }
        ("multiport", "--sports" | "--source-ports") => {
            let vals = arg(0)?
                .split(',')
                .map(port_range)
                .collect::<Result<Vec<_>, _>>()?;
            cond(
                Key::Port {
                    dir: Dir::Src,
                    proto: mod_proto,
                },
                vals,
            )
        }
        ("multiport", "--ports") => {
            let text = format!(
                "-m multiport {}--ports {}",
                if o.neg { "! " } else { "" },
                arg(0)?
            );
            Ok(Some(Cond {
                key: Key::Unknown(text),
                neg: false,
                rhs: Rhs::Vals(Vec::new()),
            }))
        }
        ("conntrack", "--ctstate") | ("state", "--state") => cond(Key::CtState, words(arg(0)?)),
        ("conntrack", "--ctstatus") => cond(Key::CtStatus, words(arg(0)?)),
        ("conntrack", "--ctdir") => cond(
            Key::CtDirection,
            vec![Val::Str(arg(0)?.to_ascii_lowercase())],
        ),
        ("comment", "--comment") => Ok(None),
        ("addrtype", "--dst-type") => cond(
            Key::AddrType { dir: Dir::Dst },
            arg(0)?
                .split(',')
                .map(|s| Val::Str(s.to_string()))
                .collect(),
        ),
        ("addrtype", "--src-type") => cond(
            Key::AddrType { dir: Dir::Src },
            arg(0)?
                .split(',')
                .map(|s| Val::Str(s.to_string()))
                .collect(),
        ),
        ("addrtype", "--limit-iface-in" | "--limit-iface-out") => Ok(None),
        ("iprange", "--src-range" | "--dst-range") => {
            let dir = if o.name == "--src-range" {
                Dir::Src
            } else {
                Dir::Dst
            };
            let (a, b) = arg(0)?.split_once('-').ok_or("iprange needs a-b")?;
            let (a, b) = (addr(a, v6)?, addr(b, v6)?);
            cond(
                Key::Addr { dir, v6: Some(v6) },
                vec![Val::Addr(AddrRange {
                    v6,
                    lo: a.lo,
                    hi: b.hi,
                })],
            )
        }
        ("pkttype", "--pkt-type") => {
            let t = match arg(0)? {
                "unicast" => "host",
                other => other,
            };
            cond(Key::PktType, vec![Val::Str(t.to_string())])
        }
        // An option of a known module that kports does not model: its words are the condition.
        _ => {
            let mut text = format!("-m {m} ");
            if o.neg {
                text.push_str("! ");
            }
            text.push_str(&o.name);
            for a in &o.args {
                text.push(' ');
                text.push_str(a);
            }
            Ok(Some(Cond {
                key: Key::Unknown(text),
                neg: false,
                rhs: Rhs::Vals(Vec::new()),
            }))
        }
    }
}

fn target_action(target: &str, goto: bool, opts: &[&Opt<'_>], table: &Table) -> Action {
    let opt = |name: &str| {
        opts.iter()
            .find(|o| o.name == name)
            .and_then(|o| o.args.first())
            .map(|a| a.as_ref())
    };
    match target {
        "ACCEPT" => Action::Accept,
        "DROP" => Action::Drop,
        "RETURN" => Action::Return,
        "REJECT" => Action::Reject(Some(reject_with(
            opt("--reject-with").unwrap_or("icmp-port-unreachable"),
        ))),
        "QUEUE" | "NFQUEUE" => Action::Unknown(format!(
            "{target} (the packet goes to a user-space program)"
        )),
        "NOTRACK" => Action::Unknown(
            "NOTRACK (the connection is not tracked, later state matches change)".into(),
        ),
        "CT" if opts.iter().any(|o| o.name == "--notrack") => {
            Action::Unknown("CT --notrack (later state matches change)".into())
        }
        "TPROXY" | "DNAT" | "REDIRECT" | "SNAT" | "MASQUERADE" | "NETMAP" => {
            Action::Unknown(format!("{target} (the packet is redirected)"))
        }
        "LOG" | "NFLOG" | "ULOG" | "MARK" | "CONNMARK" | "TRACE" | "CHECKSUM" | "TCPMSS"
        | "CLASSIFY" | "DSCP" | "TOS" | "TTL" | "HL" | "SET" | "AUDIT" | "SECMARK"
        | "CONNSECMARK" | "IDLETIMER" | "CT" | "TEE" | "NFACCT" | "RATEEST" | "SYNPROXY" => {
            Action::Continue
        }
        chain if table.chain_id(chain).is_some() => {
            if goto {
                Action::Goto(chain.to_string())
            } else {
                Action::Jump(chain.to_string())
            }
        }
        other => Action::Unknown(format!("target {other}")),
    }
}

/// `icmp-port-unreachable` -> `icmp port-unreachable`, `tcp-reset` -> `tcp reset`.
fn reject_with(w: &str) -> String {
    match w {
        "tcp-reset" => "tcp reset".into(),
        w => match w
            .strip_prefix("icmp6-")
            .or_else(|| w.strip_prefix("icmpv6-"))
        {
            Some(rest) => format!("icmpv6 {rest}"),
            None => match w.strip_prefix("icmp-") {
                Some(rest) => format!("icmp {rest}"),
                None => w.to_string(),
            },
        },
    }
}

/// `NEW,ESTABLISHED` -> the lower-case words, as nft spells conntrack states.
fn words(list: &str) -> Vec<Val> {
    list.split(',')
        .map(|s| Val::Str(s.to_ascii_lowercase()))
        .collect()
}
