//! Kubernetes discovery against a local HTTP server on 127.0.0.1 that speaks the API's list and
//! watch wire format: JSON `NodeList`/`PodList` with `metadata.resourceVersion`, and chunked
//! watch streams of `{"type": .., "object": ..}` lines with `BOOKMARK`, a `410 Gone` `ERROR`
//! and a watch that drops. It is not a real API server (none is available to the tests): it
//! answers each request with the next reply the test scripted, and logs every request so the
//! test can check that a dropped watch is resumed from the last resourceVersion, not relisted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kports_agent::discovery::{self, AgentPods, Discovered};
use kports_core::catalog::Role;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

/// What the server answers to the next request for one resource.
enum Reply {
    List(Value),
    /// A watch whose events the test sends; dropping the sender ends (drops) the watch.
    Watch(mpsc::UnboundedReceiver<Value>),
}

#[derive(Debug, Clone, PartialEq)]
struct Logged {
    resource: &'static str,
    watch: bool,
    resource_version: Option<String>,
    query: String,
}

#[derive(Default)]
struct Server {
    nodes: Mutex<VecDeque<Reply>>,
    pods: Mutex<VecDeque<Reply>>,
    log: Mutex<Vec<Logged>>,
    changed: Notify,
}

fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

async fn handle(State(server): State<Arc<Server>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let resource = match path.as_str() {
        "/api/v1/nodes" => "nodes",
        "/api/v1/namespaces/kube-system/pods" => "pods",
        _ => return (StatusCode::NOT_FOUND, format!("no {path}")).into_response(),
    };
    let watch = matches!(param(&query, "watch").as_deref(), Some("true" | "1"));
    if resource == "pods" {
        assert_eq!(
            param(&query, "labelSelector").as_deref(),
            Some("app.kubernetes.io%2Fname%3Dkports")
        );
    }
    server.log.lock().unwrap().push(Logged {
        resource,
        watch,
        resource_version: param(&query, "resourceVersion"),
        query: query.clone(),
    });
    server.changed.notify_waiters();
    let queue = if resource == "nodes" {
        &server.nodes
    } else {
        &server.pods
    };
    let reply = queue.lock().unwrap().pop_front();
    match (reply, watch) {
        (Some(Reply::List(list)), false) => axum::Json(list).into_response(),
        (Some(Reply::Watch(events)), true) => {
            let lines = futures::stream::unfold(events, |mut rx| async move {
                let event = rx.recv().await?;
                let mut line = serde_json::to_vec(&event).unwrap();
                line.push(b'\n');
                Some((Ok::<_, std::io::Error>(Bytes::from(line)), rx))
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(lines))
                .unwrap()
        }
        (Some(_), _) => (
            StatusCode::BAD_REQUEST,
            format!("unexpected request {resource}?{query}"),
        )
            .into_response(),
        (None, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "no scripted reply", "code": 503, "metadata": {}}),
            ),
        )
            .into_response(),
    }
}

fn node(name: &str, rv: &str, roles: &[&str], ip: &str) -> Value {
    let labels: serde_json::Map<String, Value> = roles
        .iter()
        .map(|r| (format!("node-role.kubernetes.io/{r}"), json!("")))
        .chain([("kubernetes.io/hostname".to_string(), json!(name))])
        .collect();
    json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "resourceVersion": rv, "uid": format!("uid-{name}"), "labels": labels},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]},
    })
}

fn pod(name: &str, rv: &str, node: &str, ip: &str) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "kube-system", "resourceVersion": rv,
                     "labels": {"app.kubernetes.io/name": "kports"}},
        "spec": {"nodeName": node, "hostNetwork": true, "containers": [{"name": "kports", "image": "kports"}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": ip,
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

fn list(kind: &str, rv: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items})
}

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

fn bookmark(kind: &str, rv: &str) -> Value {
    event(
        "BOOKMARK",
        json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv}}),
    )
}

fn gone() -> Value {
    event(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "too old resource version: 105 (180)", "reason": "Expired", "code": 410,
        "metadata": {}}),
    )
}

/// Waits (bounded, so a bug fails instead of hanging) until discovery shows what `ok` wants.
async fn wait_for(
    rx: &mut watch::Receiver<Discovered>,
    what: &str,
    ok: impl Fn(&Discovered) -> bool,
) {
    let ok = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|d| ok(d)))
        .await
        .is_ok_and(|r| r.is_ok());
    if !ok {
        panic!("discovery never showed {what}; last: {:#?}", *rx.borrow());
    }
}

