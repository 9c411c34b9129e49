//! The load generator: N established loopback TCP connections and L listeners, held by several
//! processes because one process may hold only so many files.
//!
//! Every address is in 127.77.0.0/16, so the load can be told apart from anything else on the
//! machine. Listeners are bound to 127.77.0.1 (ports picked by the kernel); connections come
//! from 127.77.0.2 onwards with `IP_BIND_ADDRESS_NO_PORT`, so the kernel picks each source port
//! for the full 4-tuple and 100k connections do not exhaust the ephemeral range of one source
//! address. Both ends of a connection live in the same worker, which accepts what it connects.
//! Every socket gets `SO_LINGER` 0, so that exiting resets the connections instead of leaving
//! 2N sockets in TIME-WAIT for the next measurement to trip over.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::sys;

/// The first two octets of every address the load generator uses.
pub const NET_PREFIX: [u8; 2] = [127, 77];

/// Sockets held per connection in one worker: the connecting end and the accepted end.
const FDS_PER_CONN: u64 = 2;
/// Descriptors a worker needs besides its sockets (stdio, the binary, slack).
const FD_SLACK: u64 = 64;
/// Connections opened before their accepts are collected; well under the listen backlog.
const BATCH: usize = 64;
const BACKLOG: libc::c_int = 1024;

/// What to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub conns: usize,
    pub listeners: usize,
    pub workers: usize,
    /// Extra processes that hold listeners and nothing else, with their own names.
    pub idle: usize,
    /// Source addresses 127.77.0.2 onwards.
    pub sources: u8,
}

/// One process's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub kind: Kind,
    pub index: usize,
    pub conns: usize,
    pub listeners: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Worker,
    Idle,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Worker => "worker",
            Kind::Idle => "idle",
        }
    }
}

/// `total` split into `parts` nearly equal parts, larger ones first.
pub fn split(total: usize, parts: usize) -> Vec<usize> {
    if parts == 0 {
        return Vec::new();
    }
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .collect()
}

impl Plan {
    /// Workers needed so that none holds more than `fd_limit` descriptors; never fewer than asked.
    pub fn workers_for(
        conns: usize,
        listeners: usize,
        asked: usize,
        fd_limit: u64,
    ) -> Result<usize> {
        let budget = fd_limit.saturating_sub(FD_SLACK + listeners as u64);
        if budget < FDS_PER_CONN {
            bail!("the open-file limit ({fd_limit}) is too low to hold any connection");
        }
        let per = (budget / FDS_PER_CONN) as usize;
        Ok(asked.max(conns.div_ceil(per)).max(1))
    }

    /// Each process's connections and listeners. Idle processes take up to 4 listeners each,
    /// as long as every worker keeps at least one.
    pub fn shares(&self) -> Result<Vec<Share>> {
        if self.conns > 0 && self.listeners < self.workers {
            bail!(
                "{} listeners cannot serve {} workers: every worker needs one",
                self.listeners,
                self.workers
            );
        }
        if self.sources == 0 || u16::from(self.sources) + 1 > 254 {
            bail!("the number of source addresses must be between 1 and 253");
        }
        let idle_listeners = if self.idle == 0 {
            0
        } else {
            (4 * self.idle).min(self.listeners.saturating_sub(self.workers))
        };
        let mut out = Vec::new();
        let conns = split(self.conns, self.workers);
        let ls = split(self.listeners - idle_listeners, self.workers);
        for (i, (&c, &l)) in conns.iter().zip(&ls).enumerate() {
            out.push(Share {
                kind: Kind::Worker,
                index: i,
                conns: c,
                listeners: l,
            });
        }
        for (i, l) in split(idle_listeners, self.idle).into_iter().enumerate() {
            out.push(Share {
                kind: Kind::Idle,
                index: i,
                conns: 0,
                listeners: l,
            });
        }
        Ok(out)
    }
}

