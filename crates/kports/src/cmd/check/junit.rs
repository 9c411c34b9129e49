//! JUnit XML for CI pipelines: one test case per catalog port checked, a failure for each port
//! with a finding at or above `--fail-on`; findings below it are kept as `system-out`.
//! Listeners no entry explains get a test case each, under the class `kports.check.unexplained`;
//! an unreadable firewall gets one under `kports.check.firewall`.

use std::fmt::Write as _;

use kports_core::catalog::{Roles, Severity};
use kports_core::check::Report;
use kports_core::finding::Finding;
use kports_core::role::Detected;

/// The whole XML document.
pub fn render(
    hostname: &str,
    roles: &Detected<Roles>,
    cni: &Detected<Vec<String>>,
    report: &Report,
    fail_on: Option<Severity>,
    pre_install: bool,
) -> String {
    let fails = |f: &Finding| fail_on.is_some_and(|t| f.severity >= t);
    // (classname, name, findings)
    let mut cases: Vec<(String, String, Vec<&Finding>)> = report
        .checked
        .iter()
        .map(|c| {
            let findings = report
                .findings
                .iter()
                .filter(|f| f.entry.as_ref() == Some(&c.entry))
                .collect();
            (
                format!("kports.check.{}", c.entry.component),
                format!("{}/{} {}", c.entry.protocol.as_str(), c.port, c.purpose),
                findings,
            )
        })
        .collect();
    for f in report.findings.iter().filter(|f| f.entry.is_none()) {
        let (class, name) = if f.id == kports_core::finding::FindingId::FirewallUnknown {
            (
                "kports.check.firewall",
                "firewall ruleset readable".to_string(),
            )
        } else if f.port.is_none() {
            ("kports.check.node", f.id.to_string())
        } else {
            (
                "kports.check.unexplained",
                format!("{} listener", f.place()),
            )
        };
        cases.push((class.into(), name, vec![f]));
    }
    let failures = cases
        .iter()
        .filter(|(_, _, fs)| fs.iter().any(|f| fails(f)))
        .count();
    let role_name = roles.value.to_string();
    let cni_name = if cni.value.is_empty() {
        "none".to_string()
    } else {
        cni.value.join(",")
    };
    let suite = format!(
        "kports {} on {hostname} ({role_name}, CNI {cni_name})",
        if pre_install {
            "pre-install check"
        } else {
            "check"
        }
    );

    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"kports check\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">",
        cases.len()
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
        esc(&suite),
        cases.len()
    );
    let _ = writeln!(x, "    <properties>");
    for (k, v) in [
        ("hostname", hostname),
        ("roles", role_name.as_str()),
        ("roles-source", roles.source.as_str()),
        ("cni", &cni_name),
        ("cni-source", cni.source.as_str()),
    ] {
        let _ = writeln!(x, "      <property name=\"{k}\" value=\"{}\"/>", esc(v));
    }
    let _ = writeln!(x, "    </properties>");
    for (class, name, findings) in &cases {
        let _ = write!(
            x,
            "    <testcase classname=\"{}\" name=\"{}\"",
            esc(class),
            esc(name)
        );
        if findings.is_empty() {
            x.push_str("/>\n");
            continue;
        }
        x.push_str(">\n");
        let (failing, passing): (Vec<&Finding>, Vec<&Finding>) =
            findings.iter().partition(|f| fails(f));
        if let Some(first) = failing.first() {
            let body: Vec<String> = failing.iter().map(|f| details(f)).collect();
            let _ = writeln!(
                x,
                "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                esc(first.id.as_str()),
                esc(&first.message),
                esc(&body.join("\n\n"))
            );
        }
        if !passing.is_empty() {
            let body: Vec<String> = passing.iter().map(|f| details(f)).collect();
            let _ = writeln!(
                x,
                "      <system-out>{}</system-out>",
                esc(&body.join("\n\n"))
            );
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>");
    x
}

/// A finding as text: severity, id, message, evidence, command, fix.
fn details(f: &Finding) -> String {
    let mut s = format!("{} {}: {}", f.severity.as_str(), f.id, f.message);
    for so in &f.evidence.sockets {
        let who: Vec<String> = so
            .processes
            .iter()
            .map(|p| format!("{} (pid {})", p.name, p.pid))
            .collect();
        let who = if who.is_empty() {
            format!("{:?}", so.owner).to_lowercase()
        } else {
            who.join(", ")
        };
        let _ = write!(
            s,
            "\nsocket: {} {}:{} {} held by {who}",
            so.proto.as_str(),
            so.local_address,
            so.local_port,
            so.state.ss_name()
        );
    }
    for fl in &f.evidence.flags {
        let _ = write!(s, "\nflag: {} of {}", fl.value, fl.source);
    }
    let _ = write!(s, "\nsee: {}", f.command);
    let _ = write!(s, "\nfix: {}", f.fix);
    s
}

/// Escapes text for XML attributes and content, dropping characters XML 1.0 cannot carry.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\n' | '\t' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use kports_core::catalog::{Expect, Key, PortRange, Protocol, Role};
    use kports_core::check::Checked;
    use kports_core::finding::{Evidence, FindingId};

    fn key(c: &str, port: u16) -> Key {
        Key {
            component: c.into(),
            protocol: Protocol::Tcp,
            port: PortRange::single(port),
        }
    }

    fn checked(c: &str, port: u16) -> Checked {
        Checked {
            entry: key(c, port),
            port: PortRange::single(port),
            purpose: format!("{c} <port>"),
            expect: Expect::Listening,
            result: kports_core::check::PortResult::Ok,
            listeners: vec![],
            configured_by: vec![],
        }
    }

    fn finding(id: FindingId, severity: Severity, entry: Option<Key>, port: u16) -> Finding {
        Finding {
            id,
            severity,
            message: format!("{id} & \"quoted\""),
            entry,
            protocol: Some(Protocol::Tcp),
            port: Some(PortRange::single(port)),
            evidence: Evidence::default(),
            command: format!("ss -tlnp 'sport = :{port}'"),
            fix: id.fix().to_string(),
        }
    }

    #[test]
    fn one_case_per_port_failures_per_finding() {
        let report = Report {
            checked: vec![checked("kube-apiserver", 6443), checked("kubelet", 10250)],
            findings: vec![
                finding(
                    FindingId::BoundLoopbackOnly,
                    Severity::Error,
                    Some(key("kube-apiserver", 6443)),
                    6443,
                ),
                finding(FindingId::UnexplainedListener, Severity::Info, None, 8000),
            ],
            warnings: vec![],
        };
        let role = Detected::given(Roles::from(Role::ControlPlane), "--role");
        let cni = Detected::given(vec!["flannel".to_string()], "--cni");
        let x = render("cp1", &role, &cni, &report, Some(Severity::Error), false);
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"kports check\" tests=\"3\" failures=\"1\""), "{x}");
        assert!(x.contains("<testcase classname=\"kports.check.kube-apiserver\" name=\"tcp/6443 kube-apiserver &lt;port&gt;\">"), "{x}");
        assert!(x.contains("<failure type=\"bound-loopback-only\" message=\"bound-loopback-only &amp; &quot;quoted&quot;\">"), "{x}");
        assert!(
            x.contains("see: ss -tlnp &apos;sport = :6443&apos;\nfix: set the component&apos;s bind address to the node&apos;s address and restart it</failure>"),
            "{x}"
        );
        assert!(x.contains("<testcase classname=\"kports.check.kubelet\" name=\"tcp/10250 kubelet &lt;port&gt;\"/>"), "{x}");
        // Info is below --fail-on error: kept as output, not a failure.
        assert!(x.contains("<testcase classname=\"kports.check.unexplained\" name=\"tcp/8000 listener\">\n      <system-out>info unexplained-listener"), "{x}");
        assert!(x.contains("<property name=\"roles\" value=\"control-plane\"/>"));
        let never = render("cp1", &role, &cni, &report, None, false);
        assert!(!never.contains("<failure") && never.contains("failures=\"0\""));
    }

    #[test]
    fn escaping_drops_control_characters() {
        assert_eq!(esc("a\u{1}b<c>\n"), "ab&lt;c&gt;\n");
    }
}
