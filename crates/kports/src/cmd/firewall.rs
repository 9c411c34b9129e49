//! `kports firewall check` and `kports firewall plan`: read the node's rulesets, judge the
//! required ports, and write the rules that open exactly what each source needs.

use std::io::Write;

use anyhow::Result;
use kports_core::catalog::Roles;
use kports_firewall::Judgement;
use kports_firewall::detect::Managers;
use kports_firewall::model::Unread;
use kports_firewall::plan;
use kports_firewall::required::RequiredPort;
use kports_firewall::verdicts::CheckRow;
use kports_node::{NodeIo, NodeReport, Options, Summary};
use serde::Serialize;

use crate::cli::{FirewallCheckArgs, FirewallCommand, FirewallCommon, FirewallPlanArgs};
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out};

pub fn run(c: &FirewallCommand, io: &dyn NodeIo, out: &mut Out<impl Write>) -> Result<Outcome> {
    match c {
        FirewallCommand::Check(a) => check(a, io, out),
        FirewallCommand::Plan(a) => plan(a, io, out),
    }
}

/// The node report the firewall commands need: the census is not required (without it, ports
/// are judged at the catalog's defaults).
fn report(common: &FirewallCommon, iif: Option<String>, io: &dyn NodeIo) -> Result<NodeReport> {
    Ok(NodeReport::build(
        io,
        &Options {
            census_required: false,
            sources: common.sources.clone(),
            control_plane: common.control_plane.clone(),
            load_balancers: common.load_balancers.clone(),
            iif,
            prerequisites: false,
            ..common.node.options()
        },
    )?)
}

#[derive(Debug, Serialize)]
struct CheckReport<'a> {
    roles: Roles,
    managers: &'a Managers,
    unread: &'a [Unread],
    rows: &'a [CheckRow],
    summary: Summary,
    /// How the role and CNI were found, and required entries that are not judged (IP
    /// protocols, ports a flag turned off).
    notes: &'a [String],
}

fn check(a: &FirewallCheckArgs, io: &dyn NodeIo, out: &mut Out<impl Write>) -> Result<Outcome> {
    let node = report(&a.common, a.iif.clone(), io)?;
    // Unreadable interfaces (a warning already) leave `--iif` unchecked.
    if let Some(iif) = &a.iif
        && !node.interfaces.is_empty()
    {
        crate::filter::interface(iif, node.interfaces.iter().map(|i| i.name.as_str()))?;
    }
    let fc = node.firewall_check()?;
    let (rows, managers) = (&fc.rows, &fc.firewall.managers);
    match a.common.output {
        Format::Json => {
            let report = CheckReport {
                roles: fc.roles,
                managers,
                unread: &fc.firewall.ruleset.unread,
                rows,
                summary: fc.summary,
                notes: &fc.notes,
            };
            out.json(&Document::with_list(
                "firewall-check",
                &node.hostname,
                &report,
                "rows",
                &fc.warnings,
            )?)?;
        }
        Format::Table | Format::Wide => {
            managers_lines(out, managers)?;
            for n in &fc.notes {
                out.line(&format!("note: {n}"))?;
            }
            // One line per stretch of ports with one verdict.
            let lines: Vec<(&CheckRow, usize)> = rows
                .iter()
                .flat_map(|r| (0..r.segments.len()).map(move |i| (r, i)))
                .collect();
            let wide = a.common.output == Format::Wide;
            out.table(
                &[
                    "PORT",
                    "COMPONENT",
                    "FROM",
                    "SOURCE",
                    "WANT",
                    "OK",
                    "VERDICT",
                ],
                lines.len(),
                |i, c, b| {
                    let (r, s) = lines[i];
                    let seg = &r.segments[s];
                    match c {
                        0 => {
                            let p = RequiredPort {
                                lo: seg.lo,
                                hi: seg.hi,
                                ..r.port.clone()
                            };
                            b.push_str(&p.label());
                        }
                        1 => b.push_str(&r.port.component),
                        2 => b.push_str(r.source_kind.as_str()),
                        3 => b.push_str(&r.source),
                        4 => b.push_str(if r.expect_open { "open" } else { "closed" }),
                        5 => b.push_str(match seg.judgement.is_open() {
                            Some(o) if o == r.expect_open => "yes",
                            Some(_) => "NO",
                            None => "?",
                        }),
                        _ => b.push_str(&verdict_text(&seg.judgement, wide)),
                    }
                },
            )?;
            out.line("")?;
            out.line(&summary_line(&fc.summary))?;
        }
    }
    let threshold = a.fail_on.threshold();
    Ok(Outcome {
        failed: threshold.is_some_and(|t| fc.summary.worst().is_some_and(|w| w >= t)),
        warnings: fc.warnings,
    })
}

