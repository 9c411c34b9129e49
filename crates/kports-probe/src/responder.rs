//! The kports UDP responder: a tiny protocol that lets a UDP probe tell `open` from
//! `open|filtered`.
//!
//! A UDP port that is open but silent looks exactly like a dropped one, so a probe alone cannot
//! prove a path. Where kports itself listens (the preflight's temporary responders, the agent),
//! it answers a probe datagram, and the prober reports `open`.
//!
//! The protocol, version 1: the request is 16 bytes, the ASCII magic `KPORTS?1` followed by an
//! 8-byte token chosen by the prober; the reply is 16 bytes, `KPORTS!1` followed by the same
//! token. Anything else is ignored. The reply is never larger than the request, so a responder
//! cannot be used to amplify traffic towards a forged source.

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Length of a request and of a reply.
pub const LEN: usize = 16;
const REQUEST_MAGIC: &[u8; 8] = b"KPORTS?1";
const REPLY_MAGIC: &[u8; 8] = b"KPORTS!1";

/// The datagram a prober sends.
pub fn request(token: u64) -> [u8; LEN] {
    framed(REQUEST_MAGIC, token)
}

/// The responder's answer to `datagram`, if it is a request.
pub fn reply_to(datagram: &[u8]) -> Option<[u8; LEN]> {
    let token = token_of(datagram, REQUEST_MAGIC)?;
    Some(framed(REPLY_MAGIC, token))
}

/// Whether `datagram` is a responder's reply to the request carrying `token`.
pub fn is_reply(datagram: &[u8], token: u64) -> bool {
    token_of(datagram, REPLY_MAGIC) == Some(token)
}

fn framed(magic: &[u8; 8], token: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..8].copy_from_slice(magic);
    b[8..].copy_from_slice(&token.to_be_bytes());
    b
}

fn token_of(datagram: &[u8], magic: &[u8; 8]) -> Option<u64> {
    let (m, t) = datagram.split_first_chunk::<8>()?;
    let t: &[u8; 8] = t.try_into().ok()?;
    (m == magic).then(|| u64::from_be_bytes(*t))
}

/// Answers requests on `socket` until it fails; for an async caller (the agent).
pub async fn respond(socket: &tokio::net::UdpSocket) -> io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if let Some(reply) = reply_to(&buf[..n]) {
            // A reply that cannot be sent (the peer's route vanished) is the peer's loss only.
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

/// A responder on its own thread, for callers without a runtime (the preflight).
///
/// Dropping it stops the thread and closes the socket before `drop` returns, so nothing stays
/// bound: the port is free again as soon as the value is gone, also when the caller unwinds.
#[derive(Debug)]
pub struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local: std::net::SocketAddr,
}

/// How often the thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

impl Responder {
    /// Starts answering on `socket` (already bound).
    pub fn spawn(socket: UdpSocket) -> io::Result<Responder> {
        socket.set_read_timeout(Some(POLL))?;
        let local = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("kports-responder".into())
            .spawn(move || serve_until(&socket, &flag))?;
        Ok(Responder {
            stop,
            thread: Some(thread),
            local,
        })
    }

    /// The address it answers on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local
    }
}

fn serve_until(socket: &UdpSocket, stop: &AtomicBool) {
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(reply) = reply_to(&buf[..n]) {
                    let _ = socket.send_to(&reply, from);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // An ICMP error for an earlier reply is reported on the next receive; keep going.
            Err(_) => {}
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply() {
        let req = request(0x0102_0304_0506_0708);
        assert_eq!(&req[..8], b"KPORTS?1");
        let reply = reply_to(&req);
        assert!(reply.is_some_and(|r| is_reply(&r, 0x0102_0304_0506_0708)));
        assert!(reply.is_some_and(|r| !is_reply(&r, 7)));
        // A reply is not a request, so two responders never answer each other.
        assert!(reply.is_some_and(|r| reply_to(&r).is_none()));
    }

    #[test]
    fn ignores_anything_else() {
        assert!(reply_to(b"").is_none());
        assert!(reply_to(b"KPORTS?1").is_none());
        assert!(reply_to(b"KPORTS?1 too long by far").is_none());
        assert!(reply_to(b"GET / HTTP/1.1\r\n").is_none());
        assert!(!is_reply(b"KPORTS!1", 0));
    }

    #[test]
    fn thread_answers_and_frees_the_port_when_dropped() -> io::Result<()> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let addr = socket.local_addr()?;
        let responder = Responder::spawn(socket)?;
        assert_eq!(responder.local_addr(), addr);
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.set_read_timeout(Some(Duration::from_secs(5)))?;
        client.connect(addr)?;
        client.send(&request(42))?;
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf)?;
        assert!(is_reply(&buf[..n], 42));
        drop(responder);
        // Bound again at once: the responder's socket is closed.
        UdpSocket::bind(addr)?;
        Ok(())
    }
}
