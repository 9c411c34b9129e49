//! `kports completions SHELL`: a completion script generated from the clap definitions that
//! parse the command line, so it offers every subcommand and flag there is, and no other.

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;
use kports_core::Warning;

use crate::cli::Cli;
use crate::output::Out;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: &CompletionsArgs, out: &mut Out) -> Result<Vec<Warning>> {
    let script = String::from_utf8(script(args.shell)).context("completion script is not UTF-8")?;
    out.line(script.trim_end())?;
    Ok(Vec::new())
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kports", &mut buf);
    buf
}
