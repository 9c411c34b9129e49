//! `kports preflight`: before Kubernetes is installed, every node holds the ports its roles will
//! serve (temporary TCP listeners and UDP responders: `kports preflight --hold` on the node),
//! every other node dials them (`kports probe` on that node), and each (source, target, port)
//! gets a verdict: `open`, `path-blocked` (bound on the target, not reached from the source),
//! `port-taken` (another process, named with its pid, already holds it on the target), or
//! `unknown` (kports could not run there, and says why).
//!
//! Nothing stays bound: a hold lasts until its standard input closes (the pipe from this
//! process: when it ends, is killed, or the user presses Ctrl-C, which reaches the holds too),
//! and at most its `--max-hold`. [`Holds`] closes every pipe when dropped, waits for the holds
//! to exit and kills, by pid, any that does not. Every command this module starts also gets
//! SIGTERM from the kernel when this process dies.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kports_probe::plan::PortSpec;
use kports_probe::temporary::{Held, HeldState, Holder};
use kports_probe::{Status, Transport};
use serde::{Deserialize, Serialize};

use crate::launch::{Launch, MAX_STDERR, Running, drain, end_with_us, one_line, wait_until};

/// One node of the preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// The first is the one a `--via` template's `{address}` gets.
    pub addresses: Vec<IpAddr>,
    /// The ports its roles will serve to other nodes, with the component that will.
    pub ports: Vec<(PortSpec, String)>,
}

/// Limits of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Each probe's timeout (`kports probe --timeout`).
    pub probe_timeout: Duration,
    /// How long a node may take to report what it holds, and to finish its probes.
    pub node_timeout: Duration,
    /// Nodes worked on at once.
    pub parallel: usize,
}

/// The verdict on one port between two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The target held it and the source reached it.
    Open,
    /// The target held it and the source did not reach it: a firewall or the network.
    PathBlocked,
    /// Another socket holds it on the target: Kubernetes's component could not bind it.
    PortTaken,
    /// kports could not find out (see `cause`).
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Open => "open",
            Verdict::PathBlocked => "path-blocked",
            Verdict::PortTaken => "port-taken",
            Verdict::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `kports preflight` (docs/schema.md). A port that the target could not hold has one
/// row, whose source is the target itself (it found out) and which has no probe fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub source: String,
    pub target: String,
    pub target_address: Option<IpAddr>,
    pub proto: Transport,
    pub port: u16,
    /// The probe's status (`kports probe`), when there was a probe.
    pub status: Option<Status>,
    pub errno: Option<String>,
    pub latency_ms: Option<f64>,
    pub component: Option<String>,
    pub verdict: Verdict,
    /// Who holds a taken port.
    pub holder: Option<Holder>,
    /// One line: why.
    pub cause: String,
}

/// What a node said it holds, or why it said nothing.
pub type HoldResult = Result<Vec<Held>, String>;
/// A source node's probe rows, or why it has none.
pub type DialResult = Result<Vec<Dial>, String>;

/// A `kports probe -o json` row, as read back from a node.
pub type Dial = kports_probe::row::Row;

/// The `items` of a document another kports printed.
#[derive(Debug, Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

