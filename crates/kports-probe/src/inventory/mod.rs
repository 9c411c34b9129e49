//! Cluster inventories: which nodes there are, their addresses and roles.
//!
//! Three formats, recognised from the text: kports's own small YAML (`nodes:`), kubespray's
//! `inventory/*/hosts.yaml` as it is (`all:`), and kubespray's older INI files (`[all]`,
//! `[kube_control_plane]`, ...). Parsing is pure; [`read`] is the only IO and refuses files
//! larger than [`MAX_BYTES`]. Errors name the file and, where the parser knows it, the line.

mod ini;
mod kports;
mod kubespray;

use std::fmt;
use std::io::Read as _;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use kports_core::catalog::Role;

/// The largest inventory file kports reads.
pub const MAX_BYTES: u64 = 4 << 20;
/// The most nodes an inventory may hold.
pub const MAX_NODES: usize = 10_000;

/// One node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The address other nodes reach it on.
    pub address: IpAddr,
    /// Its IPv6 address, on a dual-stack cluster.
    pub address6: Option<Ipv6Addr>,
    pub roles: Vec<Role>,
    /// How to reach it over ssh (`root@192.0.2.11`), when the inventory says.
    pub ssh: Option<String>,
}

impl Node {
    /// Its addresses: `address`, then `address6` when it is another one.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut v = vec![self.address];
        if let Some(a6) = self.address6.map(IpAddr::V6) {
            if a6 != self.address {
                v.push(a6);
            }
        }
        v
    }
}

/// Which format a file was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Kports,
    KubesprayYaml,
    KubesprayIni,
}

/// A parsed inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub format: Format,
    /// In the file's order.
    pub nodes: Vec<Node>,
    /// Hosts of a kubespray inventory that are in no Kubernetes group (a bastion, route
    /// reflectors): left out.
    pub skipped: Vec<String>,
}

/// An inventory kports refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub file: String,
    /// 1-based, when known.
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Builds errors for one file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Errs<'a> {
    pub file: &'a str,
}

impl Errs<'_> {
    pub fn at(&self, line: Option<u64>, message: impl Into<String>) -> Error {
        Error {
            file: self.file.to_string(),
            line: line.filter(|l| *l > 0),
            message: message.into(),
        }
    }
}

/// Reads and parses an inventory file.
pub fn read(path: &Path) -> Result<Inventory, Error> {
    let name = path.display().to_string();
    let e = Errs { file: &name };
    let f = std::fs::File::open(path).map_err(|err| e.at(None, err.to_string()))?;
    let mut text = String::new();
    f.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| e.at(None, err.to_string()))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(e.at(
            None,
            format!("larger than {} MiB: not an inventory", MAX_BYTES >> 20),
        ));
    }
    parse(&text, &name)
}

/// Parses an inventory's text; `file` names it in errors.
/// The line (1-based, lines end at `\n`) of the first `\r` not followed by `\n`. YAML reads a
/// lone `\r` as a line break where an editor and every other count here do not, so the lines
/// the parser names would not be the file's.
fn bare_carriage_return(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let i = (0..b.len()).find(|&i| b[i] == b'\r' && b.get(i + 1) != Some(&b'\n'))?;
    Some(b[..i].iter().filter(|&&c| c == b'\n').count() as u64 + 1)
}

pub fn parse(text: &str, file: &str) -> Result<Inventory, Error> {
    let e = Errs { file };
    if text.len() as u64 > MAX_BYTES {
        return Err(e.at(
            None,
            format!("larger than {} MiB: not an inventory", MAX_BYTES >> 20),
        ));
    }
    if let Some(line) = bare_carriage_return(text) {
        return Err(e.at(
            Some(line),
            "a carriage return without a line feed: save the file with \\n (or \\r\\n) line ends",
        ));
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && *l != "---");
    let inv = match first {
        Some(l) if l.starts_with('[') => ini::parse(text, e)?,
        _ if has_top_key(text, "nodes") => kports::parse(text, e)?,
        _ if has_top_key(text, "all") => kubespray::parse(text, e)?,
        _ => {
            return Err(e.at(
                None,
                "neither a kports inventory (`nodes:`) nor a kubespray one (`all:` in hosts.yaml, \
                 or an INI file with `[all]`)",
            ));
        }
    };
    if inv.nodes.is_empty() {
        return Err(e.at(None, "no nodes"));
    }
    if inv.nodes.len() > MAX_NODES {
        return Err(e.at(None, format!("more than {MAX_NODES} nodes")));
    }
    Ok(inv)
}

fn has_top_key(text: &str, key: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
    })
}

/// An address as an inventory gives it (`ip`, `address`): an IP address, nothing else.
pub(crate) fn parse_ip(value: &str) -> Result<IpAddr, String> {
    value.trim().parse::<IpAddr>().map_err(|_| {
        format!("`{value}` is not an IP address (kports needs addresses, not host names)")
    })
}

/// A kubespray group name as a role: both the current and the older hyphenated names.
pub(crate) fn role_of_group(group: &str) -> Option<Role> {
    match group {
        "kube_control_plane" | "kube-master" | "kube_master" => Some(Role::ControlPlane),
        "kube_node" | "kube-node" => Some(Role::Worker),
        "etcd" => Some(Role::Etcd),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
