//! The bounds `kports probe` promises, on loopback only: sockets in flight never exceed the
//! concurrency, and a probe without an answer ends as `filtered` at its timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use kports_probe::probe::{Options, Probe, run_blocking};
use kports_probe::{Status, Transport};

/// This process's sockets talking to `ports` as their remote end: the probes in flight, and
/// nothing else (not the runtime's own descriptors, not the accept side of the connections).
fn probe_sockets(ports: [u16; 2]) -> usize {
    let mine: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut n = 0;
    for table in ["tcp", "udp"] {
        let text = std::fs::read_to_string(format!("/proc/self/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port.is_some_and(|p| ports.contains(&p)) && mine.contains(f[9]) {
                n += 1;
            }
        }
    }
    n
}

/// The fd count is the whole process's: the tests of this file take turns, so that one's
/// sockets are not counted against the other's bound.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn sockets_in_flight_never_exceed_the_concurrency() {
    let _turn = turn();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Many probes of one open port (and a closed neighbour), four at a time.
    let probes: Vec<Probe> = (0..400)
        .map(|i| Probe {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: if i % 2 == 0 {
                port
            } else {
                port.wrapping_add(1).max(1)
            },
            transport: if i % 4 == 3 {
                Transport::Udp
            } else {
                Transport::Tcp
            },
        })
        .collect();
    let accept = std::thread::spawn(move || {
        for c in listener.incoming().take(200) {
            drop(c);
        }
    });
    let ports = [port, port.wrapping_add(1).max(1)];
    let mut most = 0;
    let out = run_blocking(
        &probes,
        Options {
            timeout: Duration::from_secs(5),
            concurrency: 4,
        },
        |_, _| most = most.max(probe_sockets(ports)),
    )
    .unwrap();
    assert_eq!(out.len(), probes.len());
    // 400 probes unbounded would hold hundreds; the count must also have seen some.
    assert!((1..=4).contains(&most), "{most} probe sockets open at once");
    assert!(out.iter().all(|o| o.status != Status::Unknown));
    accept.join().unwrap();
}

#[test]
fn no_answer_is_filtered_at_the_timeout() {
    let _turn = turn();
    // A listener whose accept queue is full drops new SYNs: no answer, as behind a drop rule.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: a valid listening socket; listen again only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            held.push(s);
        }
    }
    let probe = Probe {
        addr: addr.ip(),
        port: addr.port(),
        transport: Transport::Tcp,
    };
    let out = run_blocking(
        &[probe],
        Options {
            timeout: Duration::from_millis(300),
            concurrency: 1,
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!(out[0].status, Status::Filtered);
    assert_eq!(out[0].errno, None);
    drop(held);
}
