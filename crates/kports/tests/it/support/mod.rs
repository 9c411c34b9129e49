//! Test support shared by every topic: the binary's path, the root check, one lab at a time,
//! a network namespace of the test's own with processes in it that look like Kubernetes
//! components, and helpers to run kports, `ss` and `ip` inside it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::time::Duration;

pub const KPORTS: &str = env!("CARGO_BIN_EXE_kports");
const SOCKD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/sockd.py");

/// Fails the test unless it runs as root: the system tests create network namespaces (CI runs
/// them as root).
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the system tests create network namespaces and must run as root (CI does)"
    );
}

/// The system tests' turns: a lab test has the machine to itself (one lab per machine, and no
/// other test's namespaces or processes beside it, as when each ran in its own binary); tests
/// with their own namespaces run side by side.
static SYSTEM: RwLock<()> = RwLock::new(());

/// Waits for this test's turn to bring up a lab (after root is checked).
pub fn lab_turn() -> RwLockWriteGuard<'static, ()> {
    require_root();
    SYSTEM
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until no lab test runs, for a test that makes its own namespaces (after root is
/// checked); hold it until the namespace is gone.
pub fn ns_turn() -> RwLockReadGuard<'static, ()> {
    require_root();
    SYSTEM
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs this build's kports with `args`, standard input closed, as a script would.
pub fn kports(args: &[&str]) -> Output {
    Command::new(KPORTS)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run kports {args:?}: {e}"))
}

/// What kports printed, when it succeeded; its status and all it printed when it did not.
pub fn kports_ok(args: &[&str]) -> String {
    let out = kports(args);
    assert!(
        out.status.success(),
        "kports {args:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A lab without components (`kports lab up --no-components`), as before Kubernetes is
/// installed; it holds the lab's turn and is taken down when dropped.
pub struct BareLab {
    _turn: RwLockWriteGuard<'static, ()>,
}

impl BareLab {
    pub fn up() -> BareLab {
        let turn = lab_turn();
        assert!(
            !Path::new("/run/kports-lab").exists(),
            "a kports lab is already up on this machine; run `kports lab down` first"
        );
        let lab = BareLab { _turn: turn };
        let out = kports(&["lab", "up", "--no-components"]);
        assert!(out.status.success(), "lab up: {}", text(&out.stderr));
        lab
    }
}

impl Drop for BareLab {
    fn drop(&mut self) {
        let out = kports(&["lab", "down"]);
        if !out.status.success() && !std::thread::panicking() {
            panic!("kports lab down failed: {}", text(&out.stderr));
        }
    }
}

/// Runs a command to completion, panicking with its stderr if it fails.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Python interpreter under a component's name, shared by every test. A hard link, not a
/// copy: a copy is open for writing for a moment, and a process that another test thread forks
/// in that moment keeps it open until it execs, so running the copy could fail with "Text file
/// busy". Falls back to a copy where /tmp is another file system.
fn component_exe(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("kports-test-bin");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    let exe = dir.join(name);
    if !exe.exists() {
        let python = std::fs::canonicalize("/usr/bin/python3")
            .expect("python3 is needed by the system tests");
        if std::fs::hard_link(&python, &exe).is_err() && !exe.exists() {
            let tmp = dir.join(format!("{name}.{}", std::process::id()));
            std::fs::copy(&python, &tmp).unwrap();
            let _ = std::fs::rename(&tmp, &exe);
        }
    }
    exe
}

/// A network namespace made by one test; dropped, it takes its processes and files with it.
pub struct Ns {
    pub name: String,
    dir: PathBuf,
    children: Vec<Child>,
    pids: Vec<u32>,
    _turn: RwLockReadGuard<'static, ()>,
}

impl Ns {
    pub fn new() -> Ns {
        let turn = ns_turn();
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "kpt-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        sh("ip", &["netns", "add", &name]);
        let ns = Ns {
            name,
            dir,
            children: Vec::new(),
            pids: Vec::new(),
            _turn: turn,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        sh("ip", &a)
    }

    /// Runs `cmd args` inside the namespace.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", self.name.as_str(), cmd];
        a.extend_from_slice(args);
        Command::new("ip")
            .args(&a)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// kports inside the namespace; panics unless it exits 0.
    pub fn kports(&self, args: &[&str]) -> String {
        let out = self.exec(KPORTS, args);
        assert!(
            out.status.success(),
            "kports {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kports ARGS -o json` inside the namespace, parsed.
    pub fn kports_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kports(&a)).unwrap()
    }

    /// Starts a socket holder inside the namespace whose executable is named `name` (a copy of
    /// the Python interpreter), so exe, comm and argv[0] are those of the component. Returns
    /// its pid once its sockets are set up (and the pid of its forked child, with `--fork`).
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> (u32, Option<u32>) {
        let exe = component_exe(name);
        let mut a = vec![
            "netns".to_string(),
            "exec".into(),
            self.name.clone(),
            exe.display().to_string(),
            SOCKD.into(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        let err_path = self.dir.join(format!("{name}.{}.err", self.pids.len()));
        let err = std::fs::File::create(&err_path).unwrap();
        let mut child = Command::new("ip")
            .args(&a)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.pids.push(child.id());
        self.children.push(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut forked = None;
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| {
                    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
                    panic!("{name} {args:?} did not get ready: {err}")
                });
            let mut w = line.split_whitespace();
            match (w.next(), w.next().and_then(|p| p.parse::<u32>().ok())) {
                (Some("child"), Some(pid)) => {
                    self.pids.push(pid);
                    forked = Some(pid);
                }
                (Some("ready"), Some(pid)) => return (pid, forked),
                _ => {}
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ends the holder `pid` that [`Ns::spawn`] started (its standard input closes; it exits
    /// and is reaped), so that it is never signalled again once its pid may be reused.
    pub fn stop(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut c = self.children.remove(i);
            drop(c.stdin.take());
            let _ = c.wait();
            self.pids.retain(|&p| p != pid);
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // Closing stdin ends the holders; then make sure, by pid, of those we started only.
        for c in &mut self.children {
            drop(c.stdin.take());
        }
        for &pid in &self.pids {
            let _ = Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One socket line of `ss -H -n -p`: (netid, state, local, peer, pids).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SsLine {
    pub netid: String,
    pub state: String,
    pub local: String,
    pub peer: String,
    pub pids: Vec<u32>,
}

/// Parses `ss -H -n -p` output. `ss` leaves out the Netid column when one protocol is asked
/// for; `netid` stands in for it then.
pub fn parse_ss(text: &str, netid: &str) -> Vec<SsLine> {
    const STATES: &[&str] = &[
        "ESTAB",
        "LISTEN",
        "UNCONN",
        "TIME-WAIT",
        "SYN-SENT",
        "SYN-RECV",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
        "CLOSE-WAIT",
        "LAST-ACK",
        "CLOSING",
    ];
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f: Vec<&str> = l.split_whitespace().collect();
            if STATES.contains(&f[0]) {
                f.insert(0, netid);
            }
            let mut pids: Vec<u32> = l
                .split("pid=")
                .skip(1)
                .filter_map(|p| p.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
                .collect();
            pids.sort_unstable();
            pids.dedup();
            SsLine {
                netid: f[0].into(),
                state: f[1].into(),
                local: norm(f[4]),
                peer: norm(f[5]),
                pids,
            }
        })
        .collect()
}

/// `ss` endpoints to kports's notation: `*:P` and `0.0.0.0:P` stay apart by family in kports,
/// so both sides are normalised to `ADDR:PORT` with IPv6 in brackets and `*` for a wildcard.
pub fn norm(ep: &str) -> String {
    let (a, p) = ep.rsplit_once(':').unwrap();
    let a = a.split('%').next().unwrap();
    let a = match a {
        "*" | "0.0.0.0" | "[::]" => "*",
        a => a,
    };
    format!("{a}:{p}")
}

/// kports's endpoint in the same notation.
pub fn kp_endpoint(addr: &serde_json::Value, port: &serde_json::Value) -> String {
    let a = addr.as_str().unwrap();
    let a = match a {
        "0.0.0.0" | "::" => "*".to_string(),
        a if a.contains(':') => format!("[{a}]"),
        a => a.to_string(),
    };
    format!("{a}:{}", port.as_u64().unwrap())
}
