//! Established TCP connections grouped by the local listening socket they were accepted on.
//!
//! Every established socket is counted exactly once: `in` when its local address and port are
//! those of a listener in the same namespace (a specific-address listener wins over a wildcard
//! one, as in the kernel's lookup), `out` otherwise, grouped by owner and remote service. So the
//! rows add up to what `ss -tanH state established` counts on the same snapshot.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::{Family, Netns, Proto, SockState, Socket};

/// Whether a row counts connections accepted by a local listener, or opened to a remote one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnDirection {
    In,
    Out,
}

/// One line of `kports conns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnRow {
    pub direction: ConnDirection,
    /// The listener's address and port (`in`); none for `out`, and none with `--by-port` where
    /// the row adds up listeners on several addresses (`local_addresses` lists them).
    pub local_address: Option<IpAddr>,
    /// With `--by-port`: every address the row's listeners are bound to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local_addresses: Vec<IpAddr>,
    pub local_port: Option<u16>,
    /// The remote service's address and port (`out`); none for `in`.
    pub remote_address: Option<IpAddr>,
    pub remote_port: Option<u16>,
    /// Name of the owning process (the listener's for `in`), if known.
    pub process: Option<String>,
    pub pids: Vec<u32>,
    pub component: Option<&'static str>,
    pub established: u64,
    pub netns: Option<Arc<Netns>>,
    /// With `--by-peer`: the `in` connections broken down by remote address (an IPv4 peer of
    /// an IPv6 listener as IPv4, not `::ffff:a.b.c.d`), busiest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerEstablished>>,
}

/// Connections from one remote address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerEstablished {
    pub remote_address: IpAddr,
    pub established: u64,
}

/// How to group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grouping {
    /// Break `in` rows down by remote address.
    pub by_peer: bool,
    /// Merge listeners of one process on one port (`127.0.0.1:2379` and `192.0.2.10:2379`).
    pub by_port: bool,
}

type NsKey = u64;

