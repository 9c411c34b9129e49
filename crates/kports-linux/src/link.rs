//! Interfaces and their addresses through rtnetlink (what `ip addr` shows).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kports_core::{Address, Family, Interface};

use crate::netlink::{Attrs, Netlink, c_str, u16_at, u32_at};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VXLAN_PORT: u16 = 15;
const IFLA_GENEVE_PORT: u16 = 5;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const ARPHRD_LOOPBACK: u16 = 772;

/// Every interface of the calling thread's network namespace, with its addresses.
pub fn interfaces(nl: &mut Netlink) -> io::Result<Vec<Interface>> {
    let links = raw_links(nl)?;
    let mut addrs = Vec::new();
    nl.dump(RTM_GETADDR, &[0u8; 8], |kind, payload| {
        if kind == RTM_NEWADDR {
            addrs.extend(parse_addr(payload));
        }
    })?;
    Ok(join(links, addrs))
}

/// Links only, without addresses (for naming bound interfaces and finding tunnel ports).
pub fn links(nl: &mut Netlink) -> io::Result<Vec<Interface>> {
    Ok(join(raw_links(nl)?, Vec::new()))
}

fn raw_links(nl: &mut Netlink) -> io::Result<Vec<RawLink>> {
    let mut links = Vec::new();
    nl.dump(RTM_GETLINK, &[0u8; 16], |kind, payload| {
        if kind == RTM_NEWLINK {
            links.extend(parse_link(payload));
        }
    })?;
    Ok(links)
}

/// A link before masters are resolved to names: (interface, master index).
pub type RawLink = (Interface, u32);

/// Resolves master indexes to names and puts every address on its interface.
pub fn join(links: Vec<RawLink>, addrs: Vec<(u32, Address)>) -> Vec<Interface> {
    let names: HashMap<u32, String> = links
        .iter()
        .map(|(l, _)| (l.index, l.name.clone()))
        .collect();
    let mut by_index: HashMap<u32, Vec<Address>> = HashMap::new();
    for (index, a) in addrs {
        by_index.entry(index).or_default().push(a);
    }
    let mut out: Vec<Interface> = links
        .into_iter()
        .map(|(mut l, master)| {
            l.master = (master != 0).then(|| {
                names
                    .get(&master)
                    .cloned()
                    .unwrap_or_else(|| format!("if{master}"))
            });
            l.addresses = by_index.remove(&l.index).unwrap_or_default();
            l
        })
        .collect();
    out.sort_by_key(|l| l.index);
    out
}

