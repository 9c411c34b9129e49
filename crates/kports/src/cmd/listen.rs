//! `kports listen`: listening sockets with owners and components.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use std::io::Write;

use anyhow::Result;
use kports_core::{Owner, SockState, Socket, UnixSocket};
use kports_linux::census::{self, OwnerScope};
use kports_linux::sockdiag::{ALL_STATES, LISTEN, UNCONN};

use super::{check_filters, keep, process_matches, query};
use crate::cli::{ListenArgs, ListenSort, ProtoArg};
use crate::cmd::Outcome;
use crate::output::{Document, Format, Out, endpoint};

pub fn run(args: &ListenArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    let owners = if args.all_owners || args.all_states {
        OwnerScope::Every
    } else {
        OwnerScope::UntilFound
    };
    let mut q = query(&args.filters, args.common.all_netns, owners);
    q.tcp = args.proto != Some(ProtoArg::Udp);
    q.udp = args.proto != Some(ProtoArg::Tcp);
    q.unix = args.unix;
    (q.tcp_states, q.udp_states) = if args.all_states {
        (ALL_STATES, ALL_STATES)
    } else {
        (LISTEN, UNCONN)
    };
    let mut c = census::sockets(&q)?;
    let mut holders: BTreeSet<String> = BTreeSet::new();
    if args.filters.process.is_some() {
        holders.extend(
            c.sockets
                .iter()
                .flat_map(|s| s.processes.iter())
                .chain(c.unix.iter().flat_map(|u| u.processes.iter()))
                .map(|p| p.name.clone()),
        );
    }
    let mut sockets = std::mem::take(&mut c.sockets);
    sockets.retain(|s| keep(&args.filters, s) && args.common.keeps(s.family));
    sockets.sort_unstable_by(|a, b| {
        let ns = |s: &Socket| s.netns.as_ref().map(|n| (!n.host, n.inode));
        (
            ns(a),
            a.proto,
            a.local_port,
            a.family,
            a.local_address,
            a.state,
            a.remote_address,
            a.remote_port,
        )
            .cmp(&(
                ns(b),
                b.proto,
                b.local_port,
                b.family,
                b.local_address,
                b.state,
                b.remote_address,
                b.remote_port,
            ))
    });
    if let Some(key) = args.sort {
        sort(&mut sockets, key);
    }
    let mut unix = c.unix;
    if args.unix {
        unix.retain(|u| {
            (args.all_states
                || u.state == SockState::Listen
                || (u.kind == "dgram" && !u.path.is_empty()))
                && args
                    .filters
                    .component
                    .is_none_or(|c| u.component == Some(c))
                && args
                    .filters
                    .process
                    .as_deref()
                    .is_none_or(|p| process_matches(p, &u.processes))
                && args.filters.port.is_none()
        });
        unix.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
    }
    let kept = sockets.len() + if args.unix { unix.len() } else { 0 };
    check_filters(
        &args.filters,
        kept,
        holders.iter().map(String::as_str),
        &mut c.warnings,
    )?;

    let hostname = kports_linux::hostname();
    if args.common.output == Format::Json {
        let doc = Document::new("listen", &hostname, &sockets, &c.warnings)
            .with_unix(args.unix.then_some(&unix));
        out.json(&doc)?;
        return Ok(Outcome::done(c.warnings));
    }
    print_sockets(
        out,
        &sockets,
        args.common.output == Format::Wide,
        args.all_states,
        args.common.all_netns,
    )?;
    if args.unix {
        out.line("")?;
        print_unix(out, &unix, args.common.output == Format::Wide)?;
    }
    Ok(Outcome::done(c.warnings))
}

/// `--sort`: a stable sort, so rows equal on the key keep the default order.
fn sort(sockets: &mut [Socket], key: ListenSort) {
    let first = |s: &Socket| s.processes.first().map(|p| (p.name.clone(), p.pid));
    match key {
        ListenSort::Port => sockets.sort_by_key(|s| (s.local_port, s.local_address)),
        ListenSort::Address => sockets.sort_by_key(|s| (s.local_address, s.local_port)),
        ListenSort::Process => sockets.sort_by_key(|s| first(s).map(|p| p.0)),
        ListenSort::Pid => sockets.sort_by_key(|s| first(s).map(|p| p.1)),
        ListenSort::Component => sockets.sort_by_key(|s| s.component),
    }
}

