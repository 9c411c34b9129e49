//! The one way kports runs an external command (`nft`, `iptables-save`, `ip`, and the lab's
//! `ip -batch` and `nft -f -`): with a timeout, optionally fed on standard input, and with errors
//! that say whether the binary is missing, permission was denied, or it hung.
//!
//! The child's output is read on helper threads so a chatty command cannot block on a full pipe;
//! a command still running at the deadline is killed (by its own pid) and reported as a timeout.
//! Standard output is read up to [`limits::COMMAND_OUTPUT`]: past it the pipe is closed, the
//! command stopped and refused; standard error is cut at [`limits::STDERR_BYTES`].

use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::limits::{self, TooLarge};

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
    #[error("{0}")]
    TooLarge(TooLarge),
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
    run_capped(cmd, args, stdin, timeout, limits::COMMAND_OUTPUT.bytes())
}

/// [`run_with_input`], refusing more than `limit` bytes of standard output (a smaller cap than
/// [`limits::COMMAND_OUTPUT`], for output that is known to be small).
pub fn run_capped(
    cmd: &str,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
    limit: u64,
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
    // Past `max` a reader stops and closes its pipe, so the command stops on a broken pipe
    // rather than filling memory; `over` tells the wait loop to stop it in any case.
    let over = Arc::new(AtomicBool::new(false));
    let reader = |pipe: Option<Box<dyn Read + Send>>, max: u64, over: Option<Arc<AtomicBool>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(max.saturating_add(1)).read_to_end(&mut buf);
            }
            if buf.len() as u64 > max {
                buf.truncate(usize::try_from(max).unwrap_or(usize::MAX));
                if let Some(o) = over {
                    o.store(true, Ordering::Relaxed);
                }
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        limit,
        Some(over.clone()),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        limits::STDERR_BYTES as u64,
        None,
    );
    let too_large = || {
        RunError::TooLarge(TooLarge {
            what: format!("{} {cmd}", limits::COMMAND_OUTPUT.what),
            limit,
            env: limits::COMMAND_OUTPUT.env,
        })
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        if over.load(Ordering::Relaxed) {
            // Kill only the child we started.
            let _ = child.kill();
            let _ = child.wait();
            return Err(too_large());
        }
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
    if over.load(Ordering::Relaxed) {
        return Err(too_large());
    }
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
    fn endless_output_is_refused_at_the_limit() {
        let e = run_capped("yes", &[], None, Duration::from_secs(60), 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the output of yes is larger than 4096 bytes (4 KiB), kports's limit; \
             set KPORTS_MAX_COMMAND_OUTPUT_BYTES=BYTES to raise it"
        );
        // A command that ignores the broken pipe is stopped, not waited for until the deadline.
        let e = run_capped(
            "sh",
            &["-c", "trap '' PIPE; while :; do echo x; done"],
            None,
            Duration::from_secs(60),
            4096,
        )
        .unwrap_err();
        assert!(matches!(e, RunError::TooLarge(_)), "{e}");
        assert_eq!(
            run_capped("sh", &["-c", "printf abcd"], None, DEFAULT_TIMEOUT, 4).unwrap(),
            "abcd"
        );
        // Standard error is cut, not refused.
        let e = run(
            "sh",
            &["-c", "head -c 200000 /dev/zero | tr '\\0' e >&2; exit 1"],
            DEFAULT_TIMEOUT,
        )
        .unwrap_err();
        assert!(
            matches!(&e, RunError::Failed { stderr, .. } if stderr.len() == limits::STDERR_BYTES),
            "{e}"
        );
    }

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
