//! How kports runs a command on a node: through the user's command prefix (`--via 'ssh
//! root@{address}'`), or, on `kports lab`, through `kports lab exec NODE --`.
//!
//! The prefix is split on white space and `{name}` and `{address}` are replaced in each word;
//! no shell reads it, so a node's name cannot inject a command on this machine. The kports
//! command line follows the prefix, with `kports` from the node's PATH unless another path is
//! given.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

/// A `--via` template kports refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("--via is empty: give a command prefix such as 'ssh root@{{address}}'")]
    Empty,
    #[error("--via `{0}`: unknown placeholder `{1}`; use {{name}} and {{address}}")]
    Placeholder(String, String),
}

/// How to reach the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// The words of a `--via` template, and the kports to run there.
    Via { words: Vec<String>, kports: String },
    /// A `kports lab` node: this executable, run through `kports lab exec NODE --`.
    Lab { exe: PathBuf },
}

impl Launch {
    /// Reads a `--via` template; `kports` is `--remote-kports` (default `kports`).
    pub fn via(template: &str, kports: Option<&str>) -> Result<Launch, LaunchError> {
        let words: Vec<String> = template.split_whitespace().map(str::to_string).collect();
        if words.is_empty() {
            return Err(LaunchError::Empty);
        }
        for w in &words {
            let mut rest = w.as_str();
            while let Some(open) = rest.find('{') {
                let tail = &rest[open..];
                let end = tail.find('}').map_or(tail.len(), |e| e + 1);
                let ph = &tail[..end];
                if ph != "{name}" && ph != "{address}" {
                    return Err(LaunchError::Placeholder(template.into(), ph.into()));
                }
                rest = &tail[end..];
            }
        }
        Ok(Launch::Via {
            words,
            kports: kports.unwrap_or("kports").to_string(),
        })
    }

    /// The command that runs `kports ARGS` on the node `name` (at `address`).
    pub fn command(&self, name: &str, address: IpAddr, args: &[String]) -> Command {
        let argv = self.argv(name, address, args);
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    }

    /// The whole command line, program first.
    pub fn argv(&self, name: &str, address: IpAddr, args: &[String]) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        match self {
            Launch::Via { words, kports } => {
                let addr = address.to_string();
                v.extend(
                    words
                        .iter()
                        .map(|w| w.replace("{name}", name).replace("{address}", &addr).into()),
                );
                v.push(kports.into());
            }
            Launch::Lab { exe } => {
                v.push(exe.into());
                v.extend(["lab", "exec", name, "--"].map(OsString::from));
                v.push(exe.into());
            }
        }
        v.extend(args.iter().map(OsString::from));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_fills_each_word_without_a_shell() {
        let l = Launch::via("ssh -o BatchMode=yes root@{address}", None).unwrap_or_else(|e| {
            panic!("{e}");
        });
        let a = l.argv(
            "w1; rm -rf /",
            IpAddr::from([192, 0, 2, 21]),
            &["probe".into()],
        );
        assert_eq!(
            a,
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "root@192.0.2.21",
                "kports",
                "probe"
            ]
            .map(OsString::from)
        );
        let l = Launch::via("ip netns exec {name}", Some("/opt/kports")).unwrap_or_else(|e| {
            panic!("{e}");
        });
        let a = l.argv("w1", IpAddr::from([192, 0, 2, 21]), &[]);
        assert_eq!(
            a,
            ["ip", "netns", "exec", "w1", "/opt/kports"].map(OsString::from)
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(Launch::via("  ", None), Err(LaunchError::Empty));
        assert_eq!(
            Launch::via("ssh {host}", None),
            Err(LaunchError::Placeholder(
                "ssh {host}".into(),
                "{host}".into()
            ))
        );
        assert!(Launch::via("ssh root@{address", None).is_err());
    }

    #[test]
    fn lab_runs_this_kports_in_the_node() {
        let l = Launch::Lab {
            exe: PathBuf::from("/usr/bin/kports"),
        };
        let a = l.argv("cp1", IpAddr::from([192, 0, 2, 11]), &["preflight".into()]);
        assert_eq!(
            a,
            [
                "/usr/bin/kports",
                "lab",
                "exec",
                "cp1",
                "--",
                "/usr/bin/kports",
                "preflight"
            ]
            .map(OsString::from)
        );
    }
}
