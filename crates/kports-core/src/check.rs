//! `kports check`: what listens on the node against what its role and CNI need.
//!
//! A pure function of the census (sockets, interfaces), the catalog, the role and the CNIs. For
//! every catalog port the node needs it asks: does it listen, and is the holder the component
//! that should (anything else is a conflict, as kubeadm preflight reports it)? Can the peers
//! that need it reach it (loopback only is an error when others must connect)? Is it bound
//! wider than needed, or open when it should be closed (the kubelet's read-only port, the old
//! insecure ports)? Then every listener no entry explains. Before kubeadm runs
//! (`--pre-install`) it asks only whether the role's ports are free, and who holds those that
//! are not.
//!
//! Ports and addresses that a running component's flags set win over the catalog's defaults;
//! the flag is then part of the evidence. Every finding carries the `ss` command that shows the
//! same thing, so an administrator can see it without kports.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::catalog::{
    BindScope, Catalog, Entry, Expect, Key, Network, PortRange, Protocol, Roles, Severity, Version,
};
use crate::finding::{
    Evidence, Finding, FindingId, Setting, SocketEvidence, sort_findings, ss_command,
};
use crate::flags;
use crate::resolve::Resolved;
use crate::{Interface, Owner, Proto, Socket, Warning};

/// The ports kubeadm preflight's PortOpenCheck tests (init and control-plane join).
const KUBEADM_PREFLIGHT_PORTS: &[u16] = &[6443, 10259, 10257, 10250, 2379, 2380];

/// What the check works on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Sockets of the node's network namespace: listeners at least, established connections
    /// help find the command lines of components.
    pub sockets: &'a [Socket],
    pub interfaces: &'a [Interface],
    pub catalog: &'a Catalog,
    /// The catalog's entries after the running components' flags ([`crate::resolve`]).
    pub resolved: &'a [Resolved],
    /// The node's roles, whose ports are checked (their union). Empty when unknown: then only
    /// ports no node should serve and unexplained listeners are checked.
    pub roles: Roles,
    pub cnis: &'a [String],
    /// Restricts entries to those of this Kubernetes version, when known.
    pub version: Option<Version>,
    /// Before kubeadm: are the role's ports free?
    pub pre_install: bool,
}

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every catalog port that was checked, in catalog order.
    pub checked: Vec<Checked>,
    /// Most severe first.
    pub findings: Vec<Finding>,
    /// What limited the check (unknown owners, unreadable flags, unknown role).
    pub warnings: Vec<Warning>,
}

impl Report {
    /// The most severe finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Adds findings made elsewhere (the firewall's), keeping the order (most severe first) and
    /// marking the ports they concern as `finding` in `checked`.
    pub fn merge(&mut self, findings: Vec<Finding>) {
        for f in &findings {
            for c in &mut self.checked {
                if f.entry.as_ref() == Some(&c.entry) {
                    c.result = PortResult::Finding;
                }
            }
        }
        self.findings.extend(findings);
        sort_findings(&mut self.findings);
    }
}

/// One catalog port as checked on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub entry: Key,
    /// The port or range after the component's flags and tunnel devices.
    pub port: PortRange,
    pub purpose: String,
    pub expect: Expect,
    /// `ok`, `finding`, or `off` (a flag turned the port off).
    pub result: PortResult,
    /// Listeners on the port now.
    pub listeners: Vec<SocketEvidence>,
    /// Flags and devices that set the port or address.
    pub configured_by: Vec<Setting>,
}

/// What the check concluded about one catalog port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortResult {
    /// As the catalog expects.
    Ok,
    /// At least one finding concerns it.
    Finding,
    /// A flag turned the port off (`--read-only-port=0`).
    Off,
}

impl PortResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PortResult::Ok => "ok",
            PortResult::Finding => "finding",
            PortResult::Off => "off",
        }
    }
}

/// How a socket relates to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Held by a component the entry names.
    Expected,
    /// Held by something else.
    Other,
    /// kports could not see who holds it.
    Unknown,
}

fn hold(e: &Entry, s: &Socket) -> Hold {
    let named = |n: &str| e.held_by.iter().any(|h| h == n);
    if s.component.is_some_and(named)
        || s.processes.iter().any(|p| named(&p.name))
        || (s.owner == Owner::Kernel && named("kernel"))
    {
        return Hold::Expected;
    }
    match s.owner {
        Owner::Unknown | Owner::None => Hold::Unknown,
        Owner::Process | Owner::Kernel => Hold::Other,
    }
}

/// The widest scope among `sockets`.
fn scope(sockets: &[&Socket]) -> BindScope {
    sockets
        .iter()
        .map(|s| flags::scope_of(&s.local_address))
        .max()
        .unwrap_or(BindScope::Loopback)
}

