//! `kports overlay`: on the node that runs it, the check of every pair of nodes
//! (kports-cluster's `overlay`); on a node (`--node`), that node's overlay facts and echoes.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use kports_cluster::overlay::{
    self, Counters, Device, Entry, KNOWN_DEVICES, Kind, Link, NodeFacts, Options, Pings, Row,
    Target, Verdict,
};
use kports_core::Interface;
use kports_linux::neigh::{self, Table};
use kports_linux::netlink::Netlink;
use kports_probe::echo;

use crate::cli::OverlayArgs;
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out};

pub fn run(args: &OverlayArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    if args.node {
        return node(args, out);
    }
    let mut warnings = Vec::new();
    let (nodes, launch) = super::cluster_nodes(&args.nodes, &mut warnings)?;
    let targets: Vec<Target> = nodes
        .iter()
        .filter_map(|n| {
            Some(Target {
                name: n.name.clone(),
                address: *n.addresses.first()?,
                roles: n.roles.iter().map(|r| r.as_str().to_string()).collect(),
            })
        })
        .collect();
    if targets.len() < 2 {
        anyhow::bail!("the overlay check needs at least two nodes");
    }
    let opts = Options {
        echo_timeout: args.echo_timeout,
        node_timeout: Duration::from_secs(args.node_timeout),
    };
    let rows = overlay::run(&targets, &launch, &opts, &args.cni);
    let hostname = kports_linux::hostname();
    match args.output {
        Format::Json => out.json(&Document::new("overlay", &hostname, &rows, &warnings))?,
        Format::Table | Format::Wide => table(out, &rows)?,
    }
    Ok(Outcome {
        warnings,
        failed: rows.iter().any(|r| r.verdict != Verdict::Pass),
        incomplete: false,
    })
}

/// `--node`: this node's overlay device, its counters before and after the echoes, its FDB and
/// neighbour entries.
fn node(args: &OverlayArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    let (ifaces, warnings) = kports_linux::census::interfaces(Path::new("/proc"), false)?;
    let dev = pick(&ifaces, args.device.as_deref());
    let device = dev.and_then(|i| {
        let kind = Kind::from_link_kind(&i.kind)?;
        let v4 = |i: &Interface| {
            i.addresses.iter().find_map(|a| match a.address {
                IpAddr::V4(v) => Some(v),
                IpAddr::V6(_) => None,
            })
        };
        let address = v4(i).or_else(|| {
            // Cilium puts the node's overlay address on cilium_host, not on the tunnel device.
            ifaces
                .iter()
                .find(|h| h.name == "cilium_host" && i.name.starts_with("cilium_"))
                .and_then(v4)
        });
        Some(Device {
            name: i.name.clone(),
            kind,
            mtu: i.mtu,
            port: i.tunnel_port,
            address,
        })
    });
    if let (Some(name), None) = (&args.device, &device) {
        anyhow::bail!("`{name}` is not an overlay device (vxlan, geneve, wireguard, ipip) here");
    }
    let underlay = args.underlay.and_then(|a| {
        ifaces
            .iter()
            .find(|i| i.addresses.iter().any(|x| x.address == a))
            .map(|i| Link {
                name: i.name.clone(),
                mtu: i.mtu,
            })
    });
    let (mut fdb, mut neighbours) = (Vec::new(), Vec::new());
    if let Some(i) = dev {
        let entries = |t| -> Result<Vec<Entry>> {
            Ok(neigh::dump(&mut Netlink::open(libc::NETLINK_ROUTE)?, t)?
                .into_iter()
                .filter(|e| e.ifindex == i.index)
                .filter_map(|e| {
                    Some(Entry {
                        address: e.dst?,
                        mac: e.lladdr,
                    })
                })
                .collect())
        };
        fdb = entries(Table::Fdb).context("cannot read the forwarding database")?;
        neighbours = entries(Table::Neighbours).context("cannot read the neighbour entries")?;
    }
    let before = dev.and_then(|i| read_counters(&i.name));
    let pings = match &device {
        Some(d) if !args.ping.is_empty() => ping_all(&args.ping, d.mtu as usize, args.echo_timeout),
        _ => Vec::new(),
    };
    let counters_after = if args.ping.is_empty() {
        before
    } else {
        dev.and_then(|i| read_counters(&i.name))
    };
    let facts = NodeFacts {
        device,
        underlay,
        counters: before,
        fdb,
        neighbours,
        pings,
        counters_after,
    };
    let hostname = kports_linux::hostname();
    match args.output {
        Format::Json => out.json(&Document::new("overlay-node", &hostname, &facts, &warnings))?,
        Format::Table | Format::Wide => node_table(out, &facts)?,
    }
    Ok(Outcome::done(warnings))
}

