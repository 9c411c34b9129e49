//! Everything a node knows about its ports, in one [`NodeReport`].
//!
//! [`NodeReport::build`] takes the census, loads the catalog (the built-in one and the user's
//! `--catalog` file), resolves the running components' flags once, detects the roles and the CNI
//! (or takes them from the user), reads the firewall and chooses the sources to judge it from,
//! once, with one chooser ([`kports_firewall::sources::choose`]), and reads the node's own
//! network settings (following the routes to the peers the census shows), which
//! [`NodeReport::check`] judges as the node's prerequisites. `kports check`, `kports
//! explain`, `kports firewall check` and `kports firewall plan` are views of that report
//! ([`NodeReport::check`], [`NodeReport::explain`], [`NodeReport::firewall_check`],
//! [`NodeReport::firewall_plan`]); the binary only parses arguments and renders.
//!
//! All reading of the system goes through [`NodeIo`] ([`Linux`] on a real node), so the whole
//! orchestration is tested on fixtures without root.

mod io;
mod replay;

use std::net::IpAddr;
use std::path::PathBuf;

use kports_core::catalog::{Catalog, Role, Roles, Severity, Version};
use kports_core::check::{self, Report};
use kports_core::cniconf;
use kports_core::explain::{self, Explanation};
use kports_core::prereq;
use kports_core::resolve::{self, BackendInUse, Resolved};
use kports_core::role::{self, Detected, DetectionSource};
use kports_core::settings::NodeSettings;
use kports_core::{Interface, Socket, Warning};
use kports_firewall::capture::assemble;
use kports_firewall::detect::{self, Managers};
use kports_firewall::findings;
use kports_firewall::model::{AddrRange, Ruleset};
use kports_firewall::plan::{self, Plan, PlanBackend, PlanRequest};
use kports_firewall::required::{self, RequiredPort, SourceKind};
use kports_firewall::sources::{self, Chosen, Given, Peers};
use kports_firewall::verdicts::{CheckRow, RowKind};
use kports_firewall::{Evaluator, verdicts};

pub use io::{Census, Linux, NodeIo, SocketSource};
pub use replay::{EXAMPLE_CONTROL_PLANE, EXAMPLE_NODE, Replay};

/// Why a node report (or a view of it) cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Census(kports_linux::Error),
    #[error("the built-in catalog is broken (a bug in kports)")]
    BuiltinCatalog(#[source] kports_core::catalog::CatalogError),
    #[error("cannot read the catalog file {path}")]
    CatalogUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing the catalog file")]
    CatalogRefused(#[source] kports_core::catalog::CatalogError),
    #[error("--cni {name}: the catalog knows {known} (or none)")]
    UnknownCni { name: String, known: String },
    #[error("--cni {cni}:{backend}: the catalog knows {cni}'s backends {known}")]
    UnknownBackend {
        cni: String,
        backend: String,
        known: String,
    },
    #[error("the node's role is unknown ({evidence}): pass --role")]
    RoleUnknown { evidence: String },
    #[error(
        "the node's role cannot be detected: kports could not see who holds {listeners} listening {} ({OWNERS_PRIVILEGE}); pass --role",
        if *listeners == 1 { "socket" } else { "sockets" }
    )]
    RoleUnseen { listeners: usize },
    #[error("a plan needs --sources CIDR: the addresses its rules open the ports to")]
    PlanNeedsSources,
    #[error(
        "the plan opens {ports} to the control plane, whose address kports cannot find (no connection to an API server, no readable kubeconfig): pass --control-plane ADDR"
    )]
    PlanNeedsControlPlane { ports: String },
    #[error("the node report was made without reading the firewall (a bug in kports)")]
    FirewallNotRead,
}

/// What the user said about the node, and what to read.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--role` (a set: `worker,etcd`); detected when `None`.
    pub roles: Option<Roles>,
    /// `--cni`; detected when `None`. `none` and empty names are dropped.
    pub cni: Option<Vec<String>>,
    /// `--catalog`: a file that extends or overrides the built-in catalog.
    pub catalog: Option<PathBuf>,
    /// Where socket lists come from.
    pub census: SocketSource,
    /// When the census fails: an error (`false` turns it into a warning, and ports are judged at
    /// the catalog's defaults).
    pub census_required: bool,
    /// Read the firewall and choose its sources.
    pub firewall: bool,
    /// Read the node's own network settings, so the check judges its prerequisites.
    pub prerequisites: bool,
    /// `--sources`, `--control-plane`, `--load-balancers`.
    pub sources: Vec<AddrRange>,
    pub control_plane: Vec<AddrRange>,
    pub load_balancers: Vec<AddrRange>,
    /// `--iif`: the interface packets from every source arrive on (default: the route back).
    pub iif: Option<String>,
}

