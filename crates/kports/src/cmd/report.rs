//! `kports report`: the node report (kports-node) as kports-cluster's document, optionally with
//! this node's probes of its peers (what it needs of each, by the inventory's roles).

use std::fmt::Write as _;
use std::io::{Read as _, Write};
use std::net::IpAddr;

use anyhow::{Context as _, Result, bail};
use kports_agent::peers::{Member, needs, needs_between};
use kports_cluster::report::{NodeDoc, Peer};
use kports_core::Warning;
use kports_core::catalog::Roles;
use kports_node::{NodeIo, NodeReport};
use kports_probe::inventory::{self, Inventory};
use kports_probe::plan::Planned;
use kports_probe::probe::{self, Options, Probe};
use kports_probe::row::rows;
use kports_probe::{Status, Transport};

use crate::cli::ReportArgs;
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out};

pub fn run(args: &ReportArgs, io: &dyn NodeIo, out: &mut Out<impl Write>) -> Result<Outcome> {
    let inventory = match &args.inventory {
        Some(p) if p.as_os_str() == "-" => Some(read_stdin()?),
        Some(p) => Some(inventory::read(p)?),
        None => None,
    };
    let options = args.node.options();
    let mut report = NodeReport::build(io, &options)?;
    let mut warnings = Vec::new();
    let me = match &inventory {
        Some(inv) => Some(find_self(inv, args.self_name.as_deref(), &report)?),
        None => None,
    };
    // A node whose components do not run yet has no detected role: the inventory says.
    if let (Some(me), None) = (me, options.roles) {
        if report.roles.value.is_empty() && !me.roles.is_empty() {
            let roles: Roles = me.roles.iter().copied().collect();
            warnings.push(Warning::new(
                "role-from-inventory",
                format!(
                    "no role detected on this node ({}); judged as the inventory's {roles}",
                    report.roles.evidence.join("; ")
                ),
            ));
            report = NodeReport::build(
                io,
                &kports_node::Options {
                    roles: Some(roles),
                    ..options.clone()
                },
            )?;
        }
    }
    let name = me.map_or_else(|| report.hostname.clone(), |n| n.name.clone());
    let peer_nodes: Vec<&inventory::Node> = match (&inventory, me) {
        (Some(inv), Some(me)) => inv.nodes.iter().filter(|n| n.name != me.name).collect(),
        _ => Vec::new(),
    };
    let peers: Vec<Peer> = peer_nodes
        .iter()
        .flat_map(|n| n.addresses())
        .map(|address| Peer {
            address,
            route: io.route_to(address),
        })
        .collect();
    let mut doc = NodeDoc::from_report(&report, &name, &peers);
    if args.probe_peers {
        if let Some(me) = me {
            let planned = plan(&report, me, &peer_nodes);
            let _ = probe::raise_fd_limit();
            let opts = Options {
                timeout: args.probe_timeout,
                concurrency: probe::default_concurrency(),
            };
            let list: Vec<Probe> = planned.iter().map(|p| p.probe).collect();
            let outcomes = probe::run_blocking(&list, opts, |_, _| {})?;
            doc.probes = Some(rows(&name, &planned, &outcomes));
        }
    }
    warnings.extend(report.census_warnings.iter().cloned());
    warnings.extend(report.flag_warnings.iter().cloned());
    if let Some(fw) = &report.firewall {
        warnings.extend(fw.warnings.iter().cloned());
    }
    match args.output {
        Format::Json => out.json(&Document::new(
            kports_cluster::report::KIND,
            &report.hostname,
            [&doc],
            &warnings,
        ))?,
        Format::Table | Format::Wide => table(out, &doc)?,
    }
    Ok(Outcome::done(warnings))
}

/// The inventory on standard input (`--inventory -`), capped like a file.
fn read_stdin() -> Result<Inventory> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(inventory::MAX_BYTES + 1)
        .read_to_string(&mut text)
        .context("cannot read the inventory from standard input")?;
    Ok(inventory::parse(&text, "standard input")?)
}

/// This node in the inventory: by --self, else by host name, else by one of its addresses.
fn find_self<'a>(
    inv: &'a Inventory,
    given: Option<&str>,
    report: &NodeReport,
) -> Result<&'a inventory::Node> {
    let names = || {
        inv.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = given {
        return inv
            .nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("--self {name}: the inventory has {}", names()));
    }
    let own: Vec<IpAddr> = report
        .interfaces
        .iter()
        .flat_map(|i| i.addresses.iter().map(|a| a.address))
        .collect();
    if let Some(n) = inv.nodes.iter().find(|n| n.name == report.hostname) {
        return Ok(n);
    }
    if let Some(n) = inv
        .nodes
        .iter()
        .find(|n| n.addresses().iter().any(|a| own.contains(a)))
    {
        return Ok(n);
    }
    bail!(
        "this node ({}) is not in the inventory by name or address: pass --self NAME (the inventory has {})",
        report.hostname,
        names()
    )
}

