//! The node's own network prerequisites as `kports check` findings: identity (host name,
//! addresses, default route), forwarding and bridge netfilter, the kernel modules kube-proxy's
//! mode needs, reverse-path filters the CNI needs loose, overlay MTUs, conntrack headroom, the
//! ephemeral port range, and the links on the cluster's paths.
//!
//! A pure function of [`NodeSettings`] (read by `kports-linux`'s `settings`), the census and
//! the node's role and CNIs. Each finding applies only where it applies: a node of unknown role
//! gets none, an etcd-only member only identity, port-range and path findings, the forwarding,
//! bridge, module, rp_filter, MTU and conntrack findings go to nodes that run pods. A setting
//! that was needed but could not be read is a `setting-unknown` finding, never a pass.
//!
//! Duplicate host names across nodes need every node's name: [`duplicate_hostnames`] is the
//! join a cluster view calls with them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::catalog::{Expect, PortRange, Protocol, Role, Roles, Severity};
use crate::check::{Checked, PortResult};
use crate::finding::{Evidence, Finding, FindingId, Setting, sort_findings};
use crate::flags;
use crate::resolve::component_processes;
use crate::settings::{Known, Link, NodeSettings};
use crate::{Interface, Socket};

/// kube-proxy's conntrack sizing: `maxPerCore` 32768, `min` 131072, capped at 1,048,576 by
/// recent versions.
const CONNTRACK_PER_CORE: u64 = 32_768;
const CONNTRACK_MIN: u64 = 131_072;
const CONNTRACK_CAP: u64 = 1_048_576;

/// Devices whose reverse-path filter the CNI needs loose or off: (CNI, name or prefix with `*`).
const RP_FILTER_DEVICES: &[(&str, &str)] = &[
    ("calico", "cali*"),
    ("calico", "vxlan.calico"),
    ("calico", "vxlan-v6.calico"),
    ("calico", "tunl0"),
    ("calico", "wireguard.cali"),
    ("cilium", "cilium_*"),
    ("cilium", "lxc*"),
];

/// Bridges CNIs put pods on.
const POD_BRIDGES: &[&str] = &["cni0", "cbr0", "kube-bridge"];

/// What the judgement works on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub settings: &'a NodeSettings,
    /// The census's interfaces (their addresses).
    pub interfaces: &'a [Interface],
    /// The census's sockets (the components' command lines).
    pub sockets: &'a [Socket],
    /// The node's roles; none: no prerequisite is judged (the check already says the role is
    /// unknown).
    pub roles: Roles,
    pub cnis: &'a [String],
    /// The catalog ports as checked, after the components' flags: the required ports and the
    /// reserved ranges (NodePorts).
    pub checked: &'a [Checked],
    /// Before kubeadm runs: the node's address will be picked from its default route unless
    /// kubeadm is told otherwise.
    pub pre_install: bool,
}

/// kube-proxy's mode, from its `--proxy-mode` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyMode {
    Iptables,
    Ipvs,
    Nftables,
    /// Set in its `--config` file, which kports does not read.
    InConfig,
    Other(String),
}

/// The node's prerequisite findings, most severe first.
pub fn findings(input: &Input<'_>) -> Vec<Finding> {
    // The role that asks the most: a control plane runs pods too; an etcd member alone asks
    // only for the identity, port-range and path prerequisites.
    let role = if input.roles.contains(Role::ControlPlane) {
        Role::ControlPlane
    } else if input.roles.contains(Role::Worker) {
        Role::Worker
    } else if input.roles.contains(Role::Etcd) {
        Role::Etcd
    } else {
        return Vec::new();
    };
    let mut j = Judge {
        s: input.settings,
        out: Vec::new(),
    };
    let args = component_args(input.sockets);
    let dual = dual_stack(&args);
    identity(&mut j, input, role, &args, dual);
    ports(&mut j, input);
    paths(&mut j);
    if matches!(role, Role::Worker | Role::ControlPlane) {
        let mode = args.get("kube-proxy").map(|a| proxy_mode(a));
        forwarding(&mut j, dual);
        bridge(&mut j, input, mode.as_ref(), dual);
        modules(&mut j, mode.as_ref());
        rp_filter(&mut j, input.cnis);
        mtu(&mut j);
        conntrack(&mut j);
    }
    sort_findings(&mut j.out);
    j.out
}

/// Findings for host names shared by several nodes: `names` is (node, host name) for every
/// node a cluster view reached. One finding per name held twice or more.
pub fn duplicate_hostnames(names: &[(String, String)]) -> Vec<Finding> {
    let mut by: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (node, name) in names {
        by.entry(name.to_ascii_lowercase())
            .or_default()
            .push(node.as_str());
    }
    by.into_iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(name, nodes)| {
            finding(
                FindingId::HostnameDuplicate,
                Severity::Error,
                format!(
                    "nodes {} all have the host name {name}: the kubelet registers each under its host name, so they take turns being one Node object",
                    nodes.join(", ")
                ),
                nodes
                    .iter()
                    .map(|n| setting(&format!("hostname of {n}"), &name))
                    .collect(),
                "hostname".into(),
                Some("hostnamectl set-hostname NAME (a different name on each node)".into()),
            )
        })
        .collect()
}

struct Judge<'a> {
    s: &'a NodeSettings,
    out: Vec<Finding>,
}

impl Judge<'_> {
    fn add(&mut self, f: Finding) {
        self.out.push(f);
    }

    /// A needed setting that could not be read: one finding per setting.
    fn unknown(&mut self, what: &str, reason: &str, needed_for: &str, command: &str) {
        if self.out.iter().any(|f| {
            f.id == FindingId::SettingUnknown
                && f.evidence
                    .settings
                    .first()
                    .is_some_and(|s| s.source == what)
        }) {
            return;
        }
        self.add(finding(
            FindingId::SettingUnknown,
            Severity::Info,
            format!("{what} could not be read ({reason}): whether {needed_for} is unknown"),
            vec![setting(what, "unknown")],
            command.into(),
            None,
        ));
    }
}

fn setting(source: &str, value: &str) -> Setting {
    Setting {
        pid: None,
        source: source.to_string(),
        value: value.to_string(),
    }
}

fn finding(
    id: FindingId,
    severity: Severity,
    message: String,
    settings: Vec<Setting>,
    command: String,
    fix: Option<String>,
) -> Finding {
    Finding {
        id,
        severity,
        message,
        entry: None,
        protocol: None,
        port: None,
        evidence: Evidence {
            settings,
            ..Evidence::default()
        },
        command,
        fix: fix.unwrap_or_else(|| id.fix().to_string()),
    }
}

/// `sysctl -w KEY=VALUE`, and where to keep it across reboots.
fn sysctl_fix(key: &str, value: &str) -> String {
    format!("sysctl -w {key}={value} (to keep it: `{key} = {value}` in /etc/sysctl.d/k8s.conf)")
}

/// Each running component's argument list, split from its command line.
fn component_args(sockets: &[Socket]) -> BTreeMap<&'static str, String> {
    component_processes(sockets)
        .into_iter()
        .map(|(c, p)| (c, p.cmdline.clone()))
        .collect()
}

/// A dual-stack cluster: a pod or service range, or the kubelet's node IPs, of both families.
fn dual_stack(args: &BTreeMap<&'static str, String>) -> bool {
    args.values().any(|cmdline| {
        ["--cluster-cidr", "--service-cluster-ip-range", "--node-ip"]
            .iter()
            .filter_map(|f| flags::value(cmdline, f))
            .any(|v| {
                let fams: Vec<bool> = v.split(',').map(|x| x.contains(':')).collect();
                fams.contains(&true) && fams.contains(&false)
            })
    })
}