/// `21 verdicts: 1 blocked for a source that needs it, 0 open to sources that do not, 2 undecided`.
fn summary_line(s: &Summary) -> String {
    format!(
        "{} verdicts: {} blocked for a source that needs it, {} open to sources that do not, {} undecided",
        s.rows, s.blocked, s.exposed, s.undecided
    )
}

fn verdict_text(j: &Judgement, wide: bool) -> String {
    let s = j.summary();
    if wide || s.chars().count() <= 140 {
        return s;
    }
    let mut t: String = s.chars().take(137).collect();
    t.push_str("...");
    t
}

fn managers_lines(out: &mut Out<impl Write>, m: &Managers) -> std::io::Result<()> {
    if let Some(f) = &m.firewalld {
        let zones: Vec<String> = f
            .zones
            .iter()
            .map(|z| format!("{} ({})", z.zone, z.matches))
            .collect();
        out.line(&format!(
            "firewalld: {}, backend {}, default zone {}{}",
            if f.active {
                "rules loaded"
            } else {
                "configured, no rules loaded"
            },
            f.backend.as_deref().unwrap_or("?"),
            f.default_zone.as_deref().unwrap_or("?"),
            if zones.is_empty() {
                String::new()
            } else {
                format!(", zones: {}", zones.join(", "))
            }
        ))?;
    }
    if let Some(u) = &m.ufw {
        out.line(&format!(
            "ufw: {}, enabled in ufw.conf: {}, default input policy {} (running INPUT policy {})",
            if u.active {
                "rules loaded"
            } else {
                "no rules loaded"
            },
            u.enabled.map_or("?", |e| if e { "yes" } else { "no" }),
            u.default_input_policy.as_deref().unwrap_or("?"),
            u.input_policy.as_deref().unwrap_or("?")
        ))?;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct PlanReport<'a> {
    managers: &'a Managers,
    #[serde(flatten)]
    plan: &'a plan::Plan,
}

#[derive(Debug, Serialize)]
struct RemovalReport<'a> {
    managers: &'a Managers,
    remove: bool,
    #[serde(flatten)]
    removal: &'a plan::Removal,
}

/// The script's first lines.
fn script_head(out: &mut Out<impl Write>, what: &str) -> std::io::Result<()> {
    out.lines(&format!(
        "#!/bin/sh\n# kports firewall plan {what}: safe to run twice\nset -e"
    ))
}