impl Default for Options {
    /// Detect everything, require the census, read the firewall and the node's settings.
    fn default() -> Options {
        Options {
            roles: None,
            cni: None,
            catalog: None,
            census: SocketSource::Auto,
            census_required: true,
            firewall: true,
            prerequisites: true,
            sources: Vec::new(),
            control_plane: Vec::new(),
            load_balancers: Vec::new(),
            iif: None,
        }
    }
}

/// The firewall as read, and the sources it is judged from.
#[derive(Debug)]
pub struct Firewall {
    pub ruleset: Ruleset,
    /// firewalld and ufw, when present.
    pub managers: Managers,
    /// Parse notes (`firewall-parse`) and unreadable sources (`firewall-unread`).
    pub warnings: Vec<Warning>,
    /// From the one chooser, with `dst` and `iif` filled in from the node's routes.
    pub sources: Chosen,
    /// Whether kports held CAP_NET_ADMIN while reading (`None`: not known).
    pub net_admin: Option<bool>,
}

/// Everything this node knows about its ports.
#[derive(Debug)]
pub struct NodeReport {
    pub hostname: String,
    pub catalog: Catalog,
    pub sockets: Vec<Socket>,
    pub interfaces: Vec<Interface>,
    /// Collecting the census (or its failure, when it was not required).
    pub census_warnings: Vec<Warning>,
    /// The node's roles (empty when unknown); their ports are judged together.
    pub roles: Detected<Roles>,
    pub cni: Detected<Vec<String>>,
    /// Every catalog entry after the running components' flags and tunnel devices.
    pub resolved: Vec<Resolved>,
    /// Flags that could not be read (those ports are judged at their catalog default).
    pub flag_warnings: Vec<Warning>,
    /// `None` when not read.
    pub firewall: Option<Firewall>,
    /// The node's own network settings; `None` when not read.
    pub settings: Option<NodeSettings>,
}

/// `error: cause: cause`, as a person reads an error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        s.push_str(": ");
        s.push_str(&c.to_string());
        next = c.source();
    }
    s
}

/// The built-in catalog with the user's file, if any, applied.
pub fn load_catalog(io: &dyn NodeIo, path: Option<&std::path::Path>) -> Result<Catalog, Error> {
    let mut c = Catalog::builtin().map_err(Error::BuiltinCatalog)?;
    if let Some(p) = path {
        let text = io.read_file(p).map_err(|source| Error::CatalogUnreadable {
            path: p.to_path_buf(),
            source,
        })?;
        c.apply_user(&text, &p.display().to_string())
            .map_err(Error::CatalogRefused)?;
    }
    Ok(c)
}

/// The backends the user named (`flannel:wireguard`, `calico:vxlan+wireguard`).
fn given_backends(list: &[String]) -> Vec<BackendInUse> {
    list.iter()
        .filter_map(|c| {
            let c = c.trim().to_ascii_lowercase();
            let (cni, backends) = c.split_once(':')?;
            Some(BackendInUse {
                cni: cni.to_string(),
                backends: backends
                    .split('+')
                    .map(|b| b.trim().to_string())
                    .filter(|b| !b.is_empty())
                    .collect(),
                ports: Vec::new(),
                source: "--cni".to_string(),
            })
        })
        .collect()
}

