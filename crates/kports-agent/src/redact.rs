//! Secret values out of every command line in a document before the agent serves it.
//!
//! The documents come from the binary as JSON; whatever produced them, a command line in them
//! goes through kports-core's redaction once more here (it is idempotent), so a field added
//! later cannot leak a token through the API. Command lines are the string fields `cmdline`
//! and `command` and the list fields `argv` and `args`, at any depth.

use kports_core::redact::{redact_args, redact_argv};
use serde_json::Value;

const LINE_KEYS: &[&str] = &["cmdline", "command"];
const LIST_KEYS: &[&str] = &["argv", "args"];

/// Redacts `doc` in place.
pub fn redact_document(doc: &mut Value) {
    match doc {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(line) if LINE_KEYS.contains(&key.as_str()) => {
                        let words: Vec<String> = line.split(' ').map(str::to_string).collect();
                        *line = redact_argv(&words);
                    }
                    Value::Array(items)
                        if LIST_KEYS.contains(&key.as_str())
                            && items.iter().all(Value::is_string) =>
                    {
                        let words: Vec<String> = items
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect();
                        *items = redact_args(&words).into_iter().map(Value::String).collect();
                    }
                    other => redact_document(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_document),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn command_lines_at_any_depth() {
        let mut doc = json!({
            "items": [{
                "holders": [{
                    "cmdline": "kubeadm join --token abc.def --v=5",
                    "argv": ["etcd", "--password=hunter2", "--name", "cp1"],
                }],
                "notes": "--token=kept-in-free-text",
            }],
            "command": "curl https://bob:pw@h/x",
        });
        redact_document(&mut doc);
        assert_eq!(
            doc,
            json!({
                "items": [{
                    "holders": [{
                        "cmdline": "kubeadm join --token REDACTED --v=5",
                        "argv": ["etcd", "--password=REDACTED", "--name", "cp1"],
                    }],
                    "notes": "--token=kept-in-free-text",
                }],
                "command": "curl https://bob:REDACTED@h/x",
            })
        );
    }

    #[test]
    fn redacting_twice_changes_nothing_more() {
        let mut doc = json!({"cmdline": "x --secret s --token=t"});
        redact_document(&mut doc);
        let once = doc.clone();
        redact_document(&mut doc);
        assert_eq!(doc, once);
        assert_eq!(doc["cmdline"], "x --secret REDACTED --token=REDACTED");
    }
}
