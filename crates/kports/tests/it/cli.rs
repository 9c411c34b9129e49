//! The command line itself: help, usage errors and output formats, without root.

use std::process::Command;

use crate::support::KPORTS;

fn kports(args: &[&str]) -> std::process::Output {
    Command::new(KPORTS)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn help_teaches_the_commands() {
    let out = kports(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["node", "listen", "conns"] {
        assert!(help.contains(cmd), "{help}");
    }
    let listen = String::from_utf8_lossy(&kports(&["listen", "--help"]).stdout).into_owned();
    assert!(
        listen.contains("--all-netns")
            && listen.contains("--component")
            && listen.contains("kube-controller-manager"),
        "{listen}"
    );
}

#[test]
fn version_names_the_commit_and_help_the_exit_statuses() {
    let out = kports(&["--version"]);
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout).into_owned();
    let want = format!("kports {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(v.starts_with(&want), "{v}");
    // A 12-digit commit and a YYYY-MM-DD date, or `unknown` outside a git checkout.
    let inner = v.trim().trim_start_matches(&want).trim_end_matches(')');
    let (commit, date) = inner.split_once(", ").unwrap_or_else(|| panic!("{v}"));
    assert!(commit == "unknown" || commit.len() >= 12, "{v}");
    assert!(date == "unknown" || date.len() == 10, "{v}");
    assert_eq!(
        String::from_utf8_lossy(&kports(&["-V"]).stdout).trim(),
        format!("kports {}", env!("CARGO_PKG_VERSION"))
    );
    for cmd in [
        &["--help"][..],
        &["listen", "--help"],
        &["firewall", "check", "--help"],
        &["lab", "exec", "--help"],
    ] {
        let help = String::from_utf8_lossy(&kports(cmd).stdout).replace('\n', " ");
        assert!(
            help.contains("Exit status: 0 done; 1 done and something is wrong")
                && help.contains("127 when it does not exist"),
            "{cmd:?}: {help}"
        );
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    for args in [
        &["listen", "--bogus"][..],
        &["listen", "--port", "70000"],
        &["listen", "--port", "9-1"],
        &["nosuch"],
        &["listen", "-o", "yaml"],
        &["listen", "--port", "0"],
        &["conns", "--component", "nosuch"],
        &["node", "--kind", "nonsense"],
        &["explain", "0"],
        &["probe", "127.0.0.1", "--ports", "0"],
        &["check", "--fail-on", "sometimes"],
        &["firewall", "check", "--role", "worker", "--iif", "nosuchif"],
        &["lab", "exec", "w1"],
    ] {
        let out = kports(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn no_colour_off_a_terminal() {
    let out = Command::new(KPORTS)
        .args(["node"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!out.stdout.contains(&0x1b), "escape codes in piped output");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hostname: "));
}

#[test]
fn json_is_one_versioned_document() {
    for cmd in ["node", "listen", "conns"] {
        let out = kports(&[cmd, "-o", "json"]);
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["schema"], kports_core::SCHEMA_VERSION, "{cmd}");
        assert_eq!(v["kind"], cmd);
        assert!(
            v["hostname"].is_string() && v["items"].is_array() && v["warnings"].is_array(),
            "{cmd}: {v}"
        );
    }
}
