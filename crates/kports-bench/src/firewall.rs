//! The firewall benchmark: rulesets of N filter rules, jumped to from INPUT, in the shapes nodes
//! carry (an iptables-nft `table ip filter`, a native nft `table inet`, an iptables-legacy
//! x_tables `filter` table), loaded into a network namespace the benchmark creates, and
//! `kports firewall check` timed beside the tools that only dump the rules
//! (`iptables-nft-save`, `nft -j list ruleset`, `iptables-legacy-save`).
//!
//! Every rule matches a source in 198.18.0.0/15 (the benchmarking range) and a port in
//! 20000-29999; the check judges from 192.0.2.0/24, so every rule is looked at and none
//! matches, and the packet for tcp/9 meets the last rule, which drops it. No packet is sent.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::measure::{self, Argv, Run, Stdout};

/// Rules per chain: INPUT jumps to each chain in turn.
pub const CHAIN_RULES: usize = 1000;

/// The shapes of a ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `table ip filter`, written by `iptables-nft-restore`.
    IptablesNft,
    /// `table inet kpbench`, written by `nft -f`.
    Nft,
    /// The x_tables `filter` table, written by `iptables-legacy-restore`: no nft is involved,
    /// so what kports adds to the dump is its own parsing and judging.
    IptablesLegacy,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::IptablesNft, Shape::Nft, Shape::IptablesLegacy];

    pub fn label(self) -> &'static str {
        match self {
            Shape::IptablesNft => "iptables-nft (table ip filter)",
            Shape::Nft => "native nft (table inet)",
            Shape::IptablesLegacy => "iptables-legacy (x_tables filter)",
        }
    }

    /// The name `--shapes` takes.
    pub fn key(self) -> &'static str {
        match self {
            Shape::IptablesNft => "iptables-nft",
            Shape::Nft => "nft",
            Shape::IptablesLegacy => "iptables-legacy",
        }
    }

    /// The shape `key` names.
    pub fn from_key(key: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|s| s.key() == key)
    }

    /// The tools that dump this shape's rules, the one kports is compared with first.
    pub fn peers(self) -> &'static [Peer] {
        match self {
            Shape::IptablesNft => &[Peer::IptablesNftSave, Peer::NftList],
            Shape::Nft => &[Peer::NftList, Peer::IptablesNftSave],
            Shape::IptablesLegacy => &[Peer::IptablesLegacySave],
        }
    }
}

/// A tool that only dumps the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    IptablesNftSave,
    NftList,
    IptablesLegacySave,
}

impl Peer {
    /// The command as the tables show it.
    pub fn label(self) -> &'static str {
        match self {
            Peer::IptablesNftSave => "`iptables-nft-save`",
            Peer::NftList => "`nft -j list ruleset`",
            Peer::IptablesLegacySave => "`iptables-legacy-save`",
        }
    }

    /// The command line, its program found on the path.
    pub fn argv(self) -> Result<Argv> {
        let (program, args): (&str, &[&str]) = match self {
            Peer::IptablesNftSave => ("iptables-nft-save", &[]),
            Peer::NftList => ("nft", &["-j", "list", "ruleset"]),
            Peer::IptablesLegacySave => ("iptables-legacy-save", &[]),
        };
        let path = measure::which(program).with_context(|| format!("`{program}` not found"))?;
        Ok(Argv::new(path, args))
    }
}

