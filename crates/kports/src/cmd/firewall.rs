//! `kports firewall check` and `kports firewall plan`: read the node's rulesets, judge the
//! required ports, and write the rules that open exactly what each source needs.

use anyhow::{Result, bail};
use kports_core::Warning;
use kports_core::catalog::Role;
use kports_firewall::capture::assemble;
use kports_firewall::check::{self, CheckRow, Source, Sources};
use kports_firewall::detect::{self, Managers};
use kports_firewall::findings;
use kports_firewall::model::{AddrRange, Unread, parse_cidr};
use kports_firewall::plan::{self, PlanBackend, PlanRequest};
use kports_firewall::required::{self, Live, RequiredPort};
use kports_firewall::{Evaluator, Judgement};
use kports_linux::runner::DEFAULT_TIMEOUT;
use serde::Serialize;

use crate::cli::{
    FirewallCheckArgs, FirewallCommand, FirewallCommon, FirewallPlanArgs, PlanBackendArg, SourceArg,
};
use crate::cmd::check::{Node, census, load_catalog, role_and_cni};
use crate::output::{Document, Format, Out};

pub fn run(c: &FirewallCommand, out: &mut Out) -> Result<Vec<Warning>> {
    match c {
        FirewallCommand::Check(a) => check(a, out),
        FirewallCommand::Plan(a) => plan(a, out),
    }
}

/// The ruleset of this network namespace, what manages it, and warnings.
pub struct Read {
    pub rs: kports_firewall::Ruleset,
    pub managers: Managers,
    pub warnings: Vec<Warning>,
}

/// Reads this network namespace's rulesets through the runner (`nft`, every `*-save`).
pub fn read() -> Read {
    let capture = kports_linux::firewall::capture(DEFAULT_TIMEOUT);
    let (rs, notes) = assemble(&capture);
    let managers = detect::detect(&rs, &capture);
    let mut warnings: Vec<Warning> = notes
        .into_iter()
        .map(|m| Warning::new("firewall-parse", m))
        .collect();
    for u in &rs.unread {
        warnings.push(Warning::new(
            "firewall-unread",
            format!(
                "{} not readable: {}; verdicts that need it are unknown",
                u.source, u.reason
            ),
        ));
    }
    Read {
        rs,
        managers,
        warnings,
    }
}

