//! Reads the node's own network settings (kports-core's [`NodeSettings`]) from the calling
//! thread's network namespace: `/proc/sys/net` (forwarding, bridge netfilter, rp_filter, the
//! local port range, conntrack), `/proc/modules`, the host name (UTS namespace), `/etc/hosts`
//! and the resolver, and through [`crate::runner`] `ip -j -d link`, `ip -j route`, `ip -j route
//! get` for each peer and `bridge -j fdb` for the overlay's peers.
//!
//! A file that cannot be read (or is larger than [`limits::CONFIG`]) becomes `Unknown` with the
//! reason; nothing unread is assumed fine. `/proc/sys/net` and `ip` answer for the namespace of the thread that reads them, so
//! [`read_in`] reads another namespace on a thread that entered it. Every format has a
//! `parse_*` function over text, tested on captured contents.

use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use kports_core::catalog::PortRange;
use kports_core::settings::{
    HostsEntry, Known, Link, Modules, NodeSettings, PathRoute, Route, RpFilter,
};
use serde_json::Value;

use crate::limits;
use crate::netns;
use crate::runner::run;

const SYS: &str = "/proc/sys";
/// At most this many peers get an `ip route get` each.
const MAX_PEERS: usize = 16;
/// How long the resolver may take for the host name.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads the settings of the calling thread's network namespace. `peers` are the cluster's
/// peers the census shows (address, why), whose routes are followed; the overlay's peers (from
/// the VXLAN forwarding tables) are added here.
pub fn read(peers: &[(IpAddr, String)], timeout: Duration) -> NodeSettings {
    let hostname = read_text(&format!("{SYS}/kernel/hostname")).map(|s| s.trim().to_string());
    let hosts = read_text("/etc/hosts").map(|t| parse_hosts(&t));
    let in_hosts = match (&hostname, &hosts) {
        (Known::Known(h), Known::Known(entries)) => entries
            .iter()
            .any(|e| e.names.iter().any(|n| n.eq_ignore_ascii_case(h))),
        _ => false,
    };
    let resolved = match &hostname {
        Known::Known(h) if !in_hosts => Some(resolve(h)),
        _ => None,
    };
    let links = run("ip", &["-j", "-d", "link", "show"], timeout)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            parse_ip_links(&t).ok_or_else(|| "`ip -j -d link show`: unexpected output".into())
        });
    let links = match links {
        Ok(l) => Known::Known(l),
        Err(e) => Known::Unknown(e),
    };
    let mut routes = Vec::new();
    let mut route_err = None;
    for v6 in [false, true] {
        let fam = if v6 { "-6" } else { "-4" };
        match run("ip", &["-j", fam, "route", "show"], timeout) {
            Ok(t) => match parse_ip_routes(&t, v6) {
                Some(r) => routes.extend(r),
                None => route_err = Some(format!("`ip -j {fam} route show`: unexpected output")),
            },
            Err(e) => route_err = Some(e.to_string()),
        }
    }
    let routes = match route_err {
        Some(e) => Known::Unknown(e),
        None => Known::Known(routes),
    };
    let mut all_peers: Vec<(IpAddr, String)> = peers.to_vec();
    if let Known::Known(ls) = &links {
        for l in ls.iter().filter(|l| l.kind == "vxlan") {
            if let Ok(t) = run("bridge", &["-j", "fdb", "show", "dev", &l.name], timeout) {
                for a in parse_fdb_dsts(&t) {
                    all_peers.push((a, format!("an overlay peer on {}", l.name)));
                }
            }
        }
    }
    let mut paths: Vec<PathRoute> = Vec::new();
    for (peer, why) in all_peers {
        if paths.len() >= MAX_PEERS || paths.iter().any(|p| p.peer == peer) {
            continue;
        }
        let dev = match run("ip", &["-j", "route", "get", &peer.to_string()], timeout) {
            Ok(t) => match parse_route_get(&t) {
                Some(d) => Known::Known(d),
                None => Known::Unknown(format!("`ip route get {peer}` named no device")),
            },
            Err(e) => Known::Unknown(e.to_string()),
        };
        paths.push(PathRoute { peer, why, dev });
    }
    let mut rp_filter = Vec::new();
    let mut devices = vec!["all".to_string(), "default".to_string()];
    if let Known::Known(ls) = &links {
        devices.extend(ls.iter().map(|l| l.name.clone()));
    }
    for d in devices {
        rp_filter.push(RpFilter {
            value: read_num(&format!("{SYS}/net/ipv4/conf/{d}/rp_filter")),
            device: d,
        });
    }
    NodeSettings {
        hostname,
        hosts,
        resolved,
        ip_forward: read_num(&format!("{SYS}/net/ipv4/ip_forward")),
        ipv6_forwarding: read_num(&format!("{SYS}/net/ipv6/conf/all/forwarding")),
        bridge_nf_call_iptables: read_optional(&format!(
            "{SYS}/net/bridge/bridge-nf-call-iptables"
        )),
        bridge_nf_call_ip6tables: read_optional(&format!(
            "{SYS}/net/bridge/bridge-nf-call-ip6tables"
        )),
        rp_filter,
        local_port_range: parsed(
            &format!("{SYS}/net/ipv4/ip_local_port_range"),
            parse_port_range,
        ),
        reserved_ports: parsed(
            &format!("{SYS}/net/ipv4/ip_local_reserved_ports"),
            parse_reserved_ports,
        ),
        conntrack_count: conntrack("nf_conntrack_count"),
        conntrack_max: conntrack("nf_conntrack_max"),
        modules: modules(),
        cpus: std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        routes,
        links,
        paths,
    }
}