/// `n` filter rules of `shape`, the last one dropping tcp/9; the text its loader reads.
pub fn ruleset(shape: Shape, n: usize) -> String {
    let mut s = String::with_capacity(n * 120);
    let chains = n.div_ceil(CHAIN_RULES).max(1);
    let src = |i: usize| format!("198.{}.{}.{}", 18 + (i >> 16) % 2, (i >> 8) & 255, i & 255);
    let port = |i: usize| 20000 + i % 10000;
    match shape {
        Shape::IptablesNft | Shape::IptablesLegacy => {
            s.push_str(
                "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
            );
            for c in 0..chains {
                let _ = writeln!(s, ":KPB-{c} - [0:0]");
            }
            for c in 0..chains {
                let _ = writeln!(s, "-A INPUT -j KPB-{c}");
            }
            for i in 0..n.saturating_sub(1) {
                let _ = writeln!(
                    s,
                    "-A KPB-{} -s {}/32 -p tcp -m tcp --dport {} -m comment --comment \"service {i}\" -j ACCEPT",
                    i / CHAIN_RULES,
                    src(i),
                    port(i)
                );
            }
            let _ = writeln!(s, "-A KPB-{} -p tcp -m tcp --dport 9 -j DROP", chains - 1);
            s.push_str("COMMIT\n");
        }
        Shape::Nft => {
            s.push_str("table inet kpbench {\n");
            s.push_str("  chain input {\n    type filter hook input priority 0; policy accept;\n");
            for c in 0..chains {
                let _ = writeln!(s, "    jump kpb{c}");
            }
            s.push_str("  }\n");
            for c in 0..chains {
                let _ = writeln!(s, "  chain kpb{c} {{");
                for i in c * CHAIN_RULES..((c + 1) * CHAIN_RULES).min(n.saturating_sub(1)) {
                    let _ = writeln!(
                        s,
                        "    ip saddr {} tcp dport {} counter accept comment \"service {i}\"",
                        src(i),
                        port(i)
                    );
                }
                if c == chains - 1 {
                    s.push_str("    tcp dport 9 drop\n");
                }
                s.push_str("  }\n");
            }
            s.push_str("}\n");
        }
    }
    s
}

/// Twelve chains, each jumping to the next six times, the last dropping tcp/9 (a ruleset that
/// costs 6^11 walks if each jump is walked again); `chains` and `fan` set the size.
pub fn ladder(shape: Shape, chains: usize, fan: usize) -> String {
    let mut s = String::new();
    match shape {
        Shape::IptablesNft | Shape::IptablesLegacy => {
            s.push_str(
                "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
            );
            for i in 1..chains {
                let _ = writeln!(s, ":L{i} - [0:0]");
            }
            for i in 0..chains - 1 {
                let from = if i == 0 {
                    "INPUT".to_string()
                } else {
                    format!("L{i}")
                };
                for _ in 0..fan {
                    let _ = writeln!(s, "-A {from} -j L{}", i + 1);
                }
            }
            let _ = writeln!(
                s,
                "-A L{} -p tcp -m tcp --dport 9 -j DROP\nCOMMIT",
                chains - 1
            );
        }
        Shape::Nft => {
            s.push_str("table inet ladder {\n  chain c0 {\n    type filter hook input priority 0; policy accept;\n");
            for i in 0..chains {
                if i > 0 {
                    let _ = writeln!(s, "  chain c{i} {{");
                }
                if i + 1 < chains {
                    for _ in 0..fan {
                        let _ = writeln!(s, "    jump c{}", i + 1);
                    }
                } else {
                    s.push_str("    tcp dport 9 drop\n");
                }
                s.push_str("  }\n");
            }
            s.push_str("}\n");
        }
    }
    s
}

/// The catalog entry that makes `kports firewall check` judge tcp/9.
pub const CATALOG: &str = "[[port]]\ncomponent = \"discard\"\nprotocol = \"tcp\"\nport = 9\npurpose = \"the port the benchmark's last rule drops\"\nroles = [\"worker\"]\nreached_by = [\"nodes\"]\nbind = \"any\"\nexpect = \"optional\"\n";

/// The `kports firewall check` command line of the benchmark. `fail_on` is its `--fail-on`:
/// `never` for the timed runs (exit 0 when the check is done: tcp/9 dropped is a finding),
/// `error` (the default) to see the exit status a user sees.
pub fn check_argv(kports: &Path, catalog: &Path, fail_on: &str) -> Argv {
    Argv::new(
        kports,
        &[
            "firewall",
            "check",
            "--role",
            "worker",
            "--catalog",
            &catalog.to_string_lossy(),
            "--sources",
            "192.0.2.0/24",
            "--control-plane",
            "192.0.2.10",
            "--fail-on",
            fail_on,
            "-o",
            "json",
        ],
    )
}

/// What `kports firewall check -o json` said about tcp/9: the verdict and the deciding chain
/// (none for an unknown verdict).
pub fn verdict_for_9(json: &[u8]) -> Result<(String, Option<String>)> {
    let j = judgement_of_9(json)?;
    Ok((
        j["verdict"].as_str().unwrap_or("?").to_string(),
        j["by"]["chain"].as_str().map(str::to_string),
    ))
}

