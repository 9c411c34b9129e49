//! Chaos while kports reads (root): socket holders stopped and restarted while a census runs,
//! network namespaces deleted while `--all-netns` walks them, the ruleset flushed and loaded
//! again while `firewall check` reads it (every verdict is one some state of the ruleset gives,
//! or unknown with the run marked incomplete). kports finishes every run, and a
//! socket it attributes is attributed to the process that really held it: what vanished is
//! left out or `unknown`, never given to another process (nor to the kernel). And kports in a
//! PID namespace of its own, where the holder is out of sight: `unknown`, not `kernel`. Every
//! loop is bounded; only the processes and namespaces the test made are stopped or deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::support::{KPORTS, Ns};

/// The holders' name (a copy of the Python interpreter, as components are stood in for).
const HOLDER: &str = "kpchaos";
/// kports runs per test, while the chaos goes on.
const RUNS: usize = 8;

/// Every warning code a census may give (docs/schema.md); anything else is a failure.
const CENSUS_WARNINGS: &[&str] = &[
    "owners-incomplete",
    "owners-unreadable",
    "netns-unreadable",
    "netns-hidden",
    "sock-diag-unavailable",
    "malformed-proc-lines",
];

/// Runs kports `RUNS` times with `args` (through `prefix`, e.g. `ip netns exec NS`), and
/// returns every output.
fn runs(prefix: &[String], args: &[&str]) -> Vec<Output> {
    (0..RUNS)
        .map(|_| {
            let mut cmd = match prefix.split_first() {
                Some((first, rest)) => {
                    let mut c = Command::new(first);
                    c.args(rest).arg(KPORTS);
                    c
                }
                None => Command::new(KPORTS),
            };
            cmd.args(args).output().unwrap()
        })
        .collect()
}

