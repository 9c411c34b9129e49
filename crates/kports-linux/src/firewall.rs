//! Reads a node's firewall: `nft` listings, every `*-save` variant, the legacy table list, and
//! firewalld's and ufw's configuration files, each through [`crate::runner`].
//!
//! Each rule is read once: the list of nf_tables tables first (a netlink dump of tables only;
//! `nft list tables` would fetch every rule to print it), then the `*-save` dumps, then
//! `nft -j list table` for only the tables no iptables-nft dump holds (see
//! [`kports_firewall::capture::nft_tables_to_list`]).
//!
//! Nothing here interprets what was read; `kports_firewall::capture::assemble` does. A source that
//! fails keeps its reason, so the verdicts that depend on it come out unknown.

use std::time::Duration;

use kports_firewall::capture::{Capture, SaveSource, nft_tables_to_list};
use kports_firewall::model::TableFamily;

use crate::netlink::{Attrs, Netlink, c_str};
use kports_firewall::detect::{FIREWALLD_CONF, UFW_CONF, UFW_DEFAULTS};

use crate::runner::run;

/// How many times a command's timeout a ruleset listing may take: a dump takes about a second
/// per 10,000 rules, several on a busy machine (nft needs 5 to 10 s for 100,000, and about two
/// minutes for 500,000), and a listing cut short makes every verdict unknown.
const LISTING_TIMEOUT_FACTOR: u32 = 6;

/// The environment variable that sets how long one ruleset listing may take, in seconds.
pub const LISTING_TIMEOUT_ENV: &str = "KPORTS_LISTING_TIMEOUT_SECS";

/// How long one ruleset listing may take: [`LISTING_TIMEOUT_ENV`]'s seconds when it holds a
/// positive number (`var`, its value), else [`LISTING_TIMEOUT_FACTOR`] times `timeout`.
fn listing_timeout(var: Option<&str>, timeout: Duration) -> Duration {
    var.and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&secs| secs > 0)
        .map_or(
            timeout.saturating_mul(LISTING_TIMEOUT_FACTOR),
            Duration::from_secs,
        )
}

/// Why a listing gave nothing, as its warning says it; a listing stopped at its timeout also
/// says how to allow more.
fn listing_error(e: &crate::runner::RunError) -> String {
    match e {
        crate::runner::RunError::Timeout { .. } => {
            format!("{e}; set {LISTING_TIMEOUT_ENV}=SECONDS to allow more")
        }
        e => e.to_string(),
    }
}

/// Reads everything [`Capture`] holds from the calling process's network namespace; `timeout`
/// bounds each command, and each ruleset listing gets [`LISTING_TIMEOUT_FACTOR`] times it
/// (or [`LISTING_TIMEOUT_ENV`]'s seconds).
pub fn capture(timeout: Duration) -> Capture {
    let text = |r: Result<String, crate::runner::RunError>| r.map_err(|e| listing_error(&e));
    let timeout = listing_timeout(std::env::var(LISTING_TIMEOUT_ENV).ok().as_deref(), timeout);
    // Where netlink cannot answer, `nft` says why (or lists them the slow way).
    let list = tables().or_else(|_| {
        text(run("nft", &["-j", "list", "tables"], timeout)).and_then(|json| {
            kports_firewall::nft::parse_table_list(&json).map_err(|e| e.to_string())
        })
    });
    let mut c = Capture {
        nft_list: Some(list),
        net_admin: crate::procfs::has_net_admin(),
        ..Capture::default()
    };
    for v6 in [false, true] {
        let file = SaveSource {
            backend: kports_firewall::model::Backend::IptablesLegacy,
            v6,
        }
        .legacy_names_file();
        let names = crate::limits::read_text(std::path::Path::new(file), &crate::limits::CONFIG)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(String::new())
                } else {
                    Err(e)
                }
            });
        c.legacy_names
            .push((v6, names.map_err(|e| format!("{file}: {e}"))));
    }
    for src in SaveSource::ALL {
        // Skip legacy dumps when the kernel holds no legacy tables: running the legacy tool
        // would load the x_tables modules for nothing.
        if src.backend == kports_firewall::model::Backend::IptablesLegacy
            && c.legacy_in_use(src.v6) == Some(false)
        {
            continue;
        }
        c.saves.push((src, text(run(src.command(), &[], timeout))));
    }
    if let Some(Ok(list)) = &c.nft_list {
        for (family, name) in nft_tables_to_list(list, &c.saves) {
            let listing = run(
                "nft",
                &["-j", "list", "table", family.as_str(), &name],
                timeout,
            );
            c.nft_tables
                .push((format!("{} {name}", family.as_str()), text(listing)));
        }
    }
    for path in [FIREWALLD_CONF, UFW_DEFAULTS, UFW_CONF] {
        if let Ok(s) = crate::limits::read_text(std::path::Path::new(path), &crate::limits::CONFIG)
        {
            c.files.push((path.to_string(), Ok(s)));
        }
    }
    c
}

