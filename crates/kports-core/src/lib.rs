//! The IO-free heart of kports: the model of one node's network state and the pure joins over it.
//!
//! Collectors (in `kports-linux`) fill these types from the kernel; everything here is plain data
//! and functions that cannot fail, so every analysis is testable on captured fixtures without root.
//! The serde `Serialize` impls of these types *are* kports's JSON schema (see `docs/schema.md`):
//! renaming a field is a schema change and needs [`SCHEMA_VERSION`] bumped.

pub mod catalog;
pub mod cgroup;
pub mod check;
pub mod cniconf;
pub mod component;
pub mod conns;
pub mod document;
pub mod escape;
pub mod explain;
pub mod finding;
pub mod flags;
pub mod model;
pub mod names;
pub mod prereq;
pub mod redact;
pub mod resolve;
pub mod role;
pub mod settings;

pub use model::*;

/// Version of the JSON document every command prints with `-o json`.
pub const SCHEMA_VERSION: u32 = 3;