/// The `ready` line: `ready conns=N sockets=2N listeners=L processes=P net=127.77.0.0/16 secs=S`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    pub conns: usize,
    pub listeners: usize,
    pub processes: usize,
    pub secs: f64,
}

impl Ready {
    pub fn line(&self) -> String {
        let [a, b] = NET_PREFIX;
        format!(
            "ready conns={} sockets={} listeners={} processes={} net={a}.{b}.0.0/16 secs={:.1}",
            self.conns,
            self.conns * 2,
            self.listeners,
            self.processes,
            self.secs
        )
    }

    pub fn parse(line: &str) -> Option<Ready> {
        let rest = line.trim().strip_prefix("ready ")?;
        let field = |k: &str| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
        };
        Some(Ready {
            conns: field("conns")?.parse().ok()?,
            listeners: field("listeners")?.parse().ok()?,
            processes: field("processes")?.parse().ok()?,
            secs: field("secs")?.parse().ok()?,
        })
    }
}

fn addr(last: u8) -> Ipv4Addr {
    let [a, b] = NET_PREFIX;
    Ipv4Addr::new(a, b, 0, last)
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn tcp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err("socket"));
    }
    // SAFETY: fd is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: value points to a live T whose size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 { Err(os_err(what)) } else { Ok(()) }
}

fn bind(fd: &OwnedFd, ip: Ipv4Addr, port: u16) -> io::Result<()> {
    let sa = sockaddr(ip, port);
    // SAFETY: sa is a live sockaddr_in whose size is passed with it.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(os_err(&format!("bind {ip}:{port}")))
    } else {
        Ok(())
    }
}

fn reset_on_close(fd: &OwnedFd) -> io::Result<()> {
    setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
        "SO_LINGER",
    )
}

fn timeout_opt(fd: &OwnedFd, name: libc::c_int, secs: i64) -> io::Result<()> {
    setsockopt(
        fd,
        libc::SOL_SOCKET,
        name,
        &libc::timeval {
            tv_sec: secs,
            tv_usec: 0,
        },
        "socket timeout",
    )
}

/// A listener on 127.77.0.1 at a port the kernel picks; returns it and the port.
fn listener() -> io::Result<(OwnedFd, u16)> {
    let fd = tcp_socket()?;
    bind(&fd, addr(1), 0)?;
    // SAFETY: listen on a bound socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } < 0 {
        return Err(os_err("listen"));
    }
    // A stuck accept gives up after a few seconds instead of hanging the worker.
    timeout_opt(&fd, libc::SO_RCVTIMEO, 5)?;
    // SAFETY: an all-zero sockaddr_in is valid storage for getsockname to fill.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa and len are live and len holds sa's size.
    if unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    } < 0
    {
        return Err(os_err("getsockname"));
    }
    Ok((fd, u16::from_be(sa.sin_port)))
}

/// Connects from `src` (port chosen at connect time) to 127.77.0.1:`port`.
fn connect(src: Ipv4Addr, port: u16) -> io::Result<OwnedFd> {
    let fd = tcp_socket()?;
    setsockopt(
        &fd,
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        &1 as &libc::c_int,
        "IP_BIND_ADDRESS_NO_PORT",
    )?;
    bind(&fd, src, 0)?;
    // The kernel retries a dropped SYN after a second; give up well before the deadline.
    timeout_opt(&fd, libc::SO_SNDTIMEO, 5)?;
    let sa = sockaddr(addr(1), port);
    // SAFETY: sa is a live sockaddr_in whose size is passed with it.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            " (out of local ports: use more --sources)"
        } else {
            ""
        };
        return Err(io::Error::new(
            e.kind(),
            format!("connect {src} -> {}:{port}: {e}{hint}", addr(1)),
        ));
    }
    reset_on_close(&fd)?;
    Ok(fd)
}

fn accept(l: &OwnedFd) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: accept4 on a listening socket we own; the peer address is not wanted.
        let fd = unsafe {
            libc::accept4(
                l.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: fd is fresh and owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            reset_on_close(&fd)?;
            return Ok(fd);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    e.kind(),
                    "accept timed out: a connection was lost",
                ));
            }
            _ => return Err(os_err("accept")),
        }
    }
}

