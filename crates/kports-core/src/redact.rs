//! Redaction of secrets in command lines: the one policy every output of kports goes through.
//!
//! kports reads every process's command line, and command lines carry bootstrap tokens,
//! passwords and key material. The collectors redact a command line once, when they read it
//! ([`redact`]); tables, JSON, findings' evidence and `explain` only ever see the result.
//!
//! What is redacted, keeping what says where the secret was (the flag name, the user, the
//! header name, the URL's host) and putting [`REDACTED`] in place of the value:
//! - the value of a flag whose name says it holds a secret (`token`, `password`, `secret`,
//!   `credential`, `api-key`, `access-key`, `private-key`, `certificate-key`, `basic-auth`,
//!   `passphrase`, `pass`, `pwd`, ...), as `--flag=value`, `--flag value`, `-flag value`;
//! - the password of `user:password` given to a user flag (`--user=root:pw`, curl's `-u`);
//! - the few short flags known to carry a password for one program (`mysql -pPW`,
//!   `redis-cli -a PW`, `sshpass -p PW`, `docker login -p PW`, ...);
//! - the password in a URL's userinfo (`https://user:pw@host`, `redis://:pw@host`), in any
//!   argument, and `password=`-like pairs in connection strings and query strings;
//! - environment-style `KEY=VALUE` arguments whose key names a secret (`DB_PASSWORD=x`);
//! - `Authorization:`, `Proxy-Authorization:`, `Cookie:` and `X-Api-Key:`-like headers, and the
//!   word after `Bearer`;
//! - things that are secrets whatever flag carries them: PEM private keys, JSON web tokens,
//!   kubeadm bootstrap tokens (`abcdef.0123456789abcdef`), OpenSSL's `pass:PW`.
//!
//! Kept, because they are not secrets and an administrator needs them: flags that name a file,
//! a directory, a duration, a URL or a name (`--token-auth-file`, `--token-ttl`,
//! `--discovery-token-ca-cert-hash`, `--secret-name`), toggles (`--enable-bootstrap-token-auth`,
//! `--use-service-account-credentials=true`, `--password-stdin`), addresses and ports.
//!
//! A value given as a separate argument that itself looks like a flag (`--token --v=2`) is
//! taken to be the next flag, not the token: a secret that starts with a dash and a letter is
//! shown. [`Redacted::hidden`] lists each argument that was redacted, as shown, so that
//! `kports check` can say that a secret is passed on a command line at all.

/// What replaces a secret.
pub const REDACTED: &str = "REDACTED";

/// A command line as kports shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redacted {
    /// The arguments, redacted, joined with spaces.
    pub text: String,
    /// Each argument (or flag and value) that held a secret, as shown: `--token=REDACTED`,
    /// `--password REDACTED`, `https://bob:REDACTED@proxy:3128`.
    pub hidden: Vec<String>,
}

/// Substrings of a flag or key name that say it holds a secret.
const SECRET_PARTS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "credential",
    "key-data",
    "keydata",
    "api-key",
    "apikey",
    "private-key",
    "privatekey",
    "access-key",
    "accesskey",
    "certificate-key",
    "encryption-key",
    "session-key",
    "master-key",
    "auth-key",
    "authkey",
    "basic-auth",
    "bearer",
    "cookie",
    "requirepass",
    "masterauth",
];

/// Whole words of a flag or key name (split at `-`, `_`, `.`) that say it holds a secret.
const SECRET_WORDS: &[&str] = &[
    "pass",
    "pwd",
    "pw",
    "passin",
    "passout",
    "storepass",
    "keypass",
    "srcstorepass",
    "deststorepass",
    "psk",
];

/// Last words of a name whose value is not the secret but says where it is, how long it lives
/// or what it is called.
const NOT_A_VALUE_LAST_WORDS: &[&str] = &[
    "file",
    "files",
    "path",
    "paths",
    "dir",
    "directory",
    "ttl",
    "hash",
    "url",
    "uri",
    "urls",
    "endpoint",
    "endpoints",
    "timeout",
    "duration",
    "period",
    "interval",
    "expiration",
    "expiry",
    "lifetime",
    "name",
    "names",
    "namespace",
    "env",
    "mode",
    "type",
    "length",
    "size",
    "issuer",
    "claim",
    "claims",
    "prefix",
    "command",
    "cmd",
    "format",
    "algorithm",
    "audience",
    "audiences",
    "ref",
    "stdin",
    "print",
    "verification",
    "webhook",
    "provider",
    "version",
    "count",
    "limit",
    "qps",
    "burst",
    "store",
    "keyfile",
    "certfile",
    "cafile",
];