fn plan(a: &FirewallPlanArgs, io: &dyn NodeIo, out: &mut Out<impl Write>) -> Result<Outcome> {
    if a.remove {
        return remove(a, io, out);
    }
    let Some(backend) = a.backend else {
        anyhow::bail!("a plan needs --backend nft|iptables|firewalld|ufw");
    };
    if a.common.sources.is_empty() {
        // Before reading anything: the plan cannot be made.
        return Err(kports_node::Error::PlanNeedsSources.into());
    }
    let node = report(&a.common, None, io)?;
    let fp = node.firewall_plan(backend.into(), a.zone.clone(), a.own_table_only)?;
    let (p, managers) = (&fp.plan, &fp.firewall.managers);
    if a.script {
        script_head(out, &format!("({:?})", fp.backend).to_lowercase())?;
        for l in p.script.lines() {
            out.line(l)?;
        }
        return Ok(Outcome::done(fp.warnings));
    }
    match a.common.output {
        Format::Json => out.json(&Document::with_list(
            "firewall-plan",
            &node.hostname,
            &PlanReport { managers, plan: p },
            "intents",
            &fp.warnings,
        )?)?,
        Format::Table | Format::Wide => {
            managers_lines(out, managers)?;
            out.heading("What the plan changes (judged on the current ruleset):")?;
            let wide = a.common.output == Format::Wide;
            out.table(
                &["PORT", "COMPONENT", "SOURCE", "WANT", "CHANGE", "NOW"],
                p.intents.len(),
                |i, c, b| {
                    let x = &p.intents[i];
                    match c {
                        0 => b.push_str(&x.port),
                        1 => b.push_str(&x.component),
                        2 => b.push_str(&x.source),
                        3 => b.push_str(if x.open { "open" } else { "closed" }),
                        4 => match (&x.still_blocked_by, x.already, x.open) {
                            (Some(by), _, _) => {
                                b.push_str("still blocked by ");
                                b.push_str(&if wide { by.clone() } else { short_rule(by) });
                            }
                            (None, Some(true), _) => b.push_str("none (already so)"),
                            (None, _, true) => b.push_str("opens"),
                            (None, _, false) => b.push_str("closes"),
                        },
                        _ => b.push_str(&verdict_text(&x.now, wide)),
                    }
                },
            )?;
            if !p.chain_diff.is_empty() {
                out.line("")?;
                out.heading("kports's own chain (+ added, = already there, - removed):")?;
                for d in &p.chain_diff {
                    out.line(&format!("{} {}", d.op, d.text))?;
                }
            }
            if !p.openings.is_empty() {
                out.line("")?;
                out.heading("Accepts in other chains, before a drop that would still block a wanted connection (+ added, = already there):")?;
                for o in &p.openings {
                    out.line(&format!(
                        "{} {} from {} before {}",
                        if o.present { '=' } else { '+' },
                        o.port,
                        o.source,
                        o.before
                    ))?;
                }
            }
            if !p.conflicts.is_empty() {
                out.line("")?;
                out.heading("Still blocked after applying: a drop in another base chain is final, kports's accept cannot override it.")?;
                for c in &p.conflicts {
                    out.line(&format!(
                        "{} from {}: blocked by {}",
                        c.port, c.source, c.blocked_by
                    ))?;
                    out.line(&format!("    to open it there: {}", c.fix))?;
                }
            }
            for n in &p.notes {
                out.line(&format!("note: {n}"))?;
            }
            out.line("")?;
            out.heading("Script (kports firewall plan ... --script prints only this):")?;
            for l in p.script.lines() {
                out.line(l)?;
            }
        }
    }
    Ok(Outcome::done(fp.warnings))
}

/// `iptables-nft ip filter INPUT #2` of `iptables-nft ip filter INPUT #2: -A INPUT ...`: the
/// rule's place, for a narrow table.
fn short_rule(by: &str) -> String {
    match by.split_once(": ") {
        Some((place, "policy drop")) => format!("{place} policy drop"),
        Some((place, _)) => format!("{place} (see below)"),
        None => by.to_string(),
    }
}

