//! `kports agent`: the node's check kept fresh and served over HTTP (kports-agent does the
//! serving; this module gives it the round of work and the process's lifetime).
//!
//! Each round runs `kports check -o json --fail-on never` as a child of this same binary, through
//! the one command runner, and serves its document unchanged at /api/v1/report. A child keeps
//! the agent's memory flat (each census is freed with its process) and a stuck census is killed
//! at the round's deadline. The agent does not probe its peers yet: /api/v1/probes says so.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use kports_agent::refresh::{self, Schedule};
use kports_agent::serve::{ConnLimits, serve, terminate_signal};
use kports_agent::{AgentState, Auth, Finding, Limits, Report, Round, app};
use kports_core::catalog::Severity;
use serde::Deserialize;
use serde_json::Value;

use crate::cli::AgentArgs;
use crate::cmd::Outcome;

/// How long requests in flight may run after SIGTERM (the kubelet waits 30 s by default).
const GRACE: Duration = Duration::from_secs(10);
/// The longest a census and check may take before the round is abandoned.
const CHECK_TIMEOUT: Duration = Duration::from_secs(100);

pub fn run(args: &AgentArgs) -> Result<Outcome> {
    let auth = match &args.token_file {
        Some(f) => Auth::from_token_file(f)?,
        None => Auth::Disabled,
    };
    let exe = std::env::current_exe().context("cannot find kports's own executable")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the agent's runtime")?;
    let schedule = Schedule {
        interval: Duration::from_secs(args.interval),
        round_timeout: CHECK_TIMEOUT + Duration::from_secs(5),
        ..Schedule::default()
    };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        eprintln!("kports agent: serving on http://{local}");
        let state = AgentState::new(&kports_linux::hostname());
        let router = app(state.clone(), auth, Limits::default());
        let collector = move || {
            let exe = exe.clone();
            async move {
                let started = Instant::now();
                let report = tokio::task::spawn_blocking(move || check(&exe))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                if let Err(e) = &report {
                    eprintln!("kports agent: {e}");
                }
                Round {
                    report: report.map(|(document, findings)| Report {
                        document,
                        findings,
                        took: started.elapsed(),
                    }),
                    probes: None,
                }
            }
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let refresher = tokio::spawn(refresh::run(
            collector,
            state,
            schedule,
            seed(),
            async move {
                let mut stopped = stopped;
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        let served = serve(
            listener,
            router,
            ConnLimits::default(),
            async {
                if let Err(e) = terminate_signal().await {
                    eprintln!("kports agent: cannot wait for SIGTERM ({e}); serving until killed");
                    std::future::pending::<()>().await;
                }
            },
            GRACE,
        )
        .await;
        let _ = stop.send(true);
        let _ = refresher.await;
        served?;
        eprintln!("kports agent: stopped");
        Ok(Outcome::default())
    })
}

/// Agents started together draw different delays.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// One `kports check -o json`: the document and its findings.
fn check(exe: &std::path::Path) -> Result<(Value, Vec<Finding>), String> {
    let exe = exe.to_str().ok_or("kports's path is not UTF-8")?;
    let out = kports_linux::runner::run(
        exe,
        &["check", "-o", "json", "--fail-on", "never"],
        CHECK_TIMEOUT,
    )
    .map_err(|e| format!("checking the node: {e}"))?;
    let document: Value =
        serde_json::from_str(&out).map_err(|e| format!("checking the node: bad JSON: {e}"))?;
    let findings = findings(&document);
    Ok((document, findings))
}

fn findings(document: &Value) -> Vec<Finding> {
    let items = document["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|f| {
            let id = f["id"].as_str()?.to_string();
            let severity = Severity::deserialize(&f["severity"]).ok()?;
            Some(Finding { id, severity })
        })
        .collect()
}
