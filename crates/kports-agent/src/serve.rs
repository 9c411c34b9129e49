//! Serving the router on a listener until SIGTERM (or any other shutdown future), then giving
//! requests in flight a bounded time to finish.
//!
//! The accept loop is here rather than `axum::serve` because the agent bounds connections as
//! well as requests: at most [`ConnLimits::max_connections`] at once (beyond that, new ones wait
//! in the kernel's backlog), and a client must send its request headers within
//! [`ConnLimits::header_timeout`] of connecting or of its previous answer, so idle or trickling
//! connections cannot hold the slots. hyper does the HTTP.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Why serving ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the HTTP server failed: {0}")]
    Io(#[from] io::Error),
    #[error("requests still running {0:?} after shutdown began; stopped without them")]
    GraceExceeded(Duration),
}

/// Bounds on connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers (from when it is accepted
    /// or was last answered); then it is closed.
    pub header_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits up to
/// `grace` for the connections in flight to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), ServeError> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Every connection task holds a receiver: when the last is dropped, all have ended.
    let (all_closed, open) = watch::channel(());
    let (begin_shutdown, shutting_down) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                // Out of file descriptors, a connection reset before accept: wait, go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let mut shutting_down = shutting_down.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            let conn = connection(stream, app, limits);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { shutting_down.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = begin_shutdown.send(true);
    drop(open);
    match tokio::time::timeout(grace, all_closed.closed()).await {
        Ok(()) => Ok(()),
        Err(_) => Err(ServeError::GraceExceeded(grace)),
    }
}

/// One connection, served as [`serve`] serves each: HTTP/1.1 by hyper, the request headers
/// due within [`ConnLimits::header_timeout`], the requests answered by `app`. The future ends
/// when the connection does. Public so that the fuzz target can hand it raw bytes.
pub fn connection<I>(
    io: I,
    app: Router,
    limits: ConnLimits,
) -> http1::Connection<TokioIo<I>, TowerToHyperService<Router>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A client that closes its sending side after its request (`nc -N`, scripts) still
        // gets the answer; by default hyper would drop the connection at that end of input.
        .half_close(true);
    builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
}

/// Completes on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
pub async fn terminate_signal() -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::Notify;

    async fn request(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// A route that blocks until released, and says when it is entered.
    fn slow_app() -> (Router, Arc<Notify>, Arc<Notify>) {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let (r, e) = (release.clone(), entered.clone());
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let (r, e) = (r.clone(), e.clone());
                    async move {
                        e.notify_one();
                        r.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }));
        (app, release, entered)
    }

    async fn start(
        app: Router,
        limits: ConnLimits,
        grace: Duration,
    ) -> (
        std::net::SocketAddr,
        Arc<Notify>,
        tokio::task::JoinHandle<Result<(), ServeError>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(Notify::new());
        let s = stop.clone();
        let server = tokio::spawn(async move {
            serve(
                listener,
                app,
                limits,
                async move { s.notified().await },
                grace,
            )
            .await
        });
        (addr, stop, server)
    }

    #[tokio::test]
    async fn requests_in_flight_finish_after_shutdown_begins() {
        let (app, release, entered) = slow_app();
        let (addr, stop, server) = start(app, ConnLimits::default(), Duration::from_secs(30)).await;
        let in_flight = tokio::spawn(request(addr, "/slow"));
        entered.notified().await;
        stop.notify_one();
        // New connections are refused once shutdown began (the listener is closed).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still accepting");
            tokio::task::yield_now().await;
        }
        release.notify_one();
        let answer = in_flight.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        server.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_ends_does_not_hold_shutdown_forever() {
        let (app, _release, entered) = slow_app();
        let (addr, stop, server) = start(app, ConnLimits::default(), Duration::from_secs(5)).await;
        let _hung = tokio::spawn(request(addr, "/slow"));
        entered.notified().await;
        stop.notify_one();
        let r = server.await.unwrap();
        assert!(
            matches!(r, Err(ServeError::GraceExceeded(d)) if d == Duration::from_secs(5)),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed() {
        let (app, _release, _entered) = slow_app();
        let limits = ConnLimits {
            header_timeout: Duration::from_millis(200),
            ..ConnLimits::default()
        };
        let (addr, _stop, _server) = start(app, limits, Duration::from_secs(1)).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 256];
        // Bounded so that a server that never closes fails the test instead of hanging it.
        let n = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut buf))
            .await
            .expect("the idle connection was never closed");
        // Closed: EOF, or hyper's 408 answer followed by EOF.
        let n = n.unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_a_slot() {
        let (app, release, entered) = slow_app();
        let limits = ConnLimits {
            max_connections: 1,
            ..ConnLimits::default()
        };
        let (addr, _stop, _server) = start(app, limits, Duration::from_secs(1)).await;
        let first = tokio::spawn(request(addr, "/slow"));
        entered.notified().await;
        // The one slot is held by `first`: the second connection sits in the backlog, its
        // request unanswered (however long we wait, until the slot frees).
        let second = tokio::spawn(request(addr, "/fast"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "served beyond the connection limit");
        release.notify_one();
        assert!(first.await.unwrap().ends_with("done"));
        let answer = tokio::time::timeout(Duration::from_secs(30), second)
            .await
            .expect("the waiting connection was never served")
            .unwrap();
        assert!(answer.ends_with("fast"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_closes_its_sending_side_still_gets_the_answer() {
        let (app, release, entered) = slow_app();
        let (addr, _stop, _server) =
            start(app, ConnLimits::default(), Duration::from_secs(1)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // As `nc -N` does: the request is all there is, so the sending side is closed at once.
        s.shutdown().await.unwrap();
        entered.notified().await;
        release.notify_one();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut out))
            .await
            .expect("the answer never came")
            .unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with("done"),
            "{out:?}"
        );
    }
}