/// Every port `me` needs of each peer, at each of the peer's addresses; a port its component
/// binds to one of the node's addresses (etcd's, on the address it advertises) and the CNI's
/// (the overlay, over one address family) at the peer's main address only.
fn plan(report: &NodeReport, me: &inventory::Node, peers: &[&inventory::Node]) -> Vec<Planned> {
    let all = needs(&report.catalog, &report.cni.value);
    let one_address = kports_agent::plan::main_address_only(&report.catalog);
    let from = Member::new(me.name.clone(), me.roles.iter().copied());
    let mut out = Vec::new();
    for p in peers {
        let to = Member::new(p.name.clone(), p.roles.iter().copied());
        for need in needs_between(&all, &from, &to) {
            let transport = match need.proto {
                kports_core::Proto::Tcp => Transport::Tcp,
                kports_core::Proto::Udp => Transport::Udp,
            };
            let addresses = if one_address.contains(&(need.proto, need.port)) {
                vec![p.address]
            } else {
                p.addresses()
            };
            for addr in addresses {
                out.push(Planned {
                    target: p.name.clone(),
                    probe: Probe {
                        addr,
                        port: need.port,
                        transport,
                    },
                    component: Some(need.component.clone()),
                });
            }
        }
    }
    out
}

fn table(out: &mut Out<impl Write>, d: &NodeDoc) -> std::io::Result<()> {
    let roles: Vec<&str> = d.roles.iter().map(|r| r.as_str()).collect();
    out.heading(&format!(
        "{} ({}): roles {}, CNI {}",
        d.name,
        d.hostname,
        if roles.is_empty() {
            "unknown".into()
        } else {
            roles.join(",")
        },
        if d.cni.is_empty() {
            "none".into()
        } else {
            d.cni.join(",")
        }
    ))?;
    out.table(
        &["PORT", "COMPONENT", "LISTENERS", "FIREWALL"],
        d.ports.len(),
        |r, c, b| {
            let p = &d.ports[r];
            let _ = match c {
                0 => write!(b, "{}/{}", p.proto, p.port),
                1 => write!(b, "{}", p.component),
                2 if p.listeners.is_empty() => write!(b, "nothing"),
                2 => {
                    let v: Vec<String> = p
                        .listeners
                        .iter()
                        .map(|l| {
                            format!(
                                "{} ({})",
                                l.address,
                                l.process.as_deref().unwrap_or("unknown")
                            )
                        })
                        .collect();
                    write!(b, "{}", v.join(", "))
                }
                _ if p.firewall.is_empty() => write!(b, "not read"),
                _ => {
                    let v: Vec<String> = p
                        .firewall
                        .iter()
                        .map(|v| format!("{} from {}", v.verdict.verb(), v.from))
                        .collect();
                    write!(b, "{}", v.join("; "))
                }
            };
        },
    )?;
    out.line(&format!("{} finding(s)", d.findings.len()))?;
    if let Some(probes) = &d.probes {
        let count = |f: &dyn Fn(Status) -> bool| probes.iter().filter(|r| f(r.status)).count();
        out.line(&format!(
            "{} probe(s) of peers: {} open, {} open|filtered, {} failed",
            probes.len(),
            count(&|s| s == Status::Open),
            count(&|s| s == Status::OpenFiltered),
            count(&|s| s.is_failure()),
        ))?;
        for r in probes.iter().filter(|r| r.status.is_failure()) {
            let errno = r.errno.map(|e| format!(" {e}")).unwrap_or_default();
            out.line(&format!(
                "  {} {} {}/{} {}{errno}",
                r.target, r.target_address, r.proto, r.port, r.status
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_ports_listeners_verdicts_and_failed_probes() {
        let d: NodeDoc = serde_json::from_value(serde_json::json!({
            "name": "w1", "hostname": "w1.example", "roles": ["worker"], "cni": ["flannel"],
            "interfaces": [],
            "ports": [
                {"proto": "tcp", "port": 10250, "component": "kubelet",
                 "listeners": [{"address": "::", "process": "kubelet"}],
                 "firewall": [{"from": "192.0.2.11", "source_kind": null, "verdict": "drop",
                               "with": null, "rule": "nft inet filter input #1: tcp dport 10250 drop"}]},
                {"proto": "udp", "port": 8472, "component": "flannel", "listeners": [],
                 "firewall": []}
            ],
            "findings": [], "firewall_read": true, "routes": [],
            "probes": [
                {"source": "w1", "target": "cp1", "target_address": "192.0.2.11", "proto": "tcp",
                 "port": 6443, "status": "refused", "errno": "ECONNREFUSED", "latency_ms": 0.2,
                 "component": "kube-apiserver"},
                {"source": "w1", "target": "cp1", "target_address": "192.0.2.11", "proto": "udp",
                 "port": 8472, "status": "open|filtered", "errno": null, "latency_ms": 2000.0,
                 "component": "flannel"}
            ]
        }))
        .unwrap();
        let mut out = Out::new(Vec::new(), false);
        table(&mut out, &d).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert_eq!(
            text,
            "\
w1 (w1.example): roles worker, CNI flannel
PORT       COMPONENT  LISTENERS     FIREWALL
tcp/10250  kubelet    :: (kubelet)  drops from 192.0.2.11
udp/8472   flannel    nothing       not read
0 finding(s)
2 probe(s) of peers: 0 open, 1 open|filtered, 1 failed
  cp1 192.0.2.11 tcp/6443 refused ECONNREFUSED
"
        );
    }
}
