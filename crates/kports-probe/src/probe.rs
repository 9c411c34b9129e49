//! Probing: one TCP connect or one UDP exchange per (address, port), many at once, each within
//! its timeout.
//!
//! The probes run on one thread (a current-thread tokio runtime): they wait on the network, not
//! on the CPU. At most `concurrency` are in flight, so the sockets held never exceed it, and
//! every probe ends by its timeout, so a run of N probes lasts at most ceil(N / concurrency)
//! timeouts.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio::net::{TcpSocket, UdpSocket};

use crate::responder;
use crate::status::{Errno, Status, Transport, tcp_error, udp_error};

/// One thing to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Probe {
    pub addr: IpAddr,
    pub port: u16,
    pub transport: Transport,
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// The error the kernel reported, if any (none for `open` and for a timeout).
    pub errno: Option<Errno>,
    /// From the first system call to the answer (the timeout when there was none).
    pub latency: Duration,
}

/// How to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How long to wait for each probe's answer.
    pub timeout: Duration,
    /// How many probes may be in flight at once (each holds one socket).
    pub concurrency: usize,
}

/// Probes that could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the probe runtime: {0}")]
    Runtime(#[source] io::Error),
}

/// The largest default concurrency, whatever the fd limit: it bounds the memory and the
/// kernel's socket buffers a run can hold.
pub const MAX_DEFAULT_CONCURRENCY: usize = 16_384;
/// File descriptors left for everything else the process holds (the runtime's epoll, standard
/// streams, files being read).
pub const FD_MARGIN: u64 = 64;

/// The concurrency that fits the open-file limit (`RLIMIT_NOFILE` minus [`FD_MARGIN`]), at most
/// [`MAX_DEFAULT_CONCURRENCY`].
pub fn default_concurrency() -> usize {
    let soft = nofile().map_or(1024, |(soft, _)| soft);
    fit_concurrency(soft)
}

fn fit_concurrency(soft_limit: u64) -> usize {
    let n = soft_limit.saturating_sub(FD_MARGIN).max(1);
    usize::try_from(n).map_or(MAX_DEFAULT_CONCURRENCY, |n| n.min(MAX_DEFAULT_CONCURRENCY))
}

/// Raises the soft open-file limit to the hard limit (at most what the default concurrency can
/// use), as a prober that holds one socket per probe needs; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let (soft, hard) = nofile()?;
    let want = hard.min(MAX_DEFAULT_CONCURRENCY as u64 + FD_MARGIN);
    if want <= soft {
        return Ok(soft);
    }
    let lim = libc::rlimit {
        rlim_cur: want,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(want)
}

fn nofile() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Runs every probe on a runtime of its own and returns the outcomes in the order of `probes`.
/// `done(i, outcome)` is called as each probe finishes (for a progress bar).
pub fn run_blocking(
    probes: &[Probe],
    opts: Options,
    done: impl FnMut(usize, &Outcome),
) -> Result<Vec<Outcome>, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    Ok(rt.block_on(run(probes, opts, done)))
}

/// Runs every probe, at most `opts.concurrency` at a time; outcomes in the order of `probes`.
pub async fn run(
    probes: &[Probe],
    opts: Options,
    mut done: impl FnMut(usize, &Outcome),
) -> Vec<Outcome> {
    let placeholder = Outcome {
        status: Status::Unknown,
        errno: None,
        latency: Duration::ZERO,
    };
    let mut out = vec![placeholder; probes.len()];
    // Tokens differ per run and per probe, so a late reply from an earlier run is never taken
    // for this one's.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut results = stream::iter(probes.iter().enumerate())
        .map(|(i, p)| async move {
            let token = seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            (i, probe(*p, opts.timeout, token).await)
        })
        .buffer_unordered(opts.concurrency.max(1));
    while let Some((i, o)) = results.next().await {
        done(i, &o);
        out[i] = o;
    }
    out
}

/// One probe. `token` marks the UDP request so that only the answer to it counts.
pub async fn probe(p: Probe, timeout: Duration, token: u64) -> Outcome {
    let start = Instant::now();
    let addr = SocketAddr::new(p.addr, p.port);
    let (status, errno) = match p.transport {
        Transport::Tcp => tcp(addr, timeout).await,
        Transport::Udp => udp(addr, timeout, token).await,
    };
    Outcome {
        status,
        errno,
        latency: start.elapsed(),
    }
}

fn from_error(e: &io::Error, map: fn(i32) -> Status) -> (Status, Option<Errno>) {
    match e.raw_os_error() {
        Some(n) => (map(n), Some(Errno(n))),
        None => (Status::Unknown, None),
    }
}

async fn tcp(addr: SocketAddr, timeout: Duration) -> (Status, Option<Errno>) {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    let socket = match socket {
        Ok(s) => s,
        Err(e) => return from_error(&e, |_| Status::Unknown),
    };
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Err(_) => (Status::Filtered, None),
        Ok(Ok(_stream)) => (Status::Open, None),
        Ok(Err(e)) => from_error(&e, tcp_error),
    }
}

/// Sends the request at once and again halfway through the timeout (a lost datagram or an
/// ICMP answer held back by the far side's rate limit gets a second chance), and waits for an
/// answer or an ICMP error until the timeout.
async fn udp(addr: SocketAddr, timeout: Duration, token: u64) -> (Status, Option<Errno>) {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return from_error(&e, |_| Status::Unknown),
    };
    if let Err(e) = recv_errors(&socket, addr.is_ipv6()) {
        return from_error(&e, |_| Status::Unknown);
    }
    if let Err(e) = socket.connect(addr).await {
        return from_error(&e, udp_error);
    }
    let request = responder::request(token);
    let start = tokio::time::Instant::now();
    let deadline = start + timeout;
    let mut resend = Some(start + timeout / 2);
    if let Err(e) = socket.send(&request).await {
        return from_error(&e, udp_error);
    }
    let mut buf = [0u8; 64];
    loop {
        let wake = resend.unwrap_or(deadline);
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                // Any answer means something listens; a responder's answer carries the token.
                Ok(_) => return (Status::Open, None),
                Err(e) => return from_error(&e, udp_error),
            },
            () = tokio::time::sleep_until(wake) => {
                if resend.take().is_none() {
                    return (Status::OpenFiltered, None);
                }
                if let Err(e) = socket.send(&request).await {
                    return from_error(&e, udp_error);
                }
            }
        }
    }
}

/// Asks for every ICMP error on the socket. Without `IP_RECVERR` the kernel reports only the
/// "hard" ones to a UDP socket (port unreachable, prohibited) and drops host and network
/// unreachable, which would then look like silence (`open|filtered`).
fn recv_errors(socket: &UdpSocket, v6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let (level, name) = if v6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd, and a pointer to an int that lives through the call, with its
    // size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_fits_the_fd_limit() {
        assert_eq!(fit_concurrency(1024), 960);
        assert_eq!(fit_concurrency(20_000), MAX_DEFAULT_CONCURRENCY);
        assert_eq!(fit_concurrency(10), 1);
        assert_eq!(fit_concurrency(u64::MAX), MAX_DEFAULT_CONCURRENCY);
    }
}
