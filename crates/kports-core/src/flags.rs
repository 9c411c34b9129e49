//! Reading the ports and addresses a component was told to use from its command line.
//!
//! A running component's flags win over the catalog's defaults: `--secure-port`,
//! `--bind-address`, etcd's `--listen-client-urls`, the API server's
//! `--service-node-port-range`, kube-proxy's `--healthz-bind-address`. The command line kports
//! has is the redacted one joined with spaces ([`crate::ProcessRef::cmdline`]); none of these
//! flags is a secret, so redaction leaves them alone. Go's flag package accepts `-flag` and
//! `--flag`, `=value` and a separate value; the last occurrence wins.

use std::fmt;
use std::net::IpAddr;

use crate::catalog::{BindScope, PortRange};

/// A flag whose value kports could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{flag}={value}`: {reason}")]
pub struct FlagError {
    pub flag: String,
    pub value: String,
    pub reason: String,
}

/// The host part of an address flag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// A name (`localhost`, a host name): kports does not resolve names.
    Name(String),
}

impl Host {
    fn parse(s: &str) -> Host {
        let bare = s
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(s);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(bare.to_string()),
        }
    }

    /// How widely binding to this host opens a port. A name other than `localhost` is taken
    /// to be one of the node's own.
    pub fn scope(&self) -> BindScope {
        match self {
            Host::Ip(ip) => scope_of(ip),
            Host::Name(n) if n.eq_ignore_ascii_case("localhost") => BindScope::Loopback,
            Host::Name(n) if n.is_empty() => BindScope::Any,
            Host::Name(_) => BindScope::Node,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// How widely a socket bound to `ip` is reachable.
pub fn scope_of(ip: &IpAddr) -> BindScope {
    if ip.is_unspecified() {
        BindScope::Any
    } else if ip.is_loopback()
        || matches!(ip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
    {
        BindScope::Loopback
    } else {
        BindScope::Node
    }
}

/// The value of `flag` (written with or without dashes) in `cmdline`, if it is there.
///
/// `--flag=value` and `--flag value` both count; a flag followed by another flag or by nothing
/// has the empty value. The last occurrence wins, as in Go's flag package.
pub fn value<'a>(cmdline: &'a str, flag: &str) -> Option<&'a str> {
    let name = flag.trim_start_matches('-');
    let mut found = None;
    let mut words = cmdline.split_ascii_whitespace().skip(1).peekable();
    while let Some(w) = words.next() {
        if w == "--" {
            break;
        }
        let Some(body) = w.strip_prefix("--").or_else(|| w.strip_prefix('-')) else {
            continue;
        };
        match body.split_once('=') {
            Some((n, v)) if n == name => found = Some(v),
            None if body == name => {
                found = match words.peek() {
                    Some(next) if !next.starts_with('-') => words.next(),
                    _ => Some(""),
                };
            }
            _ => {}
        }
    }
    found
}

fn error(flag: &str, value: &str, reason: impl Into<String>) -> FlagError {
    FlagError {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A port number; `0` (off) is allowed and returned as `None`.
pub fn parse_port(flag: &str, v: &str) -> Result<Option<u16>, FlagError> {
    match v.trim().parse::<u16>() {
        Ok(0) => Ok(None),
        Ok(p) => Ok(Some(p)),
        Err(_) => Err(error(flag, v, "not a port number (0-65535)")),
    }
}

/// An IP address (`--bind-address`); an empty value is the wildcard.
pub fn parse_address(flag: &str, v: &str) -> Result<Host, FlagError> {
    let h = Host::parse(v.trim());
    match &h {
        Host::Ip(_) => Ok(h),
        Host::Name(n) if n.is_empty() => Ok(h),
        Host::Name(_) => Err(error(flag, v, "not an IP address")),
    }
}

/// `HOST:PORT`, `[V6]:PORT`, `:PORT` or a bare `HOST` (kube-proxy's `--*-bind-address`); the
/// port is `None` when absent, and the host is empty (the wildcard) in `:PORT`.
pub fn parse_endpoint(flag: &str, v: &str) -> Result<(Host, Option<u16>), FlagError> {
    let (host, port) = split_host_port(flag, v)?;
    Ok((parse_address(flag, &host)?, port))
}

/// `HOST:PORT` split, the host not yet checked.
fn split_host_port(flag: &str, v: &str) -> Result<(String, Option<u16>), FlagError> {
    let v = v.trim();
    if let Some(rest) = v.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| error(flag, v, "unclosed `[` in an IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(flag, p)?,
            None if after.is_empty() => None,
            None => return Err(error(flag, v, "expected `:PORT` after `]`")),
        };
        return Ok((format!("[{host}]"), port));
    }
    // A bare IPv6 address has several colons and no port.
    if v.matches(':').count() > 1 {
        return Ok((v.to_string(), None));
    }
    match v.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), parse_port(flag, port)?)),
        None => Ok((v.to_string(), None)),
    }
}

