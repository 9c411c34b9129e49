//! `kports node`: hostname, interfaces and addresses.

use std::fmt::Write as _;

use std::io::Write;

use anyhow::Result;
use kports_linux::census;

use crate::cli::NodeArgs;
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out};

pub fn run(args: &NodeArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    let hostname = kports_linux::hostname();
    let (mut ifs, warnings) =
        census::interfaces(std::path::Path::new("/proc"), args.common.all_netns)?;
    if let Some(kind) = &args.kind {
        ifs.retain(|i| &i.kind == kind);
    }
    let wide = args.common.output == Format::Wide;
    match args.common.output {
        Format::Json => out.json(&Document::new("node", &hostname, &ifs, &warnings))?,
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
        }
    }
    Ok(Outcome::done(warnings))
}
