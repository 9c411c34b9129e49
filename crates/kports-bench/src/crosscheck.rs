//! The correctness cross-check: what `kports conns -o json` and `kports listen -o json` report,
//! set against what `ss` reports on the same machine, and against the load the load generator
//! made. Parsing only; the harness runs the commands.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A listening address as both tools can print it: the address (`None` for ss's `*`) and port.
pub type Listener = (Option<IpAddr>, u16);

/// Whether `a` is in the load generator's network, 127.77.0.0/16.
pub fn in_loadgen_net(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V4(v4) if v4.octets()[..2] == crate::loadgen::NET_PREFIX)
}

/// Lines of output that are not blank: what `| wc -l` counts for `ss -H`.
pub fn count_lines(out: &[u8]) -> usize {
    out.split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count()
}

/// Parses `ss -tlnH` output: the local address column of each line.
pub fn ss_listeners(out: &str) -> Result<BTreeSet<Listener>> {
    let mut set = BTreeSet::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let local = line
            .split_whitespace()
            .nth(3)
            .with_context(|| format!("unexpected ss line: {line:?}"))?;
        set.insert(
            parse_endpoint(local)
                .with_context(|| format!("unexpected ss address {local:?} in {line:?}"))?,
        );
    }
    Ok(set)
}

/// `127.0.0.1:80`, `[::]:22`, `*:22`, `127.0.0.53%lo:53`, `[fe80::1]%eth0:22`.
fn parse_endpoint(s: &str) -> Option<Listener> {
    let (addr, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let addr = addr
        .split('%')
        .next()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    if addr == "*" {
        return Some((None, port));
    }
    Some((Some(addr.parse().ok()?), port))
}

/// Listeners in `ss` that `kports` does not list. ss's `*` matches any unspecified address.
pub fn missing_listeners(ss: &BTreeSet<Listener>, kports: &BTreeSet<Listener>) -> Vec<Listener> {
    ss.iter()
        .filter(|&&(addr, port)| match addr {
            Some(_) => !kports.contains(&(addr, port)),
            None => !kports
                .iter()
                .any(|&(a, p)| p == port && a.is_some_and(|a| a.is_unspecified())),
        })
        .copied()
        .collect()
}

/// What `kports listen -o json` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListenReport {
    /// Every TCP listener.
    pub tcp: BTreeSet<Listener>,
    /// TCP listeners in the load generator's network, and how many of them have no owner.
    pub loadgen: usize,
    pub loadgen_unowned: usize,
}

pub fn listen_json(out: &[u8]) -> Result<ListenReport> {
    let doc: Value =
        serde_json::from_slice(out).context("kports listen -o json did not print JSON")?;
    let mut r = ListenReport::default();
    for item in items(&doc)? {
        if item["proto"] != "tcp" || item["state"] != "listen" {
            continue;
        }
        let addr = ip(&item["local_address"]).context("a listener without a local_address")?;
        let port = item["local_port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .context("a listener without a local_port")?;
        r.tcp.insert((Some(addr), port));
        if in_loadgen_net(&addr) {
            r.loadgen += 1;
            if item["processes"].as_array().is_none_or(Vec::is_empty) {
                r.loadgen_unowned += 1;
            }
        }
    }
    Ok(r)
}

/// What `kports conns -o json` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConnsReport {
    /// Sum of `established` over every row.
    pub established: u64,
    /// `in` rows of listeners in the load generator's network, their sum, and how many of those
    /// rows have no owning pid.
    pub loadgen_in_rows: usize,
    pub loadgen_in: u64,
    pub loadgen_in_unowned: usize,
    /// Sum of `out` rows towards the load generator's network.
    pub loadgen_out: u64,
}

pub fn conns_json(out: &[u8]) -> Result<ConnsReport> {
    let doc: Value =
        serde_json::from_slice(out).context("kports conns -o json did not print JSON")?;
    let mut r = ConnsReport::default();
    for item in items(&doc)? {
        let n = item["established"]
            .as_u64()
            .context("a row without an established count")?;
        r.established += n;
        match item["direction"].as_str() {
            Some("in") if ip(&item["local_address"]).is_some_and(|a| in_loadgen_net(&a)) => {
                r.loadgen_in_rows += 1;
                r.loadgen_in += n;
                if item["pids"].as_array().is_none_or(Vec::is_empty) {
                    r.loadgen_in_unowned += 1;
                }
            }
            Some("out") if ip(&item["remote_address"]).is_some_and(|a| in_loadgen_net(&a)) => {
                r.loadgen_out += n
            }
            _ => {}
        }
    }
    Ok(r)
}

