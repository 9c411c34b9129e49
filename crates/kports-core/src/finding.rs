//! Findings: what `kports check` (and the firewall's join) report, with the evidence behind
//! each and the command that shows it without kports.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::catalog::{Key, PortRange, Protocol, Severity, SourceKind};
use crate::{Owner, Proto, SockState, Socket};

/// What a finding is about: stable ids, for scripts and CI to match on (the JSON `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingId {
    /// A port the node's role needs has no listener.
    PortNotListening,
    /// Another process holds a component's port.
    PortConflict,
    /// Bound to loopback where other hosts must connect.
    BoundLoopbackOnly,
    /// Bound wider than the component needs.
    BoundTooWide,
    /// A listener no catalog entry explains.
    UnexplainedListener,
    /// Before kubeadm: a port the role needs is taken.
    PortInUse,
    /// A process serving a port was given a secret on its command line, which every user of
    /// the node can read in `/proc/PID/cmdline`.
    SecretOnCommandLine,
    // Raised by `expect = "absent"` entries (see [`FindingId::ABSENT`]).
    /// The kubelet's read-only port listens.
    ReadonlyPortOpen,
    /// A legacy insecure port listens.
    LegacyInsecurePort,
    /// A port no node should serve listens.
    ForbiddenPortOpen,
    // Raised by the firewall join (`kports_firewall::findings`).
    /// A source that needs a required port gets drop or reject.
    FirewallBlocksRequiredPort,
    /// A port only this node needs is bound beyond loopback and the firewall lets anyone in.
    FirewallExposesPrivatePort,
    /// The ruleset could not be read: whether required ports are open is unknown.
    FirewallUnknown,
    // The node's own prerequisites (`crate::prereq`).
    /// The host name is not a valid node name (lowercase RFC 1123).
    HostnameInvalid,
    /// The host name does not resolve.
    HostnameUnresolved,
    /// The host name resolves to addresses none of which is this node's.
    HostnameNotLocal,
    /// Several nodes share a host name (a cluster view's join).
    HostnameDuplicate,
    /// No default route where the node's address will be picked from it.
    NoDefaultRoute,
    /// The default route's interface has no global IPv4 address (or there is no IPv4 one).
    DefaultRouteNoIpv4,
    /// A dual-stack cluster, but no global IPv6 address.
    NoGlobalIpv6,
    /// `net.ipv4.ip_forward` is not 1.
    IpForwardOff,
    /// `net.ipv6.conf.all.forwarding` is not 1 on a dual-stack node.
    Ipv6ForwardingOff,
    /// `br_netfilter` is not loaded where bridged traffic must pass iptables.
    BrNetfilterMissing,
    /// `net.bridge.bridge-nf-call-ip(6)tables` is not 1.
    BridgeNfCallOff,
    /// A kernel module kube-proxy's mode needs is missing.
    KubeProxyModuleMissing,
    /// Strict `rp_filter` on a device the CNI needs loose.
    RpFilterStrict,
    /// An overlay's MTU leaves no room for its encapsulation.
    OverlayMtuTooLarge,
    /// Pod interfaces have a larger MTU than the overlay.
    PodMtuExceedsOverlay,
    /// The conntrack table is more than 80% full.
    ConntrackNearlyFull,
    /// `nf_conntrack_max` is below what kube-proxy would set.
    ConntrackMaxLow,
    /// The ephemeral port range overlaps the NodePort range, unreserved.
    EphemeralOverlapsNodeport,
    /// The ephemeral port range overlaps a required port, unreserved.
    EphemeralOverlapsPort,
    /// No route to a peer on the cluster's paths.
    PathNoRoute,
    /// The link towards a peer is down, without carrier, or its routes are `linkdown`.
    PathLinkDown,
    /// A setting a prerequisite needs could not be read.
    SettingUnknown,
}

impl FindingId {
    /// The ids an `expect = "absent"` catalog entry may raise.
    pub const ABSENT: [FindingId; 3] = [
        FindingId::ReadonlyPortOpen,
        FindingId::LegacyInsecurePort,
        FindingId::ForbiddenPortOpen,
    ];

