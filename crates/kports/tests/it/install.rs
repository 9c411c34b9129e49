//! What an installed kports brings besides itself, run as a user meets it: the man pages that
//! `kports man` writes render without a warning, and bash, completing with the script of
//! `kports completions bash`, offers every subcommand that has a page. Needs bash and groff
//! (scripts/test installs groff-base); no root, no network.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::kports;

/// A scratch directory removed when the test ends, passed or failed.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kports-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the man pages into `dir` and returns them with the command each one documents, read
/// from its synopsis (`\fBkports firewall check\fR` gives `["firewall", "check"]`).
fn man_pages(dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let out = kports(&["man", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<PathBuf> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    let on_disk: BTreeSet<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), on_disk);
    listed
        .into_iter()
        .map(|page| {
            let text = std::fs::read_to_string(&page).unwrap();
            let synopsis = text.split_once(".SH SYNOPSIS\n\\fB").unwrap().1;
            let words = synopsis.split_once("\\fR").unwrap().0;
            let mut words = words.split(' ').map(str::to_string);
            assert_eq!(
                words.next().as_deref(),
                Some("kports"),
                "{}",
                page.display()
            );
            (page, words.collect())
        })
        .collect()
}

#[test]
fn man_pages_render_without_warnings() {
    let dir = Scratch::new("man");
    let pages = man_pages(&dir.0);
    assert!(
        pages
            .iter()
            .any(|(_, cmd)| cmd == &["lab", "fault", "drop"])
    );
    for (page, _) in &pages {
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z", "-Tutf8"])
            .arg(page)
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("groff (Debian package groff-base) is needed to check the man pages");
        assert!(out.status.success(), "{}", page.display());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "groff warns about {}",
            page.display()
        );
    }
}

/// What bash offers after `kports WORDS `, as a user pressing TAB twice sees it.
fn bash_offers(script: &Path, words: &[String]) -> BTreeSet<String> {
    let line = words.join(" ");
    let cmd = format!(
        "source {script}\n\
         COMP_WORDS=(kports {line} '')\n\
         COMP_CWORD=${{#COMP_WORDS[@]}}; COMP_CWORD=$((COMP_CWORD - 1))\n\
         COMP_LINE='kports {line} '; COMP_POINT=${{#COMP_LINE}}\n\
         _kports kports '' \"${{COMP_WORDS[COMP_CWORD - 1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_every_command_that_has_a_page() {
    let dir = Scratch::new("completions");
    let out = kports(&["completions", "bash"]);
    assert!(out.status.success());
    let script = dir.0.join("kports.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let commands: Vec<Vec<String>> = man_pages(&dir.0.join("man"))
        .into_iter()
        .map(|(_, cmd)| cmd)
        .collect();
    let mut checked = 0;
    for parent in &commands {
        let children: BTreeSet<String> = commands
            .iter()
            .filter(|c| c.len() == parent.len() + 1 && c.starts_with(parent))
            .map(|c| c[parent.len()].clone())
            .collect();
        if children.is_empty() {
            continue;
        }
        let offered = bash_offers(&script, parent);
        assert!(
            children.is_subset(&offered),
            "after `kports {}` bash offers {offered:?}, not all of {children:?}",
            parent.join(" ")
        );
        checked += 1;
    }
    // kports, firewall, lab and lab fault have subcommands.
    assert!(checked >= 4, "only {checked} commands with subcommands");
    // Flags are completed too.
    assert!(bash_offers(&script, &["listen".to_string()]).contains("--all-netns"));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = kports(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'tcsh'"));

    let dir = Scratch::new("man-blocked");
    let file = dir.0.join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = kports(&["man", file.join("man1").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("kports: cannot create "), "{err}");
}
