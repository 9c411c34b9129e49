//! `kports man DIR`: a man page for kports and for every subcommand at any depth
//! (`kports-listen.1`, `kports-firewall-check.1`, ...), rendered from the clap definitions that
//! parse the command line, so a page cannot describe a flag that does not exist. The packaging
//! script calls it; new subcommands get their page without any change here.

use std::io::Write;

use crate::cli::ManArgs;
use crate::cmd::Outcome;
use crate::output::Out;
use anyhow::{Context, Result};
use clap_mangen::roff::{Roff, roman};

pub fn run(args: &ManArgs, out: &mut Out<impl Write>) -> Result<Outcome> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    for page in pages()? {
        let path = args.dir.join(&page.file);
        std::fs::write(&path, &page.roff)
            .with_context(|| format!("cannot write {}", path.display()))?;
        out.line(&path.display().to_string())?;
    }
    Ok(Outcome::default())
}

/// One rendered man page.
#[derive(Debug)]
pub struct Page {
    /// `kports-firewall-check.1`
    pub file: String,
    /// The page in roff, what `man` reads.
    pub roff: Vec<u8>,
}

/// Every page, the top-level `kports.1` first, then each subcommand's, depth first.
pub fn pages() -> Result<Vec<Page>> {
    // Built, a subcommand knows its full name (`kports-firewall-check`); clap's own `help`
    // subcommand is not a command of kports and gets no page.
    let mut root = crate::cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = Vec::new();
    add(&root, &mut pages)?;
    Ok(pages)
}

fn add(cmd: &clap::Command, pages: &mut Vec<Page>) -> Result<()> {
    // The examples get a section of their own, set line by line as `--help` shows them
    // (clap_mangen would fill them into one paragraph under "EXTRA").
    let after = cmd.get_after_long_help().map(|s| s.to_string());
    let mut page = cmd.clone().after_long_help(None::<&str>);
    // `kports --help` opens with "kports: ..."; the NAME line names the command already.
    let about = cmd.get_about().map(|s| s.to_string()).unwrap_or_default();
    if let Some(rest) = about.strip_prefix(&format!("{}: ", cmd.get_name())) {
        page = page.about(rest.to_string());
    }
    let man = clap_mangen::Man::new(page)
        .source(format!("kports {}", env!("CARGO_PKG_VERSION")))
        .manual("kports manual");
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    if let Some(text) = after {
        examples(&text).to_writer(&mut roff)?;
    }
    pages.push(Page {
        file: man.get_filename(),
        roff,
    });
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        add(sub, pages)?;
    }
    Ok(())
}

/// `after_long_help` as an EXAMPLES section, each line kept as written.
fn examples(text: &str) -> Roff {
    let (heading, body) = match text.strip_prefix("Examples:\n") {
        Some(body) => ("EXAMPLES", body),
        None => ("NOTES", text),
    };
    let mut roff = Roff::new();
    roff.control("SH", [heading]).control("nf", []);
    for line in body.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every command a user can type, as the words after `kports` (`["firewall", "check"]`),
    /// read from the definitions as they are declared (before clap adds its `help`).
    pub(crate) fn command_paths() -> Vec<Vec<String>> {
        fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let mut path = prefix.to_vec();
                path.push(sub.get_name().to_string());
                out.push(path.clone());
                walk(sub, &path, out);
            }
        }
        let mut out = Vec::new();
        walk(&crate::cli::command(), &[], &mut out);
        out
    }

    fn page_text(file: &str) -> String {
        let pages = pages().unwrap();
        let page = pages.iter().find(|p| p.file == file).unwrap();
        String::from_utf8(page.roff.clone()).unwrap()
    }

    #[test]
    fn every_command_has_a_page_and_no_other() {
        let files: BTreeSet<String> = pages().unwrap().into_iter().map(|p| p.file).collect();
        let expected: BTreeSet<String> = std::iter::once("kports.1".to_string())
            .chain(
                command_paths()
                    .iter()
                    .map(|p| format!("kports-{}.1", p.join("-"))),
            )
            .collect();
        assert_eq!(files, expected);
        // Nested commands too, so that a walk stopping at the first level cannot pass.
        for f in [
            "kports-listen.1",
            "kports-firewall-check.1",
            "kports-lab-up.1",
            "kports-lab-fault-drop.1",
            "kports-completions.1",
        ] {
            assert!(files.contains(f), "no {f}");
        }
        assert!(!files.contains("kports-help.1"));
    }

    #[test]
    fn every_page_names_its_command_and_documents_its_flags() {
        let root = crate::cli::command();
        for path in command_paths() {
            let mut cmd = &root;
            for word in &path {
                cmd = cmd.find_subcommand(word).unwrap();
            }
            let name = format!("kports-{}", path.join("-"));
            let text = page_text(&format!("{name}.1"));
            assert!(
                text.contains(&format!("\n.TH {name} 1 ")),
                "{name}: no title"
            );
            assert!(
                text.contains(&format!("\\fBkports {}\\fR", path.join(" "))),
                "{name}: the synopsis does not show `kports {}`",
                path.join(" ")
            );
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(text.contains(&flag), "{name}: --{long} is not documented");
                }
            }
        }
    }

    #[test]
    fn the_name_line_says_the_name_once() {
        let text = page_text("kports.1");
        let name = text.split_once(".SH NAME\n").unwrap().1;
        assert!(name.starts_with("kports \\- every port "), "{name}");
    }

    #[test]
    fn examples_keep_their_lines() {
        let text = page_text("kports-listen.1");
        let examples = text.split_once(".SH EXAMPLES\n.nf\n").unwrap().1;
        assert!(
            examples.starts_with(
                "  kports listen                          every listener, its owner and component\n"
            ),
            "{examples}"
        );
        assert!(examples.trim_end().ends_with("\n.fi"), "{examples}");
        assert!(!text.contains(".SH EXTRA"));
    }
}