/// Parses one `RTM_NEWLINK` message.
pub fn parse_link(b: &[u8]) -> Option<RawLink> {
    if b.len() < 16 {
        return None;
    }
    let link_type = u16_at(b, 2);
    let index = u32_at(b, 4);
    let mut iface = Interface {
        index,
        name: String::new(),
        kind: String::new(),
        state: "unknown".into(),
        mtu: 0,
        mac: None,
        master: None,
        tunnel_port: None,
        addresses: Vec::new(),
        netns: None,
    };
    let mut master = 0;
    for (k, v) in Attrs::new(&b[16..]) {
        match k {
            IFLA_IFNAME => iface.name = c_str(v),
            IFLA_MTU => iface.mtu = u32_at(v, 0),
            IFLA_MASTER => master = u32_at(v, 0),
            IFLA_ADDRESS if !v.is_empty() => iface.mac = Some(hex_colon(v)),
            IFLA_OPERSTATE => iface.state = operstate(v.first().copied().unwrap_or(0)).into(),
            IFLA_LINKINFO => {
                for (ik, iv) in Attrs::new(v) {
                    match ik {
                        IFLA_INFO_KIND => iface.kind = c_str(iv),
                        IFLA_INFO_DATA => iface.tunnel_port = tunnel_port(&iface.kind, iv),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if iface.kind.is_empty() {
        iface.kind = if link_type == ARPHRD_LOOPBACK {
            "loopback"
        } else {
            "device"
        }
        .into();
    }
    Some((iface, master))
}

/// The UDP port of a VXLAN or Geneve device. IFLA_INFO_DATA follows IFLA_INFO_KIND in the kernel's
/// messages, so the kind is known when the data arrives.
fn tunnel_port(kind: &str, data: &[u8]) -> Option<u16> {
    let want = match kind {
        "vxlan" => IFLA_VXLAN_PORT,
        "geneve" => IFLA_GENEVE_PORT,
        _ => return None,
    };
    Attrs::new(data)
        .find(|(k, v)| *k == want && v.len() >= 2)
        .map(|(_, v)| u16::from_be_bytes([v[0], v[1]]))
}

/// Parses one `RTM_NEWADDR` message into (interface index, address).
pub fn parse_addr(b: &[u8]) -> Option<(u32, Address)> {
    if b.len() < 8 {
        return None;
    }
    let family = match i32::from(b[0]) {
        libc::AF_INET => Family::Ipv4,
        libc::AF_INET6 => Family::Ipv6,
        _ => return None,
    };
    let (mut local, mut address) = (None, None);
    for (k, v) in Attrs::new(&b[8..]) {
        let ip = match (family, v.len()) {
            (Family::Ipv4, 4) => IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            (Family::Ipv6, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(v);
                IpAddr::V6(Ipv6Addr::from(a))
            }
            _ => continue,
        };
        match k {
            IFA_LOCAL => local = Some(ip),
            IFA_ADDRESS => address = Some(ip),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
    let address = local.or(address)?;
    Some((
        u32_at(b, 4),
        Address {
            address,
            prefix_len: b[1],
            family,
            scope: scope(b[3]),
        },
    ))
}

fn operstate(n: u8) -> &'static str {
    match n {
        1 => "notpresent",
        2 => "down",
        3 => "lowerlayerdown",
        4 => "testing",
        5 => "dormant",
        6 => "up",
        _ => "unknown",
    }
}

fn scope(n: u8) -> String {
    match n {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        n => n.to_string(),
    }
}

pub(crate) fn hex_colon(v: &[u8]) -> String {
    let mut s = String::with_capacity(v.len() * 3);
    for (i, b) in v.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::tests::attr;

    fn link_msg(index: u32, name: &str, kind: Option<&str>, master: u32, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[2..4].copy_from_slice(&1u16.to_ne_bytes());
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        b.extend(attr(IFLA_IFNAME, format!("{name}\0").as_bytes()));
        b.extend(attr(IFLA_MTU, &1450u32.to_ne_bytes()));
        b.extend(attr(IFLA_ADDRESS, &[0xc2, 0xb9, 0xa8, 0x8c, 0x96, 0x66]));
        b.extend(attr(IFLA_OPERSTATE, &[6]));
        if master != 0 {
            b.extend(attr(IFLA_MASTER, &master.to_ne_bytes()));
        }
        if let Some(k) = kind {
            let mut info = attr(IFLA_INFO_KIND, format!("{k}\0").as_bytes());
            if !data.is_empty() {
                info.extend(attr(IFLA_INFO_DATA, data));
            }
            b.extend(attr(IFLA_LINKINFO, &info));
        }
        b
    }

    #[test]
    fn bridge_member_and_vxlan_port() {
        let vxlan_data = attr(IFLA_VXLAN_PORT, &8472u16.to_be_bytes());
        let links = vec![
            parse_link(&link_msg(5, "cni0", Some("bridge"), 0, &[])).unwrap(),
            parse_link(&link_msg(6, "veth1", Some("veth"), 5, &[])).unwrap(),
            parse_link(&link_msg(7, "flannel.1", Some("vxlan"), 0, &vxlan_data)).unwrap(),
            parse_link(&link_msg(2, "eth0", None, 0, &[])).unwrap(),
        ];
        let mut a = vec![0u8; 8];
        a[0] = libc::AF_INET as u8;
        a[1] = 24;
        a[4..8].copy_from_slice(&5u32.to_ne_bytes());
        a.extend(attr(IFA_ADDRESS, &[10, 244, 0, 1]));
        a.extend(attr(IFA_LOCAL, &[10, 244, 0, 1]));
        let addrs = vec![parse_addr(&a).unwrap()];
        let ifs = join(links, addrs);
        let summary: Vec<String> = ifs
            .iter()
            .map(|i| {
                format!(
                    "{} {} {} {:?} {:?} {}",
                    i.name,
                    i.kind,
                    i.state,
                    i.master,
                    i.tunnel_port,
                    i.addresses.len()
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "eth0 device up None None 0",
                "cni0 bridge up None None 1",
                "veth1 veth up Some(\"cni0\") None 0",
                "flannel.1 vxlan up None Some(8472) 0",
            ]
        );
        assert_eq!(ifs[1].mac.as_deref(), Some("c2:b9:a8:8c:96:66"));
        assert_eq!(ifs[1].addresses[0].address.to_string(), "10.244.0.1");
        assert_eq!(ifs[1].addresses[0].scope, "global");
    }

    #[test]
    fn point_to_point_prefers_local_address() {
        let mut a = vec![0u8; 8];
        a[0] = libc::AF_INET as u8;
        a[1] = 32;
        a[4..8].copy_from_slice(&9u32.to_ne_bytes());
        a.extend(attr(IFA_ADDRESS, &[10, 0, 0, 2]));
        a.extend(attr(IFA_LOCAL, &[10, 0, 0, 1]));
        assert_eq!(parse_addr(&a).unwrap().1.address.to_string(), "10.0.0.1");
    }
}
