//! Every route, called through the router without a socket.

use super::*;
use crate::state::{Finding, ProbeRun, Report, Round};
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use http_body_util::BodyExt;
use kports_core::catalog::Severity;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::gather::{Gather, Source};
use crate::matrix::Peers;
use kports_core::catalog::Role;

const TOKEN: &str = "s3cret-token";

fn auth() -> Auth {
    Auth::from_token(format!("{TOKEN}\n").as_bytes()).unwrap()
}

fn row(peer: &str, port: u16, status: Status) -> Row {
    Row {
        source: "cp1".into(),
        target: peer.into(),
        target_address: "192.0.2.12".parse().unwrap(),
        proto: kports_probe::Transport::Tcp,
        port,
        status,
        errno: None,
        latency_ms: Duration::from_micros(400),
        component: Some("kubelet".into()),
    }
}

/// The items of a `kports report` document (kports-cluster's `NodeDoc`) of node `name`
/// with `probes`; `holders` stands for anything else a report may carry.
fn node_doc(name: &str, role: &str, probes: &[Row], holders: Value) -> Value {
    json!({
        "name": name, "hostname": name, "roles": [role], "cni": ["flannel"],
        "interfaces": [], "ports": [], "findings": [
            {"id": "port-missing", "severity": "error", "message": "nothing listens"}
        ],
        "firewall_read": true, "probes": probes, "routes": [], "holders": holders,
    })
}

fn round() -> Round {
    Round {
        report: Ok(Report {
            document: json!({
                "schema": kports_core::SCHEMA_VERSION, "kind": "report", "hostname": "cp1",
                "items": [node_doc(
                    "cp1",
                    "control-plane",
                    &[row("w1", 10250, Status::Open), row("w2", 10250, Status::Filtered)],
                    json!([{"cmdline": "kubeadm join --token abc.def"}]),
                )],
                "warnings": [],
            }),
            findings: vec![Finding {
                id: "port-missing".into(),
                severity: Severity::Error,
            }],
            took: Duration::from_millis(120),
        }),
        probes: Some(Ok(ProbeRun {
            rows: vec![
                row("w1", 10250, Status::Open),
                row("w2", 10250, Status::Filtered),
            ],
            took: Duration::from_millis(900),
        })),
    }
}

fn ready_state() -> AgentState {
    let state = AgentState::new("cp1");
    state.update(round());
    state
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(
    router: Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Body,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, t);
    }
    if let Some(n) = http_body::Body::size_hint(&body).exact().filter(|n| *n > 0) {
        req = req.header(header::CONTENT_LENGTH, n);
    }
    let resp = router.oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(state: &AgentState, uri: &str, token: Option<&str>) -> Answer {
    let router = app(state.clone(), auth(), Limits::default());
    send(router, Method::GET, uri, token, Body::empty()).await
}

const BEARER: Option<&str> = Some("Bearer s3cret-token");

#[tokio::test]
async fn report_is_served_redacted() {
    let a = get(&ready_state(), "/api/v1/report", BEARER).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
    let doc = a.json();
    assert_eq!(doc["hostname"], "cp1");
    assert_eq!(
        doc["items"][0]["holders"][0]["cmdline"],
        "kubeadm join --token REDACTED"
    );
    assert!(!a.body.contains("abc.def"));
}

#[tokio::test]
async fn probes_are_served_whole_and_filtered() {
    let state = ready_state();
    let a = get(&state, "/api/v1/probes", BEARER).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert_eq!(doc["kind"], "probes");
    assert_eq!(doc["schema"], kports_core::SCHEMA_VERSION);
    assert_eq!(doc["items"].as_array().unwrap().len(), 2);
    assert_eq!(doc["items"][1]["status"], "filtered");
    assert_eq!(doc["items"][1]["proto"], "tcp");

    let a = get(&state, "/api/v1/probes?status=filtered", BEARER).await;
    let items = a.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["target"], "w2");

    let a = get(&state, "/api/v1/probes?peer=w1&status=open", BEARER).await;
    assert_eq!(a.json()["items"].as_array().unwrap().len(), 1);
    let a = get(&state, "/api/v1/probes?peer=w1&status=filtered", BEARER).await;
    assert_eq!(a.json()["items"].as_array().unwrap().len(), 0);
    let a = get(&state, "/api/v1/probes?status=open%7Cfiltered", BEARER).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_queries_are_bad_requests() {
    let state = ready_state();
    for uri in [
        "/api/v1/probes?status=sideways",
        "/api/v1/probes?colour=red",
        "/api/v1/probes?peer=a&peer=b",
    ] {
        let a = get(&state, uri, BEARER).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.body);
        assert!(
            a.json()["error"].as_str().unwrap().contains("filters are"),
            "{}",
            a.body
        );
    }
}

