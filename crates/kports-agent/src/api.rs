//! The agent's HTTP API, built by [`app`] so that tests call it without a socket.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /api/v1/report` | bearer token | this node's report (`kports report -o json`) |
//! | `GET /api/v1/probes[?peer=NAME&status=STATUS]` | bearer token | the last probes of its peers (kports-probe's rows; 501 when it does not probe) |
//! | `GET /api/v1/matrix` | bearer token | every node's report and probes, gathered from their agents ([`crate::matrix`]) |
//! | `GET /` | none | the web page ([`crate::page`]; it carries no data and asks the API with the token) |
//! | `GET /healthz` | none | 200 while the process serves |
//! | `GET /readyz` | none | 200 once the first report exists, 503 before |
//! | `GET /metrics` | none | OpenMetrics text (see [`crate::metrics`]) |
//!
//! Health and metrics stay open so kubelet probes and Prometheus need no secret; they carry no
//! command lines. Every request is bounded: its body in bytes, its time (queueing included)
//! and how many are served at once; connections are bounded in [`crate::serve`]. Errors are
//! JSON `{"error": "..."}`.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use kports_probe::Status;
use kports_probe::row::Row;

use crate::state::{AgentState, LatestProbes};

/// Who may read the API routes.
#[derive(Clone)]
pub enum Auth {
    /// Requests must carry `Authorization: Bearer TOKEN`.
    Token(Arc<[u8]>),
    /// `--no-auth`: the operator turned the token off.
    Disabled,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Auth::Token(..)"),
            Auth::Disabled => f.write_str("Auth::Disabled"),
        }
    }
}

/// A token file kports cannot use.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {0} is empty")]
    Empty(String),
    #[error(
        "the token in {0} has characters an HTTP header cannot carry (spaces, control characters)"
    )]
    NotAHeaderValue(String),
}

impl Auth {
    /// The token in `path`, without the trailing newline editors add.
    pub fn from_token_file(path: &Path) -> Result<Auth, AuthError> {
        let shown = path.display().to_string();
        let text = fs::read(path).map_err(|source| AuthError::Read {
            path: shown.clone(),
            source,
        })?;
        Auth::from_token(&text).map_err(|e| match e {
            AuthError::Empty(_) => AuthError::Empty(shown),
            _ => AuthError::NotAHeaderValue(shown),
        })
    }

    /// `token` (trailing line ends and spaces dropped) as the one accepted bearer token.
    pub fn from_token(token: &[u8]) -> Result<Auth, AuthError> {
        let token = token.trim_ascii_end();
        if token.is_empty() {
            return Err(AuthError::Empty(String::new()));
        }
        if !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::NotAHeaderValue(String::new()));
        }
        Ok(Auth::Token(token.into()))
    }
}

/// Bounds on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted (the API is read-only; a body is never needed).
    pub max_body: usize,
    /// Longest a request may take, waiting for a slot included.
    pub timeout: Duration,
    /// Requests served at once; more wait (within `timeout`).
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 16 * 1024,
            timeout: Duration::from_secs(10),
            concurrency: 64,
        }
    }
}

/// The agent's router over `state`.
pub fn app(state: AgentState, auth: Auth, limits: Limits) -> Router {
    let api = Router::new()
        .route("/api/v1/report", get(report))
        .route("/api/v1/probes", get(probes))
        .route("/api/v1/matrix", get(matrix))
        .route_layer(middleware::from_fn_with_state(auth, require_token));
    let open = Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    bounded(
        api.merge(open).fallback(not_found).with_state(state),
        limits,
    )
}

/// Wraps `router` in the request bounds (outermost first: time, then slots, then body size).
pub fn bounded(router: Router, limits: Limits) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                limits.timeout,
            ))
            .layer(GlobalConcurrencyLimitLayer::new(limits.concurrency))
            .layer(RequestBodyLimitLayer::new(limits.max_body)),
    )
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let Auth::Token(expected) = &auth else {
        return next.run(req).await;
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return unauthorized("this route needs `Authorization: Bearer TOKEN`");
    };
    let given = value
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .or_else(|| value.as_bytes().strip_prefix(b"bearer "));
    match given {
        Some(given) if bool::from(given.ct_eq(expected)) => next.run(req).await,
        Some(_) => unauthorized("wrong token"),
        None => unauthorized("the Authorization header is not `Bearer TOKEN`"),
    }
}

fn json_bytes(bytes: axum::body::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

async fn report(State(state): State<AgentState>) -> Response {
    match state.report() {
        Some(served) => json_bytes(served.bytes.clone()),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no report yet: the first round has not finished",
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeQuery {
    peer: Option<String>,
    status: Option<Status>,
}

async fn probes(
    State(state): State<AgentState>,
    query: Result<Query<ProbeQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}; the filters are peer=NAME and status=open|refused|filtered|unreachable|closed|open%7Cfiltered|unknown",
                    e.body_text()
                ),
            );
        }
    };
    let served = match state.probes() {
        LatestProbes::Served(s) => s,
        LatestProbes::NotYet => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no probes yet: the first round has not finished",
            );
        }
        LatestProbes::NoProber => {
            return error(
                StatusCode::NOT_IMPLEMENTED,
                "this agent does not probe its peers",
            );
        }
    };
    if query.peer.is_none() && query.status.is_none() {
        return json_bytes(served.bytes.clone());
    }
    let rows: Vec<&Row> = served
        .data
        .iter()
        .filter(|r| query.peer.as_ref().is_none_or(|p| *p == r.target))
        .filter(|r| query.status.is_none_or(|s| s == r.status))
        .collect();
    json_bytes(state.probes_bytes(&rows))
}

async fn matrix(State(state): State<AgentState>) -> Response {
    json_bytes(state.matrix_bytes().await)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing but the page itself and its own API.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        crate::page::INDEX,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AgentState>) -> Response {
    if state.ready() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no report yet\n").into_response()
    }
}

async fn metrics(State(state): State<AgentState>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics().encode(),
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {}; the routes are /, /api/v1/report, /api/v1/probes, /api/v1/matrix, /healthz, /readyz, /metrics",
            req.uri().path()
        ),
    )
}

#[cfg(test)]
mod tests;