/// flannel's `net-conf.json`, where readable: flanneld's `--net-config-path` (else the default
/// path) inside its own container first, then on the host, then k3s's. The backend it
/// configures, or a warning when the file is there but cannot be read or understood.
fn flannel_config(io: &dyn NodeIo, sockets: &[Socket]) -> (Option<BackendInUse>, Vec<Warning>) {
    let flanneld = resolve::component_processes(sockets).remove("flannel");
    let path = flanneld
        .as_ref()
        .and_then(|p| kports_core::flags::value(&p.cmdline, cniconf::FLANNEL_NET_CONF_FLAG))
        .filter(|v| !v.is_empty())
        .unwrap_or(cniconf::FLANNEL_NET_CONF)
        .to_string();
    let mut tries: Vec<(Option<u32>, PathBuf)> = Vec::new();
    if let Some(p) = &flanneld {
        tries.push((Some(p.pid), PathBuf::from(&path)));
    }
    tries.push((None, PathBuf::from(&path)));
    tries.push((None, PathBuf::from(cniconf::K3S_FLANNEL_NET_CONF)));
    let mut warnings = Vec::new();
    for (pid, path) in tries {
        let (text, shown) = match pid {
            Some(pid) => (
                io.read_process_config(pid, &path),
                format!("{} of flanneld (pid {pid})", path.display()),
            ),
            None => (io.read_config(&path), path.display().to_string()),
        };
        match text {
            Ok(t) => match cniconf::flannel_net_conf(&t, &shown) {
                Ok(b) => return (Some(b), warnings),
                Err(e) => warnings.push(Warning::new(
                    "cni-config-unreadable",
                    format!("{shown}: {e}; flannel's backend is taken from its devices"),
                )),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warnings.push(Warning::new(
                "cni-config-unreadable",
                format!("cannot read {shown}: {e}; flannel's backend is taken from its devices"),
            )),
        }
    }
    (None, warnings)
}
/// The CNIs the user named (a backend after `:` left out), checked against the catalog.
fn given_cnis(list: &[String], catalog: &Catalog) -> Result<Vec<String>, Error> {
    let list: Vec<String> = list
        .iter()
        .map(|c| {
            let c = c.trim().to_ascii_lowercase();
            c.split_once(':')
                .map_or(c.clone(), |(name, _)| name.to_string())
        })
        .filter(|c| !c.is_empty() && c != "none")
        .collect();
    let known = catalog.cnis();
    if let Some(bad) = list.iter().find(|c| !known.contains(&c.as_str())) {
        return Err(Error::UnknownCni {
            name: bad.clone(),
            known: known.join(", "),
        });
    }
    Ok(list)
}

impl NodeReport {
    /// Reads the node through `io` and puts together what it knows.
    pub fn build(io: &dyn NodeIo, o: &Options) -> Result<NodeReport, Error> {
        let catalog = load_catalog(io, o.catalog.as_deref())?;
        let census = match io.census(o.census) {
            Ok(c) => c,
            Err(e) if o.census_required => return Err(Error::Census(e)),
            Err(e) => Census {
                warnings: vec![Warning::new(
                    "census-failed",
                    format!(
                        "{}: ports are judged at the catalog's defaults, not where flags moved them",
                        chain(&e)
                    ),
                )],
                ..Census::default()
            },
        };
        let roles = match o.roles {
            Some(r) => Detected::given(r, "--role"),
            None => role::detect_roles(&census.sockets),
        };
        let cni = match &o.cni {
            Some(list) => Detected::given(given_cnis(list, &catalog)?, "--cni"),
            None => role::detect_cni(&census.sockets, &census.interfaces),
        };
        let (mut resolved, mut flag_warnings) =
            resolve::resolve_all(&catalog, &census.sockets, &census.interfaces);
        if cni.value.iter().any(|c| c == "flannel") {
            let (conf, mut w) = flannel_config(io, &census.sockets);
            flag_warnings.append(&mut w);
            if let Some(conf) = conf
                && let Err(e) = resolve::apply_backends(&mut resolved, std::slice::from_ref(&conf))
            {
                flag_warnings.push(Warning::new(
                    "cni-backend-unknown",
                    format!(
                        "{}: the catalog knows {}'s backends {}, not {}: that backend's ports are not judged",
                        conf.source,
                        e.cni,
                        e.known.join(", "),
                        e.backend
                    ),
                ));
            }
        }
        if let Some(list) = &o.cni {
            resolve::apply_backends(&mut resolved, &given_backends(list)).map_err(|e| {
                Error::UnknownBackend {
                    cni: e.cni,
                    backend: e.backend,
                    known: e.known.join(", "),
                }
            })?;
        }
        let mut peers = sources::peers(&resolved, &census.sockets, &census.interfaces);
        let own = sources::own_addresses(&census.interfaces);
        for (path, why) in kubeconfigs(&census.sockets) {
            if let Some(a) = io
                .read_file(&path)
                .ok()
                .and_then(|t| sources::kubeconfig_server(&t))
            {
                peers.add_api_server(a, why, &own);
            }
        }
        let firewall = o
            .firewall
            .then(|| read_firewall(io, o, roles.value, &peers, &census.interfaces));
        let settings = o.prerequisites.then(|| {
            let towards: Vec<(IpAddr, String)> = peers
                .control_plane
                .iter()
                .map(|(a, why)| (*a, (*why).to_string()))
                .collect();
            io.settings(&towards)
        });
        Ok(NodeReport {
            hostname: io.hostname(),
            catalog,
            sockets: census.sockets,
            interfaces: census.interfaces,
            census_warnings: census.warnings,
            roles,
            cni,
            resolved,
            flag_warnings,
            firewall,
            settings,
        })
    }

    fn core_input(&self, version: Option<Version>, pre_install: bool) -> check::Input<'_> {
        check::Input {
            sockets: &self.sockets,
            interfaces: &self.interfaces,
            catalog: &self.catalog,
            resolved: &self.resolved,
            roles: self.roles.value,
            cnis: &self.cni.value,
            version,
            pre_install,
        }
    }

    /// `kports check`: the catalog's checks and, when they were read, the firewall's findings
    /// and the node's prerequisites.
    pub fn check(&self, version: Option<Version>, pre_install: bool) -> Checked {
        let mut report = check::check(&self.core_input(version, pre_install));
        if let Some(settings) = &self.settings {
            let found = prereq::findings(&prereq::Input {
                settings,
                interfaces: &self.interfaces,
                sockets: &self.sockets,
                roles: self.roles.value,
                cnis: &self.cni.value,
                checked: &report.checked,
                pre_install,
            });
            report.merge(found);
        }
        let mut warnings = self.census_warnings.clone();
        warnings.extend(self.flag_warnings.iter().cloned());
        // The census's own warning already names the unreadable processes and the capability;
        // the `incomplete` warning below says what that leaves unjudged.
        let owners_warned = self
            .census_warnings
            .iter()
            .any(|w| w.code.starts_with("owners-"));
        warnings.extend(
            report
                .warnings
                .iter()
                .filter(|w| !(owners_warned && w.code == "owners-unknown"))
                .cloned(),
        );
        if let Some(fw) = &self.firewall {
            // An unreadable source is a `firewall-unknown` finding; the other notes stay warnings.
            warnings.extend(
                fw.warnings
                    .iter()
                    .filter(|w| w.code != "firewall-unread")
                    .cloned(),
            );
            warnings.extend(fw.sources.warnings.iter().cloned());
            let out = findings::findings(&findings::Input {
                resolved: &self.resolved,
                roles: self.roles.value,
                cnis: &self.cni.value,
                sockets: &self.sockets,
                ruleset: &fw.ruleset,
                sources: &fw.sources.sources,
                pre_install,
            });
            warnings.extend(out.warnings);
            report.merge(out.findings);
        }
        let unseen = self.unseen();
        if let Some(w) = incomplete_warning(&unseen) {
            warnings.push(w);
        }
        Checked {
            report,
            warnings,
            unseen,
        }
    }

    /// Sockets whose holders could not be read (some processes' descriptors were denied), and
    /// how many of them listen.
    fn unowned(&self) -> (usize, usize) {
        let unknown = self
            .sockets
            .iter()
            .filter(|s| s.owner == kports_core::Owner::Unknown);
        unknown.fold((0, 0), |(all, listening), s| {
            (all + 1, listening + usize::from(s.is_listener()))
        })
    }

    /// What a check of this report needs to see and could not: the holders of sockets, the
    /// rulesets, the census itself. Empty when kports saw everything it judges.
    pub fn unseen(&self) -> Vec<Unseen> {
        let mut out = Vec::new();
        if self
            .census_warnings
            .iter()
            .any(|w| w.code == "census-failed")
        {
            out.push(Unseen::Census);
        }
        let (sockets, listeners) = self.unowned();
        if sockets > 0 {
            out.push(Unseen::Owners { sockets, listeners });
        }
        if let Some(fw) = self
            .firewall
            .as_ref()
            .filter(|f| !f.ruleset.unread.is_empty())
        {
            let sources = fw.ruleset.unread.iter().map(|u| u.source.clone()).collect();
            out.push(Unseen::Rulesets {
                sources,
                privileged: fw.net_admin == Some(true),
            });
        }
        out
    }

    /// `kports explain`: the catalog's facts about `query`, and what this node has there now.
    pub fn explain(&self, query: &explain::Subject) -> (Vec<Explanation>, Vec<Warning>) {
        let (items, mut warnings) = explain::explain(query, &self.core_input(None, false));
        warnings.extend(self.flag_warnings.iter().cloned());
        warnings.extend(self.census_warnings.iter().cloned());
        (items, warnings)
    }

    /// etcd's client and peer ports side by side, when `query` is about etcd.
    pub fn etcd_contrast(&self, query: &explain::Subject) -> Option<explain::EtcdContrast> {
        explain::etcd_contrast(query, &self.core_input(None, false))
    }

    /// The roles, which the firewall's commands need: at least one. When none was found and
    /// some listeners' holders could not be read, the missing privilege is the reason.
    pub fn known_roles(&self) -> Result<Roles, Error> {
        if self.roles.value.is_empty() {
            let listeners = self.unowned().1;
            if listeners > 0 {
                return Err(Error::RoleUnseen { listeners });
            }
            return Err(Error::RoleUnknown {
                evidence: self.roles.evidence.join("; "),
            });
        }
        Ok(self.roles.value)
    }

    /// The ports this node needs open (the union of its roles'), and notes on how its roles and
    /// CNI were found and what is not judged.
    pub fn required(&self) -> Result<(Vec<RequiredPort>, Vec<String>), Error> {
        let r = self.known_roles()?;
        let req = required::from_resolved(&self.resolved, r, &self.cni.value);
        let mut notes = Vec::new();
        if self.roles.source != DetectionSource::Flag {
            notes.push(format!(
                "role {r} (detected: {})",
                self.roles.evidence.join("; ")
            ));
        }
        if self.cni.source != DetectionSource::Flag {
            let names = if self.cni.value.is_empty() {
                "none".to_string()
            } else {
                self.cni.value.join(", ")
            };
            notes.push(format!(
                "CNI {names} (detected: {})",
                self.cni.evidence.join("; ")
            ));
        }
        notes.extend(req.notes);
        Ok((req.ports, notes))
    }

    /// Warnings of the firewall's commands: reading the firewall, the census, the flags.
    fn firewall_warnings(&self) -> Vec<Warning> {
        let mut w: Vec<Warning> = self
            .firewall
            .iter()
            .flat_map(|f| f.warnings.iter().cloned())
            .collect();
        w.extend(self.census_warnings.iter().cloned());
        w.extend(self.flag_warnings.iter().cloned());
        w
    }

    /// `kports firewall check`: every required port judged from each kind of source.
    /// Without a role there is no required port to judge: no rows and a `role-unknown` warning
    /// (as `check` gives), and, when holders could not be read, the incomplete warning that
    /// names the privilege.
    pub fn firewall_check(&self) -> Result<FirewallCheck<'_>, Error> {
        let fw = self.read_firewall()?;
        let mut role_unknown = None;
        let (ports, mut notes) = match self.required() {
            Ok(required) => required,
            Err(e @ (Error::RoleUnknown { .. } | Error::RoleUnseen { .. })) => {
                role_unknown = Some(Warning::new(
                    "role-unknown",
                    format!("no required port is judged: {e}"),
                ));
                (Vec::new(), Vec::new())
            }
            Err(e) => return Err(e),
        };
        notes.extend(fw.sources.notes.iter().cloned());
        let mut rows = verdicts::check(&Evaluator::new(&fw.ruleset), &ports, &fw.sources.sources);
        // A port bound to loopback only that the firewall also accepts from others: the bind
        // keeps it private (`check` judges binds), so it is a note here, not a `NO`.
        rows.retain(|r| {
            let private = r.source_kind == RowKind::Others
                && r.ok == Some(false)
                && self.bound_to_loopback_only(&r.port);
            if private {
                let note = format!(
                    "{} ({}) is accepted from {} but bound to loopback only: nothing outside reaches it",
                    r.port.label(),
                    r.port.component,
                    r.source
                );
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            !private
        });
        let summary = Summary::of(&rows);
        // Holders matter here only for detecting the roles.
        let given = self.roles.source == DetectionSource::Flag;
        let unseen: Vec<Unseen> = self
            .unseen()
            .into_iter()
            .filter(|u| !(given && matches!(u, Unseen::Owners { .. })))
            .collect();
        let mut warnings = self.firewall_warnings();
        warnings.extend(role_unknown);
        warnings.extend(incomplete_warning(&unseen));
        Ok(FirewallCheck {
            roles: self.roles.value,
            firewall: fw,
            rows,
            summary,
            notes,
            warnings,
            unseen,
        })
    }

    /// Whether something listens on `port` and every listener is bound to a loopback address.
    fn bound_to_loopback_only(&self, port: &RequiredPort) -> bool {
        let mut on_port = self.sockets.iter().filter(|s| {
            s.is_listener() && s.proto == port.proto && (port.lo..=port.hi).contains(&s.local_port)
        });
        let mut any = false;
        let all_loopback = on_port.all(|s| {
            any = true;
            s.local_address.to_canonical().is_loopback()
        });
        any && all_loopback
    }

    /// `kports firewall plan`: the rules that open what each source needs, for `backend`.
    /// `kports firewall plan`; with `own_table_only`, the script writes kports's own table or
    /// chain only, and a drop elsewhere that still blocks a wanted connection stays (reported).
    pub fn firewall_plan(
        &self,
        backend: PlanBackend,
        zone: Option<String>,
        own_table_only: bool,
    ) -> Result<FirewallPlan<'_>, Error> {
        let fw = self.read_firewall()?;
        let all = fw.sources.ranges(SourceKind::All);
        if !fw.sources.of(SourceKind::All).any(|s| s.origin.is_given()) {
            return Err(Error::PlanNeedsSources);
        }
        let (ports, mut notes) = self.required()?;
        let mut control_plane = fw.sources.control_plane();
        let for_cp: Vec<String> = ports
            .iter()
            .filter(|p| p.from == SourceKind::ControlPlane)
            .map(RequiredPort::label)
            .collect();
        if control_plane.is_empty() && !for_cp.is_empty() {
            // A control-plane node is its own control plane: its API server reaches its
            // kubelet and etcd from its own address.
            let own: Vec<AddrRange> = [false, true]
                .into_iter()
                .filter_map(|v6| sources::primary_interface(&self.interfaces, v6))
                .map(|(_, a)| AddrRange::single(a))
                .collect();
            if !self.roles.value.contains(Role::ControlPlane) || own.is_empty() {
                return Err(Error::PlanNeedsControlPlane {
                    ports: for_cp.join(", "),
                });
            }
            let list: Vec<String> = own.iter().map(ToString::to_string).collect();
            notes.push(format!(
                "control plane: this node ({}), which is one; pass --control-plane for the others",
                list.join(", ")
            ));
            control_plane = own;
        }
        let req = PlanRequest {
            backend,
            ports,
            sources: all,
            control_plane,
            etcd: fw.sources.ranges(SourceKind::EtcdPeers),
            load_balancers: fw.sources.ranges(SourceKind::LoadBalancers),
            zone,
            own_table_only,
        };
        let default_zone = fw.managers.firewalld.as_ref().and_then(|f| {
            f.zones
                .iter()
                .find(|z| z.matches == "default")
                .map(|z| z.zone.clone())
                .or_else(|| f.default_zone.clone())
        });
        let mut p = plan::plan(&fw.ruleset, &req, default_zone.as_deref());
        p.notes.extend(notes);
        Ok(FirewallPlan {
            backend,
            firewall: fw,
            plan: p,
            warnings: self.firewall_warnings(),
        })
    }

    /// The firewall as read; asking for a firewall view of a report made without reading it
    /// is refused (an empty ruleset would call everything open).
    /// `kports firewall plan --remove`: everything kports added to the node's firewall (its
    /// table, its chains, the accepts it tagged in other chains) and the script that takes it
    /// out. Needs neither the roles nor the sources.
    pub fn firewall_removal(&self) -> Result<FirewallRemoval<'_>, Error> {
        let fw = self.read_firewall()?;
        Ok(FirewallRemoval {
            firewall: fw,
            removal: plan::removal(&fw.ruleset),
            warnings: self.firewall_warnings(),
        })
    }

    fn read_firewall(&self) -> Result<&Firewall, Error> {
        self.firewall.as_ref().ok_or(Error::FirewallNotRead)
    }
}

