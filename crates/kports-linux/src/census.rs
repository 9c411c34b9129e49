//! The socket census: dump sockets in one or every network namespace, walk `/proc` for their
//! owners, and join the two. This is the one entry point the binary calls for sockets.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kports_core::{
    CgroupRef, Family, Interface, Netns, Owner, ProcessInfo, ProcessRef, Processes, Proto, Socket,
    UnixSocket, Warning, cgroup, component, names, no_processes, redact,
};

use crate::limits;
use crate::netlink::Netlink;
use crate::netns::{self, NsHandle};
use crate::procfs::{self, InodeHasher, Want};
use crate::{Error, link, procnet, sockdiag};

/// Where socket lists come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketSource {
    /// Netlink sock_diag, falling back to `/proc/net` where it is unavailable.
    Auto,
    Netlink,
    Proc,
}

/// How far to look for owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerScope {
    /// Walk every process: every holder of every socket.
    Every,
    /// Stop once each socket has a holder, then look at those holders' children only.
    UntilFound,
    /// No owners at all.
    Skip,
}

/// What to collect.
#[derive(Debug, Clone)]
pub struct Query {
    pub source: SocketSource,
    pub tcp: bool,
    pub udp: bool,
    pub unix: bool,
    /// TCP states to list (1 << kernel state number).
    pub tcp_states: u32,
    /// UDP states to list: 1 << 7 (UNCONN) for bound sockets, 1 << 1 for connected ones.
    pub udp_states: u32,
    pub all_netns: bool,
    pub owners: OwnerScope,
    pub threads: usize,
    pub proc_root: PathBuf,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            source: SocketSource::Auto,
            tcp: true,
            udp: true,
            unix: false,
            tcp_states: sockdiag::ALL_STATES,
            udp_states: sockdiag::ALL_STATES,
            all_netns: false,
            owners: OwnerScope::Every,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Sockets with owners, plus what went wrong on the way.
#[derive(Debug, Default)]
pub struct Census {
    pub sockets: Vec<Socket>,
    pub unix: Vec<UnixSocket>,
    pub warnings: Vec<Warning>,
}

/// What one namespace's dump returned.
#[derive(Debug, Default)]
struct NsDump {
    sockets: Vec<Socket>,
    unix: Vec<UnixSocket>,
    /// ifindex -> (name, kind, tunnel port), for bound sockets and kernel tunnel sockets.
    links: HashMap<u32, (String, String, Option<u16>)>,
    bound: Vec<(usize, u32)>,
    warnings: Vec<Warning>,
}

/// Takes the census `q` asks for.
pub fn sockets(q: &Query) -> Result<Census, Error> {
    let mut warnings = Vec::new();
    let namespaces = if q.all_netns {
        let (list, hidden) =
            netns::all(&q.proc_root).map_err(|e| Error::io("the list of network namespaces", e))?;
        warnings.extend(hidden_warning(hidden));
        list
    } else {
        vec![
            netns::current(&q.proc_root)
                .map_err(|e| Error::io("this thread's network namespace", e))?,
        ]
    };
    let here = netns::current(&q.proc_root).map(|h| h.netns.inode).ok();

    let (dumps, owners) = match q.owners {
        OwnerScope::Skip => (dump_all(q, &namespaces, here)?, None),
        OwnerScope::UntilFound => {
            let dumps = dump_all(q, &namespaces, here)?;
            // A tunnel device's UDP socket is the kernel's: no process will be found for it,
            // and waiting for one would keep the walk from ever stopping early.
            let wanted: HashSet<u64> = dumps
                .iter()
                .flat_map(|(_, d)| {
                    d.sockets
                        .iter()
                        .filter(|s| {
                            !(s.proto == Proto::Udp
                                && kernel_tunnel(&d.links, s.local_port).is_some())
                        })
                        .map(|s| s.inode)
                        .chain(d.unix.iter().map(|u| u.inode))
                })
                .filter(|&i| i != 0)
                .collect();
            let owners = procfs::walk(&q.proc_root, &Want::Only(wanted), q.threads);
            (dumps, Some(owners))
        }
        OwnerScope::Every => {
            // The walk and the dumps are independent: run them side by side. The walk gets
            // every core: it is the longer of the two (about 4/5 of the CPU time at 200k
            // sockets), and once the dump is done its thread would otherwise leave a core idle.
            std::thread::scope(|s| {
                let walker = s.spawn(|| procfs::walk(&q.proc_root, &Want::All, q.threads));
                let dumps = dump_all(q, &namespaces, here);
                let owners = walker
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("owner walk panicked")));
                dumps.map(|d| (d, Some(owners)))
            })?
        }
    };

    let owners = match owners {
        Some(Ok(o)) => Some(o),
        Some(Err(e)) => {
            warnings.push(Warning::new(
                "owners-unreadable",
                format!(
                    "cannot list processes under {}: {e}; owners are unknown",
                    q.proc_root.display()
                ),
            ));
            None
        }
        None => None,
    };
    let mut census = Census {
        warnings,
        ..Census::default()
    };
    let mut procs = ProcTable::new(&q.proc_root);
    let mut cgroups = Cgroups::default();
    census.sockets.reserve_exact(if dumps.len() > 1 {
        dumps.iter().map(|(_, d)| d.sockets.len()).sum()
    } else {
        0
    });
    for (ns, mut d) in dumps {
        census.warnings.append(&mut d.warnings);
        let ns = Arc::new(ns.netns);
        for &(i, ifindex) in &d.bound {
            if let Some(s) = d.sockets.get_mut(i) {
                s.interface = Some(
                    d.links
                        .get(&ifindex)
                        .map_or_else(|| format!("if{ifindex}"), |l| l.0.clone()),
                );
            }
        }
        // Visit the sockets in inode order: each lookup in the walk's sorted owner list then
        // lands next to the previous one instead of on cold cache lines (the dump comes in
        // kernel hash order). The order changes nothing else: each socket gets the same answer.
        let mut order: Vec<usize> = (0..d.sockets.len()).collect();
        order.sort_unstable_by_key(|&i| d.sockets[i].inode);
        for i in order {
            let s = &mut d.sockets[i];
            s.netns = Some(ns.clone());
            (s.owner, s.processes, s.component) = procs.attribute(s.inode, owners.as_ref());
            // A VXLAN or Geneve device holds its UDP port exclusively: an ownerless socket on
            // that port is the device's, even where some processes could not be read.
            if s.owner != Owner::Process && s.proto == Proto::Udp {
                if let Some(c) = kernel_tunnel(&d.links, s.local_port) {
                    (s.owner, s.component) = (Owner::Kernel, Some(c));
                }
            }
            if s.owner == Owner::Unknown {
                s.cgroup = s
                    .cgroup_id
                    .filter(|&id| id > 1)
                    .and_then(|id| cgroups.name(id));
            }
        }
        // Moved, not copied: at hundreds of thousands of sockets a second list would double
        // the peak memory.
        if census.sockets.is_empty() {
            census.sockets = std::mem::take(&mut d.sockets);
        } else {
            census.sockets.append(&mut d.sockets);
        }
        for mut u in d.unix {
            u.netns = Some(ns.clone());
            (u.owner, u.processes, u.component) = procs.attribute(u.inode, owners.as_ref());
            census.unix.push(u);
        }
    }
    // Unreadable processes matter only where they leave a socket without a known owner.
    let unknown = census
        .sockets
        .iter()
        .filter(|s| s.owner == Owner::Unknown)
        .count()
        + census
            .unix
            .iter()
            .filter(|u| u.owner == Owner::Unknown)
            .count();
    if let Some(o) = owners
        .as_ref()
        .filter(|o| !o.denied.is_empty() && unknown > 0)
    {
        census.warnings.push(denied_warning(&o.denied, unknown));
    }
    Ok(census)
}

