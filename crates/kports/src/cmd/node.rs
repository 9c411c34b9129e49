//! `kports node`: hostname, interfaces and addresses, and the namespace's own network settings
//! (forwarding, bridge netfilter, rp_filter, port ranges, conntrack, default routes).

use std::fmt::Write as _;

use anyhow::Result;
use kports_core::Warning;
use kports_core::settings::{Known, NodeSettings};
use kports_linux::census;

use crate::cli::NodeArgs;
use crate::output::{Document, Format, Out};

pub fn run(args: &NodeArgs, out: &mut Out) -> Result<Vec<Warning>> {
    let hostname = kports_linux::hostname();
    let (mut ifs, warnings) =
        census::interfaces(std::path::Path::new("/proc"), args.common.all_netns)?;
    if let Some(kind) = &args.kind {
        ifs.retain(|i| &i.kind == kind);
    }
    let wide = args.common.output == Format::Wide;
    let settings = kports_linux::settings::read(&[], kports_linux::runner::DEFAULT_TIMEOUT);
    match args.common.output {
        Format::Json => out.json(
            &Document::new("node", &hostname, &ifs, &warnings)
                .with_context(serde_json::json!({ "settings": settings })),
        )?,
        Format::Table | Format::Wide => {
            out.heading(&format!("hostname: {hostname}"))?;
            let mut headers = vec!["INTERFACE", "KIND", "STATE", "MTU", "MAC", "MASTER"];
            if args.common.all_netns {
                headers.insert(0, "NETNS");
            }
            if wide {
                headers.extend(["INDEX", "TUNNEL PORT"]);
            }
            headers.push("ADDRESSES");
            let ns = usize::from(args.common.all_netns);
            out.table(&headers, ifs.len(), |r, c, b| {
                let i = &ifs[r];
                if ns == 1 && c == 0 {
                    b.push_str(&i.netns.as_ref().map_or_else(|| "-".into(), |n| n.label()));
                    return;
                }
                match (c - ns, wide) {
                    (0, _) => b.push_str(&i.name),
                    (1, _) => b.push_str(&i.kind),
                    (2, _) => b.push_str(&i.state),
                    (3, _) => {
                        let _ = write!(b, "{}", i.mtu);
                    }
                    (4, _) => b.push_str(i.mac.as_deref().unwrap_or("-")),
                    (5, _) => b.push_str(i.master.as_deref().unwrap_or("-")),
                    (6, true) => {
                        let _ = write!(b, "{}", i.index);
                    }
                    (7, true) => {
                        b.push_str(&i.tunnel_port.map_or_else(|| "-".into(), |p| p.to_string()))
                    }
                    _ => {
                        for (n, a) in i.addresses.iter().enumerate() {
                            if n > 0 {
                                b.push_str(", ");
                            }
                            let _ = write!(b, "{}/{}", a.address, a.prefix_len);
                            if wide {
                                let _ = write!(b, " ({})", a.scope);
                            }
                        }
                        if i.addresses.is_empty() {
                            b.push('-');
                        }
                    }
                }
            })?;
            out.line("")?;
            print_settings(out, &settings)?;
        }
    }
    Ok(warnings)
}

fn shown<T: std::fmt::Display>(k: &Known<T>) -> String {
    match k {
        Known::Known(v) => v.to_string(),
        Known::Unknown(r) => format!("unknown ({r})"),
    }
}

/// The settings section: one line per subject.
fn print_settings(out: &mut Out, s: &NodeSettings) -> std::io::Result<()> {
    out.heading("settings (this network namespace)")?;
    let bridge = |k: &Known<Option<u8>>| match k {
        Known::Known(Some(v)) => v.to_string(),
        Known::Known(None) => "absent (no br_netfilter)".into(),
        Known::Unknown(r) => format!("unknown ({r})"),
    };
    let strict: Vec<&str> = s
        .rp_filter
        .iter()
        .filter(|r| r.value == Known::Known(1))
        .map(|r| r.device.as_str())
        .collect();
    let all = s
        .rp_filter
        .iter()
        .find(|r| r.device == "all")
        .map_or_else(|| "unknown".into(), |r| shown(&r.value));
    let reserved = match &s.reserved_ports {
        Known::Known(v) if v.is_empty() => "none".to_string(),
        Known::Known(v) => v
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        Known::Unknown(r) => format!("unknown ({r})"),
    };
    let conntrack = match (&s.conntrack_count, &s.conntrack_max) {
        (Known::Known(c), Known::Known(m)) if *m > 0 => format!("{c} of {m} ({}%)", c * 100 / m),
        (c, m) => format!("{} of {}", shown(c), shown(m)),
    };
    let defaults = match &s.routes {
        Known::Known(_) => {
            let d: Vec<String> = s
                .default_routes(false)
                .into_iter()
                .chain(s.default_routes(true))
                .map(|r| {
                    let via = r.gateway.map(|g| format!("via {g} ")).unwrap_or_default();
                    let down = if r.linkdown { " linkdown" } else { "" };
                    format!("{via}dev {}{down}", r.dev.as_deref().unwrap_or("?"))
                })
                .collect();
            if d.is_empty() {
                "none".into()
            } else {
                d.join("; ")
            }
        }
        Known::Unknown(r) => format!("unknown ({r})"),
    };
    let resolves = match (&s.hostname, &s.hosts, &s.resolved) {
        (Known::Known(h), Known::Known(hosts), None) => {
            let a: Vec<String> = hosts
                .iter()
                .filter(|e| e.names.iter().any(|n| n.eq_ignore_ascii_case(h)))
                .map(|e| e.address.to_string())
                .collect();
            format!("{h} -> {} (/etc/hosts)", a.join(", "))
        }
        (Known::Known(h), _, Some(Known::Known(a))) if a.is_empty() => {
            format!("{h} -> does not resolve")
        }
        (Known::Known(h), _, Some(Known::Known(a))) => format!(
            "{h} -> {} (DNS)",
            a.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (h, _, r) => format!(
            "{} -> {}",
            shown(h),
            r.as_ref().and_then(|r| r.reason()).unwrap_or("unknown")
        ),
    };
    let lines = [
        ("hostname", resolves),
        (
            "forwarding",
            format!(
                "net.ipv4.ip_forward {}, net.ipv6.conf.all.forwarding {}",
                shown(&s.ip_forward),
                shown(&s.ipv6_forwarding)
            ),
        ),
        (
            "bridge netfilter",
            format!(
                "bridge-nf-call-iptables {}, bridge-nf-call-ip6tables {}",
                bridge(&s.bridge_nf_call_iptables),
                bridge(&s.bridge_nf_call_ip6tables)
            ),
        ),
        (
            "rp_filter",
            format!(
                "all {all}; strict on {}",
                if strict.is_empty() {
                    "none".into()
                } else {
                    strict.join(", ")
                }
            ),
        ),
        (
            "ports",
            format!(
                "ephemeral {}, reserved {reserved}",
                shown(&s.local_port_range)
            ),
        ),
        ("conntrack", conntrack),
        ("default route", defaults),
    ];
    out.table(&["SETTING", "VALUE"], lines.len(), |r, c, b| {
        b.push_str(if c == 0 { lines[r].0 } else { &lines[r].1 });
    })
}
