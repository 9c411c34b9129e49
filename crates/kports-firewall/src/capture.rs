//! What a collector read from a node, and how it becomes one [`Ruleset`].
//!
//! A [`Capture`] holds the raw output of every source (or why it could not be read); it is plain
//! data so tests replay captured output without root. [`assemble`] joins the sources:
//! - each rule is read once, from the cheapest exact source: tables that `iptables-nft` keeps in
//!   nftables come from `iptables-nft-save`/`ip6tables-nft-save` (nft shows their matches as
//!   opaque `xt` expressions), and only the other tables are listed with `nft -j list table`
//!   ([`nft_tables_to_list`] says which, from `nft -j list tables`); a dump of the whole
//!   ruleset (`nft -j list ruleset`, as in captured fixtures) is read the same way, its
//!   iptables-nft tables replaced by the `*-save` reading;
//! - a table `iptables-nft-save` calls incompatible (native nft chains in it) is read from nft;
//! - legacy iptables tables are invisible to `nft`; they are read with `iptables-legacy-save`
//!   when `/proc/net/ip_tables_names` says the kernel holds any.
//!
//! A source that could not be read is recorded in [`Ruleset::unread`], so verdicts that depend on
//! it come out unknown rather than open.

use crate::iptables;
use crate::model::*;
use crate::nft;

/// Raw output of one source, or the reason it could not be read.
pub type Read = Result<String, String>;

/// Which `*-save` command a dump came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveSource {
    pub backend: Backend,
    pub v6: bool,
}

impl SaveSource {
    pub const ALL: [SaveSource; 4] = [
        SaveSource {
            backend: Backend::IptablesNft,
            v6: false,
        },
        SaveSource {
            backend: Backend::IptablesNft,
            v6: true,
        },
        SaveSource {
            backend: Backend::IptablesLegacy,
            v6: false,
        },
        SaveSource {
            backend: Backend::IptablesLegacy,
            v6: true,
        },
    ];

    /// The command that prints this dump.
    pub fn command(&self) -> &'static str {
        match (self.backend, self.v6) {
            (Backend::IptablesLegacy, false) => "iptables-legacy-save",
            (Backend::IptablesLegacy, true) => "ip6tables-legacy-save",
            (_, false) => "iptables-nft-save",
            (_, true) => "ip6tables-nft-save",
        }
    }

    /// The `/proc/net` file that lists the legacy tables the kernel holds.
    pub fn legacy_names_file(&self) -> &'static str {
        if self.v6 {
            "/proc/net/ip6_tables_names"
        } else {
            "/proc/net/ip_tables_names"
        }
    }
}

/// Everything read from one node (or network namespace).
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// `nft -j list ruleset`: every table at once (captured fixtures, replays).
    pub nft_json: Option<Read>,
    /// `nft -a list ruleset`, for rule texts as nft prints them; without it they are written
    /// from the parsed rules.
    pub nft_text: Option<Read>,
    /// Which nftables tables exist (of the ip, ip6 and inet families), as `nft list tables`
    /// names them, or why they could not be listed.
    pub nft_list: Option<Result<Vec<(TableFamily, String)>, String>>,
    /// `nft -j list table FAMILY NAME` of each table not read from a `*-save` dump, with its
    /// label (`inet filter`).
    pub nft_tables: Vec<(String, Read)>,
    /// `*-save` dumps.
    pub saves: Vec<(SaveSource, Read)>,
    /// Contents of `/proc/net/ip_tables_names` and `ip6_tables_names` (`v6`, names).
    pub legacy_names: Vec<(bool, Read)>,
    /// Configuration files of firewall managers: (path, contents).
    pub files: Vec<(String, Read)>,
    /// Whether the reader held CAP_NET_ADMIN, which listing rulesets needs (`None`: not
    /// known). With it, a source that could not be read failed for another reason (its size,
    /// its time, a missing tool) and more privilege would not help.
    pub net_admin: Option<bool>,
}