/// First words of a name that make it a toggle, never a secret.
const TOGGLE_FIRST_WORDS: &[&str] = &[
    "enable", "disable", "no", "skip", "use", "allow", "with", "without", "require", "rotate",
];

/// Names that contain a secret word but are not secrets: the shell's working directories.
const NOT_SECRETS: &[&str] = &["pwd", "oldpwd"];

/// Last words of a name whose value is `user` or `user:password`.
const USER_LAST_WORDS: &[&str] = &["user", "userpass", "userinfo"];

/// HTTP headers whose value is a credential.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Authorization schemes, kept in front of the redacted credential.
const AUTH_SCHEMES: &[&str] = &[
    "bearer",
    "basic",
    "token",
    "digest",
    "negotiate",
    "apikey",
    "aws4-hmac-sha256",
];

/// Values that are never secrets: a secret-named boolean flag's setting.
const BOOLEANS: &[&str] = &["true", "false", "yes", "no", "on", "off"];

/// A short flag known to carry a password for one program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Short {
    /// `-pPASSWORD`, the value attached (mysql: `-p PW` means "ask", then a database name).
    Attached,
    /// `-p PASSWORD`.
    Separate,
    /// `-u user:password`.
    UserPass,
}

/// (programs, short flag, form, only after this subcommand).
const SHORT_FLAGS: &[(&[&str], char, Short, Option<&str>)] = &[
    (
        &[
            "mysql",
            "mysqladmin",
            "mysqldump",
            "mariadb",
            "mariadb-dump",
        ],
        'p',
        Short::Attached,
        None,
    ),
    (&["redis-cli", "valkey-cli"], 'a', Short::Separate, None),
    (&["sshpass"], 'p', Short::Separate, None),
    (
        &["mongo", "mongosh", "mongodump"],
        'p',
        Short::Separate,
        None,
    ),
    (
        &[
            "docker", "podman", "nerdctl", "helm", "buildah", "skopeo", "oras", "crane", "az",
        ],
        'p',
        Short::Separate,
        Some("login"),
    ),
    (&["curl"], 'u', Short::UserPass, None),
    (&["curl"], 'U', Short::UserPass, None),
];

/// Programs that run another, whose arguments follow theirs.
const WRAPPERS: &[&str] = &[
    "sshpass", "env", "sudo", "timeout", "nice", "nohup", "ionice", "setpriv", "nsenter", "chroot",
    "unshare", "watch", "xargs",
];

/// Normalises a flag or key name: lower case, `_` and `.` as `-`, no leading dashes.
fn normalise(name: &str) -> String {
    name.trim_start_matches('-')
        .to_ascii_lowercase()
        .replace(['_', '.'], "-")
}

/// Stems one of which every secret name contains: a name with none of them is not looked at
/// further (most arguments), without allocating.
const SECRET_STEMS: &[&[u8]] = &[
    b"tok", b"pass", b"pw", b"secret", b"cred", b"key", b"auth", b"bearer", b"cookie", b"psk",
];

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether a flag or key name (with or without leading dashes) holds a secret value.
pub fn is_secret_flag(name: &str) -> bool {
    if !SECRET_STEMS
        .iter()
        .any(|s| contains_ignore_case(name.as_bytes(), s))
    {
        return false;
    }
    let n = normalise(name);
    if n.is_empty() || NOT_SECRETS.contains(&n.as_str()) {
        return false;
    }
    let words: Vec<&str> = n.split('-').filter(|w| !w.is_empty()).collect();
    let (Some(first), Some(last)) = (words.first(), words.last()) else {
        return false;
    };
    if TOGGLE_FIRST_WORDS.contains(first) || NOT_A_VALUE_LAST_WORDS.contains(last) {
        return false;
    }
    SECRET_PARTS.iter().any(|p| n.contains(p)) || words.iter().any(|w| SECRET_WORDS.contains(w))
}

/// Whether a flag name's value is `user` or `user:password`.
fn is_user_flag(name: &str) -> bool {
    let n = normalise(name);
    n.rsplit('-')
        .next()
        .is_some_and(|last| USER_LAST_WORDS.contains(&last))
}

/// Top directories of the paths a secret-named flag may point to instead of holding the secret.
const PATH_ROOTS: &[&str] = &[
    "etc", "var", "run", "home", "root", "opt", "usr", "tmp", "srv", "secrets", "mnt", "data",
    "dev", "proc", "sys", "tls", "certs", "config", "keys", "vault",
];

/// Whether a secret-named flag's value is plainly not a secret: nothing, a boolean, or the path
/// of a file (`/etc/kubernetes/pki/sa.key`, `./token`, `~/.aws/credentials`).
fn is_plain(value: &str) -> bool {
    value.is_empty() || BOOLEANS.iter().any(|b| value.eq_ignore_ascii_case(b)) || is_path(value)
}

