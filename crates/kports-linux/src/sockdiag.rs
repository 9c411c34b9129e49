//! Socket dumps through netlink `sock_diag` (what `ss` uses): inet (TCP, UDP) and UNIX.
//!
//! One request per (family, protocol); every state is asked for with all bits set, since the
//! named state sets of some libraries stop short of NEW_SYN_RECV and BOUND_INACTIVE.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kports_core::{Family, Owner, Proto, SockState, Socket, UnixSocket, no_processes};

use crate::netlink::{Attrs, Netlink, c_str, u16_at, u32_at, u64_at};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_MSG_LEN: usize = 72;
const INET_DIAG_CGROUP_ID: u16 = 21;
const UNIX_DIAG_MSG_LEN: usize = 16;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_PEER: u32 = 4;

/// Every state bit.
pub const ALL_STATES: u32 = u32::MAX;
/// TCP LISTEN.
pub const LISTEN: u32 = 1 << 10;
/// ESTABLISHED.
pub const ESTABLISHED: u32 = 1 << 1;
/// UDP's bound, unconnected state (kernel CLOSE), which `ss -l` shows as UNCONN.
pub const UNCONN: u32 = 1 << 7;

/// A socket as parsed from one `inet_diag_msg`, before owners are joined on, with the index of
/// the interface it is bound to (0 for none).
pub type RawInet = (Socket, u32);

/// Dumps every socket of one family and protocol in the states of `states` (a bit per state),
/// appending to `out`; sockets bound to an interface also get (position in `out`, ifindex) in
/// `bound`.
pub fn dump_inet(
    nl: &mut Netlink,
    family: Family,
    proto: Proto,
    states: u32,
    out: &mut Vec<Socket>,
    bound: &mut Vec<(usize, u32)>,
) -> io::Result<()> {
    let mut req = [0u8; 56];
    req[0] = match family {
        Family::Ipv4 => libc::AF_INET,
        Family::Ipv6 => libc::AF_INET6,
    } as u8;
    req[1] = match proto {
        Proto::Tcp => libc::IPPROTO_TCP,
        Proto::Udp => libc::IPPROTO_UDP,
    } as u8;
    req[4..8].copy_from_slice(&states.to_ne_bytes());
    let mut bad = 0usize;
    nl.dump(SOCK_DIAG_BY_FAMILY, &req, |kind, payload| {
        if kind != SOCK_DIAG_BY_FAMILY {
            return;
        }
        match parse_inet(payload, proto) {
            Some((s, ifindex)) => {
                if ifindex != 0 {
                    bound.push((out.len(), ifindex));
                }
                out.push(s);
            }
            None => bad += 1,
        }
    })?;
    if bad > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{bad} malformed inet_diag messages"),
        ));
    }
    Ok(())
}

/// Parses one `inet_diag_msg` with its attributes. `None` if it is too short or of an unknown family.
pub fn parse_inet(b: &[u8], proto: Proto) -> Option<RawInet> {
    if b.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let family = match i32::from(b[0]) {
        libc::AF_INET => Family::Ipv4,
        libc::AF_INET6 => Family::Ipv6,
        _ => return None,
    };
    let addr = |at: usize| -> IpAddr {
        match family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])),
            Family::Ipv6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            }
        }
    };
    let cgroup_id = Attrs::new(&b[INET_DIAG_MSG_LEN..])
        .find(|(k, v)| *k == INET_DIAG_CGROUP_ID && v.len() >= 8)
        .map(|(_, v)| u64_at(v, 0));
    Some((
        Socket {
            proto,
            family,
            state: SockState::from_kernel(b[1]),
            local_address: addr(8),
            local_port: u16::from_be(u16_at(b, 4)),
            remote_address: addr(24),
            remote_port: u16::from_be(u16_at(b, 6)),
            inode: u64::from(u32_at(b, 68)),
            uid: u32_at(b, 64),
            interface: None,
            cgroup_id,
            processes: no_processes(),
            owner: Owner::None,
            component: None,
            netns: None,
            cgroup: None,
        },
        u32_at(b, 40),
    ))
}

/// Dumps every UNIX socket.
pub fn dump_unix(nl: &mut Netlink, out: &mut Vec<UnixSocket>) -> io::Result<()> {
    let mut req = [0u8; 24];
    req[0] = libc::AF_UNIX as u8;
    req[4..8].copy_from_slice(&ALL_STATES.to_ne_bytes());
    req[12..16].copy_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER).to_ne_bytes());
    nl.dump(SOCK_DIAG_BY_FAMILY, &req, |kind, payload| {
        if kind == SOCK_DIAG_BY_FAMILY {
            out.extend(parse_unix(payload));
        }
    })?;
    Ok(())
}

