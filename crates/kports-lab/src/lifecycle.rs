//! `kports lab up`, `down` and `exec`.
//!
//! `up` claims `/run/kports-lab` first (creating it fails if a lab, or its leftovers, exist),
//! records state as it goes, and tears everything down again if any step fails. `down` works
//! from what is on disk, not from memory: the pids in the state file (checked against their
//! start times), the `kports-` names under /run/netns, and the mounts under /run/kports-lab,
//! so it also cleans up after a failed `up` or a killed kports.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::component::Component;
use crate::plan::{Counts, Plan, netns_name};
use crate::state::{EtcdMode, Paths, State};
use crate::{Usage, network, supervise, sys};

/// Creates the lab; with `components` false, only its network (nodes before Kubernetes is
/// installed).
pub fn up(paths: &Paths, counts: Counts, etcd: EtcdMode, components: bool) -> anyhow::Result<Plan> {
    if components && etcd == EtcdMode::Real && !Path::new(supervise::ETCD_PATH).exists() {
        bail!(
            "etcd is not installed ({} is missing): install it (apt-get install etcd-server), \
             or run `kports lab up --etcd stand-in` for a stand-in that listens like etcd but stores nothing",
            supervise::ETCD_PATH
        );
    }
    let leftovers = sys::lab_namespaces();
    if paths.root.exists() || !leftovers.is_empty() {
        bail!("a lab is already up: run `kports lab down` first");
    }
    // Creating the directory is the claim: of two concurrent `up`s, one fails here.
    match fs::create_dir(&paths.root) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            bail!("a lab is already up: run `kports lab down` first")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", paths.root.display())),
    }
    let mut state = State::new(counts, etcd);
    let plan = state.plan();
    let result = state
        .save(paths)
        .and_then(|()| bring_up(paths, &mut state, &plan, components));
    if let Err(e) = result {
        let cleanup = match down(paths) {
            Ok(_) => "everything it had made was removed again".to_string(),
            Err(d) => format!("cleaning up failed too ({d:#}); run `kports lab down`"),
        };
        return Err(e.context(format!("kports lab up failed; {cleanup}")));
    }
    Ok(plan)
}

fn bring_up(paths: &Paths, state: &mut State, plan: &Plan, components: bool) -> anyhow::Result<()> {
    network::build(paths, plan)?;
    supervise::install_standins(paths)?;
    supervise::write_kubeconfigs(paths, plan)?;
    if !components {
        return Ok(());
    }
    // etcd first, then the API server, then its clients: each waits for the one before.
    let stages: [&[Component]; 3] = [
        &[Component::Etcd],
        &[Component::KubeApiserver],
        &[
            Component::KubeControllerManager,
            Component::KubeScheduler,
            Component::Kubelet,
            Component::KubeProxy,
        ],
    ];
    for stage in stages {
        let mut started = Vec::new();
        for node in &plan.nodes {
            for c in Component::for_node(node)
                .iter()
                .filter(|c| stage.contains(c))
            {
                supervise::start(paths, state, node, *c)?;
                if !started.contains(&node) {
                    started.push(node);
                }
            }
        }
        supervise::wait_ready(paths, state, &started)?;
    }
    Ok(())
}

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    pub killed: usize,
    pub namespaces: usize,
    /// Processes still inside a lab namespace that the lab did not start: left running.
    pub strangers: Vec<String>,
    pub removed_dir: bool,
}

impl DownReport {
    pub fn did_nothing(&self) -> bool {
        self.killed == 0 && self.namespaces == 0 && !self.removed_dir
    }
}

