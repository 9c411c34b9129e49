//! `kports agent` run as a user runs it: it serves the node's check on loopback, needs its
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
fn agent_serves_the_check_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("kports-agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "t0ken-for-the-test\n").unwrap();
    let child = Command::new(KPORTS)
        .args(["agent", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token_file)
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
    assert_eq!(doc["kind"], "check");
    assert_eq!(doc["schema"], kports_core::SCHEMA_VERSION);
    assert!(
        doc["context"]["checked"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
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
