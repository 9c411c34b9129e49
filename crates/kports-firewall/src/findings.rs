//! The firewall's part of `kports check`: verdicts turned into findings.
//!
//! A pure join of the catalog (after the running components' flags), the census and a ruleset:
//! - `firewall-blocks-required-port` (error): a source that needs a port the node serves gets
//!   drop or reject; the finding names the deciding rule and the command that lists it;
//! - `firewall-exposes-private-port` (warning): a port only this node needs (catalog entry
//!   reached by `self`, bound to loopback by kubeadm) listens beyond loopback and the firewall
//!   accepts it from any other host;
//! - `firewall-unknown` (info): some ruleset could not be read, so nothing is called open.
//!
//! The sources come from the one chooser ([`crate::sources::choose`]). These are evaluations of
//! the rules for a packet from such a source; no traffic is sent.

use std::net::IpAddr;

use kports_core::catalog::{BindScope, Entry, Expect, PortRange, Protocol, Roles};
use kports_core::finding::{
    Evidence, Finding, FindingId, FirewallEvidence, Setting, SocketEvidence, sort_findings,
    ss_command,
};
use kports_core::flags::scope_of;
use kports_core::resolve::Resolved;
use kports_core::{Proto, Socket, Warning};

use crate::eval::{Evaluator, Judgement, Packet, RuleRef};
use crate::model::Ruleset;
use crate::required::{SourceKind, needed};
use crate::sources::KindSource;
use crate::verdicts::SourceAddr;

/// At most this many verdicts are kept as a finding's evidence.
const MAX_EVIDENCE: usize = 8;

/// What the join works on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The catalog's entries after the running components' flags.
    pub resolved: &'a [Resolved],
    /// The node's roles; none (unknown): only an unreadable ruleset is reported.
    pub roles: Roles,
    pub cnis: &'a [String],
    pub sockets: &'a [Socket],
    pub ruleset: &'a Ruleset,
    pub sources: &'a [KindSource],
    /// Before kubeadm: nothing listens yet, so only blocked ports are reported.
    pub pre_install: bool,
}

/// Findings, and what limited them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub warnings: Vec<Warning>,
}

/// The command that lists the rule `by` with its position or handle.
pub fn rule_command(by: &RuleRef) -> String {
    let (family, table) = by.table.split_once(' ').unwrap_or(("", by.table.as_str()));
    match by.backend.iptables_tool(family == "ip6") {
        None => format!("nft -a list chain {} {}", by.table, by.chain),
        Some(tool) => format!("{tool} -t {table} -L {} -n -v --line-numbers", by.chain),
    }
}

/// The command that lets `port` through where rule `by` blocks it: delete the rule when it is
/// one (its handle or position names it), else accept the port before the chain's policy.
pub fn unblock_command(by: &RuleRef, proto: Protocol, port: PortRange) -> String {
    let (family, table) = by.table.split_once(' ').unwrap_or(("", by.table.as_str()));
    let p = proto.as_str();
    match by.backend.iptables_tool(family == "ip6") {
        None => {
            let dport = if port.is_single() {
                port.first.to_string()
            } else {
                format!("{}-{}", port.first, port.last)
            };
            match by.handle {
                Some(h) => format!(
                    "nft delete rule {} {} handle {h} (or insert `{p} dport {dport} accept` before it: nft insert rule {} {} position {h} {p} dport {dport} accept)",
                    by.table, by.chain, by.table, by.chain
                ),
                None => format!(
                    "nft insert rule {} {} {p} dport {dport} accept",
                    by.table, by.chain
                ),
            }
        }
        Some(tool) => {
            let dport = if port.is_single() {
                port.first.to_string()
            } else {
                format!("{}:{}", port.first, port.last)
            };
            let accept = format!("-p {p} --dport {dport} -j ACCEPT");
            match by.position {
                Some(pos) => format!(
                    "{tool} -t {table} -D {} {pos} (or insert an accept before it: {tool} -t {table} -I {} {pos} {accept})",
                    by.chain, by.chain
                ),
                None => format!("{tool} -t {table} -I {} {accept}", by.chain),
            }
        }
    }
}

