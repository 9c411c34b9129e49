//! `kports agent`: the node's report and its probes of its peers kept fresh and served over
//! HTTP (kports-agent does the serving; this module gives it the round of work, the peers and
//! the process's lifetime).
//!
//! Each round builds the library's node report in this process (the census, the catalog, the
//! firewall, the node's settings: what `kports check` reads), serves its document at
//! /api/v1/report, then probes the peers this node must reach (chosen by rendezvous hashing
//! beyond a cluster size) with kports-probe, bounded in concurrency and time. Peers come from
//! `--inventory FILE`, or from the Kubernetes API when the agent runs in a pod. UDP responders
//! answer on the UDP ports peers need of this node and on the agent's own port, so their
//! probes see `open`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use kports_agent::discovery::{self, AgentPods, Discovered, Peer};
use kports_agent::gather::{Gather, Source};
use kports_agent::matrix::Peers;
use kports_agent::peers::{Need, Policy};
use kports_agent::refresh::{self, Schedule};
use kports_agent::responder::{self, Responders};
use kports_agent::serve::{ConnLimits, serve, terminate_signal};
use kports_agent::{AgentState, Auth, Finding, Limits, ProbeRun, Report, Round, app, plan};
use kports_core::catalog::{Catalog, Role, Roles};
use kports_node::{Linux, NodeReport, Options};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::cli::AgentArgs;
use crate::cmd::Outcome;
use crate::output::Document;

/// How long requests in flight may run after SIGTERM (the kubelet waits 30 s by default).
const GRACE: Duration = Duration::from_secs(10);
/// The longest the node's report may take before the round is abandoned.
const REPORT_TIMEOUT: Duration = Duration::from_secs(100);
/// Probes in flight at once: a round's probes are few (k peers x their ports).
const PROBE_CONCURRENCY: usize = 256;
/// How long a peer's agent has to answer when the matrix is gathered.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// Peers' agents asked at once for the matrix.
const GATHER_CONCURRENCY: usize = 32;

/// Where the peers come from.
enum PeerSource {
    Inventory(Vec<Peer>),
    Kubernetes(watch::Receiver<Discovered>),
    /// Neither: the agent reports on its node and probes nothing.
    None,
}

impl PeerSource {
    fn now(&self) -> Vec<Peer> {
        match self {
            PeerSource::Inventory(p) => p.clone(),
            PeerSource::Kubernetes(rx) => rx.borrow().peers.clone(),
            PeerSource::None => Vec::new(),
        }
    }
}

/// What the rounds share.
struct Work {
    me: String,
    peers: PeerSource,
    options: Options,
    probe: kports_probe::Options,
    policy: Policy,
    gather: Gather,
    state: AgentState,
    /// Where the HTTP API listens: a UDP responder answers there too.
    listen: std::net::SocketAddr,
    /// Started after the first report (they need the node's roles and CNI).
    responders: Mutex<Option<Responders>>,
}

