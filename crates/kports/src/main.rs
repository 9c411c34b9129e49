//! The `kports` binary: parse the command line, run one subcommand, map errors to exit codes.
//!
//! Exit codes: 0 success (also when the reader of a pipe went away), 1 a check found what
//! `--fail-on` asks to fail on, a probe found a port it could not reach, or the cluster's matrix
//! has a failing cell or a node without a report, 2 an error of kports itself or a usage error.

mod cli;
mod cmd;
mod output;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use kports_core::escape::untrusted;

use crate::cli::{Cli, Command};
use crate::output::Out;

fn main() -> ExitCode {
    if let Some(code) = kports_lab::standin_dispatch() {
        return code;
    }
    let cli = Cli::parse();
    let mut out = Out::stdout();
    let io = kports_node::Linux::default();
    let result = match &cli.command {
        Command::Node(a) => cmd::node::run(a, &io, &mut out),
        Command::Listen(a) => cmd::listen::run(a, &mut out),
        Command::Conns(a) => cmd::conns::run(a, &mut out),
        Command::Check(a) => cmd::check::run(a, &io, &mut out),
        Command::Explain(a) => cmd::explain::run(a, &io, &mut out),
        Command::Firewall(c) => cmd::firewall::run(c, &io, &mut out),
        Command::Probe(a) => cmd::probe::run(a, &mut out),
        Command::Report(a) => cmd::report::run(a, &io, &mut out),
        Command::Cluster(a) => cmd::cluster::run(a, &mut out),
        Command::Lab(a) => return lab(a),
        Command::Completions(a) => cmd::completions::run(a, &mut out),
        Command::Man(a) => cmd::man::run(a, &mut out),
        Command::Agent(a) => cmd::agent::run(a),
    }
    .and_then(|outcome| {
        out.flush()?;
        output::warn(&outcome.warnings);
        Ok(outcome.failed)
    });
    match result {
        // The findings are printed; they reached --fail-on.
        Ok(true) => ExitCode::from(1),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kports: {}", untrusted(&format!("{e:#}")));
            if census_error(&e).is_some_and(kports_linux::Error::is_permission) {
                eprintln!(
                    "hint: run as root, or grant CAP_NET_ADMIN, CAP_SYS_PTRACE and CAP_SYS_ADMIN (for other namespaces)"
                );
            }
            ExitCode::from(2)
        }
    }
}

/// The census's error behind `e`, if that is what failed.
fn census_error(e: &anyhow::Error) -> Option<&kports_linux::Error> {
    e.downcast_ref::<kports_linux::Error>()
        .or(match e.downcast_ref::<kports_node::Error>() {
            Some(kports_node::Error::Census(c)) => Some(c),
            _ => None,
        })
}

/// `kports lab` prints its own output; its usage errors exit 2, its failures 1.
fn lab(args: &kports_lab::LabArgs) -> ExitCode {
    kports_lab::run(args).unwrap_or_else(|e| {
        eprintln!("kports: {}", untrusted(&format!("{e:#}")));
        ExitCode::FAILURE
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
