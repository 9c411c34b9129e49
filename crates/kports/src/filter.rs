//! Filters checked against what they filter: a value that can never match (an interface kind
//! or an interface the node does not have, a process that holds no socket) is an error that
//! lists the values that can; a valid filter that matches nothing says so on standard error.
//!
//! Components are checked when the command line is parsed ([`kports_core::component::canonical`]);
//! ports by [`kports_core::catalog::PortRange::parse`].

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use kports_core::Warning;
use kports_core::names::names_process;

/// Interface kinds kports names (`IFLA_INFO_KIND`, and `device`, `loopback` for links without
/// one). A kind the kernel reports on this node is valid too.
const KINDS: [&str; 20] = [
    "bond",
    "bridge",
    "device",
    "dummy",
    "geneve",
    "gre",
    "ipip",
    "ipvlan",
    "loopback",
    "macvlan",
    "macvtap",
    "sit",
    "team",
    "tun",
    "veth",
    "vlan",
    "vrf",
    "vxlan",
    "wireguard",
    "xfrm",
];

/// `--kind`, lowercased, when it is a kind kports knows or one present among `present`.
pub fn kind<'a>(wanted: &str, present: impl IntoIterator<Item = &'a str>) -> Result<String> {
    let want = wanted.trim().to_ascii_lowercase();
    let mut valid: BTreeSet<&str> = KINDS.into_iter().collect();
    valid.extend(present);
    if valid.contains(want.as_str()) {
        return Ok(want);
    }
    bail!(
        "`{wanted}` is not an interface kind; one of: {}",
        valid.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// `--iif`: an interface of the node.
pub fn interface<'a>(wanted: &str, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let names: BTreeSet<&str> = names.into_iter().collect();
    if names.contains(wanted) {
        return Ok(());
    }
    bail!(
        "this node has no interface `{wanted}`; its interfaces: {}",
        names.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// `--process NAME` (not a pid) when it names no process among `holders` (the names of the
/// processes that hold a socket of the kind listed): an error listing them.
pub fn process<'a>(wanted: &str, holders: impl IntoIterator<Item = &'a str>) -> Result<()> {
    if wanted.parse::<u32>().is_ok() {
        return Ok(());
    }
    let holders: BTreeSet<&str> = holders.into_iter().collect();
    if holders.iter().any(|h| names_process(wanted, h)) {
        return Ok(());
    }
    bail!(
        "no process named `{wanted}` holds such a socket; the processes that do: {}",
        if holders.is_empty() {
            "none".to_string()
        } else {
            holders.into_iter().collect::<Vec<_>>().join(", ")
        }
    )
}

/// The note for filters (`--component etcd --port 80`) that matched nothing.
pub fn nothing_matched(filters: &[(&str, Option<String>)]) -> Warning {
    let given: Vec<String> = filters
        .iter()
        .filter_map(|(flag, v)| v.as_ref().map(|v| format!("--{flag} {v}")))
        .collect();
    Warning::new(
        "no-match",
        format!("nothing on this node matches {}", given.join(" ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_known_or_present_and_case_is_forgiven() {
        assert_eq!(kind("Bridge", []).ok().as_deref(), Some("bridge"));
        assert_eq!(kind("nlmon", ["nlmon"]).ok().as_deref(), Some("nlmon"));
        let e = kind("nonsense", ["veth"]).unwrap_err().to_string();
        assert!(
            e.starts_with("`nonsense` is not an interface kind; one of: bond, bridge, device"),
            "{e}"
        );
    }

    #[test]
    fn interfaces_and_processes_are_checked_against_the_node() {
        assert!(interface("eth0", ["lo", "eth0"]).is_ok());
        assert_eq!(
            interface("nosuchif", ["lo", "eth0"])
                .unwrap_err()
                .to_string(),
            "this node has no interface `nosuchif`; its interfaces: eth0, lo"
        );
        let holders = ["kube-controller-manager", "etcd"];
        assert!(process("kube-controller", holders).is_ok());
        assert!(process("etcd", holders).is_ok());
        assert!(process("4242", holders).is_ok());
        assert_eq!(
            process("kubelet", holders).unwrap_err().to_string(),
            "no process named `kubelet` holds such a socket; the processes that do: etcd, kube-controller-manager"
        );
        let w = nothing_matched(&[
            ("component", Some("etcd".into())),
            ("process", None),
            ("port", Some("80".into())),
        ]);
        assert_eq!(
            w.message,
            "nothing on this node matches --component etcd --port 80"
        );
    }
}