    /// The node prerequisites' ids (raised by `crate::prereq`).
    pub const PREREQ: [FindingId; 22] = [
        FindingId::HostnameInvalid,
        FindingId::HostnameUnresolved,
        FindingId::HostnameNotLocal,
        FindingId::HostnameDuplicate,
        FindingId::NoDefaultRoute,
        FindingId::DefaultRouteNoIpv4,
        FindingId::NoGlobalIpv6,
        FindingId::IpForwardOff,
        FindingId::Ipv6ForwardingOff,
        FindingId::BrNetfilterMissing,
        FindingId::BridgeNfCallOff,
        FindingId::KubeProxyModuleMissing,
        FindingId::RpFilterStrict,
        FindingId::OverlayMtuTooLarge,
        FindingId::PodMtuExceedsOverlay,
        FindingId::ConntrackNearlyFull,
        FindingId::ConntrackMaxLow,
        FindingId::EphemeralOverlapsNodeport,
        FindingId::EphemeralOverlapsPort,
        FindingId::PathNoRoute,
        FindingId::PathLinkDown,
        FindingId::SettingUnknown,
    ];

    /// The ids of the port checks and the firewall (raised by `crate::check` and the
    /// firewall's findings).
    pub const PORTS: [FindingId; 13] = [
        FindingId::PortNotListening,
        FindingId::PortConflict,
        FindingId::BoundLoopbackOnly,
        FindingId::BoundTooWide,
        FindingId::UnexplainedListener,
        FindingId::PortInUse,
        FindingId::SecretOnCommandLine,
        FindingId::ReadonlyPortOpen,
        FindingId::LegacyInsecurePort,
        FindingId::ForbiddenPortOpen,
        FindingId::FirewallBlocksRequiredPort,
        FindingId::FirewallExposesPrivatePort,
        FindingId::FirewallUnknown,
    ];

    /// Every id, in the order of the enum: [`FindingId::PORTS`], then [`FindingId::PREREQ`].
    pub const ALL: [FindingId; 35] = {
        assert!(Self::PORTS.len() + Self::PREREQ.len() == 35);
        let mut all = [FindingId::PortNotListening; 35];
        let mut i = 0;
        while i < all.len() {
            all[i] = if i < Self::PORTS.len() {
                Self::PORTS[i]
            } else {
                Self::PREREQ[i - Self::PORTS.len()]
            };
            i += 1;
        }
        all
    };