/// The command that reads the ruleset source named `source` (as in [`Ruleset::unread`]).
fn read_command(source: &str) -> String {
    if source == "nft" {
        "nft list ruleset".to_string()
    } else {
        source.to_string()
    }
}

fn packet(s: &SourceAddr, proto: Proto, port: u16) -> Packet {
    Packet {
        v6: s.range.v6,
        proto: match proto {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        },
        dport: port,
        src: s.range,
        dst: s.dst,
        iif: s.iif.clone(),
    }
}

fn verdict_evidence(ks: &KindSource, j: &Judgement) -> FirewallEvidence {
    let rule = match j {
        Judgement::Drop { by } | Judgement::Reject { by, .. } => Some(by.to_string()),
        Judgement::Accept { .. } => Some(j.summary()),
        Judgement::Depends { at, .. } => Some(at.to_string()),
        Judgement::Unknown { .. } => None,
    };
    FirewallEvidence {
        source_kind: ks.kind,
        source: format!("{} ({})", ks.source.range, ks.origin),
        verdict: j.word().to_string(),
        rule,
    }
}

fn kind_words(k: SourceKind) -> &'static str {
    match k {
        SourceKind::All => "clients",
        SourceKind::Nodes => "other nodes",
        SourceKind::ControlPlane => "the control plane",
        SourceKind::EtcdPeers => "the other etcd members",
        SourceKind::LoadBalancers => "load balancers",
        SourceKind::SelfOnly => "this node",
    }
}

/// Listeners on the port(s) of `r`.
fn listeners<'s>(sockets: &'s [Socket], r: &Resolved, proto: Proto) -> Vec<&'s Socket> {
    sockets
        .iter()
        .filter(|s| s.is_listener() && s.proto == proto && r.port.contains(s.local_port))
        .collect()
}

/// Runs the join.
pub fn findings(input: &Input<'_>) -> Outcome {
    let mut out = Outcome::default();
    let roles = input.roles;
    if roles.is_empty() {
        return out;
    }
    let ev = Evaluator::new(input.ruleset);
    let mut judged: Vec<(Protocol, PortRange, &Entry)> = Vec::new();
    for r in input.resolved {
        let e = &r.entry;
        if !needed(e, roles, input.cnis) || r.not_in_use.is_some() {
            continue;
        }
        let Some(proto) = e.protocol.proto() else {
            continue;
        };
        if r.off {
            continue;
        }
        let kind = SourceKind::widest(&e.reached_by);
        let here = listeners(input.sockets, r, proto);
        if kind == SourceKind::SelfOnly {
            if e.bind == BindScope::Loopback && !input.pre_install {
                exposed(&mut out, &ev, input, r, proto, &here);
            }
            continue;
        }
        judged.push((e.protocol, r.port, e));
        // An optional port (a feature, a mode) matters only where something serves it.
        if e.expect == Expect::Optional && here.is_empty() {
            continue;
        }
        blocked(&mut out, &ev, input, r, proto, kind, &here);
    }
    if !input.ruleset.unread.is_empty()
        && let Some(&(protocol, port, e)) = judged.first()
    {
        let unread: Vec<String> = input
            .ruleset
            .unread
            .iter()
            // One line: tools' errors span several.
            .map(|u| {
                let reason: Vec<&str> = u.reason.split_whitespace().collect();
                format!("{}: {}", u.source, reason.join(" "))
            })
            .collect();
        let message = format!(
            "the firewall could not be read ({}): whether {} and the other {} required ports are open to those who need them is unknown; nothing is assumed open",
            unread.join("; "),
            format_args!("{}/{port}", e.protocol.as_str()),
            judged.len() - 1
        );
        out.findings.push(Finding {
            id: FindingId::FirewallUnknown,
            severity: kports_core::catalog::Severity::Info,
            message,
            entry: None,
            protocol: Some(protocol),
            port: Some(port),
            evidence: Evidence::default(),
            command: read_command(&input.ruleset.unread[0].source),
            fix: FindingId::FirewallUnknown.fix().to_string(),
        });
    }
    sort_findings(&mut out.findings);
    out
}

