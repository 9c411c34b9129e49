//! `kports check`: the node's listeners against the ports its role and CNI need.
//!
//! The census and the catalog file are read here; everything else (role and CNI detection,
//! the check, the findings) is `kports_core`. Exit status: 0 when no finding reaches
//! `--fail-on`, 1 when one does (see [`Failed`]), 2 when kports itself fails.

mod junit;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use kports_core::catalog::{Catalog, Role, Severity, Version};
use kports_core::check::{self, Finding, Report};
use kports_core::role::{self, Detected};
use kports_core::{Interface, Socket, Warning};
use kports_firewall::findings as fwfind;
use kports_firewall::model::{AddrRange, parse_cidr};
use kports_linux::census::{self, OwnerScope, Query, Source};
use kports_linux::runner::DEFAULT_TIMEOUT;
use kports_linux::sockdiag::{ESTABLISHED, LISTEN, UNCONN};
use serde::Serialize;

use crate::cli::SourceArg;
use crate::output::{self, Document, Out};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The node's role. Detected from the running components when not given.
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
    /// The CNI plugin(s), comma-separated: calico, flannel, cilium, weave, antrea, kube-router,
    /// or none. Detected from agents and devices when not given.
    #[arg(long, value_delimiter = ',', value_name = "CNI")]
    pub cni: Option<Vec<String>>,
    /// A catalog file that extends or overrides the built-in one (format: docs/catalog.md).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Exit with status 1 when a finding is at least this severe.
    #[arg(long, value_enum, default_value = "error")]
    pub fail_on: FailOn,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: CheckFormat,
    /// Before kubeadm runs: are the role's TCP and UDP ports free, and who holds those that
    /// are not? Needs --role.
    #[arg(long, requires = "role")]
    pub pre_install: bool,
    /// Check only the catalog entries of this Kubernetes version (for example 1.30).
    #[arg(long, value_name = "X.Y", value_parser = parse_version)]
    pub kubernetes_version: Option<Version>,
    /// Where socket lists come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceArg,
    /// Addresses that use the cluster, the nodes among them (CIDR or address; repeatable), for
    /// the firewall's verdicts when the census shows no peer. Default: one address standing for
    /// any other host. Verdicts are evaluations of the rules; no traffic is sent.
    #[arg(long, value_name = "CIDR", value_parser = crate::cli::parse_cidr_arg)]
    pub sources: Vec<String>,
    /// Do not read the firewall (no `firewall-*` findings).
    #[arg(long)]
    pub no_firewall: bool,
}

/// `--role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// API server, etcd, scheduler, controller-manager, kubelet, kube-proxy.
    ControlPlane,
    /// kubelet and kube-proxy.
    Worker,
    /// A dedicated etcd member.
    Etcd,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::ControlPlane => Role::ControlPlane,
            RoleArg::Worker => Role::Worker,
            RoleArg::Etcd => Role::Etcd,
        }
    }
}

/// `--fail-on` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Info,
    /// Always exit 0 (unless kports itself fails).
    Never,
}

impl FailOn {
    pub fn threshold(self) -> Option<Severity> {
        match self {
            FailOn::Error => Some(Severity::Error),
            FailOn::Warning => Some(Severity::Warning),
            FailOn::Info => Some(Severity::Info),
            FailOn::Never => None,
        }
    }
}

/// `kports check -o` values (a superset of the census formats' table, wide and json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Findings, most severe first, each with the command that shows it.
    Table,
    /// Findings, then every port checked.
    Wide,
    /// One JSON document (`kind: "check"`): items are the findings.
    Json,
    /// JUnit XML for CI: one test case per catalog port checked, failures for findings.
    Junit,
}

fn parse_version(s: &str) -> Result<Version, String> {
    Version::parse(s).ok_or_else(|| format!("`{s}` is not a Kubernetes version such as 1.30"))
}

/// A check found what `--fail-on` asks to fail on: `main` exits with status 1.
#[derive(Debug)]
pub struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("findings reached --fail-on")
    }
}

impl std::error::Error for Failed {}

/// The built-in catalog with the user's file, if any, applied.
pub fn load_catalog(path: Option<&Path>) -> Result<Catalog> {
    let mut c = Catalog::builtin().context("the built-in catalog is broken (a bug in kports)")?;
    if let Some(p) = path {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the catalog file {}", p.display()))?;
        c.apply_user(&text, &p.display().to_string())
            .context("refusing the catalog file")?;
    }
    Ok(c)
}

/// What the node is: sockets, interfaces, and the warnings of collecting them.
#[derive(Debug)]
pub struct Node {
    pub sockets: Vec<Socket>,
    pub interfaces: Vec<Interface>,
    pub warnings: Vec<Warning>,
}

