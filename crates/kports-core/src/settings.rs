//! The node's own network settings, as read from one network namespace (and the caller's UTS
//! namespace): forwarding, bridge netfilter, reverse-path filters, the local port range,
//! conntrack, kernel modules, the host name and how it resolves, routes and links.
//!
//! Every value is [`Known`] or unknown with the reason (no permission, no such file), so a
//! setting kports cannot read is never taken for a good one. `kports-linux`'s `settings` fills
//! this; `prereq` judges it.

use std::net::IpAddr;

use serde::Serialize;

use crate::catalog::PortRange;

/// A value read from the node, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Known<T> {
    Known(T),
    Unknown(String),
}

impl<T> Known<T> {
    pub fn get(&self) -> Option<&T> {
        match self {
            Known::Known(v) => Some(v),
            Known::Unknown(_) => None,
        }
    }

    /// Why the value is unknown; `None` when it is known.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Known::Known(_) => None,
            Known::Unknown(r) => Some(r),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Known<U> {
        match self {
            Known::Known(v) => Known::Known(f(v)),
            Known::Unknown(r) => Known::Unknown(r),
        }
    }
}

/// One line of `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostsEntry {
    pub address: IpAddr,
    pub names: Vec<String>,
}

/// A route of the main table (`ip route show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// `default` or a prefix (`192.0.2.0/24`).
    pub dst: String,
    pub v6: bool,
    pub dev: Option<String>,
    pub gateway: Option<IpAddr>,
    /// The kernel marks the route `linkdown`: its device has no carrier.
    pub linkdown: bool,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.dst == "default"
    }
}

/// A link as `ip -d link show` describes it: what the census's interfaces do not carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub name: String,
    /// Link kind (`vxlan`, `veth`, `bridge`, ...); `device` when it has none.
    pub kind: String,
    /// Administratively up (`ip link set up`).
    pub up: bool,
    /// Has carrier (`LOWER_UP`).
    pub carrier: bool,
    pub mtu: u32,
    /// The bridge it is enslaved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// For a tunnel, the device its packets leave by (`vxlan ... dev eth0`), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay: Option<String>,
    /// For a tunnel, whether its outer packets are IPv6 (from its local or remote address);
    /// `None` when it does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_v6: Option<bool>,
}

/// `net.ipv4.conf.<device>.rp_filter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RpFilter {
    /// `all`, `default` or a device name.
    pub device: String,
    /// 0 off, 1 strict, 2 loose.
    pub value: Known<u8>,
}

/// A peer on the cluster's paths and the route the kernel takes to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathRoute {
    pub peer: IpAddr,
    /// Why it is a peer (`the API server this node connects to`, `an overlay peer on flannel.1`).
    pub why: String,
    /// The device of the route (`ip route get`); unknown with the kernel's answer when there is
    /// no route.
    pub dev: Known<String>,
}

/// Kernel modules: those `/proc/modules` lists, and those known present without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Modules {
    /// Loaded modules (`/proc/modules`).
    pub loaded: Known<Vec<String>>,
    /// Modules seen another way: built into the kernel (`modules.builtin`, `/sys/module`) or
    /// shown by their own sysctls (`net.bridge.*` is br_netfilter, `net.ipv4.vs.*` is ip_vs).
    pub builtin: Vec<String>,
}

impl Modules {
    /// Whether `name` is present: `Unknown` when `/proc/modules` is unreadable and nothing
    /// else shows it.
    pub fn has(&self, name: &str) -> Known<bool> {
        if self.builtin.iter().any(|m| m == name) {
            return Known::Known(true);
        }
        match &self.loaded {
            Known::Known(l) => Known::Known(l.iter().any(|m| m == name)),
            Known::Unknown(r) => Known::Unknown(r.clone()),
        }
    }
}

/// Everything `prereq` judges, from one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSettings {
    pub hostname: Known<String>,
    pub hosts: Known<Vec<HostsEntry>>,
    /// The host name's addresses from the system resolver, asked only when `/etc/hosts` does not
    /// name it (`None` then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Known<Vec<IpAddr>>>,
    /// `net.ipv4.ip_forward`.
    pub ip_forward: Known<u8>,
    /// `net.ipv6.conf.all.forwarding`.
    pub ipv6_forwarding: Known<u8>,
    /// `net.bridge.bridge-nf-call-iptables`; `None` when the file does not exist (no
    /// br_netfilter).
    pub bridge_nf_call_iptables: Known<Option<u8>>,
    pub bridge_nf_call_ip6tables: Known<Option<u8>>,
    /// `all`, then `default`, then every device.
    pub rp_filter: Vec<RpFilter>,
    pub local_port_range: Known<PortRange>,
    pub reserved_ports: Known<Vec<PortRange>>,
    pub conntrack_count: Known<u64>,
    pub conntrack_max: Known<u64>,
    pub modules: Modules,
    /// Online CPUs (what kube-proxy sizes conntrack by); 0 when not read.
    pub cpus: u32,
    pub routes: Known<Vec<Route>>,
    pub links: Known<Vec<Link>>,
    /// Routes to the cluster's peers.
    pub paths: Vec<PathRoute>,
}