pub fn run(args: &AgentArgs) -> Result<Outcome> {
    let auth = match &args.token_file {
        Some(f) => Auth::from_token_file(f)?,
        None => Auth::Disabled,
    };
    let me = match &args.node_name {
        Some(n) => n.clone(),
        None => std::env::var("NODE_NAME").unwrap_or_else(|_| kports_linux::hostname()),
    };
    let inventory = match &args.inventory {
        Some(f) => {
            let inv = kports_probe::inventory::read(f)?;
            if !inv.nodes.iter().any(|n| n.name == me) {
                bail!(
                    "this node ({me}) is not in {}: name it with --node-name",
                    f.display()
                );
            }
            Some(discovery::from_inventory(&inv))
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the agent's runtime")?;
    let schedule = Schedule {
        interval: Duration::from_secs(args.interval),
        round_timeout: REPORT_TIMEOUT + args.probe_timeout * 4 + Duration::from_secs(5),
        ..Schedule::default()
    };
    let token = match &auth {
        Auth::Token(t) => Some(t.clone()),
        Auth::Disabled => None,
    };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        let peers = match inventory {
            Some(p) => PeerSource::Inventory(p),
            None if discovery::in_a_pod() => {
                let client = discovery::in_cluster_client().map_err(anyhow::Error::msg)?;
                let namespace = discovery::own_namespace()
                    .context("cannot tell this pod's namespace (set POD_NAMESPACE)")?;
                let (tx, rx) = watch::channel(Discovered::default());
                let pods = AgentPods {
                    namespace,
                    selector: args.pod_selector.clone(),
                };
                tokio::spawn(discovery::run(client, pods, tx));
                PeerSource::Kubernetes(rx)
            }
            None => PeerSource::None,
        };
        eprintln!("kports agent: serving on http://{local}");
        let state = AgentState::new(&me);
        let router = app(state.clone(), auth, Limits::default());
        let work = Arc::new(Work {
            me,
            peers,
            options: Options {
                census_required: false,
                ..args.node.options()
            },
            probe: kports_probe::Options {
                timeout: args.probe_timeout,
                concurrency: PROBE_CONCURRENCY,
            },
            policy: Policy {
                full_mesh_up_to: args.full_mesh_up_to,
                ..Policy::default()
            },
            gather: Gather {
                port: args.peer_port.unwrap_or(local.port()),
                token,
                timeout: GATHER_TIMEOUT,
                concurrency: GATHER_CONCURRENCY,
            },
            state: state.clone(),
            listen: local,
            responders: Mutex::new(None),
        });
        let collector = move || {
            let work = work.clone();
            async move { round(&work).await }
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let refresher = tokio::spawn(refresh::run(
            collector,
            state,
            schedule,
            seed(),
            async move {
                let mut stopped = stopped;
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        let served = serve(
            listener,
            router,
            ConnLimits::default(),
            async {
                if let Err(e) = terminate_signal().await {
                    eprintln!("kports agent: cannot wait for SIGTERM ({e}); serving until killed");
                    std::future::pending::<()>().await;
                }
            },
            GRACE,
        )
        .await;
        let _ = stop.send(true);
        let _ = refresher.await;
        served?;
        eprintln!("kports agent: stopped");
        Ok(Outcome::default())
    })
}

/// One round: this node's report, then its probes of its peers.
async fn round(work: &Work) -> Round {
    let started = Instant::now();
    let options = work.options.clone();
    let me = work.me.clone();
    let built = tokio::task::spawn_blocking(move || report(&me, &options))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    let (report, node) = match built {
        Ok((document, findings, node)) => (
            Ok(Report {
                document,
                findings,
                took: started.elapsed(),
            }),
            Some(node),
        ),
        Err(e) => {
            eprintln!("kports agent: {e}");
            (Err(e), None)
        }
    };
    let probes = match (&work.peers, node) {
        (PeerSource::None, _) => None,
        (_, None) => Some(Err(
            "no report of this node, so no roles to probe for".into()
        )),
        (_, Some(node)) => Some(probe_peers(work, &node).await),
    };
    Round { report, probes }
}

/// What the probes need of the node's report: its roles and CNI.
struct NodeFacts {
    roles: Roles,
    cnis: Vec<String>,
    catalog: Catalog,
}

async fn probe_peers(work: &Work, node: &NodeFacts) -> Result<ProbeRun, String> {
    let mut known = work.peers.now();
    // This node's roles: the peer source's, else what its own report detected.
    if let Some(me) = known.iter_mut().find(|p| p.name == work.me) {
        if me.roles.is_empty() {
            me.roles = node.roles.iter().collect();
        }
    } else {
        known.push(Peer {
            name: work.me.clone(),
            roles: node.roles.iter().collect(),
            addresses: Vec::new(),
            agent: None,
        });
    }
    let needs: Vec<Need> = kports_agent::peers::needs(&node.catalog, &node.cnis);
    start_responders(work, &needs, &known);
    work.state.set_peers(Peers {
        gather: work.gather.clone(),
        sources: known
            .iter()
            .map(|p| Source {
                name: p.name.clone(),
                roles: p.roles.iter().copied().collect(),
                agent: p
                    .agent
                    .map(|a| kports_agent::gather::agent_addr(a, work.gather.port)),
            })
            .collect(),
    });
    let targets = plan::targets(&work.me, &known, &work.policy, &needs);
    let (me, opts) = (work.me.clone(), work.probe);
    tokio::task::spawn_blocking(move || plan::probe(&me, &targets, opts))
        .await
        .map_err(|e| e.to_string())?
}

fn start_responders(work: &Work, needs: &[Need], known: &[Peer]) {
    let mut slot = work.responders.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_some() {
        return;
    }
    let roles: std::collections::BTreeSet<Role> = known
        .iter()
        .find(|p| p.name == work.me)
        .map(|p| p.roles.clone())
        .unwrap_or_default();
    let v6 = std::net::UdpSocket::bind("[::]:0").is_ok();
    let mut addrs = responder::everywhere(&plan::udp_ports_of(needs, &roles), v6);
    // The agent's own port, on the address it serves on.
    addrs.push(work.listen);
    let r = responder::start(&addrs);
    for b in &r.bound {
        for why in &b.not_bound {
            eprintln!(
                "kports agent: no UDP responder on {why}: peers see udp/{} open|filtered",
                b.port
            );
        }
    }
    *slot = Some(r);
}

/// The node's report in this process: its document, findings and what the probes need.
fn report(me: &str, options: &Options) -> Result<(Value, Vec<Finding>, NodeFacts), String> {
    let node = NodeReport::build(&Linux::default(), options)
        .map_err(|e| format!("reporting on the node: {e}"))?;
    let checked = node.check(None, false);
    let findings = checked
        .report
        .findings
        .iter()
        .map(|f| Finding {
            id: f.id.as_str().to_string(),
            severity: f.severity,
        })
        .collect();
    let context = ServedContext {
        node: me,
        roles: &node.roles,
        cni: &node.cni,
        pre_install: false,
        fail_on: None,
        checked: &checked.report.checked,
    };
    let document = serde_json::to_value(
        Document::new(
            "check",
            &node.hostname,
            &checked.report.findings,
            &checked.warnings,
        )
        .with_context(serde_json::to_value(&context).map_err(|e| e.to_string())?),
    )
    .map_err(|e| e.to_string())?;
    let facts = NodeFacts {
        roles: node.roles.value,
        cnis: node.cni.value.clone(),
        catalog: node.catalog.clone(),
    };
    Ok((document, findings, facts))
}

/// The `context` of the served check document (as `kports check -o json` gives it, and the
/// node's name as the agent knows it).
#[derive(Serialize)]
struct ServedContext<'a> {
    node: &'a str,
    roles: &'a kports_core::role::Detected<Roles>,
    cni: &'a kports_core::role::Detected<Vec<String>>,
    pre_install: bool,
    fail_on: Option<kports_core::catalog::Severity>,
    checked: &'a [kports_core::check::Checked],
}

/// Agents started together draw different delays.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