/// A path, told from a base64 secret that starts with `/` by its first directory.
fn is_path(value: &str) -> bool {
    let rest = if let Some(r) = value
        .strip_prefix("./")
        .or_else(|| value.strip_prefix("~/"))
    {
        r
    } else if let Some(r) = value.strip_prefix('/') {
        match r.split_once('/') {
            Some((root, _)) if PATH_ROOTS.contains(&root) => r,
            _ => return false,
        }
    } else {
        return false;
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '@'))
}

/// Whether an argument looks like a flag (`-x`, `--name`, `--name=value`), not a value.
fn looks_like_flag(arg: &str) -> bool {
    let Some(rest) = arg.strip_prefix('-') else {
        return false;
    };
    let name = rest.trim_start_matches('-');
    let name = name.split_once('=').map_or(name, |(n, _)| n);
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `user:password` with the password redacted; a numeric `uid:gid` is kept.
fn redact_user_pass(value: &str) -> Option<String> {
    let (user, pass) = value.split_once(':')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if pass.is_empty() || (numeric(user) && numeric(pass)) {
        return None;
    }
    Some(format!("{user}:{REDACTED}"))
}

/// What the argument after a flag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Plain,
    Secret,
    UserPass,
}

/// Redacts `argv`: the one function every command line kports shows goes through.
pub fn redact(argv: &[String]) -> Redacted {
    let (shown, hidden) = redact_list(argv);
    Redacted {
        text: shown.join(" "),
        hidden,
    }
}

/// Redacts `argv` element by element, keeping it a list (for documents that carry `argv`):
/// the same policy as [`redact`].
pub fn redact_args(argv: &[String]) -> Vec<String> {
    redact_list(argv).0
}

/// The redacted arguments, and those that held a secret as shown.
fn redact_list(argv: &[String]) -> (Vec<String>, Vec<String>) {
    // A process that rewrote its title into one string (`setproctitle`) has one argument with
    // spaces in it: redact its words as arguments, and keep it one.
    if let [only] = argv {
        if only.contains(' ') {
            let words: Vec<String> = only.split(' ').map(str::to_string).collect();
            let (shown, hidden) = redact_list(&words);
            return (vec![shown.join(" ")], hidden);
        }
    }
    let base = |a: &str| a.rsplit('/').next().unwrap_or(a).to_string();
    let mut program = argv.first().map(|a| base(a)).unwrap_or_default();
    let mut shown: Vec<String> = Vec::with_capacity(argv.len());
    let mut hidden = Vec::new();
    let mut next = Next::Plain;
    let mut after_login = false;
    for (i, arg) in argv.iter().enumerate() {
        let expecting = std::mem::replace(&mut next, Next::Plain);
        if i > 0 && expecting != Next::Plain && !looks_like_flag(arg) && !is_plain(arg) {
            let value = match expecting {
                Next::UserPass => match redact_user_pass(arg) {
                    Some(v) => v,
                    None => {
                        shown.push(redact_value(arg, &mut hidden));
                        continue;
                    }
                },
                _ => REDACTED.to_string(),
            };
            let flag = shown.last().cloned().unwrap_or_default();
            hidden.push(format!("{flag} {value}"));
            shown.push(value);
            continue;
        }
        if i == 0 {
            shown.push(redact_value(arg, &mut hidden));
            continue;
        }
        if arg == "login" {
            after_login = true;
        }
        if arg.eq_ignore_ascii_case("bearer") || arg.eq_ignore_ascii_case("bearer:") {
            next = Next::Secret;
            shown.push(arg.clone());
            continue;
        }
        if WRAPPERS.contains(&program.as_str())
            && !arg.starts_with('-')
            && env_style(arg).is_none()
            && !arg.contains('=')
        {
            // `sshpass -p PW ssh -p 22`, `env X=1 mysql -pPW`: the rest is another program's.
            program = base(arg);
            after_login = false;
        }
        if let Some(short) = short_flag(&program, arg, after_login) {
            match short {
                Short::Attached => {
                    let value = format!("{}{REDACTED}", &arg[..2]);
                    hidden.push(value.clone());
                    shown.push(value);
                }
                Short::Separate => {
                    next = Next::Secret;
                    shown.push(arg.clone());
                }
                Short::UserPass => {
                    next = Next::UserPass;
                    shown.push(arg.clone());
                }
            }
            continue;
        }
        shown.push(redact_arg(arg, &mut next, &mut hidden));
    }
    (shown, hidden)
}

/// Redacts `argv` and joins it with spaces, as a command line is shown.
pub fn redact_argv(argv: &[String]) -> String {
    redact(argv).text
}

