//! A minimal synchronous netlink client: send one dump request, read every reply until
//! `NLMSG_DONE`, and walk route attributes. Enough for sock_diag and rtnetlink dumps; parsing
//! is separate from IO so that captured messages can be replayed in tests.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
/// Receive buffer: the kernel fills up to 32 KiB per datagram for dumps; more never hurts.
const RECV_BUF: usize = 64 * 1024;

/// A netlink socket of one protocol (`NETLINK_SOCK_DIAG`, `NETLINK_ROUTE`), bound to the
/// network namespace of the thread that opened it.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// What a dump told us besides its messages.
#[derive(Debug, Default, Clone, Copy)]
pub struct DumpInfo {
    /// The kernel flagged the dump as interrupted by a concurrent change: retry for consistency.
    pub interrupted: bool,
}

impl Netlink {
    pub fn open(protocol: libc::c_int) -> io::Result<Netlink> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size: libc::c_int = 1 << 20;
        // SAFETY: setsockopt with a pointer to a live c_int of the stated size. Failure only
        // means a smaller buffer, so the result is ignored.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends a dump request of `msg_type` with `payload`, and calls `each` with the type and
    /// payload of every message the kernel answers with.
    pub fn dump(
        &mut self,
        msg_type: u16,
        payload: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<DumpInfo> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = Vec::with_capacity(NLMSG_HDRLEN + payload.len());
        req.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        req.extend_from_slice(&msg_type.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&self.seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(payload);
        // SAFETY: an all-zero sockaddr_nl is valid; nl_family is set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: req and addr are live for the call and their lengths are passed with them.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }

        let mut info = DumpInfo::default();
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            // SAFETY: buf is a live, writable buffer of buf.len() bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut done = false;
            for msg in Messages::new(&buf[..n as usize]) {
                let msg = msg?;
                if msg.seq != self.seq {
                    continue;
                }
                if msg.flags & NLM_F_DUMP_INTR != 0 {
                    info.interrupted = true;
                }
                match msg.kind {
                    NLMSG_DONE => done = true,
                    NLMSG_ERROR => {
                        let code = msg
                            .payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        done = true;
                    }
                    kind => each(kind, msg.payload),
                }
            }
            if done {
                return Ok(info);
            }
        }
    }
}

/// One netlink message inside a received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Iterator over the netlink messages of one datagram; a malformed header ends it with an error.
#[derive(Debug)]
pub struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(buf: &'a [u8]) -> Messages<'a> {
        Messages { buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = io::Result<Message<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32_at(self.buf, 0) as usize;
        if len < NLMSG_HDRLEN || len > self.buf.len() {
            self.buf = &[];
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed netlink message length",
            )));
        }
        let msg = Message {
            kind: u16_at(self.buf, 4),
            flags: u16_at(self.buf, 6),
            seq: u32_at(self.buf, 8),
            payload: &self.buf[NLMSG_HDRLEN..len],
        };
        self.buf = &self.buf[align4(len).min(self.buf.len())..];
        Some(Ok(msg))
    }
}

/// Iterator over route attributes (`struct rtattr`/`nlattr`): `(type, value)`. Stops at the
/// first attribute whose length does not fit, rather than reading past the message.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    buf: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Attrs<'a> {
        Attrs { buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < 4 {
            return None;
        }
        let len = u16_at(self.buf, 0) as usize;
        // The top bits of the type are NLA_F_NESTED / NLA_F_NET_BYTEORDER.
        let kind = u16_at(self.buf, 2) & 0x3fff;
        if len < 4 || len > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let value = &self.buf[4..len];
        self.buf = &self.buf[align4(len).min(self.buf.len())..];
        Some((kind, value))
    }
}

pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]))
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_ne_bytes(a)
    })
}

/// A NUL-terminated string attribute.
pub fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One route attribute, padded, as the kernel writes it.
    pub(crate) fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(value);
        v.resize(align4(v.len()), 0);
        v
    }

    #[test]
    fn attributes_are_walked_with_padding() {
        let mut buf = attr(3, b"eth0\0");
        buf.extend(attr(4, &1500u32.to_ne_bytes()));
        let got: Vec<(u16, Vec<u8>)> = Attrs::new(&buf).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(
            got,
            vec![(3, b"eth0\0".to_vec()), (4, 1500u32.to_ne_bytes().to_vec())]
        );
    }

    #[test]
    fn truncated_attribute_ends_the_walk() {
        let mut buf = attr(3, b"eth0\0");
        buf.extend_from_slice(&200u16.to_ne_bytes());
        buf.extend_from_slice(&4u16.to_ne_bytes());
        assert_eq!(Attrs::new(&buf).count(), 1);
    }

    #[test]
    fn malformed_message_length_is_an_error() {
        let mut buf = vec![0u8; 20];
        buf[..4].copy_from_slice(&999u32.to_ne_bytes());
        let mut it = Messages::new(&buf);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}
