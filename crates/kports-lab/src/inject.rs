//! `kports lab fault NODE ...`: injecting and clearing faults on a running lab.

use std::net::IpAddr;

use anyhow::Context as _;

use crate::component::Component;
use crate::fault::{self, PortSpec, Rule, Verdict};
use crate::plan::Node;
use crate::state::{Paths, State};
use crate::{Usage, network, supervise, sys};

/// A fault to inject on a node.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum FaultAction {
    /// Silently drop packets to PROTO/PORT (tcp/10250, udp/8472, tcp/30000-32767): connects time out
    Drop { port: PortSpec },
    /// Refuse packets to PROTO/PORT with ICMP port unreachable: connects fail at once
    Reject { port: PortSpec },
    /// Remove every fault of the node (firewall rules, a downed link, stopped or re-bound
    /// components), or one: a port's rule (tcp/10250), a component's stop or bind (kubelet), or
    /// the downed link (link)
    Clear {
        #[arg(value_name = "FAULT")]
        fault: Option<ClearTarget>,
    },
    /// Stop a component (its listeners disappear)
    Stop {
        #[arg(value_enum)]
        component: Component,
    },
    /// Start a stopped component again
    Start {
        #[arg(value_enum)]
        component: Component,
    },
    /// Restart a component bound to ADDRESS (127.0.0.1 narrows it to loopback, 0.0.0.0 widens it)
    Bind {
        #[arg(value_enum)]
        component: Component,
        address: IpAddr,
    },
    /// Take the node's link down: it stops answering on the lab network
    Down,
    /// Bring the node's link back up
    Up,
}

/// One fault for `clear` to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearTarget {
    /// The firewall rule on this port (`drop` or `reject`).
    Rule(PortSpec),
    /// The component stopped or bound elsewhere: started again as `up` made it.
    Component(Component),
    /// The downed link.
    Link,
}

impl std::str::FromStr for ClearTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<ClearTarget, String> {
        if s == "link" {
            return Ok(ClearTarget::Link);
        }
        if s.contains('/') {
            return s.parse().map(ClearTarget::Rule);
        }
        Component::from_name(s)
            .map(ClearTarget::Component)
            .ok_or_else(|| {
                let names: Vec<&str> = Component::ALL.iter().map(|c| c.name()).collect();
                format!(
                    "`{s}` is no fault: name a port's rule (tcp/10250), a component ({}) or link",
                    names.join(", ")
                )
            })
    }
}

fn check_runs_on(node: &Node, c: Component) -> Result<(), Usage> {
    let here = Component::for_node(node);
    if here.contains(&c) {
        return Ok(());
    }
    let names: Vec<&str> = here.iter().map(|c| c.name()).collect();
    Err(Usage(format!(
        "{} does not run on {} (a {} node); it runs {}",
        c.name(),
        node.name,
        node.role.as_str(),
        names.join(", ")
    )))
}

/// Addresses a component on `node` can bind to.
fn check_bindable(node: &Node, a: IpAddr) -> Result<(), Usage> {
    if a.is_unspecified() || a.is_loopback() || node.addresses().contains(&a) {
        return Ok(());
    }
    Err(Usage(format!(
        "{a} is not an address of {}: use 127.0.0.1, ::1, 0.0.0.0, ::, {} or {}",
        node.name, node.ipv4, node.ipv6
    )))
}

