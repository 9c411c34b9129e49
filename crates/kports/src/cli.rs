//! Command-line interface: every argument kports takes, parsed into the types the commands use
//! (addresses as ranges, roles as the catalog's), before anything touches the system.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kports_core::catalog::{Role, Roles, Severity, Version};
use kports_core::explain::Subject;
use kports_firewall::model::AddrRange;
use kports_firewall::plan::PlanBackend;

use crate::output::Format;

/// kports: every port a Kubernetes node needs, who holds it, and who reaches it.
///
/// Start with `kports listen` on a node: every listening socket with its real owner and the
/// Kubernetes component it belongs to. `kports conns` counts established connections per
/// listener; `kports node` shows interfaces and addresses. Add `-o json` for scripts.
#[derive(Debug, Parser)]
#[command(
    name = "kports",
    version,
    propagate_version = true,
    max_term_width = 100,
    long_version = LONG_VERSION
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print tables without their header line (for `| while read` and `| awk`).
    #[arg(long, global = true)]
    pub no_headers: bool,
}

/// `kports --version`: the version, the git commit it was built from and that commit's date
/// (`-V` prints the version alone).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KPORTS_COMMIT"),
    ", ",
    env!("KPORTS_COMMIT_DATE"),
    ")"
);

/// The exit-status contract of every command, as `--help` shows it (and README.md).
const EXIT_STATUS: &str = "Exit status: 0 done; 1 done and something is wrong (a finding at or above \
--fail-on, a port that did not answer, a failing cell of the cluster's matrix, an unhealthy lab); \
2 a usage error or an error of kports itself; `lab exec`: the command's own status, 126 when it \
cannot run, 127 when it does not exist.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hostname, interfaces (kind, state, MTU, MAC, bridge master) and their addresses.
    ///
    /// `kports node --kind bridge` answers what `ip addr show type bridge` answers.
    #[command(after_long_help = "Examples:
  kports node --kind bridge        the bridges (cni0, docker0, ...) and their addresses
  kports node --kind vxlan -o wide the overlay devices with their UDP ports
  kports node --all-netns          interfaces of every pod and container too")]
    Node(NodeArgs),
    /// Listening TCP and bound UDP sockets with their owning processes and components.
    ///
    /// Owners are the processes holding the socket, named in full (`kube-controller-manager`,
    /// not the kernel's 15-byte `kube-controlle`). A socket no process holds, such as a VXLAN
    /// device's UDP port, is owned by `kernel`. Equivalent to `ss -tulpn`, faster, with components.
    #[command(after_long_help = "Examples:
  kports listen                          every listener, its owner and component
  kports listen --component kubelet      what the kubelet listens on (10250, 10248, ...)
  kports listen --port 30000-32767       NodePort listeners
  kports listen --all-netns -o wide      listeners of every pod, with container and pod ids
  kports listen --unix --process kubelet the kubelet's UNIX sockets too")]
    Listen(ListenArgs),
    /// Established TCP connections counted per listening socket (in) and per remote service (out).
    ///
    /// `kports conns --process etcd` shows which etcd port has more client connections.
    /// Counts add up to `ss -tanH state established` on the same snapshot.
    #[command(after_long_help = "Examples:
  kports conns --process etcd --by-port --inbound   client connections per etcd port
  kports conns --port 6443 --by-peer                who is connected to the API server
  kports conns --outbound --process kube-apiserver  where the API server connects to")]
    Conns(ConnsArgs),
    /// Check the node's listeners against every port its role and CNI need.
    ///
    /// For each port of the catalog: is it listening, held by the component that should hold
    /// it, reachable by the peers that need it, and not bound wider than needed? Also ports that
    /// should be closed (the kubelet's read-only 10255, legacy 10251/10252) and listeners no
    /// catalog entry explains. Each finding names its evidence and the `ss` command that shows
    /// it. Exit status 0 when clean, 1 when a finding reaches --fail-on, 2 on an error, 3 when
    /// nothing reached --fail-on but kports could not see all it judges (without root: the
    /// holders of sockets, the ruleset; the `incomplete` warning says what to grant).
    /// `--pre-install --role ROLE` checks, before kubeadm runs, that the role's ports are free.
    #[command(after_long_help = "Examples:
  kports check                                 role and CNI detected; findings, worst first
  kports check -o wide                         every port checked, with what listens there
  kports check --fail-on warning -o junit      for a CI pipeline
  kports check --pre-install --role worker     before kubeadm join: are the ports free?
  kports check --catalog my-ports.toml         with a custom NodePort range or external etcd")]
    Check(CheckArgs),
    /// Explain a port or a component: what normally listens there, who connects and why,
    /// kubeadm's bind address, and what this node has there now.
    ///
    /// `kports explain 2379` shows why etcd's client port has many connections (every API
    /// server) while its peer port 2380 has a few (one set per member).
    #[command(after_long_help = "Examples:
  kports explain 2379         etcd's client port: who connects, and how many right now
  kports explain etcd         every etcd port
  kports explain udp/8472     the VXLAN port, and why sources disagree about it
  kports explain 10255        the kubelet's read-only port and why it should be closed")]
    Explain(ExplainArgs),
    /// The node's firewall: is each required port open to the sources that need it, and which
    /// rule decides; and the rules that would open exactly that.
    #[command(subcommand)]
    Firewall(FirewallCommand),
    /// Probe other nodes' ports from this one: open, refused, filtered or unreachable, and why.
    ///
    /// For each target (an inventory node, an address, a CIDR, a host name) every port its roles
    /// must serve to other nodes (`--roles`, or the inventory's), or the `--ports` given, over
    /// IPv4 and IPv6. TCP: `open`, `refused` (nothing listens, or a firewall rejects: the two look
    /// the same from here), `filtered` (no answer: a drop), `unreachable` (ICMP unreachable or
    /// prohibited, no route; the errno says which). UDP: `closed`, `open|filtered`, or `open` when
    /// something answers (a kports responder does). Exit status 0 when every port is reachable,
    /// 1 when some are not, 2 on bad input.
    #[command(after_long_help = "Examples:
  kports probe --inventory hosts.yaml               every node of a kubespray or kports inventory
  kports probe 192.0.2.11 --roles control-plane     6443, 2379, 2380, 10250
  kports probe w1 w2 --inventory hosts.yaml --ports 10250,udp/8472
  kports probe 192.0.2.0/28 --ports 10250 -o json   every host of a subnet")]
    Probe(ProbeArgs),
    /// This node's own report: roles, CNI, interfaces, the ports it serves with their listeners
    /// and the firewall's verdict, findings, and (with --probe-peers) its probes of its peers.
    ///
    /// `kports report -o json > node.json` on every node gives the files `kports cluster FILE...`
    /// joins into the cluster's matrix. With --inventory the firewall is judged for packets from
    /// each peer of the inventory, and --probe-peers probes every port this node needs of each
    /// peer (by the roles the inventory gives). Exit status 0 when the report is made (failed
    /// probes are data, not errors), 2 on an error.
    #[command(after_long_help = "Examples:
  kports report                                           this node, as a table
  kports report -o json > $(hostname).json                for kports cluster FILE...
  kports report --inventory hosts.yaml --probe-peers -o json
  kports report --inventory - --self w1 --probe-peers -o json < hosts.yaml")]
    Report(ReportArgs),
    /// The cluster's node x required-port matrix, with a root cause for every failing cell.
    ///
    /// Runs `kports report --probe-peers -o json` on every node of the inventory through --via
    /// (a command prefix: `{name}` and `{address}` are filled in; the inventory goes on standard
    /// input), or in every node of `kports lab` (--lab), or reads reports saved earlier (FILE...),
    /// and joins what each node saw of its peers with what each peer knows of itself: its
    /// listeners, its firewall's verdict, its links; the near side's route. A node that does not
    /// answer is shown as such. Exit status 0 when every node reported and every cell passed,
    /// 1 when a cell failed or a node did not report, 2 on an error.
    #[command(after_long_help = "Examples:
  kports cluster --inventory hosts.yaml --via 'ssh root@{address}'
  kports cluster --inventory hosts.yaml --via 'ssh -J bastion admin@{address} sudo' --remote-kports /usr/local/bin/kports
  kports cluster --lab                                    every node of kports lab
  kports cluster cp1.json w1.json w2.json -o json         reports saved with kports report -o json")]
    Cluster(ClusterArgs),
    /// Before Kubernetes is installed: can every node reach every port its peers will serve?
    ///
    /// Every node holds the ports its roles will serve (temporary TCP listeners and UDP
    /// responders, `kports preflight --hold` run there through --via), every other node dials
    /// them (`kports probe` run there), and each port between two nodes is `open`,
    /// `path-blocked` (held, not reached: a firewall or the network), `port-taken` (another
    /// process already holds it: its name and pid) or `unknown` (with the reason). Nothing stays
    /// bound: each hold ends when its input closes (this command ends, is killed, or Ctrl-C) and
    /// after --max-hold at the latest. Exit status 0 when every port is open, 1 otherwise, 2 on
    /// bad input.
    #[command(after_long_help = "Examples:
  kports preflight --inventory hosts.yaml --via 'ssh root@{address}'
  kports preflight --inventory nodes.yaml --via 'ip netns exec {name}' --cni flannel
  kports preflight --lab -o json             on `kports lab up --no-components`
  kports preflight --hold --ports 6443,udp/8472   on one node: hold until stdin closes")]
    Preflight(PreflightArgs),
    /// Does the CNI's overlay (VXLAN, Geneve, WireGuard, IP-in-IP) carry traffic both ways
    /// between every pair of nodes? And if not, why?
    ///
    /// Each node pings every peer's overlay address (on flannel.1, vxlan.calico, cilium_host,
    /// ...) with small echoes and with echoes as large as its overlay MTU (Don't Fragment), while
    /// the peers' device counters show whether the encapsulated packets arrived. A failing pair
    /// names its cause: an MTU too small for the encapsulation, a missing FDB or neighbour entry,
    /// the far side's firewall verdict on the overlay port, or something between the nodes.
    /// Exit status 0 when every pair passes, 1 otherwise, 2 on bad input.
    #[command(after_long_help = "Examples:
  kports overlay --inventory hosts.yaml --via 'ssh root@{address}' --cni flannel
  kports overlay --lab -o json
  kports overlay --node --underlay 192.0.2.21 --ping 10.244.0.0   on one node")]
    Overlay(OverlayArgs),
    /// A practice cluster network on this machine, made of network namespaces (needs root).
    Lab(kports_lab::LabArgs),
    /// Print the shell completion script for bash, zsh or fish.
    ///
    /// The Debian package installs the bash, zsh and fish scripts already.
    #[command(after_long_help = "Examples:
  source <(kports completions bash)                                this bash session
  kports completions bash > /etc/bash_completion.d/kports          every bash session
  kports completions zsh > /usr/local/share/zsh/site-functions/_kports
  kports completions fish > ~/.config/fish/completions/kports.fish")]
    Completions(CompletionsArgs),
    /// Write the man pages of kports and of every subcommand into a directory.
    ///
    /// The Debian package has them already; this is for a copied static binary.
    #[command(after_long_help = "Examples:
  kports man /usr/local/share/man/man1 && man kports-check")]
    Man(ManArgs),
    /// Run as an agent: keep this node's check fresh and serve it over HTTP with metrics.
    ///
    /// Every interval (jittered) the agent checks the node as `kports check -o json` does and
    /// serves the document at /api/v1/report (a bearer token from --token-file, or --no-auth),
    /// with /healthz, /readyz (ready after the first check) and OpenMetrics at /metrics. It
    /// stops on SIGTERM or Ctrl-C, letting requests in flight finish. deploy/ runs it as a
    /// DaemonSet.
    #[command(after_long_help = "Examples:
  kports agent --listen 127.0.0.1:9640 --no-auth
  kports agent --listen 192.0.2.10:9640 --token-file /etc/kports/token
  curl -H \"Authorization: Bearer $(cat /etc/kports/token)\" http://192.0.2.10:9640/api/v1/report")]
    Agent(AgentArgs),
}