/// Redacts a command line already joined with spaces (one that did not come from
/// `/proc/PID/cmdline`, such as one given in a test or a fixture).
pub fn redact_line(line: &str) -> String {
    let words: Vec<String> = line.split(' ').map(str::to_string).collect();
    redact(&words).text
}

/// The program-specific short flag `arg` is, if it carries a password.
fn short_flag(program: &str, arg: &str, after_login: bool) -> Option<Short> {
    let mut chars = arg.chars();
    let (Some('-'), Some(c)) = (chars.next(), chars.next()) else {
        return None;
    };
    let attached = arg.len() > 2;
    SHORT_FLAGS
        .iter()
        .find(|(programs, flag, form, sub)| {
            *flag == c
                && programs.contains(&program)
                && sub.is_none_or(|_| after_login)
                && (attached == (*form == Short::Attached))
        })
        .map(|(_, _, form, _)| *form)
}

/// Redacts one argument; sets `next` when the following argument is this flag's value.
fn redact_arg(arg: &str, next: &mut Next, hidden: &mut Vec<String>) -> String {
    if let Some(flag) = arg.strip_prefix('-') {
        let body = flag.trim_start_matches('-');
        let dashes = &arg[..arg.len() - body.len()];
        match body.split_once('=') {
            Some((name, value)) => {
                if is_secret_flag(name) && !is_plain(value) {
                    let shown = format!("{dashes}{name}={REDACTED}");
                    hidden.push(shown.clone());
                    return shown;
                }
                if is_user_flag(name) {
                    if let Some(v) = redact_user_pass(value) {
                        let shown = format!("{dashes}{name}={v}");
                        hidden.push(shown.clone());
                        return shown;
                    }
                }
                let mut found = Vec::new();
                let value = redact_value(value, &mut found);
                if !found.is_empty() {
                    hidden.push(format!("{dashes}{name}={value}"));
                }
                return format!("{dashes}{name}={value}");
            }
            None if looks_like_flag(arg) => {
                if is_secret_flag(body) {
                    *next = Next::Secret;
                } else if is_user_flag(body) {
                    *next = Next::UserPass;
                }
                return arg.to_string();
            }
            None => {}
        }
    }
    if let Some((key, _)) = env_style(arg) {
        if is_secret_flag(key) {
            let shown = format!("{key}={REDACTED}");
            hidden.push(shown.clone());
            return shown;
        }
    }
    redact_value(arg, hidden)
}

/// `KEY=VALUE` with an identifier as key, as `env` and shells take them.
fn env_style(arg: &str) -> Option<(&str, &str)> {
    let (key, value) = arg.split_once('=')?;
    let ident = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ident && !is_plain(value)).then_some((key, value))
}

/// Redacts the secrets that are secrets whatever carries them: headers, `Bearer` tokens, URL
/// passwords, `password=` pairs, `pass:PW`, PEM private keys, JWTs and bootstrap tokens. Adds
/// the redacted value to `hidden` when something was redacted.
fn redact_value(value: &str, hidden: &mut Vec<String>) -> String {
    let mut s = redact_pem(value);
    if let Some(h) = redact_header(&s) {
        s = h;
    } else {
        s = redact_bearer(&s);
    }
    s = redact_url_passwords(&s);
    s = redact_pairs(&s);
    if let Some(rest) = s.strip_prefix("pass:") {
        if !rest.is_empty() {
            s = format!("pass:{REDACTED}");
        }
    }
    s = redact_token_words(&s);
    if s != value {
        hidden.push(s.clone());
    }
    s
}

