//! What one probe found, and how an errno becomes a status.
//!
//! The table is the one measured in ports-reference (what connect() returns for each kind of
//! block): a reset or an ICMP port unreachable is `ECONNREFUSED` (nothing listens, or a plain
//! reject: they look the same from here); ICMP host or network unreachable and administratively
//! prohibited are `EHOSTUNREACH`, `ENETUNREACH` or (IPv6) `EACCES`; no answer is a timeout. A
//! failure of this machine itself (out of file descriptors, no source address) is `unknown`,
//! never a verdict about the target.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Transport protocol of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl From<kports_core::Proto> for Transport {
    fn from(p: kports_core::Proto) -> Transport {
        match p {
            kports_core::Proto::Tcp => Transport::Tcp,
            kports_core::Proto::Udp => Transport::Udp,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    /// TCP: the handshake completed. UDP: something answered (a kports responder or a service).
    #[serde(rename = "open")]
    Open,
    /// TCP: a reset or an ICMP port unreachable. Nothing listens, or a firewall rejects.
    #[serde(rename = "refused")]
    Refused,
    /// TCP: no answer within the timeout (a drop, a security group, a host that is down).
    #[serde(rename = "filtered")]
    Filtered,
    /// ICMP host or network unreachable, administratively prohibited, or no route: see `errno`.
    #[serde(rename = "unreachable")]
    Unreachable,
    /// UDP: ICMP port unreachable.
    #[serde(rename = "closed")]
    Closed,
    /// UDP: no answer. A UDP service need not answer, so open and dropped look the same.
    #[serde(rename = "open|filtered")]
    OpenFiltered,
    /// This machine could not send the probe (see `errno`): nothing is known about the target.
    #[serde(rename = "unknown")]
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Refused => "refused",
            Status::Filtered => "filtered",
            Status::Unreachable => "unreachable",
            Status::Closed => "closed",
            Status::OpenFiltered => "open|filtered",
            Status::Unknown => "unknown",
        }
    }

    /// Whether the target failed to be reached. `open|filtered` is not a failure: a probe cannot
    /// tell a silent UDP service from a drop.
    pub fn is_failure(self) -> bool {
        !matches!(self, Status::Open | Status::OpenFiltered)
    }

    /// How nmap names the same answer (`-sT`, `-sU`): unreachable is `filtered` to nmap, and
    /// `unknown` has no nmap equivalent.
    pub fn nmap_name(self) -> Option<&'static str> {
        match self {
            Status::Open => Some("open"),
            Status::Refused | Status::Closed => Some("closed"),
            Status::Filtered | Status::Unreachable => Some("filtered"),
            Status::OpenFiltered => Some("open|filtered"),
            Status::Unknown => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error number from the kernel, shown and serialized by its symbolic name (`EHOSTUNREACH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(pub i32);

impl Errno {
    /// The symbolic name of the errors a probe can meet; `errno N` for others.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        let n = match self.0 {
            libc::ECONNREFUSED => "ECONNREFUSED",
            libc::EHOSTUNREACH => "EHOSTUNREACH",
            libc::ENETUNREACH => "ENETUNREACH",
            libc::EACCES => "EACCES",
            libc::EPERM => "EPERM",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::ECONNRESET => "ECONNRESET",
            libc::EHOSTDOWN => "EHOSTDOWN",
            libc::ENETDOWN => "ENETDOWN",
            libc::EPROTO => "EPROTO",
            libc::EMFILE => "EMFILE",
            libc::ENFILE => "ENFILE",
            libc::ENOBUFS => "ENOBUFS",
            libc::ENOMEM => "ENOMEM",
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            libc::EADDRINUSE => "EADDRINUSE",
            libc::EAFNOSUPPORT => "EAFNOSUPPORT",
            libc::EINVAL => "EINVAL",
            libc::EMSGSIZE => "EMSGSIZE",
            n => return format!("errno {n}").into(),
        };
        n.into()
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Errno {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl Errno {
    /// The errno [`Errno::name`] gave `name` (`ECONNREFUSED`, `errno 71`).
    pub fn from_name(name: &str) -> Option<Errno> {
        if let Some(n) = name.strip_prefix("errno ") {
            return n.parse().ok().map(Errno);
        }
        const KNOWN: [i32; 19] = [
            libc::ECONNREFUSED,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EACCES,
            libc::EPERM,
            libc::ETIMEDOUT,
            libc::ECONNRESET,
            libc::EHOSTDOWN,
            libc::ENETDOWN,
            libc::EPROTO,
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EADDRNOTAVAIL,
            libc::EADDRINUSE,
            libc::EAFNOSUPPORT,
            libc::EINVAL,
            libc::EMSGSIZE,
        ];
        KNOWN.into_iter().map(Errno).find(|e| e.name() == name)
    }
}

impl<'de> Deserialize<'de> for Errno {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Errno, D::Error> {
        let s = String::deserialize(d)?;
        Errno::from_name(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not an errno kports names")))
    }
}

/// The status an error of a TCP connect() means.
pub fn tcp_error(errno: i32) -> Status {
    match errno {
        libc::ECONNREFUSED | libc::ECONNRESET => Status::Refused,
        libc::ETIMEDOUT => Status::Filtered,
        e if is_unreachable(e) => Status::Unreachable,
        _ => Status::Unknown,
    }
}

/// The status an error on a connected UDP socket means.
pub fn udp_error(errno: i32) -> Status {
    match errno {
        libc::ECONNREFUSED => Status::Closed,
        e if is_unreachable(e) => Status::Unreachable,
        _ => Status::Unknown,
    }
}

/// ICMP host/net unreachable, admin-prohibited (`EACCES` over IPv6), no route; `EPERM` is this
/// node's own output firewall refusing the packet, also a blocked path (a UDP send sees it; a
/// TCP connect does not: the kernel keeps resending the SYN, so it times out as `filtered`).
fn is_unreachable(errno: i32) -> bool {
    matches!(
        errno,
        libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EACCES
            | libc::EPERM
            | libc::EHOSTDOWN
            | libc::ENETDOWN
            | libc::EPROTO
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_errors_follow_the_measured_table() {
        let check = |e, s| assert_eq!(tcp_error(e), s, "{}", Errno(e));
        check(libc::ECONNREFUSED, Status::Refused);
        check(libc::EHOSTUNREACH, Status::Unreachable);
        check(libc::ENETUNREACH, Status::Unreachable);
        check(libc::EACCES, Status::Unreachable);
        check(libc::EPERM, Status::Unreachable);
        check(libc::ETIMEDOUT, Status::Filtered);
        check(libc::EMFILE, Status::Unknown);
        check(libc::EADDRNOTAVAIL, Status::Unknown);
    }

    #[test]
    fn udp_errors() {
        assert_eq!(udp_error(libc::ECONNREFUSED), Status::Closed);
        assert_eq!(udp_error(libc::EHOSTUNREACH), Status::Unreachable);
        assert_eq!(udp_error(libc::ENOBUFS), Status::Unknown);
    }

    #[test]
    fn errno_names_and_json() {
        assert_eq!(Errno(libc::EHOSTUNREACH).to_string(), "EHOSTUNREACH");
        assert_eq!(Errno(9999).to_string(), "errno 9999");
        assert_eq!(
            serde_json::to_string(&Status::OpenFiltered).ok().as_deref(),
            Some("\"open|filtered\"")
        );
        assert_eq!(
            serde_json::to_string(&Errno(libc::EACCES)).ok().as_deref(),
            Some("\"EACCES\"")
        );
    }

    #[test]
    fn nmap_names() {
        assert_eq!(Status::Refused.nmap_name(), Some("closed"));
        assert_eq!(Status::Unreachable.nmap_name(), Some("filtered"));
        assert_eq!(Status::Closed.nmap_name(), Some("closed"));
        assert_eq!(Status::Unknown.nmap_name(), None);
    }

    #[test]
    fn failures() {
        assert!(!Status::Open.is_failure());
        assert!(!Status::OpenFiltered.is_failure());
        for s in [
            Status::Refused,
            Status::Filtered,
            Status::Unreachable,
            Status::Closed,
            Status::Unknown,
        ] {
            assert!(s.is_failure(), "{s}");
        }
    }
}