/// kube-proxy's mode from its command line: the flag, else its config file, else the default.
pub fn proxy_mode(cmdline: &str) -> ProxyMode {
    match flags::value(cmdline, "--proxy-mode") {
        Some("iptables") => ProxyMode::Iptables,
        Some("ipvs") => ProxyMode::Ipvs,
        Some("nftables") => ProxyMode::Nftables,
        Some("") | None if flags::value(cmdline, "--config").is_some() => ProxyMode::InConfig,
        Some("") | None => ProxyMode::Iptables,
        Some(other) => ProxyMode::Other(other.to_string()),
    }
}

/// A valid Kubernetes node name: an RFC 1123 subdomain, lowercase.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn own_addresses(interfaces: &[Interface]) -> Vec<IpAddr> {
    interfaces
        .iter()
        .flat_map(|i| i.addresses.iter().map(|a| a.address))
        .collect()
}

fn global_of(interfaces: &[Interface], dev: &str, v6: bool) -> Vec<IpAddr> {
    interfaces
        .iter()
        .filter(|i| i.name == dev)
        .flat_map(|i| &i.addresses)
        .filter(|a| a.address.is_ipv6() == v6 && a.scope == "global")
        .map(|a| a.address)
        .collect()
}

fn identity(
    j: &mut Judge<'_>,
    input: &Input<'_>,
    role: Role,
    args: &BTreeMap<&'static str, String>,
    dual: bool,
) {
    let s = j.s;
    let name = match &s.hostname {
        Known::Known(n) => n.clone(),
        Known::Unknown(r) => {
            j.unknown(
                "kernel.hostname",
                r,
                "the node's name is valid and resolves",
                "hostname",
            );
            return;
        }
    };
    if !valid_node_name(&name) {
        let lower = name.to_ascii_lowercase();
        let suggestion = if valid_node_name(&lower) {
            lower
        } else {
            "NAME".into()
        };
        j.add(finding(
            FindingId::HostnameInvalid,
            Severity::Error,
            format!(
                "the host name `{name}` is not a valid node name (lowercase letters, digits, '-' and '.', at most 63 characters between dots): the kubelet registers the node under it"
            ),
            vec![setting("kernel.hostname", &name)],
            "hostname".into(),
            Some(format!("hostnamectl set-hostname {suggestion}")),
        ));
    }
    // How the name resolves: /etc/hosts first, as the resolver does, then the resolver.
    let from_hosts: Option<Vec<IpAddr>> = s.hosts.get().map(|h| {
        h.iter()
            .filter(|e| e.names.iter().any(|n| n.eq_ignore_ascii_case(&name)))
            .map(|e| e.address)
            .collect()
    });
    let (addrs, source) = match (from_hosts, &s.resolved) {
        (Some(a), _) if !a.is_empty() => (a, "/etc/hosts"),
        (_, Some(Known::Known(a))) => (a.clone(), "DNS"),
        (_, Some(Known::Unknown(r))) => {
            j.unknown(
                &format!("the address of {name}"),
                r,
                "the host name resolves to this node",
                &format!("getent hosts {name}"),
            );
            (Vec::new(), "")
        }
        (None, None) => {
            j.unknown(
                "/etc/hosts",
                s.hosts.reason().unwrap_or("not read"),
                "the host name resolves to this node",
                &format!("getent hosts {name}"),
            );
            (Vec::new(), "")
        }
        (Some(_), None) => (Vec::new(), "DNS"),
    };
    let own = own_addresses(input.interfaces);
    if addrs.is_empty() && !source.is_empty() {
        let primary = primary_ipv4(s, input.interfaces);
        j.add(finding(
            FindingId::HostnameUnresolved,
            Severity::Warning,
            format!("the host name {name} does not resolve (neither /etc/hosts nor DNS knows it): kubeadm warns, and components that look the node up by name fail"),
            vec![setting("kernel.hostname", &name)],
            format!("getent hosts {name}"),
            Some(format!(
                "echo '{} {name}' >> /etc/hosts",
                primary.map_or_else(|| "ADDRESS".to_string(), |a| a.to_string())
            )),
        ));
    } else if !addrs.is_empty()
        && !addrs
            .iter()
            .any(|a| a.to_canonical().is_loopback() || own.contains(a))
    {
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        j.add(finding(
            FindingId::HostnameNotLocal,
            Severity::Warning,
            format!(
                "the host name {name} resolves ({source}) to {}, none of which is this node's: the kubelet takes its node IP from this name when --node-ip is not set",
                list.join(", ")
            ),
            vec![setting(&format!("{name} ({source})"), &list.join(", "))],
            format!("getent hosts {name}; ip -br addr"),
            Some(format!("correct the {name} line of /etc/hosts (or its DNS record)")),
        ));
    }

    // kubeadm and the kubelet take the node's address from the default route's interface
    // unless it is given: the kubelet's --node-ip, the API server's --advertise-address. A
    // running component shows whether it is. A stopped one does not (it is a finding of its
    // own), so then only a pre-install check, where kubeadm is about to pick, counts on it.
    let picks = |c: &str, flag: &str| match args.get(c) {
        Some(a) => flags::value(a, flag).is_none(),
        None => input.pre_install,
    };
    let relies = role != Role::Etcd
        && (picks("kubelet", "--node-ip")
            || (role == Role::ControlPlane && picks("kube-apiserver", "--advertise-address")));
    if relies {
        match &s.routes {
            Known::Unknown(r) => j.unknown(
                "the routing table",
                r,
                "the node has a default route",
                "ip route show default",
            ),
            Known::Known(_) => {
                let v4 = s.default_routes(false);
                let v6 = s.default_routes(true);
                if v4.is_empty() && v6.is_empty() {
                    j.add(finding(
                        FindingId::NoDefaultRoute,
                        Severity::Warning,
                        "the node has no default route: kubeadm and the kubelet pick the node's address from the default route's interface (unless --apiserver-advertise-address and --node-ip give it)".into(),
                        vec![setting("default route", "none")],
                        "ip route show default".into(),
                        Some("ip route add default via GATEWAY dev DEVICE (or give --node-ip to the kubelet)".into()),
                    ));
                } else if let Some(dev) = v4.first().and_then(|r| r.dev.as_deref()) {
                    if global_of(input.interfaces, dev, false).is_empty() {
                        j.add(finding(
                            FindingId::DefaultRouteNoIpv4,
                            Severity::Warning,
                            format!("{dev}, the interface of the default route, has no global IPv4 address: kubeadm advertises the API server there and the kubelet takes its node IP from it"),
                            vec![setting("default route", &format!("dev {dev}")), setting(&format!("global IPv4 on {dev}"), "none")],
                            format!("ip -4 addr show dev {dev}"),
                            Some(format!("ip addr add ADDRESS/PREFIX dev {dev} (or give --node-ip to the kubelet)")),
                        ));
                    }
                } else if v4.is_empty() {
                    j.add(finding(
                        FindingId::DefaultRouteNoIpv4,
                        Severity::Warning,
                        "the node has an IPv6 default route only: kubeadm and the kubelet look for an IPv4 address on the default route's interface".into(),
                        vec![setting("IPv4 default route", "none")],
                        "ip -4 route show default".into(),
                        Some("ip route add default via GATEWAY dev DEVICE".into()),
                    ));
                }
            }
        }
    }
    if dual {
        let any_v6 = input.interfaces.iter().any(|i| {
            i.addresses
                .iter()
                .any(|a| a.address.is_ipv6() && a.scope == "global")
        });
        if !any_v6 {
            j.add(finding(
                FindingId::NoGlobalIpv6,
                Severity::Warning,
                "the cluster is dual-stack (its ranges or node IPs have both families) but this node has no global IPv6 address".into(),
                vec![setting("global IPv6 addresses", "none")],
                "ip -6 addr show scope global".into(),
                Some("ip -6 addr add ADDRESS/PREFIX dev DEVICE".into()),
            ));
        }
    }
}

