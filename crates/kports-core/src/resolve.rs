//! The running components' flags and the tunnel devices, applied to the catalog once.
//!
//! A port or address that a running component's command line sets (`--secure-port=7443`,
//! `--listen-client-urls`, `--read-only-port=0`) or that a tunnel device carries (`flannel.1`'s
//! `dstport 4789`) wins over the catalog's default. [`resolve_all`] reads them for every catalog
//! entry in one pass, with a warning for each flag it cannot read, and everything that judges
//! ports (the check, `explain`, the firewall's required ports and findings) works on its result.

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::{Catalog, Entry, PortRange};
use crate::finding::Setting;
use crate::flags::{self, Host};
use crate::{Interface, ProcessRef, Socket, Warning};

/// An entry with the port and addresses the node's flags and devices give it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The catalog entry (a copy: a resolution outlives no borrow of the catalog).
    pub entry: Entry,
    pub port: PortRange,
    /// Where the flags say it binds, when they say.
    pub addresses: Option<Vec<Host>>,
    pub settings: Vec<Setting>,
    /// A flag turned the port off (`--read-only-port=0`).
    pub off: bool,
    /// Why the entry's CNI backend is not the one in use here (`flannel uses another backend
    /// here: device flannel.1`); `None` when it is, or when nothing shows which one is.
    pub not_in_use: Option<String>,
}

/// Whether interface `name` matches a device pattern (`cali*` is a prefix).
fn device_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Marks the entries of a CNI backend that is not the one in use: where a device of one of the
/// CNI's backends exists, the entries whose own devices do not are left out.
fn mark_backends(resolved: &mut [Resolved], interfaces: &[Interface]) {
    let present = |e: &Entry| -> Vec<&str> {
        interfaces
            .iter()
            .filter(|i| e.backend_devices.iter().any(|d| device_matches(d, &i.name)))
            .map(|i| i.name.as_str())
            .collect()
    };
    let in_use: Vec<(String, Vec<String>)> = resolved
        .iter()
        .filter(|r| !r.entry.backend_devices.is_empty())
        .filter_map(|r| {
            let devs = present(&r.entry);
            let cni = r.entry.cni.clone()?;
            (!devs.is_empty()).then(|| (cni, devs.iter().map(|d| d.to_string()).collect()))
        })
        .collect();
    for r in resolved.iter_mut() {
        let e = &r.entry;
        let Some(cni) = &e.cni else { continue };
        if e.backend_devices.is_empty() || !present(e).is_empty() {
            continue;
        }
        let mut shown: Vec<&str> = in_use
            .iter()
            .filter(|(c, _)| c == cni)
            .flat_map(|(_, d)| d.iter().map(String::as_str))
            .collect();
        shown.sort_unstable();
        shown.dedup();
        if !shown.is_empty() {
            r.not_in_use = Some(format!(
                "{cni} uses another backend here (device {})",
                shown.join(", ")
            ));
        }
    }
}

/// The first process of each component in the census, for its command line.
pub fn component_processes(sockets: &[Socket]) -> HashMap<&'static str, Arc<ProcessRef>> {
    let mut m = HashMap::new();
    for s in sockets {
        if let (Some(c), Some(p)) = (s.component, s.processes.first()) {
            m.entry(c).or_insert_with(|| p.clone());
        }
    }
    m
}

