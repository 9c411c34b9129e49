//! What a lab leaves on disk: the layout of `/run/kports-lab` and the state file.
//!
//! The state file records the node counts (the plan derives from them), the process id and
//! start time of every process the lab started, and the faults in force. `down` trusts it
//! only for process ids, and only when the start time still matches, so a recycled pid is
//! never killed; everything else it finds by scanning.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::component::Component;
use crate::fault::Rule;
use crate::plan::{Counts, Plan};

/// Version of the state file's layout.
pub const STATE_VERSION: u32 = 1;

/// Where the lab keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths {
            root: PathBuf::from("/run/kports-lab"),
        }
    }
}

impl Paths {
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// Hard links named after the components, all to one copy of the kports binary.
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    /// The nodes' names and addresses, mounted on /etc/hosts by `kports lab exec`.
    pub fn hosts(&self) -> PathBuf {
        self.root.join("hosts")
    }
    /// Bind mounts that keep each node's UTS namespace (its host name) alive.
    pub fn uts(&self, short: &str) -> PathBuf {
        self.root.join("uts").join(short)
    }
    pub fn log(&self, node: &str, c: Component) -> PathBuf {
        self.root
            .join("log")
            .join(format!("{node}-{}.log", c.name()))
    }
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    pub fn kubeconfig_dir(&self, node: &str) -> PathBuf {
        self.root.join("nodes").join(node)
    }
}

/// How etcd runs on control-plane nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdMode {
    /// The real etcd from /usr/bin/etcd.
    Real,
    /// A stand-in that listens and holds connections like etcd but stores nothing.
    StandIn,
}

/// One component on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub node: String,
    pub component: Component,
    /// None while stopped by a fault.
    pub pid: Option<u32>,
    /// The process's start time (clock ticks after boot, `/proc/PID/stat` field 22), which
    /// tells it from a later process that got the same pid.
    pub start_time: Option<u64>,
    /// The address a `bind` fault moved its main listener to.
    pub bind: Option<IpAddr>,
}

/// Faults in force on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFaults {
    pub rules: Vec<Rule>,
    /// The node's link to the fabric is down.
    pub link_down: bool,
}

impl NodeFaults {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && !self.link_down
    }
}

/// The state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub counts: Counts,
    pub etcd: EtcdMode,
    pub procs: Vec<Proc>,
    #[serde(default)]
    pub faults: BTreeMap<String, NodeFaults>,
}

impl State {
    pub fn new(counts: Counts, etcd: EtcdMode) -> State {
        State {
            version: STATE_VERSION,
            counts,
            etcd,
            procs: Vec::new(),
            faults: BTreeMap::new(),
        }
    }

    pub fn plan(&self) -> Plan {
        Plan::new(self.counts)
    }

    pub fn proc_mut(&mut self, node: &str, c: Component) -> Option<&mut Proc> {
        self.procs
            .iter_mut()
            .find(|p| p.node == node && p.component == c)
    }

    /// Reads the state file; `Ok(None)` when there is none.
    pub fn load(paths: &Paths) -> anyhow::Result<Option<State>> {
        let path = paths.state();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let state: State = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged; `kports lab down` still cleans up",
                path.display()
            )
        })?;
        if state.version != STATE_VERSION {
            anyhow::bail!(
                "{} was written by another version of kports (layout {}); run `kports lab down`",
                path.display(),
                state.version
            );
        }
        Ok(Some(state))
    }

    /// Writes the state file atomically (a reader never sees half of it).
    pub fn save(&self, paths: &Paths) -> anyhow::Result<()> {
        let path = paths.state();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).context("cannot encode the lab's state")?;
        fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// From the text of `/proc/PID/stat`: the state letter and the start time.
pub fn parse_stat(text: &str) -> Option<(char, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3; the start time is field 22.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

/// The start time of a process that is running (not a zombie), if `pid` is one.
pub fn start_time(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    match parse_stat(&text)? {
        ('Z' | 'X' | 'x', _) => None,
        (_, start) => Some(start),
    }
}

/// Whether the process the state file recorded still runs (same pid, same start time).
pub fn is_alive(pid: u32, start: Option<u64>) -> bool {
    matches!((start_time(pid), start), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let line = "4152 (kube-apiserver) S 1 4152 4152 0 -1 4194560 1234 0 0 0 10 5 0 0 20 0 12 0 98765 123456789 2000 18446744073709551615";
        assert_eq!(parse_stat(line), Some(('S', 98765)));
        // A command name with a space and a parenthesis.
        let line = "7 (a) b) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0";
        assert_eq!(parse_stat(line), Some(('Z', 555)));
        assert_eq!(parse_stat("7 (short) S 1"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let start = start_time(me);
        assert!(start.is_some());
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start.map(|s| s + 1)));
        assert!(!is_alive(me, None));
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = State::new(Counts::default(), EtcdMode::Real);
        s.procs.push(Proc {
            node: "cp1".into(),
            component: Component::KubeControllerManager,
            pid: Some(42),
            start_time: Some(7),
            bind: Some("0.0.0.0".parse().unwrap()),
        });
        s.faults.insert(
            "w1".into(),
            NodeFaults {
                rules: vec![Rule {
                    verdict: crate::fault::Verdict::Drop,
                    port: "tcp/10250".parse().unwrap(),
                }],
                link_down: true,
            },
        );
        let j = serde_json::to_string(&s).unwrap();
        assert!(
            j.contains(r#""component":"kube-controller-manager""#),
            "{j}"
        );
        assert!(j.contains(r#""etcd":"real""#), "{j}");
        assert_eq!(serde_json::from_str::<State>(&j).unwrap(), s);
    }

    #[test]
    fn load_save_and_damage() {
        let dir =
            std::env::temp_dir().join(format!("kports-lab-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let paths = Paths { root: dir.clone() };
        assert_eq!(State::load(&paths).unwrap(), None);
        let s = State::new(
            Counts {
                control_plane: 1,
                workers: 0,
                etcd_workers: 0,
            },
            EtcdMode::StandIn,
        );
        s.save(&paths).unwrap();
        assert_eq!(State::load(&paths).unwrap(), Some(s));
        fs::write(paths.state(), "{").unwrap();
        let e = format!("{:#}", State::load(&paths).unwrap_err());
        assert!(e.contains("is damaged"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
