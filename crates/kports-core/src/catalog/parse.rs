//! Reading catalog files: the TOML of the built-in catalog and of a user's `--catalog` file,
//! every value kept with its span so that a bad one is refused with its line, column and
//! reason; and how a user's entry changes a built-in one.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use super::*;

/// A port as written in a file, before it is checked: numbers are kept wide so that `70000` and
/// `0` are reported with their line rather than as a type error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RawPorts {
    first: i64,
    last: i64,
}

impl<'de> Deserialize<'de> for RawPorts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawPorts, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPorts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number such as 6443 or a range such as \"30000-32767\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawPorts, E> {
                Ok(RawPorts { first: n, last: n })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawPorts, E> {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                Ok(RawPorts { first: n, last: n })
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawPorts, E> {
                let num = |t: &str| {
                    t.trim().parse::<i64>().map_err(|_| {
                        E::custom(format!(
                            "`{s}` is not a port number or a range such as \"30000-32767\""
                        ))
                    })
                };
                match s.split_once('-') {
                    Some((a, b)) => Ok(RawPorts {
                        first: num(a)?,
                        last: num(b)?,
                    }),
                    None => num(s).map(|n| RawPorts { first: n, last: n }),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One `[[port]]` as written: everything optional except the key, everything with its span.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry {
    pub(super) component: Spanned<String>,
    pub(super) protocol: Spanned<Protocol>,
    pub(super) port: Spanned<RawPorts>,
    pub(super) replaces: Option<Spanned<RawPorts>>,
    pub(super) enabled: Option<Spanned<bool>>,
    pub(super) direction: Option<Direction>,
    pub(super) purpose: Option<String>,
    pub(super) reached_by: Option<Vec<Peer>>,
    pub(super) bind: Option<BindScope>,
    pub(super) bind_detail: Option<String>,
    pub(super) roles: Option<Spanned<Vec<Role>>>,
    pub(super) cni: Option<Spanned<String>>,
    pub(super) addon: Option<bool>,
    pub(super) network: Option<Network>,
    pub(super) expect: Option<Spanned<Expect>>,
    pub(super) missing: Option<Severity>,
    pub(super) too_wide: Option<Severity>,
    pub(super) finding: Option<Spanned<String>>,
    pub(super) severity: Option<Severity>,
    pub(super) held_by: Option<Spanned<Vec<String>>>,
    pub(super) port_flag: Option<Spanned<String>>,
    pub(super) address_flag: Option<Spanned<String>>,
    pub(super) endpoint_flag: Option<Spanned<String>>,
    pub(super) urls_flag: Option<Spanned<String>>,
    pub(super) range_flag: Option<Spanned<String>>,
    pub(super) flags_of: Option<String>,
    pub(super) tunnel_devices: Option<Vec<String>>,
    pub(super) backend_devices: Option<Vec<String>>,
    pub(super) backend_processes: Option<Vec<String>>,
    pub(super) backend: Option<String>,
    pub(super) versions: Option<Spanned<String>>,
    pub(super) clients: Option<String>,
    pub(super) notes: Option<String>,
    pub(super) disagreement: Option<String>,
    pub(super) source: Option<Spanned<String>>,
    /// Span of the `[[port]]` header.
    #[serde(skip)]
    pub(super) span: Range<usize>,
    /// 1-based line of the span's start.
    #[serde(skip)]
    pub(super) line: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    port: Vec<Spanned<RawEntry>>,
}

/// Parses a catalog file into raw entries, refusing TOML errors and duplicate keys.
pub(super) fn parse_file(text: &str, file: &str) -> Result<Vec<RawEntry>, CatalogError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        err_at(text, file, span, e.message().trim_end().to_string())
    })?;
    if raw.port.is_empty() {
        return Err(err_at(text, file, 0..0, "no [[port]] entries".to_string()));
    }
    let mut seen: HashMap<(String, Protocol, PortRange), usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.port.len());
    let mut lines = Lines::new(text);
    for sp in raw.port {
        let span = sp.span();
        let mut r = sp.into_inner();
        r.line = lines.line_of(span.start);
        r.span = span;
        let protocol = *r.protocol.get_ref();
        let port = ports(text, file, &r.port, protocol)?;
        if r.component.get_ref().trim().is_empty() {
            return Err(err_at(
                text,
                file,
                r.component.span(),
                "`component` is empty".to_string(),
            ));
        }
        let k = (r.component.get_ref().clone(), protocol, port);
        if let Some(first) = seen.get(&k) {
            let key = Key {
                component: k.0,
                protocol,
                port,
            };
            return Err(err_at(
                text,
                file,
                r.span.clone(),
                format!("duplicate entry {key}: already defined at line {first}"),
            ));
        }
        seen.insert(k, r.line);
        out.push(r);
    }
    Ok(out)
}

