//! Starting, stopping and waiting for the lab's component processes.
//!
//! Stand-ins are the kports binary itself, hard-linked under each component's name in
//! `/run/kports-lab/bin`, so `/proc/PID/exe`, `comm` and `argv[0]` all read `kube-apiserver`
//! and so on, like the real programs. Each process starts in its node's network and UTS
//! namespaces, in a session of its own (it outlives `kports lab up`), and its pid goes into
//! the state file at once, before anything else can fail.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kports_linux::census::{self, OwnerScope, Query};

use crate::component::{self, Component, Dirs};
use crate::plan::{Node, Plan};
use crate::state::{EtcdMode, Paths, Proc, State};
use crate::sys::{self, Enter};

/// The real etcd, from Debian's etcd-server package.
pub const ETCD_PATH: &str = "/usr/bin/etcd";
/// How long a component may take to open its listeners (etcd needs about a second).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The one copy of the kports binary that the component names link to.
const STANDIN_FILE: &str = "kports-standin";

/// Copies the running kports binary once and links every component name to it.
pub fn install_standins(paths: &Paths) -> anyhow::Result<()> {
    let bin = paths.bin();
    fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let me = std::env::current_exe().context("cannot find the running kports binary")?;
    let copy = bin.join(STANDIN_FILE);
    fs::copy(&me, &copy)
        .with_context(|| format!("cannot copy {} to {}", me.display(), copy.display()))?;
    for c in Component::ALL {
        let link = bin.join(c.name());
        fs::hard_link(&copy, &link).with_context(|| format!("cannot create {}", link.display()))?;
    }
    Ok(())
}

