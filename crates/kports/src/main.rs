//! The `kports` binary: parse the command line, run one subcommand, map errors to exit codes.
//!
//! Exit codes (README.md and every `--help` say the same): 0 success (also when the reader of
//! a pipe went away), 1 a check found what `--fail-on` asks to fail on, a probe found a port it
//! could not reach, the cluster's matrix has a failing cell or a node without a report, or a
//! lab is unhealthy, 2 an error of kports itself or a usage error, 3 a check that found nothing
//! to fail on but could not see all it judges (the holders of sockets, a ruleset: kports runs
//! without the privilege to read them); `lab exec` gives the command's status, or 126 and 127
//! as a shell does.

mod cli;
mod cmd;
mod filter;
mod output;

use std::io;
use std::process::ExitCode;

use clap::FromArgMatches as _;
use kports_core::escape::untrusted;

use crate::cli::{Cli, Command};
use crate::cmd::Outcome;
use crate::output::Out;

/// The exit status of a check that could not see all it judges.
const EXIT_INCOMPLETE: u8 = 3;

fn main() -> ExitCode {
    if let Some(code) = kports_lab::standin_dispatch() {
        return code;
    }
    let cli = match Cli::from_arg_matches(&cli::command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let mut out = Out::stdout();
    if cli.no_headers {
        out = out.without_headers();
    }
    let io = kports_node::Linux::default();
    if let Command::Lab(a) = &cli.command {
        return lab(a);
    }
    let watch = cli.command.watch();
    let result = loop {
        let r = run(&cli, &io, &mut out, watch);
        match (watch, r) {
            (Some(every), Ok(_)) => std::thread::sleep(every),
            (_, r) => break r,
        }
    };
    match result {
        // The findings are printed; they reached --fail-on.
        Ok(Outcome { failed: true, .. }) => ExitCode::from(1),
        Ok(Outcome {
            incomplete: true, ..
        }) => ExitCode::from(EXIT_INCOMPLETE),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kports: {}", error_text(&e));
            if census_error(&e).is_some_and(kports_linux::Error::is_permission) {
                eprintln!(
                    "hint: run as root, or grant CAP_NET_ADMIN, CAP_SYS_PTRACE and CAP_SYS_ADMIN (for other namespaces)"
                );
            }
            ExitCode::from(2)
        }
    }
}

/// Runs the command once (one frame of `--watch`): whether it found what `--fail-on` asks to
/// fail on, and whether it could not see all it judges.
fn run(
    cli: &Cli,
    io: &kports_node::Linux,
    out: &mut Out,
    watch: Option<std::time::Duration>,
) -> anyhow::Result<Outcome> {
    if let Some(every) = watch {
        out.frame(every)?;
    }
    let out = &mut *out;
    match &cli.command {
        Command::Node(a) => cmd::node::run(a, io, out),
        Command::Listen(a) => cmd::listen::run(a, out),
        Command::Conns(a) => cmd::conns::run(a, out),
        Command::Check(a) => cmd::check::run(a, io, out),
        Command::Explain(a) => cmd::explain::run(a, io, out),
        Command::Firewall(c) => cmd::firewall::run(c, io, out),
        Command::Probe(a) => cmd::probe::run(a, out),
        Command::Report(a) => cmd::report::run(a, io, out),
        Command::Cluster(a) => cmd::cluster::run(a, out),
        Command::Preflight(a) => cmd::preflight::run(a, out),
        Command::Overlay(a) => cmd::overlay::run(a, out),
        Command::Completions(a) => cmd::completions::run(a, out),
        Command::Man(a) => cmd::man::run(a, out),
        Command::Agent(a) => cmd::agent::run(a),
        // Handled before: the lab prints its own output.
        Command::Lab(_) => Ok(cmd::Outcome::default()),
    }
    .and_then(|outcome| {
        out.flush()?;
        output::warn(&outcome.warnings);
        Ok(outcome)
    })
}

/// The census's error behind `e`, if that is what failed.
fn census_error(e: &anyhow::Error) -> Option<&kports_linux::Error> {
    e.downcast_ref::<kports_linux::Error>()
        .or(match e.downcast_ref::<kports_node::Error>() {
            Some(kports_node::Error::Census(c)) => Some(c),
            _ => None,
        })
}

/// `kports lab` prints its own output; its errors exit 2 like every other command's (`lab
/// status` exits 1 for an unhealthy lab, `lab exec` 126 or 127 as a shell does).
fn lab(args: &kports_lab::LabArgs) -> ExitCode {
    kports_lab::run(args).unwrap_or_else(|e| {
        eprintln!("kports: {}", error_text(&e));
        ExitCode::from(2)
    })
}

/// An error as the user reads it: its chain on one line, or on several where kports wrote a
/// list; each line escaped, since errors quote file contents and names from the node.
fn error_text(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .map(|l| untrusted(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
