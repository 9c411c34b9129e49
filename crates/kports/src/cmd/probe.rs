//! `kports probe`: plan the probes (kports-probe's `plan`), run them, print the rows.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write};
use std::net::{IpAddr, ToSocketAddrs as _};

use anyhow::{Context as _, Result};
use kports_core::Warning;
use kports_core::catalog::Catalog;
use kports_probe::plan::{self, Request};
use kports_probe::probe::{self, Options};
use kports_probe::row::{Row, rows};
use kports_probe::{Status, inventory};

use crate::cli::ProbeArgs;
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out};

/// Prints the rows; the outcome fails (exit status 1) when some port was not reachable.
pub fn run(args: &ProbeArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    let inventory = match &args.inventory {
        Some(p) => Some(inventory::read(p)?),
        None => None,
    };
    let mut warnings = Vec::new();
    if let Some(inv) = inventory.as_ref().filter(|i| !i.skipped.is_empty()) {
        warnings.push(Warning {
            code: "inventory-hosts-skipped",
            message: format!(
                "hosts in no Kubernetes group are not probed: {}",
                inv.skipped.join(", ")
            ),
        });
    }
    let catalog = Catalog::builtin().context("the built-in catalog is broken (a bug in kports)")?;
    let known = catalog.cnis();
    if let Some(c) = args.cni.iter().find(|c| !known.contains(&c.as_str())) {
        anyhow::bail!("`{c}` is not a CNI kports knows: {}", known.join(", "));
    }
    let planned = plan::plan(
        &Request {
            targets: &args.targets,
            inventory: inventory.as_ref(),
            roles: args.roles.as_deref(),
            cnis: &args.cni,
            ports: args.ports.as_ref().map(|p| p.0.as_slice()),
            catalog: &catalog,
        },
        resolve,
    )?;
    // One socket per probe in flight: use what the hard limit allows.
    let _ = probe::raise_fd_limit();
    let concurrency = args
        .concurrency
        .map_or_else(probe::default_concurrency, |c| c as usize);
    let opts = Options {
        timeout: args.timeout,
        concurrency,
    };
    let probes: Vec<_> = planned.iter().map(|p| p.probe).collect();
    let bar = progress(probes.len());
    let outcomes = probe::run_blocking(&probes, opts, |_, _| bar.inc(1))?;
    bar.finish_and_clear();
    let hostname = kports_linux::hostname();
    let rows = rows(&hostname, &planned, &outcomes);
    match args.output {
        Format::Json => out.json(&Document::new("probe", &hostname, &rows, &warnings))?,
        Format::Table | Format::Wide => table(out, &rows)?,
    }
    Ok(Outcome {
        warnings,
        failed: rows.iter().any(|r| r.status.is_failure()),
        incomplete: false,
    })
}

/// A host name's addresses, from the system's resolver.
fn resolve(name: &str) -> std::io::Result<Vec<IpAddr>> {
    let mut v: Vec<IpAddr> = (name, 0).to_socket_addrs()?.map(|a| a.ip()).collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// A bar on standard error when it is a terminal; hidden otherwise (and so when piped).
fn progress(len: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || len < 2 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("probing {bar:30} {pos}/{len} {elapsed}")
    {
        bar.set_style(style);
    }
    bar
}

fn table(out: &mut Out<impl Write>, rows: &[Row]) -> std::io::Result<()> {
    let headers = [
        "TARGET",
        "ADDRESS",
        "PROTO",
        "PORT",
        "STATUS",
        "ERRNO",
        "LATENCY",
        "COMPONENT",
    ];
    out.table(&headers, rows.len(), |r, c, buf| {
        let row = &rows[r];
        let _ = match c {
            0 => write!(buf, "{}", row.target),
            1 => write!(buf, "{}", row.target_address),
            2 => write!(buf, "{}", row.proto),
            3 => write!(buf, "{}", row.port),
            4 => write!(buf, "{}", row.status),
            5 => write!(buf, "{}", row.errno.map_or("-".into(), |e| e.name())),
            6 => write!(buf, "{:.1}ms", row.latency_ms.as_secs_f64() * 1000.0),
            _ => write!(buf, "{}", row.component.as_deref().unwrap_or("-")),
        };
    })?;
    let mut counts: Vec<(Status, usize)> = Vec::new();
    for r in rows {
        match counts.iter_mut().find(|(s, _)| *s == r.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.status, 1)),
        }
    }
    counts.sort();
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    out.line(&format!("{} probes: {}", rows.len(), parts.join(", ")))
}