/// Applies `action` to `node_name`; returns what to tell the user.
pub fn apply(paths: &Paths, node_name: &str, action: &FaultAction) -> anyhow::Result<String> {
    let mut state = State::load(paths)?
        .ok_or_else(|| anyhow::anyhow!("no lab is up: run `kports lab up` first"))?;
    let plan = state.plan();
    let node = plan.resolve_node(node_name).map_err(Usage)?.clone();
    let n = node.name.as_str();
    let msg = match action {
        FaultAction::Drop { port } | FaultAction::Reject { port } => {
            let verdict = if matches!(action, FaultAction::Drop { .. }) {
                Verdict::Drop
            } else {
                Verdict::Reject
            };
            let mut rules = state
                .faults
                .get(n)
                .map(|f| f.rules.clone())
                .unwrap_or_default();
            rules.retain(|r| r.port != *port);
            rules.push(Rule {
                verdict,
                port: *port,
            });
            sys::nft(n, &fault::nft_script(&rules))?;
            state.faults.entry(n.to_string()).or_default().rules = rules;
            state.save(paths)?;
            let effect = match verdict {
                Verdict::Drop => "connections to it from other nodes now time out",
                Verdict::Reject => "connections to it from other nodes are now refused",
            };
            format!(
                "{n}: {verdict_word} {port} in nft table inet {table}; {effect}. Undo with `kports lab fault {n} clear {port}`.",
                verdict_word = if verdict == Verdict::Drop {
                    "dropping"
                } else {
                    "rejecting"
                },
                table = fault::TABLE
            )
        }
        FaultAction::Clear { fault: None } => clear(paths, &mut state, &node)?,
        FaultAction::Clear { fault: Some(f) } => clear_one(paths, &mut state, &node, *f)?,
        FaultAction::Stop { component } => {
            check_runs_on(&node, *component)?;
            if supervise::stop(paths, &mut state, n, *component)? {
                format!(
                    "{n}: stopped {}; start it again with `kports lab fault {n} start {}`.",
                    component.name(),
                    component.name()
                )
            } else {
                format!("{n}: {} was not running.", component.name())
            }
        }
        FaultAction::Start { component } => {
            check_runs_on(&node, *component)?;
            let running = state.procs.iter().any(|p| {
                p.node == n
                    && p.component == *component
                    && p.pid
                        .is_some_and(|pid| crate::state::is_alive(pid, p.start_time))
            });
            if running {
                format!("{n}: {} is already running.", component.name())
            } else {
                supervise::start(paths, &mut state, &node, *component)?;
                supervise::wait_ready(paths, &state, &[&node])?;
                format!("{n}: started {}.", component.name())
            }
        }
        FaultAction::Bind { component, address } => {
            check_runs_on(&node, *component)?;
            check_bindable(&node, *address)?;
            supervise::stop(paths, &mut state, n, *component)?;
            if let Some(p) = state.proc_mut(n, *component) {
                p.bind = Some(*address);
            }
            supervise::start(paths, &mut state, &node, *component)?;
            supervise::wait_ready(paths, &state, &[&node])?;
            format!(
                "{n}: restarted {} bound to {address}. Undo with `kports lab fault {n} clear {}`.",
                component.name(),
                component.name()
            )
        }
        FaultAction::Down => {
            network::set_link(&node, false)?;
            state.faults.entry(n.to_string()).or_default().link_down = true;
            state.save(paths)?;
            format!(
                "{n}: link down; the node no longer answers on the lab network. Bring it back with `kports lab fault {n} up`."
            )
        }
        FaultAction::Up => {
            network::set_link(&node, true)?;
            state.faults.entry(n.to_string()).or_default().link_down = false;
            state.save(paths)?;
            format!("{n}: link up.")
        }
    };
    Ok(msg)
}

/// Removes every fault of `node` and restores its components as `up` made them.
fn clear(paths: &Paths, state: &mut State, node: &Node) -> anyhow::Result<String> {
    let n = node.name.as_str();
    let mut done = Vec::new();
    sys::nft(n, &fault::nft_script(&[]))?;
    let faults = state.faults.remove(n).unwrap_or_default();
    if !faults.rules.is_empty() {
        done.push(format!("removed {} firewall rule(s)", faults.rules.len()));
    }
    if faults.link_down {
        network::set_link(node, true)?;
        done.push("brought the link up".into());
    }
    state.save(paths)?;
    let to_restore: Vec<Component> = state
        .procs
        .iter()
        .filter(|p| p.node == n)
        .filter(|p| {
            p.bind.is_some()
                || !p
                    .pid
                    .is_some_and(|pid| crate::state::is_alive(pid, p.start_time))
        })
        .map(|p| p.component)
        .collect();
    for c in &to_restore {
        restore(paths, state, node, *c)?;
        done.push(format!("restarted {}", c.name()));
    }
    if !to_restore.is_empty() {
        supervise::wait_ready(paths, state, &[node])?;
    }
    Ok(if done.is_empty() {
        format!("{n}: no faults to clear.")
    } else {
        format!("{n}: {}.", done.join(", "))
    })
}

