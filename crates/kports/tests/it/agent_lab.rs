//! `kports agent` in every node of `kports lab` (each inside its node's namespace, peers from
//! an inventory of the lab's nodes), and its web page in a real browser: Debian's chromium,
//! headless, driven by selenium (support/browser.py) inside cp1's namespace.
//!
//! Every agent gathers the same matrix; the page draws it with the right cells; a dropped
//! kubelet port turns its cell red, and a node taken down shows its agent as not answering
//! while the page keeps working. Screenshots are kept in target/test-artifacts/. Root; one lab
//! per machine (the lab turn), brought down when the test ends, passed or failed; the agents
//! are stopped by pid. Traffic stays inside the lab's namespaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::RwLockWriteGuard;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{KPORTS, kports, kports_ok, lab_turn};

const BROWSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/browser.py");
const RUN_DIR: &str = "/run/kports-lab";
const TOKEN: &str = "lab-agent-t0ken";
const PORT: u16 = 9640;
/// The lab's nodes (its default plan: one control plane, two workers).
const NODES: [(&str, &str, &str, &str); 3] = [
    ("cp1", "192.0.2.11", "2001:db8::11", "control-plane, etcd"),
    ("w1", "192.0.2.21", "2001:db8::21", "worker"),
    ("w2", "192.0.2.22", "2001:db8::22", "worker"),
];

/// The lab and its agents: agents stopped (by pid), then the lab brought down, on drop.
struct Lab {
    agents: Vec<Child>,
    dir: PathBuf,
    _turn: RwLockWriteGuard<'static, ()>,
}

