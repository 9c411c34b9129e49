//! The stand-in processes: the kports binary run under a component's name.
//!
//! A stand-in reads its flags as the real component would ([`crate::component::listeners`]),
//! listens there, accepts connections and holds them until the peer closes, and keeps the
//! long-lived client connections the real component keeps (the API server's to etcd, every
//! component's to the API server), reconnecting when a server comes back. It speaks no
//! protocol: it exists so that sockets, owners and command lines look like a kubeadm node's.
//! It never exits on its own; `kports lab down` or a `stop` fault ends it with SIGTERM.

use std::fs;
use std::io::{self, ErrorKind, Read};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::component::{self, Component};

/// Accepted connections held at most; more are closed at once (the process has 1024 files).
const MAX_HELD: usize = 512;
/// How often missing client connections are retried.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Connect timeout of a client connection (loopback or a lab node).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// If the program was started under a component's name, runs that stand-in and returns its
/// exit code; otherwise `None` (the caller is plain kports).
pub fn dispatch() -> Option<ExitCode> {
    let mut argv = std::env::args_os();
    let arg0 = argv.next()?;
    let name = std::path::Path::new(&arg0).file_name()?.to_str()?;
    if name == LAUNCHER {
        return Some(launch(argv.collect()));
    }
    let c = Component::from_name(name)?;
    let args: Vec<String> = argv.map(|a| a.to_string_lossy().into_owned()).collect();
    Some(match run(c, &args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("{} (kports lab stand-in): {e}", c.name());
            ExitCode::from(1)
        }
    })
}

/// `argv[0]` of the launcher that starts every lab component (see [`launch`]).
pub const LAUNCHER: &str = "kports-lab-launch";
/// What the launcher waits for on its standard input before it starts the component.
pub const GO: &[u8] = b"go";

/// The launcher: `kports-lab-launch PROGRAM ARGV0 ARGS...`. Waits until `kports lab` has
/// recorded this pid (it writes [`GO`] to our standard input), then becomes the component by
/// exec, keeping the pid. When standard input closes without it, `kports lab` died before it
/// could record the pid: exit, so that nothing runs that `kports lab down` cannot find.
fn launch(args: Vec<std::ffi::OsString>) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let [program, arg0, rest @ ..] = args.as_slice() else {
        eprintln!("{LAUNCHER}: usage: {LAUNCHER} PROGRAM ARGV0 [ARGS...]");
        return ExitCode::from(2);
    };
    let mut got = Vec::new();
    if io::stdin()
        .lock()
        .take(GO.len() as u64)
        .read_to_end(&mut got)
        .is_err()
        || got != GO
    {
        eprintln!("{LAUNCHER}: kports lab stopped before recording this process; not starting it");
        return ExitCode::from(1);
    }
    let devnull = match fs::File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{LAUNCHER}: cannot open /dev/null: {e}");
            return ExitCode::from(1);
        }
    };
    let e = std::process::Command::new(program)
        .arg0(arg0)
        .args(rest)
        .stdin(devnull)
        .exec();
    eprintln!("{LAUNCHER}: cannot run {}: {e}", program.to_string_lossy());
    ExitCode::from(1)
}

/// The address to bind for `a`: a wildcard becomes `[::]`, which also takes IPv4 (as Go does,
/// so etcd too). `lab status` shows listeners through it, as `ss` shows them.
pub fn bind_addr(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), a.port())
    } else {
        a
    }
}

/// A client connection slot: a server, and the connection to it when there is one.
struct Slot {
    server: SocketAddr,
    conn: Option<TcpStream>,
}

enum Never {}

