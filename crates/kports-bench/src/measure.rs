//! Runs one command and measures it: wall time from fork to exit, and peak resident memory
//! from `wait4`'s `ru_maxrss`, with a timeout after which the command's process group is killed.
//!
//! The child is forked (not spawned with `posix_spawn`/vfork): after a vfork the kernel counts
//! the parent's resident set in the child's `ru_maxrss`, while a forked child starts from a
//! copy-on-write image of only the parent's few private pages. `ru_maxrss` is a maximum, not a
//! sum, so what the harness holds only shows for commands smaller than itself; `floor` measures
//! that floor with `/bin/true`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;

/// How a measured run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Exit(i32),
    Signal(i32),
    /// Killed by the harness after the timeout.
    TimedOut,
}

impl End {
    pub fn ok(self) -> bool {
        self == End::Exit(0)
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Exit(c) => write!(f, "exit status {c}"),
            End::Signal(s) => write!(f, "killed by signal {s}"),
            End::TimedOut => write!(f, "timed out"),
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Run {
    pub wall: Duration,
    /// User plus system CPU time of the command (all its threads).
    pub cpu: Duration,
    pub max_rss_kib: u64,
    pub end: End,
    /// Standard output, if it was captured.
    pub stdout: Vec<u8>,
    /// The first 4 KiB of standard error.
    pub stderr: Vec<u8>,
}

impl Run {
    /// Standard error as text, for error messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// A command line with the program already resolved to a path.
#[derive(Debug, Clone)]
pub struct Argv {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl Argv {
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Argv {
        Argv {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
        }
    }
}

/// Where the command's standard output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    Null,
    Capture,
}

/// Runs `argv` once with standard input from /dev/null, waits at most `timeout`.
pub fn run(argv: &Argv, timeout: Duration, stdout: Stdout) -> io::Result<Run> {
    let mut out_file = match stdout {
        Stdout::Capture => Some(sys::memfd("kports-bench-stdout")?),
        Stdout::Null => None,
    };
    let mut err_file = sys::memfd("kports-bench-stderr")?;
    let mut cmd = Command::new(&argv.program);
    cmd.args(&argv.args)
        .stdin(Stdio::null())
        .stdout(match &out_file {
            Some(f) => Stdio::from(f.try_clone()?),
            None => Stdio::null(),
        })
        .stderr(Stdio::from(err_file.try_clone()?))
        .process_group(0);
    // SAFETY: the closure only calls prctl, which is async-signal-safe. Having a pre_exec hook
    // also makes the standard library fork instead of vfork (see the module comment).
    unsafe {
        cmd.pre_exec(|| {
            // The command must not outlive the harness.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot run {}: {e}", argv.program.display()),
        )
    })?;
    let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    // The child is reaped with wait4 below, never through `child`.
    drop(child);
    let pidfd = sys::pidfd_open(pid);
    let exited = match &pidfd {
        Ok(fd) => sys::poll_readable(&[sys::raw(fd)], Some(timeout)).map(|r| r[0]),
        Err(e) => Err(io::Error::new(e.kind(), format!("pidfd_open: {e}"))),
    };
    let wall = start.elapsed();
    let timed_out = !matches!(exited, Ok(true));
    if timed_out {
        // Not reaped yet, so the pid (and its group) cannot have been reused.
        let _ = sys::kill_group(pid, libc::SIGKILL);
    }
    let reaped = sys::wait4(pid)?;
    // Whatever the command left behind in its group goes too.
    let _ = sys::kill_group(pid, libc::SIGKILL);
    exited?;
    let end = if timed_out {
        End::TimedOut
    } else if libc::WIFEXITED(reaped.status) {
        End::Exit(libc::WEXITSTATUS(reaped.status))
    } else {
        End::Signal(libc::WTERMSIG(reaped.status))
    };
    let stdout = match &mut out_file {
        Some(f) => sys::read_back(f, u64::MAX)?,
        None => Vec::new(),
    };
    let stderr = sys::read_back(&mut err_file, 4096)?;
    Ok(Run {
        wall,
        cpu: reaped.cpu,
        max_rss_kib: reaped.max_rss_kib,
        end,
        stdout,
        stderr,
    })
}

/// Runs `argv` and returns its standard output, or an error that says how it failed.
pub fn capture(argv: &Argv, timeout: Duration) -> anyhow::Result<Vec<u8>> {
    let r = run(argv, timeout, Stdout::Capture)?;
    if !r.end.ok() {
        anyhow::bail!("`{}` failed ({}): {}", shown(argv), r.end, r.stderr_text());
    }
    Ok(r.stdout)
}

/// The command line as a user would type it.
pub fn shown(argv: &Argv) -> String {
    let name = argv.program.file_name().unwrap_or(argv.program.as_os_str());
    let mut s = name.to_string_lossy().into_owned();
    for a in &argv.args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Finds `name` on `PATH` (or takes it as a path if it has a slash).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"));
    // The system directories are searched too: ss, netstat and lsof live in sbin on some systems.
    let extra = OsStr::new("/usr/sbin:/sbin");
    std::env::split_paths(&path)
        .chain(std::env::split_paths(extra))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_exit_status() {
        let sh = which("sh").unwrap();
        let r = run(
            &Argv::new(&sh, &["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(20),
            Stdout::Capture,
        )
        .unwrap();
        assert_eq!(r.end, End::Exit(3));
        assert_eq!(r.stdout, b"out\n");
        assert_eq!(r.stderr_text(), "err");
        assert!(r.max_rss_kib > 0);
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let sh = which("sh").unwrap();
        // The shell's child sleeps too; both must go.
        let r = run(
            &Argv::new(&sh, &["-c", "sleep 30 & sleep 30"]),
            Duration::from_millis(300),
            Stdout::Null,
        )
        .unwrap();
        assert_eq!(r.end, End::TimedOut);
    }

    #[test]
    fn missing_program_is_an_error_naming_it() {
        let e = run(
            &Argv::new("/nonexistent/kports-x", &[]),
            Duration::from_secs(5),
            Stdout::Null,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/kports-x"), "{e}");
    }

    #[test]
    fn shown_uses_the_file_name() {
        assert_eq!(shown(&Argv::new("/usr/bin/ss", &["-tanpH"])), "ss -tanpH");
    }
}
