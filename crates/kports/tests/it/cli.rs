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
fn usage_errors_exit_2_with_a_message() {
    for args in [
        &["listen", "--bogus"][..],
        &["listen", "--port", "70000"],
        &["listen", "--port", "9-1"],
        &["nosuch"],
        &["listen", "-o", "yaml"],
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
