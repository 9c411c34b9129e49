//! Rules as text: conditions, values and actions written the way nft prints them, for rule
//! texts kports writes itself and for the conditions that "depends on ..." names.

use std::fmt::{self, Write as _};

use crate::model::*;

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::L4Proto => f.write_str("meta l4proto"),
            Key::Port { dir, proto } => {
                let h = proto.map_or_else(|| "th".to_string(), proto_name);
                write!(
                    f,
                    "{h} {}",
                    if *dir == Dir::Src { "sport" } else { "dport" }
                )
            }
            Key::Addr { dir, v6 } => {
                let h = match v6 {
                    Some(true) => "ip6",
                    Some(false) => "ip",
                    None => "address",
                };
                write!(
                    f,
                    "{h} {}",
                    if *dir == Dir::Src { "saddr" } else { "daddr" }
                )
            }
            Key::Iifname => f.write_str("iifname"),
            Key::Oifname => f.write_str("oifname"),
            Key::NfProto => f.write_str("meta nfproto"),
            Key::CtState => f.write_str("ct state"),
            Key::CtStatus => f.write_str("ct status"),
            Key::CtDirection => f.write_str("ct direction"),
            Key::PktType => f.write_str("meta pkttype"),
            Key::TcpSyn => f.write_str("tcp flags syn"),
            Key::AddrType { dir } => write!(
                f,
                "addrtype {}",
                if *dir == Dir::Src { "src" } else { "dst" }
            ),
            Key::Concat(ks) => {
                for (i, k) in ks.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" . ")?;
                    }
                    write!(f, "{k}")?;
                }
                Ok(())
            }
            Key::Unknown(w) => f.write_str(w),
        }
    }
}

pub fn show_val(v: &Val) -> String {
    match v {
        Val::Int(a, b) if a == b => a.to_string(),
        Val::Int(a, b) => format!("{a}-{b}"),
        Val::Addr(a) => a.to_string(),
        Val::Str(s) => format!("\"{s}\""),
        Val::Concat(vs) => vs.iter().map(show_val).collect::<Vec<_>>().join(" . "),
    }
}

/// A condition as text, for "depends on ...".
pub fn show_cond(c: &Cond) -> String {
    if let Key::Unknown(w) = &c.key {
        return if c.neg { format!("not {w}") } else { w.clone() };
    }
    let mut s = c.key.to_string();
    s.push(' ');
    if c.neg {
        s.push_str("!= ");
    }
    match &c.rhs {
        Rhs::Set(n) => {
            let _ = write!(s, "@{n}");
        }
        Rhs::Vals(vs) if vs.len() == 1 => s.push_str(&show_val(&vs[0])),
        Rhs::Vals(vs) => {
            s.push_str("{ ");
            s.push_str(&vs.iter().map(show_val).collect::<Vec<_>>().join(", "));
            s.push_str(" }");
        }
    }
    s
}

/// A rule written from its parsed form, when `nft -a list ruleset` was not available.
pub fn render(conds: &[Cond], action: &Action) -> String {
    let mut parts: Vec<String> = conds.iter().map(show_cond).collect();
    parts.push(action_text(action));
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

pub fn action_text(a: &Action) -> String {
    match a {
        Action::Continue => String::new(),
        Action::Accept => "accept".into(),
        Action::Drop => "drop".into(),
        Action::Reject(None) => "reject".into(),
        Action::Reject(Some(w)) => format!("reject with {w}"),
        Action::Jump(c) => format!("jump {c}"),
        Action::Goto(c) => format!("goto {c}"),
        Action::Return => "return".into(),
        Action::Vmap {
            key,
            map: VmapRef::Named(n),
        } => format!("{key} vmap @{n}"),
        Action::Vmap { key, .. } => format!("{key} vmap {{ ... }}"),
        Action::Unknown(w) => w.clone(),
    }
}