    /// What resolves a finding of this kind, in general: the fix a finding carries when the
    /// place that raises it has nothing more precise to say (a rule handle, a flag's file).
    pub fn fix(self) -> &'static str {
        match self {
            FindingId::PortNotListening => {
                "start the component (`systemctl start kubelet`; a static pod: `crictl ps -a` shows why it stopped)"
            }
            FindingId::PortConflict | FindingId::PortInUse => {
                "stop the process that holds the port, or move it to another port"
            }
            FindingId::BoundLoopbackOnly => {
                "set the component's bind address to the node's address and restart it"
            }
            FindingId::BoundTooWide => {
                "set the component's bind address to what kubeadm uses and restart it"
            }
            FindingId::UnexplainedListener => {
                "none if it is expected (add it to a --catalog file); otherwise stop the process"
            }
            FindingId::SecretOnCommandLine => {
                "pass the secret in a file or the environment instead of on the command line"
            }
            FindingId::ReadonlyPortOpen => {
                "set `readOnlyPort: 0` in /var/lib/kubelet/config.yaml, then `systemctl restart kubelet`"
            }
            FindingId::LegacyInsecurePort => {
                "remove the insecure `--port` flag from the component's manifest (or set `--port=0`)"
            }
            FindingId::ForbiddenPortOpen => "stop the process that listens there",
            FindingId::FirewallBlocksRequiredPort => {
                "accept the port from the sources that need it before the rule that blocks it"
            }
            FindingId::FirewallExposesPrivatePort => {
                "bind the component to 127.0.0.1, or drop the port from other hosts in the firewall"
            }
            FindingId::FirewallUnknown => "run kports as root so that it can read the ruleset",
            FindingId::HostnameInvalid => "hostnamectl set-hostname NAME (lowercase RFC 1123)",
            FindingId::HostnameUnresolved | FindingId::HostnameNotLocal => {
                "add the node's address and name to /etc/hosts or DNS"
            }
            FindingId::HostnameDuplicate => {
                "give each node its own name: hostnamectl set-hostname NAME"
            }
            FindingId::NoDefaultRoute => {
                "add a default route (`ip route add default via GATEWAY`), or pass the address to kubeadm (--apiserver-advertise-address, --node-ip)"
            }
            FindingId::DefaultRouteNoIpv4 => {
                "give the default route's interface an IPv4 address, or pass the address to kubeadm"
            }
            FindingId::NoGlobalIpv6 => "give the node a global IPv6 address",
            FindingId::IpForwardOff => "sysctl -w net.ipv4.ip_forward=1",
            FindingId::Ipv6ForwardingOff => "sysctl -w net.ipv6.conf.all.forwarding=1",
            FindingId::BrNetfilterMissing => {
                "modprobe br_netfilter (to keep it: /etc/modules-load.d/k8s.conf)"
            }
            FindingId::BridgeNfCallOff => {
                "sysctl -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1"
            }
            FindingId::KubeProxyModuleMissing => {
                "modprobe the module (to keep it: /etc/modules-load.d/k8s.conf)"
            }
            FindingId::RpFilterStrict => "sysctl -w net.ipv4.conf.all.rp_filter=2",
            FindingId::OverlayMtuTooLarge | FindingId::PodMtuExceedsOverlay => {
                "set the CNI's MTU to the underlay's MTU minus the encapsulation's overhead"
            }
            FindingId::ConntrackNearlyFull | FindingId::ConntrackMaxLow => {
                "raise net.netfilter.nf_conntrack_max (sysctl -w)"
            }
            FindingId::EphemeralOverlapsNodeport | FindingId::EphemeralOverlapsPort => {
                "reserve the ports: sysctl -w net.ipv4.ip_local_reserved_ports=PORTS"
            }
            FindingId::PathNoRoute => "add a route to the peer (`ip route add PEER via GATEWAY`)",
            FindingId::PathLinkDown => {
                "bring the link up (`ip link set DEV up`) and check its cable or peer"
            }
            FindingId::SettingUnknown => "run kports as root so that it can read the setting",
        }
    }

    /// Whether this is one of the node's prerequisites ([`FindingId::PREREQ`]).
    pub fn is_prereq(self) -> bool {
        FindingId::PREREQ.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FindingId::PortNotListening => "port-not-listening",
            FindingId::PortConflict => "port-conflict",
            FindingId::BoundLoopbackOnly => "bound-loopback-only",
            FindingId::BoundTooWide => "bound-too-wide",
            FindingId::UnexplainedListener => "unexplained-listener",
            FindingId::PortInUse => "port-in-use",
            FindingId::SecretOnCommandLine => "secret-on-command-line",
            FindingId::ReadonlyPortOpen => "readonly-port-open",
            FindingId::LegacyInsecurePort => "legacy-insecure-port",
            FindingId::ForbiddenPortOpen => "forbidden-port-open",
            FindingId::FirewallBlocksRequiredPort => "firewall-blocks-required-port",
            FindingId::FirewallExposesPrivatePort => "firewall-exposes-private-port",
            FindingId::FirewallUnknown => "firewall-unknown",
            FindingId::HostnameInvalid => "hostname-invalid",
            FindingId::HostnameUnresolved => "hostname-unresolved",
            FindingId::HostnameNotLocal => "hostname-not-local",
            FindingId::HostnameDuplicate => "hostname-duplicate",
            FindingId::NoDefaultRoute => "no-default-route",
            FindingId::DefaultRouteNoIpv4 => "default-route-no-ipv4",
            FindingId::NoGlobalIpv6 => "no-global-ipv6",
            FindingId::IpForwardOff => "ip-forward-off",
            FindingId::Ipv6ForwardingOff => "ipv6-forwarding-off",
            FindingId::BrNetfilterMissing => "br-netfilter-missing",
            FindingId::BridgeNfCallOff => "bridge-nf-call-off",
            FindingId::KubeProxyModuleMissing => "kube-proxy-module-missing",
            FindingId::RpFilterStrict => "rp-filter-strict",
            FindingId::OverlayMtuTooLarge => "overlay-mtu-too-large",
            FindingId::PodMtuExceedsOverlay => "pod-mtu-exceeds-overlay",
            FindingId::ConntrackNearlyFull => "conntrack-nearly-full",
            FindingId::ConntrackMaxLow => "conntrack-max-low",
            FindingId::EphemeralOverlapsNodeport => "ephemeral-overlaps-nodeport",
            FindingId::EphemeralOverlapsPort => "ephemeral-overlaps-port",
            FindingId::PathNoRoute => "path-no-route",
            FindingId::PathLinkDown => "path-link-down",
            FindingId::SettingUnknown => "setting-unknown",
        }
    }
}

impl fmt::Display for FindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem, with what shows it and how to see it without kports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier.
    pub id: FindingId,
    pub severity: Severity,
    /// One line, in words an administrator or a learner understands.
    pub message: String,
    /// The catalog entry the finding is about; none for an unexplained listener.
    pub entry: Option<Key>,
    /// Absent for a finding about the node rather than a port (`prereq`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The port concerned (a single port, or the range for a missing range).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRange>,
    pub evidence: Evidence,
    /// The command that shows it: `ss -tlnp 'sport = :10250'`.
    pub command: String,
    /// The command or change that resolves it (`sysctl -w net.ipv4.ip_forward=1`, `nft delete
    /// rule ip filter INPUT handle 7`); every finding has one ([`FindingId::fix`] at least).
    pub fix: String,
}

