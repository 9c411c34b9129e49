//! ICMP echo (ping) over IPv4, for the overlay check: a peer's overlay address answers only if
//! encapsulated traffic crosses both ways. Echoes of a given size with Don't Fragment set show
//! whether the overlay's MTU fits the path under it.
//!
//! A raw ICMP socket (root or CAP_NET_RAW), because unprivileged ping sockets depend on
//! `net.ipv4.ping_group_range`, which is per network namespace and closed by default. Replies
//! are matched by identifier, sequence and source, so other pings on the node do not count.
//! Every echo waits at most its timeout, so `count` echoes take at most `count` timeouts.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

/// What a series of echoes found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Echoes {
    /// The size of each IPv4 packet sent (header included).
    pub size: usize,
    pub sent: u32,
    pub received: u32,
    /// The first error a send or the socket reported (`EMSGSIZE`: larger than the path MTU
    /// this node knows; `EHOSTUNREACH`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// IPv4 header (no options) and ICMP echo header.
const HEADERS: usize = 20 + 8;

/// Sends `count` echoes of `size` bytes (the whole IPv4 packet, at least 28) to `to`, with Don't
/// Fragment set, each waiting up to `timeout` for its reply.
pub fn ping(to: Ipv4Addr, size: usize, count: u32, timeout: Duration) -> io::Result<Echoes> {
    let size = size.clamp(HEADERS, 65_535);
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(
        &sock,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
    )?;
    let id = (std::process::id() as u16) ^ 0x6b70;
    let mut out = Echoes {
        size,
        sent: 0,
        received: 0,
        error: None,
    };
    let dest = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(to).to_be(),
        },
        sin_zero: [0; 8],
    };
    for seq in 0..count as u16 {
        let packet = request(id, seq, size - 20);
        // SAFETY: the buffer and the address are valid for their lengths during the call.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&raw const dest).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            out.error.get_or_insert_with(|| errno_name(&e));
            continue;
        }
        out.sent += 1;
        match wait_reply(&sock, to, id, seq, timeout) {
            Ok(true) => out.received += 1,
            Ok(false) => {}
            Err(e) => {
                out.error.get_or_insert_with(|| errno_name(&e));
            }
        }
    }
    Ok(out)
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => crate::status::Errno(n).name().into_owned(),
        None => e.to_string(),
    }
}

fn set_int(sock: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid socket and a pointer to an int that lives through the call, with its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An echo request of `len` bytes (ICMP header and payload).
fn request(id: u16, seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(8)];
    p[0] = 8;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(8) {
        *b = i as u8;
    }
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in b.chunks(2) {
        let word = match pair {
            [hi, lo] => u16::from_be_bytes([*hi, *lo]),
            [hi] => u16::from_be_bytes([*hi, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `datagram` (IPv4 header included, as a raw socket reads it) is the reply.
fn is_reply(datagram: &[u8], from: Ipv4Addr, id: u16, seq: u16) -> bool {
    let Some(&first) = datagram.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    if datagram.len() < ihl + 8 || ihl < 20 {
        return false;
    }
    let src = Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]);
    let icmp = &datagram[ihl..];
    src == from && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes()
}

/// Waits up to `timeout` for the reply to (`id`, `seq`) from `from`.
fn wait_reply(
    sock: &OwnedFd,
    from: Ipv4Addr,
    id: u16,
    seq: u16,
    timeout: Duration,
) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            return Ok(false);
        }
        // SAFETY: the buffer is valid and writable for its length during the call.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if is_reply(&buf[..n as usize], from, id, seq) {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksums_to_zero() {
        let p = request(0x1234, 7, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(checksum(&p), 0);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn a_reply_matches_its_request_only() {
        let mut d = vec![0x45u8; 20];
        d[12..16].copy_from_slice(&[192, 0, 2, 11]);
        let mut icmp = request(9, 1, 16);
        icmp[0] = 0;
        d.extend_from_slice(&icmp);
        let from = Ipv4Addr::new(192, 0, 2, 11);
        assert!(is_reply(&d, from, 9, 1));
        assert!(!is_reply(&d, from, 9, 2));
        assert!(!is_reply(&d, from, 8, 1));
        assert!(!is_reply(&d, Ipv4Addr::new(192, 0, 2, 12), 9, 1));
        assert!(!is_reply(&d[..24], from, 9, 1));
        assert!(!is_reply(&[], from, 9, 1));
    }
}
