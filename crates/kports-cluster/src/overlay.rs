//! `kports overlay`: does the CNI's overlay (VXLAN, Geneve, WireGuard, IP-in-IP) carry traffic
//! both ways between every pair of nodes, and if not, why?
//!
//! A UDP probe of 8472 cannot tell open from dropped, so the overlay is tested with what it
//! carries: each node pings every peer's overlay address (the address on `flannel.1`,
//! `vxlan.calico`, `cilium_host`, ...) with small echoes, then with echoes as large as its
//! overlay device's MTU and Don't Fragment set. The peer's device counters, read before and after
//! each source's round, say whether the encapsulated requests arrived. A failing pair names its
//! cause: a missing forwarding (FDB) or neighbour entry on the source, the far side's firewall
//! verdict on the overlay port (`kports firewall check` there), something between the nodes, or
//! an MTU too small for the encapsulation (cluster-reference's overheads).
//!
//! The facts of one node come from `kports overlay --node` run there ([`NodeFacts`]); the pure
//! [`diagnose`] joins them.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use kports_probe::echo::Echoes;
use serde::{Deserialize, Serialize};

use crate::launch::{Launch, Running};

/// Kinds of overlay device, with the bytes their encapsulation adds over IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Vxlan,
    Geneve,
    Wireguard,
    Ipip,
}

impl Kind {
    /// The link kind netlink reports for it.
    pub fn from_link_kind(k: &str) -> Option<Kind> {
        match k {
            "vxlan" => Some(Kind::Vxlan),
            "geneve" => Some(Kind::Geneve),
            "wireguard" => Some(Kind::Wireguard),
            "ipip" => Some(Kind::Ipip),
            _ => None,
        }
    }

    /// Encapsulation overhead over an IPv4 or IPv6 underlay (cluster-reference: VXLAN 50 or 70,
    /// Geneve 50 or 70 plus options, WireGuard 60 or 80, IP-in-IP 20).
    pub fn overhead(self, ipv6_underlay: bool) -> u32 {
        match (self, ipv6_underlay) {
            (Kind::Vxlan | Kind::Geneve, false) => 50,
            (Kind::Vxlan | Kind::Geneve, true) => 70,
            (Kind::Wireguard, false) => 60,
            (Kind::Wireguard, true) => 80,
            (Kind::Ipip, _) => 20,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vxlan => "VXLAN",
            Kind::Geneve => "Geneve",
            Kind::Wireguard => "WireGuard",
            Kind::Ipip => "IP-in-IP",
        }
    }
}

/// The overlay devices CNIs create, in the order kports prefers them when a node has several.
pub const KNOWN_DEVICES: &[&str] = &[
    "flannel.1",
    "flannel-wg",
    "vxlan.calico",
    "wireguard.cali",
    "tunl0",
    "cilium_vxlan",
    "cilium_geneve",
    "cilium_wg0",
];

/// An overlay device on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    pub kind: Kind,
    pub mtu: u32,
    /// UDP port (VXLAN, Geneve).
    pub port: Option<u16>,
    /// The node's overlay address (on the device, or on `cilium_host` for Cilium).
    pub address: Option<Ipv4Addr>,
}

/// An interface and its MTU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub name: String,
    pub mtu: u32,
}

/// Packet counters of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// A forwarding or neighbour entry of the overlay device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub address: IpAddr,
    pub mac: Option<String>,
}

/// One node's echoes to a peer's overlay address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pings {
    pub to: Ipv4Addr,
    pub small: Echoes,
    pub large: Echoes,
}

/// What `kports overlay --node` reports about its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub device: Option<Device>,
    /// The interface holding the node's address between nodes.
    pub underlay: Option<Link>,
    pub counters: Option<Counters>,
    /// The device's forwarding entries: which tunnel endpoint each MAC goes to (VXLAN).
    pub fdb: Vec<Entry>,
    /// The device's neighbour entries: the MAC of each peer's overlay address.
    pub neighbours: Vec<Entry>,
    pub pings: Vec<Pings>,
    /// Counters after the pings.
    pub counters_after: Option<Counters>,
}

/// One node of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// Its address between nodes (the tunnel endpoint).
    pub address: IpAddr,
    /// Its roles (`control-plane`, `worker`, `etcd`), for its firewall check; empty when unknown.
    pub roles: Vec<String>,
}

/// Whether a pair passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Unknown,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Unknown => "unknown",
        })
    }
}