/// Checks one `kports listen -o json` run: it finished (exit 0, a document, known warnings), and
/// every socket on `held`'s ports (in a namespace `ns_of` accepts) that has an owner is held by
/// one of the processes that held that port at some time, under the holder's name.
fn judge(
    out: &Output,
    held: &BTreeMap<u16, BTreeSet<u32>>,
    ns_of: impl Fn(&Value) -> bool,
) -> usize {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    for w in doc["warnings"].as_array().unwrap() {
        let code = w["code"].as_str().unwrap();
        assert!(CENSUS_WARNINGS.contains(&code), "{w}");
    }
    let mut attributed = 0;
    for s in doc["items"].as_array().unwrap() {
        let Some(pids) = s["local_port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .and_then(|p| held.get(&p))
        else {
            continue;
        };
        if !ns_of(&s["netns"]) {
            continue;
        }
        match s["owner"].as_str().unwrap() {
            "process" => {
                for p in s["processes"].as_array().unwrap() {
                    let pid = u32::try_from(p["pid"].as_u64().unwrap()).unwrap();
                    assert!(
                        pids.contains(&pid),
                        "a wrong owner: {s:#} (held by {pids:?})"
                    );
                    assert_eq!(p["name"], HOLDER, "{s:#}");
                }
                attributed += 1;
            }
            // Gone between the dump and the walk, or unreadable: not a guess.
            "unknown" | "none" => {}
            other => panic!("owner {other} for a socket a process held: {s:#}"),
        }
    }
    attributed
}

#[test]
fn holders_stopped_and_restarted_during_a_census_are_never_misattributed() {
    let mut ns = Ns::new();
    let mut held: BTreeMap<u16, BTreeSet<u32>> = BTreeMap::new();
    let mut current: Vec<(u16, u32)> = Vec::new();
    for i in 0..6u16 {
        let port = 47_200 + i;
        let (pid, _) = ns.spawn(HOLDER, &["--listen", &format!("tcp:127.0.0.1:{port}")]);
        held.entry(port).or_default().insert(pid);
        current.push((port, pid));
    }
    let prefix: Vec<String> = ["ip", "netns", "exec", ns.name.as_str()]
        .map(String::from)
        .to_vec();
    // The chaos: each round stops one holder and starts another on its port, 12 rounds. The
    // pids a port will have had are recorded before the census runs are judged.
    let outputs = thread::scope(|s| {
        let census = s.spawn(|| runs(&prefix, &["listen", "-o", "json"]));
        for round in 0..12 {
            let k = round % current.len();
            let (port, pid) = current[k];
            ns.stop(pid);
            let (new, _) = ns.spawn(HOLDER, &["--listen", &format!("tcp:127.0.0.1:{port}")]);
            held.entry(port).or_default().insert(new);
            current[k] = (port, new);
        }
        census.join().unwrap()
    });
    for out in &outputs {
        judge(out, &held, |_| true);
    }
    // Once the chaos is over, every holder is found again, each the one now holding its port.
    let after = runs(&prefix, &["listen", "-o", "json"]);
    let now: BTreeMap<u16, BTreeSet<u32>> = current
        .iter()
        .map(|&(p, pid)| (p, BTreeSet::from([pid])))
        .collect();
    assert_eq!(judge(&after[0], &now, |_| true), current.len());
}

#[test]
fn namespaces_deleted_during_an_all_netns_walk_are_skipped_never_misread() {
    let mut spaces: Vec<Ns> = Vec::new();
    let mut held: BTreeMap<u16, BTreeSet<u32>> = BTreeMap::new();
    let mut names: BTreeMap<String, u16> = BTreeMap::new();
    for i in 0..10u16 {
        let mut ns = Ns::new();
        let port = 47_300 + i;
        let (pid, _) = ns.spawn(HOLDER, &["--listen", &format!("tcp:127.0.0.1:{port}")]);
        held.entry(port).or_default().insert(pid);
        names.insert(ns.name.clone(), port);
        spaces.push(ns);
    }
    // A socket must be reported in the namespace that holds its port, or not at all.
    let in_its_namespace = |netns: &Value, port: u16| {
        netns["name"]
            .as_str()
            .is_some_and(|n| names.get(n) == Some(&port))
    };
    let outputs = thread::scope(|s| {
        let census = s.spawn(|| runs(&[], &["listen", "--all-netns", "-o", "json"]));
        // The chaos: the namespaces go one by one, holders and all, while the walks run.
        while spaces.len() > 2 {
            drop(spaces.pop());
            thread::sleep(Duration::from_millis(20));
        }
        census.join().unwrap()
    });
    for out in &outputs {
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for s in doc["items"].as_array().into_iter().flatten() {
            if let Some(port) = s["local_port"].as_u64().and_then(|p| u16::try_from(p).ok()) {
                if held.contains_key(&port)
                    && s["netns"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("kpt-"))
                {
                    assert!(in_its_namespace(&s["netns"], port), "{s:#}");
                }
            }
        }
        judge(out, &held, |n| {
            n["name"].as_str().is_some_and(|n| names.contains_key(n))
        });
    }
    // The two namespaces left are seen whole.
    let after = runs(&[], &["listen", "--all-netns", "-o", "json"]);
    let left: BTreeSet<&str> = spaces.iter().map(|n| n.name.as_str()).collect();
    let seen = judge(&after[0], &held, |n| {
        n["name"].as_str().is_some_and(|n| left.contains(n))
    });
    assert_eq!(seen, 2);
}

#[test]
fn in_a_pid_namespace_of_its_own_a_holder_outside_is_unknown_not_the_kernel() {
    let mut ns = Ns::new();
    let (pid, _) = ns.spawn(HOLDER, &["--listen", "tcp:127.0.0.1:47400"]);
    let held = BTreeMap::from([(47_400u16, BTreeSet::from([pid]))]);
    // kports in a PID namespace (and /proc) of its own, as in a container without hostPID:
    // the holder is outside, out of its sight.
    let prefix: Vec<String> = [
        "ip",
        "netns",
        "exec",
        ns.name.as_str(),
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
    ]
    .map(String::from)
    .to_vec();
    let out = runs(&prefix[..], &["listen", "-o", "json"]).remove(0);
    assert_eq!(judge(&out, &held, |_| true), 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &doc["items"][0];
    assert_eq!(s["local_port"], 47_400);
    assert_eq!(s["owner"], "unknown", "{doc:#}");
    assert!(
        doc["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("PID namespace of its own"),
        "{doc:#}"
    );
    // In the host's PID namespace the same socket is the holder's.
    let prefix: Vec<String> = ["ip", "netns", "exec", ns.name.as_str()]
        .map(String::from)
        .to_vec();
    let out = runs(&prefix, &["listen", "-o", "json"]).remove(0);
    assert_eq!(judge(&out, &held, |_| true), 1);
}

#[test]
fn a_ruleset_flushed_and_reloaded_while_it_is_read_gives_a_verdict_of_one_state() {
    let ns = Ns::new();
    let rules = ns.dir().join("rules.nft");
    // kports reads the native table with nft and the iptables-nft one with iptables-nft-save:
    // two reads, each of which the chaos below can fall between.
    std::fs::write(
        &rules,
        "table inet chaos {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport 10250 drop\n  }\n}\n",
    )
    .unwrap();
    let load = || {
        let out = ns.exec("nft", &["-f", rules.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = ns.exec(
            "iptables-nft",
            &["-A", "INPUT", "-p", "tcp", "--dport", "10256", "-j", "DROP"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    load();
    let prefix: Vec<String> = ["ip", "netns", "exec", ns.name.as_str()]
        .map(String::from)
        .to_vec();
    let args = [
        "firewall",
        "check",
        "--role",
        "worker",
        "--sources",
        "198.51.100.0/24",
        "--control-plane",
        "198.51.100.10",
        "-o",
        "json",
    ];
    let outputs = thread::scope(|s| {
        let reads = s.spawn(|| runs(&prefix, &args));
        // The chaos: flush everything and load it again, 20 times.
        for _ in 0..20 {
            assert!(ns.exec("nft", &["flush", "ruleset"]).status.success());
            load();
        }
        reads.join().unwrap()
    });
    for out in &outputs {
        let err = String::from_utf8_lossy(&out.stderr);
        // 0: read while flushed; 1: a drop seen; 3: a table vanished under its reader.
        let code = out.status.code().unwrap();
        assert!([0, 1, 3].contains(&code), "exit {code}: {err}");
        let doc: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
        for w in doc["warnings"].as_array().unwrap() {
            assert_ne!(w["code"], "firewall-parse", "{w}");
        }
        for r in doc["items"].as_array().unwrap() {
            let port = r["port"]["lo"].as_u64().unwrap();
            for seg in r["segments"].as_array().unwrap() {
                let j = &seg["judgement"];
                match j["verdict"].as_str().unwrap() {
                    "accept" => {}
                    // A table that vanished between listing and reading: unknown, and the
                    // run says it is incomplete (exit 3, or 1 when a drop was seen).
                    "unknown" => assert!(
                        doc["warnings"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|w| w["code"] == "incomplete"),
                        "{j}"
                    ),
                    // A drop is one of the two rules, on its own port, in its own table.
                    "drop" => {
                        let by = &j["by"];
                        match port {
                            10250 => {
                                assert_eq!(by["table"], "inet chaos", "{j}");
                                assert_eq!(by["text"], "tcp dport 10250 drop", "{j}");
                            }
                            10256 => assert_eq!(by["table"], "ip filter", "{j}"),
                            _ => panic!("a drop on a port no rule drops: {r:#}"),
                        }
                    }
                    other => panic!("verdict {other} no state of the ruleset gives: {r:#}"),
                }
            }
        }
    }
    // Left loaded, both drops are seen.
    let out = runs(&prefix, &args).remove(0);
    assert_eq!(out.status.code(), Some(1));
}