/// Reads the settings of the network namespace at `path` (the host name stays the caller's).
pub fn read_in(
    path: &Path,
    peers: Vec<(IpAddr, String)>,
    timeout: Duration,
) -> io::Result<NodeSettings> {
    netns::run_in(path, move || read(&peers, timeout))
}

fn why(path: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => format!("{path} does not exist"),
        io::ErrorKind::PermissionDenied => format!("permission denied reading {path}"),
        _ => format!("cannot read {path}: {e}"),
    }
}

/// A settings file, read no further than [`limits::CONFIG`] (an /etc/hosts of a block list
/// can be large; a sysctl is a line).
fn read_file(path: &str) -> io::Result<String> {
    limits::read_text(Path::new(path), &limits::CONFIG)
}

fn read_text(path: &str) -> Known<String> {
    match read_file(path) {
        Ok(t) => Known::Known(t),
        Err(e) => Known::Unknown(why(path, &e)),
    }
}

fn parsed<T>(path: &str, parse: impl FnOnce(&str) -> Option<T>) -> Known<T> {
    match read_text(path) {
        Known::Known(t) => match parse(&t) {
            Some(v) => Known::Known(v),
            None => Known::Unknown(format!(
                "{path} holds `{}`, not a value kports knows",
                t.trim()
            )),
        },
        Known::Unknown(r) => Known::Unknown(r),
    }
}

fn read_num<T: std::str::FromStr>(path: &str) -> Known<T> {
    parsed(path, parse_number)
}

