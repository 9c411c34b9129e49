//! `kports check`: the node report's findings, rendered (table, wide, JSON, JUnit).
//!
//! Everything is gathered by [`kports_node::NodeReport`]; this module only asks it and renders.
//! Exit status: 0 when no finding reaches `--fail-on`, 1 when one does, 2 when kports itself
//! fails.

mod junit;

use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;
use kports_core::catalog::{Roles, Severity};
use kports_core::check::{self, Report};
use kports_core::finding::Finding;
use kports_core::role::{Detected, DetectionSource};
use kports_node::{NodeIo, NodeReport, Options};
use serde::Serialize;

use crate::cli::{CheckArgs, CheckFormat};
use crate::cmd::Outcome;
use crate::output::{self, Document, Out};

/// The `context` of the JSON document.
#[derive(Debug, Serialize)]
struct JsonContext<'a> {
    roles: &'a Detected<Roles>,
    cni: &'a Detected<Vec<String>>,
    pre_install: bool,
    fail_on: Option<Severity>,
    /// Every catalog port checked, with what listens there.
    checked: &'a [check::Checked],
}

pub fn run(args: &CheckArgs, io: &dyn NodeIo, out: &mut Out<impl Write>) -> Result<Outcome> {
    let node = NodeReport::build(
        io,
        &Options {
            census: args.source.into(),
            firewall: !args.no_firewall,
            sources: args.sources.clone(),
            ..args.node.options()
        },
    )?;
    let checked = node.check(args.kubernetes_version, args.pre_install);
    let (report, warnings, unseen) = (checked.report, checked.warnings, checked.unseen);
    let (hostname, roles, cni) = (&node.hostname, &node.roles, &node.cni);
    let threshold = args.fail_on.threshold();

    match args.output {
        CheckFormat::Json => {
            let context = JsonContext {
                roles,
                cni,
                pre_install: args.pre_install,
                fail_on: threshold,
                checked: &report.checked,
            };
            let context = serde_json::to_value(&context)?;
            out.json(
                &Document::new("check", hostname, &report.findings, &warnings)
                    .with_context(context),
            )?;
        }
        CheckFormat::Junit => out.lines(&junit::render(
            hostname,
            roles,
            cni,
            &report,
            threshold,
            args.pre_install,
        ))?,
        CheckFormat::Table | CheckFormat::Wide => {
            print(out, hostname, roles, cni, &report, args, !unseen.is_empty())?
        }
    }

    Ok(Outcome {
        failed: threshold.is_some_and(|t| report.worst().is_some_and(|w| w >= t)),
        // `--fail-on never` is for callers that read the document (the agent).
        incomplete: threshold.is_some() && !unseen.is_empty(),
        warnings,
    })
}

fn describe_roles(roles: &Detected<Roles>) -> String {
    let name = roles.value;
    match roles.source {
        DetectionSource::Flag => format!("{name} (--role)"),
        DetectionSource::Detected => {
            format!("{name} (detected: {})", roles.evidence.join("; "))
        }
    }
}

fn describe_cni(cni: &Detected<Vec<String>>) -> String {
    let names = if cni.value.is_empty() {
        "none".to_string()
    } else {
        cni.value.join(", ")
    };
    match cni.source {
        DetectionSource::Flag => format!("{names} (--cni)"),
        DetectionSource::Detected => format!(
            "{names} (detected: {})",
            cni.evidence.first().map_or("", String::as_str)
        ),
    }
}