/// Runs the preflight on `nodes`; rows in the order of the targets, then sources, then ports.
pub fn run(nodes: &[Target], launch: &Launch, opts: &Options) -> Vec<Row> {
    let mut holds = Holds::default();
    let mut held: Vec<HoldResult> = Vec::with_capacity(nodes.len());
    // The holds outlast every phase (each chunk's reports, then each chunk's probes) with a
    // margin, and no more: a hold whose input never closes still lets go then.
    let chunks = nodes.len().div_ceil(opts.parallel.max(1)) as u32;
    let phase = opts.node_timeout + opts.probe_timeout * 2;
    let max_hold = (phase * (2 * chunks + 1)).as_secs().clamp(60, 86_400);
    for chunk in nodes.chunks(opts.parallel.max(1)) {
        let first = holds.children.len();
        for n in chunk {
            holds.start(n, launch, max_hold);
        }
        let deadline = Instant::now() + opts.node_timeout;
        for i in first..holds.children.len() {
            held.push(holds.report(i, deadline));
        }
    }
    let mut dials: Vec<DialResult> = Vec::with_capacity(nodes.len());
    for (ci, chunk) in nodes.chunks(opts.parallel.max(1)).enumerate() {
        let base = ci * opts.parallel.max(1);
        let started: Vec<Vec<Running>> = chunk
            .iter()
            .enumerate()
            .map(|(k, n)| start_dials(base + k, n, nodes, &held, launch, opts))
            .collect();
        let deadline = Instant::now() + opts.node_timeout + opts.probe_timeout * 2;
        for (runs, node) in started.into_iter().zip(chunk) {
            let mut rows = Ok(Vec::new());
            for r in runs {
                let read = r.finish(deadline).and_then(|out| {
                    serde_json::from_slice::<Items<Dial>>(&out)
                        .map(|d| d.items)
                        .map_err(|e| {
                            format!("kports probe on {} printed no probe rows ({e})", node.name)
                        })
                });
                match (read, &mut rows) {
                    (Ok(mut v), Ok(all)) => all.append(&mut v),
                    (Err(e), Ok(_)) => rows = Err(e),
                    (_, Err(_)) => {}
                }
            }
            dials.push(rows);
        }
    }
    // A hold that ended while its peers dialled leaves their results unknown, not blocked.
    for (i, h) in held.iter_mut().enumerate() {
        if h.is_ok() && holds.ended(i) {
            *h = Err(format!(
                "the preflight on {} ended before its peers finished dialling: its ports were not held throughout",
                nodes[i].name
            ));
        }
    }
    drop(holds);
    join(nodes, &held, &dials)
}