/// `192.0.2.11 (the API server this node connects to), ...`
fn describe(peers: &[(std::net::IpAddr, &str)]) -> String {
    peers
        .iter()
        .map(|(ip, why)| format!("{ip} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ranges(v: &[String]) -> Vec<AddrRange> {
    // clap validated every value already.
    v.iter().filter_map(|s| parse_cidr(s)).collect()
}

/// The required ports of this node, and how its role and CNI were found.
struct Needs {
    role: Role,
    ports: Vec<RequiredPort>,
    notes: Vec<String>,
    /// Control-plane hosts and nodes this node is connected to, from the census.
    peers: findings::Peers,
    /// An address that stands for "any other host" when no source is known.
    anyone: AddrRange,
}

/// The catalog's ports for the node's role and CNI (given, or detected as `kports check`
/// detects them), at the ports the running components' flags and tunnel devices set.
fn required(common: &FirewallCommon, warnings: &mut Vec<Warning>) -> Result<Needs> {
    let catalog = load_catalog(common.catalog.as_deref())?;
    // Without a census the catalog's default ports are judged, and the role must be given.
    let node = census(SourceArg::Auto).unwrap_or_else(|e| Node {
        sockets: Vec::new(),
        interfaces: Vec::new(),
        warnings: vec![Warning::new(
            "census-failed",
            format!(
                "{e:#}: ports are judged at the catalog's defaults, not where flags moved them"
            ),
        )],
    });
    warnings.extend(node.warnings.iter().cloned());
    let (role, cni) = role_and_cni(common.role, common.cni.as_deref(), &catalog, &node)?;
    let Some(r) = role.value else {
        bail!(
            "the node's role is unknown ({}): pass --role",
            role.evidence.join("; ")
        );
    };
    let live = Live {
        sockets: &node.sockets,
        interfaces: &node.interfaces,
    };
    let req = required::from_catalog(&catalog, r, &cni.value, Some(live));
    warnings.extend(req.warnings);
    let mut notes = Vec::new();
    if role.source != "flag" {
        notes.push(format!(
            "role {} (detected: {})",
            r.as_str(),
            role.evidence.join("; ")
        ));
    }
    if cni.source != "flag" {
        let names = if cni.value.is_empty() {
            "none".to_string()
        } else {
            cni.value.join(", ")
        };
        notes.push(format!(
            "CNI {names} (detected: {})",
            cni.evidence.join("; ")
        ));
    }
    notes.extend(req.notes);
    Ok(Needs {
        role: r,
        ports: req.ports,
        notes,
        peers: findings::peers(&catalog, &node.sockets, &node.interfaces),
        anyone: findings::representative(&node.interfaces),
    })
}

#[derive(Debug, Serialize)]
struct CheckReport<'a> {
    role: Role,
    managers: &'a Managers,
    unread: &'a [Unread],
    rows: &'a [CheckRow],
    /// How the role and CNI were found, and required entries that are not judged (IP
    /// protocols, ports a flag turned off).
    notes: &'a [String],
}

fn check(a: &FirewallCheckArgs, out: &mut Out) -> Result<Vec<Warning>> {
    let Read {
        rs,
        managers,
        mut warnings,
    } = read();
    let mut needs = required(&a.common, &mut warnings)?;
    let ports = &needs.ports;
    let source = |r: AddrRange| {
        let route = kports_linux::firewall::route_to(r.first(), DEFAULT_TIMEOUT);
        Source {
            range: r,
            dst: route.as_ref().and_then(|x| x.1),
            iif: a.iif.clone().or(route.map(|x| x.0)),
        }
    };
    // Without --sources and --control-plane, the peers the census shows stand in; without any,
    // one address stands for "any other host", and the output says so.
    let peer_ranges = |v: &[(std::net::IpAddr, &str)]| -> Vec<AddrRange> {
        v.iter().map(|&(ip, _)| AddrRange::single(ip)).collect()
    };
    let mut network = ranges(&a.common.sources);
    if network.is_empty() {
        network = peer_ranges(&needs.peers.nodes);
        if network.is_empty() {
            network.push(needs.anyone);
            needs.notes.push(format!(
                "sources: no --sources and no peer connections seen; judged from {}, standing for any other host",
                needs.anyone
            ));
        } else {
            needs.notes.push(format!(
                "sources: the peers this node is connected to ({}); pass --sources to judge others",
                describe(&needs.peers.nodes)
            ));
        }
    }
    let mut control_plane = ranges(&a.common.control_plane);
    if control_plane.is_empty() && !needs.peers.control_plane.is_empty() {
        control_plane = peer_ranges(&needs.peers.control_plane);
        needs.notes.push(format!(
            "control plane: {} (from this node's connections)",
            describe(&needs.peers.control_plane)
        ));
    } else if control_plane.is_empty() {
        needs.notes.push(
            "control plane: not known; the sources stand in for it (pass --control-plane)".into(),
        );
    }
    let sources = Sources {
        network: network.into_iter().map(source).collect(),
        control_plane: control_plane.into_iter().map(source).collect(),
        load_balancers: ranges(&a.common.load_balancers)
            .into_iter()
            .map(source)
            .collect(),
    };
    let ev = Evaluator::new(&rs);
    let rows = check::check(&ev, ports, &sources);
    let hostname = kports_linux::hostname();
    match a.common.output {
        Format::Json => {
            let report = CheckReport {
                role: needs.role,
                managers: &managers,
                unread: &rs.unread,
                rows: &rows,
                notes: &needs.notes,
            };
            out.json(&Document::new(
                "firewall-check",
                &hostname,
                &report,
                &warnings,
            ))?;
        }
        Format::Table | Format::Wide => {
            managers_lines(out, &managers)?;
            for n in &needs.notes {
                out.line(&format!("note: {n}"))?;
            }
            // One line per stretch of ports with one verdict.
            let lines: Vec<(&CheckRow, usize)> = rows
                .iter()
                .flat_map(|r| (0..r.segments.len()).map(move |i| (r, i)))
                .collect();
            let wide = a.common.output == Format::Wide;
            out.table(
                &[
                    "PORT",
                    "COMPONENT",
                    "FROM",
                    "SOURCE",
                    "WANT",
                    "OK",
                    "VERDICT",
                ],
                lines.len(),
                |i, c, b| {
                    let (r, s) = lines[i];
                    let seg = &r.segments[s];
                    match c {
                        0 => {
                            let p = RequiredPort {
                                lo: seg.lo,
                                hi: seg.hi,
                                ..r.port.clone()
                            };
                            b.push_str(&p.label());
                        }
                        1 => b.push_str(&r.port.component),
                        2 => b.push_str(&r.source_kind),
                        3 => b.push_str(&r.source),
                        4 => b.push_str(if r.expect_open { "open" } else { "closed" }),
                        5 => b.push_str(match seg.judgement.is_open() {
                            Some(o) if o == r.expect_open => "yes",
                            Some(_) => "NO",
                            None => "?",
                        }),
                        _ => b.push_str(&verdict_text(&seg.judgement, wide)),
                    }
                },
            )?;
        }
    }
    Ok(warnings)
}

fn verdict_text(j: &Judgement, wide: bool) -> String {
    let s = j.summary();
    if wide || s.chars().count() <= 140 {
        return s;
    }
    let mut t: String = s.chars().take(137).collect();
    t.push_str("...");
    t
}

fn managers_lines(out: &mut Out, m: &Managers) -> std::io::Result<()> {
    if let Some(f) = &m.firewalld {
        let zones: Vec<String> = f
            .zones
            .iter()
            .map(|z| format!("{} ({})", z.zone, z.matches))
            .collect();
        out.line(&format!(
            "firewalld: {}, backend {}, default zone {}{}",
            if f.active {
                "rules loaded"
            } else {
                "configured, no rules loaded"
            },
            f.backend.as_deref().unwrap_or("?"),
            f.default_zone.as_deref().unwrap_or("?"),
            if zones.is_empty() {
                String::new()
            } else {
                format!(", zones: {}", zones.join(", "))
            }
        ))?;
    }
    if let Some(u) = &m.ufw {
        out.line(&format!(
            "ufw: {}, enabled in ufw.conf: {}, default input policy {} (running INPUT policy {})",
            if u.active {
                "rules loaded"
            } else {
                "no rules loaded"
            },
            u.enabled.map_or("?", |e| if e { "yes" } else { "no" }),
            u.default_input_policy.as_deref().unwrap_or("?"),
            u.input_policy.as_deref().unwrap_or("?")
        ))?;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct PlanReport<'a> {
    managers: &'a Managers,
    #[serde(flatten)]
    plan: &'a plan::Plan,
}

fn plan(a: &FirewallPlanArgs, out: &mut Out) -> Result<Vec<Warning>> {
    if a.common.sources.is_empty() {
        bail!("a plan needs --sources CIDR: the addresses its rules open the ports to");
    }
    let Read {
        rs,
        managers,
        mut warnings,
    } = read();
    let needs = required(&a.common, &mut warnings)?;
    let ports = needs.ports;
    let req = PlanRequest {
        backend: match a.backend {
            PlanBackendArg::Nft => PlanBackend::Nft,
            PlanBackendArg::Iptables => PlanBackend::Iptables,
            PlanBackendArg::Firewalld => PlanBackend::Firewalld,
            PlanBackendArg::Ufw => PlanBackend::Ufw,
        },
        ports,
        sources: ranges(&a.common.sources),
        control_plane: ranges(&a.common.control_plane),
        load_balancers: ranges(&a.common.load_balancers),
        zone: a.zone.clone(),
    };
    let default_zone = managers.firewalld.as_ref().and_then(|f| {
        f.zones
            .iter()
            .find(|z| z.matches == "default")
            .map(|z| z.zone.clone())
            .or_else(|| f.default_zone.clone())
    });
    let mut p = plan::plan(&rs, &req, default_zone.as_deref());
    p.notes.extend(needs.notes);
    if a.script {
        out.lines(
            &format!(
                "#!/bin/sh\n# kports firewall plan ({:?}): safe to run twice\nset -e",
                req.backend
            )
            .to_lowercase(),
        )?;
        for l in p.script.lines() {
            out.line(l)?;
        }
        return Ok(warnings);
    }
    let hostname = kports_linux::hostname();
    match a.common.output {
        Format::Json => out.json(&Document::new(
            "firewall-plan",
            &hostname,
            &PlanReport {
                managers: &managers,
                plan: &p,
            },
            &warnings,
        ))?,
        Format::Table | Format::Wide => {
            managers_lines(out, &managers)?;
            out.heading("What the plan changes (judged on the current ruleset):")?;
            let wide = a.common.output == Format::Wide;
            out.table(
                &["PORT", "COMPONENT", "SOURCE", "WANT", "CHANGE", "NOW"],
                p.intents.len(),
                |i, c, b| {
                    let x = &p.intents[i];
                    match c {
                        0 => b.push_str(&x.port),
                        1 => b.push_str(&x.component),
                        2 => b.push_str(&x.source),
                        3 => b.push_str(if x.open { "open" } else { "closed" }),
                        4 => b.push_str(match (x.already, x.open) {
                            (Some(true), _) => "none (already so)",
                            (_, true) => "opens",
                            (_, false) => "closes",
                        }),
                        _ => b.push_str(&verdict_text(&x.now, wide)),
                    }
                },
            )?;
            if !p.chain_diff.is_empty() {
                out.line("")?;
                out.heading("kports's own chain (+ added, = already there, - removed):")?;
                for d in &p.chain_diff {
                    out.line(&format!("{} {}", d.op, d.text))?;
                }
            }
            if !p.conflicts.is_empty() {
                out.line("")?;
                out.heading("Still blocked after applying: a drop in another base chain is final, kports's accept cannot override it.")?;
                for c in &p.conflicts {
                    out.line(&format!(
                        "{} from {}: blocked by {}",
                        c.port, c.source, c.blocked_by
                    ))?;
                    out.line(&format!("    to open it there: {}", c.fix))?;
                }
            }
            for n in &p.notes {
                out.line(&format!("note: {n}"))?;
            }
            out.line("")?;
            out.heading("Script (kports firewall plan ... --script prints only this):")?;
            for l in p.script.lines() {
                out.line(l)?;
            }
        }
    }
    Ok(warnings)
}