/// A source that needs `r`'s port gets drop or reject: one finding per port.
fn blocked(
    out: &mut Outcome,
    ev: &Evaluator<'_>,
    input: &Input<'_>,
    r: &Resolved,
    proto: Proto,
    kind: SourceKind,
    here: &[&Socket],
) {
    let e = &r.entry;
    // (source, first blocked port, last, verdict)
    let mut hits: Vec<(&KindSource, u16, u16, Judgement)> = Vec::new();
    for ks in input.sources.iter().filter(|s| s.kind == kind) {
        for (lo, hi, j) in ev.judge_ports(
            &packet(&ks.source, proto, r.port.first),
            r.port.first,
            r.port.last,
        ) {
            if j.blocker().is_some() {
                hits.push((ks, lo, hi, j));
            }
        }
    }
    let Some((ks, lo, hi, j)) = hits.first() else {
        return;
    };
    let Some(by) = j.blocker() else {
        return;
    };
    let port = PortRange {
        first: *lo,
        last: *hi,
    };
    let what = match j {
        Judgement::Reject { with, .. } => format!("rejects ({with})"),
        _ => "drops".to_string(),
    };
    let more = match hits.len() - 1 {
        0 => String::new(),
        1 => " (and 1 more source or stretch of ports)".to_string(),
        n => format!(" (and {n} more sources or stretches of ports)"),
    };
    let message = format!(
        "the firewall {what} {}/{port} from {} ({}), but {} must reach {} there ({}): {by}{more}",
        e.protocol.as_str(),
        ks.source.range,
        ks.origin,
        kind_words(kind),
        e.component,
        e.purpose
    );
    out.findings.push(Finding {
        id: FindingId::FirewallBlocksRequiredPort,
        severity: kports_core::catalog::Severity::Error,
        message,
        entry: Some(e.key()),
        protocol: Some(e.protocol),
        port: Some(port),
        evidence: Evidence {
            sockets: here.iter().map(|s| SocketEvidence::of(s)).collect(),
            flags: r.settings.clone(),
            firewall: hits
                .iter()
                .take(MAX_EVIDENCE)
                .map(|(ks, _, _, j)| verdict_evidence(ks, j))
                .collect(),
            ..Evidence::default()
        },
        command: rule_command(by),
        fix: unblock_command(by, e.protocol, port),
    });
}