/// The node's main IPv4 address: on the default route's interface, else the first global one.
fn primary_ipv4(s: &NodeSettings, interfaces: &[Interface]) -> Option<IpAddr> {
    s.default_routes(false)
        .iter()
        .filter_map(|r| r.dev.as_deref())
        .flat_map(|d| global_of(interfaces, d, false))
        .chain(
            interfaces
                .iter()
                .flat_map(|i| &i.addresses)
                .filter(|a| a.address.is_ipv4() && a.scope == "global")
                .map(|a| a.address),
        )
        .next()
}

fn forwarding(j: &mut Judge<'_>, dual: bool) {
    let checks = [
        (
            "net.ipv4.ip_forward",
            &j.s.ip_forward,
            FindingId::IpForwardOff,
            "IPv4",
        ),
        (
            "net.ipv6.conf.all.forwarding",
            &j.s.ipv6_forwarding,
            FindingId::Ipv6ForwardingOff,
            "IPv6",
        ),
    ];
    for (key, value, id, fam) in checks {
        if fam == "IPv6" && !dual {
            continue;
        }
        match value {
            Known::Known(1) => {}
            Known::Known(v) => {
                let v = v.to_string();
                j.add(finding(
                    id,
                    Severity::Error,
                    format!("{key} is {v}: the node does not forward {fam} packets, so pod traffic to and from other nodes goes nowhere (kubeadm preflight refuses it)"),
                    vec![setting(key, &v)],
                    format!("sysctl {key}"),
                    Some(sysctl_fix(key, "1")),
                ));
            }
            Known::Unknown(r) => {
                let r = r.clone();
                j.unknown(
                    key,
                    &r,
                    "the node forwards pod traffic",
                    &format!("sysctl {key}"),
                );
            }
        }
    }
}

/// br_netfilter and bridge-nf-call-*: needed where kube-proxy's iptables or ipvs rules must see
/// bridged pod traffic, or the CNI puts pods on a bridge.
fn bridge(j: &mut Judge<'_>, input: &Input<'_>, mode: Option<&ProxyMode>, dual: bool) {
    let bridged = input
        .cnis
        .iter()
        .any(|c| c == "flannel" || c == "kube-router")
        || input
            .interfaces
            .iter()
            .any(|i| POD_BRIDGES.contains(&i.name.as_str()));
    let proxy = mode.is_some_and(|m| *m != ProxyMode::Nftables);
    if !bridged && !proxy {
        return;
    }
    let why = match (proxy, bridged) {
        (true, true) => "kube-proxy's rules and the CNI's bridge",
        (true, false) => "kube-proxy's rules",
        _ => "the CNI's bridge",
    };
    let mut keys = vec![(
        "net.bridge.bridge-nf-call-iptables",
        &j.s.bridge_nf_call_iptables,
    )];
    if dual {
        keys.push((
            "net.bridge.bridge-nf-call-ip6tables",
            &j.s.bridge_nf_call_ip6tables,
        ));
    }
    for (key, value) in keys {
        match value {
            Known::Known(Some(1)) => {}
            Known::Known(None) => {
                if !j.out.iter().any(|f| f.id == FindingId::BrNetfilterMissing) {
                    j.add(finding(
                        FindingId::BrNetfilterMissing,
                        Severity::Error,
                        format!("the br_netfilter module is not loaded ({key} does not exist): traffic between pods on one bridge bypasses iptables, which {why} need (kubeadm preflight refuses it)"),
                        vec![setting(key, "absent")],
                        "lsmod | grep br_netfilter".into(),
                        Some("modprobe br_netfilter (to keep it: br_netfilter in /etc/modules-load.d/k8s.conf)".into()),
                    ));
                }
            }
            Known::Known(Some(v)) => {
                let v = v.to_string();
                j.add(finding(
                    FindingId::BridgeNfCallOff,
                    Severity::Error,
                    format!("{key} is {v}: bridged pod traffic bypasses iptables, which {why} need (kubeadm preflight refuses it)"),
                    vec![setting(key, &v)],
                    format!("sysctl {key}"),
                    Some(sysctl_fix(key, "1")),
                ));
            }
            Known::Unknown(r) => {
                let r = r.clone();
                j.unknown(
                    key,
                    &r,
                    "bridged pod traffic passes iptables",
                    &format!("sysctl {key}"),
                );
            }
        }
    }
}

fn modules(j: &mut Judge<'_>, mode: Option<&ProxyMode>) {
    let (mode_name, needed): (&str, &[&str]) = match mode {
        Some(ProxyMode::Ipvs) => (
            "ipvs",
            &["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"],
        ),
        Some(ProxyMode::Nftables) => ("nftables", &["nf_tables"]),
        _ => return,
    };
    let mut missing = Vec::new();
    for m in needed {
        match j.s.modules.has(m) {
            Known::Known(true) => {}
            Known::Known(false) => missing.push(*m),
            Known::Unknown(r) => j.unknown(
                &format!("module {m}"),
                &r,
                &format!("kube-proxy's {mode_name} mode has its modules"),
                "cat /proc/modules",
            ),
        }
    }
    if !missing.is_empty() {
        j.add(finding(
            FindingId::KubeProxyModuleMissing,
            Severity::Error,
            format!(
                "kube-proxy runs in {mode_name} mode but the kernel module(s) {} are not loaded",
                missing.join(", ")
            ),
            missing
                .iter()
                .map(|m| setting(&format!("module {m}"), "not loaded"))
                .collect(),
            format!("grep -wE '{}' /proc/modules", missing.join("|")),
            Some(format!(
                "modprobe -a {} (to keep them: one per line in /etc/modules-load.d/k8s.conf)",
                missing.join(" ")
            )),
        ));
    }
}

fn matches_pattern(name: &str, pat: &str) -> bool {
    match pat.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pat,
    }
}

