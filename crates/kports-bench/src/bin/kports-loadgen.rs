//! `kports-loadgen`: holds N established loopback TCP connections and L listeners for the census
//! benchmark. Prints one `ready ...` line once everything is connected, then holds the sockets
//! until standard input closes or SIGTERM/SIGINT arrives. Exit status 2 on any error.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use kports_bench::loadgen::{self, Kind, Plan, Share};
use kports_bench::sys;

/// Opens N established TCP connections on 127.77.0.0/16 (both ends local, so 2N sockets),
/// spread over worker processes, plus listeners spread over the workers and a few idle
/// processes. Prints `ready ...` when done; holds everything until standard input closes or
/// SIGTERM arrives.
#[derive(Debug, Parser)]
#[command(name = "kports-loadgen", version, max_term_width = 100)]
struct Args {
    /// Established connections to open.
    #[arg(long, short = 'n', default_value_t = 1000)]
    conns: usize,
    /// Listening sockets, spread over the workers and the idle processes.
    #[arg(long, default_value_t = 116)]
    listeners: usize,
    /// Worker processes holding connections (more are used if the open-file limit demands).
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Extra processes that hold only listeners.
    #[arg(long, default_value_t = 4)]
    idle: usize,
    /// Source addresses 127.77.0.2 onwards to connect from.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=253))]
    sources: u8,
    /// Give up after this many seconds if the load is not built.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let result = if argv.get(1).map(String::as_str) == Some("__worker") {
        worker(&argv[2..])
    } else {
        parent()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kports-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn parent() -> Result<()> {
    let a = Args::parse();
    let limit = sys::raise_nofile().context("cannot raise the open-file limit")?;
    let workers = Plan::workers_for(a.conns, a.listeners, a.workers, limit)?;
    if workers > a.workers {
        eprintln!(
            "kports-loadgen: using {workers} workers: {} would exceed the open-file limit of {limit}",
            a.workers
        );
    }
    let plan = Plan {
        conns: a.conns,
        listeners: a.listeners,
        workers,
        idle: a.idle,
        sources: a.sources,
    };
    loadgen::parent_main(&plan, Duration::from_secs(a.timeout))
}

/// `__worker KIND INDEX CONNS LISTENERS SOURCES PARENT_PID MILLIS`: started by the parent only.
fn worker(args: &[String]) -> Result<()> {
    let [kind, index, conns, listeners, sources, parent, millis] = args else {
        anyhow::bail!("internal worker arguments are malformed");
    };
    let num = |s: &str| {
        s.parse::<u64>()
            .with_context(|| format!("internal worker argument {s:?} is not a number"))
    };
    let kind = if kind == "idle" {
        Kind::Idle
    } else {
        Kind::Worker
    };
    let share = Share {
        kind,
        index: num(index)? as usize,
        conns: num(conns)? as usize,
        listeners: num(listeners)? as usize,
    };
    let sources = u8::try_from(num(sources)?).context("too many sources")?;
    let parent = i32::try_from(num(parent)?).context("parent pid out of range")?;
    let deadline = Instant::now() + Duration::from_millis(num(millis)?);
    loadgen::worker_main(&share, sources, parent, deadline)
}
