//! Starting kports on a node as a process this one keeps hold of: the preflight's holds live
//! while the peers dial, and the overlay check reads each node's counters around another
//! node's echoes. The command line comes from a [`via`](crate::via) template (`--via 'ssh
//! root@{address}'`, split without a shell), or, on `kports lab`, from `kports lab exec NODE --`
//! with this executable; kports's own command line follows, with `kports` from the node's PATH
//! unless another path is given.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use crate::via::{Target, Template, TemplateError};

/// How to reach the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// A `--via` template, and the kports to run there.
    Via { template: Template, kports: String },
    /// A `kports lab` node: this executable, run through `kports lab exec NODE --`.
    Lab { exe: PathBuf },
}

impl Launch {
    /// Reads a `--via` template; `kports` is `--remote-kports` (default `kports`).
    pub fn via(template: &str, kports: Option<&str>) -> Result<Launch, TemplateError> {
        Ok(Launch::Via {
            template: Template::parse(template)?,
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
    pub fn argv(&self, name: &str, address: IpAddr, args: &[String]) -> Vec<String> {
        let target = Target {
            name: name.to_string(),
            address,
        };
        let (template, kports) = match self {
            Launch::Via { template, kports } => (template.clone(), kports.clone()),
            Launch::Lab { exe } => {
                let exe = exe.display().to_string();
                (Template::lab(&exe), exe)
            }
        };
        let mut command = vec![kports];
        command.extend(args.iter().cloned());
        template.argv(&target, &command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_fills_each_word_without_a_shell() {
        let l = Launch::via("ssh -o BatchMode=yes root@{address}", None).unwrap();
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
        );
        let l = Launch::via("ip netns exec {name}", Some("/opt/kports")).unwrap();
        let a = l.argv("w1", IpAddr::from([192, 0, 2, 21]), &[]);
        assert_eq!(a, ["ip", "netns", "exec", "w1", "/opt/kports"]);
        assert!(Launch::via("ssh {host}", None).is_err());
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
        );
    }
}