/// Removes everything the lab made; carries on past failures and reports them all at the end.
pub fn down(paths: &Paths) -> anyhow::Result<DownReport> {
    let mut report = DownReport::default();
    let mut errors: Vec<String> = Vec::new();

    match State::load(paths) {
        Ok(Some(state)) => {
            // Clients before servers: the reverse of the start order.
            for p in state.procs.iter().rev() {
                let Some(pid) = p.pid else { continue };
                match sys::stop_process(pid, p.start_time) {
                    Ok(true) => report.killed += 1,
                    Ok(false) => {}
                    Err(e) => errors.push(format!(
                        "{} on {} (pid {pid}): {e:#}",
                        p.component.name(),
                        p.node
                    )),
                }
            }
        }
        Ok(None) => {}
        // A damaged state file: its pids are unknown, the scan below still removes the rest.
        Err(e) => errors.push(format!("{e:#}")),
    }

    let namespaces = sys::lab_namespaces();
    report.strangers = strangers(&namespaces);
    for name in &namespaces {
        match sys::run("ip", &["netns", "del", name], None) {
            Ok(_) => report.namespaces += 1,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }

    for m in sys::mounts_under(&paths.root) {
        if let Err(e) = sys::unmount(&m) {
            errors.push(format!("{e:#}"));
        }
    }
    match fs::remove_dir_all(&paths.root) {
        Ok(()) => report.removed_dir = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("cannot remove {}: {e}", paths.root.display())),
    }

    if errors.is_empty() {
        Ok(report)
    } else {
        bail!(
            "kports lab down could not remove everything:\n  {}",
            errors.join("\n  ")
        )
    }
}

/// Processes (as `PID (NAME) in NAMESPACE`) whose network namespace is one of `namespaces`.
fn strangers(namespaces: &[String]) -> Vec<String> {
    let inodes: Vec<(u64, &String)> = namespaces
        .iter()
        .filter_map(|n| {
            Some((
                fs::metadata(Path::new(sys::RUN_NETNS).join(n)).ok()?.ino(),
                n,
            ))
        })
        .collect();
    let Ok(pids) = kports_linux::procfs::list_pids(Path::new("/proc")) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for pid in pids {
        let Ok(m) = fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if let Some((_, ns)) = inodes.iter().find(|(i, _)| *i == m.ino()) {
            // Zombies keep no namespace alive and are reaped by their parent.
            if crate::state::start_time(pid).is_none() {
                continue;
            }
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            v.push(format!("{pid} ({}) in {ns}", comm.trim()));
        }
    }
    v
}

/// Exit status of `lab exec` when the command does not exist, as a shell gives it.
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit status of `lab exec` when the command exists but cannot run (not executable, ...).
pub const EXIT_CANNOT_RUN: u8 = 126;

/// Runs `argv` inside a lab namespace, replacing this process; returns only on failure, with
/// 127 when the command does not exist and 126 when it cannot run, as a shell does. `kports`
/// is the binary that runs the lab, whether it is on `PATH` or not.
pub fn exec(
    paths: &Paths,
    target: &str,
    argv: &[String],
) -> anyhow::Result<std::process::ExitCode> {
    let state = State::load(paths)?
        .ok_or_else(|| anyhow::anyhow!("no lab is up: run `kports lab up` first"))?;
    let short = state.plan().target(target).map_err(Usage)?;
    let Some((program, args)) = argv.split_first() else {
        return Err(
            Usage("say what to run: kports lab exec NODE -- COMMAND [ARGS...]".into()).into(),
        );
    };
    // Found before entering the node, whose mounts may differ.
    let itself = (program == "kports")
        .then(std::env::current_exe)
        .and_then(Result::ok);
    let enter = sys::Enter::open(paths, &short).with_context(|| {
        format!(
            "{} is missing: the lab is broken; run `kports lab down`",
            netns_name(&short)
        )
    })?;
    enter
        .setns()
        .with_context(|| format!("cannot enter {}", netns_name(&short)))?;
    sys::private_sysfs()?;
    // The nodes resolve each other's names, as in a cluster (a lab from before the hosts file
    // existed has none).
    if paths.hosts().exists() {
        sys::bind_hosts(&paths.hosts())?;
    }
    let mut cmd = match &itself {
        Some(exe) => {
            let mut c = Command::new(exe);
            c.arg0(program);
            c
        }
        None => Command::new(program),
    };
    let e = cmd.args(args).exec();
    let (code, why) = if e.kind() == io::ErrorKind::NotFound {
        (EXIT_NOT_FOUND, "no such command".to_string())
    } else {
        (EXIT_CANNOT_RUN, e.to_string())
    };
    eprintln!(
        "kports: cannot run `{}`: {why}",
        kports_core::escape::untrusted(program)
    );
    Ok(std::process::ExitCode::from(code))
}
