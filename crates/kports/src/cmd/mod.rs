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
pub mod probe;
pub mod report;

use std::path::PathBuf;

use kports_core::{ProcessRef, Socket, Warning};
use kports_linux::census::{OwnerScope, Query};

use crate::cli::Filters;

/// What a command leaves for `main` once its output is written: warnings for standard error,
/// and whether the exit status says it found what `--fail-on` asks to fail on.
#[derive(Debug, Default)]
pub struct Outcome {
    pub warnings: Vec<Warning>,
    /// Exit with status 1.
    pub failed: bool,
}

impl Outcome {
    /// Done, with these warnings.
    pub fn done(warnings: Vec<Warning>) -> Outcome {
        Outcome {
            warnings,
            failed: false,
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
        && f.component
            .as_deref()
            .is_none_or(|c| s.component == Some(c))
        && f.process
            .as_deref()
            .is_none_or(|p| process_matches(p, &s.processes))
}

/// `--process NAME|PID` against a holder list.
pub fn process_matches(wanted: &str, procs: &[std::sync::Arc<ProcessRef>]) -> bool {
    match wanted.parse::<u32>() {
        Ok(pid) => procs.iter().any(|p| p.pid == pid),
        Err(_) => procs.iter().any(|p| p.name == wanted),
    }
}
