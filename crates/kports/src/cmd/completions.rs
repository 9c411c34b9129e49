//! `kports completions SHELL`: a completion script generated from the clap definitions that
//! parse the command line, so it offers every subcommand and flag there is, and no other.

use anyhow::{Context, Result};
use clap_complete::shells;
use std::io::Write;

use crate::cli::{CompletionsArgs, Shell};
use crate::cmd::Outcome;
use crate::output::Out;

pub fn run(args: &CompletionsArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    let script = String::from_utf8(script(args.shell)).context("completion script is not UTF-8")?;
    out.generated(script.trim_end())?;
    Ok(Outcome::default())
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    let cmd = &mut crate::cli::command();
    match shell {
        Shell::Bash => clap_complete::generate(shells::Bash, cmd, "kports", &mut buf),
        Shell::Zsh => clap_complete::generate(shells::Zsh, cmd, "kports", &mut buf),
        Shell::Fish => clap_complete::generate(shells::Fish, cmd, "kports", &mut buf),
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::man::tests::command_paths;

    fn text(shell: Shell) -> String {
        String::from_utf8(script(shell)).unwrap()
    }

    /// Each generator names a command in its own way; these are the places where it offers
    /// the command after the words before it.
    #[test]
    fn every_shell_offers_every_command() {
        let (bash, zsh, fish) = (text(Shell::Bash), text(Shell::Zsh), text(Shell::Fish));
        let paths = command_paths();
        assert!(paths.iter().any(|p| p == &["lab", "fault", "drop"]));
        for path in paths {
            let joined = path.join("__subcmd__");
            assert!(
                bash.contains(&format!("cmd=\"kports__subcmd__{joined}\"")),
                "bash: {path:?}"
            );
            assert!(
                zsh.contains(&format!("\n_kports__subcmd__{joined}_commands() {{")),
                "zsh: {path:?}"
            );
            let leaf = format!("-a \"{}\"", path[path.len() - 1]);
            let under = |first: &str| {
                format!("complete -c kports -n \"__fish_kports_using_subcommand {first};")
            };
            let offered = fish.lines().any(|l| {
                l.contains(&leaf)
                    && match path.as_slice() {
                        [_] => {
                            l.starts_with("complete -c kports -n \"__fish_kports_needs_command\"")
                        }
                        [first, _] => l.starts_with(&under(first)),
                        [first, .., parent, _] => {
                            l.starts_with(&under(first))
                                && l.contains(&format!("__fish_seen_subcommand_from {parent}\""))
                        }
                        [] => false,
                    }
            });
            assert!(offered, "fish: {path:?}");
        }
    }

    #[test]
    fn every_script_registers_itself_for_kports() {
        use clap::ValueEnum;
        for shell in Shell::value_variants() {
            let t = text(*shell);
            let registers = match shell {
                Shell::Bash => "\n    complete -F _kports ",
                Shell::Zsh => "#compdef kports\n",
                Shell::Fish => "\ncomplete -c kports ",
            };
            assert!(t.contains(registers), "{shell:?}");
            assert!(t.contains("all-netns"), "{shell:?}: no flags");
        }
    }
}