/// The kubelet's default kubeconfig (kubeadm's).
const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";

/// The kubeconfig files that say where the API server is: the kubelet's and kube-proxy's
/// `--kubeconfig` (the kubelet's default is kubeadm's `/etc/kubernetes/kubelet.conf`), each with
/// the words that say where its address came from.
fn kubeconfigs(sockets: &[Socket]) -> Vec<(PathBuf, &'static str)> {
    let cmdline = |component: &str| {
        sockets
            .iter()
            .filter(|s| s.component == Some(component))
            .find_map(|s| s.processes.first().map(|p| p.cmdline.clone()))
    };
    let flag = |c: &Option<String>| {
        c.as_deref()
            .and_then(|c| kports_core::flags::value(c, "--kubeconfig"))
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let kubelet = cmdline("kubelet");
    let mut out = vec![(
        flag(&kubelet).unwrap_or_else(|| PathBuf::from(KUBELET_KUBECONFIG)),
        "the API server in the kubelet's kubeconfig",
    )];
    if let Some(p) = flag(&cmdline("kube-proxy")) {
        out.push((p, "the API server in kube-proxy's kubeconfig"));
    }
    out
}

/// Reads the ruleset and chooses the sources, with the route back to each.
fn read_firewall(
    io: &dyn NodeIo,
    o: &Options,
    roles: Roles,
    peers: &Peers,
    interfaces: &[Interface],
) -> Firewall {
    let capture = io.firewall();
    let (ruleset, notes) = assemble(&capture);
    let managers = detect::detect(&ruleset, &capture);
    let mut warnings: Vec<Warning> = notes
        .into_iter()
        .map(|m| Warning::new("firewall-parse", m))
        .collect();
    for u in &ruleset.unread {
        warnings.push(Warning::new(
            "firewall-unread",
            format!(
                "{} not readable: {}; verdicts that need it are unknown",
                u.source, u.reason
            ),
        ));
    }
    let given = Given {
        sources: &o.sources,
        control_plane: &o.control_plane,
        load_balancers: &o.load_balancers,
    };
    let mut chosen = sources::choose(peers, &given, sources::representative(interfaces), roles);
    for ks in &mut chosen.sources {
        let s = &mut ks.source;
        match io.route_to(s.range.first()) {
            Some((dev, src)) => {
                s.iif = Some(dev);
                s.dst = src;
            }
            None => {
                if let Some((dev, addr)) = sources::primary_interface(interfaces, s.range.v6) {
                    s.iif = Some(dev);
                    s.dst = Some(addr);
                }
            }
        }
        if let Some(iif) = &o.iif {
            s.iif = Some(iif.clone());
        }
    }
    Firewall {
        ruleset,
        managers,
        warnings,
        sources: chosen,
        net_admin: capture.net_admin,
    }
}

/// The check's findings with every warning of the report, in order.
#[derive(Debug)]
pub struct Checked {
    pub report: Report,
    /// Every warning, the `incomplete` one last when `unseen` is not empty.
    pub warnings: Vec<Warning>,
    /// What the check could not see: when not empty, its findings are not the whole truth.
    pub unseen: Vec<Unseen>,
}

/// What to grant for the holders of every socket.
const OWNERS_PRIVILEGE: &str = "run as root, or grant CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH";

/// What to grant for the rulesets.
const RULESET_PRIVILEGE: &str = "run as root, or grant CAP_NET_ADMIN";

/// Something a check needs to see and could not, so that "no findings" would not be the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unseen {
    /// The census failed (the firewall's commands go on without it).
    Census,
    /// The holders of `sockets` sockets, `listeners` of them listening, could not be read: a
    /// component there cannot be told from a stranger, and the roles may be missing.
    Owners { sockets: usize, listeners: usize },
    /// These ruleset sources (`nft`, `iptables-nft-save`, ...) could not be read; `privileged`:
    /// though kports held CAP_NET_ADMIN (so their warnings, not privilege, say why).
    Rulesets {
        sources: Vec<String>,
        privileged: bool,
    },
}