/// `drop by KPB-99`, or the verdict alone when no chain decided it (`unknown`).
pub fn verdict_text((verdict, by): &(String, Option<String>)) -> String {
    match by {
        Some(chain) => format!("{verdict} by {chain}"),
        None => verdict.clone(),
    }
}

/// The whole judgement of tcp/9 in `kports firewall check -o json` (the first segment's).
pub fn judgement_of_9(json: &[u8]) -> Result<serde_json::Value> {
    let mut doc: serde_json::Value = serde_json::from_slice(json).context("kports output")?;
    let rows = doc["items"]
        .as_array_mut()
        .context("no rows in kports output")?;
    let row = rows
        .iter_mut()
        .find(|r| r["port"]["lo"] == 9 && r["port"]["proto"] == "tcp")
        .context("no tcp/9 row in kports output")?;
    Ok(row["segments"][0]["judgement"].take())
}

/// A network namespace the benchmark made and entered; leaving it deletes it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    home: File,
}

impl Netns {
    /// Creates `name` with `ip netns add` and moves this thread (and what it forks) into it.
    pub fn enter(name: &str) -> Result<Netns> {
        let home = File::open("/proc/self/ns/net").context("/proc/self/ns/net")?;
        let ip = measure::which("ip").context("`ip` (iproute2) not found")?;
        measure::capture(
            &Argv::new(&ip, &["netns", "add", name]),
            Duration::from_secs(30),
        )?;
        let ns = Netns {
            name: name.to_string(),
            home,
        };
        let f = File::open(format!("/run/netns/{name}")).context("the new namespace")?;
        setns(&f)?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = setns(&self.home);
        if let Some(ip) = measure::which("ip") {
            let _ = measure::capture(
                &Argv::new(&ip, &["netns", "del", &self.name]),
                Duration::from_secs(30),
            );
        }
    }
}

fn setns(f: &File) -> Result<()> {
    // SAFETY: the descriptor is open for the call; setns changes only this thread's namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        bail!("setns: {}", io::Error::last_os_error());
    }
    Ok(())
}

/// Replaces every rule of the namespace with `text`, loaded by `shape`'s tool.
pub fn load(shape: Shape, text: &str, dir: &Path) -> Result<()> {
    let nft = measure::which("nft").context("`nft` not found")?;
    measure::capture(
        &Argv::new(&nft, &["flush", "ruleset"]),
        Duration::from_secs(120),
    )?;
    let file: PathBuf = dir.join("rules");
    std::fs::write(&file, text).with_context(|| file.display().to_string())?;
    let f = file.to_string_lossy();
    let argv = match shape {
        Shape::IptablesNft => Argv::new(
            measure::which("iptables-nft-restore").context("`iptables-nft-restore` not found")?,
            &[&f],
        ),
        Shape::Nft => Argv::new(&nft, &["-f", &f]),
        Shape::IptablesLegacy => Argv::new(
            measure::which("iptables-legacy-restore")
                .context("`iptables-legacy-restore` not found")?,
            &[&f],
        ),
    };
    measure::capture(&argv, Duration::from_secs(600))
        .with_context(|| format!("loading {}", shape.label()))?;
    Ok(())
}

/// Runs every command `runs` times, interleaved with a rotating order, after `warmup` rounds.
/// The first command's standard output is kept (it is small: `kports -o json`).
pub fn interleaved(
    cmds: &[Argv],
    runs: usize,
    warmup: usize,
    timeout: Duration,
) -> io::Result<Vec<Vec<Run>>> {
    let mut out: Vec<Vec<Run>> = vec![Vec::new(); cmds.len()];
    for round in 0..warmup + runs {
        for k in 0..cmds.len() {
            let i = (k + round) % cmds.len();
            let stdout = if i == 0 {
                Stdout::Capture
            } else {
                Stdout::Null
            };
            let r = measure::run(&cmds[i], timeout, stdout)?;
            if round >= warmup {
                out[i].push(r);
            }
        }
    }
    Ok(out)
}