/// Checks a written port or range: 1-65535 (1-255 for an IP protocol), not backwards.
pub(super) fn ports(
    text: &str,
    file: &str,
    p: &Spanned<RawPorts>,
    protocol: Protocol,
) -> Result<PortRange, CatalogError> {
    let RawPorts { first, last } = *p.get_ref();
    let (what, max) = if protocol == Protocol::Ip {
        ("IP protocol number", 255)
    } else {
        ("port", 65535)
    };
    for n in [first, last] {
        if n == 0 {
            return Err(err_at(
                text,
                file,
                p.span(),
                format!("{what} 0 is not valid: use 1-{max}"),
            ));
        }
        if !(1..=max).contains(&n) {
            return Err(err_at(
                text,
                file,
                p.span(),
                format!("{what} {n} is out of range 1-{max}"),
            ));
        }
    }
    if first > last {
        return Err(err_at(
            text,
            file,
            p.span(),
            format!("range {first}-{last} is backwards: write {last}-{first}"),
        ));
    }
    // Both are within 1..=65535 here.
    let to_u16 = |n: i64| u16::try_from(n).unwrap_or(u16::MAX);
    Ok(PortRange {
        first: to_u16(first),
        last: to_u16(last),
    })
}

/// A complete entry from a raw one: every required field must be there.
pub(super) fn new_entry(
    text: &str,
    file: &str,
    r: &RawEntry,
    builtin: bool,
) -> Result<Entry, CatalogError> {
    let mut missing: Vec<&str> = Vec::new();
    if r.purpose.is_none() {
        missing.push("purpose");
    }
    if r.roles.is_none() {
        missing.push("roles");
    }
    if r.reached_by.is_none() {
        missing.push("reached_by");
    }
    if r.bind.is_none() {
        missing.push("bind");
    }
    if builtin && r.source.is_none() {
        missing.push("source");
    }
    if !missing.is_empty() {
        let plural = if missing.len() == 1 {
            "field"
        } else {
            "fields"
        };
        return Err(err_at(
            text,
            file,
            r.span.clone(),
            format!(
                "new entry {} {}/{} lacks the {plural} {}",
                r.component.get_ref(),
                r.protocol.get_ref().as_str(),
                fmt_raw(r.port.get_ref()),
                missing.join(", ")
            ),
        ));
    }
    let protocol = *r.protocol.get_ref();
    let direction = r.direction.unwrap_or(Direction::In);
    let line = r.line;
    let mut e = Entry {
        component: r.component.get_ref().clone(),
        protocol,
        port: ports(text, file, &r.port, protocol)?,
        direction,
        purpose: String::new(),
        reached_by: Vec::new(),
        bind: BindScope::Any,
        bind_detail: None,
        roles: Vec::new(),
        cni: None,
        addon: false,
        network: Network::Host,
        expect: if protocol == Protocol::Ip || direction == Direction::Out {
            Expect::None
        } else {
            Expect::Listening
        },
        missing: Severity::Error,
        too_wide: Severity::Warning,
        finding: None,
        severity: Severity::Warning,
        held_by: vec![r.component.get_ref().clone()],
        flags: Flags::default(),
        tunnel_devices: Vec::new(),
        backend_devices: Vec::new(),
        backend_processes: Vec::new(),
        backend: None,
        versions: Versions::default(),
        clients: None,
        notes: None,
        disagreement: None,
        source: format!("{file}:{line}"),
        origin: Origin {
            file: file.to_string(),
            line,
        },
    };
    apply(text, file, r, &mut e)?;
    validate(text, file, r, &e)?;
    Ok(e)
}

pub(super) fn fmt_raw(p: &RawPorts) -> String {
    if p.first == p.last {
        p.first.to_string()
    } else {
        format!("{}-{}", p.first, p.last)
    }
}

