//! A connection to `kports agent`: the input is the raw bytes a client sends (one request or
//! several, pipelined; a body or none), served as the agent serves each connection (hyper, then
//! the agent's router: every route, the token check, the query filters, the request bounds)
//! against a state holding a report, probes and a secret on a command line.
//!
//! Besides crashes and hangs, it fails when an answer is a server error, when a JSON document
//! other than an error is served to bytes that never carried the token, or when the secret on
//! the command line is served.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use kports_agent::serve::{self, ConnLimits};
use kports_agent::{AgentState, Auth, Limits, ProbeRun, Report, Round, app};
use kports_probe::row::Row;
use kports_probe::{Status, Transport};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

const TOKEN: &[u8] = b"s3cret-token";
const SECRET: &[u8] = b"abc.def";

struct Agent {
    runtime: Runtime,
    state: AgentState,
    auth: Auth,
}

fn agent() -> &'static Agent {
    static AGENT: OnceLock<Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let state = AgentState::new("cp1");
        let row = |port, status| Row {
            source: "cp1".into(),
            target: "w1".into(),
            target_address: "192.0.2.12".parse().expect("an address"),
            proto: Transport::Tcp,
            port,
            status,
            errno: None,
            latency_ms: Duration::from_micros(400),
            component: Some("kubelet".into()),
        };
        let cmdline = format!(
            "kubeadm join --token {}",
            std::str::from_utf8(SECRET).expect("text")
        );
        state.update(Round {
            report: Ok(Report {
                document: serde_json::json!({
                    "schema": kports_core::SCHEMA_VERSION, "kind": "report", "hostname": "cp1",
                    "items": [{"name": "cp1", "holders": [{"cmdline": cmdline}]}],
                    "warnings": [],
                }),
                findings: Vec::new(),
                took: Duration::from_millis(120),
            }),
            probes: Some(Ok(ProbeRun {
                rows: vec![row(10250, Status::Open), row(2379, Status::Filtered)],
                took: Duration::from_millis(900),
            })),
        });
        let auth = Auth::from_token(TOKEN).expect("a token");
        Agent {
            runtime,
            state,
            auth,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let a = agent();
    let router = app(a.state.clone(), a.auth.clone(), Limits::default());
    let out = a.runtime.block_on(async {
        let (client, server) = tokio::io::duplex(64 << 10);
        let (mut from, mut to) = tokio::io::split(client);
        // Written, read and served at once: the agent answers pipelined requests while the
        // client still writes.
        let write = async {
            // The agent may close the connection before reading everything.
            let _ = to.write_all(data).await;
            let _ = to.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let _ = from.read_to_end(&mut out).await;
            out
        };
        let serve = serve::connection(server, router, ConnLimits::default());
        let (_, out, _) = tokio::join!(write, read, serve);
        out
    });
    if show() {
        // Replaying one input (`cargo fuzz run agent_api FILE`): what the agent answered.
        eprintln!("{}", String::from_utf8_lossy(&out));
    }
    let token = contains(data, TOKEN);
    for (status, body) in kports_fuzz::http::responses(&out) {
        assert!(status < 500, "answered {status}");
        if !token {
            assert!(
                !body.starts_with(b"{") || body.starts_with(b"{\"error\""),
                "a document was served without the token"
            );
        }
    }
    if !contains(data, SECRET) {
        assert!(!contains(&out, SECRET), "the secret was served");
    }
});

/// `KPORTS_FUZZ_SHOW=1` prints the answers.
fn show() -> bool {
    static SHOW: OnceLock<bool> = OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("KPORTS_FUZZ_SHOW").is_some_and(|v| v == "1"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