fn print(
    out: &mut Out<impl Write>,
    hostname: &str,
    roles: &Detected<Roles>,
    cni: &Detected<Vec<String>>,
    report: &Report,
    args: &CheckArgs,
    incomplete: bool,
) -> std::io::Result<()> {
    let what = if args.pre_install {
        "pre-install check"
    } else {
        "check"
    };
    out.heading(&format!(
        "{what} of {hostname}: role {}, CNI {}",
        describe_roles(roles),
        describe_cni(cni)
    ))?;
    if !report.findings.is_empty() {
        out.line("")?;
        print_findings(out, &report.findings)?;
    }
    if args.output == CheckFormat::Wide {
        out.line("")?;
        out.table(
            &[
                "PORT",
                "COMPONENT",
                "EXPECT",
                "RESULT",
                "LISTENERS",
                "PURPOSE",
            ],
            report.checked.len(),
            |r, c, b| {
                let k = &report.checked[r];
                match c {
                    0 => {
                        let _ = write!(b, "{}/{}", k.entry.protocol.as_str(), k.port);
                    }
                    1 => b.push_str(&k.entry.component),
                    2 => b.push_str(k.expect.as_str()),
                    3 => b.push_str(k.result.as_str()),
                    4 => {
                        if k.listeners.is_empty() {
                            b.push('-');
                        }
                        for (i, l) in k.listeners.iter().take(4).enumerate() {
                            if i > 0 {
                                b.push_str(", ");
                            }
                            output::endpoint(b, &l.local_address, l.local_port);
                        }
                        if k.listeners.len() > 4 {
                            let _ = write!(b, " +{}", k.listeners.len() - 4);
                        }
                    }
                    _ => b.push_str(&k.purpose),
                }
            },
        )?;
    }
    out.line("")?;
    out.line(&summary(report, incomplete))
}

fn print_findings(out: &mut Out<impl Write>, findings: &[Finding]) -> std::io::Result<()> {
    // Each finding is a row, then its command on a row of its own under MESSAGE, then the
    // command or change that fixes it.
    let rows: Vec<(usize, u8)> = (0..findings.len())
        .flat_map(|i| [(i, 0), (i, 1), (i, 2)])
        .collect();
    out.table(
        &["SEVERITY", "FINDING", "PORT", "MESSAGE"],
        rows.len(),
        |r, c, b| {
            let (i, kind) = rows[r];
            let f = &findings[i];
            match (kind, c) {
                (0, 0) => b.push_str(f.severity.as_str()),
                (0, 1) => b.push_str(f.id.as_str()),
                (0, 2) => b.push_str(&f.place()),
                (0, _) => b.push_str(&f.message),
                (1, 3) => {
                    let _ = write!(b, "  $ {}", f.command);
                }
                (2, 3) => {
                    let _ = write!(b, "  fix: {}", f.fix);
                }
                _ => {}
            }
        },
    )
}

