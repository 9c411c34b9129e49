//! `kports node`: hostname, interfaces and addresses, and the namespace's own network settings
//! (forwarding, bridge netfilter, rp_filter, port ranges, conntrack, default routes).

use std::fmt::Write as _;

use std::io::Write;

use anyhow::Result;
use kports_core::settings::NodeSettings;
use kports_linux::census;
use kports_node::NodeIo;

use crate::cli::NodeArgs;
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out};

pub fn run(args: &NodeArgs, io: &dyn NodeIo, out: &mut Out<impl Write>) -> Result<Outcome> {
    let hostname = kports_linux::hostname();
    let (mut ifs, mut warnings) =
        census::interfaces(std::path::Path::new("/proc"), args.common.all_netns)?;
    if args.common.ipv4 || args.common.ipv6 {
        for i in &mut ifs {
            i.addresses.retain(|a| args.common.keeps(a.family));
        }
    }
    if let Some(kind) = &args.kind {
        let kind = crate::filter::kind(kind, ifs.iter().map(|i| i.kind.as_str()))?;
        ifs.retain(|i| i.kind == kind);
        if ifs.is_empty() {
            warnings.push(crate::filter::nothing_matched(&[("kind", Some(kind))]));
        }
    }
    let wide = args.common.output == Format::Wide;
    let settings = io.settings(&[]);
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
    Ok(Outcome::done(warnings))
}

/// The settings section: one line per subject.
fn print_settings(out: &mut Out<impl Write>, s: &NodeSettings) -> std::io::Result<()> {
    out.heading("settings (this network namespace)")?;
    let lines = s.summary();
    out.table(&["SETTING", "VALUE"], lines.len(), |r, c, b| {
        b.push_str(if c == 0 { lines[r].0 } else { &lines[r].1 });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_section_names_each_subject_on_one_line() {
        let mut s = kports_node::Replay::example_settings("w1", "192.0.2.21".parse().unwrap());
        s.conntrack_max = kports_core::settings::Known::Unknown(
            "/proc/sys/net/netfilter/nf_conntrack_max does not exist".into(),
        );
        let mut out = Out::new(Vec::new(), false);
        print_settings(&mut out, &s).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert_eq!(text, SETTINGS, "{text}");
    }

    const SETTINGS: &str = "\
settings (this network namespace)
SETTING           VALUE
hostname          w1 -> 192.0.2.21 (/etc/hosts)
forwarding        net.ipv4.ip_forward 1, net.ipv6.conf.all.forwarding 0
bridge netfilter  bridge-nf-call-iptables 1, bridge-nf-call-ip6tables 1
rp_filter         all 2; strict on none
ports             ephemeral 32768-60999, reserved none
conntrack         120 of unknown (/proc/sys/net/netfilter/nf_conntrack_max does not exist)
default route     via 192.0.2.1 dev eth0
";
}