/// Namespaces only reachable through processes kports may not inspect.
fn hidden_warning(processes: usize) -> Option<Warning> {
    (processes > 0).then(|| {
        Warning::new(
            "netns-hidden",
            format!(
                "cannot see the network namespace of {processes} process{}: namespaces only they \
                 use are missing; run as root, or grant CAP_SYS_PTRACE",
                if processes == 1 { "" } else { "es" }
            ),
        )
    })
}

fn denied_warning(pids: &[u32], unknown: usize) -> Warning {
    let shown: Vec<String> = pids.iter().take(8).map(u32::to_string).collect();
    let more = if pids.len() > 8 {
        format!(" and {} more", pids.len() - 8)
    } else {
        String::new()
    };
    let plural = if pids.len() == 1 {
        "process"
    } else {
        "processes"
    };
    // SAFETY: geteuid cannot fail.
    let hint = if unsafe { libc::geteuid() } == 0 {
        "kports runs as root but is denied ptrace access to them (a security module, or a process \
         of another user namespace); grant CAP_SYS_PTRACE or run kports where they run"
    } else {
        "run as root, or grant CAP_SYS_PTRACE (or CAP_DAC_READ_SEARCH)"
    };
    let sockets = if unknown == 1 {
        "socket shows"
    } else {
        "sockets show"
    };
    Warning::new(
        "owners-incomplete",
        format!(
            "{unknown} {sockets} owner \"unknown\": kports cannot read the open files of {} \
             {plural} (pid {}{more}); {hint}",
            pids.len(),
            shown.join(", ")
        ),
    )
}

