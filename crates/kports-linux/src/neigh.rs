//! Neighbour and forwarding entries over rtnetlink: the ARP/NDP entries of an interface
//! (`ip neigh`) and the bridge forwarding database (`bridge fdb`), which for a VXLAN device says
//! which remote tunnel endpoint each MAC address is sent to. An overlay without them cannot
//! reach a peer, however open the path is.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::link::hex_colon;
use crate::netlink::{Attrs, Netlink, u16_at, u32_at};

const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// `struct ndmsg`: family, padding, ifindex, state, flags, type.
const NDMSG_LEN: usize = 12;

/// One neighbour or forwarding entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ifindex: u32,
    /// The neighbour's address (ARP/NDP), or the remote tunnel endpoint (a VXLAN FDB entry).
    pub dst: Option<IpAddr>,
    /// The MAC address.
    pub lladdr: Option<String>,
    /// `NUD_*` bits (`NUD_PERMANENT` is 0x80, `NUD_FAILED` 0x20).
    pub state: u16,
}

/// Which table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// IPv4 and IPv6 neighbours (`ip neigh`).
    Neighbours,
    /// The bridge forwarding database (`bridge fdb`), VXLAN devices' included.
    Fdb,
}

/// Every entry of `table` in the calling thread's network namespace.
pub fn dump(nl: &mut Netlink, table: Table) -> io::Result<Vec<Entry>> {
    let family = match table {
        Table::Neighbours => libc::AF_UNSPEC,
        Table::Fdb => libc::AF_BRIDGE,
    };
    let mut req = [0u8; NDMSG_LEN];
    req[0] = family as u8;
    let mut out = Vec::new();
    nl.dump(RTM_GETNEIGH, &req, |kind, payload| {
        if kind == RTM_NEWNEIGH {
            out.extend(parse(payload));
        }
    })?;
    Ok(out)
}

/// Parses one `RTM_NEWNEIGH` message.
pub fn parse(b: &[u8]) -> Option<Entry> {
    if b.len() < NDMSG_LEN {
        return None;
    }
    let mut e = Entry {
        ifindex: u32_at(b, 4),
        dst: None,
        lladdr: None,
        state: u16_at(b, 8),
    };
    for (k, v) in Attrs::new(&b[NDMSG_LEN..]) {
        match (k, v.len()) {
            (NDA_DST, 4) => e.dst = Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
            (NDA_DST, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(v);
                e.dst = Some(IpAddr::V6(Ipv6Addr::from(a)));
            }
            (NDA_LLADDR, n) if n > 0 => e.lladdr = Some(hex_colon(v)),
            _ => {}
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, data: &[u8]) -> Vec<u8> {
        let len = 4 + data.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(crate::netlink::align4(len), 0);
        v
    }

    #[test]
    fn parses_a_vxlan_fdb_entry() {
        let mut b = vec![7u8, 0, 0, 0];
        b.extend_from_slice(&9u32.to_ne_bytes());
        b.extend_from_slice(&0x80u16.to_ne_bytes());
        b.extend_from_slice(&[2, 0]);
        b.extend(attr(NDA_LLADDR, &[2, 0x6b, 0x70, 0, 0, 2]));
        b.extend(attr(NDA_DST, &[192, 0, 2, 22]));
        let e = parse(&b).unwrap();
        assert_eq!(e.ifindex, 9);
        assert_eq!(e.state, 0x80);
        assert_eq!(e.dst, Some(IpAddr::from([192, 0, 2, 22])));
        assert_eq!(e.lladdr.as_deref(), Some("02:6b:70:00:00:02"));
        assert_eq!(parse(&b[..8]), None);
    }
}
