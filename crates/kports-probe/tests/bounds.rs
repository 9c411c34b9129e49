//! The bounds `kports probe` promises, on loopback only: sockets in flight never exceed the
//! concurrency, and a probe without an answer ends as `filtered` at its timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use kports_probe::probe::{Options, Probe, run_blocking};
use kports_probe::{Status, Transport};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
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
    let baseline = open_fds();
    let mut most = 0;
    let out = run_blocking(
        &probes,
        Options {
            timeout: Duration::from_secs(5),
            concurrency: 4,
        },
        |_, _| most = most.max(open_fds()),
    )
    .unwrap();
    assert_eq!(out.len(), probes.len());
    // The runtime's own epoll and waker take a few descriptors; 400 probes unbounded would
    // take hundreds.
    assert!(
        most <= baseline + 4 + 4,
        "{most} fds open during the run, {baseline} before"
    );
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