/// The component of a socket the kernel holds: a VXLAN or Geneve device's UDP port.
fn kernel_tunnel(
    links: &HashMap<u32, (String, String, Option<u16>)>,
    port: u16,
) -> Option<&'static str> {
    links
        .values()
        .find(|(_, _, p)| *p == Some(port))
        .map(|(_, kind, _)| kports_core::component::kernel_tunnel(kind))
}

fn dump_all(
    q: &Query,
    namespaces: &[NsHandle],
    here: Option<u64>,
) -> Result<Vec<(NsHandle, NsDump)>, Error> {
    let mut out = Vec::with_capacity(namespaces.len());
    for ns in namespaces {
        let dump = if Some(ns.netns.inode) == here {
            dump_ns(q)?
        } else {
            let q2 = q.clone();
            match netns::run_in(&ns.path, move || dump_ns(&q2)) {
                Ok(r) => r?,
                // The namespace vanished between listing and entering it: skip quietly.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let mut d = NsDump::default();
                    d.warnings.push(Warning::new(
                        "netns-unreadable",
                        format!(
                            "cannot enter network namespace {}: {e} (needs root or CAP_SYS_ADMIN)",
                            ns.netns.label()
                        ),
                    ));
                    d
                }
            }
        };
        out.push((ns.clone(), dump));
    }
    Ok(out)
}

/// Dumps the calling thread's namespace.
fn dump_ns(q: &Query) -> Result<NsDump, Error> {
    dump_ns_with(q, || Netlink::open(libc::NETLINK_SOCK_DIAG))
}

/// [`dump_ns`] with the sock_diag socket opened by `open_diag`, so that tests can take it away.
fn dump_ns_with(q: &Query, open_diag: impl Fn() -> io::Result<Netlink>) -> Result<NsDump, Error> {
    let mut d = NsDump::default();
    let protos: Vec<(Proto, &str)> = [(Proto::Tcp, "tcp"), (Proto::Udp, "udp")]
        .into_iter()
        .filter(|(p, _)| match p {
            Proto::Tcp => q.tcp,
            Proto::Udp => q.udp,
        })
        .collect();
    if q.source != SocketSource::Proc {
        d.sockets.reserve(socket_estimate(&q.proc_root));
    }
    let mut nl = match q.source {
        SocketSource::Proc => None,
        _ => match open_diag() {
            Ok(nl) => Some(nl),
            Err(e) if q.source == SocketSource::Netlink => return Err(Error::NoSockDiag(e)),
            Err(e) => {
                d.warnings.push(fallback_warning("sockets", &e));
                None
            }
        },
    };
    for &(proto, pname) in &protos {
        let states = match proto {
            Proto::Tcp => q.tcp_states,
            Proto::Udp => q.udp_states,
        };
        for family in [Family::Ipv4, Family::Ipv6] {
            if let Some(n) = nl.as_mut() {
                let before = d.sockets.len();
                match sockdiag::dump_inet(n, family, proto, states, &mut d.sockets, &mut d.bound) {
                    Ok(()) => continue,
                    Err(e) if q.source == SocketSource::Netlink => {
                        return Err(Error::NoSockDiag(e));
                    }
                    Err(e) => {
                        d.sockets.truncate(before);
                        d.bound.retain(|&(i, _)| i < before);
                        d.warnings.push(fallback_warning(pname, &e));
                    }
                }
            }
            let file = format!("{pname}{}", if family == Family::Ipv6 { "6" } else { "" });
            let path = q.proc_root.join("thread-self/net").join(&file);
            match limits::read_text(&path, &limits::PROC_NET) {
                Ok(text) => {
                    let p = procnet::parse_inet(&text, proto, family, states);
                    if p.malformed > 0 {
                        d.warnings.push(malformed_warning(&path, p.malformed));
                    }
                    d.sockets.extend(p.items);
                }
                // No IPv6 in this kernel or namespace: nothing to list.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path.display().to_string(), e)),
            }
        }
    }
    if q.unix {
        let via_netlink = nl.as_mut().map(|n| sockdiag::dump_unix(n, &mut d.unix));
        if !matches!(via_netlink, Some(Ok(()))) {
            if let Some(Err(e)) = via_netlink {
                if q.source == SocketSource::Netlink {
                    return Err(Error::NoSockDiag(e));
                }
                d.warnings.push(fallback_warning("unix", &e));
                d.unix.clear();
            }
            let path = q.proc_root.join("thread-self/net/unix");
            let text = limits::read_text(&path, &limits::PROC_NET)
                .map_err(|e| Error::io(path.display().to_string(), e))?;
            let p = procnet::parse_unix(&text);
            if p.malformed > 0 {
                d.warnings.push(malformed_warning(&path, p.malformed));
            }
            d.unix.extend(p.items);
        }
    }
    let needs_links = !d.bound.is_empty() || d.sockets.iter().any(|s| s.proto == Proto::Udp);
    if needs_links {
        if let Ok(mut rt) = Netlink::open(libc::NETLINK_ROUTE) {
            if let Ok(ifs) = link::links(&mut rt) {
                d.links = ifs
                    .into_iter()
                    .map(|i| (i.index, (i.name, i.kind, i.tunnel_port)))
                    .collect();
            }
        }
    }
    Ok(d)
}