#[tokio::test]
async fn api_routes_need_the_token() {
    let state = ready_state();
    for uri in ["/api/v1/report", "/api/v1/probes", "/api/v1/matrix"] {
        let a = get(&state, uri, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(a.json()["error"].as_str().unwrap().contains("Bearer TOKEN"));

        let a = get(&state, uri, Some("Bearer s3cret-tokem")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(a.json()["error"], "wrong token");
        // A prefix of the token, or the token with more after it, is wrong too.
        for t in ["Bearer s3cret", "Bearer s3cret-token2", "Bearer "] {
            assert_eq!(
                get(&state, uri, Some(t)).await.status,
                StatusCode::UNAUTHORIZED,
                "{t}"
            );
        }
        let a = get(&state, uri, Some("Basic czNjcmV0LXRva2Vu")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(!a.body.contains(TOKEN));
    }
}

#[tokio::test]
async fn health_and_metrics_need_no_token() {
    let state = ready_state();
    assert_eq!(get(&state, "/healthz", None).await.status, StatusCode::OK);
    assert_eq!(get(&state, "/readyz", None).await.status, StatusCode::OK);
    let a = get(&state, "/metrics", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers[header::CONTENT_TYPE],
        crate::metrics::CONTENT_TYPE
    );
    assert!(
        a.body
            .contains("kports_peer_ports{peer=\"w2\",group=\"kubelet\",status=\"filtered\"} 1")
    );
    assert!(
        a.body
            .contains("kports_findings{id=\"port-missing\",severity=\"error\"} 1")
    );
    assert!(a.body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn no_auth_serves_without_a_token() {
    let router = app(ready_state(), Auth::Disabled, Limits::default());
    let a = send(router, Method::GET, "/api/v1/report", None, Body::empty()).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn not_ready_before_the_first_report() {
    let state = AgentState::new("cp1");
    assert_eq!(get(&state, "/healthz", None).await.status, StatusCode::OK);
    assert_eq!(
        get(&state, "/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let a = get(&state, "/api/v1/report", BEARER).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("no report yet")
    );
    assert_eq!(
        get(&state, "/api/v1/probes", BEARER).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // A round whose report failed leaves the agent unready; the probes are served.
    let mut r = round();
    r.report = Err("census failed".into());
    state.update(r);
    assert_eq!(
        get(&state, "/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&state, "/api/v1/probes", BEARER).await.status,
        StatusCode::OK
    );
    let m = get(&state, "/metrics", None).await.body;
    assert!(
        m.contains("kports_refresh_failures_total{phase=\"report\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_failed_round_keeps_the_last_documents() {
    let state = ready_state();
    state.update(Round {
        report: Err("x".into()),
        probes: Some(Err("y".into())),
    });
    let a = get(&state, "/api/v1/report", BEARER).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["hostname"], "cp1");
    let a = get(&state, "/api/v1/probes", BEARER).await;
    assert_eq!(a.json()["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_agent_without_a_prober_says_so() {
    let state = AgentState::new("cp1");
    let mut r = round();
    r.probes = None;
    state.update(r);
    assert_eq!(get(&state, "/readyz", None).await.status, StatusCode::OK);
    let a = get(&state, "/api/v1/probes", BEARER).await;
    assert_eq!(a.status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("does not probe")
    );
    let m = get(&state, "/metrics", None).await.body;
    assert!(
        !m.contains("kports_refresh_failures_total{phase=\"probe\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let limits = Limits {
        max_body: 1024,
        ..Limits::default()
    };
    for (method, uri) in [(Method::GET, "/api/v1/report"), (Method::POST, "/healthz")] {
        let router = app(ready_state(), auth(), limits);
        let a = send(
            router,
            method.clone(),
            uri,
            BEARER,
            Body::from(vec![b'x'; 4096]),
        )
        .await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{method} {uri}");
    }
    // Under the limit, a body on a read-only route is just the wrong method.
    let router = app(ready_state(), auth(), limits);
    let a = send(router, Method::POST, "/healthz", None, Body::from("x")).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn unknown_routes_are_not_found() {
    let state = ready_state();
    for uri in [
        "/index.html",
        "/api/v1/reports",
        "/api/v2/report",
        "/metrics/x",
    ] {
        let a = get(&state, uri, BEARER).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            a.json()["error"]
                .as_str()
                .unwrap()
                .contains("the routes are")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn slow_requests_time_out() {
    let slow = Router::new().route(
        "/slow",
        axum::routing::get(std::future::pending::<&'static str>),
    );
    let limits = Limits {
        timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let a = send(
        bounded(slow, limits),
        Method::GET,
        "/slow",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(a.status, StatusCode::REQUEST_TIMEOUT);
}

// The clock is tokio's paused clock: these durations are exact, not measured.
#[tokio::test(start_paused = true)]
async fn requests_beyond_the_concurrency_wait_for_a_slot() {
    for (concurrency, waited) in [(1, Duration::from_secs(3)), (2, Duration::ZERO)] {
        let entered = Arc::new(tokio::sync::Notify::new());
        let e = entered.clone();
        let slow = move || async move {
            e.notify_one();
            std::future::pending::<&'static str>().await
        };
        let routes = Router::new()
            .route("/slow", axum::routing::get(slow))
            .route("/fast", axum::routing::get(|| async { "ok" }));
        let limits = Limits {
            timeout: Duration::from_secs(3),
            concurrency,
            ..Limits::default()
        };
        let router = bounded(routes, limits);
        let start = tokio::time::Instant::now();
        let first = tokio::spawn(send(
            router.clone(),
            Method::GET,
            "/slow",
            None,
            Body::empty(),
        ));
        entered.notified().await;
        // With one slot, held by `first`, the fast request is served only when `first` times
        // out and frees it.
        let second = send(router, Method::GET, "/fast", None, Body::empty()).await;
        assert_eq!(second.status, StatusCode::OK);
        assert_eq!(start.elapsed(), waited, "concurrency {concurrency}");
        assert_eq!(first.await.unwrap().status, StatusCode::REQUEST_TIMEOUT);
    }
}

#[test]
fn token_files() {
    let dir = std::env::temp_dir().join(format!("kports-agent-token-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let f = dir.join("token");
    fs::write(&f, "abc\n").unwrap();
    assert!(matches!(Auth::from_token_file(&f), Ok(Auth::Token(t)) if &*t == b"abc"));
    fs::write(&f, "\n").unwrap();
    let e = Auth::from_token_file(&f).unwrap_err().to_string();
    assert!(e.contains("is empty") && e.contains("token"), "{e}");
    fs::write(&f, "a b\n").unwrap();
    assert!(matches!(
        Auth::from_token_file(&f),
        Err(AuthError::NotAHeaderValue(_))
    ));
    let e = Auth::from_token_file(&dir.join("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read the token file"), "{e}");
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(format!("{:?}", auth()), "Auth::Token(..)");
}

#[tokio::test]
async fn the_page_is_open_self_contained_and_carries_no_data() {
    let state = ready_state();
    let a = get(&state, "/", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    assert!(a.body.contains("<title>kports"));
    assert!(a.body.contains("api/v1/matrix"));
    // Nothing is loaded from elsewhere: no URL, no external script or style.
    assert!(!a.body.contains("http://") && !a.body.contains("https://"));
    assert!(!a.body.contains("<script src") && !a.body.contains("<link"));
    // The page holds no node data: that needs the token.
    assert!(!a.body.contains("cp1") && !a.body.contains("kubeadm"));
}

/// Serves `state`'s router on a loopback port for as long as the test runs.
async fn serve_on_loopback(state: AgentState, auth: Auth) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(state, auth, Limits::default());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

fn peer_state() -> AgentState {
    let w1 = AgentState::new("w1");
    let mut r = row("cp1", 6443, Status::Refused);
    r.source = "w1".into();
    r.target_address = "192.0.2.1".parse().unwrap();
    r.component = Some("kube-apiserver".into());
    w1.update(Round {
        report: Ok(Report {
            document: json!({"schema": kports_core::SCHEMA_VERSION, "kind": "report",
                "hostname": "w1", "warnings": [],
                "items": [node_doc("w1", "worker", std::slice::from_ref(&r), json!(null))]}),
            findings: vec![],
            took: Duration::ZERO,
        }),
        probes: Some(Ok(ProbeRun {
            rows: vec![r],
            took: Duration::ZERO,
        })),
    });
    w1
}

fn source(
    name: &str,
    role: Option<Role>,
    addr: &str,
    agent: Option<std::net::SocketAddr>,
) -> Source {
    Source {
        name: name.into(),
        roles: role.into_iter().collect(),
        addresses: vec![addr.parse().unwrap()],
        agent,
    }
}

fn cells_of(doc: &Value) -> Vec<(String, String, u64, String, Option<String>)> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_string(),
                r["target"].as_str().unwrap().to_string(),
                r["port"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
                r["cause"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn node_states(doc: &Value) -> Vec<(String, String)> {
    doc["context"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_matrix_joins_every_agents_report_and_names_a_silent_one() {
    let w1 = serve_on_loopback(peer_state(), auth()).await;
    // An agent that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = ready_state();
    let gather = Gather {
        port: w1.port(),
        token: Some(TOKEN.as_bytes().into()),
        timeout: Duration::from_millis(500),
        concurrency: 4,
    };
    state.set_peers(Peers {
        gather,
        sources: vec![
            // This agent: its own report, never asked over HTTP (port 9 would not answer).
            source(
                "cp1",
                Some(Role::ControlPlane),
                "192.0.2.1",
                Some("127.0.0.1:9".parse().unwrap()),
            ),
            source("w1", Some(Role::Worker), "192.0.2.12", Some(w1)),
            source("w2", None, "192.0.2.13", Some(silent.local_addr().unwrap())),
        ],
    });
    let a = get(&state, "/api/v1/matrix", BEARER).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let doc = a.json();
    // The same document as `kports cluster -o json`.
    assert_eq!(doc["kind"], "cluster");
    assert_eq!(doc["schema"], kports_core::SCHEMA_VERSION);
    assert_eq!(doc["hostname"], "cp1");
    let states = node_states(&doc);
    let names: Vec<&str> = states.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["cp1", "w1", "w2"]);
    assert_eq!(states[0].1, "failing", "{states:?}");
    assert_ne!(states[2].1, "ok");
    let note = doc["context"]["nodes"][2]["note"].as_str().unwrap();
    assert!(note.contains("did not answer within"), "{note}");
    assert_eq!(doc["context"]["nodes"][1]["roles"], json!(["worker"]));
    // Each node's report (without its probes: those are the cells) for the node list.
    assert_eq!(doc["context"]["reports"][1]["name"], "w1");
    assert_eq!(doc["context"]["reports"][1]["probes"], Value::Null);
    assert_eq!(doc["context"]["reports"][2], Value::Null);
    assert_eq!(
        doc["context"]["reports"][0]["findings"][0]["id"],
        "port-missing"
    );
    // The command line in cp1's report stays redacted in the matrix.
    assert!(!a.body.contains("abc.def"));
    let cells = cells_of(&doc);
    let keys: Vec<(&str, &str, u64, &str)> = cells
        .iter()
        .map(|c| (c.0.as_str(), c.1.as_str(), c.2, c.3.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("w1", "cp1", 6443, "refused"),
            ("cp1", "w1", 10250, "open"),
            ("cp1", "w2", 10250, "filtered"),
        ]
    );
    // Every failing cell has a cause; a passing one none.
    assert!(cells[0].4.is_some() && cells[2].4.is_some(), "{cells:?}");
    assert_eq!(cells[1].4, None);
    assert_eq!(doc["context"]["failing"], 2);
    let warnings = doc["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("w2 gave no report")
    );
    drop(silent);
}

#[tokio::test]
async fn the_matrix_of_an_agent_with_a_wrong_peer_token_names_the_refusal() {
    let w1 = serve_on_loopback(peer_state(), auth()).await;
    let state = ready_state();
    state.set_peers(Peers {
        gather: Gather {
            port: w1.port(),
            token: Some(b"not-the-token"[..].into()),
            timeout: Duration::from_secs(5),
            concurrency: 1,
        },
        sources: vec![source("w1", Some(Role::Worker), "192.0.2.12", Some(w1))],
    });
    let doc = get(&state, "/api/v1/matrix", BEARER).await.json();
    let note = doc["context"]["nodes"][1]["note"].as_str().unwrap();
    assert!(
        note.contains("401") && note.contains("wrong token"),
        "{note}"
    );
    // Only this node's own probes: w1's are missing, not failing.
    assert!(cells_of(&doc).iter().all(|c| c.0 == "cp1"));
}

#[tokio::test]
async fn the_matrix_before_the_first_report_says_so() {
    let state = AgentState::new("cp1");
    let a = get(&state, "/api/v1/matrix", BEARER).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert_eq!(node_states(&doc)[0].0, "cp1");
    assert!(
        doc["context"]["nodes"][0]["note"]
            .as_str()
            .unwrap()
            .contains("not taken yet")
    );
}
