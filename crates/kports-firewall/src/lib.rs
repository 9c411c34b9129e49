//! kports's firewall model: read nftables and iptables rulesets, judge inbound connections,
//! and plan rules that open exactly what a node needs.
//!
//! No IO happens here: collectors hand in the text that `nft -j list ...` and the `*-save`
//! tools printed (see [`capture::Capture`]), and everything else is pure:
//! - [`nft`] and [`iptables`] parse them into one [`model`];
//! - [`eval`] walks a packet through every base chain and names the deciding rule;
//! - [`display`] writes rules and conditions as text;
//! - [`detect`] recognises firewalld and ufw from their tables and files;
//! - [`required`] says which ports a role needs and from where, from kports-core's catalog;
//! - [`check`] joins the two into the rows of `kports firewall check`;
//! - [`findings`] turns verdicts into `kports check` findings;
//! - [`plan`] writes the rules for nft, iptables, firewalld or ufw.

pub mod capture;
pub mod detect;
pub mod display;
pub mod eval;
pub mod findings;
pub mod iptables;
pub mod model;
pub mod nft;
pub mod plan;
pub mod ranges;
pub mod required;
pub mod sources;
pub mod verdicts;

pub use eval::{Evaluator, Judgement, Packet, RuleRef};
pub use model::Ruleset;

/// Errors that stop reading a ruleset; partial problems are warnings instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`nft -j` output is not JSON: {0}")]
    NftJson(#[source] serde_json::Error),
    #[error("`nft -j` output has no `nftables` array")]
    NftShape,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