/// Sockets in use in this namespace per `/proc/net/sockstat{,6}`, to size the list once.
fn socket_estimate(proc_root: &Path) -> usize {
    let mut n = 0usize;
    for f in ["sockstat", "sockstat6"] {
        let path = proc_root.join("thread-self/net").join(f);
        let Ok(text) = limits::read_small_text(&path, limits::SMALL_FILE_BYTES) else {
            continue;
        };
        for line in text
            .lines()
            .filter(|l| l.starts_with("TCP") || l.starts_with("UDP"))
        {
            let mut it = line.split_ascii_whitespace();
            while let Some(w) = it.next() {
                if w == "inuse" || w == "tw" {
                    n += it.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
                }
            }
        }
    }
    n.min(4_000_000)
}

fn fallback_warning(what: &str, e: &io::Error) -> Warning {
    Warning::new(
        "sock-diag-unavailable",
        format!("netlink sock_diag for {what} failed ({e}); read /proc/net instead"),
    )
}

fn malformed_warning(path: &Path, n: usize) -> Warning {
    Warning::new(
        "malformed-proc-lines",
        format!(
            "{n} lines of {} did not parse and were skipped",
            path.display()
        ),
    )
}

/// cgroup ids to names, read from /sys/fs/cgroup once, when the first socket needs it.
#[derive(Default)]
struct Cgroups {
    paths: Option<HashMap<u64, Arc<CgroupRef>>>,
}

impl Cgroups {
    fn name(&mut self, id: u64) -> Option<Arc<CgroupRef>> {
        let paths = self.paths.get_or_insert_with(|| {
            netns::cgroup_paths(Path::new("/sys/fs/cgroup"))
                .into_iter()
                .map(|(id, path)| {
                    let (container_id, pod_uid) = cgroup::container_of(&format!("0::{path}"));
                    (
                        id,
                        Arc::new(CgroupRef {
                            path,
                            container_id,
                            pod_uid,
                        }),
                    )
                })
                .collect()
        });
        paths.get(&id).cloned()
    }
}