impl Capture {
    /// Whether the kernel holds legacy iptables tables of this family, as far as known.
    pub fn legacy_in_use(&self, v6: bool) -> Option<bool> {
        self.legacy_names
            .iter()
            .find(|(f, _)| *f == v6)
            .map(|(_, r)| {
                r.as_ref()
                    .is_ok_and(|s| s.split_whitespace().next().is_some())
            })
    }

    pub fn file(&self, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, r)| r.as_deref().ok())
    }
}

/// The tables an iptables-nft dump holds whole: its `*name` sections, less those it calls
/// incompatible (a table with native nft chains, which it prints empty).
pub fn save_tables(text: &str) -> Vec<&str> {
    let bad = incompatible_tables(text);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix('*'))
        .map(str::trim)
        .filter(|n| !bad.contains(n))
        .collect()
}

/// Tables `iptables-nft-save` says it cannot show (`# Table `mangle' is incompatible, ...`).
fn incompatible_tables(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("# Table `") && l.contains("incompatible"))
        .filter_map(|l| {
            l.strip_prefix("# Table `")?
                .split_once('\'')
                .map(|(n, _)| n)
        })
        .collect()
}

/// The tables of `list` (see [`Capture::nft_list`]) to read with `nft -j list table`: every
/// one that no iptables-nft dump of `saves` holds whole.
pub fn nft_tables_to_list(
    list: &[(TableFamily, String)],
    saves: &[(SaveSource, Read)],
) -> Vec<(TableFamily, String)> {
    let mut tables = list.to_vec();
    for (src, read) in saves {
        let (Backend::IptablesNft, Ok(text)) = (src.backend, read) else {
            continue;
        };
        let family = if src.v6 {
            TableFamily::Ip6
        } else {
            TableFamily::Ip
        };
        let held = save_tables(text);
        tables.retain(|(f, n)| !(*f == family && held.contains(&n.as_str())));
    }
    tables
}