/// Builds one process's share of the load and returns what it holds.
pub fn build(share: &Share, sources: u8, deadline: Instant) -> Result<Vec<OwnedFd>> {
    let mut held = Vec::with_capacity(share.conns * 2 + share.listeners);
    let mut listeners = Vec::with_capacity(share.listeners);
    for _ in 0..share.listeners {
        listeners.push(listener()?);
    }
    if share.conns > 0 && listeners.is_empty() {
        bail!("a worker with connections needs at least one listener");
    }
    let mut done = 0;
    while done < share.conns {
        if Instant::now() > deadline {
            bail!("time is up after {done} of {} connections", share.conns);
        }
        let batch = BATCH.min(share.conns - done);
        let mut pending = vec![0usize; listeners.len()];
        for i in done..done + batch {
            let l = i % listeners.len();
            let src = addr(2 + ((i / listeners.len()) % usize::from(sources)) as u8);
            held.push(connect(src, listeners[l].1)?);
            pending[l] += 1;
        }
        for (l, n) in pending.into_iter().enumerate() {
            for _ in 0..n {
                held.push(accept(&listeners[l].0)?);
            }
        }
        done += batch;
    }
    held.extend(listeners.into_iter().map(|(fd, _)| fd));
    Ok(held)
}

/// A worker or idle process: build the share, say `ready`, hold it until standard input closes.
pub fn worker_main(
    share: &Share,
    sources: u8,
    parent: libc::pid_t,
    deadline: Instant,
) -> Result<()> {
    sys::die_with_parent(libc::SIGKILL, parent).context("cannot tie this worker to its parent")?;
    let _ = sys::set_name(&format!("lg-{}-{:02}", share.kind.as_str(), share.index));
    sys::raise_nofile().context("cannot raise the open-file limit")?;
    let held = build(share, sources, deadline)
        .with_context(|| format!("{} {}", share.kind.as_str(), share.index))?;
    let mut out = io::stdout().lock();
    writeln!(out, "ready {} {}", share.conns, share.listeners)?;
    out.flush()?;
    // Hold until the parent closes our standard input (or dies: the pipe closes then too).
    let mut sink = [0u8; 64];
    let mut stdin = io::stdin().lock();
    while !matches!(stdin.read(&mut sink), Ok(0) | Err(_)) {}
    drop(held);
    Ok(())
}

/// The load generator's parent: starts the workers, waits for all of them, prints `ready`,
/// holds until its standard input closes or a termination signal, then stops the workers.
pub fn parent_main(plan: &Plan, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let deadline = start + timeout;
    let shares = plan.shares()?;
    let exe =
        std::env::current_exe().context("cannot find this program's own path to start workers")?;
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let mut workers = Workers(Vec::new());
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    for (i, s) in shares.iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "__worker",
                s.kind.as_str(),
                &s.index.to_string(),
                &s.conns.to_string(),
                &s.listeners.to_string(),
            ])
            .args([
                plan.sources.to_string(),
                me.to_string(),
                timeout
                    .saturating_sub(start.elapsed())
                    .as_millis()
                    .to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a worker process")?;
        let stdout = child.stdout.take();
        let stdin = child.stdin.take();
        workers.0.push((child, stdin));
        let tx = tx.clone();
        // One reader per worker: the first line is `ready`, or nothing if the worker failed.
        std::thread::spawn(move || {
            let line = stdout.and_then(|o| BufReader::new(o).lines().next()?.ok());
            let _ = tx.send((i, line));
        });
    }
    drop(tx);
    let mut ready = vec![false; shares.len()];
    while ready.iter().any(|r| !r) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, Some(line))) if line.starts_with("ready") => ready[i] = true,
            Ok((i, _)) => bail!(
                "{} {} stopped before it was ready (its error is above)",
                shares[i].kind.as_str(),
                shares[i].index
            ),
            Err(_) => {
                let done: usize = shares
                    .iter()
                    .zip(&ready)
                    .filter(|(_, r)| **r)
                    .map(|(s, _)| s.conns)
                    .sum();
                bail!(
                    "gave up after {} s: only the workers holding {done} of {} connections were ready",
                    timeout.as_secs(),
                    plan.conns
                );
            }
        }
    }
    let signals = sys::termination_signals().context("cannot block termination signals")?;
    let r = Ready {
        conns: plan.conns,
        listeners: plan.listeners,
        processes: shares.len(),
        secs: start.elapsed().as_secs_f64(),
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{}", r.line())?;
    out.flush()?;
    drop(out);
    let mut buf = [0u8; 256];
    loop {
        let which = sys::poll_readable(&[0, sys::raw(&signals)], None)?;
        if which[1] {
            break;
        }
        // SAFETY: reading into a live buffer of the stated size from standard input.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
    }
    workers.stop();
    Ok(())
}

