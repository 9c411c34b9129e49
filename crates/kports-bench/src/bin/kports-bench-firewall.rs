//! `kports-bench-firewall`: the firewall benchmark. In a network namespace it creates, for each
//! number of rules and each shape (iptables-nft, native nft), it loads the ruleset, checks that
//! `kports firewall check` judges tcp/9 dropped by the last rule, and times it beside
//! `iptables-nft-save` and `nft -j list ruleset` in one interleaved run; then the nested-jump
//! rulesets. Prints a markdown report (see `kports_bench::firewall`).
//!
//! Exit status: 0 when every verdict was as expected, 1 otherwise, 2 on an error.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use kports_bench::firewall::{self, Netns, Shape};
use kports_bench::measure::{self, Argv};
use kports_bench::report::{thousands, utc};
use kports_bench::stats::{Summary, ratio, secs, summarise};
use kports_bench::sys;

const BEGIN: &str = "<!-- kports-bench firewall results: begin -->";
const END: &str = "<!-- kports-bench firewall results: end -->";

/// Times `kports firewall check` against `iptables-nft-save` and `nft -j list ruleset` on
/// rulesets of N filter rules, in a network namespace it creates and deletes.
#[derive(Debug, Parser)]
#[command(name = "kports-bench-firewall", version, max_term_width = 100)]
struct Args {
    /// Numbers of filter rules, comma-separated (`20k` works too).
    #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "1000,10000,20000,100000")]
    sizes: Vec<usize>,
    /// Measured runs of each command.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    runs: u16,
    /// Unrecorded rounds before the measured ones.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=10))]
    warmup: u16,
    /// The kports binary [default: `kports` next to this program].
    #[arg(long, value_name = "PATH")]
    kports: Option<PathBuf>,
    /// Also write the report into FILE, replacing its marked firewall results section.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Seconds after which a command is killed and reported as timed out.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, mult) = match s.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1000),
        None => (s, 1),
    };
    match digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
    {
        Some(n) if (2..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!("`{s}`: a number of rules between 2 and 1,000,000")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kports-bench-firewall: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One command's runs at one size.
struct Row {
    shape: Shape,
    rules: usize,
    kports: Summary,
    save: Summary,
    list: Summary,
    verdict: (String, String),
}

fn run(args: &Args) -> Result<bool> {
    if !sys::is_root() {
        bail!("needs root: it creates a network namespace and loads rules into it");
    }
    let kports = match &args.kports {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("kports"))
            .context("no directory")?,
    };
    let save = measure::which("iptables-nft-save").context("`iptables-nft-save` not found")?;
    let nft = measure::which("nft").context("`nft` not found")?;
    let dir = std::env::temp_dir().join(format!("kports-bench-fw-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let catalog = dir.join("catalog.toml");
    std::fs::write(&catalog, firewall::CATALOG)?;
    let timeout = Duration::from_secs(args.timeout);
    let versions = format!(
        "{}; {}",
        first_line(&measure::capture(
            &Argv::new(&nft, &["--version"]),
            timeout
        )?),
        first_line(&measure::capture(
            &Argv::new(
                measure::which("iptables-nft").context("iptables-nft")?,
                &["--version"]
            ),
            timeout
        )?)
    );
    let started = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let ns = Netns::enter(&format!("kpbench-fw-{}", std::process::id()))?;
    let check = firewall::check_argv(&kports, &catalog);
    let cmds = [
        check.clone(),
        Argv::new(&save, &[]),
        Argv::new(&nft, &["-j", "list", "ruleset"]),
    ];
    let mut rows = Vec::new();
    let mut all_ok = true;
    for &rules in &args.sizes {
        for shape in Shape::ALL {
            eprintln!("{}: {} rules", shape.label(), thousands(rules));
            firewall::load(shape, &firewall::ruleset(shape, rules), &dir)?;
            let verdict = firewall::verdict_for_9(&measure::capture(&check, timeout)?)?;
            all_ok &= verdict.0 == "drop";
            let runs = firewall::interleaved(
                &cmds,
                usize::from(args.runs),
                usize::from(args.warmup),
                timeout,
            )?;
            let mut s = runs.iter().map(|r| summarise(r));
            let (Some(k), Some(sv), Some(l)) = (s.next(), s.next(), s.next()) else {
                bail!("missing runs");
            };
            rows.push(Row {
                shape,
                rules,
                kports: k,
                save: sv,
                list: l,
                verdict,
            });
        }
    }
    let mut nested = Vec::new();
    for (chains, fan) in [(12, 6), (16, 12)] {
        for shape in Shape::ALL {
            firewall::load(shape, &firewall::ladder(shape, chains, fan), &dir)?;
            let verdict = firewall::verdict_for_9(&measure::capture(&check, timeout)?)?;
            all_ok &= verdict.0 == "drop";
            let runs = firewall::interleaved(
                std::slice::from_ref(&check),
                usize::from(args.runs),
                usize::from(args.warmup),
                timeout,
            )?;
            nested.push((shape, chains, fan, summarise(&runs[0]), verdict));
        }
    }
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);

    let mut o = String::new();
    let _ = writeln!(o, "{BEGIN}");
    let _ = writeln!(
        o,
        "Machine: {} CPUs, Linux {}; run {}.  \nTools: {versions}.  \nReproduce: `scripts/bench-firewall` (`target/release/kports-bench-firewall --sizes {} --runs {} --markdown BENCHMARKS.md`).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sys::kernel_release(),
        utc(started),
        args.sizes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        args.runs
    );
    let _ = writeln!(
        o,
        "Medians of {} runs, interleaved, after {} warm-up round(s). Each cell: wall seconds (CPU seconds, peak MiB). CPU time is the command's and its children's; peak is the largest resident set of the command or any process it ran (`ru_maxrss` from `wait4`). kports lists the nf_tables tables over netlink, then runs the `*-save` tools and `nft -j list table` (for tables no dump holds) one after another.\n",
        args.runs, args.warmup
    );
    for shape in Shape::ALL {
        let (peer, peer_label) = match shape {
            Shape::IptablesNft => ("save", "`iptables-nft-save`"),
            Shape::Nft => ("list", "`nft -j list ruleset`"),
        };
        let _ = writeln!(o, "### {}\n", shape.label());
        let _ = writeln!(
            o,
            "| filter rules | `kports firewall check` | `iptables-nft-save` | `nft -j list ruleset` | kports / {peer_label} (wall) | (CPU) | peak MiB over {peer_label} | tcp/9 |"
        );
        let _ = writeln!(o, "|--:|--:|--:|--:|--:|--:|--:|---|");
        for r in rows.iter().filter(|r| r.shape == shape) {
            let p = if peer == "save" { &r.save } else { &r.list };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {:+.1} | {} by {} |",
                thousands(r.rules),
                cell(&r.kports),
                cell(&r.save),
                cell(&r.list),
                ratio(r.kports.median, p.median).map_or("-".into(), |x| format!("{x:.2}x")),
                ratio(r.kports.cpu_median, p.cpu_median).map_or("-".into(), |x| format!("{x:.2}x")),
                r.kports.peak_mib - p.peak_mib,
                r.verdict.0,
                r.verdict.1
            );
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "### Nested jumps\n");
    let _ = writeln!(
        o,
        "Each chain jumps to the next `fan` times; the last drops tcp/9 (fan^(chains-1) paths).\n"
    );
    let _ = writeln!(
        o,
        "| shape | chains x fan | `kports firewall check` | tcp/9 |"
    );
    let _ = writeln!(o, "|---|--:|--:|---|");
    for (shape, chains, fan, s, v) in &nested {
        let _ = writeln!(
            o,
            "| {} | {chains} x {fan} | {} | {} by {} |",
            shape.label(),
            cell(s),
            v.0,
            v.1
        );
    }
    let _ = writeln!(o, "{END}");
    print!("{o}");
    if let Some(path) = &args.markdown {
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let new = match (doc.find(BEGIN), doc.find(END)) {
            (Some(b), Some(e)) if e > b => {
                let rest = doc[e + END.len()..]
                    .strip_prefix('\n')
                    .unwrap_or(&doc[e + END.len()..]);
                format!("{}{o}{rest}", &doc[..b])
            }
            _ => format!("{doc}\n{o}"),
        };
        std::fs::write(path, new).with_context(|| path.display().to_string())?;
    }
    Ok(all_ok)
}

fn cell(s: &Summary) -> String {
    match (s.median, s.cpu_median) {
        (Some(m), Some(c)) if s.failed.is_empty() => {
            format!("{} ({}, {:.0})", secs(m), secs(c), s.peak_mib)
        }
        _ => format!("failed: {:?}", s.failed),
    }
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}
