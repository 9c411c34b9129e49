//! Escaping of untrusted text before it reaches a terminal.
//!
//! Process names, command lines, interface names, nft comments and the messages that quote
//! them come from whoever started the process or wrote the rule. Printed raw, an escape
//! sequence among them can move the cursor, rewrite what kports printed above, change the
//! terminal's title or hide text; a newline can forge a table row. [`untrusted`] is the one
//! function every table and message of the `kports` binary passes such text through.
//!
//! Escaped, as Rust writes them so they read unambiguously: C0 controls and DEL (`\x1b`,
//! `\n`, `\t`, `\r`, `\x7f`), C1 controls (`\u{9b}`), and the Unicode controls that reorder
//! or hide text (bidirectional overrides and isolates, `\u{202e}`; zero-width characters and
//! the byte-order mark, `\u{200b}`). Backslashes are kept as they are: systemd's own escapes
//! (`serial\x2dgetty`) in cgroup and unit names must read as the system writes them. JSON output
//! needs none of this: serde_json escapes every control character itself.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width space, joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{feff}'              // byte-order mark
        )
}

/// `s` with every character that could act on a terminal written as an escape; borrowed when
/// there is none (the common case costs one scan).
pub fn untrusted(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(is_unsafe) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if !is_unsafe(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        // Clear screen and set the title: the classic injection through a process name.
        assert_eq!(
            untrusted("evil\x1b[2J\x1b]0;pwned\x07"),
            "evil\\x1b[2J\\x1b]0;pwned\\x07"
        );
        assert_eq!(untrusted("a\nb\tc\rd\x7f"), "a\\nb\\tc\\rd\\x7f");
        // C1 CSI, a bidi override that would reverse "txt.exe", a zero-width space.
        assert_eq!(untrusted("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(untrusted("\u{202e}exe.txt"), "\\u{202e}exe.txt");
        assert_eq!(untrusted("ku\u{200b}belet"), "ku\\u{200b}belet");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for s in [
            "kube-apiserver --secure-port=6443",
            "system-serial\\x2dgetty.slice",
            "flannel.1",
            "héllo wörld ✓",
            "",
        ] {
            assert!(matches!(untrusted(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let once = untrusted("a\x1b[31m\u{202e}b\n").into_owned();
        assert_eq!(untrusted(&once), once);
    }
}