/// The overlay device: the one named, else the first CNI device kports knows, else the first
/// tunnel of a kind it knows.
fn pick<'a>(ifaces: &'a [Interface], name: Option<&str>) -> Option<&'a Interface> {
    if let Some(n) = name {
        return ifaces.iter().find(|i| i.name == n);
    }
    KNOWN_DEVICES
        .iter()
        .find_map(|k| ifaces.iter().find(|i| i.name == *k))
        .filter(|i| Kind::from_link_kind(&i.kind).is_some())
        .or_else(|| {
            ifaces
                .iter()
                .find(|i| Kind::from_link_kind(&i.kind).is_some())
        })
}

/// The device's packet counters, from sysfs (the namespace's own, as `kports lab exec` and
/// `ip netns exec` mount it).
fn read_counters(dev: &str) -> Option<Counters> {
    let read = |what: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{what}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(Counters {
        rx_packets: read("rx_packets")?,
        tx_packets: read("tx_packets")?,
    })
}

/// Small then full-size echoes to each peer, the peers at once.
fn ping_all(peers: &[Ipv4Addr], mtu: usize, timeout: Duration) -> Vec<Pings> {
    std::thread::scope(|s| {
        let handles: Vec<_> = peers
            .iter()
            .map(|&to| {
                s.spawn(move || {
                    let run = |size, count| {
                        echo::ping(to, size, count, timeout).unwrap_or_else(|e| echo::Echoes {
                            size,
                            sent: 0,
                            received: 0,
                            error: Some(e.to_string()),
                        })
                    };
                    Pings {
                        to,
                        small: run(overlay::SMALL_SIZE, overlay::SMALL_ECHOES),
                        large: run(mtu, overlay::LARGE_ECHOES),
                    }
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

fn node_table(out: &mut Out<impl Write>, f: &NodeFacts) -> std::io::Result<()> {
    match &f.device {
        None => out.line("no overlay device (vxlan, geneve, wireguard, ipip) on this node")?,
        Some(d) => out.line(&format!(
            "{} ({}, MTU {}{}), address {}",
            d.name,
            d.kind.as_str(),
            d.mtu,
            d.port.map(|p| format!(", udp/{p}")).unwrap_or_default(),
            d.address.map_or("none".into(), |a| a.to_string())
        ))?,
    }
    if let Some(u) = &f.underlay {
        out.line(&format!("underlay {}, MTU {}", u.name, u.mtu))?;
    }
    for p in &f.pings {
        out.line(&format!(
            "{}: {}/{} small, {}/{} of {} bytes",
            p.to, p.small.received, p.small.sent, p.large.received, p.large.sent, p.large.size
        ))?;
    }
    Ok(())
}

fn table(out: &mut Out<impl Write>, rows: &[Row]) -> std::io::Result<()> {
    let headers = [
        "SOURCE", "TARGET", "DEVICE", "SMALL", "LARGE", "VERDICT", "CAUSE",
    ];
    out.table(&headers, rows.len(), |r, c, buf| {
        let row = &rows[r];
        let echoes = |e: &Option<echo::Echoes>| {
            e.as_ref()
                .map_or("-".to_string(), |e| format!("{}/{}", e.received, e.sent))
        };
        let _ = match c {
            0 => write!(buf, "{}", row.source),
            1 => write!(buf, "{}", row.target),
            2 => write!(buf, "{}", row.device.as_deref().unwrap_or("-")),
            3 => write!(buf, "{}", echoes(&row.small)),
            4 => write!(buf, "{}", echoes(&row.large)),
            5 => write!(buf, "{}", row.verdict),
            _ => write!(buf, "{}", row.message),
        };
    })?;
    let failed = rows.iter().filter(|r| r.verdict != Verdict::Pass).count();
    out.line(&format!(
        "{} pairs: {} pass, {failed} not",
        rows.len(),
        rows.len() - failed
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, kind: &str) -> Interface {
        Interface {
            index: 1,
            name: name.into(),
            kind: kind.into(),
            state: "up".into(),
            mtu: 1450,
            mac: None,
            master: None,
            tunnel_port: None,
            addresses: Vec::new(),
            netns: None,
        }
    }

    #[test]
    fn picks_the_cni_device_before_other_tunnels() {
        let v = [
            iface("eth0", "device"),
            iface("vxlan0", "vxlan"),
            iface("flannel.1", "vxlan"),
        ];
        assert_eq!(pick(&v, None).map(|i| i.name.as_str()), Some("flannel.1"));
        assert_eq!(pick(&v[..2], None).map(|i| i.name.as_str()), Some("vxlan0"));
        assert_eq!(pick(&v[..1], None), None);
        assert_eq!(
            pick(&v, Some("vxlan0")).map(|i| i.name.as_str()),
            Some("vxlan0")
        );
        // A known name that is not a tunnel is passed over.
        let odd = [iface("flannel.1", "bridge"), iface("tunl0", "ipip")];
        assert_eq!(pick(&odd, None).map(|i| i.name.as_str()), Some("tunl0"));
    }
}
