//! `kports conns`: established connections per listener and per remote service.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use std::io::Write;

use anyhow::Result;
use kports_core::conns::{self, ConnDirection, ConnRow, Grouping};
use kports_linux::census::{self, OwnerScope};
use kports_linux::sockdiag::{ESTABLISHED, LISTEN};

use super::{check_filters, query};
use crate::cli::{ConnsArgs, ConnsSort};
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out, endpoint};

pub fn run(args: &ConnsArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    let mut q = query(&args.filters, args.common.all_netns, OwnerScope::Every);
    q.udp = false;
    q.tcp_states = ESTABLISHED | LISTEN;
    let mut c = census::sockets(&q)?;
    let mut holders: BTreeSet<String> = BTreeSet::new();
    if args.filters.process.is_some() {
        holders.extend(
            c.sockets
                .iter()
                .flat_map(|s| s.processes.iter())
                .map(|p| p.name.clone()),
        );
    }
    let common = &args.common;
    c.sockets.retain(|s| common.keeps(s.family));
    let mut rows = conns::group(
        &c.sockets,
        Grouping {
            by_peer: args.by_peer,
            by_port: args.by_port,
        },
    );
    drop(std::mem::take(&mut c.sockets));
    rows.retain(|r| keep(args, r));
    if let Some(key) = args.sort {
        let port = |r: &ConnRow| r.local_port.or(r.remote_port);
        match key {
            ConnsSort::Established => rows.sort_by_key(|r| std::cmp::Reverse(r.established)),
            ConnsSort::Port => rows.sort_by_key(port),
            ConnsSort::Process => rows.sort_by(|a, b| a.process.cmp(&b.process)),
            ConnsSort::Component => rows.sort_by_key(|r| r.component),
        }
    }
    check_filters(
        &args.filters,
        rows.len(),
        holders.iter().map(String::as_str),
        &mut c.warnings,
    )?;

    let hostname = kports_linux::hostname();
    if args.common.output == Format::Json {
        out.json(&Document::new("conns", &hostname, &rows, &c.warnings))?;
        return Ok(Outcome::done(c.warnings));
    }
    let wide = args.common.output == Format::Wide;
    let ns = args.common.all_netns || wide;
    let mut headers = vec![
        "DIR",
        "ENDPOINT",
        "PROCESS",
        "PID",
        "COMPONENT",
        "ESTABLISHED",
    ];
    if ns {
        headers.insert(0, "NETNS");
    }
    // Peers, when asked for, are sub-rows under their listener.
    let lines: Vec<(usize, Option<usize>)> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let peers = r.peers.as_ref().map_or(0, Vec::len);
            std::iter::once((i, None)).chain((0..peers).map(move |p| (i, Some(p))))
        })
        .collect();
    out.table(&headers, lines.len(), |l, c, b| {
        let (i, peer) = lines[l];
        let r = &rows[i];
        let c = if ns { c } else { c + 1 };
        if let Some(p) = peer {
            let p = &r.peers.as_ref().map(|v| &v[p]);
            match (c, p) {
                (2, Some(p)) => {
                    let _ = write!(b, "  from {}", p.remote_address);
                }
                (6, Some(p)) => {
                    let _ = write!(b, "{}", p.established);
                }
                _ => {}
            }
            return;
        }
        match c {
            0 => b.push_str(&r.netns.as_ref().map_or_else(|| "-".into(), |n| n.label())),
            1 => b.push_str(match r.direction {
                ConnDirection::In => "in",
                ConnDirection::Out => "out",
            }),
            2 => match (
                r.direction,
                r.local_address,
                r.local_port,
                r.remote_address,
                r.remote_port,
            ) {
                (ConnDirection::In, Some(a), Some(p), _, _) => endpoint(b, &a, p),
                // --by-port: listeners on several addresses, each named.
                (ConnDirection::In, None, Some(p), _, _) => {
                    for (n, a) in r.local_addresses.iter().enumerate() {
                        if n > 0 {
                            b.push(',');
                        }
                        match a {
                            std::net::IpAddr::V4(a) => {
                                let _ = write!(b, "{a}");
                            }
                            std::net::IpAddr::V6(a) => {
                                let _ = write!(b, "[{a}]");
                            }
                        }
                    }
                    let _ = write!(b, ":{p}");
                }
                (ConnDirection::Out, _, _, Some(a), Some(p)) => {
                    b.push_str("-> ");
                    endpoint(b, &a, p);
                }
                _ => b.push('-'),
            },
            3 => b.push_str(r.process.as_deref().unwrap_or("-")),
            4 => {
                if r.pids.is_empty() {
                    b.push('-');
                }
                for (n, pid) in r.pids.iter().enumerate() {
                    let _ = write!(b, "{}{pid}", if n > 0 { "," } else { "" });
                }
            }
            5 => b.push_str(r.component.unwrap_or("-")),
            _ => {
                let _ = write!(b, "{}", r.established);
            }
        }
    })?;
    Ok(Outcome::done(c.warnings))
}

fn keep(args: &ConnsArgs, r: &ConnRow) -> bool {
    let f = &args.filters;
    let port = match r.direction {
        ConnDirection::In => r.local_port,
        ConnDirection::Out => r.remote_port,
    };
    (!args.inbound || r.direction == ConnDirection::In)
        && (!args.outbound || r.direction == ConnDirection::Out)
        && f.port
            .is_none_or(|(lo, hi)| port.is_some_and(|p| (lo..=hi).contains(&p)))
        && f.component.is_none_or(|c| r.component == Some(c))
        && f.process.as_deref().is_none_or(|p| match p.parse::<u32>() {
            Ok(pid) => r.pids.contains(&pid),
            Err(_) => r
                .process
                .as_deref()
                .is_some_and(|n| kports_core::names::names_process(p, n)),
        })
}