/// `15 ports checked: 1 error, 0 warnings, 0 info`; when kports could not see everything, the
/// line says so instead of reading as a clean bill of health.
fn summary(report: &Report, incomplete: bool) -> String {
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let ports = plural(report.checked.len(), "port checked", "ports checked");
    let found = if report.findings.is_empty() {
        "no findings".to_string()
    } else {
        format!(
            "{}, {}, {}",
            plural(count(Severity::Error), "error", "errors"),
            plural(count(Severity::Warning), "warning", "warnings"),
            plural(count(Severity::Info), "info", "info")
        )
    };
    if incomplete {
        format!("{ports}: {found} in what kports could see; incomplete (see the last warning)")
    } else {
        format!("{ports}: {found}")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use kports_node::Replay;

    use super::*;
    use crate::cli::{Cli, Command};

    /// `kports ARGS` on a replayed node with nothing on it: (stdout, outcome).
    fn render(args: &[&str], io: &Replay) -> (String, Outcome) {
        let cli =
            Cli::try_parse_from(std::iter::once("kports").chain(args.iter().copied())).unwrap();
        let Command::Check(a) = &cli.command else {
            panic!("not a check: {args:?}");
        };
        let mut out = Out::new(Vec::new(), false);
        let outcome = run(a, io, &mut out).unwrap();
        (String::from_utf8(out.into_inner()).unwrap(), outcome)
    }

    #[test]
    fn a_blocked_kubelet_is_an_error_that_fails_the_check() {
        let (text, outcome) = render(&["check", "--cni", "none"], &Replay::example_worker());
        assert_eq!(text, BLOCKED);
        assert!(outcome.failed);
        let (_, never) = render(
            &["check", "--cni", "none", "--fail-on", "never"],
            &Replay::example_worker(),
        );
        assert!(!never.failed);
    }

    /// `kports check` before kubeadm on a flannel worker, without reading the firewall.
    const PRE_INSTALL_WORKER: &[&str] = &[
        "check",
        "--pre-install",
        "--role",
        "worker",
        "--cni",
        "flannel",
        "--no-firewall",
    ];

    /// A worker with nothing running yet, its settings as kubeadm wants them.
    fn empty_worker() -> Replay {
        let w = Replay::example_worker();
        Replay {
            hostname: "w9".into(),
            interfaces: w.interfaces,
            settings: Some(Replay::example_settings(
                "w9",
                kports_node::EXAMPLE_NODE.into(),
            )),
            ..Replay::default()
        }
    }

    #[test]
    fn a_prerequisite_shows_where_it_is_and_the_command_that_fixes_it() {
        let mut io = empty_worker();
        if let Some(s) = io.settings.as_mut() {
            s.ip_forward = kports_core::settings::Known::Known(0);
        }
        let (text, outcome) = render(PRE_INSTALL_WORKER, &io);
        assert_eq!(text, FORWARDING_OFF);
        assert!(outcome.failed);
    }

    #[test]
    fn a_pre_install_check_of_an_empty_worker_renders_its_table() {
        let io = empty_worker();
        let (text, outcome) = render(PRE_INSTALL_WORKER, &io);
        assert_eq!(
            text,
            "pre-install check of w9: role worker (--role), CNI flannel (--cni)\n\n7 ports checked: no findings\n"
        );
        assert!(!outcome.failed);
        let (wide, _) = render(&[PRE_INSTALL_WORKER, &["-o", "wide"]].concat(), &io);
        assert_eq!(wide, WIDE);
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    }

    /// `kports check --pre-install --role worker --cni flannel -o wide` on an empty node.
    const WIDE: &str = "\
pre-install check of w9: role worker (--role), CNI flannel (--cni)

PORT             COMPONENT   EXPECT     RESULT  LISTENERS  PURPOSE
tcp/10250        kubelet     listening  ok      -          Kubelet API (HTTPS): logs, exec, attach, port-forward, metrics
tcp/10248        kubelet     listening  ok      -          Kubelet healthz (plain HTTP)
tcp/10256        kube-proxy  listening  ok      -          kube-proxy health check (/healthz, /livez)
tcp/10249        kube-proxy  listening  ok      -          kube-proxy metrics (plain HTTP)
tcp/30000-32767  kube-proxy  reserved   ok      -          NodePort Services (default range)
udp/30000-32767  kube-proxy  reserved   ok      -          NodePort Services over UDP (default range)
udp/8472         flannel     listening  ok      -          Flannel VXLAN overlay (kernel flannel.1 device)

7 ports checked: no findings
";

    /// `kports check --pre-install --role worker --cni flannel --no-firewall` on an empty node
    /// that does not forward.
    const FORWARDING_OFF: &str = "\
pre-install check of w9: role worker (--role), CNI flannel (--cni)

SEVERITY  FINDING         PORT  MESSAGE
error     ip-forward-off  -     net.ipv4.ip_forward is 0: the node does not forward IPv4 packets, so pod traffic to and from other nodes goes nowhere (kubeadm preflight refuses it)
                                  $ sysctl net.ipv4.ip_forward
                                  fix: sysctl -w net.ipv4.ip_forward=1 (to keep it: `net.ipv4.ip_forward = 1` in /etc/sysctl.d/k8s.conf)

7 ports checked: 1 error, 0 warnings, 0 info
";

    /// `kports check --cni none` on the example worker.
    const BLOCKED: &str = "\
check of w1: role worker (detected: kubelet (pid 500) holds tcp/10250; kube-proxy (pid 600) holds tcp/10256), CNI none (--cni)

SEVERITY  FINDING                        PORT       MESSAGE
error     firewall-blocks-required-port  tcp/10250  the firewall drops tcp/10250 from 192.0.2.11 (the API server this node connects to), but the control plane must reach kubelet there (Kubelet API (HTTPS): logs, exec, attach, port-forward, metrics): iptables-nft ip filter INPUT #2: -A INPUT -p tcp -m tcp --dport 10250 -j DROP
                                                      $ iptables-nft -t filter -L INPUT -n -v --line-numbers
                                                      fix: iptables-nft -t filter -D INPUT 2 (or insert an accept before it: iptables-nft -t filter -I INPUT 2 -p tcp --dport 10250 -j ACCEPT)

16 ports checked: 1 error, 0 warnings, 0 info
";
}