fn rp_filter(j: &mut Judge<'_>, cnis: &[String]) {
    let Some(links) = j.s.links.get() else {
        if let Some(r) = j.s.links.reason() {
            let r = r.to_string();
            if cnis.iter().any(|c| c == "calico" || c == "cilium") {
                j.unknown(
                    "the links",
                    &r,
                    "the CNI's devices filter reverse paths loosely",
                    "ip link",
                );
            }
        }
        return;
    };
    let mut strict: Vec<(String, Vec<Setting>)> = Vec::new();
    for l in links {
        let Some((cni, _)) = RP_FILTER_DEVICES
            .iter()
            .find(|(c, p)| cnis.iter().any(|x| x == c) && matches_pattern(&l.name, p))
        else {
            continue;
        };
        match j.s.rp_filter_of(&l.name) {
            Known::Known(1) => {
                let ev = ["all", l.name.as_str()]
                    .iter()
                    .filter_map(|d| j.s.rp_filter.iter().find(|r| r.device == *d))
                    .filter_map(|r| {
                        r.value.get().map(|v| {
                            setting(
                                &format!("net.ipv4.conf.{}.rp_filter", r.device),
                                &v.to_string(),
                            )
                        })
                    })
                    .collect();
                strict.push((format!("{} ({cni})", l.name), ev));
            }
            Known::Known(_) => {}
            Known::Unknown(r) => j.unknown(
                &format!("net.ipv4.conf.{}.rp_filter", l.name),
                &r,
                "the CNI's devices filter reverse paths loosely",
                &format!("sysctl net.ipv4.conf.{}.rp_filter", l.name),
            ),
        }
    }
    if strict.is_empty() {
        return;
    }
    let all_strict =
        j.s.rp_filter
            .iter()
            .any(|r| r.device == "all" && r.value == Known::Known(1));
    let names: Vec<&str> = strict.iter().map(|(n, _)| n.as_str()).collect();
    let shown = if names.len() > 4 {
        format!("{} and {} more", names[..4].join(", "), names.len() - 4)
    } else {
        names.join(", ")
    };
    let fix = if all_strict {
        sysctl_fix("net.ipv4.conf.all.rp_filter", "2")
    } else {
        let dev = strict[0].0.split(' ').next().unwrap_or("DEVICE");
        sysctl_fix(&format!("net.ipv4.conf.{dev}.rp_filter"), "2")
    };
    let mut ev: Vec<Setting> = Vec::new();
    for (_, e) in strict.iter().take(4) {
        for s in e {
            if !ev.contains(s) {
                ev.push(s.clone());
            }
        }
    }
    j.add(finding(
        FindingId::RpFilterStrict,
        Severity::Warning,
        format!("strict reverse-path filtering (rp_filter 1) on {shown}: the CNI routes pod traffic asymmetrically and needs it loose (2) or off (0), or the kernel drops those packets"),
        ev,
        "sysctl -a --pattern 'rp_filter'".into(),
        Some(fix),
    ));
}

/// Bytes an overlay device's encapsulation adds: (overhead, encapsulation name).
fn overhead(l: &Link) -> Option<(u32, &'static str)> {
    let v6 = l.underlay_v6 == Some(true);
    Some(match (l.kind.as_str(), v6) {
        ("vxlan", false) => (50, "VXLAN over IPv4"),
        ("vxlan", true) => (70, "VXLAN over IPv6"),
        ("geneve", false) => (50, "Geneve over IPv4 (without options)"),
        ("geneve", true) => (70, "Geneve over IPv6 (without options)"),
        ("wireguard", false) => (60, "WireGuard over IPv4"),
        ("wireguard", true) => (80, "WireGuard over IPv6"),
        ("ipip", _) => (20, "IP-in-IP"),
        _ => return None,
    })
}

fn mtu(j: &mut Judge<'_>) {
    let Some(links) = j.s.links.get() else {
        return;
    };
    let fallback =
        j.s.default_routes(false)
            .first()
            .and_then(|r| r.dev.clone())
            .or_else(|| j.s.paths.iter().find_map(|p| p.dev.get().cloned()));
    let mut overlay_mtu: Option<(u32, &str)> = None;
    let mut found = Vec::new();
    for l in links {
        let Some((bytes, what)) = overhead(l) else {
            continue;
        };
        if overlay_mtu.is_none_or(|(m, _)| l.mtu < m) {
            overlay_mtu = Some((l.mtu, l.name.as_str()));
        }
        let under = l.underlay.clone().or_else(|| fallback.clone());
        let Some(under) = under.as_deref().and_then(|u| j.s.link(u)) else {
            continue;
        };
        if l.mtu + bytes > under.mtu {
            let max = under.mtu.saturating_sub(bytes);
            found.push(finding(
                FindingId::OverlayMtuTooLarge,
                Severity::Error,
                format!(
                    "{} ({}) has MTU {}, but {what} adds {bytes} bytes and {} has MTU {}: packets larger than {max} bytes are dropped (small ones pass, so it shows only on big transfers)",
                    l.name, l.kind, l.mtu, under.name, under.mtu
                ),
                vec![
                    setting(&format!("mtu of {}", l.name), &l.mtu.to_string()),
                    setting(&format!("mtu of {}", under.name), &under.mtu.to_string()),
                ],
                format!("ip -d link show {}; ip link show {}", l.name, under.name),
                Some(format!("ip link set {} mtu {max} (and set the CNI's MTU so it stays)", l.name)),
            ));
        }
    }
    j.out.extend(found);
    let Some((omtu, oname)) = overlay_mtu else {
        return;
    };
    // The pods' host-side veths: a bridge takes the smallest MTU of its ports.
    let pod_facing = |l: &Link| {
        l.master
            .as_deref()
            .is_some_and(|m| POD_BRIDGES.contains(&m))
            || ["cali", "lxc"].iter().any(|p| l.name.starts_with(p)) && l.kind == "veth"
    };
    let over: Vec<&Link> = links
        .iter()
        .filter(|l| pod_facing(l) && l.mtu > omtu)
        .collect();
    if over.is_empty() {
        return;
    }
    let names: Vec<String> = over
        .iter()
        .map(|l| format!("{} ({})", l.name, l.mtu))
        .collect();
    let shown = if names.len() > 4 {
        format!("{} and {} more", names[..4].join(", "), names.len() - 4)
    } else {
        names.join(", ")
    };
    let mut ev = vec![setting(&format!("mtu of {oname}"), &omtu.to_string())];
    ev.extend(
        over.iter()
            .take(4)
            .map(|l| setting(&format!("mtu of {}", l.name), &l.mtu.to_string())),
    );
    j.add(finding(
        FindingId::PodMtuExceedsOverlay,
        Severity::Error,
        format!("pod interfaces {shown} have a larger MTU than the overlay {oname} ({omtu}): pods send packets the tunnel cannot carry"),
        ev,
        format!("ip link show {}", over[0].name),
        Some(format!("set the CNI's MTU to {omtu} or less (pod interfaces take it when they are created); now: ip link set {} mtu {omtu}", over[0].name)),
    ));
}

fn conntrack(j: &mut Judge<'_>) {
    let s = j.s;
    let max = match &s.conntrack_max {
        Known::Known(m) => *m,
        Known::Unknown(r) => {
            j.unknown(
                "net.netfilter.nf_conntrack_max",
                r,
                "the connection tracking table has room",
                "sysctl net.netfilter.nf_conntrack_max",
            );
            return;
        }
    };
    match &s.conntrack_count {
        Known::Known(c) if max > 0 && c * 5 > max * 4 => {
            let pct = c * 100 / max;
            j.add(finding(
                FindingId::ConntrackNearlyFull,
                Severity::Warning,
                format!("the connection tracking table is {pct}% full ({c} of {max}): when it is full the kernel drops new connections at random"),
                vec![
                    setting("net.netfilter.nf_conntrack_count", &c.to_string()),
                    setting("net.netfilter.nf_conntrack_max", &max.to_string()),
                ],
                "sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max".into(),
                Some(sysctl_fix("net.netfilter.nf_conntrack_max", &(max * 2).to_string())),
            ));
        }
        Known::Known(_) => {}
        Known::Unknown(r) => j.unknown(
            "net.netfilter.nf_conntrack_count",
            r,
            "the connection tracking table has room",
            "sysctl net.netfilter.nf_conntrack_count",
        ),
    }
    let want = (CONNTRACK_PER_CORE * u64::from(s.cpus.max(1))).clamp(CONNTRACK_MIN, CONNTRACK_CAP);
    if max < want {
        j.add(finding(
            FindingId::ConntrackMaxLow,
            Severity::Warning,
            format!("nf_conntrack_max is {max}, below the {want} kube-proxy sets for {} CPU(s) (32768 per core, at least 131072): a busy node runs out of connection tracking entries", s.cpus),
            vec![
                setting("net.netfilter.nf_conntrack_max", &max.to_string()),
                setting("online CPUs", &s.cpus.to_string()),
            ],
            "sysctl net.netfilter.nf_conntrack_max".into(),
            Some(sysctl_fix("net.netfilter.nf_conntrack_max", &want.to_string())),
        ));
    }
}