/// Writes the kubeconfig files that point each node's components at the first control-plane
/// node's API server.
pub fn write_kubeconfigs(paths: &Paths, plan: &Plan) -> anyhow::Result<()> {
    let Some(cp) = plan.first_control_plane() else {
        bail!("the lab has no control-plane node")
    };
    for n in &plan.nodes {
        let dir = paths.kubeconfig_dir(&n.name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for c in Component::for_node(n) {
            if let Some(file) = c.kubeconfig_file() {
                let user = match c {
                    Component::Kubelet => format!("system:node:{}", n.name),
                    other => format!("system:{}", other.name()),
                };
                let path = dir.join(file);
                fs::write(&path, component::kubeconfig(IpAddr::V4(cp.ipv4), &user))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// The program that runs `c` in this lab.
fn program(paths: &Paths, etcd: EtcdMode, c: Component) -> PathBuf {
    match (c, etcd) {
        (Component::Etcd, EtcdMode::Real) => PathBuf::from(ETCD_PATH),
        _ => paths.bin().join(c.name()),
    }
}

/// The arguments `c` runs with on `node`.
pub fn args_for(
    paths: &Paths,
    plan: &Plan,
    node: &Node,
    c: Component,
    bind: Option<IpAddr>,
) -> Vec<String> {
    let etcd_data = paths.etcd_data();
    let kubeconfig = paths.kubeconfig_dir(&node.name);
    component::args(
        c,
        plan,
        node,
        bind,
        Dirs {
            etcd_data: &etcd_data,
            kubeconfig: &kubeconfig,
        },
    )
}

/// Starts `c` on `node` and records it in the state file before returning.
pub fn start(paths: &Paths, state: &mut State, node: &Node, c: Component) -> anyhow::Result<()> {
    let plan = state.plan();
    let bind = state.proc_mut(&node.name, c).and_then(|p| p.bind);
    let args = args_for(paths, &plan, node, c, bind);
    let program = program(paths, state.etcd, c);
    let enter = Enter::open(paths, &node.name)?;
    let log_path = paths.log(&node.name, c);
    if let Some(dir) = log_path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .context("cannot duplicate the log file handle")?;
    // The launcher (this binary) holds still until the pid is in the state file, then execs
    // the component in the same process; if kports dies first, the launcher exits instead, so
    // no process of the lab ever runs unrecorded.
    let launcher = paths.bin().join(STANDIN_FILE);
    let mut cmd = Command::new(&launcher);
    cmd.arg0(crate::standin::LAUNCHER)
        .arg(&program)
        .arg(c.name())
        .args(&args)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log2);
    // SAFETY: the closure runs in the child between fork and exec and makes only
    // async-signal-safe system calls (setns, setsid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            enter.setns()?;
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {} ({}) on {}",
            c.name(),
            program.display(),
            node.name
        )
    })?;
    let pid = child.id();
    let go = child.stdin.take();
    // The child runs on in its own session; whoever inherits it reaps it.
    drop(child);
    let start_time = crate::state::start_time(pid);
    let record = Proc {
        node: node.name.clone(),
        component: c,
        pid: Some(pid),
        start_time,
        bind,
    };
    match state.proc_mut(&node.name, c) {
        Some(p) => *p = record,
        None => state.procs.push(record),
    }
    state.save(paths)?;
    let mut go = go.context("the launcher has no standard input")?;
    go.write_all(crate::standin::GO).with_context(|| {
        format!(
            "cannot start {} on {}: its launcher went away",
            c.name(),
            node.name
        )
    })
}

/// Stops `c` on `node` if it runs, and records that it is stopped.
pub fn stop(paths: &Paths, state: &mut State, node: &str, c: Component) -> anyhow::Result<bool> {
    let Some(p) = state.proc_mut(node, c) else {
        return Ok(false);
    };
    let killed = match p.pid {
        Some(pid) => sys::stop_process(pid, p.start_time)
            .with_context(|| format!("cannot stop {} on {node}", c.name()))?,
        None => false,
    };
    p.pid = None;
    p.start_time = None;
    state.save(paths)?;
    Ok(killed)
}

/// Whether a listening socket at `local` serves `want` (a wildcard `want` is served by a
/// wildcard socket of either family: Go listens on `[::]` for `0.0.0.0`).
fn serves(want: SocketAddr, local: SocketAddr) -> bool {
    want.port() == local.port()
        && (want.ip() == local.ip() || (want.ip().is_unspecified() && local.ip().is_unspecified()))
}

/// The TCP listeners in the namespace `short` now.
pub fn listening(short: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let q = Query {
        udp: false,
        tcp_states: kports_linux::sockdiag::LISTEN,
        owners: OwnerScope::Skip,
        ..Query::default()
    };
    let census = kports_linux::netns::run_in(&sys::netns_path(short), move || census::sockets(&q))
        .with_context(|| format!("cannot enter {short}"))?
        .with_context(|| format!("cannot list the listeners of {short}"))?;
    Ok(census
        .sockets
        .iter()
        .map(|s| SocketAddr::new(s.local_address, s.local_port))
        .collect())
}

/// Waits until every recorded, running component of `nodes` listens where its flags say,
/// failing early (with its log) when one exits.
pub fn wait_ready(paths: &Paths, state: &State, nodes: &[&Node]) -> anyhow::Result<()> {
    let plan = state.plan();
    let deadline = Instant::now() + READY_TIMEOUT;
    for node in nodes {
        let procs: Vec<&Proc> = state
            .procs
            .iter()
            .filter(|p| p.node == node.name && p.pid.is_some())
            .collect();
        let mut want: Vec<(Component, SocketAddr)> = Vec::new();
        for p in &procs {
            let args = args_for(paths, &plan, node, p.component, p.bind);
            let addrs = component::listeners(p.component, &args).map_err(anyhow::Error::msg)?;
            want.extend(addrs.into_iter().map(|a| (p.component, a)));
        }
        loop {
            for p in &procs {
                if let Some(pid) = p.pid
                    && !crate::state::is_alive(pid, p.start_time)
                {
                    bail!(
                        "{} on {} exited at start; its log ({}) ends with:\n{}",
                        p.component.name(),
                        node.name,
                        paths.log(&node.name, p.component).display(),
                        log_tail(&paths.log(&node.name, p.component), 8)
                    );
                }
            }
            let have = listening(&node.name)?;
            let missing: Vec<String> = want
                .iter()
                .filter(|(_, w)| !have.iter().any(|h| serves(*w, *h)))
                .map(|(c, w)| format!("{} {w}", c.name()))
                .collect();
            if missing.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "on {}, still not listening after {} s: {}",
                    node.name,
                    READY_TIMEOUT.as_secs(),
                    missing.join(", ")
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// The last `n` lines of a log file, indented.
pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(f) = File::open(path) else {
        return "    (no log)".into();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    let from = lines.len().saturating_sub(n);
    let tail: Vec<String> = lines[from..].iter().map(|l| format!("    {l}")).collect();
    if tail.is_empty() {
        "    (empty log)".into()
    } else {
        tail.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_serve_wildcards_of_either_family() {
        let s = |t: &str| t.parse::<SocketAddr>().unwrap();
        assert!(serves(s("0.0.0.0:6443"), s("[::]:6443")));
        assert!(serves(s("0.0.0.0:6443"), s("0.0.0.0:6443")));
        assert!(!serves(s("0.0.0.0:6443"), s("127.0.0.1:6443")));
        assert!(!serves(s("127.0.0.1:10257"), s("[::]:10257")));
        assert!(serves(s("127.0.0.1:10257"), s("127.0.0.1:10257")));
        assert!(!serves(s("127.0.0.1:10257"), s("127.0.0.1:10259")));
    }

    #[test]
    fn log_tail_of_missing_file() {
        assert_eq!(
            log_tail(Path::new("/nonexistent/kports-lab.log"), 3),
            "    (no log)"
        );
    }
}
