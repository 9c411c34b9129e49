//! `kports cluster`: gather every node's report (through --via, in `kports lab`, or from saved
//! files), join them (kports-cluster's matrix) and render the matrix, the failing cells with
//! their causes, and a line per node.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{Read as _, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kports_cluster::matrix::{Cell, Matrix, NodeInput, NodeState, join};
use kports_cluster::report::{self, NodeDoc};
use kports_cluster::via::{self, Limits, Target, Template};
use kports_core::Warning;
use kports_probe::inventory;
use kports_probe::{Status, Transport};

use crate::cli::ClusterArgs;
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out};

/// The largest saved report kports reads.
const MAX_REPORT_BYTES: u64 = via::MAX_OUTPUT;

pub fn run(args: &ClusterArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    let nodes = if !args.files.is_empty() {
        from_files(&args.files)?
    } else if args.lab {
        from_lab(args)?
    } else if !args.from_agents.is_empty() {
        from_agents(args)?
    } else {
        from_via(args)?
    };
    if nodes.iter().all(|n| n.report.is_err()) {
        let why: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.report.as_ref().err().map(|e| format!("{}: {e}", n.name)))
            .collect();
        bail!("no node gave a report:\n  {}", why.join("\n  "));
    }
    let m = join(&nodes);
    let mut warnings = Vec::new();
    for n in nodes.iter().filter(|n| n.report.is_err()) {
        if let Err(e) = &n.report {
            warnings.push(Warning::new(
                "node-no-report",
                format!("{} gave no report: {e}", n.name),
            ));
        }
    }
    let hostname = kports_linux::hostname();
    match args.output {
        Format::Json => out.json(
            &Document::new("cluster", &hostname, &m.cells, &warnings)
                .with_context(serde_json::json!({ "nodes": m.nodes, "failing": m.failing() })),
        )?,
        Format::Table | Format::Wide => table(out, &m)?,
    }
    Ok(Outcome {
        failed: !m.clean(),
        warnings,
        incomplete: false,
    })
}

/// Reports saved with `kports report -o json`: a file kports cannot read is an error, not a
/// node without a report.
fn from_files(files: &[std::path::PathBuf]) -> Result<Vec<NodeInput>> {
    let mut nodes: Vec<NodeInput> = Vec::new();
    for f in files {
        let doc = read_report(f).with_context(|| format!("{}", f.display()))?;
        if nodes.iter().any(|n| n.name == doc.name) {
            bail!(
                "{}: a second report of node {}; give one file per node",
                f.display(),
                doc.name
            );
        }
        nodes.push(NodeInput {
            name: doc.name.clone(),
            addresses: Vec::new(),
            roles: Vec::new(),
            report: Ok(doc),
        });
    }
    Ok(nodes)
}

fn read_report(path: &Path) -> Result<NodeDoc> {
    let f = std::fs::File::open(path).context("cannot open it")?;
    let mut text = String::new();
    f.take(MAX_REPORT_BYTES + 1)
        .read_to_string(&mut text)
        .context("cannot read it")?;
    if text.len() as u64 > MAX_REPORT_BYTES {
        bail!(
            "larger than {} MiB: not a node report",
            MAX_REPORT_BYTES >> 20
        );
    }
    Ok(report::parse(&text)?)
}