/// `nc (pid 4242)`, `the kernel`, `an unknown process`.
fn who(sockets: &[&Socket]) -> String {
    let mut names: Vec<String> = Vec::new();
    for s in sockets {
        let n = match s.owner {
            Owner::Process => s
                .processes
                .iter()
                .map(|p| match s.component {
                    Some(c) if c != p.name => format!("{} (pid {}, {c})", p.name, p.pid),
                    _ => format!("{} (pid {})", p.name, p.pid),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Owner::Kernel => match s.component {
                Some(c) => format!("the kernel ({c})"),
                None => "the kernel".to_string(),
            },
            Owner::Unknown | Owner::None => "an unknown process".to_string(),
        };
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names.join(", ")
}

/// `127.0.0.1, ::1`.
fn addresses(sockets: &[&Socket]) -> String {
    let mut v: Vec<String> = Vec::new();
    for s in sockets {
        let a = s.local_address.to_string();
        if !v.contains(&a) {
            v.push(a);
        }
    }
    v.join(", ")
}

fn peers(e: &Entry) -> String {
    let v: Vec<&str> = e
        .reached_by
        .iter()
        .filter(|p| **p != crate::catalog::Peer::SelfNode)
        .map(|p| p.describe())
        .collect();
    match v.len() {
        0 => "other hosts".to_string(),
        1 => v[0].to_string(),
        n => format!("{} and {}", v[..n - 1].join(", "), v[n - 1]),
    }
}

/// Settings whose flag is an address flag, for evidence about binds.
fn bind_settings(r: &Resolved) -> Vec<Setting> {
    let f = &r.entry.flags;
    let names: Vec<&str> = [&f.address, &f.endpoint, &f.urls]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    r.settings
        .iter()
        .filter(|s| names.iter().any(|n| s.value.starts_with(&format!("{n}="))))
        .cloned()
        .collect()
}

fn set_by(settings: &[Setting]) -> String {
    match settings.first() {
        Some(s) => format!(" (set by {})", s.value),
        None => String::new(),
    }
}

/// Where kubeadm keeps a component's settings: its static pod's manifest, the kubelet's
/// config file, kube-proxy's ConfigMap; none for a component kubeadm does not set up.
fn config_of(component: &str) -> Option<&'static str> {
    Some(match component {
        "kube-apiserver" => "/etc/kubernetes/manifests/kube-apiserver.yaml",
        "kube-controller-manager" => "/etc/kubernetes/manifests/kube-controller-manager.yaml",
        "kube-scheduler" => "/etc/kubernetes/manifests/kube-scheduler.yaml",
        "etcd" => "/etc/kubernetes/manifests/etcd.yaml",
        "kubelet" => "/var/lib/kubelet/config.yaml",
        "kube-proxy" => {
            "the kube-proxy ConfigMap (kubectl -n kube-system edit configmap kube-proxy)"
        }
        _ => return None,
    })
}

/// How to start a component that does not listen.
fn start_fix(component: &str) -> String {
    match component {
        "kubelet" | "containerd" | "crio" | "docker" => format!("systemctl start {component}"),
        c => match config_of(c) {
            Some(m) if m.starts_with("/etc/kubernetes/manifests/") => format!(
                "the kubelet runs {c} from {m}: `crictl ps -a --name {c}` and `crictl logs` show why it is not running"
            ),
            _ => format!(
                "start {c} (`kubectl -n kube-system get pods -o wide` shows its pod on this node)"
            ),
        },
    }
}

/// How to free a port held by `sockets`' processes.
fn stop_fix(sockets: &[&Socket], what: &str) -> String {
    let mut pids: Vec<u32> = sockets
        .iter()
        .flat_map(|s| s.processes.iter().map(|p| p.pid))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    if pids.is_empty() {
        return format!("stop what holds {what} (the kernel or a process kports cannot see)");
    }
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    format!(
        "stop {} (`kill {}`, or `systemctl stop` its unit), or move it off {what}",
        who(sockets),
        pids.join(" ")
    )
}

/// How to change where a component binds: the flag that set it, and the file it is in.
fn bind_fix(r: &Resolved, flags: &[Setting], to: &str) -> String {
    let e = &r.entry;
    let flag = flags
        .first()
        .and_then(|s| s.value.split_once('=').map(|(f, _)| f.to_string()))
        .or_else(|| e.flags.address.clone())
        .or_else(|| e.flags.endpoint.clone())
        .or_else(|| e.flags.urls.clone());
    let whose = e.flags.of.as_deref().unwrap_or(&e.component);
    let place = config_of(whose).map_or_else(|| format!("{whose}'s settings"), str::to_string);
    match flag {
        Some(f) => format!("set {f} to {to} in {place}, then restart {whose}"),
        None => format!(
            "bind {} to {to} in {place}, then restart {whose}",
            e.component
        ),
    }
}

/// Where a finding is: the entry (if any), the protocol and the port.
struct At {
    entry: Option<Key>,
    protocol: Protocol,
    port: PortRange,
}

impl At {
    fn entry(r: &Resolved, port: PortRange) -> At {
        At {
            entry: Some(r.entry.key()),
            protocol: r.entry.protocol,
            port,
        }
    }
}

struct Checker {
    findings: Vec<Finding>,
    /// Sockets (by address in the census slice) already in a finding.
    reported: HashSet<*const Socket>,
    /// Sockets some catalog entry accounts for.
    explained: HashSet<*const Socket>,
}

impl Checker {
    fn add(
        &mut self,
        id: FindingId,
        severity: Severity,
        message: String,
        at: At,
        sockets: &[&Socket],
        flags: Vec<Setting>,
    ) -> &mut Finding {
        for s in sockets {
            self.reported.insert(*s as *const Socket);
        }
        self.findings.push(Finding {
            id,
            severity,
            message,
            entry: at.entry,
            protocol: Some(at.protocol),
            port: Some(at.port),
            evidence: Evidence {
                sockets: sockets.iter().map(|s| SocketEvidence::of(s)).collect(),
                flags,
                ..Evidence::default()
            },
            command: ss_command(at.protocol, at.port),
            fix: id.fix().to_string(),
        });
        // Just pushed.
        let last = self.findings.len() - 1;
        &mut self.findings[last]
    }
}

/// Runs the check.
pub fn check(input: &Input<'_>) -> Report {
    let mut warnings = Vec::new();
    let resolved = input.resolved;
    let listeners: Vec<&Socket> = input.sockets.iter().filter(|s| s.is_listener()).collect();
    let mut ck = Checker {
        findings: Vec::new(),
        reported: HashSet::new(),
        explained: HashSet::new(),
    };
    let mut checked = Vec::new();

    if input.roles.is_empty() {
        warnings.push(Warning::new(
            "role-unknown",
            "the node's role is unknown (no Kubernetes component found): only ports no node should serve and unexplained listeners are checked; pass --role",
        ));
    }
    let unknown_owners = listeners
        .iter()
        .filter(|s| matches!(s.owner, Owner::Unknown))
        .count();
    if unknown_owners > 0 {
        warnings.push(Warning::new(
            "owners-unknown",
            format!(
                "{unknown_owners} {} no known owner: kports cannot tell a conflict from the expected component there (see the warning on unreadable processes)",
                if unknown_owners == 1 { "listener has" } else { "listeners have" }
            ),
        ));
    }

    for r in resolved {
        let promoted = backend_required(r);
        let r = promoted.as_ref().unwrap_or(r);
        let e = &r.entry;
        let Some(proto) = e.protocol.proto() else {
            continue;
        };
        let on_port: Vec<&Socket> = listeners
            .iter()
            .copied()
            .filter(|s| s.proto == proto && r.port.contains(s.local_port))
            .collect();
        for s in &on_port {
            if hold(e, s) != Hold::Other {
                ck.explained.insert(*s as *const Socket);
            }
        }
        if !selected(input, e) || r.not_in_use.is_some() {
            continue;
        }
        let before = ck.findings.len();
        if input.pre_install {
            pre_install(&mut ck, r, &on_port);
        } else {
            evaluate(&mut ck, r, &on_port);
        }
        let result = if ck.findings.len() > before {
            PortResult::Finding
        } else if r.off {
            PortResult::Off
        } else {
            PortResult::Ok
        };
        checked.push(Checked {
            entry: e.key(),
            port: r.port,
            purpose: e.purpose.clone(),
            expect: e.expect,
            result,
            listeners: on_port
                .iter()
                .filter(|s| {
                    r.port.is_single()
                        || e.expect == Expect::Reserved
                        || hold(e, s) == Hold::Expected
                })
                .map(|s| SocketEvidence::of(s))
                .collect(),
            configured_by: r.settings.clone(),
        });
    }

    if !input.pre_install {
        unexplained(&mut ck, &listeners, resolved);
    }
    secrets_on_command_lines(&mut ck, &listeners);
    let mut findings = ck.findings;
    sort_findings(&mut findings);
    Report {
        checked,
        findings,
        warnings,
    }
}

/// An optional port of a CNI backend that the node shows in use (its device, its process, the
/// CNI's configuration, `--cni CNI:BACKEND`) is required here: a copy of `r` that expects it
/// listening, a warning when it does not, with what shows the backend as evidence. `None` for
/// every other entry.
fn backend_required(r: &Resolved) -> Option<Resolved> {
    let shown = r.in_use.as_ref()?;
    if r.entry.expect != Expect::Optional || r.entry.backend.is_none() || r.not_in_use.is_some() {
        return None;
    }
    let mut p = r.clone();
    p.entry.expect = Expect::Listening;
    p.entry.missing = Severity::Warning;
    p.settings.push(Setting {
        pid: None,
        source: shown.clone(),
        value: format!(
            "{} backend {}",
            r.entry.cni.as_deref().unwrap_or("CNI"),
            r.entry.backend.as_deref().unwrap_or("")
        ),
    });
    Some(p)
}

/// Whether the node's role, CNI and version need `e` checked.
fn selected(input: &Input<'_>, e: &Entry) -> bool {
    if e.network != Network::Host || e.expect == Expect::None || e.protocol.proto().is_none() {
        return false;
    }
    if input.pre_install {
        return matches!(e.expect, Expect::Listening | Expect::Reserved)
            && e.applies_to(input.roles, input.cnis)
            && version_ok(input, e);
    }
    match e.expect {
        // A port no node should serve is checked on every node, whatever its roles (an etcd
        // member's kubelet can serve the read-only port too) and whatever the version.
        Expect::Absent => true,
        _ => e.applies_to(input.roles, input.cnis) && version_ok(input, e),
    }
}

fn version_ok(input: &Input<'_>, e: &Entry) -> bool {
    input.version.is_none_or(|v| e.versions.contains(v))
}

fn evaluate(ck: &mut Checker, r: &Resolved, on_port: &[&Socket]) {
    let e = &r.entry;
    let expected: Vec<&Socket> = on_port
        .iter()
        .copied()
        .filter(|s| hold(e, s) == Hold::Expected)
        .collect();
    let others: Vec<&Socket> = on_port
        .iter()
        .copied()
        .filter(|s| hold(e, s) == Hold::Other)
        .collect();
    let unknown = on_port.iter().any(|s| hold(e, s) == Hold::Unknown);
    match e.expect {
        Expect::Listening | Expect::Optional if r.port.is_single() => {
            if r.off {
                return;
            }
            let port = r.port.first;
            if !others.is_empty() {
                let severity = if e.expect == Expect::Listening {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                let kubeadm = if e.protocol == Protocol::Tcp
                    && KUBEADM_PREFLIGHT_PORTS.contains(&port)
                {
                    format!(
                        "; kubeadm preflight reports `[ERROR Port-{port}]: Port {port} is in use`"
                    )
                } else {
                    String::new()
                };
                let place = if expected.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", addresses(&others))
                };
                let message = format!(
                    "{}{place} is held by {}, not {}{kubeadm}",
                    e.label_at(port),
                    who(&others),
                    e.component
                );
                let fix = stop_fix(&others, &e.label_at(port));
                ck.add(
                    FindingId::PortConflict,
                    severity,
                    message,
                    At::entry(r, r.port),
                    &others,
                    Vec::new(),
                )
                .fix = fix;
            } else if expected.is_empty() && !unknown && e.expect == Expect::Listening {
                let message = format!(
                    "nothing listens on {}, where {} should serve: {}",
                    e.label_at(port),
                    e.component,
                    e.purpose
                );
                ck.add(
                    FindingId::PortNotListening,
                    e.missing,
                    message,
                    At::entry(r, r.port),
                    &[],
                    r.settings.clone(),
                )
                .fix = start_fix(&e.component);
            }
            if !expected.is_empty() {
                check_scope(ck, r, port, &expected);
            }
        }
        Expect::Listening | Expect::Optional => {
            // A range of optional ports (a runtime's random streaming port): check each bind.
            let mut by_port: BTreeMap<u16, Vec<&Socket>> = BTreeMap::new();
            for s in expected {
                by_port.entry(s.local_port).or_default().push(s);
            }
            for (port, socks) in by_port {
                check_scope(ck, r, port, &socks);
            }
        }
        Expect::Absent => {
            let hits: Vec<&Socket> = on_port
                .iter()
                .copied()
                .filter(|s| hold(e, s) != Hold::Other)
                .collect();
            if hits.is_empty() {
                return;
            }
            let id = e.finding.unwrap_or(FindingId::ForbiddenPortOpen);
            let port = hits[0].local_port;
            let label = e.label_at(port);
            let at = addresses(&hits);
            let message = match id {
                FindingId::ReadonlyPortOpen => format!(
                    "the kubelet's read-only port {label} is open on {at}: whoever reaches it reads every pod's spec without credentials; set readOnlyPort: 0"
                ),
                FindingId::LegacyInsecurePort => format!(
                    "{} still serves its insecure port {label} on {at} (gone since Kubernetes 1.23): health and metrics without authentication",
                    e.component
                ),
                _ => format!(
                    "{} listens on {label} ({at}), which should be closed: {}",
                    who(&hits),
                    e.purpose
                ),
            };
            let fix = match id {
                FindingId::LegacyInsecurePort => match (&e.flags.port, config_of(&e.component)) {
                    (Some(flag), Some(place)) => {
                        format!("set {flag}=0 in {place}, or upgrade {}", e.component)
                    }
                    _ => id.fix().to_string(),
                },
                FindingId::ReadonlyPortOpen => id.fix().to_string(),
                _ => stop_fix(&hits, &label),
            };
            ck.add(
                id,
                e.severity,
                message,
                At::entry(r, PortRange::single(port)),
                &hits,
                r.settings.clone(),
            )
            .fix = fix;
        }
        Expect::Reserved => {
            let mut by_port: BTreeMap<u16, Vec<&Socket>> = BTreeMap::new();
            for s in others {
                by_port.entry(s.local_port).or_default().push(s);
            }
            for (port, socks) in by_port {
                let message = format!(
                    "{} listens on {}, inside the {} {}: a Service given this port would shadow it",
                    who(&socks),
                    e.label_at(port),
                    e.purpose
                        .trim_end_matches(" (default range)")
                        .trim_end_matches(" over UDP"),
                    if r.port == e.port {
                        format!("range {}", r.port)
                    } else {
                        format!("range {} (from the API server's flags)", r.port)
                    },
                );
                let fix = stop_fix(&socks, &e.label_at(port));
                ck.add(
                    FindingId::PortConflict,
                    Severity::Warning,
                    message,
                    At::entry(r, PortRange::single(port)),
                    &socks,
                    r.settings.clone(),
                )
                .fix = fix;
            }
        }
        Expect::None => {}
    }
}

/// Loopback only where others must connect; wider than kubeadm binds it.
fn check_scope(ck: &mut Checker, r: &Resolved, port: u16, expected: &[&Socket]) {
    let e = &r.entry;
    let actual = scope(expected);
    let label = e.label_at(port);
    let flags = bind_settings(r);
    if actual == BindScope::Loopback && e.needed_scope() > BindScope::Loopback {
        let severity = if e.expect == Expect::Listening {
            Severity::Error
        } else {
            Severity::Warning
        };
        let message = format!(
            "{} listens on {label} on loopback only ({}){}: {} cannot reach it",
            e.component,
            addresses(expected),
            set_by(&flags),
            peers(e)
        );
        let fix = bind_fix(r, &flags, "the node's address");
        ck.add(
            FindingId::BoundLoopbackOnly,
            severity,
            message,
            At::entry(r, PortRange::single(port)),
            expected,
            flags,
        )
        .fix = fix;
    } else if actual > e.bind {
        let needs = if e.needed_scope() == BindScope::Loopback {
            "only this node needs it".to_string()
        } else {
            format!("only {} need it", peers(e))
        };
        let message = format!(
            "{} listens on {label} on {} ({}){}: {needs}; kubeadm binds it to {}",
            e.component,
            actual.describe(),
            addresses(expected),
            set_by(&flags),
            e.bind.describe()
        );
        let to = match e.bind {
            BindScope::Loopback => "127.0.0.1",
            BindScope::Node => "the node's address",
            BindScope::Any => "0.0.0.0",
        };
        let fix = bind_fix(r, &flags, to);
        ck.add(
            FindingId::BoundTooWide,
            e.too_wide,
            message,
            At::entry(r, PortRange::single(port)),
            expected,
            flags,
        )
        .fix = fix;
    }
}

fn pre_install(ck: &mut Checker, r: &Resolved, on_port: &[&Socket]) {
    let e = &r.entry;
    let mut by_port: BTreeMap<u16, Vec<&Socket>> = BTreeMap::new();
    for s in on_port {
        by_port.entry(s.local_port).or_default().push(s);
    }
    for (port, socks) in by_port {
        let holder = who(&socks);
        let (severity, message) = if !r.port.is_single() {
            (
                Severity::Warning,
                format!(
                    "{} in the {} range {} is in use by {holder}",
                    e.label_at(port),
                    e.purpose,
                    r.port
                ),
            )
        } else if e.protocol == Protocol::Tcp {
            (
                Severity::Error,
                format!(
                    "[ERROR Port-{port}]: Port {port} is in use by {holder} ({} needs it: {})",
                    e.component, e.purpose
                ),
            )
        } else {
            (
                Severity::Error,
                format!(
                    "{} is in use by {holder} ({} needs it: {}); kubeadm never checks UDP ports",
                    e.label_at(port),
                    e.component,
                    e.purpose
                ),
            )
        };
        let fix = stop_fix(&socks, &e.label_at(port));
        ck.add(
            FindingId::PortInUse,
            severity,
            message,
            At::entry(r, PortRange::single(port)),
            &socks,
            r.settings.clone(),
        )
        .fix = fix;
    }
}

/// One warning per process serving a port whose command line holds a secret, on its first
/// listener; the evidence is the redacted arguments.
fn secrets_on_command_lines(ck: &mut Checker, listeners: &[&Socket]) {
    let mut seen = HashSet::new();
    for s in listeners {
        for p in s.processes.iter() {
            if p.secrets.is_empty() || !seen.insert(p.pid) {
                continue;
            }
            let protocol = if s.proto == Proto::Tcp {
                Protocol::Tcp
            } else {
                Protocol::Udp
            };
            let at = At {
                entry: None,
                protocol,
                port: PortRange::single(s.local_port),
            };
            let message = format!(
                "{} (pid {}), serving {}/{}, has a secret on its command line ({}): every user of the node can read it in /proc/{}/cmdline; pass it in a file or the environment instead",
                p.name,
                p.pid,
                protocol.as_str(),
                s.local_port,
                p.secrets.join(", "),
                p.pid
            );
            let flags = p
                .secrets
                .iter()
                .map(|v| Setting {
                    pid: Some(p.pid),
                    source: p.name.clone(),
                    value: v.clone(),
                })
                .collect();
            let place = config_of(&p.name)
                .map_or_else(|| format!("{}'s unit or manifest", p.name), str::to_string);
            let fix = format!(
                "replace {} in {place} with the flag's file form (a token or password file), then restart {}",
                p.secrets.join(", "),
                p.name
            );
            ck.add(
                FindingId::SecretOnCommandLine,
                Severity::Warning,
                message,
                at,
                &[*s],
                flags,
            )
            .fix = fix;
            if let Some(f) = ck.findings.last_mut() {
                f.command = format!("ps -o args= -p {}", p.pid);
            }
        }
    }
}

/// Listeners that no catalog entry explains. A port the catalog gives to another component is
/// reported on its own; the rest are grouped per holder and protocol, so a process with a
/// hundred listeners is one finding, not a hundred.
fn unexplained(ck: &mut Checker, listeners: &[&Socket], resolved: &[Resolved]) {
    type Group<'s> = BTreeMap<(Proto, Option<u16>, Vec<u32>, bool), Vec<&'s Socket>>;
    let known_port = |proto: Proto, port: u16| -> Option<&Entry> {
        resolved
            .iter()
            .find(|r| {
                r.entry.protocol.proto() == Some(proto)
                    && r.port.is_single()
                    && r.port.first == port
            })
            .map(|r| &r.entry)
    };
    let mut groups: Group<'_> = BTreeMap::new();
    for s in listeners {
        let p = *s as *const Socket;
        if ck.explained.contains(&p) || ck.reported.contains(&p) {
            continue;
        }
        let pids = s.processes.iter().map(|p| p.pid).collect();
        let port = known_port(s.proto, s.local_port).map(|_| s.local_port);
        groups
            .entry((s.proto, port, pids, s.owner == Owner::Kernel))
            .or_default()
            .push(s);
    }
    for ((proto, known, pids, _), socks) in groups {
        let protocol = if proto == Proto::Tcp {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let mut ports: Vec<u16> = socks.iter().map(|s| s.local_port).collect();
        ports.sort_unstable();
        ports.dedup();
        let first = PortRange::single(ports[0]);
        let at = At {
            entry: None,
            protocol,
            port: first,
        };
        let message = match known.and_then(|p| known_port(proto, p)) {
            Some(e) => format!(
                "{} listens on {}/{} ({}); the catalog has that port as {}'s ({}), but this is not {}",
                who(&socks),
                protocol.as_str(),
                ports[0],
                addresses(&socks),
                e.component,
                e.purpose,
                e.component
            ),
            None if ports.len() == 1 => {
                format!(
                    "{} listens on {}/{} ({}), which no catalog entry explains",
                    who(&socks),
                    protocol.as_str(),
                    ports[0],
                    addresses(&socks)
                )
            }
            None => {
                let shown: Vec<String> = ports.iter().take(8).map(u16::to_string).collect();
                let more = if ports.len() > 8 {
                    format!(" and {} more", ports.len() - 8)
                } else {
                    String::new()
                };
                format!(
                    "{} listens on {} {} ports that no catalog entry explains: {}{more} ({})",
                    who(&socks),
                    ports.len(),
                    protocol.as_str().to_ascii_uppercase(),
                    shown.join(", "),
                    addresses(&socks)
                )
            }
        };
        let pid = pids.first().copied();
        let fix = format!(
            "none if {} is expected here (a --catalog file can name it); otherwise {}",
            who(&socks),
            stop_fix(&socks, "the port")
        );
        ck.add(
            FindingId::UnexplainedListener,
            Severity::Info,
            message,
            at,
            &socks,
            Vec::new(),
        )
        .fix = fix;
        if ports.len() > 1 {
            // One command for all of a process's ports.
            if let (Some(f), Some(pid)) = (ck.findings.last_mut(), pid) {
                let flag = if proto == Proto::Udp {
                    "-ulnp"
                } else {
                    "-tlnp"
                };
                f.command = format!("ss {flag} | grep 'pid={pid},'");
            }
        }
    }
}

impl Entry {
    /// `tcp/6443`, for one port of the entry.
    fn label_at(&self, port: u16) -> String {
        format!("{}/{port}", self.protocol.as_str())
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::ProcessRef;
    use crate::catalog::Catalog;
    use crate::catalog::Role;
    use crate::role::tests::{iface, listener};
    use std::sync::Arc;

    fn tcp(addr: &str, port: u16, c: &'static str, pid: u32) -> Socket {
        listener(Proto::Tcp, addr, port, c, pid, Some(c))
    }

    /// The socket's process with this command line, redacted as the census does.
    fn with_cmdline(mut s: Socket, cmdline: &str) -> Socket {
        let p = s.processes[0].as_ref().clone();
        let argv: Vec<String> = cmdline.split(' ').map(str::to_string).collect();
        let shown = crate::redact::redact(&argv);
        s.processes = Arc::new(vec![Arc::new(ProcessRef {
            cmdline: shown.text,
            secrets: shown.hidden,
            ..p
        })]);
        s
    }

    #[test]
    fn a_secret_on_a_command_line_is_a_warning_with_redacted_evidence() {
        let mut s = control_plane();
        s[0] = with_cmdline(
            s[0].clone(),
            "kube-apiserver --secure-port=6443 --oidc-client-secret=hunter2 --basic-auth=user:pw2",
        );
        // The same process on another socket gives one finding, not two.
        let again = s[0].clone();
        s.push(Socket {
            local_port: 6444,
            ..again
        });
        let r = run(&s, Role::ControlPlane.into(), false);
        let found: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| f.id == FindingId::SecretOnCommandLine)
            .collect();
        assert_eq!(found.len(), 1, "{:#?}", r.findings);
        let f = found[0];
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(
            f.message,
            "kube-apiserver (pid 100), serving tcp/6443, has a secret on its command line (--oidc-client-secret=REDACTED, --basic-auth=REDACTED): every user of the node can read it in /proc/100/cmdline; pass it in a file or the environment instead"
        );
        let values: Vec<&str> = f.evidence.flags.iter().map(|x| x.value.as_str()).collect();
        assert_eq!(
            values,
            ["--oidc-client-secret=REDACTED", "--basic-auth=REDACTED"]
        );
        assert_eq!(f.command, "ps -o args= -p 100");
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("hunter2") && !json.contains("pw2"), "{json}");

        let clean = run(&control_plane(), Role::ControlPlane.into(), false);
        assert!(
            clean
                .findings
                .iter()
                .all(|f| f.id != FindingId::SecretOnCommandLine)
        );
    }

    #[test]
    fn findings_say_what_fixes_them() {
        let fix_of = |r: &Report, id: FindingId| -> String {
            r.findings
                .iter()
                .find(|f| f.id == id)
                .map(|f| f.fix.clone())
                .unwrap_or_else(|| panic!("no {id}: {:#?}", r.findings))
        };
        // The kubelet stopped: start it.
        let mut s = worker();
        s.retain(|x| x.component != Some("kubelet"));
        let r = run(&s, Role::Worker.into(), false);
        assert_eq!(
            fix_of(&r, FindingId::PortNotListening),
            "systemctl start kubelet"
        );
        // The scheduler on every address: its flag, in its manifest.
        let mut s = control_plane();
        s[6] = tcp("0.0.0.0", 10259, "kube-scheduler", 400);
        let r = run(&s, Role::ControlPlane.into(), false);
        assert_eq!(
            fix_of(&r, FindingId::BoundTooWide),
            "set --bind-address to 127.0.0.1 in /etc/kubernetes/manifests/kube-scheduler.yaml, then restart kube-scheduler"
        );
        // Another process on the API server's port: stop it, by pid.
        let mut s = control_plane();
        s[0] = listener(Proto::Tcp, "0.0.0.0", 6443, "nc", 4242, None);
        let r = run(&s, Role::ControlPlane.into(), false);
        let f = fix_of(&r, FindingId::PortConflict);
        assert!(f.starts_with("stop nc (pid 4242) (`kill 4242`"), "{f}");
        // The read-only port.
        let mut s = worker();
        s.push(tcp("0.0.0.0", 10255, "kubelet", 500));
        let r = run(&s, Role::Worker.into(), false);
        assert!(fix_of(&r, FindingId::ReadonlyPortOpen).contains("readOnlyPort: 0"));
    }

    /// A control-plane node as kubeadm leaves it (one member, node address 192.0.2.11).
    fn control_plane() -> Vec<Socket> {
        vec![
            tcp("::", 6443, "kube-apiserver", 100),
            tcp("127.0.0.1", 2379, "etcd", 200),
            tcp("192.0.2.11", 2379, "etcd", 200),
            tcp("192.0.2.11", 2380, "etcd", 200),
            tcp("127.0.0.1", 2381, "etcd", 200),
            tcp("127.0.0.1", 10257, "kube-controller-manager", 300),
            tcp("127.0.0.1", 10259, "kube-scheduler", 400),
            tcp("::", 10250, "kubelet", 500),
            tcp("127.0.0.1", 10248, "kubelet", 500),
            tcp("::", 10256, "kube-proxy", 600),
            tcp("127.0.0.1", 10249, "kube-proxy", 600),
            listener(
                Proto::Udp,
                "0.0.0.0",
                8472,
                "kernel",
                0,
                Some("vxlan (kernel)"),
            ),
        ]
    }

    fn worker() -> Vec<Socket> {
        vec![
            tcp("::", 10250, "kubelet", 500),
            tcp("127.0.0.1", 10248, "kubelet", 500),
            tcp("::", 10256, "kube-proxy", 600),
            tcp("127.0.0.1", 10249, "kube-proxy", 600),
            listener(
                Proto::Udp,
                "0.0.0.0",
                8472,
                "kernel",
                0,
                Some("vxlan (kernel)"),
            ),
        ]
    }

    fn run(sockets: &[Socket], roles: Roles, pre_install: bool) -> Report {
        let catalog = Catalog::builtin().unwrap();
        let cnis = ["flannel".to_string()];
        let ifs = [iface("flannel.1", "vxlan", Some(8472))];
        let (resolved, _) = crate::resolve::resolve_all(&catalog, sockets, &ifs);
        check(&Input {
            sockets,
            interfaces: &ifs,
            catalog: &catalog,
            resolved: &resolved,
            roles,
            cnis: &cnis,
            version: None,
            pre_install,
        })
    }

    fn ids_of(r: &Report) -> Vec<(&'static str, Severity, String)> {
        r.findings
            .iter()
            .map(|f| (f.id.as_str(), f.severity, f.place()))
            .collect()
    }

    /// A worker whose CNI is `cni` with the devices `ifs`, and the kernel's UDP sockets `udp`.
    fn cni_worker(cni: &str, ifs: &[Interface], udp: &[u16]) -> Report {
        let mut sockets: Vec<Socket> = worker()
            .into_iter()
            .filter(|s| s.local_port != 8472)
            .collect();
        for p in udp {
            sockets.push(listener(Proto::Udp, "0.0.0.0", *p, "kernel", 0, None));
        }
        let catalog = Catalog::builtin().unwrap();
        let cnis = [cni.to_string()];
        let (resolved, _) = crate::resolve::resolve_all(&catalog, &sockets, ifs);
        check(&Input {
            sockets: &sockets,
            interfaces: ifs,
            catalog: &catalog,
            resolved: &resolved,
            roles: Role::Worker.into(),
            cnis: &cnis,
            version: None,
            pre_install: false,
        })
    }

    #[test]
    fn a_backend_shown_in_use_requires_its_optional_ports() {
        // flannel's WireGuard: 51820 is required; the VXLAN and udp backends are not checked.
        let wg = [iface("flannel-wg", "wireguard", None)];
        let r = cni_worker("flannel", &wg, &[]);
        assert_eq!(
            ids_of(&r),
            [(
                "port-not-listening",
                Severity::Warning,
                "udp/51820".to_string()
            )],
            "{:#?}",
            r.findings
        );
        let evidence = &r.findings[0].evidence.flags;
        assert!(
            evidence.iter().any(|s| s.source == "device flannel-wg"),
            "{evidence:#?}"
        );
        assert!(
            r.checked
                .iter()
                .all(|c| c.port.first != 8472 && c.port.first != 8285),
            "{:#?}",
            r.checked
        );
        // The kernel's socket on 51820: nothing to report.
        assert_eq!(ids_of(&cni_worker("flannel", &wg, &[51820])), []);
        // Calico over VXLAN: 4789 required; BGP is not (no BIRD), nor WireGuard.
        let vx = [iface("vxlan.calico", "vxlan", Some(4789))];
        let r = cni_worker("calico", &vx, &[]);
        assert_eq!(
            ids_of(&r),
            [(
                "port-not-listening",
                Severity::Warning,
                "udp/4789".to_string()
            )],
            "{:#?}",
            r.findings
        );
        assert_eq!(ids_of(&cni_worker("calico", &vx, &[4789])), []);
        // Cilium over Geneve: 6081, not 8472.
        let gv = [iface("cilium_geneve", "geneve", Some(6081))];
        let r = cni_worker("cilium", &gv, &[]);
        let ids = ids_of(&r);
        assert!(
            ids.contains(&(
                "port-not-listening",
                Severity::Warning,
                "udp/6081".to_string()
            )),
            "{ids:?}"
        );
        assert!(!ids.iter().any(|(_, _, p)| p == "udp/8472"), "{ids:?}");
    }

    #[test]
    fn clean_control_plane_has_no_finding() {
        let r = run(&control_plane(), Role::ControlPlane.into(), false);
        assert_eq!(ids_of(&r), [], "{:#?}", r.findings);
        assert!(
            r.checked.iter().all(|c| c.result == PortResult::Ok),
            "{:#?}",
            r.checked
        );
        let labels: Vec<String> = r
            .checked
            .iter()
            .map(|c| format!("{}/{}", c.entry.protocol.as_str(), c.port))
            .collect();
        for p in [
            "tcp/6443",
            "tcp/2379",
            "tcp/2380",
            "tcp/10250",
            "udp/8472",
            "udp/30000-32767",
            "tcp/10255",
        ] {
            assert!(
                labels.contains(&p.to_string()),
                "{p} not checked: {labels:?}"
            );
        }
    }

    #[test]
    fn clean_worker_has_no_finding() {
        let r = run(&worker(), Role::Worker.into(), false);
        assert_eq!(ids_of(&r), []);
        assert!(!r.checked.iter().any(|c| c.entry.port.first == 6443));
    }

    #[test]
    fn apiserver_on_loopback_only_is_an_error() {
        let mut s = control_plane();
        s[0] = with_cmdline(
            tcp("127.0.0.1", 6443, "kube-apiserver", 100),
            "kube-apiserver --bind-address=127.0.0.1 --secure-port=6443",
        );
        let r = run(&s, Role::ControlPlane.into(), false);
        assert_eq!(
            ids_of(&r),
            [("bound-loopback-only", Severity::Error, "tcp/6443".into())]
        );
        let f = &r.findings[0];
        assert_eq!(
            f.message,
            "kube-apiserver listens on tcp/6443 on loopback only (127.0.0.1) (set by --bind-address=127.0.0.1): \
             control-plane nodes, other nodes, load balancers and clients cannot reach it"
        );
        assert_eq!(f.command, "ss -tlnp 'sport = :6443'");
        assert_eq!(
            f.evidence.flags,
            [Setting {
                pid: Some(100),
                source: "kube-apiserver".into(),
                value: "--bind-address=127.0.0.1".into()
            }]
        );
        assert_eq!(f.evidence.sockets.len(), 1);
        assert_eq!(
            f.entry.as_ref().map(ToString::to_string).as_deref(),
            Some("kube-apiserver tcp/6443")
        );
    }

    #[test]
    fn controller_manager_on_a_wildcard_is_a_warning() {
        let mut s = control_plane();
        s[5] = tcp("0.0.0.0", 10257, "kube-controller-manager", 300);
        let r = run(&s, Role::ControlPlane.into(), false);
        assert_eq!(
            ids_of(&r),
            [("bound-too-wide", Severity::Warning, "tcp/10257".into())]
        );
        assert_eq!(
            r.findings[0].message,
            "kube-controller-manager listens on tcp/10257 on every address (0.0.0.0): only this node needs it; kubeadm binds it to loopback only"
        );
    }

    #[test]
    fn etcd_peer_port_on_a_wildcard_is_a_warning_and_client_port_only_info() {
        let mut s = control_plane();
        s[3] = tcp("0.0.0.0", 2380, "etcd", 200);
        s[1] = tcp("::", 2379, "etcd", 200);
        s.remove(2);
        let r = run(&s, Role::ControlPlane.into(), false);
        assert_eq!(
            ids_of(&r),
            [
                ("bound-too-wide", Severity::Warning, "tcp/2380".into()),
                ("bound-too-wide", Severity::Info, "tcp/2379".into())
            ]
        );
        assert_eq!(
            r.findings[0].message,
            "etcd listens on tcp/2380 on every address (0.0.0.0): only the other etcd members need it; kubeadm binds it to the node's address"
        );
    }

    #[test]
    fn readonly_port_open_is_a_warning() {
        let mut s = worker();
        s.push(tcp("::", 10255, "kubelet", 500));
        let r = run(&s, Role::Worker.into(), false);
        assert_eq!(
            ids_of(&r),
            [("readonly-port-open", Severity::Warning, "tcp/10255".into())]
        );
        assert_eq!(
            r.findings[0].message,
            "the kubelet's read-only port tcp/10255 is open on ::: whoever reaches it reads every pod's spec without credentials; set readOnlyPort: 0"
        );
    }

    #[test]
    fn readonly_port_off_by_flag_is_off() {
        let mut s = worker();
        s[0] = with_cmdline(
            s[0].clone(),
            "kubelet --read-only-port=0 --config=/var/lib/kubelet/config.yaml",
        );
        let r = run(&s, Role::Worker.into(), false);
        assert_eq!(ids_of(&r), []);
        let ro = r
            .checked
            .iter()
            .find(|c| c.entry.port.first == 10255)
            .unwrap();
        assert_eq!(ro.result, PortResult::Off);
        assert_eq!(ro.configured_by[0].value, "--read-only-port=0");
    }

    #[test]
    fn legacy_insecure_ports_are_warnings() {
        let mut s = control_plane();
        s.push(tcp("127.0.0.1", 10251, "kube-scheduler", 400));
        s.push(tcp("::", 10252, "kube-controller-manager", 300));
        let r = run(&s, Role::ControlPlane.into(), false);
        assert_eq!(
            ids_of(&r),
            [
                (
                    "legacy-insecure-port",
                    Severity::Warning,
                    "tcp/10251".into()
                ),
                (
                    "legacy-insecure-port",
                    Severity::Warning,
                    "tcp/10252".into()
                )
            ]
        );
    }

    #[test]
    fn port_held_by_nc_is_a_conflict() {
        let mut s = control_plane();
        s[0] = listener(Proto::Tcp, "0.0.0.0", 6443, "nc", 4242, None);
        let r = run(&s, Role::ControlPlane.into(), false);
        assert_eq!(
            ids_of(&r),
            [("port-conflict", Severity::Error, "tcp/6443".into())]
        );
        assert_eq!(
            r.findings[0].message,
            "tcp/6443 is held by nc (pid 4242), not kube-apiserver; kubeadm preflight reports `[ERROR Port-6443]: Port 6443 is in use`"
        );
        assert_eq!(r.findings[0].evidence.sockets[0].processes[0].pid, 4242);
    }

    #[test]
    fn stopped_component_is_not_listening() {
        let mut s = control_plane();
        s.retain(|x| x.component != Some("kube-scheduler"));
        let r = run(&s, Role::ControlPlane.into(), false);
        assert_eq!(
            ids_of(&r),
            [("port-not-listening", Severity::Error, "tcp/10259".into())]
        );
        assert_eq!(
            r.findings[0].message,
            "nothing listens on tcp/10259, where kube-scheduler should serve: kube-scheduler HTTPS: health and metrics"
        );
        // kube-proxy stopped: a warning (clusters without kube-proxy exist).
        let mut s = worker();
        s.retain(|x| x.component != Some("kube-proxy"));
        let r = run(&s, Role::Worker.into(), false);
        assert_eq!(
            ids_of(&r),
            [
                ("port-not-listening", Severity::Warning, "tcp/10249".into()),
                ("port-not-listening", Severity::Warning, "tcp/10256".into())
            ]
        );
    }

    #[test]
    fn flags_move_the_checked_port() {
        let mut s = control_plane();
        s[0] = with_cmdline(
            tcp("::", 8443, "kube-apiserver", 100),
            "kube-apiserver --secure-port=8443 --service-node-port-range=20000-22767",
        );
        s.push(listener(Proto::Tcp, "0.0.0.0", 21000, "python3", 77, None));
        s.push(listener(Proto::Tcp, "0.0.0.0", 31000, "python3", 78, None));
        let r = run(&s, Role::ControlPlane.into(), false);
        let found = ids_of(&r);
        assert_eq!(
            found,
            [
                ("port-conflict", Severity::Warning, "tcp/21000".into()),
                ("unexplained-listener", Severity::Info, "tcp/31000".into())
            ]
        );
        assert_eq!(
            r.findings[0].message,
            "python3 (pid 77) listens on tcp/21000, inside the NodePort Services range 20000-22767 (from the API server's flags): a Service given this port would shadow it"
        );
        let api = r
            .checked
            .iter()
            .find(|c| c.entry.component == "kube-apiserver")
            .unwrap();
        assert_eq!((api.port.first, api.result), (8443, PortResult::Ok));
    }

    #[test]
    fn etcd_urls_flag_moves_the_ports() {
        let etcd = "etcd --listen-client-urls=https://127.0.0.1:12379,https://192.0.2.11:12379 --listen-peer-urls=https://192.0.2.11:12380";
        let mut s = control_plane();
        s[1] = with_cmdline(tcp("127.0.0.1", 12379, "etcd", 200), etcd);
        s[2] = with_cmdline(tcp("192.0.2.11", 12379, "etcd", 200), etcd);
        s[3] = with_cmdline(tcp("192.0.2.11", 12380, "etcd", 200), etcd);
        let r = run(&s, Role::ControlPlane.into(), false);
        assert_eq!(ids_of(&r), []);
        let ports: Vec<u16> = r
            .checked
            .iter()
            .filter(|c| c.entry.component == "etcd")
            .map(|c| c.port.first)
            .collect();
        assert_eq!(ports, [12379, 12380, 2381]);
    }

    #[test]
    fn flannel_port_comes_from_the_device() {
        let mut s = worker();
        s[4] = listener(
            Proto::Udp,
            "0.0.0.0",
            4789,
            "kernel",
            0,
            Some("vxlan (kernel)"),
        );
        let catalog = Catalog::builtin().unwrap();
        let cnis = ["flannel".to_string()];
        let ifs = [iface("flannel.1", "vxlan", Some(4789))];
        let (resolved, _) = crate::resolve::resolve_all(&catalog, &s, &ifs);
        let r = check(&Input {
            sockets: &s,
            interfaces: &ifs,
            catalog: &catalog,
            resolved: &resolved,
            roles: Role::Worker.into(),
            cnis: &cnis,
            version: None,
            pre_install: false,
        });
        assert_eq!(ids_of(&r), []);
        let f = r
            .checked
            .iter()
            .find(|c| c.entry.component == "flannel" && c.entry.port.first == 8472)
            .unwrap();
        assert_eq!(f.port.first, 4789);
        assert_eq!(f.configured_by[0].value, "vxlan dstport 4789");
    }

    #[test]
    fn unexplained_listeners_are_info_grouped_by_port() {
        let mut s = worker();
        s.push(listener(Proto::Tcp, "0.0.0.0", 8000, "python3", 77, None));
        s.push(listener(Proto::Tcp, "::", 8000, "python3", 77, None));
        s.push(listener(Proto::Tcp, "0.0.0.0", 2379, "python3", 78, None));
        let r = run(&s, Role::Worker.into(), false);
        assert_eq!(
            ids_of(&r),
            [
                ("unexplained-listener", Severity::Info, "tcp/2379".into()),
                ("unexplained-listener", Severity::Info, "tcp/8000".into())
            ]
        );
        assert_eq!(
            r.findings[1].message,
            "python3 (pid 77) listens on tcp/8000 (0.0.0.0, ::), which no catalog entry explains"
        );
        assert_eq!(r.findings[1].evidence.sockets.len(), 2);
        assert_eq!(
            r.findings[0].message,
            "python3 (pid 78) listens on tcp/2379 (0.0.0.0); the catalog has that port as etcd's (etcd client API (gRPC over TLS)), but this is not etcd"
        );
    }

    #[test]
    fn many_unexplained_ports_of_one_process_are_one_finding() {
        let mut s = worker();
        for p in 0..12 {
            s.push(listener(
                Proto::Tcp,
                "127.77.0.1",
                40000 + p,
                "lg-worker",
                9882,
                None,
            ));
        }
        let r = run(&s, Role::Worker.into(), false);
        assert_eq!(
            ids_of(&r),
            [("unexplained-listener", Severity::Info, "tcp/40000".into())]
        );
        let f = &r.findings[0];
        assert_eq!(
            f.message,
            "lg-worker (pid 9882) listens on 12 TCP ports that no catalog entry explains: \
             40000, 40001, 40002, 40003, 40004, 40005, 40006, 40007 and 4 more (127.77.0.1)"
        );
        assert_eq!(f.evidence.sockets.len(), 12);
        assert_eq!(f.command, "ss -tlnp | grep 'pid=9882,'");
    }

    #[test]
    fn unknown_role_checks_only_forbidden_ports_and_unexplained_listeners() {
        let mut s = worker();
        s.push(tcp("0.0.0.0", 10255, "kubelet", 500));
        let r = run(&s, Roles::NONE, false);
        assert_eq!(
            ids_of(&r),
            [("readonly-port-open", Severity::Warning, "tcp/10255".into())]
        );
        assert!(r.warnings.iter().any(|w| w.code == "role-unknown"));
    }

    /// A worker that is also an etcd member (RKE's etcd and worker roles on one node).
    fn worker_and_etcd() -> Vec<Socket> {
        let mut s = worker();
        s.push(tcp("192.0.2.21", 2379, "etcd", 700));
        s.push(tcp("192.0.2.21", 2380, "etcd", 700));
        s.push(tcp("127.0.0.1", 2381, "etcd", 700));
        s
    }

    #[test]
    fn roles_compose_and_their_ports_are_judged_together() {
        let both: Roles = [Role::Worker, Role::Etcd].into_iter().collect();
        let clean = run(&worker_and_etcd(), both, false);
        assert_eq!(ids_of(&clean), [], "{:#?}", clean.findings);
        let labels: Vec<String> = clean
            .checked
            .iter()
            .map(|c| format!("{}/{}", c.entry.protocol.as_str(), c.port))
            .collect();
        for want in ["tcp/2379", "tcp/2380", "tcp/10250", "tcp/10249", "udp/8472"] {
            assert!(labels.iter().any(|l| l == want), "{want} in {labels:?}");
        }

        // kube-proxy's metrics bound wide is found on a worker that is also an etcd member.
        let mut wide = worker_and_etcd();
        wide.retain(|s| s.local_port != 10249);
        wide.push(tcp("0.0.0.0", 10249, "kube-proxy", 600));
        assert_eq!(
            ids_of(&run(&wide, both, false)),
            [("bound-too-wide", Severity::Warning, "tcp/10249".into())]
        );
        // So is a squatter on the kubelet's port with the kubelet stopped.
        let mut squat = worker_and_etcd();
        squat.retain(|s| s.local_port != 10250 && s.local_port != 10248);
        squat.push(listener(Proto::Tcp, "0.0.0.0", 10250, "nginx", 900, None));
        let r = run(&squat, both, false);
        assert!(
            ids_of(&r).contains(&("port-conflict", Severity::Error, "tcp/10250".into())),
            "{:#?}",
            r.findings
        );
        // With the etcd role alone none of the worker's ports are judged.
        assert_eq!(
            ids_of(&run(&squat, Role::Etcd.into(), false)),
            [("unexplained-listener", Severity::Info, "tcp/10250".into())]
        );
    }

    #[test]
    fn the_api_servers_insecure_port_is_an_error() {
        let mut s = control_plane();
        s.push(tcp("127.0.0.1", 8080, "kube-apiserver", 100));
        assert!(
            ids_of(&run(&s, Role::ControlPlane.into(), false)).contains(&(
                "legacy-insecure-port",
                Severity::Error,
                "tcp/8080".into()
            ))
        );
        // Another program on 8080 is not the API server's insecure port.
        let mut w = worker();
        w.push(listener(Proto::Tcp, "0.0.0.0", 8080, "java", 900, None));
        let ids = ids_of(&run(&w, Role::Worker.into(), false));
        assert!(
            !ids.iter().any(|f| f.0 == "legacy-insecure-port"),
            "{ids:?}"
        );
    }

    #[test]
    fn the_read_only_port_is_found_whatever_the_roles() {
        let mut s = worker_and_etcd();
        s.push(tcp("0.0.0.0", 10255, "kubelet", 500));
        for roles in [
            Role::Etcd.into(),
            [Role::Worker, Role::Etcd].into_iter().collect(),
            Role::ControlPlane.into(),
            Roles::NONE,
        ] {
            let r = run(&s, roles, false);
            assert!(
                ids_of(&r).contains(&("readonly-port-open", Severity::Warning, "tcp/10255".into())),
                "{roles}: {:#?}",
                r.findings
            );
        }
    }

    #[test]
    fn pre_install_names_the_holder() {
        let s = [
            listener(Proto::Tcp, "0.0.0.0", 6443, "nc", 4242, None),
            listener(Proto::Udp, "0.0.0.0", 30053, "dnsmasq", 9, None),
            listener(Proto::Tcp, "0.0.0.0", 22, "sshd", 1, None),
        ];
        let r = run(&s, Role::ControlPlane.into(), true);
        assert_eq!(
            ids_of(&r),
            [
                ("port-in-use", Severity::Error, "tcp/6443".into()),
                ("port-in-use", Severity::Warning, "udp/30053".into())
            ]
        );
        assert_eq!(
            r.findings[0].message,
            "[ERROR Port-6443]: Port 6443 is in use by nc (pid 4242) (kube-apiserver needs it: Kubernetes API server (HTTPS))"
        );
        assert_eq!(r.findings[0].evidence.sockets[0].processes[0].name, "nc");
        // Every port of the role was looked at, free or not.
        assert!(
            r.checked
                .iter()
                .any(|c| c.entry.port.first == 2380 && c.result == PortResult::Ok)
        );
        assert!(
            r.checked
                .iter()
                .any(|c| c.entry.port.first == 6443 && c.result == PortResult::Finding)
        );
        // A free node passes.
        let r = run(
            &[listener(Proto::Tcp, "0.0.0.0", 22, "sshd", 1, None)],
            Role::Worker.into(),
            true,
        );
        assert_eq!(ids_of(&r), []);
    }

    #[test]
    fn pre_install_names_a_component_already_running() {
        let s = [tcp("::", 10250, "kubelet", 500)];
        let r = run(&s, Role::Worker.into(), true);
        assert_eq!(
            ids_of(&r),
            [("port-in-use", Severity::Error, "tcp/10250".into())]
        );
        assert_eq!(
            r.findings[0].message,
            "[ERROR Port-10250]: Port 10250 is in use by kubelet (pid 500) (kubelet needs it: Kubelet API (HTTPS): logs, exec, attach, port-forward, metrics)"
        );
    }

    #[test]
    fn unknown_owner_is_never_called_a_conflict() {
        let mut s = control_plane();
        let mut anon = listener(Proto::Tcp, "0.0.0.0", 6443, "x", 1, None);
        anon.owner = Owner::Unknown;
        anon.processes = crate::no_processes();
        s[0] = anon;
        let r = run(&s, Role::ControlPlane.into(), false);
        assert_eq!(ids_of(&r), []);
        assert!(r.warnings.iter().any(|w| w.code == "owners-unknown"));
    }

    #[test]
    fn severities_order_findings() {
        let mut s = control_plane();
        s.retain(|x| x.component != Some("kube-scheduler"));
        s.push(tcp("::", 10255, "kubelet", 500));
        s.push(listener(Proto::Tcp, "0.0.0.0", 8000, "python3", 77, None));
        let r = run(&s, Role::ControlPlane.into(), false);
        let sev: Vec<Severity> = r.findings.iter().map(|f| f.severity).collect();
        assert_eq!(sev, [Severity::Error, Severity::Warning, Severity::Info]);
        assert_eq!(r.worst(), Some(Severity::Error));
    }
}
