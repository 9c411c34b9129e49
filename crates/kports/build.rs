//! Build script: the git commit and its date for `kports --version`, or `unknown` when the
//! source is not a git checkout (a source tarball) or git is missing.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let date = git(&["log", "-1", "--format=%cs", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
    println!(
        "cargo:rustc-env=KPORTS_COMMIT={}{}",
        commit.as_deref().unwrap_or("unknown"),
        if commit.is_some() && dirty {
            "+changes"
        } else {
            ""
        }
    );
    println!(
        "cargo:rustc-env=KPORTS_COMMIT_DATE={}",
        date.as_deref().unwrap_or("unknown")
    );
    // Run again when HEAD moves: HEAD itself, the branch it names, and the packed refs.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) {
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        if let Some(common) = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from) {
            println!(
                "cargo:rerun-if-changed={}",
                common.join("packed-refs").display()
            );
            if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
                println!("cargo:rerun-if-changed={}", common.join(r).display());
            }
        }
        println!("cargo:rerun-if-changed={}", dir.join("index").display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