fn items(doc: &Value) -> Result<&Vec<Value>> {
    match doc["items"].as_array() {
        Some(v) => Ok(v),
        None => bail!("the JSON document has no `items` list"),
    }
}

fn ip(v: &Value) -> Option<IpAddr> {
    v.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_like_wc() {
        assert_eq!(count_lines(b"a\nb\n"), 2);
        assert_eq!(count_lines(b"a\n\n  \nb"), 2);
        assert_eq!(count_lines(b""), 0);
    }

    #[test]
    fn parses_ss_listener_lines() {
        let out = "LISTEN 0      4096   127.77.0.1:20001 0.0.0.0:*\n\
                   LISTEN 0      128    [::]:22        [::]:*\n\
                   LISTEN 0      4096   127.0.0.53%lo:53 0.0.0.0:*\n\
                   LISTEN 0      128    *:8080         *:*\n";
        let got = ss_listeners(out).unwrap();
        let want: BTreeSet<Listener> = [
            (Some("127.77.0.1".parse().unwrap()), 20001),
            (Some("::".parse().unwrap()), 22),
            (Some("127.0.0.53".parse().unwrap()), 53),
            (None, 8080),
        ]
        .into();
        assert_eq!(got, want);
        assert!(ss_listeners("LISTEN 0 1\n").is_err());
    }

    #[test]
    fn missing_listeners_honours_wildcards() {
        let ss: BTreeSet<Listener> = [
            (Some("127.77.0.1".parse().unwrap()), 1),
            (None, 2),
            (None, 3),
        ]
        .into();
        let kp: BTreeSet<Listener> = [
            (Some("127.77.0.1".parse().unwrap()), 1),
            (Some("::".parse().unwrap()), 2),
            (Some("127.0.0.1".parse().unwrap()), 3),
        ]
        .into();
        assert_eq!(missing_listeners(&ss, &kp), vec![(None, 3)]);
    }

    #[test]
    fn conns_json_sums_rows_and_picks_out_the_load() {
        let doc = br#"{"schema":1,"items":[
            {"direction":"in","local_address":"127.77.0.1","local_port":20001,"remote_address":null,"pids":[10],"established":60},
            {"direction":"in","local_address":"127.77.0.1","local_port":20002,"remote_address":null,"pids":[],"established":40},
            {"direction":"in","local_address":"0.0.0.0","local_port":2024,"remote_address":null,"pids":[1],"established":1},
            {"direction":"out","local_address":null,"remote_address":"127.77.0.1","remote_port":20001,"pids":[10],"established":100},
            {"direction":"out","local_address":null,"remote_address":"10.0.0.1","remote_port":443,"pids":[5],"established":2}
        ],"warnings":[]}"#;
        let r = conns_json(doc).unwrap();
        assert_eq!(
            r,
            ConnsReport {
                established: 203,
                loadgen_in_rows: 2,
                loadgen_in: 100,
                loadgen_in_unowned: 1,
                loadgen_out: 100
            }
        );
    }

    #[test]
    fn listen_json_keeps_tcp_listeners_only() {
        let doc = br#"{"items":[
            {"proto":"tcp","state":"listen","local_address":"127.77.0.1","local_port":20001,"processes":[{"pid":3}]},
            {"proto":"tcp","state":"listen","local_address":"127.77.0.1","local_port":20002,"processes":[]},
            {"proto":"udp","state":"unconn","local_address":"0.0.0.0","local_port":53,"processes":[]},
            {"proto":"tcp","state":"established","local_address":"127.77.0.1","local_port":20001,"processes":[]}
        ]}"#;
        let r = listen_json(doc).unwrap();
        assert_eq!(r.tcp.len(), 2);
        assert_eq!((r.loadgen, r.loadgen_unowned), (2, 1));
        assert!(listen_json(b"{}").is_err());
        assert!(listen_json(b"not json").is_err());
    }
}