impl Finding {
    /// `tcp/6443`, or `-` for a finding about the node rather than a port.
    pub fn place(&self) -> String {
        match (self.protocol, self.port) {
            (Some(proto), Some(port)) => format!("{}/{port}", proto.as_str()),
            _ => "-".to_string(),
        }
    }
}

/// The facts behind a finding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub sockets: Vec<SocketEvidence>,
    pub flags: Vec<Setting>,
    /// Firewall verdicts behind a `firewall-*` finding (absent from the others).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub firewall: Vec<FirewallEvidence>,
    /// Kernel settings and node facts behind a prerequisite finding (absent from the others):
    /// `net.ipv4.ip_forward` = `0`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<Setting>,
}

/// One firewall verdict, as shown in evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallEvidence {
    /// Who the source stands for: `control-plane`, `nodes`, `all`, `load-balancers`.
    #[serde(serialize_with = "kind_name")]
    pub source_kind: SourceKind,
    /// The address or prefix judged from, and where it came from (`10.0.0.11 (connected to
    /// the API server)`).
    pub source: String,
    /// `accept`, `drop`, `reject`, `depends` or `unknown`.
    pub verdict: String,
    /// The rule (or policy) that decided, as kports names it; absent when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A listening socket as shown in evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketEvidence {
    pub proto: Proto,
    pub state: SockState,
    pub local_address: IpAddr,
    pub local_port: u16,
    pub owner: Owner,
    pub processes: Vec<ProcessEvidence>,
    pub component: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessEvidence {
    pub pid: u32,
    pub name: String,
}

/// A flag (or device) that set where a port is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// The process whose command line has the flag; none for a device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `kube-apiserver` or `device flannel.1`.
    pub source: String,
    /// `--bind-address=127.0.0.1` or `vxlan dstport 8472`.
    pub value: String,
}

impl SocketEvidence {
    pub fn of(s: &Socket) -> SocketEvidence {
        SocketEvidence {
            proto: s.proto,
            state: s.state,
            local_address: s.local_address,
            local_port: s.local_port,
            owner: s.owner,
            processes: s
                .processes
                .iter()
                .map(|p| ProcessEvidence {
                    pid: p.pid,
                    name: p.name.clone(),
                })
                .collect(),
            component: s.component,
        }
    }
}

/// Most severe first, then by port, protocol and id.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.port.cmp(&b.port))
            .then(a.protocol.cmp(&b.protocol))
            .then(a.id.as_str().cmp(b.id.as_str()))
    });
}

/// The `ss` command that shows listeners on `port`.
pub fn ss_command(proto: Protocol, port: PortRange) -> String {
    let flag = if proto == Protocol::Udp {
        "-ulnp"
    } else {
        "-tlnp"
    };
    if port.is_single() {
        format!("ss {flag} 'sport = :{}'", port.first)
    } else {
        format!(
            "ss {flag} 'sport >= :{} and sport <= :{}'",
            port.first, port.last
        )
    }
}

/// A source kind as the firewall's rows name it (`self` for the node itself).
fn kind_name<S: serde::Serializer>(k: &SourceKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prerequisite_ids_serialize_as_their_names() {
        let names: Vec<String> = FindingId::PREREQ
            .iter()
            .map(|id| {
                serde_json::to_value(id)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let expected: Vec<&str> = FindingId::PREREQ.iter().map(|id| id.as_str()).collect();
        assert_eq!(names, expected);
        assert_eq!(names[0], "hostname-invalid");
        assert_eq!(names[6], "no-global-ipv6");
        assert_eq!(names[8], "ipv6-forwarding-off");
        assert_eq!(names[17], "ephemeral-overlaps-nodeport");
        assert!(FindingId::SettingUnknown.is_prereq());
        assert!(!FindingId::PortConflict.is_prereq());
    }

    #[test]
    fn every_kind_has_a_fix() {
        // ALL holds each id once; `as_str`'s exhaustive match would not list a new id here.
        let mut names: Vec<&str> = FindingId::ALL.iter().map(|id| id.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FindingId::ALL.len());
        for p in FindingId::PREREQ.iter().chain(&FindingId::ABSENT) {
            assert!(FindingId::ALL.contains(p), "{p}");
        }
        for id in FindingId::ALL {
            assert!(!id.fix().trim().is_empty(), "{id} has no fix");
        }
    }
}