impl Lab {
    fn up() -> Lab {
        let turn = lab_turn();
        assert!(
            !Path::new(RUN_DIR).exists(),
            "a kports lab is already up on this machine; run `kports lab down` first"
        );
        let dir = std::env::temp_dir().join(format!("kports-agent-lab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            agents: Vec::new(),
            dir,
            _turn: turn,
        };
        kports_ok(&["lab", "up"]);
        lab
    }

    /// Starts an agent in every node (`kports lab exec` enters the namespace and execs it, so
    /// the child is the agent itself).
    fn start_agents(&mut self) {
        let token = self.dir.join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let inv = self.dir.join("inventory.yaml");
        let mut text = String::from("nodes:\n");
        for (name, addr, addr6, role) in NODES {
            text.push_str(&format!(
                "  - name: {name}\n    address: {addr}\n    address6: \"{addr6}\"\n    roles: [{role}]\n"
            ));
        }
        std::fs::write(&inv, text).unwrap();
        for (name, addr, _, _) in NODES {
            let listen = format!("{addr}:{PORT}");
            let child = Command::new(KPORTS)
                .args([
                    "lab", "exec", name, "--", KPORTS, "agent", "--listen", &listen,
                ])
                .arg("--token-file")
                .arg(&token)
                .arg("--inventory")
                .arg(&inv)
                .args([
                    "--node-name",
                    name,
                    "--interval",
                    "2",
                    "--probe-timeout",
                    "500ms",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            self.agents.push(child);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let out = kports(&["lab", "down"]);
        if !out.status.success() && !thread::panicking() {
            panic!(
                "kports lab down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `GET /api/v1/matrix` of the agent on `node`, asked from inside that node.
fn matrix_from(node: &str, addr: &str) -> Option<Value> {
    let script = format!(
        "import urllib.request,sys\n\
         r=urllib.request.Request('http://{addr}:{PORT}/api/v1/matrix',headers={{'Authorization':'Bearer {TOKEN}'}})\n\
         sys.stdout.write(urllib.request.urlopen(r,timeout=20).read().decode())"
    );
    let out = kports(&["lab", "exec", node, "--", "/usr/bin/python3", "-c", &script]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// A cell of a matrix document (`kports cluster`'s): source, target, address, proto/port,
/// status and cause.
type CellKey = (String, String, String, String, String, Option<String>);

fn cells(doc: &Value) -> Vec<CellKey> {
    let mut v: Vec<CellKey> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_string(),
                r["target"].as_str().unwrap().to_string(),
                r["target_address"].as_str().unwrap().to_string(),
                format!("{}/{}", r["proto"].as_str().unwrap(), r["port"]),
                r["status"].as_str().unwrap().to_string(),
                r["cause"].as_str().map(str::to_string),
            )
        })
        .collect();
    v.sort();
    v
}

/// `kports cluster --lab -o json`: the matrix the agents must equal.
fn cluster_lab() -> Value {
    let out = kports(&["cluster", "--lab", "-o", "json", "--probe-timeout", "500ms"]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "kports cluster --lab failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether the agents' matrix equals `kports cluster --lab`'s, cell for cell (status and
/// cause), leaving out the probes `skip` made.
fn same_as_cluster_lab(agents: &Value, lab: &Value, skip: &[&str], causes: bool) -> bool {
    let pick = |d: &Value| -> Vec<CellKey> {
        cells(d)
            .into_iter()
            .filter(|c| !skip.contains(&c.0.as_str()))
            .map(|mut c| {
                if !causes {
                    c.5 = None;
                }
                c
            })
            .collect()
    };
    pick(agents) == pick(lab)
}

/// Polls every agent's matrix until `done` holds for each (bounded: 120 s); returns cp1's.
fn every_agent_until(skip: &[&str], done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let docs: Vec<Option<Value>> = NODES
            .iter()
            .filter(|(n, _, _, _)| !skip.contains(n))
            .map(|(n, a, _, _)| matrix_from(n, a))
            .collect();
        if docs.iter().all(|d| d.as_ref().is_some_and(&done)) {
            let docs: Vec<Value> = docs.into_iter().flatten().collect();
            // Every agent gathers the same matrix (each is a few seconds old at most, so one
            // may lag a round behind the others: asked again until they agree).
            if docs[1..].iter().all(|d| cells(d) == cells(&docs[0])) {
                return docs.into_iter().next().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the agents' matrices differ: {:?}",
                docs.iter().map(cells).collect::<Vec<_>>()
            );
            thread::sleep(Duration::from_millis(500));
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "the agents' matrices never got there: {:?}",
            docs.iter()
                .map(|d| d.as_ref().map(|d| (
                    d["hostname"].clone(),
                    d["context"]["reports"]
                        .as_array()
                        .map(|r| r.iter().map(Value::is_null).collect::<Vec<_>>()),
                    cells(d)
                )))
                .collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// The status of `source`'s probe of `target`'s IPv4 address on `port`.
fn status_of(doc: &Value, source: &str, target: &str, port: &str) -> Option<String> {
    cells(doc)
        .into_iter()
        .find(|c| c.0 == source && c.1 == target && !c.2.contains(':') && c.3 == port)
        .map(|c| c.4)
}

/// The agents' matrix equals `kports cluster --lab`'s (asked again while a round catches up).
fn assert_same_as_cluster_lab(skip: &[&str], causes: bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let agents = matrix_from("cp1", "192.0.2.11").unwrap_or_default();
        let lab = cluster_lab();
        if agents.is_object() && same_as_cluster_lab(&agents, &lab, skip, causes) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agents' matrix differs from kports cluster --lab:\n{:#?}\n{:#?}",
            cells(&agents),
            cells(&lab)
        );
        thread::sleep(Duration::from_secs(1));
    }
}

fn artifacts() -> PathBuf {
    // KPORTS is target/debug/kports.
    let target = Path::new(KPORTS).ancestors().nth(2).unwrap();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The page in chromium inside cp1, until `conditions` hold; what it shows.
fn page(shot: &str, conditions: &[&str]) -> Value {
    let shot = artifacts().join(shot);
    let url = format!("http://192.0.2.11:{PORT}/");
    let mut args = vec![
        "lab",
        "exec",
        "cp1",
        "--",
        "/usr/bin/python3",
        BROWSER,
        &url,
        TOKEN,
        shot.to_str().unwrap(),
    ];
    args.extend(conditions);
    let out = kports(&args);
    assert!(
        out.status.success(),
        "the browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        seen["ok"], true,
        "the page never showed {conditions:?}: {seen}"
    );
    assert!(shot.exists());
    seen
}

fn page_cell(seen: &Value, node: &str, port: &str) -> String {
    seen["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c[0] == node && c[1] == port)
        .map(|c| c[2].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no cell {node} {port}: {seen}"))
}

#[test]
fn agents_in_the_lab_serve_one_matrix_and_the_page_shows_faults() {
    let mut lab = Lab::up();
    lab.start_agents();

    // Clean: every node's agent answers, every TCP cell is open, the overlay's UDP port is
    // open|filtered (the kernel's VXLAN socket holds it, so no responder answers there).
    let clean = every_agent_until(&[], |d| {
        d["context"]["reports"]
            .as_array()
            .is_some_and(|r| r.len() == 3 && r.iter().all(|r| !r.is_null()))
            && ["cp1", "w1", "w2"].iter().all(|s| {
                d["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["source"] == *s)
            })
    });
    assert_eq!(
        status_of(&clean, "cp1", "w1", "tcp/10250").as_deref(),
        Some("open")
    );
    assert_eq!(
        status_of(&clean, "w1", "cp1", "tcp/6443").as_deref(),
        Some("open")
    );
    assert_eq!(
        status_of(&clean, "w2", "w1", "udp/8472").as_deref(),
        Some("open|filtered")
    );
    assert!(
        cells(&clean)
            .iter()
            .all(|c| c.4 == "open" || c.4 == "open|filtered"),
        "{:?}",
        cells(&clean)
    );
    assert_eq!(clean["context"]["failing"], 0);
    // Only lab addresses are probed.
    for r in clean["items"].as_array().unwrap() {
        let a = r["target_address"].as_str().unwrap();
        assert!(
            NODES.iter().any(|(_, v4, v6, _)| *v4 == a || *v6 == a),
            "{a}"
        );
    }
    assert_same_as_cluster_lab(&[], true);

    let seen = page("agent-page.png", &["cell:w1:tcp/10250:open"]);
    assert_eq!(seen["detail"], Value::Null, "no failing cell to open");
    assert_eq!(seen["failing_rows"], serde_json::json!([]));
    assert_eq!(seen["worker_rows"], serde_json::json!(["w1", "w2"]));
    assert_eq!(page_cell(&seen, "cp1", "tcp/6443"), "open");
    assert_eq!(page_cell(&seen, "w2", "tcp/10250"), "open");
    assert_eq!(page_cell(&seen, "w1", "udp/8472"), "maybe");
    // Nobody probes a worker's API server port: not probed, not failing.
    assert_eq!(page_cell(&seen, "w1", "tcp/6443"), "none");
    assert_eq!(seen["agents"]["w2"], "ok");

    // A drop of w1's kubelet port: cp1's probe times out, every agent says so, the cell is red.
    kports_ok(&["lab", "fault", "w1", "drop", "tcp/10250"]);
    // The cause, once w1's own report (its firewall's verdict) has caught up with the fault: a
    // round earlier w1's report still accepts, and the cause blames the path between the nodes.
    let cause_of = |d: &Value| {
        cells(d)
            .into_iter()
            .find(|c| c.0 == "cp1" && c.1 == "w1" && !c.2.contains(':') && c.3 == "tcp/10250")
            .and_then(|c| c.5)
            .unwrap_or_default()
    };
    let dropped = every_agent_until(&[], |d| {
        status_of(d, "cp1", "w1", "tcp/10250").as_deref() == Some("filtered")
            && cause_of(d).contains("w1's firewall drops tcp/10250 from 192.0.2.11")
    });
    assert_eq!(
        status_of(&dropped, "cp1", "w2", "tcp/10250").as_deref(),
        Some("open")
    );
    let cause = cause_of(&dropped);
    assert_same_as_cluster_lab(&[], true);
    let seen = page("agent-page-fault.png", &["cell:w1:tcp/10250:fail"]);
    assert_eq!(page_cell(&seen, "w2", "tcp/10250"), "open");
    // The red cell opens its evidence and its cause, the same as the matrix's.
    assert_eq!(seen["failing_rows"], serde_json::json!(["w1"]));
    let detail = seen["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("w1 tcp/10250") && detail.contains(&format!("cause: {cause}")),
        "{detail}"
    );
    assert!(
        detail.contains("filtered") && detail.contains("\"verdict\": \"drop\""),
        "{detail}"
    );
    kports_ok(&["lab", "fault", "w1", "clear"]);

    // w2 taken down: its agent does not answer; the others' probes of it fail; the page keeps
    // working from cp1 and names it. (`kports cluster --lab` still gets w2's own report
    // through its namespace, so w2's own probes are left out of the comparison, and so are the
    // causes: one join knows w2's side, the other does not.)
    kports_ok(&["lab", "fault", "w2", "down"]);
    let down = every_agent_until(&["w2"], |d| {
        d["context"]["reports"][2].is_null()
            && status_of(d, "cp1", "w2", "tcp/10250").is_some_and(|s| s != "open")
            && status_of(d, "cp1", "w1", "tcp/10250").as_deref() == Some("open")
    });
    assert_eq!(down["context"]["nodes"][2]["name"], "w2");
    assert_ne!(down["context"]["nodes"][2]["state"], "ok");
    assert!(
        cells(&down).iter().all(|c| c.0 != "w2"),
        "w2's own probes are missing, not failing"
    );
    let seen = page(
        "agent-page-node-down.png",
        &["agent:w2:no report", "cell:w2:tcp/10250:fail"],
    );
    assert_eq!(page_cell(&seen, "w1", "tcp/10250"), "open");
    assert_same_as_cluster_lab(&["w2"], false);
}