impl Unseen {
    /// What was not seen, for a person.
    pub fn describe(&self) -> String {
        match self {
            Unseen::Census => "the node's sockets (the census failed)".to_string(),
            Unseen::Owners { sockets, listeners } => {
                let n = if *listeners > 0 { *listeners } else { *sockets };
                let what = match (*listeners > 0, n == 1) {
                    (true, true) => "listening socket",
                    (true, false) => "listening sockets",
                    (false, true) => "socket",
                    (false, false) => "sockets",
                };
                format!("who holds {n} {what}")
            }
            Unseen::Rulesets { sources, .. } => match sources.split_last() {
                Some((last, [])) => format!("the rules {last} lists"),
                Some((last, rest)) => format!("the rules {} and {last} list", rest.join(", ")),
                None => "the rulesets".to_string(),
            },
        }
    }

    /// What would let kports see it.
    pub fn remedy(&self) -> &'static str {
        match self {
            Unseen::Census => "see the census-failed warning",
            Unseen::Owners { .. } => OWNERS_PRIVILEGE,
            Unseen::Rulesets {
                privileged: true, ..
            } => "their warnings say why",
            Unseen::Rulesets { .. } => RULESET_PRIVILEGE,
        }
    }

    /// `who holds 1 listening socket (run as root, ...); the rulesets of nft and
    /// iptables-nft-save (run as root, or grant CAP_NET_ADMIN)`.
    pub fn list(unseen: &[Unseen]) -> String {
        let each: Vec<String> = unseen
            .iter()
            .map(|u| format!("{} ({})", u.describe(), u.remedy()))
            .collect();
        each.join("; ")
    }
}

