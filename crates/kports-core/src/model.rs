//! The plain data kports collects about a node: interfaces, sockets, processes, namespaces.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

/// Transport protocol of an internet socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// Socket state as the kernel numbers it (`include/net/tcp_states.h`), named as `ss` names it.
///
/// UDP and raw sockets reuse the numbers: a bound, unconnected UDP socket is `Close` (7), which
/// `ss` prints as `UNCONN`; a connected one is `Established`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SockState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    #[serde(rename = "unconn")]
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
    /// A state number this build of kports does not know; kept, never guessed.
    Unknown(u8),
}

impl SockState {
    pub fn from_kernel(n: u8) -> SockState {
        match n {
            1 => SockState::Established,
            2 => SockState::SynSent,
            3 => SockState::SynRecv,
            4 => SockState::FinWait1,
            5 => SockState::FinWait2,
            6 => SockState::TimeWait,
            7 => SockState::Close,
            8 => SockState::CloseWait,
            9 => SockState::LastAck,
            10 => SockState::Listen,
            11 => SockState::Closing,
            12 => SockState::NewSynRecv,
            13 => SockState::BoundInactive,
            n => SockState::Unknown(n),
        }
    }

    /// The name `ss` prints for this state.
    pub fn ss_name(self) -> &'static str {
        match self {
            SockState::Established => "ESTAB",
            SockState::SynSent => "SYN-SENT",
            SockState::SynRecv => "SYN-RECV",
            SockState::FinWait1 => "FIN-WAIT-1",
            SockState::FinWait2 => "FIN-WAIT-2",
            SockState::TimeWait => "TIME-WAIT",
            SockState::Close => "UNCONN",
            SockState::CloseWait => "CLOSE-WAIT",
            SockState::LastAck => "LAST-ACK",
            SockState::Listen => "LISTEN",
            SockState::Closing => "CLOSING",
            SockState::NewSynRecv => "NEW-SYN-RECV",
            SockState::BoundInactive => "BOUND-INACTIVE",
            SockState::Unknown(_) => "UNKNOWN",
        }
    }
}

/// Which network namespace a socket or interface lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Netns {
    /// The namespace's inode number (what `/proc/PID/ns/net` links to: `net:[INODE]`).
    pub inode: u64,
    /// Its name under `/run/netns` (as `ip netns` names it), if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// True for the namespace of PID 1, the host's.
    pub host: bool,
}

impl Netns {
    /// Short label for tables: the name, `host`, or `net:[inode]`.
    pub fn label(&self) -> String {
        match (&self.name, self.host) {
            (Some(n), _) => n.clone(),
            (None, true) => "host".to_string(),
            (None, false) => format!("net:[{}]", self.inode),
        }
    }
}

/// An internet socket (TCP or UDP) as the kernel reports it, joined with its owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    pub proto: Proto,
    pub family: Family,
    pub state: SockState,
    pub local_address: IpAddr,
    pub local_port: u16,
    pub remote_address: IpAddr,
    pub remote_port: u16,
    /// Socket inode; 0 for TIME-WAIT and embryonic connections, which no file refers to.
    pub inode: u64,
    /// Owning user id of the socket.
    pub uid: u32,
    /// Bound device (`SO_BINDTODEVICE`, or the `%dev` of a link-local bind), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// cgroup v2 id of the socket (from sock_diag), if the kernel reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// Processes holding a file descriptor to this socket. Empty with `owner` = `kernel` for
    /// sockets that the kernel itself holds (a VXLAN device's UDP socket, for example).
    pub processes: Processes,
    pub owner: Owner,
    /// Kubernetes component this socket belongs to, recognised from its owner.
    pub component: Option<&'static str>,
    /// Network namespace the socket lives in.
    pub netns: Option<Arc<Netns>>,
    /// The cgroup the socket was created in, named from `cgroup_id`, for sockets whose holder
    /// is not known: it still tells the container and pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Arc<CgroupRef>>,
}

impl Socket {
    /// Whether it is a listener: a listening TCP socket or a bound, unconnected UDP one.
    pub fn is_listener(&self) -> bool {
        match self.proto {
            Proto::Tcp => self.state == SockState::Listen,
            Proto::Udp => self.state == SockState::Close && self.local_port != 0,
        }
    }
}

/// A cgroup and the container and pod it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupRef {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// The processes holding a socket: shared, since many sockets have the same holders.
pub type Processes = Arc<Vec<Arc<ProcessRef>>>;

/// Who owns a socket, as far as kports could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// One or more processes hold it; see `processes`.
    Process,
    /// Every process's descriptors were read and none holds it: the kernel does.
    Kernel,
    /// Not every process's descriptors could be read (see the warnings), so kports cannot say.
    Unknown,
    /// No file refers to this socket (TIME-WAIT, embryonic connections).
    None,
}

/// A UNIX domain socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnixSocket {
    /// `stream`, `dgram` or `seqpacket`.
    pub kind: &'static str,
    pub state: SockState,
    /// Bound path; abstract names start with `@`; empty when unnamed.
    pub path: String,
    pub inode: u64,
    /// Inode of the connected peer socket, 0 when unconnected.
    pub peer_inode: u64,
    pub processes: Processes,
    pub owner: Owner,
    pub component: Option<&'static str>,
    pub netns: Option<Arc<Netns>>,
}

/// A process as shown next to a socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ProcessRef {
    pub pid: u32,
    /// Full program name (`kube-controller-manager`), never the kernel's 15-byte `comm`.
    pub name: String,
    /// Command line, redacted ([`crate::redact`]).
    pub cmdline: String,
    /// The arguments that held a secret, as shown in `cmdline` (`--token=REDACTED`): a secret
    /// on a command line is readable by every user of the node.
    #[serde(skip)]
    pub secrets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// What the collectors read about a process that owns sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// `/proc/PID/comm`: at most 15 bytes.
    pub comm: String,
    /// `/proc/PID/exe` target, if readable.
    pub exe: Option<String>,
    /// `/proc/PID/cmdline`, split at NULs.
    pub argv: Vec<String>,
    /// `/proc/PID/cgroup` lines.
    pub cgroup: String,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    /// `bridge`, `veth`, `vxlan`, `geneve`, `wireguard`, `dummy`, ... from netlink link info;
    /// `loopback` for lo and `device` for an interface with no link kind (a physical NIC).
    pub kind: String,
    /// Operational state: `up`, `down`, `unknown`, `dormant`, `lowerlayerdown`, ...
    pub state: String,
    pub mtu: u32,
    pub mac: Option<String>,
    /// Name of the bridge or bond this interface is enslaved to.
    pub master: Option<String>,
    /// UDP port of a VXLAN or Geneve device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_port: Option<u16>,
    pub addresses: Vec<Address>,
    pub netns: Option<Arc<Netns>>,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub family: Family,
    /// `global`, `link`, `host`, `site`, or the number.
    pub scope: String,
}

/// A non-fatal problem met while collecting: partial data comes back with these, not errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable identifier a script can match on.
    pub code: &'static str,
    pub message: String,
}

impl Warning {
    pub fn new(code: &'static str, message: impl Into<String>) -> Warning {
        Warning {
            code,
            message: message.into(),
        }
    }
}

/// The empty holder list, shared so that sockets without owners cost no allocation.
pub fn no_processes() -> Processes {
    static EMPTY: std::sync::LazyLock<Processes> =
        std::sync::LazyLock::new(|| Arc::new(Vec::new()));
    EMPTY.clone()
}