const NETLINK_NETFILTER: libc::c_int = 12;
/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE`.
const NFT_GETTABLE: u16 = (10 << 8) | 1;
/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE`: one table of the dump.
const NFT_NEWTABLE: u16 = 10 << 8;
const NFTA_TABLE_NAME: u16 = 1;

/// The nf_tables tables of the calling thread's network namespace (families ip, ip6, inet), from
/// a netlink dump of tables alone.
pub fn tables() -> std::io::Result<Vec<(TableFamily, String)>> {
    let mut nl = Netlink::open(NETLINK_NETFILTER)?;
    let mut out = Vec::new();
    // struct nfgenmsg: every family, version 0, resource id 0.
    nl.dump(NFT_GETTABLE, &[0u8; 4], |kind, payload| {
        if kind == NFT_NEWTABLE {
            out.extend(parse_table(payload));
        }
    })?;
    Ok(out)
}

/// One `NFT_MSG_NEWTABLE` message: its family (first byte of `struct nfgenmsg`) and name.
fn parse_table(payload: &[u8]) -> Option<(TableFamily, String)> {
    let family = match *payload.first()? {
        2 => TableFamily::Ip,
        10 => TableFamily::Ip6,
        1 => TableFamily::Inet,
        // arp, bridge, netdev: not on an IP packet's input path.
        _ => return None,
    };
    let name = Attrs::new(payload.get(4..)?)
        .find(|&(k, _)| k == NFTA_TABLE_NAME)
        .map(|(_, v)| c_str(v))?;
    Some((family, name))
}

/// The interface and local address the kernel would use towards `addr` (`ip route get`), which
/// is also where that peer's packets arrive on a symmetric network.
pub fn route_to(
    addr: std::net::IpAddr,
    timeout: Duration,
) -> Option<(String, Option<std::net::IpAddr>)> {
    let out = run("ip", &["-j", "route", "get", &addr.to_string()], timeout).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let r = v.as_array()?.first()?;
    let dev = r.get("dev")?.as_str()?.to_string();
    let src = r
        .get("prefsrc")
        .and_then(|s| s.as_str())
        .and_then(|s| s.parse().ok());
    Some((dev, src))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::tests::attr;

    #[test]
    fn table_messages_give_family_and_name() {
        let mut m = vec![1u8, 0, 0, 0];
        m.extend(attr(NFTA_TABLE_NAME, b"filter\0"));
        assert_eq!(
            parse_table(&m),
            Some((TableFamily::Inet, "filter".to_string()))
        );
        m[0] = 7;
        assert_eq!(parse_table(&m), None);
        assert_eq!(parse_table(&[2u8, 0]), None);
    }

    #[test]
    fn a_listing_may_take_what_the_environment_allows() {
        let ten = Duration::from_secs(10);
        assert_eq!(listing_timeout(None, ten), Duration::from_secs(60));
        assert_eq!(listing_timeout(Some("900"), ten), Duration::from_secs(900));
        assert_eq!(listing_timeout(Some(" 5 "), ten), Duration::from_secs(5));
        // Nothing usable keeps the default: a listing never gets no time at all.
        assert_eq!(listing_timeout(Some("0"), ten), Duration::from_secs(60));
        assert_eq!(listing_timeout(Some("soon"), ten), Duration::from_secs(60));
    }

    #[test]
    fn a_listing_stopped_at_its_timeout_says_how_to_allow_more() {
        let stopped = crate::runner::RunError::Timeout {
            cmd: "nft".into(),
            secs: 60,
        };
        assert_eq!(
            listing_error(&stopped),
            "nft did not finish within 60 s and was stopped; set KPORTS_LISTING_TIMEOUT_SECS=SECONDS to allow more"
        );
        let missing = crate::runner::RunError::NotFound("nft".into());
        assert!(!listing_error(&missing).contains(LISTING_TIMEOUT_ENV));
    }
}
