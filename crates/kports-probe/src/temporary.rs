//! Temporary listeners for a preflight: before Kubernetes is installed, a node binds a TCP
//! listener or a UDP responder on each port its roles will serve, so that peers can probe the
//! path; then it lets them all go.
//!
//! Nothing stays bound: [`Bound`] owns every socket and its serving thread, and dropping it (at
//! the end, on an error midway, or while unwinding) stops the threads and closes the sockets
//! before `drop` returns. If one port cannot be bound, the ones already bound are released
//! before the error is returned. A killed process loses its sockets with it (the kernel closes
//! them), so an interrupted run leaves nothing behind either.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::responder::Responder;
use crate::status::Transport;

/// A port that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {transport}/{addr}: {source}")]
pub struct BindError {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// `AddrInUse` when another process holds the port.
    #[source]
    pub source: io::Error,
}

/// A TCP listener whose thread accepts and closes every connection: a completed handshake is
/// all a probe needs.
#[derive(Debug)]
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local: SocketAddr,
}

const POLL: Duration = Duration::from_millis(50);

impl Acceptor {
    pub fn spawn(listener: TcpListener) -> io::Result<Acceptor> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("kports-acceptor".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => drop(conn),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(POLL);
                        }
                        // ECONNABORTED, EMFILE: keep serving the others.
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            })?;
        Ok(Acceptor {
            stop,
            thread: Some(thread),
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything a preflight bound; dropping it releases every port.
#[derive(Debug, Default)]
pub struct Bound {
    pub tcp: Vec<Acceptor>,
    pub udp: Vec<Responder>,
}

/// Binds a TCP acceptor or a UDP responder on each of `ports`, or none of them.
pub fn bind_all(ports: &[(Transport, SocketAddr)]) -> Result<Bound, BindError> {
    let mut bound = Bound::default();
    for &(transport, addr) in ports {
        let err = |source| BindError {
            transport,
            addr,
            source,
        };
        match transport {
            Transport::Tcp => {
                let l = TcpListener::bind(addr).map_err(err)?;
                bound.tcp.push(Acceptor::spawn(l).map_err(err)?);
            }
            Transport::Udp => {
                let s = UdpSocket::bind(addr).map_err(err)?;
                bound.udp.push(Responder::spawn(s).map_err(err)?);
            }
        }
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Options, Probe, run_blocking};
    use crate::status::Status;

    fn free_port() -> io::Result<u16> {
        // A port free for both TCP and UDP at the time of asking.
        for _ in 0..50 {
            let t = TcpListener::bind("127.0.0.1:0")?;
            let p = t.local_addr()?.port();
            if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
                return Ok(p);
            }
        }
        Err(io::Error::other("no free port"))
    }

    #[test]
    fn probes_see_open_and_nothing_stays_bound() -> Result<(), Box<dyn std::error::Error>> {
        let (t, u) = (free_port()?, free_port()?);
        let tcp: SocketAddr = ([127, 0, 0, 1], t).into();
        let udp: SocketAddr = ([127, 0, 0, 1], u).into();
        let bound = bind_all(&[(Transport::Tcp, tcp), (Transport::Udp, udp)])?;
        let probes = [
            Probe {
                addr: tcp.ip(),
                port: t,
                transport: Transport::Tcp,
            },
            Probe {
                addr: udp.ip(),
                port: u,
                transport: Transport::Udp,
            },
        ];
        let opts = Options {
            timeout: Duration::from_secs(5),
            concurrency: 2,
        };
        let out = run_blocking(&probes, opts, |_, _| {})?;
        assert_eq!(out[0].status, Status::Open);
        assert_eq!(out[1].status, Status::Open);
        drop(bound);
        TcpListener::bind(tcp)?;
        UdpSocket::bind(udp)?;
        let out = run_blocking(&probes, opts, |_, _| {})?;
        assert_eq!(out[0].status, Status::Refused);
        assert_eq!(out[1].status, Status::Closed);
        Ok(())
    }

    #[test]
    fn a_taken_port_releases_the_ones_already_bound() -> Result<(), Box<dyn std::error::Error>> {
        let first: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let squatter = TcpListener::bind("127.0.0.1:0")?;
        let taken = squatter.local_addr()?;
        let r = bind_all(&[(Transport::Tcp, first), (Transport::Tcp, taken)]);
        let e = match r {
            Ok(_) => return Err("bound a taken port".into()),
            Err(e) => e,
        };
        assert_eq!(e.addr, taken);
        assert_eq!(e.source.kind(), io::ErrorKind::AddrInUse);
        // The first port is free again.
        TcpListener::bind(first)?;
        Ok(())
    }

    #[test]
    fn released_while_unwinding() -> Result<(), Box<dyn std::error::Error>> {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let r = std::thread::spawn(move || {
            let _bound = bind_all(&[(Transport::Udp, addr)]);
            panic!("a preflight step failed");
        })
        .join();
        assert!(r.is_err());
        UdpSocket::bind(addr)?;
        Ok(())
    }
}
