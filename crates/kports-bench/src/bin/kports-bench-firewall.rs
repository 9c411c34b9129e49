//! `kports-bench-firewall`: the firewall benchmark. For each number of rules and each shape
//! (iptables-nft, native nft, iptables-legacy), in a network namespace it creates for that
//! alone, it loads the ruleset, times `kports firewall check` beside the tools that dump the
//! same rules in one interleaved run, and checks that kports judged tcp/9 dropped by the last
//! rule; optionally it runs kports once more with its output limit lowered, to show the
//! refusal; then the nested-jump rulesets. Prints a markdown report (see
//! `kports_bench::firewall`).
//!
//! Exit status: 0 when every verdict was as expected, 1 otherwise, 2 on an error.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use kports_bench::firewall::{self, Netns, Peer, Shape};
use kports_bench::measure::{self, Argv, Run, Stdout};
use kports_bench::report::{thousands, utc};
use kports_bench::stats::{Summary, ratio, secs, summarise};
use kports_bench::sys;

/// Times `kports firewall check` against the tools that dump the rules (`iptables-nft-save`,
/// `nft -j list ruleset`, `iptables-legacy-save`) on rulesets of N filter rules, each in a
/// network namespace it creates and deletes.
#[derive(Debug, Parser)]
#[command(name = "kports-bench-firewall", version, max_term_width = 100)]
struct Args {
    /// Numbers of filter rules, comma-separated (`20k` works too).
    #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "1000,10000,20000,100000")]
    sizes: Vec<usize>,
    /// Shapes of ruleset, comma-separated: iptables-nft, nft, iptables-legacy.
    #[arg(long, value_delimiter = ',', value_parser = parse_shape, default_value = "iptables-nft,nft,iptables-legacy")]
    shapes: Vec<Shape>,
    /// Time kports beside each shape's own dump tool only (`iptables-nft-save`, `nft -j list
    /// ruleset`, `iptables-legacy-save`), not beside the other dump tool too.
    #[arg(long)]
    only_peer: bool,
    /// Leave out the nested-jump rulesets.
    #[arg(long)]
    no_nested: bool,
    /// Also run kports once at the largest size of each shape with
    /// KPORTS_MAX_COMMAND_OUTPUT_BYTES=BYTES, to show how it refuses a dump past its limit.
    #[arg(long, value_name = "BYTES")]
    output_limit: Option<u64>,
    /// Seconds kports lets one ruleset listing take (KPORTS_LISTING_TIMEOUT_SECS for every
    /// kports run): nft lists 500,000 rules in about two minutes, past kports's default.
    #[arg(long, value_name = "SECS")]
    listing_timeout: Option<u64>,
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
    /// The section of FILE to replace: the one between `<!-- kports-bench firewall NAME:
    /// begin -->` and its `end` marker.
    #[arg(long, value_name = "NAME", default_value = "results", value_parser = parse_section)]
    section: String,
    /// Memory the machine must have available (MemAvailable, GiB) before a ruleset of 500,000
    /// rules or more is loaded; short of it, that ruleset is skipped and the report says so.
    #[arg(long, default_value_t = 12)]
    min_available_gib: u64,
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

fn parse_section(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}`: a section name is letters, digits and dashes"
        ))
    }
}

fn parse_shape(s: &str) -> Result<Shape, String> {
    Shape::from_key(s.trim()).ok_or_else(|| {
        format!(
            "`{s}`: the shapes are {}",
            Shape::ALL.map(Shape::key).join(", ")
        )
    })
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

/// One shape at one size: the load and each command's runs.
struct Row {
    shape: Shape,
    rules: usize,
    load_secs: f64,
    kports: Summary,
    peers: Vec<(Peer, Summary)>,
    verdict: (String, Option<String>),
}

/// kports run once with a lowered output limit.
struct LimitRow {
    shape: Shape,
    rules: usize,
    limit: u64,
    run: Run,
    verdict: String,
}

fn run(args: &Args) -> Result<bool> {
    if !sys::is_root() {
        bail!("needs root: it creates network namespaces and loads rules into them");
    }
    let kports = match &args.kports {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("kports"))
            .context("no directory")?,
    };
    let env = measure::which("env").context("`env` not found")?;
    let dir = std::env::temp_dir().join(format!("kports-bench-fw-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let catalog = dir.join("catalog.toml");
    std::fs::write(&catalog, firewall::CATALOG)?;
    let timeout = Duration::from_secs(args.timeout);
    let mut versions = Vec::new();
    for (tool, flag) in [
        ("nft", "--version"),
        ("iptables-nft", "--version"),
        ("iptables-legacy", "--version"),
    ] {
        let path = measure::which(tool).with_context(|| format!("`{tool}` not found"))?;
        versions.push(first_line(&measure::capture(
            &Argv::new(&path, &[flag]),
            timeout,
        )?));
    }
    let started = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut vars = Vec::new();
    if let Some(secs) = args.listing_timeout {
        vars.push(format!("KPORTS_LISTING_TIMEOUT_SECS={secs}"));
    }
    let check = with_env(
        &env,
        &vars,
        &firewall::check_argv(&kports, &catalog, "never"),
    );
    let check_as_user = firewall::check_argv(&kports, &catalog, "error");
    let largest = args.sizes.iter().copied().max().unwrap_or(0);
    let mut rows = Vec::new();
    let mut limits = Vec::new();
    let mut skipped = Vec::new();
    let mut all_ok = true;
    let mut netns_made = 0usize;
    let mut next_netns = || {
        netns_made += 1;
        format!("kpbench-fw-{}-{netns_made}", std::process::id())
    };
    for &rules in &args.sizes {
        for &shape in &args.shapes {
            eprintln!("{}: {} rules", shape.label(), thousands(rules));
            let available = sys::mem_available_gib();
            if rules >= 500_000 && available < args.min_available_gib as f64 {
                eprintln!(
                    "{}: {} rules: skipped, {available:.1} GiB available (--min-available-gib {})",
                    shape.label(),
                    thousands(rules),
                    args.min_available_gib
                );
                skipped.push(format!(
                    "{}, {} rules: not run, {available:.1} GiB of memory available, below the {} GiB asked for",
                    shape.label(),
                    thousands(rules),
                    args.min_available_gib
                ));
                all_ok = false;
                continue;
            }
            let ns = Netns::enter(&next_netns())?;
            let loading = Instant::now();
            firewall::load(shape, &firewall::ruleset(shape, rules), &dir)?;
            let load_secs = loading.elapsed().as_secs_f64();
            let peers: Vec<Peer> = if args.only_peer {
                shape.peers()[..1].to_vec()
            } else {
                shape.peers().to_vec()
            };
            let mut cmds = vec![check.clone()];
            for p in &peers {
                cmds.push(p.argv()?);
            }
            let runs = firewall::interleaved(
                &cmds,
                usize::from(args.runs),
                usize::from(args.warmup),
                timeout,
            )?;
            let verdict = match runs[0].last() {
                Some(r) if r.end.ok() => firewall::verdict_for_9(&r.stdout)?,
                Some(r) => (
                    "failed".into(),
                    Some(format!("{}: {}", r.end, r.stderr_text())),
                ),
                None => bail!("no runs"),
            };
            eprintln!(
                "{}: {} rules: loaded in {load_secs:.1} s; tcp/9: {}",
                shape.label(),
                thousands(rules),
                firewall::verdict_text(&verdict)
            );
            all_ok &= verdict.0 == "drop";
            let mut summaries = runs.iter().map(|r| summarise(r));
            let kports_runs = summaries.next().context("missing runs")?;
            rows.push(Row {
                shape,
                rules,
                load_secs,
                kports: kports_runs,
                peers: peers.into_iter().zip(summaries).collect(),
                verdict,
            });
            if let (Some(limit), true) = (args.output_limit, rules == largest) {
                let mut limited = vars.clone();
                limited.push(format!("KPORTS_MAX_COMMAND_OUTPUT_BYTES={limit}"));
                let argv = with_env(&env, &limited, &check_as_user);
                let run = measure::run(&argv, timeout, Stdout::Capture)?;
                let verdict = firewall::judgement_of_9(&run.stdout)
                    .map(|j| j["verdict"].as_str().unwrap_or("?").to_string())
                    .unwrap_or_else(|e| format!("no verdict ({e:#})"));
                eprintln!(
                    "{}: {} rules, output limit {limit}: {}, tcp/9 {verdict}: {}",
                    shape.label(),
                    thousands(rules),
                    run.end,
                    run.stderr_text()
                );
                limits.push(LimitRow {
                    shape,
                    rules,
                    limit,
                    run,
                    verdict,
                });
            }
            drop(ns);
        }
    }
    let mut nested = Vec::new();
    let ladders: &[(usize, usize)] = if args.no_nested {
        &[]
    } else {
        &[(12, 6), (16, 12)]
    };
    for &(chains, fan) in ladders {
        for &shape in &args.shapes {
            let ns = Netns::enter(&next_netns())?;
            firewall::load(shape, &firewall::ladder(shape, chains, fan), &dir)?;
            let runs = firewall::interleaved(
                std::slice::from_ref(&check),
                usize::from(args.runs),
                usize::from(args.warmup),
                timeout,
            )?;
            drop(ns);
            let verdict = match runs[0].last() {
                Some(r) if r.end.ok() => firewall::verdict_for_9(&r.stdout)?,
                Some(r) => (
                    "failed".into(),
                    Some(format!("{}: {}", r.end, r.stderr_text())),
                ),
                None => bail!("no runs"),
            };
            all_ok &= verdict.0 == "drop";
            nested.push((shape, chains, fan, summarise(&runs[0]), verdict));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let begin = format!("<!-- kports-bench firewall {}: begin -->", args.section);
    let end = format!("<!-- kports-bench firewall {}: end -->", args.section);
    let mut o = String::new();
    let _ = writeln!(o, "{begin}");
    let mut reproduce = format!(
        "target/release/kports-bench-firewall --sizes {} --shapes {} --runs {} --warmup {}",
        args.sizes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        args.shapes
            .iter()
            .map(|s| s.key())
            .collect::<Vec<_>>()
            .join(","),
        args.runs,
        args.warmup
    );
    if args.only_peer {
        reproduce.push_str(" --only-peer");
    }
    if args.no_nested {
        reproduce.push_str(" --no-nested");
    }
    if let Some(secs) = args.listing_timeout {
        let _ = write!(reproduce, " --listing-timeout {secs}");
    }
    if let Some(b) = args.output_limit {
        let _ = write!(reproduce, " --output-limit {b}");
    }
    if args.section != "results" {
        let _ = write!(reproduce, " --section {}", args.section);
    }
    if args.timeout != 300 {
        let _ = write!(reproduce, " --timeout {}", args.timeout);
    }
    let _ = writeln!(
        o,
        "Machine: {} CPUs, Linux {}; run {}.  \nTools: {}.  \nReproduce: `scripts/bench-firewall` (`{reproduce} --markdown BENCHMARKS.md`).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sys::kernel_release(),
        utc(started),
        versions.join("; "),
    );
    let _ = writeln!(
        o,
        "Medians of {} runs, interleaved, after {} warm-up round(s); each shape and size in a new network namespace. Each cell: wall seconds (CPU seconds, peak MiB). CPU time is the command's and its children's; peak is the largest resident set of the command or any process it ran (`ru_maxrss` from `wait4`). kports lists the nf_tables tables over netlink, then runs the `*-save` tools and `nft -j list table` (for tables no dump holds) one after another. Load: wall seconds of the tool that loaded the ruleset. A `-` was not run (`--only-peer`).\n",
        args.runs, args.warmup
    );
    for &shape in &args.shapes {
        let all_peers = shape.peers();
        let first = all_peers[0];
        let _ = writeln!(o, "### {}\n", shape.label());
        let mut head = String::from("| filter rules | load s | `kports firewall check` |");
        for p in all_peers {
            let _ = write!(head, " {} |", p.label());
        }
        let _ = write!(
            head,
            " kports / {0} (wall) | (CPU) | peak MiB over {0} | tcp/9 |",
            first.label()
        );
        let _ = writeln!(o, "{head}");
        let _ = writeln!(
            o,
            "|--:|--:|--:|{}--:|--:|--:|---|",
            "--:|".repeat(all_peers.len())
        );
        for r in rows.iter().filter(|r| r.shape == shape) {
            let of = |p: Peer| r.peers.iter().find(|(q, _)| *q == p).map(|(_, s)| s);
            let mut line = format!(
                "| {} | {:.1} | {} |",
                thousands(r.rules),
                r.load_secs,
                cell(&r.kports)
            );
            for &p in all_peers {
                let _ = write!(line, " {} |", of(p).map_or("-".into(), cell));
            }
            let (wall, cpu, peak) = match of(first) {
                Some(p) => (
                    ratio(r.kports.median, p.median).map_or("-".into(), |x| format!("{x:.2}x")),
                    ratio(r.kports.cpu_median, p.cpu_median)
                        .map_or("-".into(), |x| format!("{x:.2}x")),
                    format!("{:+.1}", r.kports.peak_mib - p.peak_mib),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                line,
                " {wall} | {cpu} | {peak} | {} |",
                firewall::verdict_text(&r.verdict)
            );
            o.push_str(&line);
        }
        let _ = writeln!(o);
    }
    for line in &skipped {
        let _ = writeln!(o, "- {line}");
    }
    if !skipped.is_empty() {
        let _ = writeln!(o);
    }
    if !limits.is_empty() {
        let _ = writeln!(o, "### Past the output limit\n");
        let _ = writeln!(
            o,
            "kports run once with `KPORTS_MAX_COMMAND_OUTPUT_BYTES` lowered below the size of the dump.\n"
        );
        let _ = writeln!(
            o,
            "| shape | filter rules | limit (bytes) | `kports firewall check` | exit | tcp/9 | what kports said |"
        );
        let _ = writeln!(o, "|---|--:|--:|--:|--:|---|---|");
        for l in &limits {
            let message = said(&l.run.stderr_text()).replace('|', "\\|");
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} ({}, {:.0}) | {} | {} | {message} |",
                l.shape.label(),
                thousands(l.rules),
                thousands(usize::try_from(l.limit).unwrap_or(usize::MAX)),
                secs(l.run.wall.as_secs_f64()),
                secs(l.run.cpu.as_secs_f64()),
                l.run.max_rss_kib as f64 / 1024.0,
                l.run.end,
                l.verdict
            );
        }
        let _ = writeln!(o);
    }
    if !nested.is_empty() {
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
                "| {} | {chains} x {fan} | {} | {} |",
                shape.label(),
                cell(s),
                firewall::verdict_text(v)
            );
        }
    }
    let _ = writeln!(o, "{end}");
    print!("{o}");
    if let Some(path) = &args.markdown {
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let new = match (doc.find(&begin), doc.find(&end)) {
            (Some(b), Some(e)) if e > b => {
                let rest = doc[e + end.len()..]
                    .strip_prefix('\n')
                    .unwrap_or(&doc[e + end.len()..]);
                format!("{}{o}{rest}", &doc[..b])
            }
            _ => format!("{doc}\n{o}"),
        };
        std::fs::write(path, new).with_context(|| path.display().to_string())?;
    }
    Ok(all_ok)
}

/// `argv` run through `env` with `vars` (`NAME=VALUE`) set; `argv` itself when there are none.
/// `env` execs the command, so what is measured is the command.
fn with_env(env: &std::path::Path, vars: &[String], argv: &Argv) -> Argv {
    if vars.is_empty() {
        return argv.clone();
    }
    let mut out = Argv::new(env, &[]);
    out.args.extend(vars.iter().map(std::ffi::OsString::from));
    out.args.push(argv.program.clone().into_os_string());
    out.args.extend(argv.args.iter().cloned());
    out
}

/// The warning that says why kports could not judge: the one naming a limit, else the first.
fn said(stderr: &str) -> &str {
    let mut warnings = stderr.lines().filter(|l| l.starts_with("warning:"));
    stderr
        .lines()
        .find(|l| l.contains("kports's limit"))
        .or_else(|| warnings.next())
        .unwrap_or("")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_named_by_their_keys() {
        assert_eq!(parse_shape("iptables-legacy"), Ok(Shape::IptablesLegacy));
        assert_eq!(parse_shape(" nft"), Ok(Shape::Nft));
        assert!(parse_shape("legacy").is_err());
    }

    #[test]
    fn the_refusal_is_the_warning_shown() {
        let timeout = "warning: nft list table inet t not readable: nft did not finish within 60 s\nwarning: incomplete";
        assert!(said(timeout).contains("did not finish"));
        let limit =
            "warning: a\nwarning: the output of nft is larger than 64 bytes (64 B), kports's limit";
        assert!(said(limit).contains("larger than"));
        assert_eq!(said(""), "");
    }

    #[test]
    fn section_names_cannot_break_the_markers() {
        assert!(parse_section("limits").is_ok());
        assert!(parse_section("a -->").is_err());
        assert!(parse_section("").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
