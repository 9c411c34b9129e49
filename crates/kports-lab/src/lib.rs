//! `kports lab`: a practice Kubernetes cluster network made of Linux network namespaces.
//!
//! Bird's-eye view: [`plan`] turns `--nodes CP,WORKERS` into names and addresses (pure);
//! [`network`] builds the namespaces and links with `ip`; [`component`] knows each
//! component's kubeadm-style flags and what they mean for listeners (pure); [`supervise`] starts
//! etcd and the stand-ins ([`standin`]) inside the nodes; [`state`] records what runs so that
//! [`lifecycle`]'s `down` can remove it; [`fault`] and [`inject`] break and mend nodes;
//! [`status`] reports. [`sys`] is the one place that runs commands and system calls.
//!
//! Invariant: the lab never touches the host's network namespace. Every link is created
//! inside a lab namespace, the fabric bridge has no uplink and no namespace has a default
//! route, so lab traffic stays between lab namespaces.

pub mod component;
pub mod fault;
pub mod inject;
pub mod lifecycle;
pub mod network;
pub mod plan;
pub mod standin;
pub mod state;
pub mod status;
pub mod supervise;
pub mod sys;

use std::fmt;
use std::process::ExitCode;

use anyhow::bail;

use crate::inject::FaultAction;
use crate::plan::Counts;
use crate::state::{EtcdMode, Paths};

/// Arguments of `kports lab`.
#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
}

/// The `kports lab` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LabCommand {
    /// Create the lab and start its components
    Up {
        /// Control-plane nodes and workers, as CP,WORKERS
        #[arg(long, value_name = "CP,WORKERS", default_value_t = Counts::default())]
        nodes: Counts,
        /// Run the real etcd (/usr/bin/etcd) or a stand-in that only listens like it
        #[arg(long, value_enum, default_value_t = EtcdMode::Real)]
        etcd: EtcdMode,
        /// How many workers (w1 first) also run an etcd member joined to the cluster, as a node
        /// with the etcd and worker roles does
        #[arg(long, value_name = "N", default_value_t = 0)]
        etcd_workers: u8,
        /// Build the nodes' network only and start no component: nodes before Kubernetes is
        /// installed (for `kports preflight --lab`); start components later with `kports lab fault NODE start`
        #[arg(long)]
        no_components: bool,
    },
    /// Remove everything the lab made (also after a failed `up` or a killed kports)
    Down,
    /// Show the nodes, their addresses, components and faults
    ///
    /// Exits with 1 when a component has exited on its own, a node's namespace is missing, or
    /// namespaces of a lab are left over without one.
    Status {
        /// Output format
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Run a command inside a node (or a pod: cp1-pod, or the fabric)
    ///
    /// `kports` runs this same kports binary, installed or not. Exits with the command's
    /// status; 127 when the command does not exist, 126 when it cannot run, as a shell does.
    Exec {
        /// cp1, w1, w1-pod, fabric, ...
        node: String,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Break a node, or mend it: firewall rules, components, its link
    Fault {
        /// cp1, w1, ...
        node: String,
        #[command(subcommand)]
        action: FaultAction,
    },
}

/// Output formats of `kports lab status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// A mistake in what the user typed that only shows once the lab is consulted (an unknown
/// node, a component that does not run there): exit code 2, like a command-line error.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Writes `text` to standard output; a closed pipe (`kports lab status | head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write the output"))
        }
        _ => Ok(()),
    }
}

/// Exit code of usage errors.
const EXIT_USAGE: u8 = 2;

/// If this process was started as one of the lab's components (`argv[0]` is `kubelet`,
/// `kube-apiserver`, ...), runs that stand-in and returns its exit code. Call it first thing
/// in `main`; `None` means this is an ordinary kports run.
pub fn standin_dispatch() -> Option<ExitCode> {
    standin::dispatch()
}

/// Runs `kports lab ...`. Usage errors are printed here and give exit code 2; other errors are
/// returned for the caller to print (exit code 2 too).
pub fn run(args: &LabArgs) -> anyhow::Result<ExitCode> {
    match run_inner(args) {
        Err(e) if e.downcast_ref::<Usage>().is_some() => {
            eprintln!("kports: {e}");
            Ok(ExitCode::from(EXIT_USAGE))
        }
        other => other,
    }
}

fn run_inner(args: &LabArgs) -> anyhow::Result<ExitCode> {
    if !sys::is_root() {
        bail!("kports lab needs root: it creates network namespaces");
    }
    let paths = Paths::default();
    match &args.command {
        LabCommand::Up {
            nodes,
            etcd,
            etcd_workers,
            no_components,
        } => {
            if *etcd_workers > nodes.workers {
                return Err(Usage(format!(
                    "--etcd-workers {etcd_workers}: the lab has {} worker{}",
                    nodes.workers,
                    if nodes.workers == 1 { "" } else { "s" }
                ))
                .into());
            }
            let counts = Counts {
                etcd_workers: *etcd_workers,
                ..*nodes
            };
            let plan = lifecycle::up(&paths, counts, *etcd, !*no_components)?;
            let first = plan.nodes.first().map_or("cp1", |n| n.name.as_str());
            emit(&format!(
                "{}\nTry: kports lab exec {first} -- kports listen\n     kports lab exec {first} -- ss -tlnp\n     \
                 kports lab exec {first} -- ip addr show type bridge\n\
                 Remove the lab with: kports lab down\n",
                status::render(&status::collect(&paths)?)
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down => {
            let r = lifecycle::down(&paths)?;
            let mut text = if r.did_nothing() {
                "No lab was up; nothing to remove.\n".to_string()
            } else {
                format!(
                    "Lab removed: {} process(es) stopped, {} namespace(s) deleted, {} removed.\n",
                    r.killed,
                    r.namespaces,
                    paths.root.display()
                )
            };
            for s in &r.strangers {
                text.push_str(&format!(
                    "Note: process {s} was not started by kports lab and was left running; \
                     its namespace goes away when it exits.\n"
                ));
            }
            emit(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { output } => {
            let s = status::collect(&paths)?;
            match output {
                Output::Table => emit(&status::render(&s))?,
                Output::Json => {
                    let host = kports_linux::hostname();
                    emit(&(serde_json::to_string_pretty(&status::document(&host, &s)?)? + "\n"))?
                }
            }
            Ok(if s.unhealthy() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        LabCommand::Exec { node, command } => lifecycle::exec(&paths, node, command),
        LabCommand::Fault { node, action } => {
            emit(&(inject::apply(&paths, node, action)? + "\n"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
