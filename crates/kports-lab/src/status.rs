//! `kports lab status`: the nodes, their addresses, the components with their pids and
//! listeners, and the faults in force, as a table or as JSON.
//!
//! The JSON document is kports's envelope (`kind: "lab-status"`, docs/schema.md): the nodes
//! are its `items`, the rest of `LabStatus` its `context`. It is separate from the state file,
//! so the state file can change without breaking scripts.

use std::fmt::Write as _;

use serde::Serialize;

use crate::component;
use crate::fault::Rule;
use crate::plan::Plan;
use crate::standin;
use crate::state::{EtcdMode, Paths, State, is_alive};
use crate::supervise;
use crate::sys;
use kports_core::document::Document;

#[derive(Debug, Serialize)]
pub struct LabStatus {
    /// Whether a lab is up (a state file exists).
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdMode>,
    pub nodes: Vec<NodeStatus>,
    /// Lab namespaces that exist without a lab (left over by a killed kports).
    pub leftover_namespaces: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub role: &'static str,
    /// A worker that also runs an etcd member (`--etcd-workers`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub etcd: bool,
    pub netns: String,
    pub netns_present: bool,
    pub ipv4: String,
    pub ipv6: String,
    pub pod_subnet: String,
    pub pod_ip: String,
    pub link_down: bool,
    pub firewall_rules: Vec<String>,
    /// Every fault in force, as `kports lab fault` names them: `drop tcp/10250`, `link down`,
    /// `kubelet stopped`, `kube-scheduler bound to 0.0.0.0`.
    pub faults: Vec<String>,
    pub components: Vec<ComponentStatus>,
}

#[derive(Debug, Serialize)]
pub struct ComponentStatus {
    pub name: &'static str,
    /// `running`, `stopped` (by a fault) or `exited` (it died).
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Where it listens, as bound (a wildcard is `[::]`, which takes IPv4 too, as `ss` shows
    /// it); empty when it does not run.
    pub listens: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_to: Option<String>,
}

impl LabStatus {
    /// True when something that should run does not: a component exited or a namespace is
    /// missing, or leftovers of a lab exist without one.
    pub fn unhealthy(&self) -> bool {
        !self.leftover_namespaces.is_empty()
            || self
                .nodes
                .iter()
                .any(|n| !n.netns_present || n.components.iter().any(|c| c.state == "exited"))
    }
}

/// The `-o json` document: kports's envelope with the nodes as `items`, the rest as `context`.
pub fn document<'a>(
    hostname: &'a str,
    s: &LabStatus,
) -> Result<Document<'a, serde_json::Value>, serde_json::Error> {
    Document::with_list("lab-status", hostname, s, "nodes", &[])
}

