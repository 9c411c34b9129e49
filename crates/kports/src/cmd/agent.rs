//! `kports agent`: the node's report and its probes of its peers kept fresh and served over
//! HTTP (kports-agent does the serving; this module gives it the round of work, the peers and
//! the process's lifetime).
//!
//! Each round builds the library's node report in this process (the census, the catalog, the
//! firewall, the node's settings), probes the peers this node must reach (chosen by rendezvous
//! hashing beyond a cluster size) with kports-probe, bounded in concurrency and time, and
//! serves the result at /api/v1/report as the document `kports report -o json --probe-peers`
//! prints (kports-cluster's node document, the probes inside it). Peers come from
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
use kports_cluster::report::{NodeDoc, Peer as ReportPeer};
use kports_core::catalog::Role;
use kports_node::{Linux, NodeIo, NodeReport, Options};
use std::collections::BTreeSet;
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
            None if args.kubeconfig.is_some() || discovery::in_a_pod() => {
                let (client, namespace) = match &args.kubeconfig {
                    Some(file) => (
                        discovery::kubeconfig_client(file)
                            .await
                            .map_err(anyhow::Error::msg)?,
                        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "kube-system".into()),
                    ),
                    None => (
                        discovery::in_cluster_client().map_err(anyhow::Error::msg)?,
                        discovery::own_namespace()
                            .context("cannot tell this pod's namespace (set POD_NAMESPACE)")?,
                    ),
                };
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

/// One round: this node's report and its probes of its peers, as one `kports report`
/// document (the probes inside it, and also served alone at /api/v1/probes).
async fn round(work: &Arc<Work>) -> Round {
    let w = Arc::clone(work);
    let known = work.peers.now();
    let probing = !matches!(work.peers, PeerSource::None);
    let done = tokio::task::spawn_blocking(move || report_and_probe(&w, known, probing)).await;
    let (report, probes, needs) = match done {
        Ok(r) => r,
        Err(e) => {
            let why = format!("the round failed: {e}");
            (Err(why.clone()), probing.then_some(Err(why)), None)
        }
    };
    if let Err(e) = &report {
        eprintln!("kports agent: {e}");
    }
    if let Some((needs, roles)) = needs {
        start_responders(work, &needs, &roles);
    }
    Round { report, probes }
}

type Outcomes = (
    Result<Report, String>,
    Option<Result<ProbeRun, String>>,
    Option<(Vec<Need>, BTreeSet<Role>)>,
);

/// Builds the node report, probes the peers and writes the document (blocking: the census,
/// the firewall and the probes' own runtime).
fn report_and_probe(work: &Work, mut known: Vec<Peer>, probing: bool) -> Outcomes {
    let started = Instant::now();
    let io = Linux::default();
    let node = match NodeReport::build(&io, &work.options) {
        Ok(n) => n,
        Err(e) => {
            let why = format!("reporting on the node: {e}");
            return (Err(why.clone()), probing.then_some(Err(why)), None);
        }
    };
    // This node's roles: the peer source's, else what its own report detected.
    let detected: BTreeSet<Role> = node.roles.value.iter().collect();
    match known.iter_mut().find(|p| p.name == work.me) {
        Some(me) if me.roles.is_empty() => me.roles = detected.clone(),
        Some(_) => {}
        None => known.push(Peer {
            name: work.me.clone(),
            roles: detected.clone(),
            addresses: Vec::new(),
            agent: None,
        }),
    }
    let my_roles = known
        .iter()
        .find(|p| p.name == work.me)
        .map(|p| p.roles.clone())
        .unwrap_or_default();
    let needs = kports_agent::peers::needs(&node.catalog, &node.cni.value);
    let targets = plan::targets(&work.me, &known, &work.policy, &needs);
    work.state.set_peers(Peers {
        gather: work.gather.clone(),
        sources: known
            .iter()
            .map(|p| Source {
                name: p.name.clone(),
                roles: p.roles.iter().copied().collect(),
                addresses: p.addresses.clone(),
                agent: p
                    .agent
                    .map(|a| kports_agent::gather::agent_addr(a, work.gather.port)),
            })
            .collect(),
    });
    let probes = probing.then(|| {
        let main_only = plan::main_address_only(&node.catalog);
        plan::probe(&work.me, &targets, &main_only, work.probe)
    });
    // The firewall is judged for packets from every peer probed, with the route back to it.
    let peers: Vec<ReportPeer> = targets
        .iter()
        .flat_map(|t| t.addresses.iter().copied())
        .map(|address| ReportPeer {
            address,
            route: io.route_to(address),
        })
        .collect();
    let mut doc = NodeDoc::from_report(&node, &work.me, &peers);
    doc.probes = match &probes {
        Some(Ok(run)) => Some(run.rows.clone()),
        _ => None,
    };
    let findings = doc
        .findings
        .iter()
        .map(|f| Finding {
            id: f.id.clone(),
            severity: f.severity,
        })
        .collect();
    let mut warnings = node.census_warnings.clone();
    warnings.extend(node.flag_warnings.iter().cloned());
    if let Some(fw) = &node.firewall {
        warnings.extend(fw.warnings.iter().cloned());
    }
    // The node's report alone, in an array (`items` is an array in every document).
    let document = serde_json::to_value(Document::new(
        kports_cluster::report::KIND,
        &node.hostname,
        [&doc],
        &warnings,
    ));
    let report = document
        .map(|document| Report {
            document,
            findings,
            took: started.elapsed(),
        })
        .map_err(|e| format!("writing the report: {e}"));
    (report, probes, Some((needs, my_roles)))
}

fn start_responders(work: &Work, needs: &[Need], roles: &BTreeSet<Role>) {
    let mut slot = work.responders.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_some() {
        return;
    }
    let v6 = std::net::UdpSocket::bind("[::]:0").is_ok();
    let mut addrs = responder::everywhere(&plan::udp_ports_of(needs, roles), v6);
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

/// Agents started together draw different delays.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
