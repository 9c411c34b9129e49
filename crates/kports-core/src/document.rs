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

impl<'a> Document<'a, serde_json::Value> {
    /// The document of a command whose answer is one object holding one list (the firewall's
    /// rows, a lab's nodes): the list `list` becomes `items`, so that `items` is an array in
    /// every document, and the object's other fields become `context`.
    pub fn with_list<W: Serialize>(
        kind: &'static str,
        hostname: &'a str,
        whole: &W,
        list: &str,
        warnings: &'a [Warning],
    ) -> Result<Self, serde_json::Error> {
        let mut context = serde_json::to_value(whole)?;
        let items = context
            .as_object_mut()
            .and_then(|o| o.remove(list))
            .unwrap_or_else(|| serde_json::Value::Array(Vec::new()));
        Ok(Document::new(kind, hostname, items, warnings).with_context(context))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_answer_is_split_into_items_and_context() {
        let whole = serde_json::json!({ "up": true, "nodes": [{ "name": "w1" }] });
        let d = Document::with_list("lab-status", "h", &whole, "nodes", &[]).unwrap();
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["schema"], SCHEMA_VERSION);
        assert_eq!(v["items"], serde_json::json!([{ "name": "w1" }]));
        assert_eq!(v["context"], serde_json::json!({ "up": true }));
        // No such list: an empty array, never a missing or non-array `items`.
        let d = Document::with_list("x", "h", &serde_json::json!({ "a": 1 }), "rows", &[]).unwrap();
        assert_eq!(
            serde_json::to_value(&d).unwrap()["items"],
            serde_json::json!([])
        );
    }
}
