//! Starting kports on a node as a process this one keeps hold of: the preflight's holds live
//! while the peers dial, and the overlay check reads each node's counters around another
//! node's echoes. The command line comes from a [`via`](crate::via) template (`--via 'ssh
//! root@{address}'`, split without a shell), or, on `kports lab`, from `kports lab exec NODE --`
//! with this executable; kports's own command line follows, with `kports` from the node's PATH
//! unless another path is given.
//!
//! Unlike [`via::run_all`](crate::via::run_all), a command here is started and finished
//! separately (others run meanwhile), an exit status of 1 (a probe or a check that found
//! something) still hands back its output, and every command gets SIGTERM from the kernel when
//! this process dies, so none outlives an interrupted run.

use std::io::Read as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::via::{Target, Template, TemplateError};

/// How to reach the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// A `--via` template, and the kports to run there.
    Via { template: Template, kports: String },
    /// A `kports lab` node: this executable, run through `kports lab exec NODE --`.
    Lab { exe: PathBuf },
}

impl Launch {
    /// Reads a `--via` template; `kports` is `--remote-kports` (default `kports`).
    pub fn via(template: &str, kports: Option<&str>) -> Result<Launch, TemplateError> {
        Ok(Launch::Via {
            template: Template::parse(template)?,
            kports: kports.unwrap_or("kports").to_string(),
        })
    }

    /// The command that runs `kports ARGS` on the node `name` (at `address`).
    pub fn command(&self, name: &str, address: IpAddr, args: &[String]) -> Command {
        let argv = self.argv(name, address, args);
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    }

    /// The whole command line, program first.
    pub fn argv(&self, name: &str, address: IpAddr, args: &[String]) -> Vec<String> {
        let target = Target {
            name: name.to_string(),
            address,
        };
        let (template, kports) = match self {
            Launch::Via { template, kports } => (template.clone(), kports.clone()),
            Launch::Lab { exe } => {
                let exe = exe.display().to_string();
                (Template::lab(&exe), exe)
            }
        };
        let mut command = vec![kports];
        command.extend(args.iter().cloned());
        template.argv(&target, &command)
    }
}

/// Ends the command with this process: the kernel sends it SIGTERM when this process dies
/// (killed, or ended by a signal), so nothing it started on a node outlives an interrupted run.
/// (The signal follows the thread that forks; the callers fork from the thread that runs the
/// whole command.)
pub fn end_with_us(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs between fork and exec and calls only prctl, which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The most of a node's output kept: a probe document of the largest plan fits.
pub const MAX_OUTPUT: u64 = 64 << 20;
/// The most of a node's error output kept for a message.
pub const MAX_STDERR: u64 = 4096;

/// Reads `r` on a thread of its own, keeping at most `limit` bytes and reading the rest away,
/// so the command never blocks on a full pipe.
pub fn drain(r: impl std::io::Read + Send + 'static, limit: u64) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut r = r.take(limit);
        let _ = r.read_to_end(&mut buf);
        let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
        let _ = tx.send(buf);
    });
    rx
}

/// Waits for `child` until `deadline`; kills it (by its pid, which this process started) if it
/// is still running then. `None` when it had to be killed.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// A node's error output as one line.
pub fn one_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let v: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if v.is_empty() {
        "no message".into()
    } else {
        v.join(" / ")
    }
}

/// A kports command running on a node (standard input closed), its output read by threads.
#[derive(Debug)]
pub struct Running {
    node: String,
    what: String,
    child: Result<Child, String>,
    stdout: Option<mpsc::Receiver<Vec<u8>>>,
    stderr: Option<mpsc::Receiver<Vec<u8>>>,
}

impl Running {
    /// Starts `kports ARGS` on the node; `what` names it in messages (`kports probe`).
    pub fn start(
        launch: &Launch,
        name: &str,
        address: IpAddr,
        args: &[String],
        what: &str,
    ) -> Running {
        let mut cmd = launch.command(name, address, args);
        end_with_us(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (child, stdout, stderr) = match cmd.spawn() {
            Ok(mut c) => {
                let out = c.stdout.take().map(|o| drain(o, MAX_OUTPUT));
                let err = c.stderr.take().map(|e| drain(e, MAX_STDERR));
                (Ok(c), out, err)
            }
            Err(e) => (
                Err(format!(
                    "cannot start {:?} for {name}: {e}",
                    cmd.get_program()
                )),
                None,
                None,
            ),
        };
        Running {
            node: name.to_string(),
            what: what.to_string(),
            child,
            stdout,
            stderr,
        }
    }

    /// Its standard output once it exits with 0 or 1 (a probe or check that found something),
    /// waiting until `deadline` and stopping it then; otherwise why there is none.
    pub fn finish(self, deadline: Instant) -> Result<Vec<u8>, String> {
        let mut child = self.child?;
        let status = wait_until(&mut child, deadline);
        let take = |rx: Option<mpsc::Receiver<Vec<u8>>>| {
            rx.and_then(|r| r.recv_timeout(Duration::from_secs(5)).ok())
                .unwrap_or_default()
        };
        let out = take(self.stdout);
        let err = take(self.stderr);
        let Some(status) = status else {
            return Err(format!(
                "{} on {} did not finish in time and was stopped",
                self.what, self.node
            ));
        };
        if !matches!(status.code(), Some(0 | 1)) {
            return Err(format!(
                "{} on {} failed ({status}): {}",
                self.what,
                self.node,
                one_line(&err)
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_fills_each_word_without_a_shell() {
        let l = Launch::via("ssh -o BatchMode=yes root@{address}", None).unwrap();
        let a = l.argv(
            "w1; rm -rf /",
            IpAddr::from([192, 0, 2, 21]),
            &["probe".into()],
        );
        assert_eq!(
            a,
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "root@192.0.2.21",
                "kports",
                "probe"
            ]
        );
        let l = Launch::via("ip netns exec {name}", Some("/opt/kports")).unwrap();
        let a = l.argv("w1", IpAddr::from([192, 0, 2, 21]), &[]);
        assert_eq!(a, ["ip", "netns", "exec", "w1", "/opt/kports"]);
        assert!(Launch::via("ssh {host}", None).is_err());
    }

    #[test]
    fn lab_runs_this_kports_in_the_node() {
        let l = Launch::Lab {
            exe: PathBuf::from("/usr/bin/kports"),
        };
        let a = l.argv("cp1", IpAddr::from([192, 0, 2, 11]), &["preflight".into()]);
        assert_eq!(
            a,
            [
                "/usr/bin/kports",
                "lab",
                "exec",
                "cp1",
                "--",
                "/usr/bin/kports",
                "preflight"
            ]
        );
    }
}