/// The command line as clap parses it: [`Cli`] with the exit-status contract under every
/// command's `--help` (and so in every man page).
pub fn command() -> clap::Command {
    fn with_exit_status(c: clap::Command) -> clap::Command {
        let long = match c.get_after_long_help() {
            Some(h) => format!("{h}\n\n{EXIT_STATUS}"),
            None => EXIT_STATUS.to_string(),
        };
        c.after_long_help(long).mut_subcommands(with_exit_status)
    }
    with_exit_status(<Cli as clap::CommandFactory>::command())
}

/// `kports agent`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("auth").required(true).args(["token_file", "no_auth"])))]
pub struct AgentArgs {
    /// The address and port to serve on (`[::1]:9640` for IPv6).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    /// A file holding the bearer token the API routes require (health and metrics stay open).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Serve the API without a token (for a listener only trusted clients reach).
    #[arg(long)]
    pub no_auth: bool,
    /// Seconds between two rounds (the node's report, then its probes of its peers), on
    /// average (each delay is jittered by 20%).
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
    /// The peers: a kports inventory (`nodes:`) or kubespray's hosts.yaml or INI. Without it,
    /// in a pod, the peers come from the Kubernetes API (Nodes and the agent's pods); elsewhere
    /// the agent probes nothing.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<std::path::PathBuf>,
    /// This node's name among its peers. Default: $NODE_NAME, else the host name.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The port the peers' agents listen on (their /api/v1 is asked for the matrix). Default:
    /// this agent's own port.
    #[arg(long, value_name = "PORT")]
    pub peer_port: Option<u16>,
    /// How long each probe of a peer waits for an answer: `2s`, `500ms`, `1.5` (seconds).
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub probe_timeout: std::time::Duration,
    /// Up to this many nodes every node probes every other; beyond, a subset (every
    /// control-plane node, the etcd members and 16 peers chosen by rendezvous hashing).
    #[arg(long, value_name = "NODES", default_value_t = 50)]
    pub full_mesh_up_to: usize,
    /// Discover the peers through the Kubernetes API this kubeconfig names (its current
    /// context) instead of the pod's service account: for an agent run outside a pod. The
    /// agent's pods are looked for in $POD_NAMESPACE (default `kube-system`).
    #[arg(long, value_name = "FILE", conflicts_with = "inventory")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The label selector of the agent's own pods, for discovery in a pod.
    #[arg(
        long,
        value_name = "SELECTOR",
        default_value = "app.kubernetes.io/name=kports"
    )]
    pub pod_selector: String,
    #[command(flatten)]
    pub node: NodeContext,
}

