//! The rule model that both parsers produce and the evaluator walks.
//!
//! nftables and iptables rules are brought to one shape: tables of chains of rules, each rule a
//! list of conditions and one action. A condition compares one field of the packet (a [`Key`])
//! with a list of values or a named set. Whatever a parser cannot express becomes
//! [`Key::Unknown`] with the rule's own words, so the evaluator answers "depends on ..." for it
//! instead of guessing.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

/// Which tool's view a table comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A native nftables table (`nft list ruleset`).
    Nft,
    /// An iptables table kept in nftables by `iptables-nft` (read with `iptables-nft-save`).
    IptablesNft,
    /// An iptables table of the legacy x_tables backend (`iptables-legacy-save`); invisible to `nft`.
    IptablesLegacy,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::IptablesNft => "iptables-nft",
            Backend::IptablesLegacy => "iptables-legacy",
        }
    }

    /// The iptables tool of this backend and family (`ip6tables-legacy`); `None` for nft.
    pub fn iptables_tool(self, v6: bool) -> Option<&'static str> {
        match (self, v6) {
            (Backend::Nft, _) => None,
            (Backend::IptablesNft, false) => Some("iptables-nft"),
            (Backend::IptablesNft, true) => Some("ip6tables-nft"),
            (Backend::IptablesLegacy, false) => Some("iptables-legacy"),
            (Backend::IptablesLegacy, true) => Some("ip6tables-legacy"),
        }
    }
}

/// The family of a table: which packets its chains see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFamily {
    Ip,
    Ip6,
    Inet,
}

impl TableFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            TableFamily::Ip => "ip",
            TableFamily::Ip6 => "ip6",
            TableFamily::Inet => "inet",
        }
    }

    /// Whether packets of this IP version pass through the table.
    pub fn sees(self, v6: bool) -> bool {
        match self {
            TableFamily::Ip => !v6,
            TableFamily::Ip6 => v6,
            TableFamily::Inet => true,
        }
    }
}

/// The netfilter hooks an inbound packet for a local socket passes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Prerouting,
    Input,
}

/// Chain type of a base chain. Only `filter` chains decide verdicts here: `nat` chains rewrite
/// addresses and `route` chains re-route, neither is walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

/// A base chain's policy: what happens to a packet that falls off its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Accept,
    Drop,
}

/// Where a base chain is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    pub priority: i32,
    pub kind: ChainType,
    pub policy: Policy,
}

/// Every table kports could read, plus what it could not read and why.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    pub tables: Vec<Table>,
    /// Sources that could not be read (`nft` missing, permission denied, ...): verdicts that
    /// depend on them are unknown, never "open".
    pub unread: Vec<Unread>,
}

/// A ruleset source kports could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unread {
    /// `nft`, `iptables-legacy`, `ip6tables-nft`, ...
    pub source: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub backend: Backend,
    pub family: TableFamily,
    pub name: String,
    pub chains: Vec<Chain>,
    pub sets: Vec<NamedSet>,
    chain_index: HashMap<String, usize>,
    set_index: HashMap<String, usize>,
}

impl Table {
    pub fn new(backend: Backend, family: TableFamily, name: impl Into<String>) -> Table {
        Table {
            backend,
            family,
            name: name.into(),
            chains: Vec::new(),
            sets: Vec::new(),
            chain_index: HashMap::new(),
            set_index: HashMap::new(),
        }
    }

    /// Adds a chain, or returns the one of that name (so rules may arrive before their chain).
    pub fn chain_mut(&mut self, name: &str) -> &mut Chain {
        let i = match self.chain_index.get(name) {
            Some(&i) => i,
            None => {
                self.chains.push(Chain {
                    name: name.to_string(),
                    base: None,
                    rules: Vec::new(),
                });
                let i = self.chains.len() - 1;
                self.chain_index.insert(name.to_string(), i);
                i
            }
        };
        &mut self.chains[i]
    }

    pub fn chain_id(&self, name: &str) -> Option<usize> {
        self.chain_index.get(name).copied()
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chain_id(name).map(|i| &self.chains[i])
    }

    pub fn add_set(&mut self, set: NamedSet) {
        self.set_index.insert(set.name.clone(), self.sets.len());
        self.sets.push(set);
    }