/// A file whose absence means "not there" (bridge-nf-call-* exist only with br_netfilter).
fn read_optional(path: &str) -> Known<Option<u8>> {
    match read_file(path) {
        Ok(t) => match parse_number(&t) {
            Some(v) => Known::Known(Some(v)),
            None => Known::Unknown(format!("{path} holds `{}`", t.trim())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Known::Known(None),
        Err(e) => Known::Unknown(why(path, &e)),
    }
}

fn conntrack(name: &str) -> Known<u64> {
    let path = format!("{SYS}/net/netfilter/{name}");
    match read_num(&path) {
        Known::Unknown(r) if !Path::new(&path).exists() => {
            Known::Unknown(format!("{r} (nf_conntrack is not loaded)"))
        }
        k => k,
    }
}

fn modules() -> Modules {
    let loaded = read_text("/proc/modules").map(|t| parse_modules(&t));
    let mut builtin: Vec<String> = Vec::new();
    if let Ok(rel) = read_file(&format!("{SYS}/kernel/osrelease")) {
        let path = format!("/lib/modules/{}/modules.builtin", rel.trim());
        if let Ok(t) = read_file(&path) {
            builtin.extend(parse_modules_builtin(&t));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/sys/module") {
        builtin.extend(
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    // A module's own sysctls show it is there, built in or loaded.
    for (dir, module) in [("net/bridge", "br_netfilter"), ("net/ipv4/vs", "ip_vs")] {
        if Path::new(&format!("{SYS}/{dir}")).exists() {
            builtin.push(module.to_string());
        }
    }
    builtin.sort();
    builtin.dedup();
    Modules { loaded, builtin }
}

/// Asks the system resolver (files, then DNS) on a helper thread, for at most
/// [`RESOLVE_TIMEOUT`]. A name the resolver does not know resolves to no address.
fn resolve(name: &str) -> Known<Vec<IpAddr>> {
    let (tx, rx) = mpsc::channel();
    let n = name.to_string();
    std::thread::spawn(move || {
        let r = (n.as_str(), 0u16)
            .to_socket_addrs()
            .map(|it| it.map(|a| a.ip()).collect::<Vec<_>>());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(RESOLVE_TIMEOUT) {
        Ok(Ok(mut v)) => {
            v.sort();
            v.dedup();
            Known::Known(v)
        }
        // getaddrinfo's "name not known" and "no address": the name does not resolve.
        Ok(Err(_)) => Known::Known(Vec::new()),
        Err(_) => Known::Unknown(format!(
            "the resolver did not answer within {} s",
            RESOLVE_TIMEOUT.as_secs()
        )),
    }
}

/// A sysctl holding one number.
pub fn parse_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.trim().parse().ok()
}

/// `net.ipv4.ip_local_port_range`: two numbers separated by white space.
pub fn parse_port_range(text: &str) -> Option<PortRange> {
    let mut it = text.split_whitespace();
    let first = it.next()?.parse().ok()?;
    let last = it.next()?.parse().ok()?;
    (it.next().is_none() && first <= last).then_some(PortRange { first, last })
}

/// `net.ipv4.ip_local_reserved_ports`: a comma-separated list of ports and ranges; empty when
/// none are reserved.
pub fn parse_reserved_ports(text: &str) -> Option<Vec<PortRange>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|p| {
            let p = p.trim();
            let (a, b) = p.split_once('-').unwrap_or((p, p));
            let first = a.trim().parse().ok()?;
            let last = b.trim().parse().ok()?;
            (first <= last).then_some(PortRange { first, last })
        })
        .collect()
}

/// `/proc/modules`: the first field of every line.
pub fn parse_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `modules.builtin`: paths such as `kernel/net/bridge/br_netfilter.ko`; `-` and `_` are the
/// same in module names, and the kernel lists them with `_`.
pub fn parse_modules_builtin(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().rsplit('/').next())
        .filter_map(|f| f.strip_suffix(".ko"))
        .map(|m| m.replace('-', "_"))
        .collect()
}

/// `/etc/hosts`: an address and its names per line; comments and lines kports cannot read are
/// skipped.
pub fn parse_hosts(text: &str) -> Vec<HostsEntry> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?;
            let mut it = l.split_whitespace();
            let address: IpAddr = it.next()?.split('%').next()?.parse().ok()?;
            let names: Vec<String> = it.map(str::to_string).collect();
            (!names.is_empty()).then_some(HostsEntry { address, names })
        })
        .collect()
}

/// `ip -j -d link show`.
pub fn parse_ip_links(json: &str) -> Option<Vec<Link>> {
    let v: Value = serde_json::from_str(json).ok()?;
    v.as_array()?
        .iter()
        .map(|l| {
            let flags: Vec<&str> = l
                .get("flags")?
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let info = l.get("linkinfo");
            let kind = info
                .and_then(|i| i.get("info_kind"))
                .and_then(Value::as_str);
            let data = info.and_then(|i| i.get("info_data"));
            let field = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_str);
            let underlay_v6 = if ["local6", "remote6", "group6"]
                .iter()
                .any(|k| field(k).is_some())
            {
                Some(true)
            } else if ["local", "remote", "group"]
                .iter()
                .any(|k| field(k).is_some())
            {
                Some(false)
            } else {
                None
            };
            let name = l.get("ifname")?.as_str()?.to_string();
            let loopback = l.get("link_type").and_then(Value::as_str) == Some("loopback");
            Some(Link {
                kind: match (kind, loopback) {
                    (Some(k), _) => k.to_string(),
                    (None, true) => "loopback".into(),
                    (None, false) => "device".into(),
                },
                up: flags.contains(&"UP"),
                carrier: flags.contains(&"LOWER_UP"),
                mtu: u32::try_from(l.get("mtu")?.as_u64()?).ok()?,
                master: l.get("master").and_then(Value::as_str).map(str::to_string),
                underlay: field("link").map(str::to_string),
                underlay_v6,
                name,
            })
        })
        .collect()
}