/// `kports report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub node: NodeContext,
    /// The cluster's inventory (kports YAML or kubespray's), or `-` for standard input: this
    /// node's peers, judged by the firewall one by one and probed with --probe-peers.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// This node's name in the inventory (default: the node whose name is the host name, or
    /// whose address is one of this node's).
    #[arg(long = "self", value_name = "NAME", requires = "inventory")]
    pub self_name: Option<String>,
    /// Probe every port this node needs of each peer of the inventory.
    #[arg(long, requires = "inventory")]
    pub probe_peers: bool,
    /// How long each probe waits for an answer.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub probe_timeout: std::time::Duration,
    /// Output format (`wide` is `table`).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
}

/// `kports cluster`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["files", "via", "lab", "from_agents"])))]
pub struct ClusterArgs {
    /// Reports saved with `kports report -o json` (one per node, with its probes).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The cluster's inventory (kports YAML or kubespray's), for --via.
    #[arg(long, value_name = "FILE", requires = "via")]
    pub inventory: Option<PathBuf>,
    /// The command prefix that runs a command on a node: `ssh root@{address}`,
    /// `ip netns exec {name}`; kports's command line follows it.
    #[arg(long, value_name = "COMMAND", requires = "inventory")]
    pub via: Option<String>,
    /// Every node of `kports lab`, with this kports binary (needs root).
    #[arg(long, conflicts_with_all = ["inventory", "via", "remote_kports"])]
    pub lab: bool,
    /// The nodes' kports agents (`http://ADDR:PORT` or `ADDR:PORT`, one per node): each is asked
    /// for its report, its probes of its peers included. A node whose agent does not answer is
    /// shown as such.
    #[arg(long, value_name = "URL", num_args = 1.., value_parser = parse_agent_url,
          conflicts_with_all = ["inventory", "via", "lab", "remote_kports"])]
    pub from_agents: Vec<std::net::SocketAddr>,
    /// The agents' bearer token (`kports agent --token-file`), for --from-agents.
    #[arg(long, value_name = "FILE", requires = "from_agents")]
    pub token_file: Option<PathBuf>,
    /// The kports binary on the nodes: a name looked up in the node's PATH, or a path.
    #[arg(long, value_name = "PATH", default_value = "kports", requires = "via")]
    pub remote_kports: String,
    /// Nodes asked at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// How long one node may take to answer, from start to end.
    #[arg(long, default_value = "60s", value_parser = parse_node_timeout)]
    pub timeout: std::time::Duration,
    /// How long each of a node's probes waits for an answer.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub probe_timeout: std::time::Duration,
    /// Output format (`wide` is `table`).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
}