/// A PEM private key block (or its start, when cut short) becomes REDACTED.
fn redact_pem(s: &str) -> String {
    const BEGIN: &str = "-----BEGIN";
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(BEGIN) {
        let after = &rest[i..];
        let header_end = after[BEGIN.len()..]
            .find("-----")
            .map(|j| BEGIN.len() + j + 5);
        let Some(header_end) = header_end else { break };
        if !after[..header_end].contains("PRIVATE KEY") {
            out.push_str(&rest[..i + header_end]);
            rest = &rest[i + header_end..];
            continue;
        }
        out.push_str(&rest[..i]);
        out.push_str(REDACTED);
        let body = &after[header_end..];
        rest = match body.find("-----END") {
            Some(e) => {
                let end = &body[e + 8..];
                match end.find("-----") {
                    Some(k) => &end[k + 5..],
                    None => "",
                }
            }
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// `Authorization: Bearer x` as `Authorization: Bearer REDACTED`; `None` unless the argument
/// is a header holding a credential.
fn redact_header(s: &str) -> Option<String> {
    let (name, value) = s.split_once(':')?;
    let name_t = name.trim();
    if name_t.is_empty()
        || !name_t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return None;
    }
    let lower = name_t.to_ascii_lowercase();
    let secret = SECRET_HEADERS.contains(&lower.as_str()) || is_secret_flag(&lower);
    let v = value.trim_start();
    if !secret || v.is_empty() {
        return None;
    }
    let lead = &value[..value.len() - v.len()];
    let mut words = v.splitn(2, ' ');
    let first = words.next().unwrap_or_default();
    let kept = match words.next() {
        Some(_) if AUTH_SCHEMES.contains(&first.to_ascii_lowercase().as_str()) => {
            format!("{first} ")
        }
        _ => String::new(),
    };
    Some(format!("{name}:{lead}{kept}{REDACTED}"))
}

/// The word after every `Bearer ` becomes REDACTED.
fn redact_bearer(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find("bearer ") {
        let start = from + i + "bearer ".len();
        let word_start = start + (s[start..].len() - s[start..].trim_start().len());
        let word_end = s[word_start..]
            .find([' ', ',', ';', '"', '\''])
            .map_or(s.len(), |e| word_start + e);
        out.push_str(&s[from..word_start]);
        if word_end > word_start {
            out.push_str(REDACTED);
        }
        from = word_end;
    }
    out.push_str(&s[from..]);
    out
}

/// Replaces `pw` in every `scheme://user:pw@` with REDACTED.
fn redact_url_passwords(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let auth_end = tail.find(['/', ' ', ',', '?', '#']).unwrap_or(tail.len());
        let auth = &tail[..auth_end];
        match (auth.rfind('@'), auth.find(':')) {
            (Some(at), Some(colon)) if colon < at && colon + 1 < at => {
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

/// `password=x` in connection strings and query strings (`host=db password=x`,
/// `Server=db;Password=x`, `?token=x&`), keyed by a secret name.
fn redact_pairs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let end = rest.find([' ', ';', '&', '?', ',']).unwrap_or(rest.len());
        let (seg, tail) = rest.split_at(end);
        match seg.split_once('=') {
            Some((key, value)) if is_secret_flag(key) && !is_plain(value) => {
                out.push_str(key);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(seg),
        }
        let Some(d) = tail.chars().next() else { break };
        out.push(d);
        rest = &tail[d.len_utf8()..];
    }
    out
}

/// Words that are secrets by their shape: JWTs (`eyJ...`) and kubeadm bootstrap tokens
/// (`abcdef.0123456789abcdef`).
fn redact_token_words(s: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let start = rest.find(is_word).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let word = &rest[..end];
        if is_jwt(word) || is_bootstrap_token(word) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        rest = &rest[end..];
    }
    out
}

fn is_jwt(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts[0].len() > 10
        && parts[1].len() > 3
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_bootstrap_token(w: &str) -> bool {
    let lower_alnum = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    w.len() == 23
        && matches!(w.split_once('.'), Some((id, secret))
        if id.len() == 6 && secret.len() == 16 && lower_alnum(id) && lower_alnum(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// Real-world arguments: (command line, as kports shows it). The first word is the program.
    #[rustfmt::skip]
    const CASES: &[(&[&str], &str)] = &[
        // kubeadm
        (&["kubeadm", "join", "--token=abcdef.0123456789abcdef", "--v=5"], "kubeadm join --token=REDACTED --v=5"),
        (&["kubeadm", "join", "10.0.0.1:6443", "--token", "abcdef.0123456789abcdef"], "kubeadm join 10.0.0.1:6443 --token REDACTED"),
        (&["kubeadm", "join", "--discovery-token", "abcdef.0123", "10.0.0.1:6443"], "kubeadm join --discovery-token REDACTED 10.0.0.1:6443"),
        (&["kubeadm", "join", "--discovery-token-ca-cert-hash", "sha256:0a1b2c"], "kubeadm join --discovery-token-ca-cert-hash sha256:0a1b2c"),
        (&["kubeadm", "join", "--discovery-token-unsafe-skip-ca-verification", "--token", "t0k"], "kubeadm join --discovery-token-unsafe-skip-ca-verification --token REDACTED"),
        (&["kubeadm", "join", "--control-plane", "--certificate-key", "f8902e114ef118304e561c3ecd4d0b543adc226b7a07f675f56564185ffe0c07"], "kubeadm join --control-plane --certificate-key REDACTED"),
        (&["kubeadm", "init", "--token-ttl", "24h0m0s", "--skip-token-print"], "kubeadm init --token-ttl 24h0m0s --skip-token-print"),
        (&["kubeadm", "token", "delete", "abcdef.0123456789abcdef"], "kubeadm token delete REDACTED"),
        // kube-apiserver, controller manager, kubelet, kubectl
        (&["kube-apiserver", "--token-auth-file=/etc/k/tokens.csv", "--enable-bootstrap-token-auth=true"], "kube-apiserver --token-auth-file=/etc/k/tokens.csv --enable-bootstrap-token-auth=true"),
        (&["kube-apiserver", "--tls-private-key-file=/etc/k/apiserver.key", "--service-account-key-file=/etc/k/sa.pub"], "kube-apiserver --tls-private-key-file=/etc/k/apiserver.key --service-account-key-file=/etc/k/sa.pub"),
        (&["kube-apiserver", "--etcd-keyfile=/etc/k/key.pem", "--kubeconfig=/etc/k/admin.conf"], "kube-apiserver --etcd-keyfile=/etc/k/key.pem --kubeconfig=/etc/k/admin.conf"),
        (&["kube-apiserver", "--basic-auth=user:E"], "kube-apiserver --basic-auth=REDACTED"),
        (&["kube-apiserver", "--oidc-client-secret=C", "--oidc-username-claim=email"], "kube-apiserver --oidc-client-secret=REDACTED --oidc-username-claim=email"),
        (&["kube-apiserver", "--authorization-mode=Node,RBAC", "--anonymous-auth=false"], "kube-apiserver --authorization-mode=Node,RBAC --anonymous-auth=false"),
        (&["kube-apiserver", "--service-account-max-token-expiration=48h", "--service-account-issuer=https://kubernetes.default.svc"], "kube-apiserver --service-account-max-token-expiration=48h --service-account-issuer=https://kubernetes.default.svc"),
        (&["kube-apiserver", "--authentication-token-webhook-config-file=/etc/k/w.yaml", "--authentication-token-webhook-cache-ttl=2m"], "kube-apiserver --authentication-token-webhook-config-file=/etc/k/w.yaml --authentication-token-webhook-cache-ttl=2m"),
        (&["kube-apiserver", "--advertise-address=192.0.2.10", "--secure-port=6443", "--etcd-servers=https://127.0.0.1:2379"], "kube-apiserver --advertise-address=192.0.2.10 --secure-port=6443 --etcd-servers=https://127.0.0.1:2379"),
        (&["kube-controller-manager", "--use-service-account-credentials=true", "--root-ca-file=/etc/k/ca.crt"], "kube-controller-manager --use-service-account-credentials=true --root-ca-file=/etc/k/ca.crt"),
        (&["kube-controller-manager", "--use-service-account-credentials", "--v=2"], "kube-controller-manager --use-service-account-credentials --v=2"),
        (&["kubelet", "--bootstrap-kubeconfig=/etc/k/bootstrap-kubelet.conf", "--streaming-connection-idle-timeout=4h"], "kubelet --bootstrap-kubeconfig=/etc/k/bootstrap-kubelet.conf --streaming-connection-idle-timeout=4h"),
        (&["kubectl", "--token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "get", "pods"], "kubectl --token=REDACTED get pods"),
        (&["kubectl", "--username=admin", "--password", "hunter2"], "kubectl --username=admin --password REDACTED"),
        (&["kubectl", "config", "set-credentials", "bob", "--client-key-data=LS0tLS1CRUdJTi"], "kubectl config set-credentials bob --client-key-data=REDACTED"),
        (&["kubectl", "create", "secret", "generic", "--secret-name=db", "--from-literal=password=pw1"], "kubectl create secret generic --secret-name=db --from-literal=password=REDACTED"),
        (&["app", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc-_def"], "app REDACTED"),
        // etcd and etcdctl
        (&["etcd", "--initial-cluster-token=etcd-cluster-1", "--client-cert-auth=true"], "etcd --initial-cluster-token=REDACTED --client-cert-auth=true"),
        (&["etcd", "--key-file=/etc/kubernetes/pki/etcd/server.key", "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key"], "etcd --key-file=/etc/kubernetes/pki/etcd/server.key --peer-key-file=/etc/kubernetes/pki/etcd/peer.key"),
        (&["etcd", "--listen-client-urls=https://127.0.0.1:2379,https://192.0.2.10:2379"], "etcd --listen-client-urls=https://127.0.0.1:2379,https://192.0.2.10:2379"),
        (&["etcd", "--proxy=http://bob:pa55@proxy:3128/x,https://h:1"], "etcd --proxy=http://bob:REDACTED@proxy:3128/x,https://h:1"),
        (&["etcdctl", "--user=root:s3cret", "get", "/"], "etcdctl --user=root:REDACTED get /"),
        (&["etcdctl", "--user", "root:s3cret", "get", "/"], "etcdctl --user root:REDACTED get /"),
        (&["etcdctl", "--user", "root", "--password", "s3cret"], "etcdctl --user root --password REDACTED"),
        // CNI agents
        (&["flanneld", "--etcd-password=pw", "--etcd-username=flannel", "--etcd-keyfile=/etc/f/key.pem", "--iface=eth0"], "flanneld --etcd-password=REDACTED --etcd-username=flannel --etcd-keyfile=/etc/f/key.pem --iface=eth0"),
        (&["kube-router", "--peer-router-passwords=pw1,pw2", "--peer-router-passwords-file=/etc/kr/pw"], "kube-router --peer-router-passwords=REDACTED --peer-router-passwords-file=/etc/kr/pw"),
        (&["weaver", "--password", "weave-pw", "--port=6783"], "weaver --password REDACTED --port=6783"),
        (&["cilium-agent", "--kvstore-opt=etcd.config=/var/lib/etcd-config/etcd.config", "--cluster-pool-ipv4-cidr=10.0.0.0/8"], "cilium-agent --kvstore-opt=etcd.config=/var/lib/etcd-config/etcd.config --cluster-pool-ipv4-cidr=10.0.0.0/8"),
        (&["calico-node", "-felix", "ETCD_KEY_FILE=/calico-secrets/etcd-key", "CALICO_IPV4POOL_CIDR=192.168.0.0/16"], "calico-node -felix ETCD_KEY_FILE=/calico-secrets/etcd-key CALICO_IPV4POOL_CIDR=192.168.0.0/16"),
        // cloud tools
        (&["aws-iam-authenticator", "--aws-secret-access-key=F", "--aws-access-key-id", "AKIAIOSFODNN7EXAMPLE"], "aws-iam-authenticator --aws-secret-access-key=REDACTED --aws-access-key-id REDACTED"),
        (&["az", "login", "--service-principal", "-u", "appid", "-p", "pw", "--tenant", "t"], "az login --service-principal -u appid -p REDACTED --tenant t"),
        (&["gcloud", "auth", "--access-token-file=/etc/g/token", "--impersonate-service-account=sa@p.iam"], "gcloud auth --access-token-file=/etc/g/token --impersonate-service-account=sa@p.iam"),
        (&["docker", "login", "-u", "bob", "-p", "dckr_pat_x", "registry.example"], "docker login -u bob -p REDACTED registry.example"),
        (&["docker", "login", "--password-stdin", "-u", "bob"], "docker login --password-stdin -u bob"),
        (&["docker", "run", "-p", "8080:80", "-u", "1000:1000", "nginx"], "docker run -p 8080:80 -u 1000:1000 nginx"),
        (&["vault", "login", "-method=userpass", "username=bob", "password=pw"], "vault login -method=userpass username=bob password=REDACTED"),
        // URLs, headers, connection strings
        (&["curl", "-u", "bob:pw", "https://127.0.0.1:6443/"], "curl -u bob:REDACTED https://127.0.0.1:6443/"),
        (&["curl", "-H", "Authorization: Bearer abc.def", "https://127.0.0.1/"], "curl -H Authorization: Bearer REDACTED https://127.0.0.1/"),
        (&["curl", "--header=Authorization: Basic dXNlcjpwYXNz"], "curl --header=Authorization: Basic REDACTED"),
        (&["curl", "-H", "X-Vault-Token: s.abcdef", "-H", "Content-Type: application/json"], "curl -H X-Vault-Token: REDACTED -H Content-Type: application/json"),
        (&["curl", "-H", "Cookie: session=abc"], "curl -H Cookie: REDACTED"),
        (&["probe", "--auth-header", "Bearer", "tok3n"], "probe --auth-header Bearer REDACTED"),
        (&["git", "clone", "https://user:G@host/"], "git clone https://user:REDACTED@host/"),
        (&["psql", "postgresql://app:pgpw@127.0.0.1:5432/db?sslmode=require"], "psql postgresql://app:REDACTED@127.0.0.1:5432/db?sslmode=require"),
        (&["app", "--db=mysql://root:mypw@127.0.0.1:3306/x"], "app --db=mysql://root:REDACTED@127.0.0.1:3306/x"),
        (&["app", "redis://:redispw@127.0.0.1:6379/0"], "app redis://:REDACTED@127.0.0.1:6379/0"),
        (&["app", "--dsn", "host=db user=app password=pgpw dbname=x"], "app --dsn host=db user=app password=REDACTED dbname=x"),
        (&["app", "Server=db;Database=x;Password=sqlpw;"], "app Server=db;Database=x;Password=REDACTED;"),
        (&["app", "https://127.0.0.1/cb?access_token=qq&x=1"], "app https://127.0.0.1/cb?access_token=REDACTED&x=1"),
        (&["app", "https://127.0.0.1:2379", "ssh://git@host/repo"], "app https://127.0.0.1:2379 ssh://git@host/repo"),
        // databases and other programs' own flags
        (&["mysql", "-uroot", "-pS3cret", "-P", "3306"], "mysql -uroot -pREDACTED -P 3306"),
        (&["redis-cli", "-h", "127.0.0.1", "-a", "redispw", "ping"], "redis-cli -h 127.0.0.1 -a REDACTED ping"),
        (&["redis-server", "--requirepass", "foo", "--masterauth", "bar", "--port", "6379"], "redis-server --requirepass REDACTED --masterauth REDACTED --port 6379"),
        (&["sshpass", "-p", "pw", "ssh", "-p", "22", "host"], "sshpass -p REDACTED ssh -p 22 host"),
        (&["openssl", "pkcs12", "-passin", "pass:pw", "-passout", "pass:pw2"], "openssl pkcs12 -passin REDACTED -passout REDACTED"),
        (&["openssl", "rsa", "-passin=pass:pw"], "openssl rsa -passin=REDACTED"),
        (&["keytool", "-storepass", "changeit", "-keystore", "/etc/ks.jks"], "keytool -storepass REDACTED -keystore /etc/ks.jks"),
        (&["app", "--tls-key=-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"], "app --tls-key=REDACTED"),
        (&["app", "--ca=-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"], "app --ca=-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
        // environment-style arguments (`env KEY=VALUE cmd`)
        (&["env", "AWS_SECRET_ACCESS_KEY=wJalr", "AWS_REGION=eu-west-1", "aws"], "env AWS_SECRET_ACCESS_KEY=REDACTED AWS_REGION=eu-west-1 aws"),
        (&["env", "DB_PASSWORD=pw", "MYSQL_PWD=pw2", "GITHUB_TOKEN=ghp_x", "PWD=/home/bob", "app"], "env DB_PASSWORD=REDACTED MYSQL_PWD=REDACTED GITHUB_TOKEN=REDACTED PWD=/home/bob app"),
        (&["env", "GOOGLE_APPLICATION_CREDENTIALS=/etc/g/key.json", "app"], "env GOOGLE_APPLICATION_CREDENTIALS=/etc/g/key.json app"),
        // a secret that starts with `/` is not taken for a path
        (&["app", "--api-key=/9j/4AAQSkZJRg"], "app --api-key=REDACTED"),
        // flags without a value do not swallow the next flag
        (&["x", "--token", "--v=2"], "x --token --v=2"),
        (&["x", "--password"], "x --password"),
        // a process that rewrote its title into one string
        (&["nginx: worker --token=abc --password def"], "nginx: worker --token=REDACTED --password REDACTED"),
    ];

    #[test]
    fn real_world_arguments() {
        assert!(CASES.len() >= 50, "{} cases", CASES.len());
        let mut failures = Vec::new();
        for (args, expected) in CASES {
            let got = redact_argv(&argv(args));
            if got != *expected {
                failures.push(format!("{args:?}\n   got: {got}\n  want: {expected}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn hidden_lists_each_redacted_argument_as_shown() {
        let r = redact(&argv(&[
            "kube-apiserver",
            "--token=A",
            "--password",
            "B",
            "https://u:G@h/",
            "--v=2",
        ]));
        assert_eq!(
            r.hidden,
            [
                "--token=REDACTED",
                "--password REDACTED",
                "https://u:REDACTED@h/"
            ]
        );
        assert!(
            redact(&argv(&["kubelet", "--v=2", "/etc/k/key.pem"]))
                .hidden
                .is_empty()
        );
    }

    #[test]
    fn redacting_twice_changes_nothing() {
        for (args, expected) in CASES {
            if args.iter().any(|a| a.contains(' ')) {
                continue;
            }
            assert_eq!(redact_line(expected), *expected, "{args:?}");
        }
    }

    #[test]
    fn args_stay_a_list() {
        assert_eq!(
            redact_args(&argv(&["kubeadm", "join", "--token", "abc.def", "--v=5"])),
            ["kubeadm", "join", "--token", "REDACTED", "--v=5"]
        );
        assert_eq!(
            redact_args(&argv(&["nginx: worker --token=abc"])),
            ["nginx: worker --token=REDACTED"]
        );
    }

    #[test]
    fn names() {
        for secret in [
            "token",
            "--Bootstrap_Token",
            "DB_PASS",
            "-storepass",
            "x.password",
        ] {
            assert!(is_secret_flag(secret), "{secret}");
        }
        for plain in [
            "--token-auth-file",
            "enable-bootstrap-token-auth",
            "PWD",
            "--v",
            "port",
        ] {
            assert!(!is_secret_flag(plain), "{plain}");
        }
    }
}
