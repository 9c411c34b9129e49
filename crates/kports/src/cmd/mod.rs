//! One module per subcommand: each takes parsed arguments, asks a library (the census, or the
//! node report of `kports-node`) and renders the answer. No command module uses another's.

pub mod agent;
pub mod check;
pub mod cluster;
pub mod completions;
pub mod conns;
pub mod explain;
pub mod firewall;
pub mod listen;
pub mod man;
pub mod node;
pub mod overlay;
pub mod preflight;
pub mod probe;
pub mod report;

use std::path::PathBuf;

use kports_core::{ProcessRef, Socket, Warning};
use kports_linux::census::{OwnerScope, Query};

use crate::cli::Filters;

/// What a command leaves for `main` once its output is written: warnings for standard error,
/// whether the exit status says it found what `--fail-on` asks to fail on, and whether it
/// could not see all it judges.
#[derive(Debug, Default)]
pub struct Outcome {
    pub warnings: Vec<Warning>,
    /// Exit with status 1.
    pub failed: bool,
    /// Exit with status 3 (unless `failed`): the verdict is not the whole truth.
    pub incomplete: bool,
}

impl Outcome {
    /// Done, with these warnings.
    pub fn done(warnings: Vec<Warning>) -> Outcome {
        Outcome {
            warnings,
            ..Outcome::default()
        }
    }
}

/// The census query shared by `listen` and `conns`.
pub fn query(filters: &Filters, all_netns: bool, owners: OwnerScope) -> Query {
    Query {
        source: filters.source.into(),
        all_netns,
        owners,
        proc_root: PathBuf::from("/proc"),
        ..Query::default()
    }
}

/// Whether a socket passes `--process`, `--component` and `--port`.
pub fn keep(f: &Filters, s: &Socket) -> bool {
    f.port
        .is_none_or(|(lo, hi)| (lo..=hi).contains(&s.local_port))
        && f.component.is_none_or(|c| s.component == Some(c))
        && f.process
            .as_deref()
            .is_none_or(|p| process_matches(p, &s.processes))
}

/// `--process NAME|PID` against a holder list: the pid, the full name or the kernel's `comm`.
pub fn process_matches(wanted: &str, procs: &[std::sync::Arc<ProcessRef>]) -> bool {
    match wanted.parse::<u32>() {
        Ok(pid) => procs.iter().any(|p| p.pid == pid),
        Err(_) => procs
            .iter()
            .any(|p| kports_core::names::names_process(wanted, &p.name)),
    }
}

/// After the filters: an error when `--process` names no process among `holders`, a note when
/// the filters given matched nothing (`kept` rows are left), nothing otherwise.
pub fn check_filters<'a>(
    f: &Filters,
    kept: usize,
    holders: impl IntoIterator<Item = &'a str>,
    warnings: &mut Vec<Warning>,
) -> anyhow::Result<()> {
    if kept > 0 {
        return Ok(());
    }
    if let Some(p) = &f.process {
        crate::filter::process(p, holders)?;
    }
    let given = [
        ("process", f.process.clone()),
        ("component", f.component.map(str::to_string)),
        (
            "port",
            f.port.map(|(lo, hi)| {
                kports_core::catalog::PortRange {
                    first: lo,
                    last: hi,
                }
                .to_string()
            }),
        ),
    ];
    if given.iter().any(|(_, v)| v.is_some()) {
        warnings.push(crate::filter::nothing_matched(&given));
    }
    Ok(())
}

/// A node of a cluster command (`preflight`, `overlay`).
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub name: String,
    /// The first is the node's address between nodes.
    pub addresses: Vec<std::net::IpAddr>,
    pub roles: Vec<kports_core::catalog::Role>,
}

/// The nodes of `--inventory FILE --via TEMPLATE`, or of the lab that is up (`--lab`), and how
/// to run kports on them.
pub fn cluster_nodes(
    args: &crate::cli::ClusterNodesArgs,
    warnings: &mut Vec<Warning>,
) -> anyhow::Result<(Vec<ClusterNode>, kports_cluster::launch::Launch)> {
    let (inventory, via) = (args.inventory.as_deref(), args.via.as_deref());
    let (remote_kports, lab) = (args.remote_kports.as_deref(), args.lab);
    use anyhow::Context as _;
    use kports_cluster::launch::Launch;
    if lab {
        let exe = std::env::current_exe().context("cannot find this kports executable")?;
        let paths = kports_lab::state::Paths::default();
        let state = kports_lab::state::State::load(&paths)?
            .ok_or_else(|| anyhow::anyhow!("no lab is up: run `kports lab up` first"))?;
        let nodes = state
            .plan()
            .nodes
            .iter()
            .map(|n| ClusterNode {
                name: n.name.clone(),
                addresses: n.addresses().to_vec(),
                roles: n.roles(),
            })
            .collect();
        return Ok((nodes, Launch::Lab { exe }));
    }
    let (Some(file), Some(via)) = (inventory, via) else {
        anyhow::bail!("give --inventory FILE --via 'COMMAND {{name}} {{address}}', or --lab");
    };
    let inv = kports_probe::inventory::read(file)?;
    if !inv.skipped.is_empty() {
        warnings.push(Warning {
            code: "inventory-hosts-skipped",
            message: format!(
                "hosts in no Kubernetes group take no part: {}",
                inv.skipped.join(", ")
            ),
        });
    }
    let nodes = inv
        .nodes
        .iter()
        .map(|n| ClusterNode {
            name: n.name.clone(),
            addresses: n.addresses(),
            roles: n.roles.clone(),
        })
        .collect();
    Ok((nodes, Launch::via(via, remote_kports)?))
}