impl NodeSettings {
    /// Settings none of which could be read, each for `reason` (a node replayed without them).
    pub fn unread(reason: &str) -> NodeSettings {
        fn u<T>(reason: &str) -> Known<T> {
            Known::Unknown(reason.to_string())
        }
        NodeSettings {
            hostname: u(reason),
            hosts: u(reason),
            resolved: None,
            ip_forward: u(reason),
            ipv6_forwarding: u(reason),
            bridge_nf_call_iptables: u(reason),
            bridge_nf_call_ip6tables: u(reason),
            rp_filter: ["all", "default"]
                .into_iter()
                .map(|d| RpFilter {
                    device: d.to_string(),
                    value: u(reason),
                })
                .collect(),
            local_port_range: u(reason),
            reserved_ports: u(reason),
            conntrack_count: u(reason),
            conntrack_max: u(reason),
            modules: Modules {
                loaded: u(reason),
                builtin: Vec::new(),
            },
            cpus: 0,
            routes: u(reason),
            links: u(reason),
            paths: Vec::new(),
        }
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.get()?.iter().find(|l| l.name == name)
    }

    /// The effective `rp_filter` of `device`: the kernel uses the larger of `all` and the
    /// device's own value.
    pub fn rp_filter_of(&self, device: &str) -> Known<u8> {
        let find = |d: &str| self.rp_filter.iter().find(|r| r.device == d);
        match (find("all"), find(device)) {
            (Some(a), Some(d)) => match (&a.value, &d.value) {
                (Known::Known(a), Known::Known(d)) => Known::Known(*a.max(d)),
                (Known::Unknown(r), _) | (_, Known::Unknown(r)) => Known::Unknown(r.clone()),
            },
            _ => Known::Unknown(format!("net.ipv4.conf.{device}.rp_filter was not read")),
        }
    }

    /// Default routes, IPv4 first.
    pub fn default_routes(&self, v6: bool) -> Vec<&Route> {
        self.routes
            .get()
            .map(|r| r.iter().filter(|r| r.is_default() && r.v6 == v6).collect())
            .unwrap_or_default()
    }
}
fn shown<T: std::fmt::Display>(k: &Known<T>) -> String {
    match k {
        Known::Known(v) => v.to_string(),
        Known::Unknown(r) => format!("unknown ({r})"),
    }
}

impl NodeSettings {
    /// What `kports node` shows: (subject, one line), for the host name and how it resolves,
    /// forwarding, bridge netfilter, rp_filter, the port ranges, conntrack and the default
    /// routes.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let s = self;
        let bridge = |k: &Known<Option<u8>>| match k {
            Known::Known(Some(v)) => v.to_string(),
            Known::Known(None) => "absent (no br_netfilter)".into(),
            Known::Unknown(r) => format!("unknown ({r})"),
        };
        let strict: Vec<&str> = s
            .rp_filter
            .iter()
            .filter(|r| r.value == Known::Known(1))
            .map(|r| r.device.as_str())
            .collect();
        let all = s
            .rp_filter
            .iter()
            .find(|r| r.device == "all")
            .map_or_else(|| "unknown".into(), |r| shown(&r.value));
        let reserved = match &s.reserved_ports {
            Known::Known(v) if v.is_empty() => "none".to_string(),
            Known::Known(v) => v
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Known::Unknown(r) => format!("unknown ({r})"),
        };
        let conntrack = match (&s.conntrack_count, &s.conntrack_max) {
            (Known::Known(c), Known::Known(m)) if *m > 0 => {
                format!("{c} of {m} ({}%)", c * 100 / m)
            }
            (c, m) => format!("{} of {}", shown(c), shown(m)),
        };
        let defaults = match &s.routes {
            Known::Known(_) => {
                let d: Vec<String> = s
                    .default_routes(false)
                    .into_iter()
                    .chain(s.default_routes(true))
                    .map(|r| {
                        let via = r.gateway.map(|g| format!("via {g} ")).unwrap_or_default();
                        let down = if r.linkdown { " linkdown" } else { "" };
                        format!("{via}dev {}{down}", r.dev.as_deref().unwrap_or("?"))
                    })
                    .collect();
                if d.is_empty() {
                    "none".into()
                } else {
                    d.join("; ")
                }
            }
            Known::Unknown(r) => format!("unknown ({r})"),
        };
        let resolves = match (&s.hostname, &s.hosts, &s.resolved) {
            (Known::Known(h), Known::Known(hosts), None) => {
                let a: Vec<String> = hosts
                    .iter()
                    .filter(|e| e.names.iter().any(|n| n.eq_ignore_ascii_case(h)))
                    .map(|e| e.address.to_string())
                    .collect();
                format!("{h} -> {} (/etc/hosts)", a.join(", "))
            }
            (Known::Known(h), _, Some(Known::Known(a))) if a.is_empty() => {
                format!("{h} -> does not resolve")
            }
            (Known::Known(h), _, Some(Known::Known(a))) => format!(
                "{h} -> {} (DNS)",
                a.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (h, _, r) => format!(
                "{} -> {}",
                shown(h),
                r.as_ref().and_then(|r| r.reason()).unwrap_or("unknown")
            ),
        };
        vec![
            ("hostname", resolves),
            (
                "forwarding",
                format!(
                    "net.ipv4.ip_forward {}, net.ipv6.conf.all.forwarding {}",
                    shown(&s.ip_forward),
                    shown(&s.ipv6_forwarding)
                ),
            ),
            (
                "bridge netfilter",
                format!(
                    "bridge-nf-call-iptables {}, bridge-nf-call-ip6tables {}",
                    bridge(&s.bridge_nf_call_iptables),
                    bridge(&s.bridge_nf_call_ip6tables)
                ),
            ),
            (
                "rp_filter",
                format!(
                    "all {all}; strict on {}",
                    if strict.is_empty() {
                        "none".into()
                    } else {
                        strict.join(", ")
                    }
                ),
            ),
            (
                "ports",
                format!(
                    "ephemeral {}, reserved {reserved}",
                    shown(&s.local_port_range)
                ),
            ),
            ("conntrack", conntrack),
            ("default route", defaults),
        ]
    }
}