/// Takes the census a check needs: listeners, established connections (for the command lines
/// of components that only connect out) and interfaces (tunnel ports, CNI devices).
pub fn census(source: SourceArg) -> Result<Node> {
    let q = Query {
        source: match source {
            SourceArg::Auto => Source::Auto,
            SourceArg::Netlink => Source::Netlink,
            SourceArg::Proc => Source::Proc,
        },
        tcp_states: LISTEN | ESTABLISHED,
        udp_states: UNCONN,
        owners: OwnerScope::UntilFound,
        proc_root: PathBuf::from("/proc"),
        ..Query::default()
    };
    let c = census::sockets(&q)?;
    let mut warnings = c.warnings;
    let interfaces = match census::interfaces(Path::new("/proc"), false) {
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
    Ok(Node {
        sockets: c.sockets,
        interfaces,
        warnings,
    })
}

/// A node's role (none when unknown) and CNIs, each with where it came from.
pub type RoleAndCni = (Detected<Option<Role>>, Detected<Vec<String>>);

/// The role and CNIs: the user's, or detected.
pub fn role_and_cni(
    role: Option<RoleArg>,
    cni: Option<&[String]>,
    catalog: &Catalog,
    node: &Node,
) -> Result<RoleAndCni> {
    let role = match role {
        Some(r) => Detected::given(Some(r.into()), "--role"),
        None => role::detect_role(&node.sockets),
    };
    let cni = match cni {
        Some(list) => {
            let list: Vec<String> = list
                .iter()
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty() && c != "none")
                .collect();
            let known = catalog.cnis();
            if let Some(bad) = list.iter().find(|c| !known.contains(&c.as_str())) {
                anyhow::bail!(
                    "--cni {bad}: the catalog knows {} (or none)",
                    known.join(", ")
                );
            }
            Detected::given(list, "--cni")
        }
        None => role::detect_cni(&node.sockets, &node.interfaces),
    };
    Ok((role, cni))
}

/// The firewall's findings: reads the ruleset and the routes back to each source, then joins
/// them with the catalog and the census (`kports_firewall::findings`, pure).
fn firewall_findings(
    args: &CheckArgs,
    catalog: &Catalog,
    role: Option<Role>,
    cnis: &[String],
    node: &Node,
    warnings: &mut Vec<Warning>,
) -> Vec<Finding> {
    let read = crate::cmd::firewall::read();
    // An unreadable source is a `firewall-unknown` finding; the other notes stay warnings.
    warnings.extend(
        read.warnings
            .into_iter()
            .filter(|w| w.code != "firewall-unread"),
    );
    let peers = fwfind::peers(catalog, &node.sockets, &node.interfaces);
    let given: Vec<AddrRange> = args.sources.iter().filter_map(|s| parse_cidr(s)).collect();
    let representative = fwfind::representative(&node.interfaces);
    let mut sources = fwfind::choose_sources(&peers, &given, representative, role, warnings);
    for ks in &mut sources {
        let s = &mut ks.source;
        match kports_linux::firewall::route_to(s.range.first(), DEFAULT_TIMEOUT) {
            Some((dev, src)) => {
                s.iif = Some(dev);
                s.dst = src;
            }
            None => {
                if let Some((dev, addr)) = fwfind::primary_interface(&node.interfaces, s.range.v6) {
                    s.iif = Some(dev);
                    s.dst = Some(addr);
                }
            }
        }
    }
    let out = fwfind::findings(&fwfind::Input {
        catalog,
        role,
        cnis,
        sockets: &node.sockets,
        interfaces: &node.interfaces,
        ruleset: &read.rs,
        sources: &sources,
        pre_install: args.pre_install,
    });
    warnings.extend(
        out.warnings
            .into_iter()
            .filter(|w| w.code != "flag-unreadable"),
    );
    out.findings
}

/// The node's own settings, following the routes to the peers the census shows.
pub fn node_settings(catalog: &Catalog, node: &Node) -> kports_core::settings::NodeSettings {
    let peers: Vec<_> = fwfind::peers(catalog, &node.sockets, &node.interfaces)
        .control_plane
        .into_iter()
        .map(|(a, why)| (a, why.to_string()))
        .collect();
    kports_linux::settings::read(&peers, DEFAULT_TIMEOUT)
}

/// The `context` of the JSON document.
#[derive(Debug, Serialize)]
struct JsonContext<'a> {
    role: &'a Detected<Option<Role>>,
    cni: &'a Detected<Vec<String>>,
    pre_install: bool,
    fail_on: Option<Severity>,
    /// Every catalog port checked, with what listens there.
    checked: &'a [check::Checked],
}

