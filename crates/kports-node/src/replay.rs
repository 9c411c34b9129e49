//! A node replayed from captured data: the census, the firewall's raw sources, the routes,
//! the node's own settings and files, as [`NodeIo`]. Tests run the whole node report on it without root, and a report can
//! be made again from what was captured on another machine.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kports_core::catalog::PortRange;
use kports_core::settings::{
    HostsEntry, Known, Link, Modules, NodeSettings, PathRoute, Route, RpFilter,
};
use kports_core::{
    Address, Family, Interface, Owner, ProcessRef, Proto, SockState, Socket, Warning,
};
use kports_firewall::capture::{Capture, SaveSource};
use kports_firewall::model::Backend;

use crate::io::{Census, NodeIo, SocketSource};

/// Captured data of one node.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub hostname: String,
    pub sockets: Vec<Socket>,
    pub interfaces: Vec<Interface>,
    pub census_warnings: Vec<Warning>,
    /// The census failed with this message (as a permission error would).
    pub census_error: Option<String>,
    pub firewall: Capture,
    /// The route back to each address; addresses not listed have none.
    pub routes: HashMap<IpAddr, (String, Option<IpAddr>)>,
    /// The node's own settings as captured; `None`: not captured, so every one is unknown.
    pub settings: Option<NodeSettings>,
    pub files: HashMap<PathBuf, String>,
}

impl NodeIo for Replay {
    fn census(&self, _: SocketSource) -> Result<Census, kports_linux::Error> {
        if let Some(e) = &self.census_error {
            return Err(kports_linux::Error::io(
                "/proc",
                io::Error::new(io::ErrorKind::PermissionDenied, e.clone()),
            ));
        }
        Ok(Census {
            sockets: self.sockets.clone(),
            interfaces: self.interfaces.clone(),
            warnings: self.census_warnings.clone(),
        })
    }

    fn firewall(&self) -> Capture {
        self.firewall.clone()
    }

    fn route_to(&self, addr: IpAddr) -> Option<(String, Option<IpAddr>)> {
        self.routes.get(&addr).cloned()
    }

    fn hostname(&self) -> String {
        self.hostname.clone()
    }

    /// The captured settings; when they hold no paths, the route to each peer is the one
    /// [`Replay::routes`] holds (as `route_to` answers).
    fn settings(&self, peers: &[(IpAddr, String)]) -> NodeSettings {
        let Some(mut s) = self.settings.clone() else {
            return NodeSettings::unread("not captured");
        };
        if s.paths.is_empty() {
            s.paths = peers
                .iter()
                .map(|(peer, why)| PathRoute {
                    peer: *peer,
                    why: why.clone(),
                    dev: match self.routes.get(peer) {
                        Some((dev, _)) => Known::Known(dev.clone()),
                        None => Known::Unknown("Network is unreachable".into()),
                    },
                })
                .collect();
        }
        s
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }

    fn read_config(&self, path: &Path) -> io::Result<String> {
        self.read_file(path)
    }

    /// The file captured as `/proc/PID/root/PATH`.
    fn read_process_config(&self, pid: u32, path: &Path) -> io::Result<String> {
        let inside = path.strip_prefix("/").unwrap_or(path);
        self.read_file(
            &Path::new("/proc")
                .join(pid.to_string())
                .join("root")
                .join(inside),
        )
    }
}

/// The example worker's address.
pub const EXAMPLE_NODE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
/// The example worker's control plane (its API server).
pub const EXAMPLE_CONTROL_PLANE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

/// A TCP socket of `name` (pid), recognised as that component when it is one of kubeadm's.
fn tcp(
    state: SockState,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    name: &str,
    pid: u32,
) -> Socket {
    Socket {
        proto: Proto::Tcp,
        family: if local.0.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        },
        state,
        local_address: local.0,
        local_port: local.1,
        remote_address: remote.0,
        remote_port: remote.1,
        inode: u64::from(pid) * 100_000 + u64::from(local.1),
        uid: 0,
        interface: None,
        cgroup_id: None,
        processes: Arc::new(vec![Arc::new(ProcessRef {
            pid,
            name: name.to_string(),
            cmdline: name.to_string(),
            container_id: None,
            pod_uid: None,
            secrets: Vec::new(),
        })]),
        owner: Owner::Process,
        component: ["kubelet", "kube-proxy"].into_iter().find(|c| *c == name),
        netns: None,
        cgroup: None,
    }
}

