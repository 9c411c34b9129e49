//! Running a command on every node: `--via 'ssh root@{address}'` followed by the command line to
//! run there.
//!
//! The template is split into words once, without a shell (single and double quotes group words;
//! nothing is expanded), and `{name}` and `{address}` are filled in per node inside each word, so
//! a node's name can never become shell syntax. Every node's command runs through kports-linux's
//! one command runner, in parallel on at most `concurrency` threads, each stopped at its own
//! timeout, its standard output capped; each node's outcome is its output or the reason there
//! is none.

use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The most output one node may send back: a node's report with its probes is well under it.
pub const MAX_OUTPUT: u64 = 64 << 20;

/// A template kports refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "--via is empty: give the command that runs kports on a node, e.g. 'ssh root@{{address}}'"
    )]
    Empty,
    #[error("--via: unterminated {0} quote")]
    Unterminated(char),
    #[error("--via: `{{{0}}}` is not a placeholder kports fills in; use {{name}} or {{address}}")]
    Unknown(String),
    #[error("--via: `{{` without a closing `}}`")]
    Unclosed,
}

/// One piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Name,
    Address,
}

/// A command prefix with `{name}` and `{address}` placeholders, split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    words: Vec<Vec<Piece>>,
}

/// A node to run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub address: IpAddr,
}

impl Template {
    /// Splits `text` into words as a shell would split plain words and quotes (no expansion,
    /// no escapes other than a backslash outside single quotes), then finds the placeholders.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut words = Vec::new();
        for raw in split_words(text)? {
            words.push(placeholders(&raw)?);
        }
        if words.is_empty() {
            return Err(TemplateError::Empty);
        }
        Ok(Template { words })
    }

    /// Runs in a `kports lab` node's namespace: `KPORTS lab exec {name} --`, with `kports` the
    /// binary at `kports` (this one), as `kports lab exec` does it.
    pub fn lab(kports: &str) -> Template {
        Template::literal_then_name(
            &[kports.into(), "lab".into(), "exec".into()],
            &["--".into()],
        )
    }

    /// Literal words, then the node's name as a word of its own, then more literal words.
    pub fn literal_then_name(before: &[String], after: &[String]) -> Template {
        let lit = |w: &String| vec![Piece::Text(w.clone())];
        let mut words: Vec<Vec<Piece>> = before.iter().map(lit).collect();
        words.push(vec![Piece::Name]);
        words.extend(after.iter().map(lit));
        Template { words }
    }

    /// The argv for `target`, followed by `command`.
    pub fn argv(&self, target: &Target, command: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self
            .words
            .iter()
            .map(|w| {
                let mut s = String::new();
                for p in w {
                    match p {
                        Piece::Text(t) => s.push_str(t),
                        Piece::Name => s.push_str(&target.name),
                        Piece::Address => s.push_str(&target.address.to_string()),
                    }
                }
                s
            })
            .collect();
        out.extend(command.iter().cloned());
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.words.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            for p in w {
                match p {
                    Piece::Text(t) => f.write_str(t)?,
                    Piece::Name => f.write_str("{name}")?,
                    Piece::Address => f.write_str("{address}")?,
                }
            }
        }
        Ok(())
    }
}

