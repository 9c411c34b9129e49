//! What a collector read from a node, and how it becomes one [`Ruleset`].
//!
//! A [`Capture`] holds the raw output of every source (or why it could not be read); it is plain
//! data so tests replay captured output without root. [`assemble`] joins the sources:
//! - native nftables tables come from `nft -j list ruleset`;
//! - tables that `iptables-nft` keeps in nftables show up there with opaque `xt` expressions, so
//!   where `iptables-nft-save` lists a table, that reading replaces the nft one;
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
    /// `nft -j list ruleset`.
    pub nft_json: Option<Read>,
    /// `nft -a list ruleset`, for rule texts and handles.
    pub nft_text: Option<Read>,
    /// `*-save` dumps.
    pub saves: Vec<(SaveSource, Read)>,
    /// Contents of `/proc/net/ip_tables_names` and `ip6_tables_names` (`v6`, names).
    pub legacy_names: Vec<(bool, Read)>,
    /// Configuration files of firewall managers: (path, contents).
    pub files: Vec<(String, Read)>,
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

/// Joins a capture into one ruleset, with warnings about lines or objects that were skipped.
pub fn assemble(c: &Capture) -> (Ruleset, Vec<String>) {
    let mut rs = Ruleset::default();
    let mut warnings = Vec::new();
    let texts = match &c.nft_text {
        Some(Ok(t)) => Some(nft::parse_rule_texts(t)),
        _ => None,
    };
    match &c.nft_json {
        Some(Ok(json)) => match nft::parse_json(json, texts.as_ref()) {
            Ok((tables, w)) => {
                rs.tables = tables;
                warnings.extend(w);
            }
            Err(e) => rs.unread.push(Unread {
                source: "nft".into(),
                reason: e.to_string(),
            }),
        },
        Some(Err(reason)) => rs.unread.push(Unread {
            source: "nft".into(),
            reason: reason.clone(),
        }),
        None => {}
    }
    for (src, read) in &c.saves {
        let legacy = src.backend == Backend::IptablesLegacy;
        match read {
            Ok(text) => {
                let (tables, w) = iptables::parse_save(text, src.backend, src.v6);
                warnings.extend(
                    w.into_iter()
                        .map(|w| format!("{} line {}: {}", src.command(), w.line, w.message)),
                );
                for t in tables {
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
                if !legacy && matches!(c.nft_json, Some(Ok(_))) {
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