fn remove(a: &FirewallPlanArgs, io: &dyn NodeIo, out: &mut Out<impl Write>) -> Result<Outcome> {
    let node = report(&a.common, None, io)?;
    let fr = node.firewall_removal()?;
    let r = &fr.removal;
    if a.script {
        script_head(out, "--remove")?;
        for l in r.script.lines() {
            out.line(l)?;
        }
        return Ok(Outcome::done(fr.warnings));
    }
    match a.common.output {
        Format::Json => out.json(&Document::with_list(
            "firewall-plan",
            &node.hostname,
            &RemovalReport {
                managers: &fr.firewall.managers,
                remove: true,
                removal: r,
            },
            "removes",
            &fr.warnings,
        )?)?,
        Format::Table | Format::Wide => {
            managers_lines(out, &fr.firewall.managers)?;
            if !r.removes.is_empty() {
                out.heading("What kports added, and the script takes out:")?;
                for w in &r.removes {
                    out.line(&format!("- {w}"))?;
                }
            }
            for n in &r.notes {
                out.line(&format!("note: {n}"))?;
            }
            if !r.script.is_empty() {
                out.line("")?;
                out.heading("Script (kports firewall plan --remove --script prints only this):")?;
                for l in r.script.lines() {
                    out.line(l)?;
                }
            }
        }
    }
    Ok(Outcome::done(fr.warnings))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use kports_node::Replay;

    use super::*;
    use crate::cli::{Cli, Command};

    /// `kports ARGS` on the example worker: (stdout, outcome).
    fn render(args: &[&str]) -> (String, Outcome) {
        let cli =
            Cli::try_parse_from(std::iter::once("kports").chain(args.iter().copied())).unwrap();
        let Command::Firewall(c) = &cli.command else {
            panic!("not a firewall command: {args:?}");
        };
        let mut out = Out::new(Vec::new(), false);
        let outcome = run(c, &Replay::example_worker(), &mut out).unwrap();
        (String::from_utf8(out.into_inner()).unwrap(), outcome)
    }

    #[test]
    fn firewall_check_names_the_drop_of_the_kubelet_for_the_control_plane() {
        let (text, outcome) = render(&["firewall", "check", "--cni", "none"]);
        assert_eq!(text, CHECK);
        // The kubelet's port is blocked for the control plane: an error, as in `kports check`.
        assert!(outcome.failed);
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
        let (_, never) = render(&["firewall", "check", "--cni", "none", "--fail-on", "never"]);
        assert!(!never.failed);
    }

    #[test]
    fn firewall_plan_script_opens_the_kubelet_to_the_control_plane_only() {
        let (text, _) = render(&[
            "firewall",
            "plan",
            "--backend",
            "nft",
            "--cni",
            "none",
            "--sources",
            "192.0.2.0/24",
            "--script",
        ]);
        assert_eq!(text, SCRIPT);
    }

    #[test]
    fn with_own_table_only_the_plan_says_what_stays_blocked_and_touches_no_other_chain() {
        let args = [
            "firewall",
            "plan",
            "--backend",
            "nft",
            "--cni",
            "none",
            "--sources",
            "192.0.2.0/24",
            "--own-table-only",
        ];
        let (script, _) = render(&[&args[..], &["--script"]].concat());
        let own = SCRIPT
            .split("# Accepts in other tables")
            .next()
            .unwrap_or_default();
        assert_eq!(script, own);
        let (table, _) = render(&args);
        let kubelet = table
            .lines()
            .find(|l| l.starts_with("tcp/10250") && l.contains("192.0.2.11 "))
            .unwrap_or_else(|| panic!("no row for the kubelet:\n{table}"));
        assert!(
            kubelet.contains("still blocked by iptables-nft ip filter INPUT #2 (see below)"),
            "{kubelet}"
        );
        assert!(!kubelet.contains("opens"), "{kubelet}");
        assert!(
            table.contains("    to open it there: iptables-nft -w -t filter -I INPUT 2 -s 192.0.2.11/32 -p tcp --dport 10250 -j ACCEPT"),
            "{table}"
        );
        // Without the flag the same row opens, and the accept before the drop is listed.
        let (table, _) = render(&args[..args.len() - 1]);
        let kubelet = table
            .lines()
            .find(|l| l.starts_with("tcp/10250") && l.contains("192.0.2.11 "))
            .unwrap_or_else(|| panic!("no row for the kubelet:\n{table}"));
        assert!(kubelet.contains(" opens "), "{kubelet}");
        assert!(
            table.contains("+ tcp/10250 from 192.0.2.11 before iptables-nft ip filter INPUT #2: -A INPUT -p tcp -m tcp --dport 10250 -j DROP"),
            "{table}"
        );
    }

    #[test]
    fn remove_needs_no_backend_and_says_when_kports_added_nothing() {
        let (text, outcome) = render(&["firewall", "plan", "--remove"]);
        assert_eq!(
            text,
            "note: kports has added nothing to this node's firewall\n"
        );
        assert!(!outcome.failed);
        let (script, _) = render(&["firewall", "plan", "--remove", "--script"]);
        assert_eq!(
            script,
            "#!/bin/sh\n# kports firewall plan --remove: safe to run twice\nset -e\n"
        );
        let (json, _) = render(&["firewall", "plan", "--remove", "-o", "json"]);
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["kind"], "firewall-plan");
        assert_eq!(doc["context"]["remove"], true);
        assert_eq!(doc["items"], serde_json::json!([]));
        assert_eq!(doc["context"]["script"], "");
        let e = Cli::try_parse_from(["kports", "firewall", "plan", "--remove", "--backend", "nft"])
            .unwrap_err();
        assert!(e.to_string().contains("cannot be used with"), "{e}");
        let e = Cli::try_parse_from(["kports", "firewall", "plan", "--sources", "192.0.2.0/24"])
            .unwrap_err();
        assert!(e.to_string().contains("--backend"), "{e}");
    }

    /// `kports firewall check --cni none` on the example worker.
    const CHECK: &str = "\
note: role worker (detected: kubelet (pid 500) holds tcp/10250; kube-proxy (pid 600) holds tcp/10256)
note: sources: the peers this node is connected to (192.0.2.11 (the API server this node connects to)); pass --sources to judge others
note: control plane: 192.0.2.11 (the API server this node connects to)
note: tcp/10248 (kubelet) is accepted from 192.0.2.11 but bound to loopback only: nothing outside reaches it
note: tcp/10249 (kube-proxy) is accepted from 192.0.2.11 but bound to loopback only: nothing outside reaches it
PORT             COMPONENT   FROM           SOURCE       WANT    OK   VERDICT
tcp/10250        kubelet     control-plane  192.0.2.11   open    NO   drop by iptables-nft ip filter INPUT #2: -A INPUT -p tcp -m tcp --dport 10250 -j DROP
tcp/10248        kubelet     self           127.0.0.1    open    yes  accept by iptables-nft ip filter INPUT #1: -A INPUT -i lo -j ACCEPT
tcp/10256        kube-proxy  others         192.0.2.11   closed  NO   accept (iptables-nft ip filter INPUT policy)
tcp/10249        kube-proxy  self           127.0.0.1    open    yes  accept by iptables-nft ip filter INPUT #1: -A INPUT -i lo -j ACCEPT
tcp/30000-32767  kube-proxy  all            203.0.113.1  open    yes  accept (iptables-nft ip filter INPUT policy)
udp/30000-32767  kube-proxy  all            203.0.113.1  open    yes  accept (iptables-nft ip filter INPUT policy)

