//! Recognises the firewall managers that own parts of a ruleset: firewalld and ufw.
//!
//! Both are read from what they leave behind, never by calling them: firewalld from its nft table
//! `inet firewalld` (or its iptables chains) and `/etc/firewalld/firewalld.conf`; ufw from its
//! `ufw-*` chains, `/etc/default/ufw` and `/etc/ufw/ufw.conf`.

use serde::Serialize;

use crate::capture::Capture;
use crate::model::*;

pub const FIREWALLD_CONF: &str = "/etc/firewalld/firewalld.conf";
pub const UFW_DEFAULTS: &str = "/etc/default/ufw";
pub const UFW_CONF: &str = "/etc/ufw/ufw.conf";

/// The managers found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Managers {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewalld: Option<Firewalld>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ufw: Option<Ufw>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Firewalld {
    /// Its rules are in the kernel (table `inet firewalld` or its iptables chains).
    pub active: bool,
    /// `FirewallBackend=` of firewalld.conf.
    pub backend: Option<String>,
    /// `DefaultZone=` of firewalld.conf.
    pub default_zone: Option<String>,
    /// Zones bound to interfaces or sources in the running rules, in the order firewalld tries them.
    pub zones: Vec<ZoneBinding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneBinding {
    pub zone: String,
    /// `iifname "eth0"`, `ip saddr 10.0.0.0/8`, or `default` for the catch-all.
    pub matches: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ufw {
    /// Its chains are in the kernel.
    pub active: bool,
    /// `ENABLED=` of ufw.conf.
    pub enabled: Option<bool>,
    /// `DEFAULT_INPUT_POLICY=` of /etc/default/ufw.
    pub default_input_policy: Option<String>,
    /// The INPUT chain's policy in the running rules.
    pub input_policy: Option<String>,
}

/// Finds firewalld and ufw in a ruleset and the capture's files.
pub fn detect(rs: &Ruleset, c: &Capture) -> Managers {
    let mut m = Managers::default();
    let conf = c.file(FIREWALLD_CONF);
    let fw_table = rs.tables.iter().find(|t| {
        t.backend == Backend::Nft && t.family == TableFamily::Inet && t.name == "firewalld"
    });
    let fw_ipt = rs
        .tables
        .iter()
        .find(|t| t.name == "filter" && t.chain("INPUT_ZONES").is_some());
    if conf.is_some() || fw_table.is_some() || fw_ipt.is_some() {
        let mut f = Firewalld {
            active: fw_table.is_some() || fw_ipt.is_some(),
            ..Firewalld::default()
        };
        if let Some(conf) = conf {
            f.backend = conf_value(conf, "FirewallBackend");
            f.default_zone = conf_value(conf, "DefaultZone");
        }
        let zones = fw_table
            .and_then(|t| t.chain("filter_INPUT_ZONES").map(|c| (c, "filter_IN_")))
            .or_else(|| fw_ipt.and_then(|t| t.chain("INPUT_ZONES").map(|c| (c, "IN_"))));
        if let Some((chain, prefix)) = zones {
            for r in &chain.rules {
                let (Action::Goto(target) | Action::Jump(target)) = &r.action else {
                    continue;
                };
                let Some(zone) = target.strip_prefix(prefix) else {
                    continue;
                };
                let matches = if r.conds.is_empty() {
                    "default".to_string()
                } else {
                    r.conds
                        .iter()
                        .map(crate::display::show_cond)
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                f.zones.push(ZoneBinding {
                    zone: zone.to_string(),
                    matches,
                });
            }
        }
        m.firewalld = Some(f);
    }
    let ufw_table = rs
        .tables
        .iter()
        .find(|t| t.name == "filter" && t.chain("ufw-before-input").is_some());
    let defaults = c.file(UFW_DEFAULTS);
    let ufw_conf = c.file(UFW_CONF);
    if ufw_table.is_some() || defaults.is_some() || ufw_conf.is_some() {
        let input_policy = ufw_table
            .and_then(|t| t.chain("INPUT"))
            .and_then(|c| c.base.as_ref())
            .map(|b| match b.policy {
                Policy::Accept => "ACCEPT".to_string(),
                Policy::Drop => "DROP".to_string(),
            });
        m.ufw = Some(Ufw {
            active: ufw_table.is_some(),
            enabled: ufw_conf
                .and_then(|s| conf_value(s, "ENABLED"))
                .map(|v| v.eq_ignore_ascii_case("yes")),
            default_input_policy: defaults.and_then(|s| conf_value(s, "DEFAULT_INPUT_POLICY")),
            input_policy,
        });
    }
    m
}

/// `KEY=value` or `KEY="value"` from a shell-style config file; the last one wins.
fn conf_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let (k, v) = l.split_once('=')?;
            (k.trim() == key && !l.starts_with('#'))
                .then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
        })
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values() {
        let conf = "# DefaultZone=nope\nDefaultZone=public\nFirewallBackend=nftables\n";
        assert_eq!(conf_value(conf, "DefaultZone").as_deref(), Some("public"));
        assert_eq!(
            conf_value(conf, "FirewallBackend").as_deref(),
            Some("nftables")
        );
        assert_eq!(
            conf_value("DEFAULT_INPUT_POLICY=\"DROP\"\n", "DEFAULT_INPUT_POLICY").as_deref(),
            Some("DROP")
        );
        assert_eq!(conf_value("X=1", "Y"), None);
    }
}
