use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kubernetes node and cluster port census, checks and probes.
#[derive(Debug, Parser)]
#[command(name = "kports", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Lab(kports_lab::LabArgs),
}

fn main() -> ExitCode {
    if let Some(code) = kports_lab::standin_dispatch() {
        return code;
    }
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Lab(args) => kports_lab::run(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