pub fn run(args: &CheckArgs, out: &mut Out) -> Result<Vec<Warning>> {
    let catalog = load_catalog(args.catalog.as_deref())?;
    let node = census(args.source)?;
    let (role, cni) = role_and_cni(args.role, args.cni.as_deref(), &catalog, &node)?;
    let input = check::Input {
        sockets: &node.sockets,
        interfaces: &node.interfaces,
        catalog: &catalog,
        role: role.value,
        cnis: &cni.value,
        version: args.kubernetes_version,
        pre_install: args.pre_install,
    };
    let mut report = check::check(&input);
    let mut warnings = node.warnings.clone();
    warnings.extend(report.warnings.iter().cloned());
    if !args.no_firewall {
        let fw = firewall_findings(args, &catalog, role.value, &cni.value, &node, &mut warnings);
        report.merge(fw);
    }
    let settings = node_settings(&catalog, &node);
    report.merge(kports_core::prereq::findings(&kports_core::prereq::Input {
        settings: &settings,
        interfaces: &node.interfaces,
        sockets: &node.sockets,
        role: role.value,
        cnis: &cni.value,
        checked: &report.checked,
        pre_install: args.pre_install,
    }));
    let hostname = kports_linux::hostname();
    let threshold = args.fail_on.threshold();

    match args.output {
        CheckFormat::Json => {
            let context = JsonContext {
                role: &role,
                cni: &cni,
                pre_install: args.pre_install,
                fail_on: threshold,
                checked: &report.checked,
            };
            let context = serde_json::to_value(&context)?;
            out.json(
                &Document::new("check", &hostname, &report.findings, &warnings)
                    .with_context(context),
            )?;
        }
        CheckFormat::Junit => out.line(&junit::render(
            &hostname,
            &role,
            &cni,
            &report,
            threshold,
            args.pre_install,
        ))?,
        CheckFormat::Table | CheckFormat::Wide => {
            print(out, &hostname, &role, &cni, &report, args)?
        }
    }

    let failed = threshold.is_some_and(|t| report.worst().is_some_and(|w| w >= t));
    if failed {
        out.flush()?;
        output::warn(&warnings);
        return Err(Failed.into());
    }
    Ok(warnings)
}

fn describe_role(role: &Detected<Option<Role>>) -> String {
    let name = role.value.map_or("unknown", Role::as_str);
    match role.source {
        "flag" => format!("{name} (--role)"),
        _ => format!(
            "{name} (detected: {})",
            role.evidence.first().map_or("", String::as_str)
        ),
    }
}

fn describe_cni(cni: &Detected<Vec<String>>) -> String {
    let names = if cni.value.is_empty() {
        "none".to_string()
    } else {
        cni.value.join(", ")
    };
    match cni.source {
        "flag" => format!("{names} (--cni)"),
        _ => format!(
            "{names} (detected: {})",
            cni.evidence.first().map_or("", String::as_str)
        ),
    }
}

fn print(
    out: &mut Out,
    hostname: &str,
    role: &Detected<Option<Role>>,
    cni: &Detected<Vec<String>>,
    report: &Report,
    args: &CheckArgs,
) -> std::io::Result<()> {
    let what = if args.pre_install {
        "pre-install check"
    } else {
        "check"
    };
    out.heading(&format!(
        "{what} of {hostname}: role {}, CNI {}",
        describe_role(role),
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
                    3 => b.push_str(k.result),
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
    out.line(&summary(report))
}

fn print_findings(out: &mut Out, findings: &[Finding]) -> std::io::Result<()> {
    // Each finding is a row, then its command on a row of its own under MESSAGE, then the
    // command that fixes it when there is one.
    let rows: Vec<(usize, u8)> = findings
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            let fix = f.fix.is_some().then_some((i, 2));
            [(i, 0), (i, 1)].into_iter().chain(fix)
        })
        .collect();
    out.table(
        &["SEVERITY", "FINDING", "PORT", "MESSAGE"],
        rows.len(),
        |r, c, b| {
            let (i, kind) = rows[r];
            let f = &findings[i];
            match (kind, c) {
                (0, 0) => b.push_str(f.severity.as_str()),
                (0, 1) => b.push_str(f.id),
                (0, 2) => b.push_str(&f.place()),
                (0, _) => b.push_str(&f.message),
                (1, 3) => {
                    let _ = write!(b, "  $ {}", f.command);
                }
                (2, 3) => {
                    let _ = write!(b, "  fix: {}", f.fix.as_deref().unwrap_or_default());
                }
                _ => {}
            }
        },
    )
}

fn summary(report: &Report) -> String {
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let ports = plural(report.checked.len(), "port checked", "ports checked");
    if report.findings.is_empty() {
        return format!("{ports}: no findings");
    }
    format!(
        "{ports}: {}, {}, {}",
        plural(count(Severity::Error), "error", "errors"),
        plural(count(Severity::Warning), "warning", "warnings"),
        plural(count(Severity::Info), "info", "info")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(FailOn::Error.threshold(), Some(Severity::Error));
        assert_eq!(FailOn::Never.threshold(), None);
        assert!(parse_version("1.30").is_ok());
        assert!(parse_version("latest").is_err());
    }

    #[test]
    fn user_catalog_errors_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("kports-check-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.toml");
        std::fs::write(
            &p,
            "[[port]]\ncomponent = \"etcd\"\nprotocol = \"tcp\"\nport = 0\n",
        )
        .unwrap();
        let e = load_catalog(Some(&p)).unwrap_err();
        let msg = format!("{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            msg,
            format!(
                "refusing the catalog file: {}:4:8: port 0 is not valid: use 1-65535",
                p.display()
            )
        );
    }
}
