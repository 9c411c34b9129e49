//! Redaction of secrets in command lines before kports prints them.
//!
//! kports reads every process's command line; some carry bootstrap tokens, passwords or inline
//! key material. A flag whose name says it holds such a value (`token`, `password`, `secret`,
//! `credential`, `key-data`, `api-key`, `private-key`) has its value replaced by `REDACTED`,
//! whether given as `--flag=value` or `--flag value`. Flags that only name a file or toggle a
//! feature (`--token-auth-file`, `--enable-bootstrap-token-auth`) are left alone. Passwords in
//! URLs (`https://user:pw@host`) are redacted anywhere.

/// What replaces a secret.
pub const REDACTED: &str = "REDACTED";

const SECRET_WORDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "credential",
    "key-data",
    "keydata",
    "api-key",
    "apikey",
    "private-key",
];
const NOT_A_VALUE_SUFFIXES: &[&str] = &["-file", "-path", "-dir", "-ttl", "-auth", "-ref"];
const TOGGLE_PREFIXES: &[&str] = &["enable-", "disable-", "no-"];

/// Whether a flag name (without leading dashes) holds a secret value.
pub fn is_secret_flag(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    SECRET_WORDS.iter().any(|w| n.contains(w))
        && !NOT_A_VALUE_SUFFIXES.iter().any(|s| n.ends_with(s))
        && !TOGGLE_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// Redacts `argv` and joins it with spaces, as a command line is shown.
pub fn redact_argv(argv: &[String]) -> String {
    redact_args(argv).join(" ")
}

/// Redacts `argv` element by element, keeping it a list (for documents that carry `argv`).
pub fn redact_args(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut hide_next = false;
    for arg in argv {
        if hide_next && !arg.starts_with('-') {
            out.push(REDACTED.to_string());
            hide_next = false;
            continue;
        }
        hide_next = false;
        if let Some(name) = arg.strip_prefix('-').map(|a| a.trim_start_matches('-')) {
            if !name.contains('=') && is_secret_flag(name) {
                hide_next = true;
            }
        }
        out.push(redact_arg(arg));
    }
    out
}

fn redact_arg(arg: &str) -> String {
    if let Some(flag) = arg.strip_prefix('-') {
        if let Some((name, _)) = flag.trim_start_matches('-').split_once('=') {
            if is_secret_flag(name) {
                let keep = arg.len() - (flag.trim_start_matches('-').len() - name.len() - 1);
                return format!("{}{REDACTED}", &arg[..keep]);
            }
        }
    }
    redact_url_passwords(arg)
}

/// Replaces `pw` in every `scheme://user:pw@` with REDACTED.
fn redact_url_passwords(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let auth_end = tail.find(['/', ' ', ',']).unwrap_or(tail.len());
        let auth = &tail[..auth_end];
        match (auth.rfind('@'), auth.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&auth[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&auth[at..]);
            }
            _ => out.push_str(auth),
        }
        rest = &tail[auth_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(argv: &[&str], expected: &str) {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        assert_eq!(redact_argv(&argv), expected);
    }

    #[test]
    fn equals_form() {
        check(
            &[
                "kubeadm",
                "join",
                "--token=abcdef.0123456789abcdef",
                "--v=5",
            ],
            "kubeadm join --token=REDACTED --v=5",
        );
    }

    #[test]
    fn separate_value_form() {
        check(
            &[
                "kubeadm",
                "join",
                "--discovery-token",
                "abcdef.0123",
                "10.0.0.1:6443",
            ],
            "kubeadm join --discovery-token REDACTED 10.0.0.1:6443",
        );
        check(&["app", "-password", "hunter2"], "app -password REDACTED");
    }

    #[test]
    fn key_data_and_secrets() {
        check(
            &[
                "x",
                "--client-key-data=LS0tLS1CRUdJTi",
                "--bootstrap_secret=s",
            ],
            "x --client-key-data=REDACTED --bootstrap_secret=REDACTED",
        );
    }

    #[test]
    fn file_paths_and_toggles_are_kept() {
        check(
            &[
                "kube-apiserver",
                "--token-auth-file=/etc/k/tokens.csv",
                "--enable-bootstrap-token-auth=true",
                "--tls-private-key-file=/etc/k/apiserver.key",
            ],
            "kube-apiserver --token-auth-file=/etc/k/tokens.csv \
             --enable-bootstrap-token-auth=true --tls-private-key-file=/etc/k/apiserver.key",
        );
    }

    #[test]
    fn flag_without_value_does_not_eat_next_flag() {
        check(&["x", "--token", "--v=2"], "x --token --v=2");
    }

    #[test]
    fn args_stay_a_list() {
        let argv: Vec<String> = ["kubeadm", "join", "--token", "abc.def", "--v=5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            redact_args(&argv),
            ["kubeadm", "join", "--token", "REDACTED", "--v=5"]
        );
    }

    #[test]
    fn url_passwords() {
        check(
            &["etcd", "--proxy=http://bob:pa55@proxy:3128/x,https://h:1"],
            "etcd --proxy=http://bob:REDACTED@proxy:3128/x,https://h:1",
        );
        check(&["x", "https://127.0.0.1:2379"], "x https://127.0.0.1:2379");
    }
}
