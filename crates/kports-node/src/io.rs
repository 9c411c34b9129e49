//! What a node report reads from the system, behind one trait so the orchestration runs on
//! fixtures: [`Linux`] reads this machine (netlink, `/proc`, `/proc/sys`, `nft`, `ip`), a test
//! implements [`NodeIo`] over captured data.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kports_core::settings::NodeSettings;
use kports_core::{Interface, Socket, Warning};
use kports_firewall::capture::Capture;
use kports_linux::census::{self, OwnerScope, Query};
use kports_linux::runner::DEFAULT_TIMEOUT;
use kports_linux::sockdiag::{ESTABLISHED, LISTEN, UNCONN};

pub use kports_linux::census::SocketSource;

/// What a node report needs of a census: listeners, established connections (for the command
/// lines of components that only connect out, and the peers) and interfaces (tunnel ports, CNI
/// devices), with the warnings of collecting them.
#[derive(Debug, Default)]
pub struct Census {
    pub sockets: Vec<Socket>,
    pub interfaces: Vec<Interface>,
    pub warnings: Vec<Warning>,
}

/// The system a node report reads.
pub trait NodeIo {
    /// The census of the caller's network namespace.
    fn census(&self, source: SocketSource) -> Result<Census, kports_linux::Error>;
    /// The raw firewall sources (`nft -j list ruleset`, every `*-save`, the managers' files).
    fn firewall(&self) -> Capture;
    /// The interface and local address packets from `addr` arrive on (`ip route get`).
    fn route_to(&self, addr: IpAddr) -> Option<(String, Option<IpAddr>)>;
    fn hostname(&self) -> String;
    /// The node's own network settings (sysctls, modules, host name and how it resolves,
    /// routes, links), following the route to each of `peers` (address, why it is a peer).
    fn settings(&self, peers: &[(IpAddr, String)]) -> NodeSettings;
    /// A file the user named (`--catalog`), refused past the catalog's size limit.
    fn read_file(&self, path: &Path) -> io::Result<String>;
    /// A component's configuration file on the node (flannel's `net-conf.json`), refused past
    /// the configuration size limit.
    fn read_config(&self, path: &Path) -> io::Result<String>;
    /// A configuration file as process `pid` sees it (inside its container: `path` under
    /// `/proc/PID/root`), refused past the configuration size limit.
    fn read_process_config(&self, pid: u32, path: &Path) -> io::Result<String>;
}

/// This machine.
#[derive(Debug, Clone)]
pub struct Linux {
    pub proc_root: PathBuf,
    /// For each external command (`nft`, `ip`, `*-save`).
    pub timeout: Duration,
}

impl Default for Linux {
    fn default() -> Linux {
        Linux {
            proc_root: PathBuf::from("/proc"),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl NodeIo for Linux {
    fn census(&self, source: SocketSource) -> Result<Census, kports_linux::Error> {
        let q = Query {
            source,
            tcp_states: LISTEN | ESTABLISHED,
            udp_states: UNCONN,
            owners: OwnerScope::UntilFound,
            proc_root: self.proc_root.clone(),
            ..Query::default()
        };
        let c = census::sockets(&q)?;
        let mut warnings = c.warnings;
        let interfaces = match census::interfaces(&self.proc_root, false) {
            Ok((ifs, mut w)) => {
                warnings.append(&mut w);
                ifs
            }
            Err(e) => {
                warnings.push(Warning::new(
                    "interfaces-unreadable",
                    format!("{e}: tunnel ports and CNI devices are unknown"),
                ));
                Vec::new()
            }
        };
        Ok(Census {
            sockets: c.sockets,
            interfaces,
            warnings,
        })
    }

    fn firewall(&self) -> Capture {
        kports_linux::firewall::capture(self.timeout)
    }

    fn route_to(&self, addr: IpAddr) -> Option<(String, Option<IpAddr>)> {
        kports_linux::firewall::route_to(addr, self.timeout)
    }

    fn hostname(&self) -> String {
        kports_linux::hostname()
    }

    fn settings(&self, peers: &[(IpAddr, String)]) -> NodeSettings {
        kports_linux::settings::read(peers, self.timeout)
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        // Read up to the limit only: `--catalog /dev/zero` is refused, not loaded.
        kports_linux::limits::read_text(path, &kports_linux::limits::CATALOG)
    }

    fn read_config(&self, path: &Path) -> io::Result<String> {
        kports_linux::limits::read_text(path, &kports_linux::limits::CONFIG)
    }

    fn read_process_config(&self, pid: u32, path: &Path) -> io::Result<String> {
        let inside = path.strip_prefix("/").unwrap_or(path);
        let full = self
            .proc_root
            .join(pid.to_string())
            .join("root")
            .join(inside);
        kports_linux::limits::read_text(&full, &kports_linux::limits::CONFIG)
    }
}
