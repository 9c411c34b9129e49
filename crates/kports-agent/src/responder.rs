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

/// The addresses to answer on for `ports`: every address of IPv4, and of IPv6 when `v6`.
pub fn everywhere(ports: &[u16], v6: bool) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for &port in ports {
        out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
        if v6 {
            out.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
        }
    }
    out
}

/// Starts a responder on every address of `addrs` (each once), grouped by port.
pub fn start(addrs: &[SocketAddr]) -> Responders {
    let mut addrs = addrs.to_vec();
    addrs.sort_by_key(|a| (a.port(), a.is_ipv6(), a.ip()));
    addrs.dedup();
    let mut out = Responders {
        tasks: Vec::new(),
        bound: Vec::new(),
    };
    for addr in addrs {
        if out.bound.last().is_none_or(|b| b.port != addr.port()) {
            out.bound.push(Bound {
                port: addr.port(),
                answering: Vec::new(),
                not_bound: Vec::new(),
            });
        }
        let Some(b) = out.bound.last_mut() else {
            continue;
        };
        match bind(addr) {
            Ok(socket) => {
                b.answering.push(addr.ip());
                out.tasks.push(tokio::spawn(async move {
                    // Ends only when receiving fails, which a bound UDP socket does not.
                    let _ = kports_probe::responder::respond(&socket).await;
                }));
            }
            Err(e) => b.not_bound.push(format!("{addr}: {e}")),
        }
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
        let r = start(&everywhere(&[free_port, held_port, free_port], false));
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