/// What runs on each node: this node's report with its probes, the inventory on stdin.
fn remote_command(kports: &str, name: &str, probe_timeout: Duration) -> Vec<String> {
    [
        kports,
        "report",
        "-o",
        "json",
        "--inventory",
        "-",
        "--self",
        name,
        "--probe-peers",
        "--probe-timeout",
        &format!("{}ms", probe_timeout.as_millis()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs the report on every node of `inv` through `template`, the inventory's text on stdin.
fn gather(
    inv: &inventory::Inventory,
    text: &str,
    template: &Template,
    kports: &str,
    args: &ClusterArgs,
) -> Vec<NodeInput> {
    let jobs: Vec<(String, Vec<String>)> = inv
        .nodes
        .iter()
        .map(|n| {
            let target = Target {
                name: n.name.clone(),
                address: n.address,
            };
            (
                n.name.clone(),
                template.argv(
                    &target,
                    &remote_command(kports, &n.name, args.probe_timeout),
                ),
            )
        })
        .collect();
    let limits = Limits {
        concurrency: args.concurrency as usize,
        timeout: args.timeout,
    };
    let results = via::run_all(&jobs, Some(text), limits);
    inv.nodes
        .iter()
        .zip(results)
        .map(|(n, (_, r))| NodeInput {
            name: n.name.clone(),
            addresses: n.addresses(),
            roles: n.roles.clone(),
            report: r.and_then(|stdout| {
                let doc = report::parse(&stdout).map_err(|e| format!("its report: {e}"))?;
                if doc.name != n.name {
                    return Err(format!("it answered as {}", doc.name));
                }
                Ok(doc)
            }),
        })
        .collect()
}

fn from_via(args: &ClusterArgs) -> Result<Vec<NodeInput>> {
    let (Some(path), Some(via)) = (&args.inventory, &args.via) else {
        bail!("--via needs --inventory FILE (and the other way round)");
    };
    let template = Template::parse(via)?;
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open the inventory {}", path.display()))?;
    let mut text = String::new();
    f.take(inventory::MAX_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the inventory {}", path.display()))?;
    let inv = inventory::parse(&text, &path.display().to_string())?;
    Ok(gather(&inv, &text, &template, &args.remote_kports, args))
}

/// The nodes' agents, each asked for its report (kports-agent's gathering, the same the
/// agents' own matrix uses).
fn from_agents(args: &ClusterArgs) -> Result<Vec<NodeInput>> {
    let token = match &args.token_file {
        Some(f) => match kports_agent::Auth::from_token_file(f)? {
            kports_agent::Auth::Token(t) => Some(t),
            kports_agent::Auth::Disabled => None,
        },
        None => None,
    };
    let gather = kports_agent::gather::Gather {
        port: 0,
        token,
        timeout: args.timeout,
        concurrency: args.concurrency as usize,
    };
    kports_agent::gather::from_agents(&args.from_agents, &gather).map_err(anyhow::Error::msg)
}

/// The lab's nodes as a kports inventory.
fn lab_inventory(plan: &kports_lab::plan::Plan) -> String {
    let mut s = String::from("nodes:\n");
    for n in &plan.nodes {
        let roles: Vec<&str> = n.roles().iter().map(|r| r.as_str()).collect();
        let _ = writeln!(
            s,
            "  - name: {}\n    address: {}\n    address6: \"{}\"\n    roles: [{}]",
            n.name,
            n.ipv4,
            n.ipv6,
            roles.join(", ")
        );
    }
    s
}

fn from_lab(args: &ClusterArgs) -> Result<Vec<NodeInput>> {
    if !kports_lab::sys::is_root() {
        bail!("kports cluster --lab needs root: it runs kports inside the lab's namespaces");
    }
    let state = kports_lab::state::State::load(&kports_lab::state::Paths::default())?
        .context("no lab is up: run `kports lab up` first")?;
    let text = lab_inventory(&state.plan());
    let inv = inventory::parse(&text, "the lab's nodes")?;
    let exe = std::env::current_exe().context("cannot find kports's own executable")?;
    let exe = exe
        .to_str()
        .context("kports's own path is not UTF-8")?
        .to_string();
    Ok(gather(&inv, &text, &Template::lab(&exe), &exe, args))
}

/// The cells of `node`'s column `port`.
fn column<'a>(m: &'a Matrix, node: &str, port: (Transport, u16)) -> Vec<&'a Cell> {
    m.cells
        .iter()
        .filter(|c| c.row.target == node && (c.row.proto, c.row.port) == port)
        .collect()
}

fn summary_cell(cells: &[&Cell], buf: &mut String) {
    if cells.is_empty() {
        buf.push('-');
        return;
    }
    let failing: Vec<&&Cell> = cells.iter().filter(|c| c.failed()).collect();
    if failing.is_empty() {
        let open = cells.iter().all(|c| c.row.status == Status::Open);
        buf.push_str(if open { "open" } else { "open|filtered" });
        return;
    }
    let statuses: BTreeSet<Status> = failing.iter().map(|c| c.row.status).collect();
    let from: BTreeSet<&str> = failing.iter().map(|c| c.row.source.as_str()).collect();
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let from: Vec<&str> = from.into_iter().collect();
    let _ = write!(buf, "{} from {}", statuses.join(","), from.join(","));
}

fn table(out: &mut Out<impl Write>, m: &Matrix) -> std::io::Result<()> {
    let ports = m.ports();
    let labels: Vec<String> = ports.iter().map(|(t, p)| format!("{t}/{p}")).collect();
    let mut headers: Vec<&str> = vec!["NODE", "ROLES"];
    headers.extend(labels.iter().map(String::as_str));
    out.table(&headers, m.nodes.len(), |r, c, b| {
        let n = &m.nodes[r];
        match c {
            0 => b.push_str(&n.name),
            1 => {
                let roles: Vec<&str> = n.roles.iter().map(|r| r.as_str()).collect();
                b.push_str(&roles.join(","));
            }
            _ if n.state == NodeState::CutOff => b.push_str("CUT OFF"),
            _ => summary_cell(&column(m, &n.name, ports[c - 2]), b),
        }
    })?;
    let failing: Vec<&Cell> = m.cells.iter().filter(|c| c.failed()).collect();
    if !failing.is_empty() {
        out.line("")?;
        out.heading("failing")?;
        for c in failing {
            let r = &c.row;
            let errno = r.errno.map(|e| format!(" {e}")).unwrap_or_default();
            out.line(&format!(
                "{} -> {} {} {}/{} {}{errno}: {}",
                r.source,
                r.target,
                r.target_address,
                r.proto,
                r.port,
                r.status,
                c.cause.as_deref().unwrap_or("no cause found")
            ))?;
        }
    }
    out.line("")?;
    for n in &m.nodes {
        let mut line = format!(
            "{}: {}; probed {} (failed {}), was probed {} (failed {})",
            n.name,
            n.state.as_str(),
            n.probes_sent,
            n.failed_sent,
            n.probes_received,
            n.failed_received
        );
        if let Some(note) = &n.note {
            let _ = write!(line, "; {note}");
        }
        out.line(&line)?;
    }
    out.line(&format!("{} cells, {} failing", m.cells.len(), m.failing()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kports_core::catalog::Role;

    #[test]
    fn the_lab_inventory_is_read_back_with_every_node() {
        let plan = kports_lab::plan::Plan::new(kports_lab::plan::Counts {
            etcd_workers: 1,
            ..kports_lab::plan::Counts::default()
        });
        let inv = inventory::parse(&lab_inventory(&plan), "lab").unwrap();
        let names: Vec<&str> = inv.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["cp1", "w1", "w2"]);
        let roles: Vec<&[Role]> = inv.nodes.iter().map(|n| n.roles.as_slice()).collect();
        assert_eq!(
            roles,
            [
                &[Role::ControlPlane, Role::Etcd][..],
                &[Role::Worker, Role::Etcd],
                &[Role::Worker]
            ]
        );
        assert_eq!(
            inv.nodes[1].addresses(),
            [
                "192.0.2.21".parse::<std::net::IpAddr>().unwrap(),
                "2001:db8::21".parse().unwrap()
            ]
        );
    }

    /// A report of `name` at `addr` that serves the kubelet port and probed `probes`.
    fn doc(name: &str, addr: &str, roles: &str, probes: serde_json::Value) -> NodeDoc {
        serde_json::from_value(serde_json::json!({
            "name": name, "hostname": name, "roles": [roles], "cni": [],
            "interfaces": [{"name": "eth0", "state": "up", "addresses": [format!("{addr}/24")]}],
            "ports": [{"proto": "tcp", "port": 10250, "component": "kubelet",
                       "listeners": [{"address": "0.0.0.0", "process": "kubelet"}],
                       "firewall": [{"from": "192.0.2.11", "source_kind": null, "verdict": "accept", "with": null, "rule": null}]}],
            "findings": [], "firewall_read": true, "probes": probes, "routes": []
        }))
        .unwrap()
    }

    fn probe(source: &str, target: &str, addr: &str, status: &str) -> serde_json::Value {
        serde_json::json!({"source": source, "target": target, "target_address": addr,
            "proto": "tcp", "port": 10250, "status": status, "errno": null,
            "latency_ms": 2000.0, "component": "kubelet"})
    }

    #[test]
    fn the_table_shows_each_column_the_failing_cells_and_a_line_per_node() {
        let nodes = vec![
            NodeInput {
                name: "cp1".into(),
                addresses: vec![],
                roles: vec![],
                report: Ok(doc(
                    "cp1",
                    "192.0.2.11",
                    "control-plane",
                    serde_json::json!([
                        probe("cp1", "w1", "192.0.2.21", "open"),
                        probe("cp1", "w2", "192.0.2.22", "filtered"),
                    ]),
                )),
            },
            NodeInput {
                name: "w1".into(),
                addresses: vec![],
                roles: vec![],
                report: Ok(doc("w1", "192.0.2.21", "worker", serde_json::json!([]))),
            },
            NodeInput {
                name: "w2".into(),
                addresses: vec![],
                roles: vec![Role::Worker],
                report: Err("ssh: connect to host 192.0.2.22 port 22: Connection timed out".into()),
            },
        ];
        let m = join(&nodes);
        let mut out = Out::new(Vec::new(), false);
        table(&mut out, &m).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert_eq!(
            text,
            "\
NODE  ROLES          tcp/10250
cp1   control-plane  -
w1    worker         open
w2    worker         CUT OFF

failing
cp1 -> w2 192.0.2.22 tcp/10250 filtered: w2 is down or cut off: no peer reaches it on any port, and it sent no report (ssh: connect to host 192.0.2.22 port 22: Connection timed out)

cp1: failing; probed 2 (failed 1), was probed 0 (failed 0)
w1: ok; probed 0 (failed 0), was probed 1 (failed 0)
w2: cut-off; probed 0 (failed 0), was probed 1 (failed 1); no report: ssh: connect to host 192.0.2.22 port 22: Connection timed out
2 cells, 1 failing
"
        );
    }

    #[test]
    fn each_node_runs_its_own_report_with_the_inventory_on_stdin() {
        let cmd = remote_command("/usr/bin/kports", "w1", Duration::from_millis(1500));
        assert_eq!(
            cmd.join(" "),
            "/usr/bin/kports report -o json --inventory - --self w1 --probe-peers --probe-timeout 1500ms"
        );
    }
}