/// The workers, stopped when dropped, also on an error path.
struct Workers(Vec<(Child, Option<ChildStdin>)>);

impl Workers {
    /// Closes every worker's standard input, waits a bounded time, then kills what is left.
    fn stop(&mut self) {
        for (_, stdin) in &mut self.0 {
            drop(stdin.take());
        }
        let until = Instant::now() + Duration::from_secs(20);
        for (child, _) in &mut self.0 {
            while Instant::now() < until {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.0.clear();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_even_and_complete() {
        assert_eq!(split(10, 3), [4, 3, 3]);
        assert_eq!(split(2, 4), [1, 1, 0, 0]);
        assert!(split(5, 0).is_empty());
    }

    #[test]
    fn default_plan_spreads_listeners_and_connections() {
        let p = Plan {
            conns: 100_000,
            listeners: 116,
            workers: 16,
            idle: 4,
            sources: 8,
        };
        let s = p.shares().unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!(s.iter().map(|s| s.conns).sum::<usize>(), 100_000);
        assert_eq!(s.iter().map(|s| s.listeners).sum::<usize>(), 116);
        assert!(
            s.iter()
                .filter(|s| s.kind == Kind::Worker)
                .all(|s| s.listeners >= 6 && s.conns == 6250)
        );
        assert!(
            s.iter()
                .filter(|s| s.kind == Kind::Idle)
                .all(|s| s.listeners == 4 && s.conns == 0)
        );
    }

    #[test]
    fn too_few_listeners_is_refused() {
        let p = Plan {
            conns: 10,
            listeners: 3,
            workers: 4,
            idle: 0,
            sources: 1,
        };
        assert!(p.shares().is_err());
    }

    #[test]
    fn workers_are_added_when_the_file_limit_demands() {
        // 100k connections, 2 fds each, under 20,000 files: 16 workers suffice.
        assert_eq!(Plan::workers_for(100_000, 116, 16, 20_000).unwrap(), 16);
        // 400k do not.
        assert_eq!(Plan::workers_for(400_000, 116, 16, 20_000).unwrap(), 41);
        assert!(Plan::workers_for(1, 116, 1, 100).is_err());
    }

    #[test]
    fn ready_line_round_trips() {
        let r = Ready {
            conns: 1000,
            listeners: 116,
            processes: 20,
            secs: 1.5,
        };
        assert_eq!(
            r.line(),
            "ready conns=1000 sockets=2000 listeners=116 processes=20 net=127.77.0.0/16 secs=1.5"
        );
        assert_eq!(Ready::parse(&r.line()), Some(r));
        assert_eq!(Ready::parse("error: no"), None);
    }

    #[test]
    fn a_small_load_is_built_on_loopback() {
        let share = Share {
            kind: Kind::Worker,
            index: 0,
            conns: 100,
            listeners: 3,
        };
        let held = build(&share, 2, Instant::now() + Duration::from_secs(60)).unwrap();
        assert_eq!(held.len(), 203);
    }
}