    pub fn set(&self, name: &str) -> Option<&NamedSet> {
        self.set_index.get(name).map(|&i| &self.sets[i])
    }

    /// `ip filter`, `inet firewalld`.
    pub fn label(&self) -> String {
        format!("{} {}", self.family.as_str(), self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// nftables rule handle (also what `nft insert rule ... position H` takes).
    pub handle: Option<u64>,
    /// The rule as its tool prints it (`nft -a list ruleset` line or `iptables-save` line).
    pub text: String,
    pub conds: Vec<Cond>,
    pub action: Action,
}

/// A named nftables set or map. For a verdict map, `verdicts[i]` belongs to `elems[i]`.
#[derive(Debug, Clone)]
pub struct NamedSet {
    pub name: String,
    pub elems: Vec<Val>,
    pub verdicts: Option<Vec<Action>>,
}

/// One condition of a rule: `key` compared with `rhs`, negated when `neg`.
#[derive(Debug, Clone)]
pub struct Cond {
    pub key: Key,
    pub neg: bool,
    pub rhs: Rhs,
}

#[derive(Debug, Clone)]
pub enum Rhs {
    Vals(Vec<Val>),
    /// A named set of the same table (`@name`).
    Set(String),
}

/// Direction of an address or port field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Src,
    Dst,
}

/// A field of the packet (or of its connection) that a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The transport protocol number (`meta l4proto`, `ip protocol`, `-p`).
    L4Proto,
    /// A port; `proto` is the header it is read from (`tcp dport` needs TCP), `None` for `th`.
    Port { dir: Dir, proto: Option<u8> },
    /// An address; `v6` is the header it is read from (`ip saddr` needs IPv4).
    Addr { dir: Dir, v6: Option<bool> },
    /// Input interface name (`iifname`, `-i`); values may end in `*`.
    Iifname,
    /// Output interface name: never set on the input path.
    Oifname,
    /// `meta nfproto`: `ipv4` or `ipv6`.
    NfProto,
    /// Conntrack state, matched as a set of names (`new`, `established`, ...).
    CtState,
    /// Conntrack status flags (`dnat`, `snat`, ...); a new, un-NATed connection has none.
    CtStatus,
    /// Conntrack direction (`original` for the first packet).
    CtDirection,
    /// Link-layer packet type: `host` for a unicast packet to this node.
    PktType,
    /// iptables `--syn`: TCP SYN without ACK, what the first packet of a connection is.
    TcpSyn,
    /// iptables `-m addrtype`: the kind of the address (`LOCAL`, `UNICAST`, ...).
    AddrType { dir: Dir },
    /// Several fields concatenated (`ip saddr . tcp dport`).
    Concat(Vec<Key>),
    /// A field kports does not evaluate: the text is what "depends on" names.
    Unknown(String),
}

/// A value a field is compared with. Integers and addresses are inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Int(u64, u64),
    Addr(AddrRange),
    Str(String),
    Concat(Vec<Val>),
}

/// An inclusive range of addresses of one family (a prefix, a range, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrRange {
    pub v6: bool,
    pub lo: u128,
    pub hi: u128,
}

impl AddrRange {
    pub fn single(a: IpAddr) -> AddrRange {
        let (v6, x) = bits(a);
        AddrRange { v6, lo: x, hi: x }
    }

    /// The prefix `a/len`; `len` beyond the family's width is clamped.
    pub fn prefix(a: IpAddr, len: u8) -> AddrRange {
        let (v6, x) = bits(a);
        let width: u32 = if v6 { 128 } else { 32 };
        let len = u32::from(len).min(width);
        let host = width - len;
        let mask: u128 = match host {
            0 => 0,
            128 => u128::MAX,
            h => (1u128 << h) - 1,
        };
        AddrRange {
            v6,
            lo: x & !mask,
            hi: x | mask,
        }
    }

    pub fn contains(&self, o: &AddrRange) -> bool {
        self.v6 == o.v6 && self.lo <= o.lo && o.hi <= self.hi
    }

    pub fn overlaps(&self, o: &AddrRange) -> bool {
        self.v6 == o.v6 && self.lo <= o.hi && o.lo <= self.hi
    }

