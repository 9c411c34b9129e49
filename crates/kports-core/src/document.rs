//! The one JSON envelope every kports command prints with `-o json` (docs/schema.md):
//! `schema`, `kind`, `hostname`, `items`, `warnings`, and what a command adds (`unix`,
//! `context`).

use serde::Serialize;

use crate::{SCHEMA_VERSION, Warning};

/// The JSON document every command prints.
#[derive(Debug, Serialize)]
pub struct Document<'a, T: Serialize, U: Serialize = ()> {
    pub schema: u32,
    /// Which command produced it: `node`, `listen`, `conns`, ...
    pub kind: &'static str,
    pub hostname: &'a str,
    pub items: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix: Option<U>,
    pub warnings: &'a [Warning],
    /// What a command adds about the whole document (`check`: role, CNI, ports checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
}

impl<'a, T: Serialize> Document<'a, T> {
    pub fn new(kind: &'static str, hostname: &'a str, items: T, warnings: &'a [Warning]) -> Self {
        Document {
            schema: SCHEMA_VERSION,
            kind,
            hostname,
            items,
            unix: None,
            warnings,
            context: None,
        }
    }

    /// Adds the `unix` list (`kports listen --unix`).
    pub fn with_unix<U: Serialize>(self, unix: Option<U>) -> Document<'a, T, U> {
        let Document {
            schema,
            kind,
            hostname,
            items,
            warnings,
            context,
            ..
        } = self;
        Document {
            schema,
            kind,
            hostname,
            items,
            unix,
            warnings,
            context,
        }
    }

    /// Adds the `context` object.
    pub fn with_context(self, context: serde_json::Value) -> Self {
        Document {
            context: Some(context),
            ..self
        }
    }
}
