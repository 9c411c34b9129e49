//! The `kports` binary: parse the command line, run one subcommand, map errors to exit codes.
//!
//! Exit codes: 0 success (also when the reader of a pipe went away), 1 a check found what
//! `--fail-on` asks to fail on, 2 an error of kports itself or a usage error.

mod cli;
mod cmd;
mod output;

use std::io;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::output::Out;

fn main() -> ExitCode {
    if let Some(code) = kports_lab::standin_dispatch() {
        return code;
    }
    let cli = Cli::parse();
    let mut out = Out::stdout();
    let result = match &cli.command {
        Command::Node(a) => cmd::node::run(a, &mut out),
        Command::Listen(a) => cmd::listen::run(a, &mut out),
        Command::Conns(a) => cmd::conns::run(a, &mut out),
        Command::Check(a) => cmd::check::run(a, &mut out),
        Command::Explain(a) => cmd::explain::run(a, &mut out),
        Command::Firewall(c) => cmd::firewall::run(c, &mut out),
        Command::Lab(a) => return lab(a),
        Command::Completions(a) => cmd::completions::run(a, &mut out),
        Command::Man(a) => cmd::man::run(a, &mut out),
        Command::Agent(a) => cmd::agent::run(a),
    }
    .and_then(|warnings| {
        out.flush()?;
        output::warn(&warnings);
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // The check printed its findings; they reached --fail-on.
        Err(e) if e.downcast_ref::<cmd::check::Failed>().is_some() => ExitCode::from(1),
        Err(e) => {
            eprintln!("kports: {e:#}");
            if let Some(kports_linux::Error::Io { .. } | kports_linux::Error::NoSockDiag(_)) =
                e.downcast_ref::<kports_linux::Error>()
            {
                if e.downcast_ref::<kports_linux::Error>()
                    .is_some_and(|k| k.is_permission())
                {
                    eprintln!(
                        "hint: run as root, or grant CAP_NET_ADMIN, CAP_SYS_PTRACE and CAP_SYS_ADMIN (for other namespaces)"
                    );
                }
            }
            ExitCode::from(2)
        }
    }
}

/// `kports lab` prints its own output; its usage errors exit 2, its failures 1.
fn lab(args: &kports_lab::LabArgs) -> ExitCode {
    kports_lab::run(args).unwrap_or_else(|e| {
        eprintln!("kports: {e:#}");
        ExitCode::FAILURE
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