/// The `incomplete` warning: what the check could not see.
fn incomplete_warning(unseen: &[Unseen]) -> Option<Warning> {
    (!unseen.is_empty()).then(|| {
        Warning::new(
            "incomplete",
            format!(
                "incomplete: kports could not see {}; what it would find there is unknown, not absent",
                Unseen::list(unseen)
            ),
        )
    })
}

/// How many of `firewall check`'s rows are wrong, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Rows judged.
    pub rows: usize,
    /// A required port dropped or rejected for a source that needs it (an error).
    pub blocked: usize,
    /// A port accepted from sources that do not need it (a warning).
    pub exposed: usize,
    /// Verdicts that depend on a condition kports cannot evaluate, or unknown (info).
    pub undecided: usize,
}

impl Summary {
    fn of(rows: &[CheckRow]) -> Summary {
        let mut s = Summary {
            rows: rows.len(),
            ..Summary::default()
        };
        for r in rows {
            match (r.ok, r.expect_open) {
                (Some(false), true) => s.blocked += 1,
                (Some(false), false) => s.exposed += 1,
                (None, _) => s.undecided += 1,
                (Some(true), _) => {}
            }
        }
        s
    }

    /// The severity of the worst row, as `kports check` would rate it.
    pub fn worst(&self) -> Option<Severity> {
        if self.blocked > 0 {
            Some(Severity::Error)
        } else if self.exposed > 0 {
            Some(Severity::Warning)
        } else if self.undecided > 0 {
            Some(Severity::Info)
        } else {
            None
        }
    }
}

/// `kports firewall check`'s result.
#[derive(Debug)]
pub struct FirewallCheck<'a> {
    pub roles: Roles,
    pub firewall: &'a Firewall,
    pub rows: Vec<CheckRow>,
    pub summary: Summary,
    /// How the role, the CNI and the sources were found, and what is not judged.
    pub notes: Vec<String>,
    pub warnings: Vec<Warning>,
    /// What the verdicts could not see: when not empty, some are unknown.
    pub unseen: Vec<Unseen>,
}

/// `kports firewall plan --remove`'s result.
#[derive(Debug)]
pub struct FirewallRemoval<'a> {
    pub firewall: &'a Firewall,
    pub removal: plan::Removal,
    pub warnings: Vec<Warning>,
}

/// `kports firewall plan`'s result.
#[derive(Debug)]
pub struct FirewallPlan<'a> {
    pub backend: PlanBackend,
    pub firewall: &'a Firewall,
    pub plan: Plan,
    pub warnings: Vec<Warning>,
}
