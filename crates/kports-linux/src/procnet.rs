//! The `/proc/net` fallback: parsers for `tcp`, `tcp6`, `udp`, `udp6` and `unix`.
//!
//! Used when netlink sock_diag is unavailable (or with `--source proc`). The text is what
//! `netstat` reads. A line that does not parse is counted, never guessed at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kports_core::{Family, Owner, Proto, SockState, Socket, UnixSocket, no_processes};

/// What a parse produced: the sockets and how many lines were malformed.
#[derive(Debug, Default)]
pub struct Parsed<T> {
    pub items: Vec<T>,
    pub malformed: usize,
}

/// Parses `/proc/net/{tcp,udp}{,6}` text, keeping sockets whose state bit is in `states`.
pub fn parse_inet(text: &str, proto: Proto, family: Family, states: u32) -> Parsed<Socket> {
    let mut out = Parsed {
        items: Vec::new(),
        malformed: 0,
    };
    for line in text.lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        match parse_inet_line(line, proto, family) {
            Some(r) => {
                let n = match r.state {
                    SockState::Unknown(n) => n,
                    s => kernel_state(s),
                };
                if n < 32 && states & (1 << n) != 0 {
                    out.items.push(r);
                }
            }
            None => out.malformed += 1,
        }
    }
    out
}

fn kernel_state(s: SockState) -> u8 {
    (1..=13)
        .find(|&n| SockState::from_kernel(n) == s)
        .unwrap_or(0)
}

fn parse_inet_line(line: &str, proto: Proto, family: Family) -> Option<Socket> {
    let mut f = line.split_ascii_whitespace();
    let _sl = f.next()?;
    let (la, lp) = parse_endpoint(f.next()?, family)?;
    let (ra, rp) = parse_endpoint(f.next()?, family)?;
    let state = u8::from_str_radix(f.next()?, 16).ok()?;
    let _queues = f.next()?;
    let _timer = f.next()?;
    let _retrans = f.next()?;
    let uid = f.next()?.parse().ok()?;
    let _timeout = f.next()?;
    let inode = f.next()?.parse().ok()?;
    Some(Socket {
        proto,
        family,
        state: SockState::from_kernel(state),
        local_address: la,
        local_port: lp,
        remote_address: ra,
        remote_port: rp,
        inode,
        uid,
        interface: None,
        cgroup_id: None,
        processes: no_processes(),
        owner: Owner::None,
        component: None,
        netns: None,
        cgroup: None,
    })
}

/// `0100007F:0CEA` -> 127.0.0.1:3306. Each 32-bit word is printed in host byte order.
fn parse_endpoint(s: &str, family: Family) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let h = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(h, 16).ok()?.to_ne_bytes())
    };
    let ip = match (family, addr.len()) {
        (Family::Ipv4, 8) => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        (Family::Ipv6, 32) => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Parses `/proc/net/unix`. The file has no peer inodes, so `peer_inode` is 0.
pub fn parse_unix(text: &str) -> Parsed<UnixSocket> {
    const ACCEPTCON: u32 = 0x10000;
    let mut out = Parsed {
        items: Vec::new(),
        malformed: 0,
    };
    for line in text.lines().skip(1) {
        let parsed = (|| {
            let mut f = line.split_ascii_whitespace();
            let _num = f.next()?;
            let _refs = f.next()?;
            let _proto = f.next()?;
            let flags = u32::from_str_radix(f.next()?, 16).ok()?;
            let kind = u8::from_str_radix(f.next()?, 16).ok()?;
            let st = u8::from_str_radix(f.next()?, 16).ok()?;
            let inode = f.next()?.parse().ok()?;
            let path = f.next().unwrap_or("").to_string();
            let state = if flags & ACCEPTCON != 0 {
                SockState::Listen
            } else if st == 3 {
                SockState::Established
            } else {
                SockState::Close
            };
            Some(UnixSocket {
                kind: crate::sockdiag::unix_kind(kind),
                state,
                path,
                inode,
                peer_inode: 0,
                processes: no_processes(),
                owner: Owner::None,
                component: None,
                netns: None,
            })
        })();
        match parsed {
            Some(u) => out.items.push(u),
            None if line.trim().is_empty() => {}
            None => out.malformed += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockdiag::ALL_STATES;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:094B 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1
   2: garbage
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:192B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4711 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000A02000A:192B 0000000000000000FFFF00000C02000A:04D2 01 00000000:00000000 00:00000000 00000000  1000        0 4712 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn tcp4_lines_and_a_malformed_one() {
        let p = parse_inet(TCP, Proto::Tcp, Family::Ipv4, ALL_STATES);
        assert_eq!(p.malformed, 1);
        let s: Vec<String> = p
            .items
            .iter()
            .map(|r| {
                let s = r;
                format!(
                    "{} {}:{} {}:{} {}",
                    s.state.ss_name(),
                    s.local_address,
                    s.local_port,
                    s.remote_address,
                    s.remote_port,
                    s.inode
                )
            })
            .collect();
        assert_eq!(
            s,
            [
                "LISTEN 127.0.0.1:2379 0.0.0.0:0 31337",
                "ESTAB 127.0.0.1:2379 127.0.0.1:40000 31338"
            ]
        );
    }

    #[test]
    fn state_filter_applies() {
        let p = parse_inet(TCP, Proto::Tcp, Family::Ipv4, 1 << 10);
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.items[0].state, SockState::Listen);
    }

    #[test]
    fn tcp6_wildcard_and_mapped() {
        let p = parse_inet(TCP6, Proto::Tcp, Family::Ipv6, ALL_STATES);
        assert_eq!(p.malformed, 0);
        assert_eq!(p.items[0].local_address.to_string(), "::");
        assert_eq!(p.items[1].local_address.to_string(), "::ffff:10.0.2.10");
        assert_eq!(p.items[1].remote_port, 1234);
        assert_eq!(p.items[1].uid, 1000);
    }

    #[test]
    fn unix_listener_connected_and_abstract() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 3752449067 /var/lib/kubelet/device-plugins/kubelet.sock
0000000000000000: 00000003 00000000 00000000 0001 03 3752449068
0000000000000000: 00000002 00000000 00000000 0002 01 3752449069 @abstract
bad line
";
        let p = parse_unix(text);
        assert_eq!(p.malformed, 1);
        let s: Vec<String> = p
            .items
            .iter()
            .map(|u| format!("{} {} {} {}", u.kind, u.state.ss_name(), u.inode, u.path))
            .collect();
        assert_eq!(
            s,
            [
                "stream LISTEN 3752449067 /var/lib/kubelet/device-plugins/kubelet.sock",
                "stream ESTAB 3752449068 ",
                "dgram UNCONN 3752449069 @abstract",
            ]
        );
    }
}