/// Applies the running component's flags and the tunnel devices to `e`.
pub fn resolve(
    e: &Entry,
    procs: &HashMap<&'static str, Arc<ProcessRef>>,
    interfaces: &[Interface],
    warnings: &mut Vec<Warning>,
) -> Resolved {
    let mut r = Resolved {
        entry: e.clone(),
        port: e.port,
        addresses: None,
        settings: Vec::new(),
        off: false,
        not_in_use: None,
    };
    let of = e.flags.of.as_deref().unwrap_or(&e.component);
    if let Some(p) = procs.get(of) {
        let mut bad = |err: flags::FlagError| {
            warnings.push(Warning::new(
                "flag-unreadable",
                format!(
                    "cannot read {err} of {} (pid {}); {} is checked at its catalog default",
                    p.name,
                    p.pid,
                    e.label()
                ),
            ));
        };
        let setting = |flag: &str, v: &str, r: &mut Resolved| {
            r.settings.push(Setting {
                pid: Some(p.pid),
                source: p.name.clone(),
                value: format!("{flag}={v}"),
            });
        };
        if let Some(f) = &e.flags.port {
            if let Some(v) = flags::value(&p.cmdline, f) {
                match flags::parse_port(f, v) {
                    Ok(Some(port)) => r.port = PortRange::single(port),
                    Ok(None) => r.off = true,
                    Err(err) => bad(err),
                }
                setting(f, v, &mut r);
            }
        }
        if let Some(f) = &e.flags.address {
            if let Some(v) = flags::value(&p.cmdline, f) {
                match flags::parse_address(f, v) {
                    Ok(h) => r.addresses = Some(vec![h]),
                    Err(err) => bad(err),
                }
                setting(f, v, &mut r);
            }
        }
        if let Some(f) = &e.flags.endpoint {
            if let Some(v) = flags::value(&p.cmdline, f) {
                match flags::parse_endpoint(f, v) {
                    Ok((h, port)) => {
                        r.addresses = Some(vec![h]);
                        if let Some(port) = port {
                            r.port = PortRange::single(port);
                        }
                    }
                    Err(err) => bad(err),
                }
                setting(f, v, &mut r);
            }
        }
        if let Some(f) = &e.flags.urls {
            if let Some(v) = flags::value(&p.cmdline, f) {
                match flags::parse_urls(f, v) {
                    Ok(urls) => {
                        if let Some((_, port)) = urls.first() {
                            r.port = PortRange::single(*port);
                        }
                        r.addresses = Some(urls.into_iter().map(|(h, _)| h).collect());
                    }
                    Err(err) => bad(err),
                }
                setting(f, v, &mut r);
            }
        }
        if let Some(f) = &e.flags.range {
            if let Some(v) = flags::value(&p.cmdline, f) {
                match flags::parse_range(f, v) {
                    Ok(range) => r.port = range,
                    Err(err) => bad(err),
                }
                setting(f, v, &mut r);
            }
        }
    }
    for dev in &e.tunnel_devices {
        if let Some((i, port)) = interfaces
            .iter()
            .find(|i| &i.name == dev)
            .and_then(|i| i.tunnel_port.map(|p| (i, p)))
        {
            r.port = PortRange::single(port);
            r.settings.push(Setting {
                pid: None,
                source: format!("device {}", i.name),
                value: format!("{} dstport {port}", i.kind),
            });
            break;
        }
    }
    r
}

/// Every catalog entry resolved against the census, in catalog order, and the warnings for flags
/// that could not be read (one per flag and entry).
pub fn resolve_all(
    catalog: &Catalog,
    sockets: &[Socket],
    interfaces: &[Interface],
) -> (Vec<Resolved>, Vec<Warning>) {
    let procs = component_processes(sockets);
    let mut warnings = Vec::new();
    let mut resolved: Vec<Resolved> = catalog
        .entries
        .iter()
        .map(|e| resolve(e, &procs, interfaces, &mut warnings))
        .collect();
    mark_backends(&mut resolved, interfaces);
    (resolved, warnings)
}

/// Applies the CNI backends the user named (`--cni flannel:wireguard`, as (`flannel`,
/// `wireguard`)): the entries of the CNI's other backends are not in use, whatever the devices
/// show. Returns the first backend the catalog does not know for its CNI, with the ones it knows.
pub fn apply_backends(
    resolved: &mut [Resolved],
    given: &[(String, String)],
) -> Result<(), (String, String, Vec<String>)> {
    for (cni, backend) in given {
        let mut known: Vec<String> = resolved
            .iter()
            .filter(|r| r.entry.cni.as_deref() == Some(cni.as_str()))
            .filter_map(|r| r.entry.backend.clone())
            .collect();
        known.dedup();
        if !known.contains(backend) {
            return Err((cni.clone(), backend.clone(), known));
        }
        for r in resolved.iter_mut() {
            if r.entry.cni.as_deref() != Some(cni.as_str()) {
                continue;
            }
            if let Some(b) = &r.entry.backend {
                r.not_in_use =
                    (b != backend).then(|| format!("{cni} uses its {backend} backend (--cni)"));
            }
        }
    }
    Ok(())
}

/// Every catalog entry at its catalog default (no census: before kubeadm, or where the census
/// failed).
pub fn defaults(catalog: &Catalog) -> Vec<Resolved> {
    resolve_all(catalog, &[], &[]).0
}