async fn wait_for_request(server: &Server, what: &str, ok: impl Fn(&[Logged]) -> bool) {
    let wait = async {
        loop {
            let notified = server.changed.notified();
            if ok(&server.log.lock().unwrap()) {
                return;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .is_err()
    {
        panic!(
            "the server never saw {what}: {:#?}",
            server.log.lock().unwrap()
        );
    }
}

fn names_and_roles(d: &Discovered) -> Vec<(String, Vec<Role>)> {
    d.peers
        .iter()
        .map(|p| (p.name.clone(), p.roles.iter().copied().collect()))
        .collect()
}

fn nodes_requests(server: &Server) -> Vec<(bool, Option<String>)> {
    server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.resource == "nodes")
        .map(|l| (l.watch, l.resource_version.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resume_from_the_last_version_and_relist_only_after_gone() {
    let server = Arc::new(Server::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(server.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Step 1: the initial lists, then watches from their versions.
    let (node_events, rx) = mpsc::unbounded_channel();
    server.nodes.lock().unwrap().extend([
        Reply::List(list(
            "NodeList",
            "100",
            vec![
                node("cp1", "90", &["control-plane"], "192.0.2.1"),
                node("w1", "91", &[], "192.0.2.11"),
            ],
        )),
        Reply::Watch(rx),
    ]);
    let (pod_events, prx) = mpsc::unbounded_channel();
    server.pods.lock().unwrap().extend([
        Reply::List(list(
            "PodList",
            "50",
            vec![pod("kports-a", "40", "cp1", "192.0.2.1")],
        )),
        Reply::Watch(prx),
    ]);
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let (tx, mut found) = watch::channel(Discovered::default());
    let pods = AgentPods {
        namespace: "kube-system".into(),
        selector: "app.kubernetes.io/name=kports".into(),
    };
    let task = tokio::spawn(discovery::run(client, pods, tx));

    wait_for(&mut found, "the listed nodes", |d| {
        d.synced && d.peers.len() == 2
    })
    .await;
    let d = found.borrow().clone();
    assert_eq!(
        names_and_roles(&d),
        [
            ("cp1".to_string(), vec![Role::ControlPlane]),
            ("w1".to_string(), vec![Role::Worker])
        ]
    );
    assert_eq!(
        d.peers[0].addresses,
        ["192.0.2.1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(d.peers[0].agent, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(d.peers[1].agent, None);
    wait_for_request(&server, "the first node watch", |l| {
        l.iter().any(|r| r.resource == "nodes" && r.watch)
    })
    .await;
    assert_eq!(
        nodes_requests(&server),
        [(false, None), (true, Some("100".into()))]
    );
    let first_watch = server
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.watch)
        .unwrap()
        .clone();
    assert!(
        first_watch.query.contains("allowWatchBookmarks=true"),
        "{}",
        first_watch.query
    );

    // Step 2: events arrive on the watches.
    node_events
        .send(event("ADDED", node("w2", "101", &[], "192.0.2.12")))
        .unwrap();
    pod_events
        .send(event("ADDED", pod("kports-b", "51", "w1", "192.0.2.11")))
        .unwrap();
    wait_for(&mut found, "w2 added and w1's agent", |d| {
        d.peers.len() == 3 && d.peers[1].agent.is_some()
    })
    .await;
    assert_eq!(found.borrow().peers[2].name, "w2");

    // Step 3: a bookmark moves the version on, then the watch drops (the server ends the
    // response). The watcher watches again from the bookmark's version, with no new list.
    let (node_events2, rx) = mpsc::unbounded_channel();
    server.nodes.lock().unwrap().push_back(Reply::Watch(rx));
    node_events.send(bookmark("Node", "105")).unwrap();
    drop(node_events);
    wait_for_request(&server, "a resumed node watch", |l| {
        l.iter().filter(|r| r.resource == "nodes").count() == 3
    })
    .await;
    assert_eq!(
        nodes_requests(&server),
        [
            (false, None),
            (true, Some("100".into())),
            (true, Some("105".into()))
        ]
    );
    assert_eq!(
        found.borrow().peers.len(),
        3,
        "a resumed watch keeps what it knew"
    );

    // Step 4: changes on the resumed watch.
    node_events2
        .send(event(
            "MODIFIED",
            node("w1", "106", &["control-plane"], "192.0.2.11"),
        ))
        .unwrap();
    node_events2
        .send(event("DELETED", node("w2", "107", &[], "192.0.2.12")))
        .unwrap();
    wait_for(&mut found, "w1 promoted and w2 deleted", |d| {
        d.peers.len() == 2 && d.peers[1].roles.contains(&Role::ControlPlane)
    })
    .await;
    assert_eq!(found.borrow().last_error, None);

    // Step 5: 410 Gone. Only now a new list, then a watch from the new list's version.
    let (node_events3, rx) = mpsc::unbounded_channel();
    server.nodes.lock().unwrap().extend([
        Reply::List(list(
            "NodeList",
            "200",
            vec![
                node("cp1", "90", &["control-plane"], "192.0.2.1"),
                node("w1", "106", &["control-plane"], "192.0.2.11"),
                node("w3", "150", &[], "192.0.2.13"),
            ],
        )),
        Reply::Watch(rx),
    ]);
    node_events2.send(gone()).unwrap();
    wait_for(&mut found, "the relisted nodes", |d| {
        d.peers
            .iter()
            .map(|p| p.name.as_str())
            .eq(["cp1", "w1", "w3"])
    })
    .await;
    wait_for_request(&server, "a watch after the relist", |l| {
        l.iter().filter(|r| r.resource == "nodes").count() == 5
    })
    .await;
    assert_eq!(
        nodes_requests(&server),
        [
            (false, None),
            (true, Some("100".into())),
            (true, Some("105".into())),
            (false, None),
            (true, Some("200".into())),
        ]
    );
    let err = found.borrow().last_error.clone().unwrap_or_default();
    assert!(
        err.contains("watching Nodes") && err.contains("too old resource version"),
        "{err}"
    );

    // Step 6: the new watch carries events; the pods were listed once and watched once.
    node_events3
        .send(event("DELETED", node("w3", "201", &[], "192.0.2.13")))
        .unwrap();
    wait_for(&mut found, "w3 deleted", |d| d.peers.len() == 2).await;
    let pod_requests: Vec<_> = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.resource == "pods")
        .map(|l| (l.watch, l.resource_version.clone()))
        .collect();
    assert_eq!(pod_requests, [(false, None), (true, Some("50".into()))]);
    drop(pod_events);
    task.abort();
}