/// An agent's address: `http://ADDR:PORT`, `http://[V6]:PORT`, `ADDR:PORT` (an address, not a
/// name: kports asks only the addresses it is given).
fn parse_agent_url(s: &str) -> Result<std::net::SocketAddr, String> {
    let t = s.trim().trim_end_matches('/');
    if t.starts_with("https://") {
        return Err(format!(
            "`{s}`: the agent serves plain HTTP; use http://ADDR:PORT"
        ));
    }
    let t = t.strip_prefix("http://").unwrap_or(t);
    t.parse().map_err(|_| {
        format!(
            "`{s}` is not an agent's address such as http://192.0.2.11:9640 or [2001:db8::1]:9640"
        )
    })
}

/// A node's timeout: `60s`, `2m`, `90` (seconds); from 1 s to 1 h.
fn parse_node_timeout(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(
        s,
        ("m", 60.0),
        1.0..=3600.0,
        "60s, 2m or 90",
        "a node's timeout must be from 1s to 1h",
    )
}

/// A duration in seconds, with an `s` suffix, another `unit` (`m`, `ms`) or none, within `range`.
fn parse_duration(
    s: &str,
    (unit, scale): (&str, f64),
    range: std::ops::RangeInclusive<f64>,
    examples: &str,
    bounds: &str,
) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix(unit) {
        (n, scale)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    let secs = num
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v * scale)
        .ok_or_else(|| format!("`{s}` is not a duration such as {examples}"))?;
    if !range.contains(&secs) {
        return Err(format!("`{s}`: {bounds}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Inventory node names, addresses, CIDRs (at most 4096 addresses each) or host names.
    #[arg(value_name = "TARGET", required_unless_present = "inventory")]
    pub targets: Vec<String>,
    /// A kports inventory (`nodes:`) or kubespray's hosts.yaml or INI: names, addresses and
    /// roles. Without targets, every node in it is probed.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<std::path::PathBuf>,
    /// The targets' roles, comma-separated (control-plane, worker, etcd); wins over the inventory's.
    #[arg(long, value_delimiter = ',', value_name = "ROLE", value_parser = parse_role)]
    pub roles: Option<Vec<kports_core::catalog::Role>>,
    /// The CNI plugin(s), comma-separated, for their node-to-node ports (flannel: udp/8472, ...).
    #[arg(long, value_delimiter = ',', value_name = "CNI")]
    pub cni: Vec<String>,
    /// Ports instead of the roles' ports: `6443,10250,udp/8472,tcp/30000-30010` (TCP unless named).
    #[arg(long, value_name = "PORTS", value_parser = parse_ports_arg)]
    pub ports: Option<PortList>,
    /// How long to wait for each answer: `2s`, `500ms`, `1.5` (seconds). Over IPv6 an ICMP
    /// answer may come only to the SYN resent after 1 s, so less than that may see `filtered`.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,
    /// Probes in flight at once (each holds a socket). Default: the open-file limit (raised to
    /// its hard limit) minus 64, at most 16384.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub concurrency: Option<u32>,
    /// Output format (`wide` is `table`).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
}

/// The nodes a command works across (`preflight`, `overlay`): an inventory reached through
/// `--via`, or the lab's.
#[derive(Debug, Args)]
pub struct ClusterNodesArgs {
    /// A kports inventory (`nodes:`) or kubespray's hosts.yaml or INI: the nodes and their roles.
    #[arg(long, value_name = "FILE", requires = "via")]
    pub inventory: Option<std::path::PathBuf>,
    /// The command prefix that runs a command on a node; `{name}` and `{address}` are
    /// replaced: `ssh root@{address}`, `ip netns exec {name}`.
    #[arg(long, value_name = "COMMAND", requires = "inventory")]
    pub via: Option<String>,
    /// The nodes of `kports lab`.
    #[arg(long)]
    pub lab: bool,
    /// kports on the nodes, when it is not `kports` on their PATH.
    #[arg(long, value_name = "PATH", requires = "via")]
    pub remote_kports: Option<String>,
}

/// `kports preflight`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("nodes").required(true).args(["inventory", "lab", "hold"])))]
pub struct PreflightArgs {
    #[command(flatten)]
    pub nodes: ClusterNodesArgs,
    /// Every node's roles, comma-separated (control-plane, worker, etcd); wins over the inventory's.
    #[arg(long, value_delimiter = ',', value_name = "ROLE", value_parser = parse_role)]
    pub roles: Option<Vec<kports_core::catalog::Role>>,
    /// The CNI plugin(s) to be installed, comma-separated, for their node-to-node ports.
    #[arg(long, value_delimiter = ',', value_name = "CNI")]
    pub cni: Vec<String>,
    /// Ports instead of the roles' ports (every node holds them): `6443,udp/8472`.
    #[arg(long, value_name = "PORTS", value_parser = parse_ports_arg)]
    pub ports: Option<PortList>,
    /// How long each probe waits for an answer: `2s`, `500ms`.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,
    /// Seconds a node may take to report what it holds, and to run its probes.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub node_timeout: u64,
    /// Nodes worked on at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub parallel: u32,
    /// On a node: hold --ports, print what was bound and what is taken (with its holder), and
    /// let go when standard input closes or a signal comes.
    #[arg(long, requires = "ports", conflicts_with_all = ["inventory", "lab", "roles", "cni"])]
    pub hold: bool,
    /// With --hold: let go after this many seconds even if standard input stays open.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, requires = "hold",
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub max_hold: u64,
    /// Output format (`wide` is `table`).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
}

/// `kports overlay`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("nodes").required(true).args(["inventory", "lab", "node"])))]
pub struct OverlayArgs {
    #[command(flatten)]
    pub nodes: ClusterNodesArgs,
    /// The CNI plugin(s), for the firewall's verdict on their overlay port when a pair fails.
    #[arg(long, value_delimiter = ',', value_name = "CNI")]
    pub cni: Vec<String>,
    /// How long each echo waits for its reply: `1s`, `500ms`.
    #[arg(long, default_value = "1s", value_parser = parse_timeout)]
    pub echo_timeout: std::time::Duration,
    /// Seconds a node may take to answer (on top of its echoes' time).
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub node_timeout: u64,
    /// On a node: report its overlay device, counters, FDB and neighbour entries, and ping the
    /// --ping addresses.
    #[arg(long, conflicts_with_all = ["inventory", "lab"])]
    pub node: bool,
    /// With --node: the node's own address between nodes (its underlay interface is the one
    /// that holds it).
    #[arg(long, value_name = "ADDR", requires = "node")]
    pub underlay: Option<std::net::IpAddr>,
    /// With --node: a peer's overlay address to ping (repeatable).
    #[arg(long, value_name = "ADDR", requires = "node")]
    pub ping: Vec<std::net::Ipv4Addr>,
    /// With --node: the overlay device, when kports should not pick it.
    #[arg(long, value_name = "NAME", requires = "node")]
    pub device: Option<String>,
    /// Output format (`wide` is `table`).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
}

/// `--ports`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortList(pub Vec<kports_probe::plan::PortSpec>);

fn parse_ports_arg(s: &str) -> Result<PortList, String> {
    kports_probe::plan::parse_ports(s)
        .map(PortList)
        .map_err(|e| e.to_string())
}

fn parse_role(s: &str) -> Result<kports_core::catalog::Role, String> {
    kports_core::catalog::Role::ALL
        .into_iter()
        .find(|r| r.as_str() == s.trim())
        .ok_or_else(|| format!("`{s}` is not a role: control-plane, worker or etcd"))
}

/// `2s`, `500ms`, `1.5` (seconds); from 10 ms to 60 s.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(
        s,
        ("ms", 0.001),
        0.01..=60.0,
        "2s, 500ms or 1.5",
        "the timeout must be from 10ms to 60s",
    )
}

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Judge every required port of the node's role from each kind of source that needs it.
    ///
    /// The required ports are the port catalog's entries for the node's role and CNI (see
    /// `kports explain`), at the ports the running components' flags set. Reads nftables (`nft -j list ruleset`) and iptables in both variants (legacy and nf_tables,
    /// IPv4 and IPv6), walks every base chain of the input path for a new connection, and names
    /// the rule that decides. A ruleset kports cannot read is reported as unknown, never open.
    /// Exit status 0 when no row reaches --fail-on, 1 when one does, 2 on an error (the role
    /// unknown: pass --role), 3 when nothing reached --fail-on but a ruleset could not be read.
    #[command(after_long_help = "Examples:
  kports firewall check --sources 10.0.0.0/24 --control-plane 10.0.0.10   role and CNI detected
  kports firewall check --role worker --sources 10.0.0.0/24 --control-plane 10.0.0.10
  kports firewall check --role control-plane --cni calico --sources 10.0.0.0/24 -o json")]
    Check(FirewallCheckArgs),
    /// Print rules that open exactly what each source needs, and what they would change.
    ///
    /// The rules live in kports's own nft table (`inet kports`) or iptables chain
    /// (`KPORTS-INPUT`) and are safe to apply twice. An accept there does not override a drop in
    /// another table's base chain (or a `policy drop`): where one would still block a wanted
    /// connection, the nft and iptables scripts insert a narrow accept (the same source and port)
    /// into that chain, just before the drop, with a comment starting `kports:`. With
    /// `--own-table-only` they do not, and the plan lists those drops with the command that opens
    /// each. `--remove --script` prints the script that takes out everything kports added, in
    /// every table. firewalld and ufw plans go through `firewall-cmd` and `ufw` and change only
    /// what those tools manage (remove their rules with those tools).
    #[command(after_long_help = "Examples:
  kports firewall plan --backend nft --role worker --sources 10.0.0.0/24 --control-plane 10.0.0.10
  kports firewall plan --backend iptables --role control-plane --cni flannel \\
      --sources 10.0.0.0/24 --control-plane 10.0.0.10 --control-plane 10.0.0.11
  kports firewall plan --backend nft ... --script | sh    apply it
  kports firewall plan --backend nft ... --own-table-only   touch no other table or chain
  kports firewall plan --remove --script | sh              take out all kports added")]
    Plan(FirewallPlanArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanBackendArg {
    Nft,
    Iptables,
    Firewalld,
    Ufw,
}

impl From<PlanBackendArg> for PlanBackend {
    fn from(b: PlanBackendArg) -> PlanBackend {
        match b {
            PlanBackendArg::Nft => PlanBackend::Nft,
            PlanBackendArg::Iptables => PlanBackend::Iptables,
            PlanBackendArg::Firewalld => PlanBackend::Firewalld,
            PlanBackendArg::Ufw => PlanBackend::Ufw,
        }
    }
}

/// What kports is told about the node instead of detecting it: shared by `check`, `explain`
/// and the firewall commands.
#[derive(Debug, Args)]
pub struct NodeContext {
    /// The node's roles, comma-separated (`worker,etcd`; a kubeadm control plane with stacked
    /// etcd is `control-plane,etcd`); the ports of all of them are judged. Detected from the
    /// running components when not given.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "ROLE")]
    pub role: Option<Vec<RoleArg>>,
    /// The CNI plugin(s), comma-separated, for their overlay and control ports: calico,
    /// flannel, cilium, weave, antrea, kube-router, or none; `flannel:wireguard` (or `:vxlan`,
    /// `:udp`, `:host-gw`; `calico:vxlan+wireguard`) also names the backends, whose ports alone
    /// are then required. Detected from agents and devices (and flannel's net-conf.json) when
    /// not given.
    #[arg(long, value_delimiter = ',', value_name = "CNI")]
    pub cni: Option<Vec<String>>,
    /// A catalog file that extends or overrides the built-in one (format: docs/catalog.md).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

/// `--role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// API server, etcd, scheduler, controller-manager, kubelet, kube-proxy.
    ControlPlane,
    /// kubelet and kube-proxy.
    Worker,
    /// A dedicated etcd member.
    Etcd,
}

impl NodeContext {
    /// `--role` as a set; `None` when not given (detected).
    pub fn roles(&self) -> Option<Roles> {
        self.role
            .as_ref()
            .map(|list| list.iter().map(|r| Role::from(*r)).collect())
    }

    /// The node report's options these flags set; a command adds its own with `..`.
    pub fn options(&self) -> kports_node::Options {
        kports_node::Options {
            roles: self.roles(),
            cni: self.cni.clone(),
            catalog: self.catalog.clone(),
            ..kports_node::Options::default()
        }
    }
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::ControlPlane => Role::ControlPlane,
            RoleArg::Worker => Role::Worker,
            RoleArg::Etcd => Role::Etcd,
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub node: NodeContext,
    /// Exit with status 1 when a finding is at least this severe.
    #[arg(long, value_enum, default_value = "error")]
    pub fail_on: FailOn,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: CheckFormat,
    /// Before kubeadm runs: are the role's TCP and UDP ports free, and who holds those that
    /// are not? Needs --role.
    #[arg(long, requires = "role")]
    pub pre_install: bool,
    /// Check only the catalog entries of this Kubernetes version (for example 1.30).
    #[arg(long, value_name = "X.Y", value_parser = parse_version)]
    pub kubernetes_version: Option<Version>,
    /// Where socket lists come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceArg,
    /// Addresses that use the cluster, the nodes among them (CIDR or address; repeatable), for
    /// the firewall's verdicts. Default: the peers this node is connected to, and one address
    /// standing for any other host. Verdicts are evaluations of the rules; no traffic is sent.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr_arg)]
    pub sources: Vec<AddrRange>,
    /// Do not read the firewall (no `firewall-*` findings).
    #[arg(long)]
    pub no_firewall: bool,
}

/// `--fail-on` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Info,
    /// Always exit 0 (unless kports itself fails), also when the check is incomplete.
    Never,
}