impl Replay {
    /// A kubeadm worker, `w1` at 192.0.2.21: the kubelet and kube-proxy listening where kubeadm
    /// puts them, the kubelet connected to its API server at 192.0.2.11, and an iptables-nft
    /// firewall that drops tcp/10250 (so the control plane cannot reach the kubelet). Tests and
    /// examples use it.
    pub fn example_worker() -> Replay {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let node = IpAddr::V4(EXAMPLE_NODE);
        let listen = |addr: IpAddr, port: u16, name: &str, pid: u32| {
            tcp(SockState::Listen, (addr, port), (any, 0), name, pid)
        };
        let save = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 10250 -j DROP\nCOMMIT\n";
        let mut r = Replay {
            hostname: "w1".into(),
            sockets: vec![
                listen(any, 10250, "kubelet", 500),
                listen(lo, 10248, "kubelet", 500),
                listen(any, 10256, "kube-proxy", 600),
                listen(lo, 10249, "kube-proxy", 600),
                tcp(
                    SockState::Established,
                    (node, 40000),
                    (IpAddr::V4(EXAMPLE_CONTROL_PLANE), 6443),
                    "kubelet",
                    500,
                ),
            ],
            interfaces: vec![Interface {
                index: 2,
                name: "eth0".into(),
                kind: "veth".into(),
                state: "up".into(),
                mtu: 1500,
                mac: None,
                master: None,
                tunnel_port: None,
                addresses: vec![Address {
                    address: node,
                    prefix_len: 24,
                    family: Family::Ipv4,
                    scope: "global".into(),
                }],
                netns: None,
            }],
            firewall: Capture {
                saves: vec![(
                    SaveSource {
                        backend: Backend::IptablesNft,
                        v6: false,
                    },
                    Ok(save.into()),
                )],
                ..Capture::default()
            },
            ..Replay::default()
        };
        r.routes.insert(
            IpAddr::V4(EXAMPLE_CONTROL_PLANE),
            ("eth0".into(), Some(node)),
        );
        r.settings = Some(Replay::example_settings("w1", node));
        r
    }

    /// The settings of a node set up as kubeadm wants it, as `kports-linux` reads them: host
    /// name `hostname` naming `addr` in /etc/hosts, forwarding and bridge netfilter on, loose
    /// reverse-path filters, the kernel's ephemeral range, room in conntrack, a default route
    /// via 192.0.2.1 on an `eth0` that is up with carrier. `addr` should be an address of the
    /// replayed node's `eth0`.
    pub fn example_settings(hostname: &str, addr: IpAddr) -> NodeSettings {
        let link = |name: &str, kind: &str, mtu: u32| Link {
            name: name.into(),
            kind: kind.into(),
            up: true,
            carrier: true,
            mtu,
            master: None,
            underlay: None,
            underlay_v6: None,
        };
        NodeSettings {
            hostname: Known::Known(hostname.into()),
            hosts: Known::Known(vec![
                HostsEntry {
                    address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    names: vec!["localhost".into()],
                },
                HostsEntry {
                    address: addr,
                    names: vec![hostname.into()],
                },
            ]),
            resolved: None,
            ip_forward: Known::Known(1),
            ipv6_forwarding: Known::Known(0),
            bridge_nf_call_iptables: Known::Known(Some(1)),
            bridge_nf_call_ip6tables: Known::Known(Some(1)),
            rp_filter: ["all", "default", "lo", "eth0"]
                .into_iter()
                .map(|d| RpFilter {
                    device: d.into(),
                    value: Known::Known(2),
                })
                .collect(),
            local_port_range: Known::Known(PortRange {
                first: 32768,
                last: 60999,
            }),
            reserved_ports: Known::Known(Vec::new()),
            conntrack_count: Known::Known(120),
            conntrack_max: Known::Known(262_144),
            modules: Modules {
                loaded: Known::Known(vec!["br_netfilter".into(), "overlay".into()]),
                builtin: Vec::new(),
            },
            cpus: 2,
            routes: Known::Known(vec![Route {
                dst: "default".into(),
                v6: false,
                dev: Some("eth0".into()),
                gateway: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                linkdown: false,
            }]),
            links: Known::Known(vec![
                link("lo", "loopback", 65536),
                link("eth0", "veth", 1500),
            ]),
            paths: Vec::new(),
        }
    }
}
