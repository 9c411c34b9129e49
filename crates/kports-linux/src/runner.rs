//! The one way kports runs an external command (`nft`, `iptables-save`, `ip`, and the lab's
//! `ip -batch` and `nft -f -`): with a timeout, optionally fed on standard input, and with errors
//! that say whether the binary is missing, permission was denied, or it hung.
//!
//! The child's output is read on helper threads so a chatty command cannot block on a full pipe;
//! a command still running at the deadline is killed (by its own pid) and reported as a timeout.

use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a ruleset dump may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a command gave no usable output.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0} is not installed (not found in PATH)")]
    NotFound(String),
    #[error("{cmd}: permission denied ({detail}); run as root or grant CAP_NET_ADMIN")]
    PermissionDenied { cmd: String, detail: String },
    #[error("{cmd} did not finish within {secs} s and was stopped")]
    Timeout { cmd: String, secs: u64 },
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: io::Error,
    },
}

/// Runs `cmd args...`, returning its standard output.
pub fn run(cmd: &str, args: &[&str], timeout: Duration) -> Result<String, RunError> {
    run_with_input(cmd, args, None, timeout)
}

/// Runs `cmd args...` with `stdin` on its standard input (none: `/dev/null`), returning its
/// standard output. The input is written on a helper thread, so a command that answers before
/// it has read everything cannot deadlock against kports.
pub fn run_with_input(
    cmd: &str,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<String, RunError> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RunError::NotFound(cmd.to_string()),
            io::ErrorKind::PermissionDenied => RunError::PermissionDenied {
                cmd: cmd.to_string(),
                detail: e.to_string(),
            },
            _ => RunError::Spawn {
                cmd: cmd.to_string(),
                source: e,
            },
        })?;
    let feeder = match (stdin, child.stdin.take()) {
        (Some(text), Some(mut pipe)) => {
            let text = text.to_string();
            // A write error means the child stopped reading; its exit status tells why.
            Some(thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            }))
        }
        _ => None,
    };
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                // Kill only the child we started; the readers end when its pipes close.
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout {
                    cmd: cmd.to_string(),
                    secs: timeout.as_secs(),
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                return Err(RunError::Spawn {
                    cmd: cmd.to_string(),
                    source: e,
                });
            }
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let stdout = out.join().unwrap_or_default();
    let mut stderr = String::from_utf8_lossy(&err.join().unwrap_or_default())
        .trim()
        .to_string();
    if stderr.is_empty() && !status.success() {
        // Some tools (`ip -batch`) report errors on standard output.
        stderr = String::from_utf8_lossy(&stdout).trim().to_string();
    }
    if !status.success() {
        let lower = stderr.to_ascii_lowercase();
        if lower.contains("permission denied")
            || lower.contains("operation not permitted")
            || lower.contains("must be root")
        {
            return Err(RunError::PermissionDenied {
                cmd: cmd.to_string(),
                detail: stderr,
            });
        }
        return Err(RunError::Failed {
            cmd: cmd.to_string(),
            status: status.to_string(),
            stderr,
        });
    }
    String::from_utf8(stdout).map_err(|_| RunError::Failed {
        cmd: cmd.to_string(),
        status: status.to_string(),
        stderr: "output is not UTF-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_missing_binary_failure_and_timeout() {
        assert_eq!(
            run("sh", &["-c", "echo hi"], DEFAULT_TIMEOUT).unwrap(),
            "hi\n"
        );
        assert_eq!(
            run_with_input("cat", &[], Some("fed"), DEFAULT_TIMEOUT).unwrap(),
            "fed"
        );
        assert!(matches!(
            run("kports-no-such-binary", &[], DEFAULT_TIMEOUT),
            Err(RunError::NotFound(_))
        ));
        let e = run("sh", &["-c", "echo nope >&2; exit 3"], DEFAULT_TIMEOUT).unwrap_err();
        assert!(
            matches!(&e, RunError::Failed { stderr, .. } if stderr == "nope"),
            "{e}"
        );
        let e = run(
            "sh",
            &["-c", "echo 'Operation not permitted' >&2; exit 1"],
            DEFAULT_TIMEOUT,
        )
        .unwrap_err();
        assert!(matches!(e, RunError::PermissionDenied { .. }));
        let e = run("sleep", &["5"], Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }));
    }
}