6 verdicts: 1 blocked for a source that needs it, 1 open to sources that do not, 0 undecided
";
    /// `kports firewall plan --backend nft --cni none --sources 192.0.2.0/24 --script` there:
    /// the kubelet opened to the control plane the census shows, in kports's table and before
    /// the host's drop of tcp/10250 in iptables-nft's INPUT.
    const SCRIPT: &str = r#"#!/bin/sh
# kports firewall plan (nft): safe to run twice
set -e
nft -f - <<'EOF'
add table inet kports
add chain inet kports input { type filter hook input priority filter - 10; policy accept; }
flush chain inet kports input
add rule inet kports input ct state established,related accept
add rule inet kports input iifname "lo" accept
add rule inet kports input ip saddr 192.0.2.11 tcp dport 10250 accept comment "kubelet tcp/10250 from 192.0.2.11"
add rule inet kports input ip saddr 192.0.2.0/24 tcp dport 30000-32767 accept comment "kube-proxy tcp/30000-32767 from 192.0.2.0/24"
add rule inet kports input ip saddr 192.0.2.0/24 udp dport 30000-32767 accept comment "kube-proxy udp/30000-32767 from 192.0.2.0/24"
add rule inet kports input tcp dport { 10248-10250, 10256, 30000-32767 } reject with tcp reset comment "kports: required ports, closed to other sources"
add rule inet kports input udp dport 30000-32767 reject comment "kports: required ports, closed to other sources"
EOF
# Accepts in other tables' chains, before the rule that would still block a wanted connection
iptables-nft -w -t filter -C INPUT -s 192.0.2.11/32 -p tcp -m tcp --dport 10250 -m comment --comment "kports: kubelet tcp/10250 from 192.0.2.11" -j ACCEPT 2>/dev/null || iptables-nft -w -t filter -I INPUT 2 -s 192.0.2.11/32 -p tcp -m tcp --dport 10250 -m comment --comment "kports: kubelet tcp/10250 from 192.0.2.11" -j ACCEPT
"#;
}