fn run(c: Component, args: &[String]) -> io::Result<Never> {
    // A peer that goes away must not kill the process through a write.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

    let addrs = component::listeners(c, args).map_err(io::Error::other)?;
    let mut listeners = Vec::new();
    for a in addrs {
        let l = TcpListener::bind(bind_addr(a))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {a}: {e}")))?;
        l.set_nonblocking(true)?;
        listeners.push(l);
    }
    let mut servers = component::clients(c, args).map_err(io::Error::other)?;
    if let Some(path) = component::flag(args, "kubeconfig") {
        let text = fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?;
        let server = component::kubeconfig_server(&text)
            .map_err(|e| io::Error::other(format!("{path}: {e}")))?;
        servers.push((server, 1));
    }
    let mut slots: Vec<Slot> = servers
        .iter()
        .flat_map(|&(server, n)| (0..n).map(move |_| Slot { server, conn: None }))
        .collect();
    eprintln!(
        "{} (kports lab stand-in): listening on {}; keeping {} connections",
        c.name(),
        listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        slots.len()
    );

    let mut held: Vec<TcpStream> = Vec::new();
    let mut last_retry: Option<Instant> = None;
    let mut buf = [0u8; 4096];
    loop {
        if last_retry.is_none_or(|t| t.elapsed() >= RETRY_EVERY) {
            reconnect(&mut slots);
            last_retry = Some(Instant::now());
        }
        // Poll listeners, held connections and client connections for input.
        let mut fds: Vec<libc::pollfd> = listeners
            .iter()
            .map(|l| l.as_raw_fd())
            .chain(held.iter().map(|s| s.as_raw_fd()))
            .chain(
                slots
                    .iter()
                    .filter_map(|s| s.conn.as_ref().map(|c| c.as_raw_fd())),
            )
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let nfds = libc::nfds_t::try_from(fds.len()).map_err(io::Error::other)?;
        // SAFETY: `fds` is a valid, exclusively borrowed array of `nfds` pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), nfds, 1000) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            continue;
        }
        let ready = |fd: i32| fds.iter().any(|p| p.fd == fd && p.revents != 0);
        for l in &listeners {
            if ready(l.as_raw_fd()) {
                accept_all(l, &mut held);
            }
        }
        held.retain_mut(|s| !ready(s.as_raw_fd()) || still_open(s, &mut buf));
        for slot in &mut slots {
            if let Some(conn) = &mut slot.conn
                && ready(conn.as_raw_fd())
                && !still_open(conn, &mut buf)
            {
                slot.conn = None;
            }
        }
    }
}

/// Accepts every pending connection of `l` and holds it.
fn accept_all(l: &TcpListener, held: &mut Vec<TcpStream>) {
    loop {
        match l.accept() {
            Ok((s, _)) => {
                if held.len() < MAX_HELD && s.set_nonblocking(true).is_ok() {
                    held.push(s);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // WouldBlock ends the batch; other errors (out of files) are retried next round.
            Err(_) => return,
        }
    }
}

/// Reads and discards what is pending on `s`; false once the peer has closed or failed.
fn still_open(s: &mut TcpStream, buf: &mut [u8]) -> bool {
    loop {
        match s.read(buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Opens missing client connections; one failure per server ends that server's attempts for
/// this round, so an absent server costs one connect timeout per second, not one per slot.
fn reconnect(slots: &mut [Slot]) {
    let mut failed: Vec<SocketAddr> = Vec::new();
    for slot in slots.iter_mut().filter(|s| s.conn.is_none()) {
        if failed.contains(&slot.server) {
            continue;
        }
        match TcpStream::connect_timeout(&slot.server, CONNECT_TIMEOUT) {
            Ok(s) if s.set_nonblocking(true).is_ok() => slot.conn = Some(s),
            _ => failed.push(slot.server),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_dual_stack() {
        assert_eq!(
            bind_addr("0.0.0.0:10250".parse().unwrap()).to_string(),
            "[::]:10250"
        );
        assert_eq!(
            bind_addr("[::]:10250".parse().unwrap()).to_string(),
            "[::]:10250"
        );
        assert_eq!(
            bind_addr("127.0.0.1:10248".parse().unwrap()).to_string(),
            "127.0.0.1:10248"
        );
    }

    #[test]
    fn held_connection_is_seen_closing() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert!(still_open(&mut server, &mut buf));
        drop(client);
        // The FIN arrives on loopback before the next read returns.
        let deadline = Instant::now() + Duration::from_secs(5);
        while still_open(&mut server, &mut buf) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!still_open(&mut server, &mut buf));
    }

    #[test]
    fn reconnect_fills_slots_and_skips_a_dead_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let live = l.local_addr().unwrap();
        // A port that was just free: nothing listens there.
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut slots: Vec<Slot> = [live, live, live, dead, dead]
            .into_iter()
            .map(|server| Slot { server, conn: None })
            .collect();
        reconnect(&mut slots);
        let open: Vec<bool> = slots.iter().map(|s| s.conn.is_some()).collect();
        assert_eq!(open, [true, true, true, false, false]);
    }
}