impl FailOn {
    pub fn threshold(self) -> Option<Severity> {
        match self {
            FailOn::Error => Some(Severity::Error),
            FailOn::Warning => Some(Severity::Warning),
            FailOn::Info => Some(Severity::Info),
            FailOn::Never => None,
        }
    }
}

/// `kports check -o` values (a superset of the census formats' table, wide and json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Findings, most severe first, each with the command that shows it.
    Table,
    /// Findings, then every port checked.
    Wide,
    /// One JSON document (`kind: "check"`): items are the findings.
    Json,
    /// JUnit XML for CI: one test case per catalog port checked, failures for findings.
    Junit,
}

fn parse_version(s: &str) -> Result<Version, String> {
    Version::parse(s).ok_or_else(|| format!("`{s}` is not a Kubernetes version such as 1.30"))
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A port (2379, tcp/2379, 8472/udp), a component (etcd, kube-apiserver, apiserver) or a CNI
    /// (flannel).
    #[arg(value_name = "PORT|COMPONENT", value_parser = Subject::parse)]
    pub query: Subject,
    #[command(flatten)]
    pub node: NodeContext,
    /// Output format (wide is the same as table).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
    /// Where socket lists come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceArg,
}

/// What both firewall commands need to know about the cluster.
#[derive(Debug, Args)]
pub struct FirewallCommon {
    #[command(flatten)]
    pub node: NodeContext,
    /// Addresses that use the cluster, the nodes among them (CIDR or address; repeatable).
    /// `plan` needs it; `check` judges from the peers this node is connected to when not given.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr_arg)]
    pub sources: Vec<AddrRange>,
    /// A control-plane node's address (repeatable): etcd and the kubelet are opened to these only;
    /// when not given, the API server and etcd peers this node is connected to.
    #[arg(long = "control-plane", value_name = "ADDR", value_parser = parse_cidr_arg)]
    pub control_plane: Vec<AddrRange>,
    /// A load balancer's address or CIDR (repeatable), for kube-proxy's health check port.
    #[arg(long = "load-balancers", value_name = "CIDR", value_parser = parse_cidr_arg)]
    pub load_balancers: Vec<AddrRange>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct FirewallCheckArgs {
    #[command(flatten)]
    pub common: FirewallCommon,
    /// Exit with status 1 when a row is at least this bad: error (a required port blocked for a
    /// source that needs it), warning (a port open to sources that do not need it), info (a
    /// verdict that depends on a condition kports cannot evaluate). With nothing at that level,
    /// exit 3 when kports could not read a ruleset (or, roles detected, every socket's holder).
    #[arg(long, value_enum, default_value = "error")]
    pub fail_on: FailOn,
    /// The interface packets from the sources arrive on (default: the route back to each source).
    #[arg(long)]
    pub iif: Option<String>,
}

#[derive(Debug, Args)]
pub struct FirewallPlanArgs {
    #[command(flatten)]
    pub common: FirewallCommon,
    /// Which tool's rules to write.
    #[arg(long, value_enum, required_unless_present = "remove")]
    pub backend: Option<PlanBackendArg>,
    /// firewalld zone to add the rules to (default: the zone firewalld binds by default, else public).
    #[arg(long)]
    pub zone: Option<String>,
    /// Print only the script that applies the plan.
    #[arg(long)]
    pub script: bool,
    /// Write kports's own table or chain only: a drop in another table or chain that still
    /// blocks a wanted connection stays, and the plan says so.
    #[arg(long, conflicts_with = "remove")]
    pub own_table_only: bool,
    /// Take out everything kports added (its table, its chains, the accepts it inserted in
    /// other chains) instead of planning; with --script, print only the script that does it.
    #[arg(long, conflicts_with_all = ["backend", "zone"])]
    pub remove: bool,
}

pub fn parse_cidr_arg(s: &str) -> Result<AddrRange, String> {
    kports_firewall::model::parse_cidr(s)
        .ok_or_else(|| format!("`{s}` is not an address or CIDR (10.0.0.0/24, fd00::1)"))
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells kports writes completions for. (clap_complete knows elvish and PowerShell too;
/// leaving them out keeps their generators out of the binary.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created when missing).
    pub dir: PathBuf,
}

/// Options every census command shares.
#[derive(Debug, Args)]
pub struct Common {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
    /// Take the census in every network namespace of the host (pods, containers, `ip netns`).
    #[arg(long)]
    pub all_netns: bool,
    /// Only IPv4 sockets and addresses (as `ss -4`: an IPv6 socket on `[::]` is left out).
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Only IPv6 sockets and addresses.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Run again every SECONDS (2 when not given) until interrupted: redrawn on a terminal,
    /// one document after another when piped (`-o json`: one JSON document per interval).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
          value_parser = parse_interval)]
    pub watch: Option<std::time::Duration>,
}