/// A comma-separated URL list (`https://127.0.0.1:2379,https://192.0.2.10:2379`), as etcd takes
/// it: every URL as (host, port); a URL without a port is refused, as etcd refuses it.
pub fn parse_urls(flag: &str, v: &str) -> Result<Vec<(Host, u16)>, FlagError> {
    let mut out = Vec::new();
    for url in v.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let (_, rest) = url.split_once("://").ok_or_else(|| {
            error(
                flag,
                v,
                format!("`{url}` is not a URL (scheme://host:port)"),
            )
        })?;
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        // etcd takes host names here too (`localhost`), so a name is kept, not refused.
        let (host, port) = split_host_port(flag, authority)?;
        let port = port.ok_or_else(|| error(flag, v, format!("`{url}` has no port")))?;
        out.push((Host::parse(&host), port));
    }
    if out.is_empty() {
        return Err(error(flag, v, "no URL"));
    }
    Ok(out)
}

/// A port range as the API server takes it: `30000-32767`, or `30000+2767` (base and size).
pub fn parse_range(flag: &str, v: &str) -> Result<PortRange, FlagError> {
    let v = v.trim();
    let num = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| error(flag, v, "not a port range such as 30000-32767"))
    };
    let (first, last) = if let Some((a, b)) = v.split_once('-') {
        (num(a)?, num(b)?)
    } else if let Some((a, n)) = v.split_once('+') {
        let a = num(a)?;
        let n = num(n)?;
        (
            a,
            a.checked_add(n)
                .ok_or_else(|| error(flag, v, "the range ends past 65535"))?,
        )
    } else {
        let p = num(v)?;
        (p, p)
    };
    if first == 0 || first > last {
        return Err(error(flag, v, "not a port range such as 30000-32767"));
    }
    Ok(PortRange { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETCD: &str = "etcd --advertise-client-urls=https://192.0.2.10:2379 --cert-file=/etc/kubernetes/pki/etcd/server.crt \
                        --listen-client-urls=https://127.0.0.1:2379,https://192.0.2.10:2379 \
                        --listen-metrics-urls=http://127.0.0.1:2381 --listen-peer-urls=https://192.0.2.10:2380 --name=cp1";

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn values_in_every_spelling() {
        assert_eq!(
            value(ETCD, "--listen-peer-urls"),
            Some("https://192.0.2.10:2380")
        );
        assert_eq!(
            value("kube-apiserver --secure-port 8443 --v=2", "--secure-port"),
            Some("8443")
        );
        assert_eq!(
            value(
                "etcd -listen-client-urls http://0.0.0.0:2379",
                "--listen-client-urls"
            ),
            Some("http://0.0.0.0:2379")
        );
        assert_eq!(value("x --port=1 --port=2", "port"), Some("2"));
        assert_eq!(value("x --bind-address --v=2", "--bind-address"), Some(""));
        assert_eq!(value("x --secure-port-extra=1", "--secure-port"), None);
        // argv[0] is not a flag even if it looks like one, and `--` ends the flags.
        assert_eq!(value("--port=1", "--port"), None);
        assert_eq!(value("x -- --port=1", "--port"), None);
    }

    #[test]
    fn etcd_client_urls() {
        let v = value(ETCD, "--listen-client-urls").unwrap();
        assert_eq!(
            parse_urls("--listen-client-urls", v),
            Ok(vec![(ip("127.0.0.1"), 2379), (ip("192.0.2.10"), 2379)])
        );
        assert_eq!(
            parse_urls(
                "--listen-client-urls",
                "https://[::1]:2379, http://localhost:12379/"
            ),
            Ok(vec![
                (ip("::1"), 2379),
                (Host::Name("localhost".into()), 12379)
            ])
        );
        assert_eq!(
            parse_urls("f", "unix://u:p@[fd00::1]:2379"),
            Ok(vec![(ip("fd00::1"), 2379)])
        );
        let e = parse_urls("--listen-peer-urls", "https://192.0.2.10").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`--listen-peer-urls=https://192.0.2.10`: `https://192.0.2.10` has no port"
        );
        assert!(parse_urls("f", "192.0.2.10:2380").is_err());
        assert!(parse_urls("f", "").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("f", "0.0.0.0:10256"),
            Ok((ip("0.0.0.0"), Some(10256)))
        );
        assert_eq!(
            parse_endpoint("f", "[::1]:10249"),
            Ok((ip("::1"), Some(10249)))
        );
        assert_eq!(
            parse_endpoint("f", ":10249"),
            Ok((Host::Name(String::new()), Some(10249)))
        );
        assert_eq!(
            parse_endpoint("f", "127.0.0.1"),
            Ok((ip("127.0.0.1"), None))
        );
        assert_eq!(parse_endpoint("f", "fd00::5"), Ok((ip("fd00::5"), None)));
        assert_eq!(parse_endpoint("f", "0.0.0.0:0"), Ok((ip("0.0.0.0"), None)));
        assert!(parse_endpoint("f", "[::1:10249").is_err());
        assert!(parse_endpoint("f", "node1:10249").is_err());
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(parse_port("--secure-port", "6443"), Ok(Some(6443)));
        assert_eq!(parse_port("--read-only-port", "0"), Ok(None));
        assert!(parse_port("--port", "https").is_err());
        assert_eq!(
            parse_range("r", "30000-32767"),
            Ok(PortRange {
                first: 30000,
                last: 32767
            })
        );
        assert_eq!(
            parse_range("r", "20000+1000"),
            Ok(PortRange {
                first: 20000,
                last: 21000
            })
        );
        assert!(parse_range("r", "32767-30000").is_err());
        assert!(parse_range("r", "65000+1000").is_err());
        assert!(parse_range("r", "a-b").is_err());
    }

    #[test]
    fn scopes() {
        assert_eq!(ip("0.0.0.0").scope(), BindScope::Any);
        assert_eq!(ip("::").scope(), BindScope::Any);
        assert_eq!(ip("127.0.0.53").scope(), BindScope::Loopback);
        assert_eq!(ip("::1").scope(), BindScope::Loopback);
        assert_eq!(ip("::ffff:127.0.0.1").scope(), BindScope::Loopback);
        assert_eq!(ip("192.0.2.10").scope(), BindScope::Node);
        assert_eq!(Host::Name("localhost".into()).scope(), BindScope::Loopback);
        assert_eq!(Host::Name(String::new()).scope(), BindScope::Any);
        assert_eq!(
            parse_address("--bind-address", "127.0.0.1"),
            Ok(ip("127.0.0.1"))
        );
        assert!(parse_address("--bind-address", "eth0").is_err());
    }
}