/// The ports `n` holds, as `--ports` takes them.
fn bound_ports(held: &HoldResult) -> Vec<PortSpec> {
    match held {
        Ok(v) => v
            .iter()
            .filter(|h| h.state == HeldState::Bound)
            .map(|h| PortSpec {
                transport: h.proto,
                port: h.port,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn ports_arg(ports: &[PortSpec]) -> String {
    let v: Vec<String> = ports.iter().map(ToString::to_string).collect();
    v.join(",")
}

/// Starts the probes of source `si`: one `kports probe` per distinct set of ports its peers
/// hold, each naming the peers' addresses.
fn start_dials(
    si: usize,
    source: &Target,
    nodes: &[Target],
    held: &[HoldResult],
    launch: &Launch,
    opts: &Options,
) -> Vec<Running> {
    let mut groups: BTreeMap<Vec<PortSpec>, Vec<IpAddr>> = BTreeMap::new();
    for (ti, t) in nodes.iter().enumerate() {
        let ports = bound_ports(&held[ti]);
        if ti == si || ports.is_empty() {
            continue;
        }
        groups
            .entry(ports)
            .or_default()
            .extend(t.addresses.iter().copied());
    }
    let Some(&address) = source.addresses.first() else {
        return Vec::new();
    };
    groups
        .into_iter()
        .map(|(ports, addrs)| {
            let mut args = vec![
                "probe".to_string(),
                "-o".into(),
                "json".into(),
                "--timeout".into(),
                format!("{}ms", opts.probe_timeout.as_millis()),
                "--ports".into(),
                ports_arg(&ports),
            ];
            args.extend(addrs.iter().map(ToString::to_string));
            Running::start(launch, &source.name, address, &args, "kports probe")
        })
        .collect()
}

/// The nodes' holds. Dropping it ends every one: closes their standard input, waits a little,
/// then kills (by pid) those still running.
#[derive(Debug, Default)]
pub struct Holds {
    children: Vec<HoldChild>,
}

#[derive(Debug)]
struct HoldChild {
    node: String,
    child: Result<Child, String>,
    lines: Option<mpsc::Receiver<String>>,
    stderr: Option<mpsc::Receiver<Vec<u8>>>,
}

/// How long a hold may take to let go of its ports once its input closes.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

impl Holds {
    fn start(&mut self, n: &Target, launch: &Launch, max_hold: u64) {
        let ports: Vec<PortSpec> = n.ports.iter().map(|(p, _)| *p).collect();
        let args = vec![
            "preflight".to_string(),
            "--hold".into(),
            "--ports".into(),
            ports_arg(&ports),
            "--max-hold".into(),
            max_hold.to_string(),
        ];
        let child = match (n.addresses.first(), ports.is_empty()) {
            (_, true) => Err(format!("{} has no ports to hold", n.name)),
            (None, _) => Err(format!("{} has no address", n.name)),
            (Some(&a), false) => {
                let mut cmd = launch.command(&n.name, a, &args);
                end_with_us(&mut cmd);
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                cmd.spawn()
                    .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))
            }
        };
        let mut hc = HoldChild {
            node: n.name.clone(),
            child,
            lines: None,
            stderr: None,
        };
        if let Ok(c) = hc.child.as_mut() {
            hc.stderr = c.stderr.take().map(|e| drain(e, MAX_STDERR));
            if let Some(out) = c.stdout.take() {
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                });
                hc.lines = Some(rx);
            }
        }
        self.children.push(hc);
    }

    /// The report of hold `i`: its first line, before `deadline`.
    fn report(&mut self, i: usize, deadline: Instant) -> HoldResult {
        let hc = &mut self.children[i];
        let child = hc.child.as_mut().map_err(|e| e.clone())?;
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = hc.lines.as_ref().map(|rx| rx.recv_timeout(wait));
        match line {
            Some(Ok(l)) => serde_json::from_str::<Items<Held>>(&l)
                .map(|d| d.items)
                .map_err(|e| format!("the preflight on {} printed no report ({e})", hc.node)),
            _ => {
                let timed_out = matches!(child.try_wait(), Ok(None));
                let _ = child.kill();
                let _ = child.wait();
                let err = hc
                    .stderr
                    .take()
                    .and_then(|r| r.recv_timeout(Duration::from_secs(5)).ok())
                    .unwrap_or_default();
                Err(if timed_out {
                    format!("the preflight on {} did not report in time", hc.node)
                } else {
                    format!(
                        "the preflight on {} ended without a report: {}",
                        hc.node,
                        one_line(&err)
                    )
                })
            }
        }
    }
}

impl Holds {
    /// Whether hold `i` has exited (it should still be holding).
    fn ended(&mut self, i: usize) -> bool {
        match self.children.get_mut(i).map(|h| h.child.as_mut()) {
            Some(Ok(c)) => !matches!(c.try_wait(), Ok(None)),
            _ => true,
        }
    }
}

impl Drop for Holds {
    fn drop(&mut self) {
        for hc in &mut self.children {
            if let Ok(c) = hc.child.as_mut() {
                drop(c.stdin.take());
            }
        }
        let deadline = Instant::now() + RELEASE_WAIT;
        for hc in &mut self.children {
            if let Ok(c) = hc.child.as_mut() {
                wait_until(c, deadline);
            }
        }
    }
}