impl Common {
    /// Whether `--ipv4`/`--ipv6` keep this family.
    pub fn keeps(&self, family: kports_core::Family) -> bool {
        match family {
            kports_core::Family::Ipv4 => !self.ipv6,
            kports_core::Family::Ipv6 => !self.ipv4,
        }
    }
}

impl Command {
    /// `--watch`'s interval, for the commands that take it.
    pub fn watch(&self) -> Option<std::time::Duration> {
        match self {
            Command::Node(a) => a.common.watch,
            Command::Listen(a) => a.common.watch,
            Command::Conns(a) => a.common.watch,
            _ => None,
        }
    }
}

/// `--watch` seconds: from 0.1 to 3600 (`0.5`, `2`, `10s`).
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let secs = t
        .strip_suffix('s')
        .unwrap_or(t)
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{s}` is not a number of seconds such as 2 or 0.5"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!(
            "`{s}`: the interval must be from 0.1 to 3600 seconds"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Where socket lists come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    /// Netlink sock_diag, falling back to /proc/net where it is unavailable.
    Auto,
    /// Netlink sock_diag only (what `ss` uses).
    Netlink,
    /// /proc/net/{tcp,udp}{,6} and /proc/net/unix (what `netstat` uses).
    Proc,
}

impl From<SourceArg> for kports_linux::census::SocketSource {
    fn from(s: SourceArg) -> kports_linux::census::SocketSource {
        use kports_linux::census::SocketSource;
        match s {
            SourceArg::Auto => SocketSource::Auto,
            SourceArg::Netlink => SocketSource::Netlink,
            SourceArg::Proc => SocketSource::Proc,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    Tcp,
    Udp,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only interfaces of this kind: bridge, veth, vxlan, geneve, wireguard, dummy, device, loopback, ...
    #[arg(long)]
    pub kind: Option<String>,
}

/// Filters on sockets, shared by `listen` and `conns`.
#[derive(Debug, Args)]
pub struct Filters {
    /// Only sockets of processes with this name (the full name, or the kernel's 15-character
    /// one that `ss` shows) or pid.
    #[arg(long, value_name = "NAME|PID")]
    pub process: Option<String>,
    /// Only sockets of this Kubernetes component (kube-apiserver, etcd, kubelet, ...), or a
    /// unique part of its name (apiserver, scheduler).
    #[arg(long, value_parser = kports_core::component::canonical)]
    pub component: Option<&'static str>,
    /// Only this local port, or a range such as 30000-32767.
    #[arg(long, value_parser = parse_port_range)]
    pub port: Option<(u16, u16)>,
    /// Where socket lists come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceArg,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub filters: Filters,
    /// Only this protocol.
    #[arg(long, value_enum)]
    pub proto: Option<ProtoArg>,
    /// Every socket in every state (established, time-wait, ...), not only listeners.
    #[arg(long)]
    pub all_states: bool,
    /// Also list UNIX domain sockets.
    #[arg(long)]
    pub unix: bool,
    /// Order of the rows (default: by protocol, then port and address).
    #[arg(long, value_enum)]
    pub sort: Option<ListenSort>,
    /// Find every holder of each socket. By default the scan of /proc stops once each listener
    /// has an owner and then checks only those owners' children (which inherit sockets); a
    /// socket passed to an unrelated process over a UNIX socket is then shown with its first
    /// holder only.
    #[arg(long)]
    pub all_owners: bool,
}

#[derive(Debug, Args)]
pub struct ConnsArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub filters: Filters,
    /// Break each listener's connections down by remote address.
    #[arg(long)]
    pub by_peer: bool,
    /// One line per process and port, adding up the addresses it listens on.
    #[arg(long)]
    pub by_port: bool,
    /// Only connections accepted by local listeners (hide outgoing ones).
    #[arg(long, conflicts_with = "outbound")]
    pub inbound: bool,
    /// Only outgoing connections, grouped by remote service.
    #[arg(long)]
    pub outbound: bool,
    /// Order of the rows (default: incoming by listener, then outgoing by service).
    #[arg(long, value_enum)]
    pub sort: Option<ConnsSort>,
}

/// `kports listen --sort` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListenSort {
    /// Local port, then address.
    Port,
    /// Local address, then port.
    Address,
    /// Holding process's name.
    Process,
    /// Holding process's pid.
    Pid,
    /// Component.
    Component,
}

/// `kports conns --sort` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnsSort {
    /// Most established connections first.
    Established,
    /// Port (the listener's for `in`, the service's for `out`).
    Port,
    /// Process name.
    Process,
    /// Component.
    Component,
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    kports_core::catalog::PortRange::parse(s).map(|r| (r.first, r.last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("10250"), Ok((10250, 10250)));
        assert_eq!(parse_port_range("30000-32767"), Ok((30000, 32767)));
        assert!(parse_port_range("70000").is_err());
        assert_eq!(
            parse_port_range("0"),
            Err("`0` is not a port number (1-65535)".to_string())
        );
        assert!(parse_port_range("9-1").is_err());
        assert!(parse_port_range("http").is_err());
    }

    #[test]
    fn probe_flags() {
        use std::time::Duration;
        assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "5ms", "61s", "soon", "NaN", "-1s", "inf"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_node_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_node_timeout("90"), Ok(Duration::from_secs(90)));
        for bad in ["0.5s", "61m", "2h", "500ms"] {
            assert!(parse_node_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_role("control-plane"),
            Ok(kports_core::catalog::Role::ControlPlane)
        );
        assert!(parse_role("master").is_err());
        assert!(parse_ports_arg("udp/8472").is_ok_and(|p| p.0.len() == 1));
        assert!(parse_ports_arg("8472/udp").is_err());
    }

    #[test]
    fn watch_intervals() {
        use std::time::Duration;
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("0.5s"), Ok(Duration::from_millis(500)));
        for bad in ["0", "0.01", "3601", "soon", "NaN", "-1"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thresholds_and_versions() {
        assert_eq!(FailOn::Error.threshold(), Some(Severity::Error));
        assert_eq!(FailOn::Never.threshold(), None);
        assert!(parse_version("1.30").is_ok());
        assert!(parse_version("latest").is_err());
    }

    #[test]
    fn addresses_are_parsed_once() {
        assert_eq!(
            parse_cidr_arg("192.0.2.0/24").map(|r| r.to_string()),
            Ok("192.0.2.0/24".to_string())
        );
        assert!(parse_cidr_arg("300.1.1.1").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        command().debug_assert();
    }
}