/// Starts `c` on `node` again as `up` made it: at its own addresses.
fn restore(paths: &Paths, state: &mut State, node: &Node, c: Component) -> anyhow::Result<()> {
    let n = node.name.as_str();
    supervise::stop(paths, state, n, c)?;
    if let Some(p) = state.proc_mut(n, c) {
        p.bind = None;
    }
    supervise::start(paths, state, node, c)
        .with_context(|| format!("cannot restart {} on {n}", c.name()))
}

/// Undoes one fault of `node`, leaving the others in force.
fn clear_one(
    paths: &Paths,
    state: &mut State,
    node: &Node,
    fault: ClearTarget,
) -> anyhow::Result<String> {
    let n = node.name.as_str();
    match fault {
        ClearTarget::Rule(port) => {
            let mut rules = state
                .faults
                .get(n)
                .map(|f| f.rules.clone())
                .unwrap_or_default();
            let before = rules.len();
            rules.retain(|r| r.port != port);
            if rules.len() == before {
                return Err(Usage(format!("{n} has no firewall fault on {port}")).into());
            }
            sys::nft(n, &fault::nft_script(&rules))?;
            state.faults.entry(n.to_string()).or_default().rules = rules;
            state.save(paths)?;
            Ok(format!("{n}: removed the firewall fault on {port}."))
        }
        ClearTarget::Link => {
            if !state.faults.get(n).is_some_and(|f| f.link_down) {
                return Ok(format!("{n}: the link is up; nothing to clear."));
            }
            network::set_link(node, true)?;
            state.faults.entry(n.to_string()).or_default().link_down = false;
            state.save(paths)?;
            Ok(format!("{n}: brought the link up."))
        }
        ClearTarget::Component(c) => {
            check_runs_on(node, c)?;
            let faulty = state.procs.iter().any(|p| {
                p.node == n
                    && p.component == c
                    && (p.bind.is_some()
                        || !p
                            .pid
                            .is_some_and(|pid| crate::state::is_alive(pid, p.start_time)))
            });
            if !faulty {
                return Ok(format!(
                    "{n}: {} runs as `up` made it; nothing to clear.",
                    c.name()
                ));
            }
            restore(paths, state, node, c)?;
            supervise::wait_ready(paths, state, &[node])?;
            Ok(format!("{n}: restarted {} as `up` made it.", c.name()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Counts, Plan};

    #[test]
    fn one_fault_to_clear() {
        assert_eq!("link".parse(), Ok(ClearTarget::Link));
        assert_eq!(
            "kubelet".parse(),
            Ok(ClearTarget::Component(Component::Kubelet))
        );
        assert!(matches!(
            "tcp/10250".parse::<ClearTarget>(),
            Ok(ClearTarget::Rule(p)) if p.first == 10250
        ));
        let e = "nosuch".parse::<ClearTarget>().unwrap_err();
        assert!(e.contains("a component (etcd, kube-apiserver"), "{e}");
        assert!("tcp/0".parse::<ClearTarget>().is_err());
    }

    #[test]
    fn components_only_where_they_run() {
        let plan = Plan::new(Counts::default());
        let w1 = plan.node("w1").unwrap();
        let e = check_runs_on(w1, Component::KubeApiserver).unwrap_err();
        assert_eq!(
            e.0,
            "kube-apiserver does not run on w1 (a worker node); it runs kubelet, kube-proxy"
        );
        assert!(check_runs_on(w1, Component::Kubelet).is_ok());
        assert!(check_runs_on(plan.node("cp1").unwrap(), Component::Etcd).is_ok());
    }

    #[test]
    fn bind_addresses_must_be_the_nodes() {
        let plan = Plan::new(Counts::default());
        let w1 = plan.node("w1").unwrap();
        for ok in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::",
            "192.0.2.21",
            "2001:db8::21",
            "127.0.0.2",
        ] {
            assert!(check_bindable(w1, ok.parse().unwrap()).is_ok(), "{ok}");
        }
        let e = check_bindable(w1, "192.0.2.22".parse().unwrap()).unwrap_err();
        assert_eq!(
            e.0,
            "192.0.2.22 is not an address of w1: use 127.0.0.1, ::1, 0.0.0.0, ::, 192.0.2.21 or 2001:db8::21"
        );
    }
}
