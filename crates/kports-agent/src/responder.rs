//! The agent's UDP responders (kports-probe's protocol): on the UDP ports its peers need of
//! this node (the overlay's, from the catalog) and on its own probe port, so that a peer's
//! probe of them sees `open` rather than `open|filtered`.
//!
//! A port something else already holds (the kernel's VXLAN socket once the overlay is up) is
//! left to it: the responder says so, and peers see that port as a UDP service that does not
//! answer kports (`open|filtered`), which is the truth.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;
use tokio::task::JoinHandle;

/// What happened on one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bound {
    pub port: u16,
    /// The addresses answered on (`0.0.0.0`, `::`).
    pub answering: Vec<IpAddr>,
    /// Why a family could not be bound (`::: address in use`).
    pub not_bound: Vec<String>,
}

/// The running responders: they stop when this is dropped.
#[derive(Debug)]
pub struct Responders {
    tasks: Vec<JoinHandle<()>>,
    pub bound: Vec<Bound>,
}

impl Drop for Responders {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a responder on every port of `ports` (each once), on IPv4 and IPv6 (`bind_v6` off on
/// a node without IPv6).
pub fn start(ports: &[u16], bind_v6: bool) -> Responders {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    let mut out = Responders {
        tasks: Vec::new(),
        bound: Vec::new(),
    };
    for port in ports {
        let mut b = Bound {
            port,
            answering: Vec::new(),
            not_bound: Vec::new(),
        };
        let mut addrs = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
        if bind_v6 {
            addrs.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        }
        for addr in addrs {
            match bind(SocketAddr::new(addr, port)) {
                Ok(socket) => {
                    b.answering.push(addr);
                    out.tasks.push(tokio::spawn(async move {
                        // Ends only when receiving fails, which a bound UDP socket does not.
                        let _ = kports_probe::responder::respond(&socket).await;
                    }));
                }
                Err(e) => b.not_bound.push(format!("{addr}: {e}")),
            }
        }
        out.bound.push(b);
    }
    out
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn answers_and_names_a_port_it_could_not_take() {
        // A free port, and one held by someone else.
        let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let free_port = free.local_addr().unwrap().port();
        drop(free);
        let held = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let held_port = held.local_addr().unwrap().port();
        let r = start(&[free_port, held_port, free_port], false);
        assert_eq!(r.bound.len(), 2, "each port once: {:?}", r.bound);
        let taken = r.bound.iter().find(|b| b.port == held_port).unwrap();
        assert!(taken.answering.is_empty());
        assert!(taken.not_bound[0].contains("0.0.0.0"), "{taken:?}");
        let probe = kports_probe::Probe {
            addr: "127.0.0.1".parse().unwrap(),
            port: free_port,
            transport: kports_probe::Transport::Udp,
        };
        let o = kports_probe::probe::probe(probe, Duration::from_secs(5), 7).await;
        assert_eq!(o.status, kports_probe::Status::Open);
        drop(r);
        tokio::task::yield_now().await;
    }
}