/// Groups the established TCP sockets of `sockets` (other sockets are only used as listeners).
pub fn group(sockets: &[Socket], how: Grouping) -> Vec<ConnRow> {
    let ns = |s: &Socket| s.netns.as_ref().map_or(0, |n| n.inode);
    // (netns, family, port) -> listeners on that port, specific addresses first.
    let mut listeners: HashMap<(NsKey, Family, u16), Vec<usize>> = HashMap::new();
    for (i, s) in sockets.iter().enumerate() {
        if s.proto == Proto::Tcp && s.state == SockState::Listen {
            listeners
                .entry((ns(s), s.family, s.local_port))
                .or_default()
                .push(i);
        }
    }
    for v in listeners.values_mut() {
        v.sort_by_key(|&i| sockets[i].local_address.is_unspecified());
    }

    let mut rows: BTreeMap<RowKey, Acc> = BTreeMap::new();
    for (i, s) in sockets.iter().enumerate() {
        if s.proto != Proto::Tcp || s.state != SockState::Listen {
            continue;
        }
        // Every listener gets a row, idle ones included: "0 connections" is an answer.
        rows.entry(in_key(sockets, i, how))
            .or_insert_with(|| Acc::new(i))
            .addrs
            .insert(s.local_address);
    }
    for s in sockets {
        if s.proto != Proto::Tcp || s.state != SockState::Established {
            continue;
        }
        let listener = listeners
            .get(&(ns(s), s.family, s.local_port))
            .and_then(|ls| {
                ls.iter().copied().find(|&l| {
                    let a = sockets[l].local_address;
                    a == s.local_address || a.is_unspecified()
                })
            });
        let acc = match listener {
            Some(l) => rows
                .entry(in_key(sockets, l, how))
                .or_insert_with(|| Acc::new(l)),
            None => {
                let key = RowKey {
                    netns: ns(s),
                    direction: ConnDirection::Out,
                    addr: s.remote_address,
                    port: s.remote_port,
                    owner: s.processes.first().map_or(0, |p| p.pid),
                };
                rows.entry(key).or_insert_with(|| Acc::out_of(s))
            }
        };
        acc.count += 1;
        if how.by_peer && acc.direction == ConnDirection::In {
            *acc.peers
                .entry(s.remote_address.to_canonical())
                .or_default() += 1;
        }
    }

    rows.into_values()
        .map(|acc| acc.into_row(sockets, how))
        .collect()
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey {
    netns: NsKey,
    direction: ConnDirection,
    addr: IpAddr,
    port: u16,
    owner: u32,
}

fn in_key(sockets: &[Socket], l: usize, how: Grouping) -> RowKey {
    let s = &sockets[l];
    RowKey {
        netns: s.netns.as_ref().map_or(0, |n| n.inode),
        direction: ConnDirection::In,
        // Merging by port keys every listener of one owner on that port alike.
        addr: if how.by_port {
            IpAddr::from([0u8; 4])
        } else {
            s.local_address
        },
        port: s.local_port,
        owner: s.processes.first().map_or(0, |p| p.pid),
    }
}

type OutKey = (
    IpAddr,
    u16,
    Vec<u32>,
    Option<String>,
    Option<&'static str>,
    Option<Arc<Netns>>,
);

struct Acc {
    direction: ConnDirection,
    /// Index of the listener (`in`), or of the first socket seen (`out`).
    first: usize,
    out: Option<OutKey>,
    count: u64,
    peers: HashMap<IpAddr, u64>,
    /// The addresses of the listeners the row adds up.
    addrs: std::collections::BTreeSet<IpAddr>,
}

impl Acc {
    fn new(listener: usize) -> Acc {
        Acc {
            direction: ConnDirection::In,
            first: listener,
            out: None,
            count: 0,
            peers: HashMap::new(),
            addrs: std::collections::BTreeSet::new(),
        }
    }

    fn out_of(s: &Socket) -> Acc {
        let (name, pids) = owner(s);
        Acc {
            direction: ConnDirection::Out,
            first: 0,
            out: Some((
                s.remote_address,
                s.remote_port,
                pids,
                name,
                s.component,
                s.netns.clone(),
            )),
            count: 0,
            peers: HashMap::new(),
            addrs: std::collections::BTreeSet::new(),
        }
    }

    fn into_row(self, sockets: &[Socket], how: Grouping) -> ConnRow {
        let peers = (how.by_peer && self.direction == ConnDirection::In).then(|| {
            let mut v: Vec<PeerEstablished> = self
                .peers
                .into_iter()
                .map(|(remote_address, established)| PeerEstablished {
                    remote_address,
                    established,
                })
                .collect();
            v.sort_by(|a, b| {
                b.established
                    .cmp(&a.established)
                    .then(a.remote_address.cmp(&b.remote_address))
            });
            v
        });
        match self.out {
            Some((addr, port, pids, process, component, netns)) => ConnRow {
                direction: ConnDirection::Out,
                local_address: None,
                local_addresses: Vec::new(),
                local_port: None,
                remote_address: Some(addr),
                remote_port: Some(port),
                process,
                pids,
                component,
                established: self.count,
                netns,
                peers,
            },
            None => {
                let l = &sockets[self.first];
                let (process, pids) = owner(l);
                ConnRow {
                    direction: ConnDirection::In,
                    local_address: if how.by_port && self.addrs.len() > 1 {
                        None
                    } else {
                        Some(l.local_address)
                    },
                    local_addresses: if how.by_port {
                        self.addrs.into_iter().collect()
                    } else {
                        Vec::new()
                    },
                    local_port: Some(l.local_port),
                    remote_address: None,
                    remote_port: None,
                    process,
                    pids,
                    component: l.component,
                    established: self.count,
                    netns: l.netns.clone(),
                    peers,
                }
            }
        }
    }
}

fn owner(s: &Socket) -> (Option<String>, Vec<u32>) {
    (
        s.processes.first().map(|p| p.name.clone()),
        s.processes.iter().map(|p| p.pid).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Owner, ProcessRef};

    fn sock(state: SockState, local: &str, remote: &str, pid: u32, name: &str) -> Socket {
        let (la, lp) = local.rsplit_once(':').unwrap();
        let (ra, rp) = remote.rsplit_once(':').unwrap();
        let la: IpAddr = la.trim_matches(['[', ']']).parse().unwrap();
        Socket {
            proto: Proto::Tcp,
            family: if la.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            state,
            local_address: la,
            local_port: lp.parse().unwrap(),
            remote_address: ra.trim_matches(['[', ']']).parse().unwrap(),
            remote_port: rp.parse().unwrap(),
            inode: 1,
            uid: 0,
            interface: None,
            cgroup_id: None,
            processes: Arc::new(vec![Arc::new(ProcessRef {
                pid,
                name: name.into(),
                cmdline: name.into(),
                secrets: Vec::new(),
                container_id: None,
                pod_uid: None,
            })]),
            owner: Owner::Process,
            component: Some(name.to_string().leak()),
            netns: None,
            cgroup: None,
        }
    }

    fn etcd_node() -> Vec<Socket> {
        use SockState::*;
        let mut v = vec![
            sock(Listen, "127.0.0.1:2379", "0.0.0.0:0", 10, "etcd"),
            sock(Listen, "192.0.2.10:2379", "0.0.0.0:0", 10, "etcd"),
            sock(Listen, "192.0.2.10:2380", "0.0.0.0:0", 10, "etcd"),
            sock(Listen, "127.0.0.1:2381", "0.0.0.0:0", 10, "etcd"),
            sock(Listen, "[::]:6443", "[::]:0", 20, "kube-apiserver"),
        ];
        for p in 0..5 {
            // apiserver -> etcd over loopback: both ends are on this node.
            v.push(sock(
                Established,
                "127.0.0.1:2379",
                &format!("127.0.0.1:{}", 40000 + p),
                10,
                "etcd",
            ));
            v.push(sock(
                Established,
                &format!("127.0.0.1:{}", 40000 + p),
                "127.0.0.1:2379",
                20,
                "kube-apiserver",
            ));
        }
        v.push(sock(
            Established,
            "192.0.2.10:2379",
            "192.0.2.11:50000",
            10,
            "etcd",
        ));
        v.push(sock(
            Established,
            "192.0.2.10:2380",
            "192.0.2.11:50001",
            10,
            "etcd",
        ));
        v.push(sock(
            Established,
            "[::ffff:192.0.2.10]:6443",
            "[::ffff:192.0.2.12]:1234",
            20,
            "kube-apiserver",
        ));
        v.push(sock(
            TimeWait,
            "127.0.0.1:2379",
            "127.0.0.1:39999",
            10,
            "etcd",
        ));
        v
    }

    fn summary(rows: &[ConnRow]) -> Vec<String> {
        rows.iter()
            .map(|r| match r.direction {
                ConnDirection::In => format!(
                    "in {}:{} {} {}",
                    r.local_address.map_or_else(
                        || {
                            let v: Vec<String> =
                                r.local_addresses.iter().map(IpAddr::to_string).collect();
                            v.join(",")
                        },
                        |a| a.to_string()
                    ),
                    r.local_port.unwrap(),
                    r.process.as_deref().unwrap_or("-"),
                    r.established
                ),
                ConnDirection::Out => format!(
                    "out {}:{} {} {}",
                    r.remote_address.unwrap(),
                    r.remote_port.unwrap(),
                    r.process.as_deref().unwrap_or("-"),
                    r.established
                ),
            })
            .collect()
    }

    #[test]
    fn groups_by_listener_and_counts_every_established_socket_once() {
        let socks = etcd_node();
        let rows = group(&socks, Grouping::default());
        assert_eq!(
            summary(&rows),
            [
                "in 127.0.0.1:2379 etcd 5",
                "in 127.0.0.1:2381 etcd 0",
                "in 192.0.2.10:2379 etcd 1",
                "in 192.0.2.10:2380 etcd 1",
                "in :::6443 kube-apiserver 1",
                "out 127.0.0.1:2379 kube-apiserver 5",
            ]
        );
        let established = socks
            .iter()
            .filter(|s| s.state == SockState::Established)
            .count() as u64;
        assert_eq!(rows.iter().map(|r| r.established).sum::<u64>(), established);
    }

    #[test]
    fn by_port_merges_addresses_of_one_listener() {
        let rows = group(
            &etcd_node(),
            Grouping {
                by_port: true,
                by_peer: false,
            },
        );
        let s = summary(&rows);
        // Two addresses added up: both named, no wildcard claimed.
        assert!(
            s.contains(&"in 127.0.0.1,192.0.2.10:2379 etcd 6".to_string()),
            "{s:?}"
        );
        assert!(
            s.contains(&"in 192.0.2.10:2380 etcd 1".to_string()),
            "{s:?}"
        );
        let r = rows.iter().find(|r| r.local_port == Some(2380)).unwrap();
        assert_eq!(r.local_addresses, ["192.0.2.10".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn by_peer_breaks_down_by_remote_address() {
        let mut socks = etcd_node();
        socks.push(sock(
            SockState::Established,
            "192.0.2.10:2379",
            "192.0.2.11:50002",
            10,
            "etcd",
        ));
        socks.push(sock(
            SockState::Established,
            "192.0.2.10:2379",
            "192.0.2.12:50002",
            10,
            "etcd",
        ));
        // An IPv4 client of the IPv6 wildcard listener is named by its IPv4 address.
        socks.push(sock(
            SockState::Established,
            "::ffff:192.0.2.10:6443",
            "::ffff:192.0.2.11:50003",
            20,
            "kube-apiserver",
        ));
        let rows = group(
            &socks,
            Grouping {
                by_peer: true,
                by_port: false,
            },
        );
        let r = rows
            .iter()
            .find(|r| {
                r.local_address == Some("192.0.2.10".parse().unwrap()) && r.local_port == Some(2379)
            })
            .unwrap();
        let peers = r.peers.as_ref().unwrap();
        assert_eq!(
            peers[0].remote_address,
            "192.0.2.11".parse::<IpAddr>().unwrap()
        );
        assert_eq!(peers[0].established, 2);
        assert_eq!(peers[1].established, 1);
        let api = rows.iter().find(|r| r.local_port == Some(6443)).unwrap();
        let peers: Vec<String> = api
            .peers
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.remote_address.to_string())
            .collect();
        assert!(peers.contains(&"192.0.2.11".to_string()), "{peers:?}");
        assert!(peers.iter().all(|p| !p.starts_with("::ffff:")), "{peers:?}");
    }

    #[test]
    fn specific_listener_wins_over_wildcard() {
        use SockState::*;
        let socks = vec![
            sock(Listen, "0.0.0.0:80", "0.0.0.0:0", 1, "a"),
            sock(Listen, "127.0.0.1:80", "0.0.0.0:0", 2, "b"),
            sock(Established, "127.0.0.1:80", "127.0.0.1:5000", 2, "b"),
            sock(Established, "192.0.2.1:80", "192.0.2.9:5000", 1, "a"),
        ];
        let rows = group(&socks, Grouping::default());
        assert_eq!(summary(&rows), ["in 0.0.0.0:80 a 1", "in 127.0.0.1:80 b 1"]);
    }
}