/// What failed, as a word for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// Both ways, small and full-size.
    None,
    /// The source has no forwarding entry for the target's tunnel endpoint.
    MissingFdb,
    /// The source has no neighbour entry for the target's overlay address.
    MissingNeighbour,
    /// The encapsulated requests never reached the target's device.
    RequestsLost,
    /// The requests arrived; the replies never came back.
    RepliesLost,
    /// Small echoes pass, full-size ones do not.
    Mtu,
    /// kports could not find out.
    Unknown,
}

/// One ordered pair's result (docs/schema.md, `overlay`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub source: String,
    pub target: String,
    pub device: Option<String>,
    pub kind: Option<Kind>,
    pub port: Option<u16>,
    /// The target's overlay address, pinged.
    pub target_address: Option<Ipv4Addr>,
    pub small: Option<Echoes>,
    pub large: Option<Echoes>,
    /// Packets the target's device received during the source's round.
    pub target_rx: Option<u64>,
    pub verdict: Verdict,
    pub cause: Cause,
    /// For lost requests (the target's) or lost replies (the source's): the firewall's verdict
    /// on the overlay port from the other node.
    pub firewall: Option<FirewallVerdict>,
    /// One line: why.
    pub message: String,
}

/// A firewall's verdict on the overlay port, as `kports firewall check` on one node gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallVerdict {
    /// The node whose firewall it is.
    pub node: String,
    /// `accept`, `drop`, `reject`, `depends`, `unknown`.
    pub verdict: String,
    /// The deciding rule, as text (`nft inet filter input, handle 3: udp dport 8472 drop`).
    pub by: String,
}

/// Limits of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How long one echo waits for its reply.
    pub echo_timeout: Duration,
    /// How long a node may take to answer.
    pub node_timeout: Duration,
}

/// Small echoes per peer, then full-size ones.
pub const SMALL_ECHOES: u32 = 3;
pub const LARGE_ECHOES: u32 = 2;
/// The small echo: 84 bytes, as `ping` sends by default.
pub const SMALL_SIZE: usize = 84;

/// Runs the check on `nodes`: one round per source, then the diagnosis of every ordered pair.
pub fn run(nodes: &[Target], launch: &Launch, opts: &Options, cnis: &[String]) -> Vec<Row> {
    let facts0: Vec<Result<NodeFacts, String>> =
        parallel(nodes, |n| node_facts(launch, n, &[], opts));
    let mut rounds: Vec<Round> = Vec::with_capacity(nodes.len());
    for (si, s) in nodes.iter().enumerate() {
        let peers: Vec<Ipv4Addr> = nodes
            .iter()
            .enumerate()
            .filter(|(ti, _)| *ti != si)
            .filter_map(|(ti, _)| overlay_address(&facts0[ti]))
            .collect();
        let before = parallel(nodes, |n| node_facts(launch, n, &[], opts));
        let source = node_facts(launch, s, &peers, opts);
        let after = parallel(nodes, |n| node_facts(launch, n, &[], opts));
        rounds.push(Round {
            source,
            before,
            after,
        });
    }
    let mut rows = diagnose(nodes, &facts0, &rounds);
    // The far side's (or, for lost replies, the near side's) firewall verdict on the port.
    for r in rows.iter_mut() {
        let (judged, from) = match r.cause {
            Cause::RequestsLost => (&r.target, &r.source),
            Cause::RepliesLost => (&r.source, &r.target),
            _ => continue,
        };
        let (Some(j), Some(f), Some(port)) = (
            nodes.iter().find(|n| &n.name == judged),
            nodes.iter().find(|n| &n.name == from),
            r.port,
        ) else {
            continue;
        };
        let fw = firewall_verdict(launch, j, f.address, port, cnis, opts);
        r.message = with_firewall(&r.message, &j.name, &f.name, port, fw.clone());
        r.firewall = fw.ok();
    }
    rows
}

/// One source's round: its echoes, and every node's counters around them.
#[derive(Debug, Clone)]
pub struct Round {
    pub source: Result<NodeFacts, String>,
    pub before: Vec<Result<NodeFacts, String>>,
    pub after: Vec<Result<NodeFacts, String>>,
}

fn overlay_address(f: &Result<NodeFacts, String>) -> Option<Ipv4Addr> {
    f.as_ref().ok()?.device.as_ref()?.address
}