/// Joins what the nodes held with what their peers saw (pure).
pub fn join(nodes: &[Target], held: &[HoldResult], dials: &[DialResult]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (ti, t) in nodes.iter().enumerate() {
        let component = |spec: PortSpec| {
            t.ports
                .iter()
                .find(|(p, _)| *p == spec)
                .map(|(_, c)| c.clone())
        };
        let held_t = match held.get(ti) {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                for (spec, c) in &t.ports {
                    rows.push(Row {
                        source: t.name.clone(),
                        target: t.name.clone(),
                        target_address: None,
                        proto: spec.transport,
                        port: spec.port,
                        status: None,
                        errno: None,
                        latency_ms: None,
                        component: Some(c.clone()),
                        verdict: Verdict::Unknown,
                        holder: None,
                        cause: e.clone(),
                    });
                }
                continue;
            }
            None => continue,
        };
        for h in held_t.iter().filter(|h| h.state != HeldState::Bound) {
            let spec = PortSpec {
                transport: h.proto,
                port: h.port,
            };
            let c = component(spec);
            let what = c.as_deref().unwrap_or("Kubernetes");
            let (verdict, cause) = match (&h.state, &h.holder) {
                (HeldState::Taken, Some(holder)) => (
                    Verdict::PortTaken,
                    format!(
                        "{spec} is taken on {} by {holder}: {what} could not bind it",
                        t.name
                    ),
                ),
                (HeldState::Taken, None) => (
                    Verdict::PortTaken,
                    format!(
                        "{spec} is taken on {} (holder not found): {what} could not bind it",
                        t.name
                    ),
                ),
                _ => (
                    Verdict::Unknown,
                    format!(
                        "{} could not bind {spec}: {}",
                        t.name,
                        h.error.as_deref().unwrap_or("no reason given")
                    ),
                ),
            };
            rows.push(Row {
                source: t.name.clone(),
                target: t.name.clone(),
                target_address: None,
                proto: h.proto,
                port: h.port,
                status: None,
                errno: None,
                latency_ms: None,
                component: c,
                verdict,
                holder: h.holder.clone(),
                cause,
            });
        }
        let bound = bound_ports(&held[ti]);
        for (si, s) in nodes.iter().enumerate() {
            if si == ti || bound.is_empty() {
                continue;
            }
            match dials.get(si) {
                Some(Ok(d)) => {
                    for &addr in &t.addresses {
                        for &spec in &bound {
                            let found = d.iter().find(|d| {
                                d.target_address == addr
                                    && d.proto == spec.transport
                                    && d.port == spec.port
                            });
                            let mut row = dial_row(s, t, addr, spec, found, component(spec));
                            let on_v6 = held_t.iter().any(|h| {
                                h.proto == spec.transport && h.port == spec.port && h.ipv6
                            });
                            if addr.is_ipv6() && !on_v6 && row.verdict != Verdict::Open {
                                row.verdict = Verdict::Unknown;
                                row.cause = format!(
                                    "{} held {spec} on IPv4 only (no IPv6 there), so {addr} had \
                                     nothing to answer",
                                    t.name
                                );
                            }
                            rows.push(row);
                        }
                    }
                }
                Some(Err(e)) => {
                    for &addr in &t.addresses {
                        for &spec in &bound {
                            rows.push(Row {
                                source: s.name.clone(),
                                target: t.name.clone(),
                                target_address: Some(addr),
                                proto: spec.transport,
                                port: spec.port,
                                status: None,
                                errno: None,
                                latency_ms: None,
                                component: component(spec),
                                verdict: Verdict::Unknown,
                                holder: None,
                                cause: e.clone(),
                            });
                        }
                    }
                }
                None => {}
            }
        }
    }
    rows
}

fn dial_row(
    s: &Target,
    t: &Target,
    addr: IpAddr,
    spec: PortSpec,
    found: Option<&Dial>,
    component: Option<String>,
) -> Row {
    let (verdict, cause) = match found {
        None => (
            Verdict::Unknown,
            format!("{} did not report a probe of {addr} {spec}", s.name),
        ),
        Some(d) => judge(&s.name, &t.name, addr, spec, d),
    };
    Row {
        source: s.name.clone(),
        target: t.name.clone(),
        target_address: Some(addr),
        proto: spec.transport,
        port: spec.port,
        status: found.map(|d| d.status),
        errno: found.and_then(|d| d.errno.map(|e| e.name().into_owned())),
        latency_ms: found.map(|d| kports_probe::row::round_ms(d.latency_ms)),
        component,
        verdict,
        holder: None,
        cause,
    }
}