/// Name of a socket's owner for tables: process names, `kernel`, `unknown`, or `-`.
fn owner_name(owner: Owner, procs: &[std::sync::Arc<kports_core::ProcessRef>], b: &mut String) {
    match owner {
        Owner::Process => {
            let mut names: Vec<&str> = procs.iter().map(|p| p.name.as_str()).collect();
            names.dedup();
            b.push_str(&names.join(","));
        }
        Owner::Kernel => b.push_str("kernel"),
        Owner::Unknown => b.push_str("unknown"),
        Owner::None => b.push('-'),
    }
}

fn pids(procs: &[std::sync::Arc<kports_core::ProcessRef>], b: &mut String) {
    if procs.is_empty() {
        b.push('-');
    }
    for (i, p) in procs.iter().enumerate() {
        if i > 0 {
            b.push(',');
        }
        let _ = write!(b, "{}", p.pid);
    }
}

fn print_sockets(
    out: &mut Out<impl Write>,
    s: &[Socket],
    wide: bool,
    all_states: bool,
    all_netns: bool,
) -> std::io::Result<()> {
    #[derive(Clone, Copy)]
    enum Col {
        Netns,
        Proto,
        State,
        Local,
        Remote,
        Process,
        Pid,
        Component,
        Uid,
        Inode,
        Container,
        Pod,
        Cmdline,
    }
    let mut cols = vec![];
    if all_netns || wide {
        cols.push(("NETNS", Col::Netns));
    }
    cols.push(("PROTO", Col::Proto));
    if all_states || wide {
        cols.push(("STATE", Col::State));
    }
    cols.push(("LOCAL", Col::Local));
    if all_states || wide {
        cols.push(("REMOTE", Col::Remote));
    }
    cols.extend([
        ("PROCESS", Col::Process),
        ("PID", Col::Pid),
        ("COMPONENT", Col::Component),
    ]);
    if wide {
        cols.extend([
            ("UID", Col::Uid),
            ("INODE", Col::Inode),
            ("CONTAINER", Col::Container),
            ("POD", Col::Pod),
            ("COMMAND", Col::Cmdline),
        ]);
    }
    let headers: Vec<&str> = cols.iter().map(|c| c.0).collect();
    out.table(&headers, s.len(), |r, c, b| {
        let s = &s[r];
        let first = s.processes.first();
        match cols[c].1 {
            Col::Netns => b.push_str(&s.netns.as_ref().map_or_else(|| "-".into(), |n| n.label())),
            Col::Proto => b.push_str(s.proto.as_str()),
            Col::State => b.push_str(s.state.ss_name()),
            Col::Local => {
                endpoint(b, &s.local_address, s.local_port);
                if let Some(i) = &s.interface {
                    let _ = write!(b, "%{i}");
                }
            }
            Col::Remote => endpoint(b, &s.remote_address, s.remote_port),
            Col::Process => owner_name(s.owner, &s.processes, b),
            Col::Pid => pids(&s.processes, b),
            Col::Component => b.push_str(s.component.unwrap_or("-")),
            Col::Uid => {
                let _ = write!(b, "{}", s.uid);
            }
            Col::Inode => {
                let _ = write!(b, "{}", s.inode);
            }
            Col::Container => b.push_str(
                first
                    .and_then(|p| p.container_id.as_deref())
                    .map_or("-", |c| &c[..c.len().min(13)]),
            ),
            Col::Pod => b.push_str(first.and_then(|p| p.pod_uid.as_deref()).unwrap_or("-")),
            Col::Cmdline => b.push_str(first.map_or("-", |p| p.cmdline.as_str())),
        }
    })
}

fn print_unix(out: &mut Out<impl Write>, u: &[UnixSocket], wide: bool) -> std::io::Result<()> {
    let mut headers = vec!["UNIX", "STATE", "PATH", "PROCESS", "PID", "COMPONENT"];
    if wide {
        headers.extend(["INODE", "PEER"]);
    }
    out.table(&headers, u.len(), |r, c, b| {
        let u = &u[r];
        match c {
            0 => b.push_str(u.kind),
            1 => b.push_str(u.state.ss_name()),
            2 => b.push_str(if u.path.is_empty() { "-" } else { &u.path }),
            3 => owner_name(u.owner, &u.processes, b),
            4 => pids(&u.processes, b),
            5 => b.push_str(u.component.unwrap_or("-")),
            6 => {
                let _ = write!(b, "{}", u.inode);
            }
            _ => {
                let _ = write!(b, "{}", u.peer_inode);
            }
        }
    })
}
