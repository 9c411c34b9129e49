//! Redaction and terminal escaping of command lines (arguments separated by NUL bytes, as in
//! `/proc/PID/cmdline`): whatever the arguments, nothing panics, what is shown holds no
//! control character once escaped, and every argument reported hidden shows `REDACTED`.
#![no_main]

use kports_core::{escape, redact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let argv: Vec<String> = text.split('\0').map(str::to_string).collect();
    let shown = redact::redact(&argv);
    for h in &shown.hidden {
        assert!(h.contains(redact::REDACTED), "{h:?} of {argv:?}");
    }
    let safe = escape::untrusted(&shown.text);
    assert!(!safe.chars().any(char::is_control), "{safe:?}");
});