/// The verdict on a probe of a port the target held.
fn judge(source: &str, target: &str, addr: IpAddr, spec: PortSpec, d: &Dial) -> (Verdict, String) {
    let errno = d.errno.map_or("no errno".into(), |e| e.name());
    match d.status {
        Status::Open => (
            Verdict::Open,
            format!("{target} holds {spec}; {source} reaches it"),
        ),
        Status::Filtered => (
            Verdict::PathBlocked,
            format!(
                "{target} holds {spec} but {source} got no answer from {addr}: something drops it \
                 ({target}'s firewall, a security group or a router ACL)"
            ),
        ),
        Status::OpenFiltered => (
            Verdict::PathBlocked,
            format!(
                "{target} answers on {spec} but no answer reached {source} from {addr}: something \
                 drops it one way or both ({target}'s firewall, a security group or a router ACL)"
            ),
        ),
        Status::Refused | Status::Closed => (
            Verdict::PathBlocked,
            format!(
                "{target} holds {spec} but {source} was refused by {addr} ({errno}): a firewall \
                 rejects it, on {target} or on the way"
            ),
        ),
        Status::Unreachable => (
            Verdict::PathBlocked,
            format!(
                "{source} cannot reach {addr} ({errno}): no route, or an ICMP unreachable or \
                 prohibited on the way"
            ),
        ),
        Status::Unknown => (
            Verdict::Unknown,
            format!("{source} could not send the probe to {addr} {spec} ({errno})"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kports_probe::temporary::Process;

    fn spec(transport: Transport, port: u16) -> PortSpec {
        PortSpec { transport, port }
    }

    fn nodes() -> Vec<Target> {
        vec![
            Target {
                name: "cp1".into(),
                addresses: vec![IpAddr::from([192, 0, 2, 11])],
                ports: vec![
                    (spec(Transport::Tcp, 6443), "kube-apiserver".into()),
                    (spec(Transport::Tcp, 2379), "etcd".into()),
                ],
            },
            Target {
                name: "w1".into(),
                addresses: vec![IpAddr::from([192, 0, 2, 21])],
                ports: vec![(spec(Transport::Tcp, 10250), "kubelet".into())],
            },
        ]
    }

    fn held(port: u16, state: HeldState, holder: Option<Holder>) -> Held {
        Held {
            proto: Transport::Tcp,
            port,
            state,
            ipv6: true,
            error: None,
            holder,
        }
    }

    fn dial(addr: [u8; 4], port: u16, status: Status, errno: Option<i32>) -> Dial {
        Dial {
            source: "peer".into(),
            target: IpAddr::from(addr).to_string(),
            target_address: IpAddr::from(addr),
            proto: Transport::Tcp,
            port,
            status,
            errno: errno.map(kports_probe::Errno),
            latency_ms: Duration::from_millis(1),
            component: None,
        }
    }

    #[test]
    fn taken_blocked_and_open_are_told_apart() {
        let squatter = Holder::Processes {
            processes: vec![Process {
                name: "nginx".into(),
                pid: 4242,
            }],
        };
        let held = vec![
            Ok(vec![
                held(6443, HeldState::Bound, None),
                held(2379, HeldState::Taken, Some(squatter.clone())),
            ]),
            Ok(vec![held(10250, HeldState::Bound, None)]),
        ];
        let dials = vec![
            Ok(vec![dial([192, 0, 2, 21], 10250, Status::Filtered, None)]),
            Ok(vec![dial([192, 0, 2, 11], 6443, Status::Open, None)]),
        ];
        let rows = join(&nodes(), &held, &dials);
        let v: Vec<(&str, &str, u16, Verdict)> = rows
            .iter()
            .map(|r| (r.source.as_str(), r.target.as_str(), r.port, r.verdict))
            .collect();
        assert_eq!(
            v,
            [
                ("cp1", "cp1", 2379, Verdict::PortTaken),
                ("w1", "cp1", 6443, Verdict::Open),
                ("cp1", "w1", 10250, Verdict::PathBlocked),
            ]
        );
        assert_eq!(rows[0].holder, Some(squatter));
        assert!(
            rows[0].cause.contains("nginx (pid 4242)"),
            "{}",
            rows[0].cause
        );
        assert!(
            rows[0].cause.contains("etcd could not bind it"),
            "{}",
            rows[0].cause
        );
        assert!(rows[2].cause.contains("drops it"), "{}", rows[2].cause);
        assert_eq!(rows[2].component.as_deref(), Some("kubelet"));
    }

    #[test]
    fn a_node_that_failed_is_unknown_never_open() {
        let held = vec![
            Err("the preflight on cp1 did not report in time".to_string()),
            Ok(vec![held(10250, HeldState::Bound, None)]),
        ];
        let dials = vec![Err("kports probe on cp1 failed".to_string()), Ok(vec![])];
        let rows = join(&nodes(), &held, &dials);
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.verdict == Verdict::Unknown));
        assert_eq!(rows[0].cause, "the preflight on cp1 did not report in time");
        assert_eq!(rows[2].cause, "kports probe on cp1 failed");
    }

    #[test]
    fn refused_and_unreachable_are_blocked_paths_with_their_errno() {
        let held = vec![
            Ok(vec![
                held(6443, HeldState::Bound, None),
                held(2379, HeldState::Bound, None),
            ]),
            Ok(vec![]),
        ];
        let dials = vec![
            Ok(vec![]),
            Ok(vec![
                dial(
                    [192, 0, 2, 11],
                    6443,
                    Status::Refused,
                    Some(libc::ECONNREFUSED),
                ),
                dial(
                    [192, 0, 2, 11],
                    2379,
                    Status::Unreachable,
                    Some(libc::EHOSTUNREACH),
                ),
            ]),
        ];
        let rows = join(&nodes(), &held, &dials);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.verdict == Verdict::PathBlocked));
        assert!(rows[0].cause.contains("ECONNREFUSED"), "{}", rows[0].cause);
        assert!(rows[1].cause.contains("EHOSTUNREACH"), "{}", rows[1].cause);
    }

    #[test]
    fn an_ipv6_address_of_a_port_held_on_ipv4_only_is_unknown() {
        let mut n = nodes();
        n[1].addresses.push("2001:db8::21".parse().unwrap());
        let mut w1 = held(10250, HeldState::Bound, None);
        w1.ipv6 = false;
        let held = vec![Ok(vec![]), Ok(vec![w1])];
        let mut v6 = dial([0; 4], 10250, Status::Refused, Some(libc::ECONNREFUSED));
        v6.target_address = "2001:db8::21".parse().unwrap();
        let dials = vec![
            Ok(vec![dial([192, 0, 2, 21], 10250, Status::Open, None), v6]),
            Ok(vec![]),
        ];
        let rows = join(&n, &held, &dials);
        let v: Vec<Verdict> = rows.iter().map(|r| r.verdict).collect();
        assert_eq!(v, [Verdict::Open, Verdict::Unknown]);
        assert!(rows[1].cause.contains("IPv4 only"), "{}", rows[1].cause);
    }

    #[test]
    fn reads_a_probe_document() {
        let doc = r#"{"schema":3,"kind":"probe","hostname":"w1","items":[{"source":"w1",
            "target":"192.0.2.11","target_address":"192.0.2.11","proto":"udp","port":8472,
            "status":"open|filtered","errno":null,"latency_ms":2000.0,"component":null}],
            "warnings":[]}"#;
        let d: Items<Dial> = serde_json::from_str(doc).unwrap();
        assert_eq!(d.items[0].status, Status::OpenFiltered);
        assert_eq!(d.items[0].proto, Transport::Udp);
    }
}