/// Parses one `unix_diag_msg`.
pub fn parse_unix(b: &[u8]) -> Option<UnixSocket> {
    if b.len() < UNIX_DIAG_MSG_LEN || i32::from(b[0]) != libc::AF_UNIX {
        return None;
    }
    let mut path = String::new();
    let mut peer_inode = 0;
    for (k, v) in Attrs::new(&b[UNIX_DIAG_MSG_LEN..]) {
        match k {
            UNIX_DIAG_NAME => path = unix_name(v),
            UNIX_DIAG_PEER => peer_inode = u64::from(u32_at(v, 0)),
            _ => {}
        }
    }
    Some(UnixSocket {
        kind: unix_kind(b[1]),
        state: SockState::from_kernel(b[2]),
        path,
        inode: u64::from(u32_at(b, 4)),
        peer_inode,
        processes: no_processes(),
        owner: Owner::None,
        component: None,
        netns: None,
    })
}

/// A UNIX socket name: a path, or `@name` for the abstract namespace (leading NUL).
pub fn unix_name(v: &[u8]) -> String {
    match v.split_first() {
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest).trim_end_matches('\0')),
        _ => c_str(v),
    }
}

pub fn unix_kind(t: u8) -> &'static str {
    match i32::from(t) {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "dgram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inet_diag_msg as the kernel sends it for `127.0.0.1:2379 <- 127.0.0.1:40000`,
    /// ESTABLISHED, uid 0, inode 4242, with a cgroup id attribute.
    fn captured_v4() -> Vec<u8> {
        let mut b = vec![0u8; INET_DIAG_MSG_LEN];
        b[0] = libc::AF_INET as u8;
        b[1] = 1;
        b[4..6].copy_from_slice(&2379u16.to_be_bytes());
        b[6..8].copy_from_slice(&40000u16.to_be_bytes());
        b[8..12].copy_from_slice(&[127, 0, 0, 1]);
        b[24..28].copy_from_slice(&[127, 0, 0, 1]);
        b[40..44].copy_from_slice(&3u32.to_ne_bytes());
        b[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        b.extend_from_slice(&12u16.to_ne_bytes());
        b.extend_from_slice(&INET_DIAG_CGROUP_ID.to_ne_bytes());
        b.extend_from_slice(&777u64.to_ne_bytes());
        b
    }

    #[test]
    fn parses_inet_msg() {
        let (s, ifindex) = parse_inet(&captured_v4(), Proto::Tcp).unwrap();
        assert_eq!((s.family, s.state), (Family::Ipv4, SockState::Established));
        assert_eq!(
            format!("{}:{}", s.local_address, s.local_port),
            "127.0.0.1:2379"
        );
        assert_eq!(
            format!("{}:{}", s.remote_address, s.remote_port),
            "127.0.0.1:40000"
        );
        assert_eq!((s.inode, s.cgroup_id, ifindex), (4242, Some(777), 3));
    }

    #[test]
    fn parses_inet6_listener() {
        let mut b = vec![0u8; INET_DIAG_MSG_LEN];
        b[0] = libc::AF_INET6 as u8;
        b[1] = 10;
        b[4..6].copy_from_slice(&6443u16.to_be_bytes());
        let s = parse_inet(&b, Proto::Tcp).unwrap().0;
        assert_eq!(
            (s.state, s.local_address.to_string(), s.local_port),
            (SockState::Listen, "::".into(), 6443)
        );
        assert_eq!(s.cgroup_id, None);
    }

    #[test]
    fn short_or_foreign_messages_are_refused() {
        assert!(parse_inet(&captured_v4()[..40], Proto::Tcp).is_none());
        let mut b = captured_v4();
        b[0] = 99;
        assert!(parse_inet(&b, Proto::Tcp).is_none());
        assert!(parse_unix(&[1, 2, 3]).is_none());
    }

    #[test]
    fn parses_unix_msg_with_abstract_name_and_peer() {
        let mut b = vec![0u8; UNIX_DIAG_MSG_LEN];
        b[0] = libc::AF_UNIX as u8;
        b[1] = libc::SOCK_STREAM as u8;
        b[2] = 1;
        b[4..8].copy_from_slice(&99u32.to_ne_bytes());
        let name = b"\0containerd-shim";
        b.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&UNIX_DIAG_NAME.to_ne_bytes());
        b.extend_from_slice(name);
        b.resize(crate::netlink::align4(b.len()), 0);
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&UNIX_DIAG_PEER.to_ne_bytes());
        b.extend_from_slice(&100u32.to_ne_bytes());
        let u = parse_unix(&b).unwrap();
        assert_eq!(
            (u.kind, u.state, u.path.as_str(), u.inode, u.peer_inode),
            (
                "stream",
                SockState::Established,
                "@containerd-shim",
                99,
                100
            )
        );
    }
}