/// Joins a capture into one ruleset, with warnings about lines or objects that were skipped.
pub fn assemble(c: &Capture) -> (Ruleset, Vec<String>) {
    let mut rs = Ruleset::default();
    let mut warnings = Vec::new();
    let texts = match &c.nft_text {
        Some(Ok(t)) => Some(nft::parse_rule_texts(t)),
        _ => None,
    };
    let mut nft_read = |source: String, read: &Read, rs: &mut Ruleset| match read {
        Ok(json) => match nft::parse_json(json, texts.as_ref()) {
            Ok((tables, w)) => {
                rs.tables.extend(tables);
                warnings.extend(w);
            }
            Err(e) => rs.unread.push(Unread {
                source,
                reason: e.to_string(),
            }),
        },
        Err(reason) => rs.unread.push(Unread {
            source,
            reason: reason.clone(),
        }),
    };
    if let Some(read) = &c.nft_json {
        nft_read("nft".into(), read, &mut rs);
    }
    if let Some(Err(reason)) = &c.nft_list {
        rs.unread.push(Unread {
            source: "nft".into(),
            reason: reason.clone(),
        });
    }
    for (label, read) in &c.nft_tables {
        nft_read(format!("nft list table {label}"), read, &mut rs);
    }
    let nft_readable = matches!(c.nft_json, Some(Ok(_))) || matches!(c.nft_list, Some(Ok(_)));
    for (src, read) in &c.saves {
        let legacy = src.backend == Backend::IptablesLegacy;
        match read {
            Ok(text) => {
                let (tables, w) = iptables::parse_save(text, src.backend, src.v6);
                warnings.extend(
                    w.into_iter()
                        .map(|w| format!("{} line {}: {}", src.command(), w.line, w.message)),
                );
                let incompatible = if legacy {
                    Vec::new()
                } else {
                    incompatible_tables(text)
                };
                for t in tables {
                    // What the dump could not show is read from nft.
                    if incompatible.contains(&t.name.as_str()) {
                        continue;
                    }
                    if !legacy {
                        // The iptables-nft reading of a table replaces its opaque nft listing.
                        rs.tables.retain(|x| {
                            !(x.backend == Backend::Nft && x.family == t.family && x.name == t.name)
                        });
                    }
                    rs.tables.push(t);
                }
            }
            Err(reason) => {
                // Legacy tables matter only when the kernel holds some.
                if legacy && c.legacy_in_use(src.v6) == Some(false) {
                    continue;
                }
                // Without iptables-nft-save, its tables are still seen through nft (as xt rules).
                if !legacy && nft_readable {
                    warnings.push(format!(
                        "{} not readable ({reason}); iptables-nft rules are judged from nft's view",
                        src.command()
                    ));
                    continue;
                }
                rs.unread.push(Unread {
                    source: src.command().into(),
                    reason: reason.clone(),
                });
            }
        }
    }
    (rs, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str =
        "# Table `mangle' contains incompatible base-chains, use 'nft' tool to list them.
# Generated by iptables-nft-save v1.8.9 (nf_tables)
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
";
    const LIST: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"table": {"family": "ip", "name": "mangle", "handle": 2}}, {"table": {"family": "inet", "name": "t", "handle": 3}}, {"table": {"family": "ip6", "name": "filter", "handle": 4}}, {"table": {"family": "bridge", "name": "b", "handle": 5}}]}"#;

    #[test]
    fn only_tables_no_iptables_dump_holds_are_listed_with_nft() {
        assert_eq!(save_tables(SAVE), ["filter"]);
        let v4 = SaveSource {
            backend: Backend::IptablesNft,
            v6: false,
        };
        let v6 = SaveSource {
            backend: Backend::IptablesNft,
            v6: true,
        };
        let saves = [(v4, Ok(SAVE.to_string())), (v6, Err("not found".into()))];
        let all = nft::parse_table_list(LIST).unwrap();
        let list = nft_tables_to_list(&all, &saves);
        assert_eq!(
            list,
            [
                (TableFamily::Ip, "mangle".to_string()),
                (TableFamily::Inet, "t".to_string()),
                (TableFamily::Ip6, "filter".to_string()),
            ]
        );
        assert!(nft::parse_table_list("{}").is_err());
    }

    #[test]
    fn a_table_the_dump_calls_incompatible_comes_from_nft_only() {
        let c = Capture {
            nft_list: Some(Ok(nft::parse_table_list(LIST).unwrap())),
            nft_tables: vec![(
                "ip mangle".into(),
                Ok(r#"{"nftables": [{"table": {"family": "ip", "name": "mangle", "handle": 2}}, {"chain": {"family": "ip", "table": "mangle", "name": "x", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"rule": {"family": "ip", "table": "mangle", "chain": "x", "handle": 3, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9}}, {"drop": null}]}}]}"#.into()),
            ), ("inet t".into(), Err("nft: permission denied".into()))],
            saves: vec![(
                SaveSource {
                    backend: Backend::IptablesNft,
                    v6: false,
                },
                Ok(SAVE.into()),
            )],
            ..Capture::default()
        };
        let (rs, warnings) = assemble(&c);
        assert!(warnings.is_empty(), "{warnings:?}");
        let labels: Vec<(Backend, String)> =
            rs.tables.iter().map(|t| (t.backend, t.label())).collect();
        assert_eq!(
            labels,
            [
                (Backend::Nft, "ip mangle".to_string()),
                (Backend::IptablesNft, "ip filter".to_string())
            ]
        );
        assert_eq!(rs.tables[0].chains[0].rules[0].text, "tcp dport 9 drop");
        assert_eq!(
            rs.unread,
            [Unread {
                source: "nft list table inet t".into(),
                reason: "nft: permission denied".into()
            }]
        );
    }
}
