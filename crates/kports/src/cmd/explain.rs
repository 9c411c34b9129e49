//! `kports explain PORT|COMPONENT`: the catalog's facts about a port, and what this node has
//! there right now.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;
use kports_core::catalog::Roles;
use kports_core::explain::{self, EtcdContrast, Explanation, PeerCount, Subject};
use kports_node::{NodeIo, NodeReport, Options};

use crate::cli::ExplainArgs;
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out, endpoint, wrap};

pub fn run(args: &ExplainArgs, io: &dyn NodeIo, out: &mut Out<impl Write>) -> Result<Outcome> {
    let node = NodeReport::build(
        io,
        &Options {
            census: args.source.into(),
            firewall: false,
            prerequisites: false,
            ..args.node.options()
        },
    )?;
    let (items, warnings) = node.explain(&args.query);
    if items.is_empty() {
        if let Subject::Name(n) = &args.query {
            anyhow::bail!(
                "the catalog has no component or CNI `{n}`; it knows {}",
                explain::known_names(&node.catalog).join(", ")
            );
        }
    }
    if args.output == Format::Json {
        out.json(&Document::new("explain", &node.hostname, &items, &warnings))?;
        return Ok(Outcome::done(warnings));
    }
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.line("")?;
        }
        print(out, x, node.roles.value)?;
    }
    if let Some(c) = node.etcd_contrast(&args.query) {
        out.line("")?;
        contrast(out, &c)?;
    }
    Ok(Outcome::done(warnings))
}

/// etcd's two ports side by side, with this node's counts.
fn contrast(out: &mut Out<impl Write>, c: &EtcdContrast) -> std::io::Result<()> {
    let n = |conns: usize, addrs: usize, word: &str| {
        format!(
            "{conns} established {word} {addrs} address{}",
            if addrs == 1 { "" } else { "es" }
        )
    };
    out.heading("etcd's two ports on this node now")?;
    out.line(&format!(
        "  tcp/{:<5}  clients: every API server keeps a pool of long-lived connections, so many: {}",
        c.client_port,
        n(c.client_connections, c.client_peers, "from")
    ))?;
    out.line(&format!(
        "  tcp/{:<5}  the other etcd members only: a few connections per member, none on a single member: {}",
        c.peer_port,
        n(c.peer_connections, c.peer_peers, "with")
    ))
}

fn print(out: &mut Out<impl Write>, x: &Explanation, here_roles: Roles) -> std::io::Result<()> {
    let label = format!("{}/{}", x.protocol.as_str(), x.port);
    let mut rows: Vec<(&str, String)> = Vec::new();
    match &x.entry {
        Some(e) => {
            out.heading(&format!("{label}  {}: {}", e.component, e.purpose))?;
            let peers: Vec<&str> = e.reached_by.iter().map(|p| p.as_str()).collect();
            rows.push(("direction", e.direction.as_str().to_string()));
            rows.push(("reached by", peers.join(", ")));
            let mut bind = e.bind.describe().to_string();
            if let Some(d) = &e.bind_detail {
                let _ = write!(bind, ": {d}");
            }
            rows.push(("default bind", bind));
            let roles: Vec<&str> = e.roles.iter().map(|r| r.as_str()).collect();
            let mut belongs = roles.join(", ");
            if let Some(c) = &e.cni {
                let _ = write!(belongs, " with CNI {c}");
            }
            if e.addon {
                belongs.push_str(" (add-on)");
            }
            let here = match (here_roles.is_empty(), x.needed_here, e.expect) {
                (true, _, _) => " (this node's role is unknown)",
                (false, true, kports_core::catalog::Expect::Absent) => {
                    " (must be closed on this node)"
                }
                (false, true, _) => " (needed on this node)",
                (false, false, _) => " (not needed on this node)",
            };
            belongs.push_str(here);
            rows.push(("roles", belongs));
            rows.push(("expected", e.expect.as_str().to_string()));
            rows.push(("versions", e.versions.to_string()));
            if let Some(c) = &e.clients {
                rows.push(("who connects", c.clone()));
            }
            if let Some(n) = &e.notes {
                rows.push(("notes", n.clone()));
            }
            if let Some(d) = &e.disagreement {
                rows.push(("sources disagree", d.clone()));
            }
            rows.push(("source", e.source.clone()));
        }
        None => {
            out.heading(&format!("{label}  not in the catalog"))?;
            rows.push((
                "catalog",
                "no entry: nothing a Kubernetes node's role or CNI is known to use".to_string(),
            ));
        }
    }
    for s in &x.configured_by {
        rows.push(("configured by", format!("{} ({})", s.value, s.source)));
    }
    rows.push(("listening now", listeners(x)));
    if x.protocol == kports_core::catalog::Protocol::Tcp && x.port.is_single() {
        rows.push(("established in", peers(&x.now.inbound, "from")));
        rows.push(("established out", peers(&x.now.outbound, "to")));
    }
    if x.now.findings.is_empty() {
        rows.push(("check", "no findings".to_string()));
    }
    for f in &x.now.findings {
        rows.push((
            "check",
            format!("{} {}: {}", f.severity.as_str(), f.id, f.message),
        ));
        rows.push(("fix", f.fix.clone()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let columns = out.width().unwrap_or(crate::output::PIPE_WIDTH);
    for (k, v) in &rows {
        let mut first = true;
        for line in wrap(v, columns.saturating_sub(width + 4)) {
            let key = if first { *k } else { "" };
            out.line(&format!("  {key:<width$}  {line}"))?;
            first = false;
        }
    }
    Ok(())
}

fn listeners(x: &Explanation) -> String {
    if x.now.listeners.is_empty() {
        return "nothing".to_string();
    }
    let mut b = String::new();
    for (i, l) in x.now.listeners.iter().enumerate() {
        if i > 0 {
            b.push_str("; ");
        }
        endpoint(&mut b, &l.local_address, l.local_port);
        let who: Vec<String> = l
            .processes
            .iter()
            .map(|p| format!("{} (pid {})", p.name, p.pid))
            .collect();
        let _ = match (who.is_empty(), l.component) {
            (false, Some(c)) if l.processes.iter().all(|p| p.name == c) => {
                write!(b, " {}", who.join(", "))
            }
            (false, Some(c)) => write!(b, " {} [{c}]", who.join(", ")),
            (false, None) => write!(b, " {}", who.join(", ")),
            (true, Some(c)) => write!(b, " {c}"),
            (true, None) => write!(b, " {}", owner_name(l.owner)),
        };
    }
    b
}

fn owner_name(o: kports_core::Owner) -> &'static str {
    match o {
        kports_core::Owner::Process => "a process",
        kports_core::Owner::Kernel => "the kernel",
        kports_core::Owner::Unknown => "an unknown owner",
        kports_core::Owner::None => "no owner",
    }
}

fn peers(list: &[PeerCount], dir: &str) -> String {
    let total: usize = list.iter().map(|p| p.connections).sum();
    if total == 0 {
        return "none".to_string();
    }
    let mut b = format!(
        "{total} connection{} {dir} {} peer{}:",
        if total == 1 { "" } else { "s" },
        list.len(),
        if list.len() == 1 { "" } else { "s" }
    );
    for (i, p) in list.iter().take(8).enumerate() {
        let _ = write!(
            b,
            "{} {} x{}",
            if i > 0 { "," } else { "" },
            p.address,
            p.connections
        );
        if let (Some(n), Some(pid)) = (&p.process, p.pid) {
            let _ = write!(b, " ({n} pid {pid})");
        }
    }
    if list.len() > 8 {
        let _ = write!(b, ", ... {} more", list.len() - 8);
    }
    b
}
