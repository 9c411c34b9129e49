//! `kports man DIR`: a man page for kports and for every subcommand at any depth
//! (`kports-listen.1`, `kports-firewall-check.1`, ...), rendered from the clap definitions that
//! parse the command line, so a page cannot describe a flag that does not exist. The packaging
//! script calls it; new subcommands get their page without any change here.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_mangen::roff::{Roff, roman};
use kports_core::Warning;

use crate::cli::Cli;
use crate::output::Out;

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created when missing).
    pub dir: PathBuf,
}

pub fn run(args: &ManArgs, out: &mut Out) -> Result<Vec<Warning>> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    for page in pages()? {
        let path = args.dir.join(&page.file);
        std::fs::write(&path, &page.roff)
            .with_context(|| format!("cannot write {}", path.display()))?;
        out.line(&path.display().to_string())?;
    }
    Ok(Vec::new())
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
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = Vec::new();
    add(&root, &mut pages)?;
    Ok(pages)
}

fn add(cmd: &clap::Command, pages: &mut Vec<Page>) -> Result<()> {
    // The examples get a section of their own, set line by line as `--help` shows them
    // (clap_mangen would fill them into one paragraph under "EXTRA").
    let after = cmd.get_after_long_help().map(|s| s.to_string());
    let man = clap_mangen::Man::new(cmd.clone().after_long_help(None::<&str>))
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