/// A process as shown, with the component it is.
pub type Shown = (Arc<ProcessRef>, Option<&'static str>);

/// Reads each owner process once and shares its record between its sockets.
struct ProcTable<'a> {
    root: &'a Path,
    by_pid: HashMap<u32, Option<Shown>>,
    /// Looked up once per socket: a cheap hasher instead of SipHash (about 3% of the CPU time
    /// of a census of 200k sockets).
    sets: HashMap<Vec<u32>, (Processes, Option<&'static str>), BuildHasherDefault<InodeHasher>>,
    key: Vec<u32>,
}

impl<'a> ProcTable<'a> {
    fn new(root: &'a Path) -> ProcTable<'a> {
        ProcTable {
            root,
            by_pid: HashMap::new(),
            sets: HashMap::default(),
            key: Vec::new(),
        }
    }

    fn attribute(
        &mut self,
        inode: u64,
        owners: Option<&procfs::Owners>,
    ) -> (Owner, Processes, Option<&'static str>) {
        if inode == 0 {
            return (Owner::None, no_processes(), None);
        }
        let Some(o) = owners else {
            return (Owner::Unknown, no_processes(), None);
        };
        let held = o.pids(inode);
        if held.is_empty() {
            let owner = if o.denied.is_empty() && o.exhaustive {
                Owner::Kernel
            } else {
                Owner::Unknown
            };
            return (owner, no_processes(), None);
        }
        // Looked up by a reused slice: no allocation per socket.
        self.key.clear();
        self.key.extend(held.iter().map(|&(_, pid)| pid));
        if let Some((p, c)) = self.sets.get(self.key.as_slice()) {
            return (owner_of(p), p.clone(), *c);
        }
        let mut list = Vec::with_capacity(held.len());
        let mut comp = None;
        for &pid in &self.key {
            let root = self.root;
            let entry = self
                .by_pid
                .entry(pid)
                .or_insert_with(|| procfs::process_info(root, pid).map(|i| process_ref(&i)));
            if let Some((p, c)) = entry {
                list.push(p.clone());
                comp = comp.or(*c);
            }
        }
        let procs: Processes = Arc::new(list);
        self.sets.insert(self.key.clone(), (procs.clone(), comp));
        (owner_of(&procs), procs, comp)
    }
}

/// Every holder exited between the walk and now: say so rather than "kernel".
fn owner_of(procs: &Processes) -> Owner {
    if procs.is_empty() {
        Owner::Unknown
    } else {
        Owner::Process
    }
}

/// What kports shows of a process: full name, redacted command line, container and pod.
pub fn process_ref(i: &ProcessInfo) -> Shown {
    let (container_id, pod_uid) = cgroup::container_of(&i.cgroup);
    let shown = redact::redact(&i.argv);
    let p = ProcessRef {
        pid: i.pid,
        name: names::process_name(i),
        cmdline: shown.text,
        secrets: shown.hidden,
        container_id,
        pod_uid,
    };
    (Arc::new(p), component::recognise(i))
}

/// Interfaces of one or every namespace.
pub fn interfaces(
    proc_root: &Path,
    all_netns: bool,
) -> Result<(Vec<Interface>, Vec<Warning>), Error> {
    let mut warnings = Vec::new();
    let here =
        netns::current(proc_root).map_err(|e| Error::io("this thread's network namespace", e))?;
    let namespaces = if all_netns {
        let (list, hidden) =
            netns::all(proc_root).map_err(|e| Error::io("the list of network namespaces", e))?;
        warnings.extend(hidden_warning(hidden));
        list
    } else {
        vec![here.clone()]
    };
    let mut out = Vec::new();
    for ns in namespaces {
        let result = if ns.netns.inode == here.netns.inode {
            Netlink::open(libc::NETLINK_ROUTE).and_then(|mut nl| link::interfaces(&mut nl))
        } else {
            netns::run_in(&ns.path, || {
                Netlink::open(libc::NETLINK_ROUTE).and_then(|mut nl| link::interfaces(&mut nl))
            })
            .and_then(|r| r)
        };
        match result {
            Ok(ifs) => {
                let n: Arc<Netns> = Arc::new(ns.netns.clone());
                out.extend(ifs.into_iter().map(|mut i| {
                    i.netns = Some(n.clone());
                    i
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && all_netns => {}
            Err(e) if all_netns => warnings.push(Warning::new(
                "netns-unreadable",
                format!("cannot list interfaces of network namespace {}: {e} (needs root or CAP_SYS_ADMIN)", ns.netns.label()),
            )),
            Err(e) => return Err(Error::io("interfaces (rtnetlink)", e)),
        }
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_sock_diag() -> io::Result<Netlink> {
        Err(io::Error::from_raw_os_error(libc::EPROTONOSUPPORT))
    }

    fn keys(d: &NsDump) -> Vec<(Proto, u16, u64)> {
        let mut v: Vec<_> = d
            .sockets
            .iter()
            .map(|s| (s.proto, s.local_port, s.inode))
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn without_sock_diag_auto_falls_back_to_proc_net_and_says_so() {
        // Listeners of this test process's own namespace, stable while the test runs.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let q = Query {
            tcp_states: sockdiag::LISTEN,
            udp: false,
            ..Query::default()
        };
        let auto = dump_ns_with(&q, no_sock_diag).unwrap();
        assert!(
            auto.warnings
                .iter()
                .any(|w| w.code == "sock-diag-unavailable"),
            "{:?}",
            auto.warnings
        );
        assert!(auto.sockets.iter().any(|s| s.local_port == port));
        let proc = dump_ns_with(
            &Query {
                source: SocketSource::Proc,
                ..q.clone()
            },
            no_sock_diag,
        )
        .unwrap();
        assert!(proc.warnings.is_empty());
        assert_eq!(keys(&auto), keys(&proc));
    }

    #[test]
    fn netlink_only_fails_clearly_without_sock_diag() {
        let q = Query {
            source: SocketSource::Netlink,
            ..Query::default()
        };
        let e = dump_ns_with(&q, no_sock_diag).unwrap_err();
        assert!(e.to_string().contains("sock_diag is unavailable"), "{e}");
    }
}