    pub fn is_loopback(&self) -> bool {
        if self.v6 {
            self.lo == 1 && self.hi == 1
        } else {
            let net = AddrRange::prefix(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0)), 8);
            net.contains(self)
        }
    }

    pub fn first(&self) -> IpAddr {
        to_ip(self.v6, self.lo)
    }

    /// The prefix length if the range is exactly one prefix.
    pub fn prefix_len(&self) -> Option<u8> {
        let size = self.hi.checked_sub(self.lo)?.checked_add(1);
        let width: u32 = if self.v6 { 128 } else { 32 };
        match size {
            // The whole IPv6 space overflows u128 by one.
            None if self.v6 && self.lo == 0 => Some(0),
            None => None,
            Some(n) if n.is_power_of_two() && self.lo % n == 0 => {
                let host = n.trailing_zeros();
                u8::try_from(width.checked_sub(host)?).ok()
            }
            Some(_) => None,
        }
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = if self.v6 { 128 } else { 32 };
        match self.prefix_len() {
            Some(l) if l == width => write!(f, "{}", self.first()),
            Some(l) => write!(f, "{}/{l}", self.first()),
            None => write!(f, "{}-{}", self.first(), to_ip(self.v6, self.hi)),
        }
    }
}

fn bits(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn to_ip(v6: bool, x: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(x.into())
    } else {
        // Truncation is intended: an IPv4 range never holds more than 32 bits.
        IpAddr::V4(std::net::Ipv4Addr::from(x as u32))
    }
}

/// Parses `10.0.0.0/8`, `fd00::/64` or a plain address.
pub fn parse_cidr(s: &str) -> Option<AddrRange> {
    match s.split_once('/') {
        Some((a, l)) => {
            let a: IpAddr = a.trim().parse().ok()?;
            let l: u8 = l.trim().parse().ok()?;
            let width = if a.is_ipv6() { 128 } else { 32 };
            (l <= width).then(|| AddrRange::prefix(a, l))
        }
        None => s.trim().parse().ok().map(AddrRange::single),
    }
}

/// What a rule does when all its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No verdict (counter, log, mark): the next rule is considered.
    Continue,
    Accept,
    Drop,
    /// Reject, with the kind of answer (`tcp reset`, `icmp port-unreachable`, ...).
    Reject(Option<String>),
    Jump(String),
    Goto(String),
    Return,
    /// A verdict map: the packet's `key` picks the action.
    Vmap {
        key: Key,
        map: VmapRef,
    },
    /// An action whose effect kports does not model (queue to user space, notrack, tproxy).
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmapRef {
    Inline(Vec<(Val, Action)>),
    Named(String),
}

/// Protocol names as nft and iptables print them.
pub fn proto_number(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "ipip" | "ipencap" | "ipv4" => 4,
        "tcp" => 6,
        "udp" => 17,
        "ipv6" => 41,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" => 58,
        "sctp" => 132,
        "udplite" => 136,
        n => return n.parse().ok(),
    })
}

pub fn proto_name(n: u8) -> String {
    match n {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// Well-known service names that may appear instead of port numbers.
pub fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "ssh" => 22,
        "domain" => 53,
        "http" => 80,
        "https" => 443,
        "bgp" => 179,
        "kubernetes" => 6443,
        n => return n.parse().ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_ranges() {
        let r = parse_cidr("10.1.2.3/16").unwrap();
        assert_eq!(r.to_string(), "10.1.0.0/16");
        assert!(r.contains(&parse_cidr("10.1.200.1").unwrap()));
        assert!(!r.contains(&parse_cidr("10.2.0.1").unwrap()));
        assert_eq!(parse_cidr("::/0").unwrap().prefix_len(), Some(0));
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(parse_cidr("fd00::1").unwrap().to_string(), "fd00::1");
        let odd = AddrRange {
            v6: false,
            lo: 1,
            hi: 5,
        };
        assert_eq!(odd.to_string(), "0.0.0.1-0.0.0.5");
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("127.0.0.1").unwrap().is_loopback());
        assert!(!parse_cidr("128.0.0.1").unwrap().is_loopback());
    }
}