/// Collects the status from the state file and the system.
pub fn collect(paths: &Paths) -> anyhow::Result<LabStatus> {
    let present = sys::lab_namespaces();
    let Some(state) = State::load(paths)? else {
        return Ok(LabStatus {
            up: false,
            etcd: None,
            nodes: Vec::new(),
            leftover_namespaces: present,
        });
    };
    let plan: Plan = state.plan();
    let nodes = plan
        .nodes
        .iter()
        .map(|n| {
            let faults = state.faults.get(&n.name).cloned().unwrap_or_default();
            let components = state
                .procs
                .iter()
                .filter(|p| p.node == n.name)
                .map(|p| {
                    let st = match p.pid {
                        None => "stopped",
                        Some(pid) if is_alive(pid, p.start_time) => "running",
                        Some(_) => "exited",
                    };
                    let args = supervise::args_for(paths, &plan, n, p.component, p.bind);
                    let listens = component::listeners(p.component, &args)
                        .map(|v| {
                            v.iter()
                                .map(|a| standin::bind_addr(*a).to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    let listens = if st == "running" { listens } else { Vec::new() };
                    ComponentStatus {
                        name: p.component.name(),
                        state: st,
                        pid: p.pid.filter(|_| st == "running"),
                        listens,
                        bound_to: p.bind.map(|b| b.to_string()),
                    }
                })
                .collect();
            let mut all: Vec<String> = faults.rules.iter().map(Rule::to_string).collect();
            if faults.link_down {
                all.push("link down".into());
            }
            for p in state.procs.iter().filter(|p| p.node == n.name) {
                if p.pid.is_none() {
                    all.push(format!("{} stopped", p.component.name()));
                } else if let Some(b) = p.bind {
                    all.push(format!("{} bound to {b}", p.component.name()));
                }
            }
            NodeStatus {
                name: n.name.clone(),
                role: n.role.as_str(),
                etcd: n.etcd && n.role == crate::plan::Role::Worker,
                netns: n.netns(),
                netns_present: present.contains(&n.netns()),
                ipv4: n.ipv4.to_string(),
                ipv6: n.ipv6.to_string(),
                pod_subnet: format!("{}/24", n.pod_subnet()),
                pod_ip: n.pod_ip().to_string(),
                link_down: faults.link_down,
                firewall_rules: faults.rules.iter().map(Rule::to_string).collect(),
                faults: all,
                components,
            }
        })
        .collect();
    Ok(LabStatus {
        up: true,
        etcd: Some(state.etcd),
        nodes,
        leftover_namespaces: Vec::new(),
    })
}

fn pad(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// The status as text for a person.
pub fn render(s: &LabStatus) -> String {
    if !s.up {
        return if s.leftover_namespaces.is_empty() {
            "No lab is up. Start one with `kports lab up`.\n".to_string()
        } else {
            format!(
                "No lab is up, but these namespaces are left over: {}\nRemove them with `kports lab down`.\n",
                s.leftover_namespaces.join(", ")
            )
        };
    }
    let mut out = String::new();
    let etcd = match s.etcd {
        Some(EtcdMode::StandIn) => "etcd stand-in",
        _ => "real etcd",
    };
    let n = s.nodes.len();
    let _ = writeln!(
        out,
        "kports lab: {n} node{}, {etcd}\n",
        if n == 1 { "" } else { "s" }
    );
    let mut rows = vec![
        [
            "NODE",
            "ROLE",
            "NETNS",
            "ETH0 IPV4",
            "ETH0 IPV6",
            "POD SUBNET",
            "FAULTS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for n in &s.nodes {
        let mut faults: Vec<String> = n.faults.clone();
        if !n.netns_present {
            faults.push("NAMESPACE MISSING".into());
        }
        rows.push(vec![
            n.name.clone(),
            if n.etcd {
                format!("{},etcd", n.role)
            } else {
                n.role.into()
            },
            n.netns.clone(),
            n.ipv4.clone(),
            n.ipv6.clone(),
            n.pod_subnet.clone(),
            if faults.is_empty() {
                "-".into()
            } else {
                faults.join(", ")
            },
        ]);
    }
    out.push_str(&pad(&rows));
    out.push('\n');
    let mut rows = vec![
        ["NODE", "COMPONENT", "STATE", "PID", "LISTENS ON"]
            .map(String::from)
            .to_vec(),
    ];
    for n in &s.nodes {
        for c in &n.components {
            let state = match &c.bound_to {
                Some(b) => format!("{} (bound to {b})", c.state),
                None => c.state.to_string(),
            };
            rows.push(vec![
                n.name.clone(),
                c.name.into(),
                state,
                c.pid.map_or("-".into(), |p| p.to_string()),
                c.listens.join(" "),
            ]);
        }
    }
    out.push_str(&pad(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LabStatus {
        LabStatus {
            up: true,
            etcd: Some(EtcdMode::Real),
            nodes: vec![NodeStatus {
                name: "w1".into(),
                role: "worker",
                etcd: false,
                netns: "kports-w1".into(),
                netns_present: true,
                ipv4: "192.0.2.21".into(),
                ipv6: "2001:db8::21".into(),
                pod_subnet: "10.244.1.0/24".into(),
                pod_ip: "10.244.1.2".into(),
                link_down: true,
                firewall_rules: vec!["drop tcp/10250".into()],
                faults: vec![
                    "drop tcp/10250".into(),
                    "link down".into(),
                    "kube-proxy stopped".into(),
                ],
                components: vec![
                    ComponentStatus {
                        name: "kubelet",
                        state: "running",
                        pid: Some(42),
                        listens: vec!["[::]:10250".into(), "127.0.0.1:10248".into()],
                        bound_to: None,
                    },
                    ComponentStatus {
                        name: "kube-proxy",
                        state: "stopped",
                        pid: None,
                        listens: vec![],
                        bound_to: None,
                    },
                ],
            }],
            leftover_namespaces: Vec::new(),
        }
    }

    #[test]
    fn json_is_in_the_envelope() {
        let s = sample();
        let j = serde_json::to_value(document("lab-host", &s).unwrap()).unwrap();
        assert_eq!(j["schema"], kports_core::SCHEMA_VERSION);
        assert_eq!(j["kind"], "lab-status");
        assert_eq!(j["hostname"], "lab-host");
        assert_eq!(j["context"]["up"], true);
        assert_eq!(j["context"]["etcd"], "real");
        assert!(j["context"].get("nodes").is_none());
        assert_eq!(j["items"][0]["name"], "w1");
        assert_eq!(j["items"][0]["faults"][2], "kube-proxy stopped");
        assert_eq!(j["warnings"], serde_json::json!([]));
    }

    #[test]
    fn table() {
        let expected = "\
kports lab: 1 node, real etcd

NODE  ROLE    NETNS      ETH0 IPV4   ETH0 IPV6     POD SUBNET     FAULTS
w1    worker  kports-w1  192.0.2.21  2001:db8::21  10.244.1.0/24  drop tcp/10250, link down, kube-proxy stopped

NODE  COMPONENT   STATE    PID  LISTENS ON
w1    kubelet     running  42   [::]:10250 127.0.0.1:10248
w1    kube-proxy  stopped  -
";
        assert_eq!(render(&sample()), expected);
        assert!(!sample().unhealthy());
    }

    #[test]
    fn exited_component_is_unhealthy() {
        let mut s = sample();
        s.nodes[0].components[0].state = "exited";
        assert!(s.unhealthy());
    }

    #[test]
    fn no_lab_and_leftovers() {
        let mut s = LabStatus {
            up: false,
            etcd: None,
            nodes: vec![],
            leftover_namespaces: vec![],
        };
        assert_eq!(
            render(&s),
            "No lab is up. Start one with `kports lab up`.\n"
        );
        assert!(!s.unhealthy());
        s.leftover_namespaces.push("kports-w1".into());
        assert!(render(&s).contains("left over: kports-w1"));
        assert!(s.unhealthy());
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["up"], false);
        assert!(j.get("etcd").is_none());
    }

    #[test]
    fn json_fields() {
        let j = serde_json::to_value(sample()).unwrap();
        assert_eq!(j["etcd"], "real");
        assert_eq!(j["nodes"][0]["components"][0]["listens"][0], "[::]:10250");
        assert_eq!(
            j["nodes"][0]["components"][1]["listens"],
            serde_json::json!([])
        );
        assert!(j["nodes"][0]["components"][1].get("pid").is_none());
    }
}