/// Sets every field `r` gives on `e`.
pub(super) fn apply(
    text: &str,
    file: &str,
    r: &RawEntry,
    e: &mut Entry,
) -> Result<(), CatalogError> {
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = &r.$f { e.$f = v.clone(); } )* };
    }
    set!(
        direction,
        purpose,
        reached_by,
        bind,
        addon,
        network,
        missing,
        too_wide,
        severity,
        tunnel_devices,
        backend_devices,
        backend_processes
    );
    macro_rules! set_opt {
        ($($f:ident),*) => { $( if let Some(v) = &r.$f { e.$f = Some(v.clone()); } )* };
    }
    set_opt!(bind_detail, clients, notes, disagreement, backend);
    if let Some(v) = &r.roles {
        e.roles = v.get_ref().clone();
    }
    if let Some(v) = &r.expect {
        e.expect = *v.get_ref();
    }
    if let Some(v) = &r.held_by {
        e.held_by = v.get_ref().clone();
    }
    if let Some(v) = &r.cni {
        let name = v.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(err_at(
                text,
                file,
                v.span(),
                format!("cni `{name}` is not a lowercase name such as \"calico\""),
            ));
        }
        e.cni = Some(name.clone());
    }
    if let Some(v) = &r.source {
        if v.get_ref().trim().is_empty() {
            return Err(err_at(
                text,
                file,
                v.span(),
                "`source` is empty: name the URL or file the facts come from".to_string(),
            ));
        }
        e.source = v.get_ref().clone();
    }
    if let Some(v) = &r.versions {
        e.versions = Versions::parse(v.get_ref()).ok_or_else(|| {
            err_at(
                text,
                file,
                v.span(),
                format!(
                    "versions `{}` is not one of all, 1.13+, -1.22, 1.13-1.22, 1.30",
                    v.get_ref()
                ),
            )
        })?;
    }
    if let Some(v) = &r.finding {
        let id = FindingId::ABSENT
            .into_iter()
            .find(|f| f.as_str() == v.get_ref().as_str())
            .ok_or_else(|| {
                err_at(
                    text,
                    file,
                    v.span(),
                    format!(
                        "unknown finding `{}`: expected one of {}",
                        v.get_ref(),
                        absent_findings()
                    ),
                )
            })?;
        e.finding = Some(id);
    }
    for (raw, slot) in [
        (&r.port_flag, &mut e.flags.port),
        (&r.address_flag, &mut e.flags.address),
        (&r.endpoint_flag, &mut e.flags.endpoint),
        (&r.urls_flag, &mut e.flags.urls),
        (&r.range_flag, &mut e.flags.range),
    ] {
        if let Some(v) = raw {
            let f = v.get_ref();
            if !f.starts_with('-') || f.trim_start_matches('-').is_empty() || f.contains(['=', ' '])
            {
                return Err(err_at(
                    text,
                    file,
                    v.span(),
                    format!("`{f}` is not a flag name such as \"--secure-port\""),
                ));
            }
            *slot = Some(f.clone());
        }
    }
    if let Some(v) = &r.flags_of {
        e.flags.of = Some(v.clone());
    }
    Ok(())
}

/// Cross-field checks on a finished entry; errors point at the field or at the `[[port]]` line.
pub(super) fn validate(
    text: &str,
    file: &str,
    r: &RawEntry,
    e: &Entry,
) -> Result<(), CatalogError> {
    let here = |field: Option<Range<usize>>| field.unwrap_or_else(|| r.span.clone());
    let expect_span = here(r.expect.as_ref().map(Spanned::span));
    if e.roles.is_empty() {
        return Err(err_at(
            text,
            file,
            here(r.roles.as_ref().map(Spanned::span)),
            "`roles` is empty: name at least one of control-plane, worker, etcd".into(),
        ));
    }
    if e.held_by.is_empty() {
        return Err(err_at(
            text,
            file,
            here(r.held_by.as_ref().map(Spanned::span)),
            "`held_by` is empty".into(),
        ));
    }
    if e.purpose.trim().is_empty() {
        return Err(err_at(
            text,
            file,
            r.span.clone(),
            "`purpose` is empty".into(),
        ));
    }
    if e.protocol == Protocol::Ip && e.expect != Expect::None {
        return Err(err_at(
            text,
            file,
            expect_span,
            format!(
                "an IP protocol has no socket to check: use expect = \"none\", not \"{}\"",
                e.expect.as_str()
            ),
        ));
    }
    if e.direction == Direction::Out && e.expect != Expect::None {
        return Err(err_at(
            text,
            file,
            expect_span,
            format!(
                "an outbound port is not listened on here: use expect = \"none\", not \"{}\"",
                e.expect.as_str()
            ),
        ));
    }
    if !e.port.is_single() && e.expect == Expect::Listening {
        return Err(err_at(
            text,
            file,
            expect_span,
            "a range cannot be required to listen: use expect = \"optional\" or \"reserved\""
                .into(),
        ));
    }
    if e.expect == Expect::Absent && e.finding.is_none() {
        return Err(err_at(
            text,
            file,
            expect_span,
            format!(
                "expect = \"absent\" needs `finding`, one of {}",
                absent_findings()
            ),
        ));
    }
    if e.finding.is_some() && e.expect != Expect::Absent {
        return Err(err_at(
            text,
            file,
            here(r.finding.as_ref().map(Spanned::span)),
            "`finding` is only for expect = \"absent\"".into(),
        ));
    }
    if e.flags.range.is_some() && e.port.is_single() {
        return Err(err_at(
            text,
            file,
            here(r.range_flag.as_ref().map(Spanned::span)),
            "`range_flag` is for an entry whose port is a range".into(),
        ));
    }
    Ok(())
}

pub(super) fn err_at(text: &str, file: &str, span: Range<usize>, message: String) -> CatalogError {
    let (line, column) = line_col(text, span.start);
    CatalogError {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

/// Lines of byte offsets met in increasing order, counted from the last one: linear in the
/// text over a whole file, where counting from the start for every entry was quadratic.
struct Lines<'a> {
    text: &'a str,
    at: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        Lines {
            text,
            at: 0,
            line: 1,
        }
    }

    /// 1-based line of byte offset `at`.
    fn line_of(&mut self, at: usize) -> usize {
        let at = at.min(self.text.len());
        if at < self.at {
            // Out of order (not seen in practice): count again from the start.
            self.at = 0;
            self.line = 1;
        }
        let between = &self.text.as_bytes()[self.at..at];
        self.line += between.iter().filter(|&&b| b == b'\n').count();
        self.at = at;
        self.line
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
pub(super) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
