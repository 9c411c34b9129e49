//! `kports preflight`: on the node that runs it, plan each node's ports, run the preflight
//! (kports-cluster's `preflight`) and print the rows; on a node (`--hold`), hold the ports,
//! name the holders of the taken ones from the census, and let go when standard input closes.

use std::fmt::Write as _;
use std::io::{Read as _, Write};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kports_cluster::preflight::{self, Options, Row, Target, Verdict};
use kports_core::catalog::Catalog;
use kports_core::{Owner, Proto, Warning};
use kports_linux::census::{self, OwnerScope, Query};
use kports_linux::sockdiag::{LISTEN, UNCONN};
use kports_probe::Transport;
use kports_probe::plan::{self, PortSpec};
use kports_probe::temporary::{self, Held, HeldState, Holder, Process};

use crate::cli::PreflightArgs;
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out};

pub fn run(args: &PreflightArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    if args.hold {
        let ports = args.ports.as_ref().map(|p| p.0.as_slice()).unwrap_or(&[]);
        return hold(ports, Duration::from_secs(args.max_hold), out);
    }
    let catalog = Catalog::builtin().context("the built-in catalog is broken (a bug in kports)")?;
    let known = catalog.cnis();
    if let Some(c) = args.cni.iter().find(|c| !known.contains(&c.as_str())) {
        bail!("`{c}` is not a CNI kports knows: {}", known.join(", "));
    }
    let mut warnings = Vec::new();
    let (nodes, launch) = super::cluster_nodes(&args.nodes, &mut warnings)?;
    let mut targets = Vec::with_capacity(nodes.len());
    for super::ClusterNode {
        name,
        addresses,
        roles,
    } in nodes
    {
        let roles = args.roles.clone().unwrap_or(roles);
        let ports: Vec<(PortSpec, String)> = match &args.ports {
            Some(list) => list
                .0
                .iter()
                .map(|p| {
                    let c = plan::component_of(&catalog, *p).unwrap_or_else(|| "-".into());
                    (*p, c)
                })
                .collect(),
            None => plan::role_ports(&catalog, &roles, &args.cni),
        };
        if ports.is_empty() {
            bail!(plan::PlanError::NoPorts(name));
        }
        targets.push(Target {
            name,
            addresses,
            ports,
        });
    }
    if targets.len() < 2 {
        warnings.push(Warning {
            code: "preflight-one-node",
            message: "one node only: its ports are held and checked for squatters, but no peer dials them".into(),
        });
    }
    let opts = Options {
        probe_timeout: args.timeout,
        node_timeout: Duration::from_secs(args.node_timeout),
        parallel: args.parallel as usize,
    };
    let rows = preflight::run(&targets, &launch, &opts);
    let hostname = kports_linux::hostname();
    match args.output {
        Format::Json => out.json(&Document::new("preflight", &hostname, &rows, &warnings))?,
        Format::Table | Format::Wide => table(out, &rows)?,
    }
    Ok(Outcome {
        warnings,
        failed: rows.iter().any(|r| r.verdict != Verdict::Open),
        incomplete: false,
    })
}

/// `--hold`: binds, prints one JSON line (the document, items = what became of each port),
/// and holds until standard input closes or `max` has passed. A signal ends the process and
/// the kernel closes its sockets.
fn hold(ports: &[PortSpec], max: Duration, out: &mut Out<impl Write>) -> Result<Outcome> {
    let (bound, mut report) = temporary::hold_each(ports);
    let mut warnings = Vec::new();
    for h in report.iter_mut().filter(|h| h.state == HeldState::Taken) {
        h.holder = Some(holder(h, &mut warnings));
    }
    let hostname = kports_linux::hostname();
    let doc = Document::new("preflight-hold", &hostname, &report, &warnings);
    // One line: the node that runs the preflight reads exactly one.
    out.generated(&serde_json::to_string(&doc)?)?;
    out.flush()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    // Either way: stdin closed (or failed), or the time is up.
    let _ = rx.recv_timeout(max);
    drop(bound);
    Ok(Outcome::done(warnings))
}

/// Who holds the port `h` could not bind, from this node's census.
fn holder(h: &Held, warnings: &mut Vec<Warning>) -> Holder {
    let tcp = h.proto == Transport::Tcp;
    let q = Query {
        tcp,
        udp: !tcp,
        tcp_states: LISTEN,
        udp_states: UNCONN,
        owners: OwnerScope::Every,
        ..Query::default()
    };
    let c = match census::sockets(&q) {
        Ok(c) => c,
        Err(e) => {
            return Holder::Unknown {
                reason: format!("the census failed: {e}"),
            };
        }
    };
    warnings.extend(c.warnings);
    let proto = if tcp { Proto::Tcp } else { Proto::Udp };
    let mut processes: Vec<Process> = Vec::new();
    let mut kernel = false;
    let mut unknown = false;
    for s in c
        .sockets
        .iter()
        .filter(|s| s.proto == proto && s.local_port == h.port)
    {
        match s.owner {
            Owner::Process => {
                for p in s.processes.iter() {
                    if !processes.iter().any(|q| q.pid == p.pid) {
                        processes.push(Process {
                            name: p.name.clone(),
                            pid: p.pid,
                        });
                    }
                }
            }
            Owner::Kernel => kernel = true,
            Owner::Unknown | Owner::None => unknown = true,
        }
    }
    if !processes.is_empty() {
        Holder::Processes { processes }
    } else if kernel {
        Holder::Kernel
    } else if unknown {
        Holder::Unknown {
            reason: "not every process's sockets could be read".into(),
        }
    } else {
        Holder::Unknown {
            reason: "no socket on the port by the time the census looked".into(),
        }
    }
}

fn table(out: &mut Out<impl Write>, rows: &[Row]) -> std::io::Result<()> {
    let headers = [
        "SOURCE", "TARGET", "ADDRESS", "PROTO", "PORT", "STATUS", "VERDICT", "CAUSE",
    ];
    out.table(&headers, rows.len(), |r, c, buf| {
        let row = &rows[r];
        let _ = match c {
            0 => write!(buf, "{}", row.source),
            1 => write!(buf, "{}", row.target),
            2 => match row.target_address {
                Some(a) => write!(buf, "{a}"),
                None => write!(buf, "-"),
            },
            3 => write!(buf, "{}", row.proto),
            4 => write!(buf, "{}", row.port),
            5 => match row.status {
                Some(s) => write!(buf, "{s}"),
                None => write!(buf, "-"),
            },
            6 => write!(buf, "{}", row.verdict),
            _ => write!(buf, "{}", row.cause),
        };
    })?;
    let mut counts: Vec<(Verdict, usize)> = Vec::new();
    for r in rows {
        match counts.iter_mut().find(|(v, _)| *v == r.verdict) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.verdict, 1)),
        }
    }
    counts.sort();
    let parts: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {v}")).collect();
    out.line(&format!("{} checks: {}", rows.len(), parts.join(", ")))
}