fn split_words(text: &str) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(TemplateError::Unterminated('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err(TemplateError::Unterminated('"')),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(TemplateError::Unterminated('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn placeholders(word: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = word;
    while let Some(i) = rest.find('{') {
        if i > 0 {
            out.push(Piece::Text(rest[..i].to_string()));
        }
        let after = &rest[i + 1..];
        let end = after.find('}').ok_or(TemplateError::Unclosed)?;
        out.push(match &after[..end] {
            "name" => Piece::Name,
            "address" => Piece::Address,
            other => return Err(TemplateError::Unknown(other.to_string())),
        });
        rest = &after[end + 1..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

/// How to run the nodes' commands.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nodes at a time.
    pub concurrency: usize,
    /// Per node, from start to exit.
    pub timeout: Duration,
}

/// Runs `argv` of every job (a node's name and its full command line), at most
/// `limits.concurrency` at a time, each with `stdin` on its standard input. Returns each node's
/// standard output, or why there is none, in the order of `jobs`.
pub fn run_all(
    jobs: &[(String, Vec<String>)],
    stdin: Option<&str>,
    limits: Limits,
) -> Vec<(String, Result<String, String>)> {
    let results: Mutex<Vec<Option<Result<String, String>>>> =
        Mutex::new(jobs.iter().map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let workers = limits.concurrency.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, argv)) = jobs.get(i) else {
                        break;
                    };
                    let r = run_one(argv, stdin, limits.timeout);
                    if let Ok(mut v) = results.lock() {
                        v[i] = Some(r);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    jobs.iter()
        .zip(results)
        .map(|((name, _), r)| {
            (
                name.clone(),
                r.unwrap_or_else(|| Err("not run (a bug in kports)".into())),
            )
        })
        .collect()
}

fn run_one(argv: &[String], stdin: Option<&str>, timeout: Duration) -> Result<String, String> {
    let Some((cmd, args)) = argv.split_first() else {
        return Err("an empty command line".into());
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kports_linux::runner::run_capped(cmd, &args, stdin, timeout, MAX_OUTPUT)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            name: "w1".into(),
            address: "192.0.2.21".parse().unwrap(),
        }
    }

    #[test]
    fn placeholders_fill_in_inside_words_and_quotes_group() {
        let t = Template::parse(
            r#"kubectl debug node/{name} -it --image='busybox:1 x' "--label=at {address}""#,
        )
        .unwrap();
        let argv = t.argv(&target(), &["kports".into(), "report".into()]);
        assert_eq!(
            argv,
            [
                "kubectl",
                "debug",
                "node/w1",
                "-it",
                "--image=busybox:1 x",
                "--label=at 192.0.2.21",
                "kports",
                "report"
            ]
        );
        assert_eq!(
            t.to_string(),
            "kubectl debug node/{name} -it --image=busybox:1 x --label=at {address}"
        );
    }

    #[test]
    fn a_name_is_never_shell_syntax() {
        let t = Template::parse("ssh root@{address} -- echo {name}").unwrap();
        let evil = Target {
            name: "w1; rm -rf /".into(),
            address: "192.0.2.21".parse().unwrap(),
        };
        let argv = t.argv(&evil, &[]);
        assert_eq!(argv.last().map(String::as_str), Some("w1; rm -rf /"));
        assert_eq!(argv.len(), 5);
    }

    #[test]
    fn bad_templates_say_why() {
        assert_eq!(Template::parse("  "), Err(TemplateError::Empty));
        assert_eq!(
            Template::parse("ssh 'root@{address}"),
            Err(TemplateError::Unterminated('\''))
        );
        assert_eq!(
            Template::parse("ssh {host}"),
            Err(TemplateError::Unknown("host".into()))
        );
        assert_eq!(Template::parse("ssh {name"), Err(TemplateError::Unclosed));
    }

    #[test]
    fn every_node_gets_its_outcome_in_order_bounded_by_its_timeout() {
        let jobs: Vec<(String, Vec<String>)> = vec![
            ("a".into(), vec!["cat".into()]),
            ("b".into(), vec!["sh".into(), "-c".into(), "exit 3".into()]),
            ("c".into(), vec!["sleep".into(), "30".into()]),
            ("d".into(), vec!["/nonexistent/kports".into()]),
            ("e".into(), vec!["echo".into(), "e".into()]),
        ];
        let out = run_all(
            &jobs,
            Some("hello"),
            Limits {
                concurrency: 2,
                timeout: Duration::from_millis(500),
            },
        );
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        assert_eq!(out[0].1, Ok("hello".into()));
        assert!(
            out[1]
                .1
                .as_ref()
                .is_err_and(|e| e.contains("exit status: 3")),
            "{:?}",
            out[1]
        );
        assert!(
            out[2]
                .1
                .as_ref()
                .is_err_and(|e| e.contains("did not finish")),
            "{:?}",
            out[2]
        );
        assert!(
            out[3]
                .1
                .as_ref()
                .is_err_and(|e| e.contains("not installed")),
            "{:?}",
            out[3]
        );
        assert_eq!(out[4].1, Ok("e\n".into()));
    }
}
