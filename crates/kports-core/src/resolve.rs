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
    /// What shows that the entry's CNI backend is the one in use (`device flannel-wg`,
    /// `process bird (pid 412)`, flannel's `net-conf.json`, `--cni`): an optional port of that
    /// backend is then required. `None` when nothing shows it.
    pub in_use: Option<String>,
}

/// Whether interface `name` matches a device pattern (`cali*` is a prefix).
fn device_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// What shows a backend of a CNI on this node: its devices and processes, as the catalog names
/// them on each entry (`backend_devices`, `backend_processes`).
fn backend_shown(e: &Entry, interfaces: &[Interface], sockets: &[Socket]) -> Vec<String> {
    let mut shown: Vec<String> = interfaces
        .iter()
        .filter(|i| e.backend_devices.iter().any(|d| device_matches(d, &i.name)))
        .map(|i| format!("device {}", i.name))
        .collect();
    let mut pids = Vec::new();
    for p in sockets.iter().flat_map(|s| s.processes.iter()) {
        if e.backend_processes.contains(&p.name) && !pids.contains(&p.pid) {
            pids.push(p.pid);
            shown.push(format!("process {} (pid {})", p.name, p.pid));
        }
    }
    shown
}

/// Marks which of a CNI's backends is in use: where a device or process of one of the CNI's
/// backends shows, the entries it shows are in use and the entries nothing shows are not.
fn mark_backends(resolved: &mut [Resolved], interfaces: &[Interface], sockets: &[Socket]) {
    let shown: Vec<Vec<String>> = resolved
        .iter()
        .map(|r| backend_shown(&r.entry, interfaces, sockets))
        .collect();
    for (r, own) in resolved.iter_mut().zip(&shown) {
        if !own.is_empty() {
            r.in_use = Some(own.join(", "));
        }
    }
    let snapshot: Vec<(Option<String>, Vec<String>)> = resolved
        .iter()
        .zip(&shown)
        .map(|(r, own)| (r.entry.cni.clone(), own.clone()))
        .collect();
    for (r, own) in resolved.iter_mut().zip(&shown) {
        let e = &r.entry;
        let Some(cni) = &e.cni else { continue };
        if (e.backend_devices.is_empty() && e.backend_processes.is_empty()) || !own.is_empty() {
            continue;
        }
        let mut others: Vec<&str> = snapshot
            .iter()
            .filter(|(c, _)| c.as_ref() == Some(cni))
            .flat_map(|(_, d)| d.iter().map(String::as_str))
            .collect();
        others.sort_unstable();
        others.dedup();
        if !others.is_empty() {
            r.not_in_use = Some(format!(
                "{cni} uses another backend here ({})",
                others.join(", ")
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
        in_use: None,
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
    mark_backends(&mut resolved, interfaces, sockets);
    (resolved, warnings)
}

/// A CNI's backends as its own configuration or the user states them: stronger evidence than
/// the devices, so it decides which of the CNI's entries are in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInUse {
    /// `flannel`.
    pub cni: String,
    /// `wireguard`; several where they combine (`vxlan+wireguard` for Calico).
    pub backends: Vec<String>,
    /// Ports the configuration moves: (the catalog's port of an entry of these backends, the
    /// port in use, the setting that says so).
    pub ports: Vec<(u16, u16, String)>,
    /// Where this comes from (`/etc/kube-flannel/net-conf.json: Backend.Type wireguard`, `--cni`).
    pub source: String,
}

/// Backends that need no port of their own: naming them leaves every entry of the CNI's other
/// backends out, and nothing in.
const PORTLESS_BACKENDS: &[(&str, &str)] = &[("flannel", "host-gw")];

/// Why [`apply_backends`] refused a backend: the CNI, the backend, the ones the catalog knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBackend {
    pub cni: String,
    pub backend: String,
    pub known: Vec<String>,
}

/// The backends of `cni` that the catalog (or [`PORTLESS_BACKENDS`]) knows, sorted.
pub fn known_backends(resolved: &[Resolved], cni: &str) -> Vec<String> {
    let mut known: Vec<String> = resolved
        .iter()
        .filter(|r| r.entry.cni.as_deref() == Some(cni))
        .filter_map(|r| r.entry.backend.clone())
        .chain(
            PORTLESS_BACKENDS
                .iter()
                .filter(|(c, _)| *c == cni)
                .map(|(_, b)| b.to_string()),
        )
        .collect();
    known.sort();
    known.dedup();
    known
}

/// Applies backends stated by a CNI's configuration or by the user (`--cni flannel:wireguard`):
/// the entries of those backends are in use (at the ports the configuration gives), the
/// entries of the CNI's other backends are not, whatever the devices show. Refuses the first
/// backend the catalog does not know for its CNI, and changes nothing then.
pub fn apply_backends(
    resolved: &mut [Resolved],
    given: &[BackendInUse],
) -> Result<(), UnknownBackend> {
    for g in given {
        let known = known_backends(resolved, &g.cni);
        if let Some(bad) = g.backends.iter().find(|b| !known.contains(b)) {
            return Err(UnknownBackend {
                cni: g.cni.clone(),
                backend: bad.clone(),
                known,
            });
        }
    }
    for g in given {
        for r in resolved.iter_mut() {
            if r.entry.cni.as_deref() != Some(g.cni.as_str()) {
                continue;
            }
            let Some(b) = &r.entry.backend else { continue };
            if g.backends.contains(b) {
                r.not_in_use = None;
                r.in_use = Some(g.source.clone());
                let moved = g
                    .ports
                    .iter()
                    .find(|(catalog, _, _)| *catalog == r.entry.port.first);
                // A device's port is what the kernel uses now; the configuration only fills in
                // where no device says.
                let by_device = r.settings.iter().any(|s| s.source.starts_with("device "));
                if let Some((_, port, setting)) = moved
                    && !by_device
                {
                    r.port = PortRange::single(*port);
                    r.settings.push(Setting {
                        pid: None,
                        source: g.source.clone(),
                        value: setting.clone(),
                    });
                }
            } else {
                r.in_use = None;
                r.not_in_use = Some(format!(
                    "{} uses its {} backend ({})",
                    g.cni,
                    g.backends.join("+"),
                    g.source
                ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proto;
    use crate::role::tests::{iface, listener};

    /// `(component, port)` of the entries of `cni` that are in use (or not marked either way),
    /// and of those that are not, after resolving against `interfaces` and `sockets`.
    fn split(
        cni: &str,
        interfaces: &[Interface],
        sockets: &[Socket],
        given: &[BackendInUse],
    ) -> (Vec<u16>, Vec<u16>) {
        let catalog = Catalog::builtin().unwrap();
        let (mut resolved, _) = resolve_all(&catalog, sockets, interfaces);
        apply_backends(&mut resolved, given).unwrap();
        let backend_entries = resolved
            .iter()
            .filter(|r| r.entry.cni.as_deref() == Some(cni) && r.entry.backend.is_some());
        let (mut used, mut unused) = (Vec::new(), Vec::new());
        for r in backend_entries {
            if r.not_in_use.is_some() {
                unused.push(r.port.first);
            } else {
                used.push(r.port.first);
            }
        }
        (used, unused)
    }

    fn bird(pid: u32) -> Socket {
        listener(Proto::Tcp, "0.0.0.0", 179, "bird", pid, Some("calico-node"))
    }

    #[test]
    fn calico_bgp_only_with_bird_vxlan_and_wireguard_only_with_their_devices() {
        // Nothing shows a backend: every one stays as the catalog says.
        assert_eq!(
            split("calico", &[], &[], &[]),
            (vec![179, 4789, 51820, 51821], vec![])
        );
        // VXLAN-only Calico: no BIRD, so no BGP.
        let vx = [iface("vxlan.calico", "vxlan", Some(4789))];
        assert_eq!(
            split("calico", &vx, &[], &[]),
            (vec![4789], vec![179, 51820, 51821])
        );
        // BGP with WireGuard over IPv4 and IPv6.
        let wg = [
            iface("wireguard.cali", "wireguard", None),
            iface("wg-v6.cali", "wireguard", None),
        ];
        assert_eq!(
            split("calico", &wg, &[bird(40)], &[]),
            (vec![179, 51820, 51821], vec![4789])
        );
        // BIRD alone: BGP, and neither VXLAN nor WireGuard.
        assert_eq!(
            split("calico", &[], &[bird(40)], &[]),
            (vec![179], vec![4789, 51820, 51821])
        );
    }

    #[test]
    fn what_shows_a_backend_is_its_evidence() {
        let catalog = Catalog::builtin().unwrap();
        let (resolved, _) = resolve_all(&catalog, &[bird(40)], &[]);
        let bgp = resolved
            .iter()
            .find(|r| r.entry.component == "calico-node" && r.entry.port.first == 179)
            .unwrap();
        assert_eq!(bgp.in_use.as_deref(), Some("process bird (pid 40)"));
        let vx = resolved
            .iter()
            .find(|r| r.entry.component == "calico-node" && r.entry.port.first == 4789)
            .unwrap();
        assert_eq!(
            vx.not_in_use.as_deref(),
            Some("calico uses another backend here (process bird (pid 40))")
        );
    }

    #[test]
    fn cilium_tunnel_and_wireguard_by_their_devices() {
        assert_eq!(
            split("cilium", &[], &[], &[]),
            (vec![8472, 6081, 51871], vec![])
        );
        let vx = [iface("cilium_vxlan", "vxlan", Some(8472))];
        assert_eq!(
            split("cilium", &vx, &[], &[]),
            (vec![8472], vec![6081, 51871])
        );
        let geneve = [
            iface("cilium_geneve", "geneve", Some(6081)),
            iface("cilium_wg0", "wireguard", None),
        ];
        assert_eq!(
            split("cilium", &geneve, &[], &[]),
            (vec![6081, 51871], vec![8472])
        );
        // Native routing with WireGuard: no tunnel port at all.
        let wg = [iface("cilium_wg0", "wireguard", None)];
        assert_eq!(
            split("cilium", &wg, &[], &[]),
            (vec![51871], vec![8472, 6081])
        );
    }

    #[test]
    fn flannel_backends_by_device() {
        assert_eq!(
            split("flannel", &[], &[], &[]),
            (vec![8472, 8285, 51820, 51821], vec![])
        );
        let vx = [iface("flannel.1", "vxlan", Some(8472))];
        assert_eq!(
            split("flannel", &vx, &[], &[]),
            (vec![8472], vec![8285, 51820, 51821])
        );
        let wg = [iface("flannel-wg", "wireguard", None)];
        assert_eq!(
            split("flannel", &wg, &[], &[]),
            (vec![51820], vec![8472, 8285, 51821])
        );
        let udp = [iface("flannel0", "tun", None)];
        assert_eq!(
            split("flannel", &udp, &[], &[]),
            (vec![8285], vec![8472, 51820, 51821])
        );
    }

    fn conf(text: &str) -> BackendInUse {
        crate::cniconf::flannel_net_conf(text, "/etc/kube-flannel/net-conf.json").unwrap()
    }

    #[test]
    fn flannels_configuration_wins_over_its_devices() {
        // A leftover flannel.1 from before a switch to WireGuard: the configuration decides.
        let vx = [iface("flannel.1", "vxlan", Some(8472))];
        let wg = conf(r#"{"Backend": {"Type": "wireguard", "ListenPort": 51000}}"#);
        assert_eq!(
            split("flannel", &vx, &[], std::slice::from_ref(&wg)),
            (vec![51000, 51821], vec![8472, 8285])
        );
        // host-gw needs no port: every backend port is left out.
        let hostgw = conf(r#"{"Backend": {"Type": "host-gw"}}"#);
        assert_eq!(
            split("flannel", &vx, &[], &[hostgw]),
            (vec![], vec![8472, 8285, 51820, 51821])
        );
        // The configuration's VXLAN port counts where no device says; the device's wins.
        let moved = conf(r#"{"Backend": {"Type": "vxlan", "Port": 4789}}"#);
        assert_eq!(
            split("flannel", &[], &[], std::slice::from_ref(&moved)),
            (vec![4789], vec![8285, 51820, 51821])
        );
        assert_eq!(
            split("flannel", &vx, &[], &[moved]),
            (vec![8472], vec![8285, 51820, 51821])
        );
    }

    #[test]
    fn the_evidence_of_a_configured_backend_names_the_file() {
        let catalog = Catalog::builtin().unwrap();
        let (mut resolved, _) = resolve_all(&catalog, &[], &[]);
        apply_backends(&mut resolved, &[conf(r#"{"Backend": {"Type": "udp"}}"#)]).unwrap();
        let of = |port: u16| {
            resolved
                .iter()
                .find(|r| r.entry.cni.as_deref() == Some("flannel") && r.entry.port.first == port)
                .unwrap()
        };
        assert_eq!(
            of(8285).in_use.as_deref(),
            Some("/etc/kube-flannel/net-conf.json: Backend.Type udp")
        );
        assert_eq!(
            of(8472).not_in_use.as_deref(),
            Some(
                "flannel uses its udp backend (/etc/kube-flannel/net-conf.json: Backend.Type udp)"
            )
        );
    }

    #[test]
    fn unknown_backends_are_refused_with_the_known_ones_and_change_nothing() {
        let catalog = Catalog::builtin().unwrap();
        let (mut resolved, _) = resolve_all(&catalog, &[], &[]);
        let before: Vec<Option<String>> = resolved.iter().map(|r| r.not_in_use.clone()).collect();
        let e = apply_backends(&mut resolved, &[conf(r#"{"Backend": {"Type": "ipsec"}}"#)])
            .unwrap_err();
        assert_eq!(e.backend, "ipsec");
        assert_eq!(e.known, ["host-gw", "udp", "vxlan", "wireguard"]);
        let after: Vec<Option<String>> = resolved.iter().map(|r| r.not_in_use.clone()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn backends_that_combine_are_given_together() {
        let given = BackendInUse {
            cni: "calico".into(),
            backends: vec!["vxlan".into(), "wireguard".into()],
            ports: Vec::new(),
            source: "--cni".into(),
        };
        assert_eq!(
            split("calico", &[], &[], &[given]),
            (vec![4789, 51820, 51821], vec![179])
        );
    }
}