/// A port only this node needs listens beyond loopback and the firewall accepts it from any
/// other host.
fn exposed(
    out: &mut Outcome,
    ev: &Evaluator<'_>,
    input: &Input<'_>,
    r: &Resolved,
    proto: Proto,
    here: &[&Socket],
) {
    let e = &r.entry;
    let wide: Vec<&Socket> = here
        .iter()
        .copied()
        .filter(|s| scope_of(&s.local_address) > BindScope::Loopback)
        .collect();
    let Some(first) = wide.first() else {
        return;
    };
    let port = first.local_port;
    for ks in input.sources.iter().filter(|s| s.kind == SourceKind::All) {
        let mut s = ks.source.clone();
        let local = first.local_address.to_canonical();
        // An IPv4 socket takes no IPv6 packet; an IPv6 one takes IPv4 only on `::`.
        let reachable = match local {
            IpAddr::V4(_) => !s.range.v6,
            IpAddr::V6(_) => s.range.v6 || local.is_unspecified(),
        };
        if !reachable {
            continue;
        }
        if !local.is_unspecified() && local.is_ipv6() == s.range.v6 {
            s.dst = Some(local);
        }
        let j = ev.judge(&packet(&s, proto, port));
        if j.is_open() != Some(true) {
            continue;
        }
        let mut addrs: Vec<String> = wide.iter().map(|s| s.local_address.to_string()).collect();
        addrs.dedup();
        let message = format!(
            "{} listens on {}/{port} on {} and the firewall accepts it from {} ({}): only this node needs it ({}); kubeadm binds it to {}. {}",
            e.component,
            e.protocol.as_str(),
            addrs.join(", "),
            s.range,
            ks.origin,
            e.purpose,
            e.bind.describe(),
            j.summary()
        );
        let settings: Vec<Setting> = r.settings.clone();
        out.findings.push(Finding {
            id: FindingId::FirewallExposesPrivatePort,
            severity: kports_core::catalog::Severity::Warning,
            message,
            entry: Some(e.key()),
            protocol: Some(e.protocol),
            port: Some(PortRange::single(port)),
            evidence: Evidence {
                sockets: wide.iter().map(|s| SocketEvidence::of(s)).collect(),
                flags: settings,
                firewall: vec![verdict_evidence(ks, &j)],
                ..Evidence::default()
            },
            command: ss_command(e.protocol, PortRange::single(port)),
            fix: format!(
                "bind {} to {} (kubeadm's default), or drop {}/{port} from other hosts in the firewall",
                e.component,
                if first.local_address.is_ipv6() { "::1" } else { "127.0.0.1" },
                e.protocol.as_str()
            ),
        });
        return;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use kports_core::catalog::{Catalog, Role, Severity};
    use kports_core::resolve::resolve_all;
    use kports_core::{Address, Family, Interface, Owner, ProcessRef, SockState};

    use super::*;
    use crate::iptables::parse_save;
    use crate::model::{AddrRange, Backend, Unread, parse_cidr};
    use crate::sources::{Given, choose, peers, representative};

    /// A socket of `process` (pid) with command line `cmdline`, recognised as `component`.
    pub(crate) fn socket(
        state: SockState,
        local: &str,
        remote: &str,
        process: &str,
        pid: u32,
        cmdline: &str,
    ) -> Socket {
        let (la, lp) = split(local);
        let (ra, rp) = split(remote);
        Socket {
            proto: Proto::Tcp,
            family: if la.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            state,
            local_address: la,
            local_port: lp,
            remote_address: ra,
            remote_port: rp,
            inode: u64::from(pid) * 100_000 + u64::from(lp),
            uid: 0,
            interface: None,
            cgroup_id: None,
            processes: Arc::new(vec![Arc::new(ProcessRef {
                pid,
                name: process.to_string(),
                cmdline: cmdline.to_string(),
                secrets: Vec::new(),
                container_id: None,
                pod_uid: None,
            })]),
            owner: Owner::Process,
            component: [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
                "etcd",
            ]
            .into_iter()
            .find(|c| *c == process),
            netns: None,
            cgroup: None,
        }
    }

    /// `ADDR:PORT`, `[V6]:PORT`.
    fn split(s: &str) -> (IpAddr, u16) {
        let (a, p) = s.rsplit_once(':').unwrap();
        (
            a.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .unwrap(),
            p.parse().unwrap(),
        )
    }

    pub(crate) fn listen(local: &str, process: &str, pid: u32) -> Socket {
        socket(SockState::Listen, local, "0.0.0.0:0", process, pid, process)
    }

    pub(crate) fn eth0(addr: &str) -> Interface {
        Interface {
            index: 2,
            name: "eth0".into(),
            kind: "veth".into(),
            state: "up".into(),
            mtu: 1500,
            mac: None,
            master: None,
            tunnel_port: None,
            addresses: vec![Address {
                address: addr.parse().unwrap(),
                prefix_len: 24,
                family: Family::Ipv4,
                scope: "global".into(),
            }],
            netns: None,
        }
    }

    pub(crate) const NODE: &str = "192.0.2.21";
    pub(crate) const CP: &str = "192.0.2.11";

    /// A worker as kubeadm leaves it, connected to the API server at `CP`.
    pub(crate) fn worker() -> Vec<Socket> {
        vec![
            listen("0.0.0.0:10250", "kubelet", 500),
            listen("127.0.0.1:10248", "kubelet", 500),
            listen("0.0.0.0:10256", "kube-proxy", 600),
            listen("127.0.0.1:10249", "kube-proxy", 600),
            socket(
                SockState::Established,
                &format!("{NODE}:40000"),
                &format!("{CP}:6443"),
                "kubelet",
                500,
                "kubelet",
            ),
        ]
    }

    /// A control-plane node (single member); `cm_bind` is the controller-manager's address.
    fn control_plane(cm_bind: &str) -> Vec<Socket> {
        vec![
            listen("0.0.0.0:6443", "kube-apiserver", 100),
            listen("127.0.0.1:2379", "etcd", 200),
            listen(&format!("{CP}:2379"), "etcd", 200),
            listen(&format!("{CP}:2380"), "etcd", 200),
            listen("127.0.0.1:2381", "etcd", 200),
            socket(
                SockState::Listen,
                &format!("{cm_bind}:10257"),
                "0.0.0.0:0",
                "kube-controller-manager",
                300,
                &format!("kube-controller-manager --bind-address={cm_bind}"),
            ),
            listen("127.0.0.1:10259", "kube-scheduler", 400),
            listen("0.0.0.0:10250", "kubelet", 500),
            listen("127.0.0.1:10248", "kubelet", 500),
            listen("0.0.0.0:10256", "kube-proxy", 600),
            listen("127.0.0.1:10249", "kube-proxy", 600),
        ]
    }

    fn ruleset(save: &str) -> Ruleset {
        let (tables, warnings) = parse_save(save, Backend::IptablesNft, false);
        assert!(warnings.is_empty(), "{warnings:?}");
        Ruleset {
            tables,
            unread: Vec::new(),
        }
    }

    /// An INPUT chain that lets loopback through and drops `rule`.
    fn dropping(rule: &str) -> Ruleset {
        ruleset(&format!(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT {rule}\nCOMMIT\n"
        ))
    }

    fn run(
        sockets: &[Socket],
        addr: &str,
        role: Role,
        rs: &Ruleset,
        given: &[&str],
    ) -> (Outcome, Vec<KindSource>) {
        let catalog = Catalog::builtin().unwrap();
        let ifs = [eth0(addr)];
        let (resolved, mut warnings) = resolve_all(&catalog, sockets, &ifs);
        let peers = peers(&resolved, sockets, &ifs);
        let given: Vec<AddrRange> = given.iter().map(|g| parse_cidr(g).unwrap()).collect();
        let chosen = choose(
            &peers,
            &Given {
                sources: &given,
                ..Given::default()
            },
            representative(&ifs),
            role.into(),
        );
        warnings.extend(chosen.warnings);
        let mut sources = chosen.sources;
        // What a node report does with `ip route get`: every peer is on eth0.
        for ks in &mut sources {
            ks.source.iif = Some("eth0".into());
            ks.source.dst = Some(addr.parse().unwrap());
        }
        let cnis = ["flannel".to_string()];
        let mut out = findings(&Input {
            resolved: &resolved,
            roles: role.into(),
            cnis: &cnis,
            sockets,
            ruleset: rs,
            sources: &sources,
            pre_install: false,
        });
        out.warnings.extend(warnings);
        (out, sources)
    }

    fn ids(o: &Outcome) -> Vec<(FindingId, Severity, String)> {
        o.findings
            .iter()
            .map(|f| (f.id, f.severity, f.place()))
            .collect()
    }

    #[test]
    fn a_drop_on_10250_for_the_control_plane_is_one_finding_naming_the_rule() {
        let rs = dropping("-p tcp -m tcp --dport 10250 -j DROP");
        let (out, _) = run(&worker(), NODE, Role::Worker, &rs, &[]);
        assert_eq!(
            ids(&out),
            [(
                FindingId::FirewallBlocksRequiredPort,
                Severity::Error,
                "tcp/10250".to_string()
            )]
        );
        let f = &out.findings[0];
        assert_eq!(
            f.message,
            "the firewall drops tcp/10250 from 192.0.2.11 (the API server this node connects to), but the control plane must reach kubelet there (Kubelet API (HTTPS): logs, exec, attach, port-forward, metrics): iptables-nft ip filter INPUT #2: -A INPUT -p tcp -m tcp --dport 10250 -j DROP"
        );
        assert_eq!(
            f.command,
            "iptables-nft -t filter -L INPUT -n -v --line-numbers"
        );
        assert_eq!(
            f.fix,
            "iptables-nft -t filter -D INPUT 2 (or insert an accept before it: iptables-nft -t filter -I INPUT 2 -p tcp --dport 10250 -j ACCEPT)"
        );
        assert_eq!(f.evidence.firewall.len(), 1);
        assert_eq!(f.evidence.firewall[0].verdict, "drop");
        assert_eq!(f.evidence.sockets[0].local_port, 10250);
    }

    #[test]
    fn a_reject_of_the_nodeport_range_from_anyone_is_one_finding_for_the_blocked_stretch() {
        let rs = dropping(
            "-p udp -m udp --dport 30000:31000 -j REJECT --reject-with icmp-port-unreachable",
        );
        let (out, _) = run(&worker(), NODE, Role::Worker, &rs, &[]);
        assert_eq!(
            ids(&out),
            [(
                FindingId::FirewallBlocksRequiredPort,
                Severity::Error,
                "udp/30000-31000".to_string()
            )]
        );
        assert_eq!(
            out.findings[0].message,
            "the firewall rejects (icmp port-unreachable) udp/30000-31000 from 203.0.113.1 (any other host), but clients must reach kube-proxy there (NodePort Services over UDP (default range)): iptables-nft ip filter INPUT #2: -A INPUT -p udp -m udp --dport 30000:31000 -j REJECT --reject-with icmp-port-unreachable"
        );
    }

    #[test]
    fn an_nft_rule_is_deleted_by_handle_and_a_policy_gets_an_accept_before_it() {
        let mut by = RuleRef {
            backend: Backend::Nft,
            table: "inet filter".into(),
            chain: "input".into(),
            position: Some(3),
            handle: Some(7),
            text: "tcp dport 6443 drop".into(),
        };
        assert_eq!(
            unblock_command(&by, Protocol::Tcp, PortRange::single(6443)),
            "nft delete rule inet filter input handle 7 (or insert `tcp dport 6443 accept` before it: nft insert rule inet filter input position 7 tcp dport 6443 accept)"
        );
        by.position = None;
        by.handle = None;
        assert_eq!(
            unblock_command(
                &by,
                Protocol::Udp,
                PortRange {
                    first: 30000,
                    last: 32767
                }
            ),
            "nft insert rule inet filter input udp dport 30000-32767 accept"
        );
    }

    #[test]
    fn a_drop_for_others_only_is_no_finding() {
        // 10250 open to the control plane, dropped for everyone else: as it should be.
        let rs = dropping("! -s 192.0.2.11/32 -p tcp -m tcp --dport 10250 -j DROP");
        let (out, _) = run(&worker(), NODE, Role::Worker, &rs, &[]);
        assert_eq!(ids(&out), []);
    }

    #[test]
    fn an_optional_port_nothing_serves_is_not_reported_blocked() {
        // flannel's legacy udp backend (8285) is optional: a drop there breaks nothing here.
        let rs = dropping("-p udp -m udp --dport 8285 -j DROP");
        let (out, _) = run(&worker(), NODE, Role::Worker, &rs, &[]);
        assert_eq!(ids(&out), []);
    }

    #[test]
    fn accept_all_with_10257_on_a_wildcard_exposes_it() {
        let rs = Ruleset::default();
        let (out, _) = run(&control_plane("0.0.0.0"), CP, Role::ControlPlane, &rs, &[]);
        assert_eq!(
            ids(&out),
            [(
                FindingId::FirewallExposesPrivatePort,
                Severity::Warning,
                "tcp/10257".to_string()
            )]
        );
        let f = &out.findings[0];
        assert_eq!(
            f.message,
            "kube-controller-manager listens on tcp/10257 on 0.0.0.0 and the firewall accepts it from 203.0.113.1 (any other host): only this node needs it (kube-controller-manager HTTPS: health and metrics); kubeadm binds it to loopback only. accept (no filter chain at the input hook)"
        );
        assert_eq!(f.evidence.flags[0].value, "--bind-address=0.0.0.0");
        assert_eq!(f.command, "ss -tlnp 'sport = :10257'");
        assert!(
            f.fix
                .starts_with("bind kube-controller-manager to 127.0.0.1"),
            "{}",
            f.fix
        );
        // The same bind behind a firewall that drops it: nothing exposed.
        let rs = dropping("-p tcp -m tcp --dport 10257 -j DROP");
        let (out, _) = run(&control_plane("0.0.0.0"), CP, Role::ControlPlane, &rs, &[]);
        assert_eq!(ids(&out), []);
        // On loopback, as kubeadm binds it: nothing exposed whatever the firewall.
        let (out, _) = run(
            &control_plane("127.0.0.1"),
            CP,
            Role::ControlPlane,
            &Ruleset::default(),
            &[],
        );
        assert_eq!(ids(&out), []);
    }

    #[test]
    fn an_unreadable_ruleset_is_unknown_and_never_open() {
        let rs = Ruleset {
            tables: Vec::new(),
            unread: vec![Unread {
                source: "nft".into(),
                reason: "`nft` is not installed\n(install nftables)".into(),
            }],
        };
        let (out, _) = run(&control_plane("0.0.0.0"), CP, Role::ControlPlane, &rs, &[]);
        // No exposure claimed (that needs an accept), one unknown.
        assert_eq!(
            ids(&out),
            [(
                FindingId::FirewallUnknown,
                Severity::Info,
                "tcp/6443".to_string()
            )]
        );
        assert_eq!(
            out.findings[0].message,
            "the firewall could not be read (nft: `nft` is not installed (install nftables)): whether tcp/6443 and the other 10 required ports are open to those who need them is unknown; nothing is assumed open"
        );
        assert_eq!(out.findings[0].command, "nft list ruleset");
        assert_eq!(out.findings[0].fix, FindingId::FirewallUnknown.fix());
        // A drop read from another source is still final.
        let mut rs = dropping("-p tcp -m tcp --dport 10250 -j DROP");
        rs.unread.push(Unread {
            source: "nft".into(),
            reason: "permission denied".into(),
        });
        let (out, _) = run(&worker(), NODE, Role::Worker, &rs, &[]);
        assert_eq!(
            ids(&out),
            [
                (
                    FindingId::FirewallBlocksRequiredPort,
                    Severity::Error,
                    "tcp/10250".to_string()
                ),
                (
                    FindingId::FirewallUnknown,
                    Severity::Info,
                    "tcp/10250".to_string()
                ),
            ]
        );
    }

    #[test]
    fn unknown_role_judges_nothing() {
        let catalog = Catalog::builtin().unwrap();
        let rs = dropping("-p tcp -m tcp --dport 10250 -j DROP");
        let out = findings(&Input {
            resolved: &kports_core::resolve::defaults(&catalog),
            roles: Roles::NONE,
            cnis: &[],
            sockets: &worker(),
            ruleset: &rs,
            sources: &[],
            pre_install: false,
        });
        assert_eq!(out, Outcome::default());
    }

    #[test]
    fn rule_commands_name_the_tool_table_and_chain() {
        let r = |backend, table: &str, chain: &str| RuleRef {
            backend,
            table: table.into(),
            chain: chain.into(),
            position: Some(1),
            handle: None,
            text: String::new(),
        };
        assert_eq!(
            rule_command(&r(Backend::Nft, "inet kports_lab_fault", "input")),
            "nft -a list chain inet kports_lab_fault input"
        );
        assert_eq!(
            rule_command(&r(Backend::IptablesLegacy, "ip6 filter", "INPUT")),
            "ip6tables-legacy -t filter -L INPUT -n -v --line-numbers"
        );
    }
}