/// `ip -j route show` of one family.
pub fn parse_ip_routes(json: &str, v6: bool) -> Option<Vec<Route>> {
    let v: Value = serde_json::from_str(json).ok()?;
    v.as_array()?
        .iter()
        .map(|r| {
            Some(Route {
                dst: r.get("dst")?.as_str()?.to_string(),
                v6,
                dev: r.get("dev").and_then(Value::as_str).map(str::to_string),
                gateway: r
                    .get("gateway")
                    .and_then(Value::as_str)
                    .and_then(|g| g.parse().ok()),
                linkdown: r
                    .get("flags")
                    .and_then(Value::as_array)
                    .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("linkdown"))),
            })
        })
        .collect()
}

/// `ip -j route get ADDR`: the device.
pub fn parse_route_get(json: &str) -> Option<String> {
    let v: Value = serde_json::from_str(json).ok()?;
    Some(v.as_array()?.first()?.get("dev")?.as_str()?.to_string())
}

/// `bridge -j fdb show dev VXLAN`: the remote endpoints.
pub fn parse_fdb_dsts(json: &str) -> Vec<IpAddr> {
    let Ok(Value::Array(v)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = v
        .iter()
        .filter_map(|e| e.get("dst")?.as_str()?.parse().ok())
        .filter(|a: &IpAddr| !a.is_unspecified())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_numbers_and_ranges() {
        assert_eq!(parse_number::<u8>("1\n"), Some(1));
        assert_eq!(parse_number::<u8>("yes\n"), None);
        assert_eq!(parse_number::<u64>("262144\n"), Some(262_144));
        assert_eq!(
            parse_port_range("32768\t60999\n"),
            Some(PortRange {
                first: 32768,
                last: 60999
            })
        );
        assert_eq!(parse_port_range("60999 32768\n"), None);
        assert_eq!(parse_port_range("1024\n"), None);
        assert_eq!(parse_reserved_ports("\n"), Some(vec![]));
        assert_eq!(
            parse_reserved_ports("6443,10250-10260\n"),
            Some(vec![
                PortRange::single(6443),
                PortRange {
                    first: 10250,
                    last: 10260
                }
            ])
        );
        assert_eq!(parse_reserved_ports("6443,x\n"), None);
    }

    #[test]
    fn proc_modules_and_builtin_list() {
        let text = "br_netfilter 32768 0 - Live 0x0000000000000000\nbridge 421888 1 br_netfilter, Live 0x0000000000000000\nip_vs_rr 12288 0 - Live 0x0000000000000000\n";
        assert_eq!(parse_modules(text), ["br_netfilter", "bridge", "ip_vs_rr"]);
        let builtin = "kernel/net/netfilter/nf_tables.ko\nkernel/net/bridge/br_netfilter.ko\nkernel/drivers/net/dummy-extra.ko\n";
        assert_eq!(
            parse_modules_builtin(builtin),
            ["nf_tables", "br_netfilter", "dummy_extra"]
        );
    }

    #[test]
    fn etc_hosts() {
        let text = "127.0.0.1\tlocalhost\n127.0.1.1 node-a.example node-a # the node\n# 10.0.0.9 commented\n::1 ip6-localhost ip6-loopback\nfe80::1%eth0 link\nnot-an-address name\n192.0.2.9\n";
        let h = parse_hosts(text);
        assert_eq!(h.len(), 4, "{h:?}");
        assert_eq!(h[1].address, "127.0.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(h[1].names, ["node-a.example", "node-a"]);
        assert_eq!(h[3].names, ["link"]);
    }

    /// Captured from `ip -j -d link show` in a namespace with a flannel-style VXLAN device, a
    /// veth without carrier and one enslaved to a bridge.
    const LINKS: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"operstate":"UNKNOWN","link_type":"loopback","address":"00:00:00:00:00:00"},
{"ifindex":3,"link":"v1","ifname":"v0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP","M-DOWN"],"mtu":1500,"operstate":"LOWERLAYERDOWN","link_type":"ether","linkinfo":{"info_kind":"veth"}},
{"ifindex":2,"link":"v0","ifname":"v1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"master":"br0","operstate":"UP","link_type":"ether","linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"}},
{"ifindex":4,"ifname":"fl.1","flags":["BROADCAST","MULTICAST"],"mtu":1450,"operstate":"DOWN","link_type":"ether","linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"192.0.2.5","link":"v0","port":8472,"learning":false}}},
{"ifindex":5,"ifname":"v6x","flags":["BROADCAST","MULTICAST"],"mtu":1500,"operstate":"DOWN","link_type":"ether","linkinfo":{"info_kind":"vxlan","info_data":{"id":2,"local6":"2001:db8::1","port":4789}}},
{"ifindex":6,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":9001,"operstate":"UP","link_type":"ether"}]"#;

    #[test]
    fn ip_link_json() {
        let l = parse_ip_links(LINKS).unwrap();
        let by = |n: &str| l.iter().find(|x| x.name == n).unwrap();
        assert_eq!(by("lo").kind, "loopback");
        assert_eq!(by("eth0").kind, "device");
        assert_eq!(by("eth0").mtu, 9001);
        assert!(by("v0").up && !by("v0").carrier);
        assert!(by("v1").up && by("v1").carrier);
        assert_eq!(by("v1").master.as_deref(), Some("br0"));
        // A veth's `link` is its peer, not an underlay.
        assert_eq!(by("v1").underlay, None);
        let fl = by("fl.1");
        assert_eq!((fl.kind.as_str(), fl.up, fl.mtu), ("vxlan", false, 1450));
        assert_eq!(fl.underlay.as_deref(), Some("v0"));
        assert_eq!(fl.underlay_v6, Some(false));
        assert_eq!(by("v6x").underlay_v6, Some(true));
        assert_eq!(parse_ip_links("not json"), None);
    }

    #[test]
    fn ip_routes_route_get_and_fdb() {
        let r = parse_ip_routes(
            r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},{"dst":"10.8.0.0/24","dev":"v0","protocol":"kernel","scope":"link","prefsrc":"10.8.0.1","flags":["linkdown"]}]"#,
            false,
        )
        .unwrap();
        assert!(r[0].is_default() && !r[0].linkdown);
        assert_eq!(r[0].gateway, Some("192.0.2.1".parse().unwrap()));
        assert!(!r[1].is_default() && r[1].linkdown);
        assert_eq!(r[1].dev.as_deref(), Some("v0"));
        assert_eq!(parse_ip_routes("[]", true), Some(vec![]));
        assert_eq!(
            parse_route_get(
                r#"[{"dst":"10.8.0.5","dev":"v0","prefsrc":"10.8.0.1","flags":[],"uid":0,"cache":[]}]"#
            )
            .as_deref(),
            Some("v0")
        );
        assert_eq!(parse_route_get("[]"), None);
        assert_eq!(
            parse_fdb_dsts(
                r#"[{"mac":"02:00:00:00:00:01","dst":"192.0.2.7","flags":["self"],"state":"permanent"},{"mac":"00:00:00:00:00:00","dst":"0.0.0.0"},{"mac":"33:33:00:00:00:01","flags":["self"]}]"#
            ),
            ["192.0.2.7".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn unreadable_files_are_unknown_with_the_reason() {
        let k: Known<u8> = read_num("/proc/sys/net/kports-no-such-setting");
        assert_eq!(
            k,
            Known::Unknown("/proc/sys/net/kports-no-such-setting does not exist".into())
        );
        assert_eq!(
            read_optional("/proc/sys/net/bridge/kports-no-such-setting"),
            Known::Known(None)
        );
    }
}