/// Ports of `r` outside every reserved range: the parts an outgoing connection may take.
fn unreserved(r: PortRange, reserved: &[PortRange]) -> Vec<PortRange> {
    let mut out = Vec::new();
    let mut start = u32::from(r.first);
    let end = u32::from(r.last);
    let mut res: Vec<PortRange> = reserved.to_vec();
    res.sort();
    for x in res {
        let (a, b) = (u32::from(x.first), u32::from(x.last));
        if b < start || a > end {
            continue;
        }
        if a > start {
            out.push((start, a - 1));
        }
        start = start.max(b + 1);
        if start > end {
            break;
        }
    }
    if start <= end {
        out.push((start, end));
    }
    out.into_iter()
        .filter_map(|(a, b)| {
            Some(PortRange {
                first: u16::try_from(a).ok()?,
                last: u16::try_from(b).ok()?,
            })
        })
        .collect()
}

fn intersect(a: PortRange, b: PortRange) -> Option<PortRange> {
    let first = a.first.max(b.first);
    let last = a.last.min(b.last);
    (first <= last).then_some(PortRange { first, last })
}

fn ports(j: &mut Judge<'_>, input: &Input<'_>) {
    let s = j.s;
    let wanted: Vec<&Checked> = input
        .checked
        .iter()
        .filter(|c| c.result != PortResult::Off)
        .filter(|c| matches!(c.entry.protocol, Protocol::Tcp | Protocol::Udp))
        .filter(|c| matches!(c.expect, Expect::Listening | Expect::Reserved))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let eph = match &s.local_port_range {
        Known::Known(r) => *r,
        Known::Unknown(r) => {
            j.unknown(
                "net.ipv4.ip_local_port_range",
                r,
                "outgoing connections can take the cluster's ports",
                "sysctl net.ipv4.ip_local_port_range",
            );
            return;
        }
    };
    let reserved = match &s.reserved_ports {
        Known::Known(r) => r.clone(),
        Known::Unknown(r) => {
            j.unknown(
                "net.ipv4.ip_local_reserved_ports",
                r,
                "outgoing connections can take the cluster's ports",
                "sysctl net.ipv4.ip_local_reserved_ports",
            );
            return;
        }
    };
    let range_ev = setting("net.ipv4.ip_local_port_range", &eph.to_string());
    let reserved_text = if reserved.is_empty() {
        "none".to_string()
    } else {
        reserved
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut seen: Vec<(Protocol, PortRange)> = Vec::new();
    for c in wanted {
        let Some(overlap) = intersect(c.port, eph) else {
            continue;
        };
        let open = unreserved(overlap, &reserved);
        if open.is_empty() || seen.contains(&(c.entry.protocol, c.port)) {
            continue;
        }
        seen.push((c.entry.protocol, c.port));
        let open_text: Vec<String> = open.iter().map(ToString::to_string).collect();
        let to_reserve = if reserved.is_empty() {
            overlap.to_string()
        } else {
            format!("{reserved_text},{overlap}")
        };
        let (id, what) = if c.expect == Expect::Reserved {
            (
                FindingId::EphemeralOverlapsNodeport,
                format!("the {} range {}", c.entry.component, c.port),
            )
        } else {
            (
                FindingId::EphemeralOverlapsPort,
                format!("{}'s port {}", c.entry.component, c.port),
            )
        };
        let mut f = finding(
            id,
            Severity::Warning,
            format!(
                "the ephemeral port range {eph} overlaps {what}, and {} not reserved: an outgoing connection can take a port before the component binds it",
                if open.len() == 1 && open[0] == overlap {
                    "it is".to_string()
                } else {
                    format!("{} is", open_text.join(", "))
                }
            ),
            vec![
                range_ev.clone(),
                setting("net.ipv4.ip_local_reserved_ports", &reserved_text),
            ],
            "sysctl net.ipv4.ip_local_port_range net.ipv4.ip_local_reserved_ports".into(),
            Some(sysctl_fix("net.ipv4.ip_local_reserved_ports", &to_reserve)),
        );
        f.entry = Some(c.entry.clone());
        f.protocol = Some(c.entry.protocol);
        f.port = Some(overlap);
        j.add(f);
    }
}

/// The links on the cluster's paths: the route to every peer, and to its device being up, with
/// carrier, and its routes not `linkdown`. With no peer known, the default routes' devices.
fn paths(j: &mut Judge<'_>) {
    let s = j.s;
    let mut by_dev: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &s.paths {
        match &p.dev {
            Known::Known(d) => by_dev
                .entry(d.clone())
                .or_default()
                .push(format!("{} ({})", p.peer, p.why)),
            Known::Unknown(r) => j.add(finding(
                FindingId::PathNoRoute,
                Severity::Error,
                format!("no route to {}, {}: {r}", p.peer, p.why),
                vec![setting(&format!("route to {}", p.peer), "none")],
                format!("ip route get {}", p.peer),
                Some("add the route (or the address on the interface that should reach it)".into()),
            )),
        }
    }
    if s.paths.is_empty() {
        for r in s
            .default_routes(false)
            .into_iter()
            .chain(s.default_routes(true))
        {
            if let Some(d) = &r.dev {
                by_dev
                    .entry(d.clone())
                    .or_default()
                    .push("the default route".into());
            }
        }
    }
    if by_dev.is_empty() {
        return;
    }
    let Some(_) = s.links.get() else {
        if let Some(r) = s.links.reason() {
            let r = r.to_string();
            j.unknown(
                "the links",
                &r,
                "the links towards the cluster's peers are up",
                "ip link",
            );
        }
        return;
    };
    for (dev, peers) in by_dev {
        let Some(l) = s.link(&dev) else { continue };
        let linkdown = s.routes.get().is_some_and(|rs| {
            rs.iter()
                .any(|r| r.linkdown && r.dev.as_deref() == Some(&dev))
        });
        let (problem, fix) = if !l.up {
            ("is down", format!("ip link set {dev} up"))
        } else if !l.carrier {
            (
                "has no carrier (cable, peer or switch port down)",
                format!("bring back {dev}'s cable, its peer or its switch port"),
            )
        } else if linkdown {
            (
                "has routes the kernel marks linkdown",
                format!("bring back {dev}'s carrier (its cable, peer or switch port)"),
            )
        } else {
            continue;
        };
        let shown = if peers.len() > 3 {
            format!("{} and {} more", peers[..3].join(", "), peers.len() - 3)
        } else {
            peers.join(", ")
        };
        j.add(finding(
            FindingId::PathLinkDown,
            Severity::Error,
            format!("{dev} {problem}, and it carries the route to {shown}"),
            vec![
                setting(
                    &format!("{dev} admin state"),
                    if l.up { "up" } else { "down" },
                ),
                setting(
                    &format!("{dev} carrier"),
                    if l.carrier { "yes" } else { "no" },
                ),
                setting(
                    &format!("{dev} routes linkdown"),
                    if linkdown { "yes" } else { "no" },
                ),
            ],
            format!("ip link show {dev}; ip route show dev {dev}"),
            Some(fix),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Key;
    use crate::role::tests::{iface, listener};
    use crate::settings::{HostsEntry, Modules, PathRoute, Route, RpFilter};
    use crate::{Address, Family, Proto};

    fn link(name: &str, kind: &str, mtu: u32) -> Link {
        Link {
            name: name.into(),
            kind: kind.into(),
            up: true,
            carrier: true,
            mtu,
            master: None,
            underlay: None,
            underlay_v6: None,
        }
    }

    /// A worker with flannel as `kports lab` builds one, every setting right.
    fn good() -> NodeSettings {
        let mut vx = link("flannel.1", "vxlan", 1450);
        vx.underlay = Some("eth0".into());
        vx.underlay_v6 = Some(false);
        let mut veth = link("veth-pod", "veth", 1450);
        veth.master = Some("cni0".into());
        NodeSettings {
            hostname: Known::Known("w1".into()),
            hosts: Known::Known(vec![HostsEntry {
                address: "192.0.2.21".parse().unwrap(),
                names: vec!["w1".into()],
            }]),
            resolved: None,
            ip_forward: Known::Known(1),
            ipv6_forwarding: Known::Known(1),
            bridge_nf_call_iptables: Known::Known(Some(1)),
            bridge_nf_call_ip6tables: Known::Known(Some(1)),
            rp_filter: ["all", "default", "eth0", "cali1234"]
                .iter()
                .map(|d| RpFilter {
                    device: d.to_string(),
                    value: Known::Known(2),
                })
                .collect(),
            local_port_range: Known::Known(PortRange {
                first: 32768,
                last: 60999,
            }),
            reserved_ports: Known::Known(vec![]),
            conntrack_count: Known::Known(100),
            conntrack_max: Known::Known(262_144),
            modules: Modules {
                loaded: Known::Known(vec!["br_netfilter".into()]),
                builtin: vec![],
            },
            cpus: 2,
            routes: Known::Known(vec![Route {
                dst: "default".into(),
                v6: false,
                dev: Some("eth0".into()),
                gateway: Some("192.0.2.1".parse().unwrap()),
                linkdown: false,
            }]),
            links: Known::Known(vec![
                link("eth0", "device", 1500),
                link("cni0", "bridge", 1450),
                veth,
                vx,
            ]),
            paths: vec![PathRoute {
                peer: "192.0.2.11".parse().unwrap(),
                why: "the API server this node connects to".into(),
                dev: Known::Known("eth0".into()),
            }],
        }
    }

    fn interfaces() -> Vec<Interface> {
        let mut eth0 = iface("eth0", "device", None);
        eth0.addresses = vec![Address {
            address: "192.0.2.21".parse().unwrap(),
            prefix_len: 24,
            family: Family::Ipv4,
            scope: "global".into(),
        }];
        vec![eth0, iface("cni0", "bridge", None)]
    }

    fn checked(component: &str, port: PortRange, expect: Expect) -> Checked {
        Checked {
            entry: Key {
                component: component.into(),
                protocol: Protocol::Tcp,
                port,
            },
            port,
            purpose: String::new(),
            expect,
            result: PortResult::Ok,
            listeners: vec![],
            configured_by: vec![],
        }
    }

    fn node_ports() -> Vec<Checked> {
        vec![
            checked("kubelet", PortRange::single(10250), Expect::Listening),
            checked(
                "kube-proxy",
                PortRange {
                    first: 30000,
                    last: 32767,
                },
                Expect::Reserved,
            ),
        ]
    }

    fn kube_proxy(args: &str) -> Socket {
        let mut s = listener(
            Proto::Tcp,
            "0.0.0.0",
            10256,
            "kube-proxy",
            7,
            Some("kube-proxy"),
        );
        let p = Arc::make_mut(&mut s.processes);
        Arc::make_mut(&mut p[0]).cmdline = format!("kube-proxy {args}");
        s
    }

    use std::sync::Arc;

    fn run_with(s: &NodeSettings, sockets: &[Socket], cnis: &[&str], role: Role) -> Vec<Finding> {
        let cnis: Vec<String> = cnis.iter().map(|c| c.to_string()).collect();
        findings(&Input {
            settings: s,
            interfaces: &interfaces(),
            sockets,
            roles: role.into(),
            cnis: &cnis,
            checked: &node_ports(),
            pre_install: false,
        })
    }

    fn ids(f: &[Finding]) -> Vec<FindingId> {
        f.iter().map(|f| f.id).collect()
    }

    /// One wrong setting gives exactly its finding.
    fn only(s: &NodeSettings, cnis: &[&str]) -> Finding {
        let f = run_with(s, &[kube_proxy("--v=2")], cnis, Role::Worker);
        assert_eq!(f.len(), 1, "{:#?}", f);
        f.into_iter().next().unwrap()
    }

    #[test]
    fn a_good_node_has_no_finding_and_an_unknown_role_none_at_all() {
        let s = good();
        assert_eq!(
            ids(&run_with(&s, &[kube_proxy("")], &["flannel"], Role::Worker)),
            [] as [FindingId; 0]
        );
        let mut bad = good();
        bad.ip_forward = Known::Known(0);
        let none = findings(&Input {
            settings: &bad,
            interfaces: &interfaces(),
            sockets: &[],
            roles: Roles::NONE,
            cnis: &[],
            checked: &[],
            pre_install: false,
        });
        assert!(none.is_empty());
    }

    #[test]
    fn forwarding_and_bridge_netfilter() {
        let mut s = good();
        s.ip_forward = Known::Known(0);
        let f = only(&s, &["flannel"]);
        assert_eq!(
            (f.id, f.severity),
            (FindingId::IpForwardOff, Severity::Error)
        );
        assert_eq!(f.evidence.settings[0].value, "0");
        assert_eq!(f.command, "sysctl net.ipv4.ip_forward");
        assert!(f.fix.starts_with("sysctl -w net.ipv4.ip_forward=1"));
        assert_eq!((f.protocol, f.port), (None, None));

        let mut s = good();
        s.bridge_nf_call_iptables = Known::Known(None);
        assert_eq!(only(&s, &["flannel"]).id, FindingId::BrNetfilterMissing);
        s.bridge_nf_call_iptables = Known::Known(Some(0));
        assert_eq!(only(&s, &["flannel"]).id, FindingId::BridgeNfCallOff);
        // nftables mode and no bridge: bridge netfilter is not needed.
        let mut no_bridge = interfaces();
        no_bridge.retain(|i| i.name != "cni0");
        let f = findings(&Input {
            settings: &s,
            interfaces: &no_bridge,
            sockets: &[kube_proxy("--proxy-mode=nftables")],
            roles: Role::Worker.into(),
            cnis: &["cilium".to_string()],
            checked: &node_ports(),
            pre_install: false,
        });
        assert_eq!(ids(&f), [FindingId::KubeProxyModuleMissing]);
        // IPv6 forwarding off counts only on a dual-stack cluster.
        let mut s = good();
        s.ipv6_forwarding = Known::Known(0);
        assert!(run_with(&s, &[kube_proxy("")], &["flannel"], Role::Worker).is_empty());
        let dual = kube_proxy("--cluster-cidr=10.244.0.0/16,fd00:10:244::/56");
        let f = run_with(&s, &[dual], &["flannel"], Role::Worker);
        assert_eq!(
            ids(&f),
            [FindingId::Ipv6ForwardingOff, FindingId::NoGlobalIpv6]
        );
    }

    #[test]
    fn an_unreadable_setting_is_unknown_not_fine() {
        let mut s = good();
        s.ip_forward =
            Known::Unknown("permission denied reading /proc/sys/net/ipv4/ip_forward".into());
        let f = only(&s, &["flannel"]);
        assert_eq!(
            (f.id, f.severity),
            (FindingId::SettingUnknown, Severity::Info)
        );
        assert!(f.message.contains("permission denied"), "{}", f.message);
        let mut s = good();
        s.conntrack_max =
            Known::Unknown("/proc/sys/net/netfilter/nf_conntrack_max does not exist".into());
        assert_eq!(only(&s, &["flannel"]).id, FindingId::SettingUnknown);
        // ipvs modules when /proc/modules cannot be read and nothing else shows them.
        let mut s = good();
        s.modules.loaded = Known::Unknown("/proc/modules does not exist".into());
        s.modules.builtin = vec!["ip_vs".into(), "nf_conntrack".into()];
        let f = run_with(
            &s,
            &[kube_proxy("--proxy-mode=ipvs")],
            &["flannel"],
            Role::Worker,
        );
        assert_eq!(
            ids(&f),
            [
                FindingId::SettingUnknown,
                FindingId::SettingUnknown,
                FindingId::SettingUnknown
            ]
        );
    }

    #[test]
    fn ipvs_modules() {
        let mut s = good();
        s.modules.loaded = Known::Known(vec![
            "ip_vs".into(),
            "ip_vs_rr".into(),
            "nf_conntrack".into(),
        ]);
        let f = run_with(
            &s,
            &[kube_proxy("--proxy-mode=ipvs")],
            &["flannel"],
            Role::Worker,
        );
        assert_eq!(ids(&f), [FindingId::KubeProxyModuleMissing]);
        assert!(
            f[0].message.contains("ip_vs_wrr, ip_vs_sh"),
            "{}",
            f[0].message
        );
        assert_eq!(
            f[0].fix.split(" (").next(),
            Some("modprobe -a ip_vs_wrr ip_vs_sh")
        );
        // Mode in the config file: modules not judged.
        assert!(
            run_with(
                &s,
                &[kube_proxy("--config=/var/lib/kube-proxy/config.conf")],
                &["flannel"],
                Role::Worker
            )
            .is_empty()
        );
    }

    #[test]
    fn strict_rp_filter_only_where_the_cni_needs_it_loose() {
        let mut s = good();
        s.rp_filter[0].value = Known::Known(0);
        s.rp_filter[3].value = Known::Known(1);
        if let Known::Known(l) = &mut s.links {
            l.push(link("cali1234", "veth", 1450));
        }
        // Flannel does not care about cali* devices.
        assert!(run_with(&s, &[kube_proxy("")], &["flannel"], Role::Worker).is_empty());
        let f = only(&s, &["calico", "flannel"]);
        assert_eq!(f.id, FindingId::RpFilterStrict);
        assert!(f.message.contains("cali1234 (calico)"), "{}", f.message);
        assert!(
            f.fix
                .starts_with("sysctl -w net.ipv4.conf.cali1234.rp_filter=2")
        );
        // `all` strict makes every device strict: the kernel takes the larger value.
        let mut s2 = s.clone();
        s2.rp_filter[3].value = Known::Known(0);
        s2.rp_filter[0].value = Known::Known(1);
        let f = only(&s2, &["calico", "flannel"]);
        assert!(f.fix.starts_with("sysctl -w net.ipv4.conf.all.rp_filter=2"));
    }

    #[test]
    fn overlay_and_pod_mtu() {
        let set = |s: &mut NodeSettings, name: &str, mtu: u32| {
            if let Known::Known(l) = &mut s.links {
                l.iter_mut().find(|l| l.name == name).unwrap().mtu = mtu;
            }
        };
        let mut s = good();
        set(&mut s, "flannel.1", 1500);
        let f = only(&s, &["flannel"]);
        assert_eq!(f.id, FindingId::OverlayMtuTooLarge);
        assert!(
            f.message
                .contains("VXLAN over IPv4 adds 50 bytes and eth0 has MTU 1500"),
            "{}",
            f.message
        );
        assert!(f.fix.starts_with("ip link set flannel.1 mtu 1450"));
        // Over IPv6, 70 bytes.
        let mut s = good();
        if let Known::Known(l) = &mut s.links {
            l.iter_mut()
                .find(|l| l.name == "flannel.1")
                .unwrap()
                .underlay_v6 = Some(true);
        }
        let f = only(&s, &["flannel"]);
        assert_eq!(f.id, FindingId::OverlayMtuTooLarge);
        assert!(
            f.message.contains("larger than 1430 bytes"),
            "{}",
            f.message
        );
        let mut s = good();
        set(&mut s, "veth-pod", 1500);
        let f = only(&s, &["flannel"]);
        assert_eq!(f.id, FindingId::PodMtuExceedsOverlay);
        assert!(f.message.contains("veth-pod (1500)"), "{}", f.message);
    }

    #[test]
    fn conntrack_headroom() {
        let mut s = good();
        s.conntrack_count = Known::Known(220_000);
        let f = only(&s, &["flannel"]);
        assert_eq!(f.id, FindingId::ConntrackNearlyFull);
        assert!(f.message.contains("83% full"), "{}", f.message);
        let mut s = good();
        s.conntrack_max = Known::Known(65_536);
        let f = only(&s, &["flannel"]);
        assert_eq!(f.id, FindingId::ConntrackMaxLow);
        assert!(f.message.contains("below the 131072"), "{}", f.message);
        s.cpus = 8;
        s.conntrack_max = Known::Known(200_000);
        assert!(only(&s, &["flannel"]).message.contains("below the 262144"));
    }

    #[test]
    fn ephemeral_range_against_nodeports_and_required_ports() {
        let mut s = good();
        s.local_port_range = Known::Known(PortRange {
            first: 10000,
            last: 60999,
        });
        let f = run_with(&s, &[kube_proxy("")], &["flannel"], Role::Worker);
        assert_eq!(
            ids(&f),
            [
                FindingId::EphemeralOverlapsPort,
                FindingId::EphemeralOverlapsNodeport
            ]
        );
        assert_eq!(f[0].place(), "tcp/10250");
        assert_eq!(f[1].place(), "tcp/30000-32767");
        // Reserving them clears both.
        s.reserved_ports = Known::Known(vec![
            PortRange::single(10250),
            PortRange {
                first: 30000,
                last: 32767,
            },
        ]);
        assert!(run_with(&s, &[kube_proxy("")], &["flannel"], Role::Worker).is_empty());
        // Partly reserved: the rest is named.
        s.reserved_ports = Known::Known(vec![
            PortRange::single(10250),
            PortRange {
                first: 30000,
                last: 31000,
            },
        ]);
        let f = only(&s, &["flannel"]);
        assert!(
            f.message.contains("31001-32767 is not reserved"),
            "{}",
            f.message
        );
        assert_eq!(
            unreserved(
                PortRange { first: 1, last: 10 },
                &[PortRange { first: 3, last: 4 }, PortRange::single(10)]
            ),
            [
                PortRange { first: 1, last: 2 },
                PortRange { first: 5, last: 9 }
            ]
        );
    }

    #[test]
    fn identity() {
        let mut s = good();
        s.hostname = Known::Known("Worker_1".into());
        s.hosts = Known::Known(vec![HostsEntry {
            address: "192.0.2.21".parse().unwrap(),
            names: vec!["Worker_1".into()],
        }]);
        let f = only(&s, &["flannel"]);
        assert_eq!(f.id, FindingId::HostnameInvalid);
        assert_eq!(f.fix, "hostnamectl set-hostname NAME");
        s.hostname = Known::Known("Worker1".into());
        s.hosts = Known::Known(vec![HostsEntry {
            address: "192.0.2.21".parse().unwrap(),
            names: vec!["Worker1".into()],
        }]);
        assert_eq!(
            only(&s, &["flannel"]).fix,
            "hostnamectl set-hostname worker1"
        );
        assert!(
            valid_node_name("w1.example-2.org")
                && !valid_node_name("-w1")
                && !valid_node_name("a..b")
        );
        // Not in /etc/hosts and the resolver does not know it.
        let mut s = good();
        s.hosts = Known::Known(vec![]);
        s.resolved = Some(Known::Known(vec![]));
        let f = only(&s, &["flannel"]);
        assert_eq!(f.id, FindingId::HostnameUnresolved);
        assert_eq!(f.fix, "echo '192.0.2.21 w1' >> /etc/hosts");
        s.resolved = Some(Known::Known(vec!["127.0.1.1".parse().unwrap()]));
        assert!(run_with(&s, &[kube_proxy("")], &["flannel"], Role::Worker).is_empty());
        s.resolved = Some(Known::Known(vec!["192.0.2.99".parse().unwrap()]));
        assert_eq!(only(&s, &["flannel"]).id, FindingId::HostnameNotLocal);
        s.resolved = Some(Known::Unknown(
            "the resolver did not answer within 3 s".into(),
        ));
        assert_eq!(only(&s, &["flannel"]).id, FindingId::SettingUnknown);
    }

    #[test]
    fn default_route_matters_only_when_the_address_is_not_given() {
        let mut s = good();
        s.routes = Known::Known(vec![]);
        let with = |cmdline: &str, c: &'static str, port: u16| {
            let mut l = listener(Proto::Tcp, "0.0.0.0", port, c, u32::from(port), Some(c));
            Arc::make_mut(&mut Arc::make_mut(&mut l.processes)[0]).cmdline = cmdline.into();
            l
        };
        let kubelet = with("kubelet --v=2", "kubelet", 10250);
        let kubelet_ip = with("kubelet --node-ip=192.0.2.21", "kubelet", 10250);
        // A kubelet without --node-ip takes its address from the default route.
        let f = run_with(&s, &[kube_proxy(""), kubelet], &["flannel"], Role::Worker);
        assert_eq!(ids(&f), [FindingId::NoDefaultRoute]);
        // With it, or with no kubelet running to tell (its absence is a finding of its own),
        // none.
        let sockets = [kube_proxy(""), kubelet_ip.clone()];
        assert!(run_with(&s, &sockets, &["flannel"], Role::Worker).is_empty());
        assert!(run_with(&s, &[kube_proxy("")], &["flannel"], Role::Worker).is_empty());
        // Before kubeadm runs, kubeadm will pick.
        let f = findings(&Input {
            settings: &s,
            interfaces: &interfaces(),
            sockets: &[],
            roles: Role::Worker.into(),
            cnis: &[],
            checked: &[],
            pre_install: true,
        });
        assert_eq!(ids(&f), [FindingId::NoDefaultRoute]);
        // Unless a kubelet already runs with its address given.
        let f = findings(&Input {
            settings: &s,
            interfaces: &interfaces(),
            sockets: std::slice::from_ref(&kubelet_ip),
            roles: Role::Worker.into(),
            cnis: &[],
            checked: &[],
            pre_install: true,
        });
        assert!(f.is_empty(), "{f:#?}");
        // A control-plane node also needs the API server's --advertise-address.
        let api = with("kube-apiserver --secure-port=6443", "kube-apiserver", 6443);
        let f = run_with(
            &s,
            &[kube_proxy(""), kubelet_ip.clone(), api],
            &["flannel"],
            Role::ControlPlane,
        );
        assert_eq!(ids(&f), [FindingId::NoDefaultRoute]);
        let api = with(
            "kube-apiserver --advertise-address=192.0.2.21",
            "kube-apiserver",
            6443,
        );
        assert!(
            run_with(
                &s,
                &[kube_proxy(""), kubelet_ip, api],
                &["flannel"],
                Role::ControlPlane
            )
            .is_empty()
        );
        // A default route through an interface without a global IPv4 address.
        let mut s = good();
        if let Known::Known(r) = &mut s.routes {
            r[0].dev = Some("cni0".into());
        }
        let kubelet = with("kubelet", "kubelet", 10250);
        let f = run_with(&s, &[kube_proxy(""), kubelet], &["flannel"], Role::Worker);
        assert_eq!(ids(&f), [FindingId::DefaultRouteNoIpv4]);
    }

    #[test]
    fn links_on_the_cluster_paths() {
        let down = |f: &dyn Fn(&mut Link)| {
            let mut s = good();
            if let Known::Known(l) = &mut s.links {
                f(l.iter_mut().find(|l| l.name == "eth0").unwrap());
            }
            s
        };
        let f = only(&down(&|l| l.carrier = false), &["flannel"]);
        assert_eq!(
            (f.id, f.severity),
            (FindingId::PathLinkDown, Severity::Error)
        );
        assert!(
            f.message.starts_with("eth0 has no carrier"),
            "{}",
            f.message
        );
        assert!(
            f.message
                .contains("192.0.2.11 (the API server this node connects to)")
        );
        assert!(
            only(&down(&|l| l.up = false), &["flannel"])
                .message
                .starts_with("eth0 is down")
        );
        let mut s = good();
        if let Known::Known(r) = &mut s.routes {
            r[0].linkdown = true;
        }
        assert!(only(&s, &["flannel"]).message.contains("linkdown"));
        let mut s = good();
        s.paths[0].dev = Known::Unknown(
            "ip failed (exit status: 2): RTNETLINK answers: Network is unreachable".into(),
        );
        let f = only(&s, &["flannel"]);
        assert_eq!(f.id, FindingId::PathNoRoute);
        assert!(f.message.contains("Network is unreachable"));
    }

    #[test]
    fn etcd_members_get_identity_ports_and_paths_only() {
        let mut s = good();
        s.ip_forward = Known::Known(0);
        s.conntrack_max = Known::Known(1);
        s.routes = Known::Known(vec![]);
        assert!(run_with(&s, &[], &["flannel"], Role::Etcd).is_empty());
    }

    #[test]
    fn duplicate_host_names_across_nodes() {
        let f = duplicate_hostnames(&[
            ("10.0.0.1".into(), "node-a".into()),
            ("10.0.0.2".into(), "node-b".into()),
            ("10.0.0.3".into(), "Node-A".into()),
        ]);
        assert_eq!(ids(&f), [FindingId::HostnameDuplicate]);
        assert!(
            f[0].message
                .starts_with("nodes 10.0.0.1, 10.0.0.3 all have the host name node-a")
        );
    }
}