/// Joins the rounds into one row per ordered pair (pure).
pub fn diagnose(
    nodes: &[Target],
    facts: &[Result<NodeFacts, String>],
    rounds: &[Round],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (si, s) in nodes.iter().enumerate() {
        for (ti, t) in nodes.iter().enumerate() {
            if si == ti {
                continue;
            }
            rows.push(pair(s, t, &facts[si], &facts[ti], &rounds[si], ti));
        }
    }
    rows
}

fn unknown(s: &Target, t: &Target, message: String) -> Row {
    Row {
        source: s.name.clone(),
        target: t.name.clone(),
        device: None,
        kind: None,
        port: None,
        target_address: None,
        small: None,
        large: None,
        target_rx: None,
        verdict: Verdict::Unknown,
        cause: Cause::Unknown,
        firewall: None,
        message,
    }
}

fn pair(
    s: &Target,
    t: &Target,
    sf: &Result<NodeFacts, String>,
    tf: &Result<NodeFacts, String>,
    round: &Round,
    ti: usize,
) -> Row {
    let (sf, tf) = match (sf, tf) {
        (Err(e), _) | (_, Err(e)) => return unknown(s, t, e.clone()),
        (Ok(a), Ok(b)) => (a, b),
    };
    let (Some(sd), Some(td)) = (&sf.device, &tf.device) else {
        let which = if sf.device.is_none() { s } else { t };
        return unknown(
            s,
            t,
            format!(
                "{} has no overlay device (flannel.1, vxlan.calico, cilium_vxlan, tunl0, ...)",
                which.name
            ),
        );
    };
    let Some(taddr) = td.address else {
        return unknown(
            s,
            t,
            format!("{}'s {} has no IPv4 address to ping", t.name, td.name),
        );
    };
    let mut row = unknown(s, t, String::new());
    row.device = Some(sd.name.clone());
    row.kind = Some(sd.kind);
    row.port = sd.port;
    row.target_address = Some(taddr);
    let src = match &round.source {
        Ok(f) => f,
        Err(e) => {
            row.message = e.clone();
            return row;
        }
    };
    let Some(p) = src.pings.iter().find(|p| p.to == taddr) else {
        row.message = format!("{} did not ping {taddr}", s.name);
        return row;
    };
    row.small = Some(p.small.clone());
    row.large = Some(p.large.clone());
    let rx = |r: &Result<NodeFacts, String>| r.as_ref().ok()?.counters.map(|c| c.rx_packets);
    let delta = match (
        round.before.get(ti).and_then(rx),
        round.after.get(ti).and_then(rx),
    ) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    row.target_rx = delta;
    let kind = sd.kind.as_str();
    let overhead = sd.kind.overhead(t.address.is_ipv6());
    let needed = sd.mtu + overhead;
    if p.small.received > 0 && p.large.received > 0 {
        row.verdict = Verdict::Pass;
        row.cause = Cause::None;
        row.message = format!(
            "{kind} carries echoes both ways, up to {}'s {} MTU of {} bytes",
            s.name, sd.name, sd.mtu
        );
        return row;
    }
    row.verdict = Verdict::Fail;
    if p.small.received > 0 {
        row.cause = Cause::Mtu;
        let small_side = [(s, sf), (t, tf)]
            .into_iter()
            .filter_map(|(n, f)| f.underlay.as_ref().map(|u| (n, u)))
            .find(|(_, u)| u.mtu < needed);
        row.message = match small_side {
            Some((n, Link { name: dev, mtu })) => format!(
                "MTU too small for the encapsulation: {}'s {} has MTU {}, which with {kind}'s {} \
                 bytes needs {needed} on the underlay, but {}'s {dev} has {mtu}",
                s.name, sd.name, sd.mtu, overhead, n.name
            ),
            None => format!(
                "small echoes pass but {}-byte ones with Don't Fragment do not{}: something between \
                 the nodes carries less than the {needed} bytes {kind} needs",
                sd.mtu,
                p.large
                    .error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
        };
        return row;
    }
    // The requests need the source's entries for the target; the replies the target's for the
    // source (only when the requests arrived, or the counters are unknown).
    let mut sides = vec![(s, sd, sf, t, taddr)];
    if delta != Some(0) {
        if let Some(saddr) = sd.address {
            sides.push((t, td, tf, s, saddr));
        }
    }
    for (from, dev, facts, to, to_overlay) in sides {
        if dev.kind != Kind::Vxlan {
            continue;
        }
        let why = if from.name == s.name {
            "its echoes cannot leave"
        } else {
            "its replies cannot go back"
        };
        if !facts.fdb.iter().any(|e| e.address == to.address) {
            row.cause = Cause::MissingFdb;
            row.message = format!(
                "{}'s {} has no forwarding (FDB) entry for {}'s tunnel endpoint {}: {why} \
                 (`bridge fdb show dev {}` on {})",
                from.name, dev.name, to.name, to.address, dev.name, from.name
            );
            return row;
        }
        if !facts
            .neighbours
            .iter()
            .any(|e| e.address == IpAddr::V4(to_overlay))
        {
            row.cause = Cause::MissingNeighbour;
            row.message = format!(
                "{}'s {} has no neighbour entry for {}'s overlay address {to_overlay}: {why} \
                 (`ip neigh show dev {}` on {})",
                from.name, dev.name, to.name, dev.name, from.name
            );
            return row;
        }
    }
    match delta {
        Some(0) => {
            row.cause = Cause::RequestsLost;
            row.message = format!(
                "{kind} packets from {} never reached {}'s {} (its receive counter did not move)",
                s.name, t.name, td.name
            );
        }
        Some(_) => {
            row.cause = Cause::RepliesLost;
            row.message = format!(
                "{}'s {} received the echoes but no reply reached {}",
                t.name, td.name, s.name
            );
        }
        None => {
            row.cause = Cause::Unknown;
            row.message = format!(
                "no echo from {taddr}, and {}'s counters are unknown",
                t.name
            );
        }
    }
    row
}

/// Adds the firewall's verdict to a message about lost packets.
fn with_firewall(
    message: &str,
    judged: &str,
    from: &str,
    port: u16,
    fw: Result<FirewallVerdict, String>,
) -> String {
    match fw {
        Ok(v) if v.verdict == "drop" || v.verdict == "reject" => format!(
            "{message}: {judged}'s firewall {}s udp/{port} from {from} ({})",
            v.verdict, v.by
        ),
        Ok(v) if v.verdict == "accept" => format!(
            "{message}; {judged}'s firewall accepts udp/{port} from {from}: something between the \
             nodes drops it (a security group or router ACL)"
        ),
        Ok(v) => format!(
            "{message}; {judged}'s firewall verdict on udp/{port}: {} ({})",
            v.verdict, v.by
        ),
        Err(e) => format!("{message}; {judged}'s firewall verdict is unknown: {e}"),
    }
}

fn parallel<T: Send>(nodes: &[Target], f: impl Fn(&Target) -> T + Sync) -> Vec<T> {
    std::thread::scope(|sc| {
        let handles: Vec<_> = nodes.iter().map(|n| sc.spawn(|| f(n))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Runs `kports ARGS` on `n`, within `timeout`; its standard output.
fn run_on(
    launch: &Launch,
    n: &Target,
    args: &[String],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let what = format!("kports {}", args.first().map_or("", String::as_str));
    Running::start(launch, &n.name, n.address, args, &what).finish(Instant::now() + timeout)
}

#[derive(Debug, Deserialize)]
struct Doc<T> {
    items: T,
}

fn node_facts(
    launch: &Launch,
    n: &Target,
    peers: &[Ipv4Addr],
    opts: &Options,
) -> Result<NodeFacts, String> {
    let mut args = vec![
        "overlay".to_string(),
        "--node".into(),
        "--underlay".into(),
        n.address.to_string(),
        "--echo-timeout".into(),
        format!("{}ms", opts.echo_timeout.as_millis()),
        "-o".into(),
        "json".into(),
    ];
    for p in peers {
        args.push("--ping".into());
        args.push(p.to_string());
    }
    let budget =
        opts.node_timeout + opts.echo_timeout * (SMALL_ECHOES + LARGE_ECHOES) * peers.len() as u32;
    let out = run_on(launch, n, &args, budget)?;
    serde_json::from_slice::<Doc<NodeFacts>>(&out)
        .map(|d| d.items)
        .map_err(|e| format!("kports overlay on {} printed no facts ({e})", n.name))
}

/// `kports firewall check` on `n`: its verdict on udp/`port` from `from`.
fn firewall_verdict(
    launch: &Launch,
    n: &Target,
    from: IpAddr,
    port: u16,
    cnis: &[String],
    opts: &Options,
) -> Result<FirewallVerdict, String> {
    let prefix = if from.is_ipv4() { 32 } else { 128 };
    let mut args = vec![
        "firewall".to_string(),
        "check".into(),
        "-o".into(),
        "json".into(),
        "--sources".into(),
        format!("{from}/{prefix}"),
    ];
    if !n.roles.is_empty() {
        args.push("--role".into());
        args.push(n.roles.join(","));
    }
    if !cnis.is_empty() {
        args.push("--cni".into());
        args.push(cnis.join(","));
    }
    let out = run_on(launch, n, &args, opts.node_timeout)?;
    let v: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| format!("firewall check printed no JSON ({e})"))?;
    firewall_row(&v, from, port)
        .map(|f| FirewallVerdict {
            node: n.name.clone(),
            ..f
        })
        .ok_or_else(|| {
            format!("firewall check has no row for udp/{port} (is the CNI known? give --cni)")
        })
}

/// The judgement of udp/`port` from `from` in a `firewall-check` document (schema 3: `items` is
/// the rows) (pure).
pub fn firewall_row(doc: &serde_json::Value, from: IpAddr, port: u16) -> Option<FirewallVerdict> {
    let rows = doc["items"].as_array()?;
    let from = from.to_string();
    for r in rows {
        let p = &r["port"];
        let (lo, hi) = (p["lo"].as_u64()?, p["hi"].as_u64()?);
        if p["proto"] != "udp"
            || !(lo..=hi).contains(&u64::from(port))
            || r["source"] != from.as_str()
        {
            continue;
        }
        for seg in r["segments"].as_array()? {
            let (lo, hi) = (seg["lo"].as_u64()?, seg["hi"].as_u64()?);
            if !(lo..=hi).contains(&u64::from(port)) {
                continue;
            }
            let j = &seg["judgement"];
            let rules: Vec<&serde_json::Value> = match &j["by"] {
                serde_json::Value::Array(a) => a.iter().collect(),
                v @ serde_json::Value::Object(_) => vec![v],
                _ => Vec::new(),
            };
            let by: Vec<String> = rules
                .iter()
                .map(|b| {
                    let handle = b["handle"]
                        .as_u64()
                        .map(|h| format!(", handle {h}"))
                        .unwrap_or_default();
                    format!(
                        "{} {} {}{handle}: {}",
                        b["backend"].as_str().unwrap_or("?"),
                        b["table"].as_str().unwrap_or("?"),
                        b["chain"].as_str().unwrap_or("?"),
                        b["text"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            let by = if by.is_empty() {
                j["reason"]
                    .as_str()
                    .or(j["on"].as_str())
                    .unwrap_or("no rule named")
                    .to_string()
            } else {
                by.join("; ")
            };
            return Some(FirewallVerdict {
                node: String::new(),
                verdict: j["verdict"].as_str().unwrap_or("unknown").to_string(),
                by,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<Target> {
        vec![
            Target {
                name: "cp1".into(),
                address: IpAddr::from([192, 0, 2, 11]),
                roles: vec![],
            },
            Target {
                name: "w1".into(),
                address: IpAddr::from([192, 0, 2, 21]),
                roles: vec![],
            },
        ]
    }

    fn facts(index: u8, underlay_mtu: u32, peer: [u8; 4], peer_vtep: [u8; 4]) -> NodeFacts {
        NodeFacts {
            device: Some(Device {
                name: "flannel.1".into(),
                kind: Kind::Vxlan,
                mtu: 1450,
                port: Some(8472),
                address: Some(Ipv4Addr::new(10, 244, index, 0)),
            }),
            underlay: Some(Link {
                name: "eth0".into(),
                mtu: underlay_mtu,
            }),
            counters: Some(Counters {
                rx_packets: 10,
                tx_packets: 10,
            }),
            fdb: vec![Entry {
                address: IpAddr::from(peer),
                mac: None,
            }],
            neighbours: vec![Entry {
                address: IpAddr::from(peer_vtep),
                mac: None,
            }],
            pings: Vec::new(),
            counters_after: None,
        }
    }

    fn echoes(size: usize, sent: u32, received: u32) -> Echoes {
        Echoes {
            size,
            sent,
            received,
            error: None,
        }
    }

    fn with_rx(f: &NodeFacts, rx: u64) -> Result<NodeFacts, String> {
        let mut f = f.clone();
        f.counters = Some(Counters {
            rx_packets: rx,
            tx_packets: 0,
        });
        Ok(f)
    }

    /// cp1 pings w1 with `small`/`large` replies; w1's counter moves by `moved`.
    fn one_way(cp1: NodeFacts, w1: NodeFacts, small: u32, large: u32, moved: u64) -> Row {
        let mut src = cp1.clone();
        src.pings = vec![Pings {
            to: Ipv4Addr::new(10, 244, 1, 0),
            small: echoes(84, 3, small),
            large: echoes(1450, 2, large),
        }];
        let round = Round {
            source: Ok(src),
            before: vec![with_rx(&cp1, 0), with_rx(&w1, 100)],
            after: vec![with_rx(&cp1, 0), with_rx(&w1, 100 + moved)],
        };
        let idle = Round {
            source: Err("not run".into()),
            before: vec![],
            after: vec![],
        };
        let rows = diagnose(&targets(), &[Ok(cp1), Ok(w1)], &[round, idle]);
        rows[0].clone()
    }

    fn pair_facts(w1_mtu: u32) -> (NodeFacts, NodeFacts) {
        (
            facts(0, 1500, [192, 0, 2, 21], [10, 244, 1, 0]),
            facts(1, w1_mtu, [192, 0, 2, 11], [10, 244, 0, 0]),
        )
    }

    #[test]
    fn a_clean_pair_passes() {
        let (a, b) = pair_facts(1500);
        let r = one_way(a, b, 3, 2, 5);
        assert_eq!((r.verdict, r.cause), (Verdict::Pass, Cause::None));
        assert_eq!(r.target_rx, Some(5));
    }

    #[test]
    fn a_small_underlay_mtu_is_named() {
        let (a, b) = pair_facts(1400);
        let r = one_way(a, b, 3, 0, 3);
        assert_eq!((r.verdict, r.cause), (Verdict::Fail, Cause::Mtu));
        assert!(r.message.contains("w1's eth0 has 1400"), "{}", r.message);
        assert!(r.message.contains("needs 1500"), "{}", r.message);
    }

    #[test]
    fn an_ipv6_underlay_needs_more_room() {
        assert_eq!(Kind::Vxlan.overhead(false), 50);
        assert_eq!(Kind::Vxlan.overhead(true), 70);
        assert_eq!(Kind::Wireguard.overhead(true), 80);
    }

    #[test]
    fn lost_requests_and_lost_replies_are_told_apart() {
        let (a, b) = pair_facts(1500);
        let r = one_way(a.clone(), b.clone(), 0, 0, 0);
        assert_eq!(r.cause, Cause::RequestsLost);
        let r = one_way(a, b, 0, 0, 5);
        assert_eq!(r.cause, Cause::RepliesLost);
    }

    #[test]
    fn a_missing_fdb_entry_is_named_first() {
        let (mut a, b) = pair_facts(1500);
        a.fdb.clear();
        let r = one_way(a, b, 0, 0, 0);
        assert_eq!(r.cause, Cause::MissingFdb);
        assert!(r.message.contains("192.0.2.21"), "{}", r.message);
    }

    #[test]
    fn a_missing_fdb_entry_on_the_far_side_loses_the_replies() {
        let (a, mut b) = pair_facts(1500);
        b.fdb.clear();
        let r = one_way(a, b, 0, 0, 3);
        assert_eq!(r.cause, Cause::MissingFdb);
        assert!(
            r.message.starts_with("w1's flannel.1 has no forwarding"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("replies cannot go back"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_node_without_overlay_is_unknown() {
        let (mut a, b) = pair_facts(1500);
        a.device = None;
        let r = one_way(a, b, 0, 0, 0);
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(
            r.message.starts_with("cp1 has no overlay device"),
            "{}",
            r.message
        );
    }

    #[test]
    fn reads_the_firewall_verdict() {
        let doc = serde_json::json!({"items": [
            {"port": {"proto": "udp", "lo": 8472, "hi": 8472}, "source": "192.0.2.11",
             "segments": [{"lo": 8472, "hi": 8472, "judgement": {"verdict": "drop", "by":
                {"backend": "nft", "table": "inet f", "chain": "input", "handle": 3,
                 "text": "udp dport 8472 drop"}}}]}
        ]});
        let v = firewall_row(&doc, IpAddr::from([192, 0, 2, 11]), 8472).unwrap();
        assert_eq!(v.verdict, "drop");
        assert_eq!(v.by, "nft inet f input, handle 3: udp dport 8472 drop");
        assert!(firewall_row(&doc, IpAddr::from([192, 0, 2, 12]), 8472).is_none());
        let m = with_firewall("lost", "w1", "cp1", 8472, Ok(v));
        assert_eq!(
            m,
            "lost: w1's firewall drops udp/8472 from cp1 (nft inet f input, handle 3: udp dport 8472 drop)"
        );
    }
}
