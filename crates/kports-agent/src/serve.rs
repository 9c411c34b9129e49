//! Serving the router on a listener until SIGTERM (or any other shutdown future), then giving
//! requests in flight a bounded time to finish.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

/// Why serving ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the HTTP server failed: {0}")]
    Io(#[from] io::Error),
    #[error("requests still running {0:?} after shutdown began; stopped without them")]
    GraceExceeded(Duration),
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits up to
/// `grace` for requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), ServeError> {
    let (begin, begun) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = begun.await;
    });
    let server = server.into_future();
    tokio::pin!(server);
    tokio::pin!(shutdown);
    tokio::select! {
        r = &mut server => return Ok(r?),
        () = &mut shutdown => {}
    }
    let _ = begin.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ServeError::GraceExceeded(grace)),
    }
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
    use std::sync::Arc;
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

    #[tokio::test]
    async fn requests_in_flight_finish_after_shutdown_begins() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let (r, e) = (release.clone(), entered.clone());
        let app = Router::new().route(
            "/slow",
            get(move || {
                let (r, e) = (r.clone(), e.clone());
                async move {
                    e.notify_one();
                    r.notified().await;
                    "done"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(Notify::new());
        let s = stop.clone();
        let server = tokio::spawn(serve(
            listener,
            app,
            async move { s.notified().await },
            Duration::from_secs(30),
        ));
        let in_flight = tokio::spawn(request(addr, "/slow"));
        // Begin the shutdown while the request is being served.
        entered.notified().await;
        stop.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.notify_one();
        let answer = in_flight.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        server.await.unwrap().unwrap();
        // Nothing listens any more.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_ends_does_not_hold_shutdown_forever() {
        let app = Router::new().route("/hang", get(std::future::pending::<&'static str>));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(Notify::new());
        let s = stop.clone();
        let server = tokio::spawn(serve(
            listener,
            app,
            async move { s.notified().await },
            Duration::from_secs(5),
        ));
        let _hung = tokio::spawn(request(addr, "/hang"));
        let mut ticks = 0;
        // Let the connection be accepted before shutdown begins.
        while ticks < 100 {
            tokio::task::yield_now().await;
            ticks += 1;
        }
        stop.notify_one();
        let r = server.await.unwrap();
        assert!(
            matches!(r, Err(ServeError::GraceExceeded(d)) if d == Duration::from_secs(5)),
            "{r:?}"
        );
    }
}
