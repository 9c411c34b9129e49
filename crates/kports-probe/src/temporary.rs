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
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::PortSpec;
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

/// What happened to one port a preflight tried to hold: a line of `kports preflight --hold`'s
/// report, read back by the node that runs the preflight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub proto: Transport,
    pub port: u16,
    pub state: HeldState,
    /// Bound on IPv6 as well as IPv4 (false on a node without IPv6).
    #[serde(default)]
    pub ipv6: bool,
    /// Why the port could not be bound (`taken`, `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who holds a taken port, from the node's socket census: processes, or the kernel (a
    /// VXLAN or WireGuard device's socket), or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<Holder>,
}

/// Whether a preflight holds a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeldState {
    /// Bound on every address; peers can dial it.
    Bound,
    /// Another socket holds it (`EADDRINUSE`).
    Taken,
    /// Could not be bound for another reason (see `error`).
    Failed,
}

/// The holder of a taken port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Holder {
    /// Processes hold it (name and pid each).
    Processes { processes: Vec<Process> },
    /// No process holds it: a kernel socket (a VXLAN, Geneve or WireGuard device).
    Kernel,
    /// The census could not tell (see `reason`).
    Unknown { reason: String },
}

/// A process, as a preflight names the holder of a taken port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub name: String,
    pub pid: u32,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Processes { processes } => {
                let v: Vec<String> = processes
                    .iter()
                    .map(|p| format!("{} (pid {})", p.name, p.pid))
                    .collect();
                f.write_str(&v.join(", "))
            }
            Holder::Kernel => f.write_str("the kernel (a tunnel device's socket)"),
            Holder::Unknown { reason } => write!(f, "an unknown holder ({reason})"),
        }
    }
}

/// Binds a TCP acceptor or a UDP responder on each of `ports`, on every address (IPv6 and IPv4
/// on one dual-stack socket, or IPv4 alone where the node has no IPv6), as Kubernetes's
/// components bind them. Unlike [`bind_all`], a port that cannot be bound does not stop the
/// others: it is reported, with `holder` left for the caller to fill from the census.
pub fn hold_each(ports: &[PortSpec]) -> (Bound, Vec<Held>) {
    let mut bound = Bound::default();
    let mut report = Vec::with_capacity(ports.len());
    for spec in ports {
        let r = bind_wildcard(spec.transport, spec.port, &mut bound);
        let (state, error, ipv6) = match r {
            Ok(ipv6) => (HeldState::Bound, None, ipv6),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                (HeldState::Taken, Some(e.to_string()), false)
            }
            Err(e) => (HeldState::Failed, Some(e.to_string()), false),
        };
        report.push(Held {
            proto: spec.transport,
            port: spec.port,
            state,
            ipv6,
            error,
            holder: None,
        });
    }
    (bound, report)
}

/// Binds `port` on every address; `Ok(true)` when IPv6 is among them. The IPv6 wildcard takes
/// IPv4 too unless `net.ipv6.bindv6only` makes it IPv6 only; then IPv4 gets a socket of its own.
fn bind_wildcard(transport: Transport, port: u16, bound: &mut Bound) -> io::Result<bool> {
    let v6: SocketAddr = (Ipv6Addr::UNSPECIFIED, port).into();
    let v4: SocketAddr = (Ipv4Addr::UNSPECIFIED, port).into();
    // A node without IPv6 refuses the family or the address; any other error is the answer.
    let no_v6 = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
        )
    };
    match transport {
        Transport::Tcp => {
            let (l, ipv6) = match TcpListener::bind(v6) {
                Err(e) if no_v6(&e) => (TcpListener::bind(v4)?, false),
                r => (r?, true),
            };
            let also_v4 = ipv6 && v6_only(&l)?;
            bound.tcp.push(Acceptor::spawn(l)?);
            if also_v4 {
                bound.tcp.push(Acceptor::spawn(TcpListener::bind(v4)?)?);
            }
            Ok(ipv6)
        }
        Transport::Udp => {
            let (s, ipv6) = match UdpSocket::bind(v6) {
                Err(e) if no_v6(&e) => (UdpSocket::bind(v4)?, false),
                r => (r?, true),
            };
            let also_v4 = ipv6 && v6_only(&s)?;
            bound.udp.push(Responder::spawn(s)?);
            if also_v4 {
                bound.udp.push(Responder::spawn(UdpSocket::bind(v4)?)?);
            }
            Ok(ipv6)
        }
    }
}

/// Whether an IPv6 socket takes IPv6 only (`IPV6_V6ONLY`).
fn v6_only(socket: &impl std::os::fd::AsRawFd) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket, and pointers to an int and its length that live through the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw mut v).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v != 0)
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
    fn hold_each_reports_a_taken_port_and_holds_the_rest() -> Result<(), Box<dyn std::error::Error>>
    {
        let free = free_port()?;
        // A squatter on every address of one port, as a stray service would be.
        let squatter = TcpListener::bind("[::]:0")?;
        let taken = squatter.local_addr()?.port();
        let ports = [
            PortSpec {
                transport: Transport::Tcp,
                port: free,
            },
            PortSpec {
                transport: Transport::Tcp,
                port: taken,
            },
            PortSpec {
                transport: Transport::Udp,
                port: free,
            },
        ];
        let (bound, report) = hold_each(&ports);
        let states: Vec<HeldState> = report.iter().map(|h| h.state).collect();
        assert_eq!(
            states,
            [HeldState::Bound, HeldState::Taken, HeldState::Bound]
        );
        assert_eq!(report[1].port, taken);
        // Held on IPv4 too (dual stack): a second bind fails.
        assert!(TcpListener::bind(("127.0.0.1", free)).is_err());
        drop(bound);
        TcpListener::bind(("0.0.0.0", free))?;
        UdpSocket::bind(("0.0.0.0", free))?;
        let line = serde_json::to_string(&report[1])?;
        let back: Held = serde_json::from_str(&line)?;
        assert_eq!(back, report[1]);
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
