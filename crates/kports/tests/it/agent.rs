//! `kports agent` run as a user runs it: it serves the node's report on loopback, needs its
//! token on the API routes, and stops cleanly on SIGTERM. Needs no root (the census then
//! carries warnings about processes it may not read); talks only to 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::KPORTS;

/// Kills the agent (by its pid) if the test fails before it stops.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: kports\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn agent_serves_the_node_report_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("kports-agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "t0ken-for-the-test\n").unwrap();
    let (mut agent, addr, mut stderr) = start_agent(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);

    assert_eq!(get(&addr, "/healthz", None), (200, "ok\n".to_string()));
    // Ready once the first check is served (bounded: a broken agent fails, never hangs).
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(&addr, "/readyz", None).0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = get(&addr, "/api/v1/report", None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(get(&addr, "/api/v1/report", Some("wrong")).0, 401);
    let (status, body) = get(&addr, "/api/v1/report", Some("t0ken-for-the-test"));
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    // The document `kports report -o json` prints, made in the agent's own process.
    assert_eq!(doc["kind"], "report");
    assert_eq!(doc["schema"], kports_core::SCHEMA_VERSION);
    assert!(doc["items"][0]["ports"].is_array());
    assert!(doc["items"][0]["probes"].is_null(), "no peers, no probes");
    let out = Command::new(KPORTS)
        .args(["report", "-o", "json"])
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&doc), keys(&cli));
    assert_eq!(keys(&doc["items"][0]), keys(&cli["items"][0]));
    assert_eq!(doc["items"][0]["name"], cli["items"][0]["name"]);
    assert_eq!(doc["items"][0]["roles"], cli["items"][0]["roles"]);
    let (status, metrics) = get(&addr, "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("kports_scan_duration_seconds_count{phase=\"report\"}"),
        "{metrics}"
    );
    let (status, body) = get(&addr, "/api/v1/probes", Some("t0ken-for-the-test"));
    assert_eq!(status, 501, "{body}");

    // SAFETY: kill() with the pid of a child this test started and has not reaped.
    let r = unsafe { libc::kill(agent.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("kports agent: stopped"), "{rest}");
    assert!(TcpStream::connect(&addr).is_err(), "still listening");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn agent_needs_a_token_or_no_auth() {
    let out = Command::new(KPORTS)
        .args(["agent", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token-file") && err.contains("--no-auth"),
        "{err}"
    );

    let out = Command::new(KPORTS)
        .args([
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--no-auth",
            "--token-file",
            "/x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "both at once is a usage error");

    let out = Command::new(KPORTS)
        .args([
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            "/nonexistent/kports-token",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read the token file /nonexistent/kports-token"),
        "{err}"
    );

    let out = Command::new(KPORTS)
        .args(["agent", "--listen", "localhost", "--no-auth"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

/// Starts `kports agent` with `args` and returns it with the address it serves on.
fn start_agent(args: &[&str]) -> (Agent, String, BufReader<std::process::ChildStderr>) {
    let child = Command::new(KPORTS)
        .arg("agent")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = Agent(child);
    let mut stderr = BufReader::new(agent.0.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("kports agent: serving on http://")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    (agent, addr, stderr)
}

/// Polls `path` until `done` holds for its JSON (bounded: 120 s).
fn poll(addr: &str, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = get(addr, path, Some(token));
        if status == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            if done(&v) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "{path} never got there: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rows_of(doc: &Value) -> Vec<(String, String, String, u64)> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_string(),
                r["target"].as_str().unwrap().to_string(),
                r["proto"].as_str().unwrap().to_string(),
                r["port"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Two agents on loopback addresses (127.0.0.1 a control-plane node, 127.0.0.2 a worker),
/// peers from one inventory: each probes the other on what its role needs, answers UDP
/// probes of its port, and each gathers the same matrix; when one stops, the other's matrix
/// says its agent does not answer.
#[test]
fn agents_probe_their_inventory_peers_and_gather_one_matrix() {
    let dir = std::env::temp_dir().join(format!("kports-agent-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "peer-t0ken\n").unwrap();
    let inv = dir.join("inventory.yaml");
    std::fs::write(
        &inv,
        "nodes:\n  - name: cp\n    address: 127.0.0.1\n    roles: [control-plane]\n  - name: wk\n    address: 127.0.0.2\n    roles: [worker]\n",
    )
    .unwrap();
    let token = token_file.to_str().unwrap();
    let inv = inv.to_str().unwrap();
    let common = |name: &'static str| {
        vec![
            "--token-file",
            token,
            "--inventory",
            inv,
            "--node-name",
            name,
            "--interval",
            "2",
            "--probe-timeout",
            "500ms",
        ]
    };
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend(common("cp"));
    let (mut cp, cp_addr, _cp_err) = start_agent(&args);
    let port = cp_addr.rsplit_once(':').unwrap().1.to_string();
    let wk_listen = format!("127.0.0.2:{port}");
    let mut args = vec!["--listen", wk_listen.as_str()];
    args.extend(common("wk"));
    let (wk, wk_addr, _wk_err) = start_agent(&args);

    // The control plane probes the worker's kubelet; the worker probes the API server.
    let probes = poll(&cp_addr, "/api/v1/probes", "peer-t0ken", |v| {
        v["items"].as_array().is_some_and(|a| !a.is_empty())
    });
    let rows = rows_of(&probes);
    assert!(
        rows.contains(&("cp".into(), "wk".into(), "tcp".into(), 10250)),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.1 == "wk"), "{rows:?}");
    for r in probes["items"].as_array().unwrap() {
        assert_eq!(r["target_address"], "127.0.0.2");
        assert_ne!(r["status"], "unknown", "{r}");
    }
    let probes = poll(&wk_addr, "/api/v1/probes", "peer-t0ken", |v| {
        v["items"].as_array().is_some_and(|a| !a.is_empty())
    });
    let rows = rows_of(&probes);
    assert!(
        rows.contains(&("wk".into(), "cp".into(), "tcp".into(), 6443)),
        "{rows:?}"
    );
    assert!(
        !rows.iter().any(|r| r.3 == 10250),
        "a worker does not need another node's kubelet: {rows:?}"
    );

    // The UDP responder on the agent's port: kports probe sees `open`, not `open|filtered`.
    let out = Command::new(KPORTS)
        .args([
            "probe",
            "127.0.0.2",
            "--ports",
            &format!("udp/{port}"),
            "--timeout",
            "2s",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["items"][0]["status"], "open", "{doc}");

    // One matrix, from either agent (`kports cluster`'s document): both nodes reported, both
    // nodes' probes are cells.
    let reported = |v: &Value| {
        v["context"]["reports"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|r| !r.is_null()))
            && rows_of(v).iter().any(|r| r.0 == "cp")
            && rows_of(v).iter().any(|r| r.0 == "wk")
    };
    let from_cp = poll(&cp_addr, "/api/v1/matrix", "peer-t0ken", reported);
    let from_wk = poll(&wk_addr, "/api/v1/matrix", "peer-t0ken", reported);
    assert_eq!(from_cp["kind"], "cluster");
    assert_eq!(rows_of(&from_cp), rows_of(&from_wk));
    assert_eq!(from_cp["context"]["reports"][1]["name"], "wk");
    // `kports cluster --from-agents` gathers the same matrix from the command line.
    let cp_url = format!("http://{cp_addr}");
    let wk_url = format!("http://{wk_addr}/");
    let cli = |urls: &[&str]| {
        let out = Command::new(KPORTS)
            .args([
                "cluster",
                "-o",
                "json",
                "--token-file",
                token,
                "--from-agents",
            ])
            .args(urls)
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), doc)
    };
    let (code, doc) = cli(&[&cp_url, &wk_url]);
    assert!(matches!(code, Some(0 | 1)), "{code:?}");
    assert_eq!(doc["kind"], "cluster");
    assert_eq!(rows_of(&doc), rows_of(&from_cp));

    // The control plane's agent stops: the worker's matrix names it, and keeps its own part.
    // SAFETY: kill() with the pid of a child this test started and has not reaped.
    let r = unsafe { libc::kill(cp.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0);
    let _ = cp.0.wait();
    let gone = poll(&wk_addr, "/api/v1/matrix", "peer-t0ken", |v| {
        v["context"]["reports"][0].is_null()
    });
    assert_eq!(gone["context"]["nodes"][0]["name"], "cp");
    let note = gone["context"]["nodes"][0]["note"]
        .as_str()
        .unwrap_or_default();
    assert!(note.contains("cannot connect"), "{gone}");
    assert!(rows_of(&gone).iter().all(|r| r.0 == "wk"));
    assert!(rows_of(&gone).iter().any(|r| r.0 == "wk"));
    assert!(
        gone["warnings"][0]["message"]
            .as_str()
            .is_some_and(|w| w.contains("cp gave no report")),
        "{gone}"
    );
    // From the command line: cp's agent does not answer; it is the node wk probes as `cp`.
    let (code, doc) = cli(&[&cp_url, &wk_url]);
    assert_eq!(code, Some(1));
    let nodes = doc["context"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{doc}");
    assert_eq!(nodes[0]["name"], "cp");
    assert!(
        nodes[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("cannot connect")),
        "{doc}"
    );
    drop(wk);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cluster_from_agents_refuses_what_is_not_an_agent_address() {
    for bad in [
        "https://127.0.0.1:9640",
        "kports-agent:9640",
        "http://127.0.0.1",
    ] {
        let out = Command::new(KPORTS)
            .args(["cluster", "--from-agents", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--from-agents"), "{bad}: {err}");
    }
    let out = Command::new(KPORTS)
        .args(["cluster", "--from-agents", "127.0.0.1:9640", "--lab"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "--lab and --from-agents at once"
    );
    // No agent answers: an error (exit 2) naming the address, not a matrix of failures.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let out = Command::new(KPORTS)
        .args(["cluster", "--timeout", "5s", "--from-agents"])
        .arg(format!("http://{addr}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr.to_string()), "{err}");
}

/// Beyond 40 nodes the page draws the matrix as a heatmap: one agent on 127.0.0.1 whose
/// inventory names 44 more nodes on 127.0.4.0/24, where no agent runs and nothing listens
/// (loopback only). In Debian's chromium, headless: a heatmap, a cell for every node, and the
/// silent nodes' kubelets in red.
#[test]
fn beyond_forty_nodes_the_page_draws_a_heatmap() {
    let dir = std::env::temp_dir().join(format!("kports-agent-heat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "heat-t0ken\n").unwrap();
    let mut inventory =
        String::from("nodes:\n  - name: cp\n    address: 127.0.0.1\n    roles: [control-plane]\n");
    for i in 1..=44 {
        inventory.push_str(&format!(
            "  - name: w{i}\n    address: 127.0.4.{i}\n    roles: [worker]\n"
        ));
    }
    let inv = dir.join("inventory.yaml");
    std::fs::write(&inv, inventory).unwrap();
    let (_cp, addr, _err) = start_agent(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token_file.to_str().unwrap(),
        "--inventory",
        inv.to_str().unwrap(),
        "--node-name",
        "cp",
        "--interval",
        "2",
        "--probe-timeout",
        "300ms",
    ]);
    let target = std::path::Path::new(KPORTS).ancestors().nth(2).unwrap();
    let shots = target.join("test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("agent-page-heatmap.png");
    let out = Command::new("/usr/bin/python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/browser.py"),
            &format!("http://{addr}/"),
            "heat-t0ken",
            shot.to_str().unwrap(),
            "cell:w1:tcp/10250:fail",
            "cell:w44:tcp/10250:fail",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "the browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["heat"], true, "{seen}");
    // A row for every node; the kubelet of every silent worker is red.
    let kubelets: std::collections::BTreeMap<&str, &str> = seen["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c[1] == "tcp/10250")
        .map(|c| (c[0].as_str().unwrap(), c[2].as_str().unwrap()))
        .collect();
    assert_eq!(kubelets.len(), 45, "{kubelets:?}");
    for i in 1..=44 {
        assert_eq!(
            kubelets.get(format!("w{i}").as_str()),
            Some(&"fail"),
            "{kubelets:?}"
        );
    }
    assert!(shot.exists());
}

/// Outside a pod, `--kubeconfig` takes the peers from the Kubernetes API that the kubeconfig
/// names: here a stand-in server on 127.0.0.1 speaking the API's list and watch wire format
/// (support/kube_api.py; no real API server runs on the test machines). The agent lists Nodes
/// and its pods once, then watches from the lists' resourceVersion; the node the watch adds is
/// probed too.
#[test]
fn agent_discovers_its_peers_through_a_kubeconfig() {
    let mut api = Agent(
        Command::new("/usr/bin/python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/support/kube_api.py"
            ))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(api.0.stdout.take().unwrap()).lines();
    let port = lines.next().unwrap().unwrap();
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            seen.lock().unwrap().push(l);
        }
    });
    let dir = std::env::temp_dir().join(format!("kports-agent-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "kube-t0ken\n").unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: u\n  user:\n    token: api-t0ken\ncontexts:\n- name: c\n  context:\n    cluster: t\n    user: u\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let (_agent, addr, _err) = start_agent(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token_file.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--node-name",
        "cp",
        "--interval",
        "2",
        "--probe-timeout",
        "300ms",
    ]);
    // The control plane probes both workers' kubelets: wk from the list, wk2 from the watch.
    let probes = poll(&addr, "/api/v1/probes", "kube-t0ken", |v| {
        let rows = v["items"].as_array().map_or(&[][..], Vec::as_slice);
        ["127.0.0.2", "127.0.0.3"].iter().all(|a| {
            rows.iter()
                .any(|r| r["target_address"] == *a && r["port"] == 10250)
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
    let targets: std::collections::BTreeSet<(String, String)> = probes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["target"].as_str().unwrap().to_string(),
                r["target_address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [("wk", "127.0.0.2"), ("wk2", "127.0.0.3")]
            .iter()
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect(),
        "{probes:#}"
    );
    // One list of each, then watches from the lists' resourceVersion.
    let requests = requests.lock().unwrap().clone();
    for (what, rv) in [("nodes", "10"), ("pods", "20")] {
        let lists = requests
            .iter()
            .filter(|r| r.starts_with(&format!("{what} list")))
            .count();
        assert_eq!(lists, 1, "{requests:?}");
        assert!(
            requests.contains(&format!("{what} watch rv={rv}")),
            "{requests:?}"
        );
    }
    let _ = api.0.kill();
}
