//! `kports-bench`: the census benchmark. For each N it starts `kports-loadgen`, checks the load
//! with `ss`, cross-checks kports against `ss`, times kports, ss, netstat and lsof in one
//! interleaved run, and prints a markdown report.
//!
//! Exit status: 0 when every cross-check agreed, 1 on a mismatch, 2 on an error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use kports_bench::harness::{self, LoadGen, Schedule, Tools};
use kports_bench::measure::{self, Argv};
use kports_bench::report::{self, Machine, Report, SizeResult, thousands};
use kports_bench::sys;

/// Times `kports conns` and `kports listen` against `ss`, `netstat` and `lsof` on N established
/// loopback connections (127.77.0.0/16), reporting median wall time and peak memory.
#[derive(Debug, Parser)]
#[command(name = "kports-bench", version, max_term_width = 100)]
struct Args {
    /// Numbers of established connections to measure at, comma-separated (`100k` works too).
    #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "1000,10000,100000")]
    sizes: Vec<usize>,
    /// Measured runs of each command at each N.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    runs: u16,
    /// Unrecorded rounds before the measured ones.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=10))]
    warmup: u16,
    /// The kports binary [default: `kports` next to this program, else target/release/kports].
    #[arg(long, value_name = "PATH")]
    kports: Option<PathBuf>,
    /// The load generator [default: `kports-loadgen` next to this program].
    #[arg(long, value_name = "PATH")]
    loadgen: Option<PathBuf>,
    /// Also write the report to FILE. If FILE exists, only its marked results section is
    /// replaced (or, without markers, the report is appended).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Seconds after which a command under test is killed and reported as timed out.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Seconds one command may take at one N, warm-up included; once spent, and after at least
    /// three runs, it is not repeated (the report says so).
    #[arg(long, default_value_t = 300)]
    budget: u64,
    /// Runs a command makes at one N before the time budget can stop it (fewer runs than
    /// `--runs` let a command that grows with the square of N be measured at large N).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    min_runs: u16,
    /// Peer tools to leave out, comma-separated by program name (`netstat`, `lsof`, `ss`);
    /// kports is always measured.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    skip: Vec<String>,
    /// Seconds the load generator may take to build the load.
    #[arg(long, default_value_t = 120)]
    setup_timeout: u64,
    /// Listeners of the load.
    #[arg(long, default_value_t = 116)]
    listeners: usize,
    /// Worker processes holding the connections.
    #[arg(long, default_value_t = 16)]
    workers: usize,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, mult) = match s.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1000),
        None => (s, 1),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a number of connections (such as 1000 or 100k)"))?;
    match n.checked_mul(mult) {
        Some(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}`: the number of connections must be between 1 and 1,000,000"
        )),
    }
}

fn parse_peer(s: &str) -> Result<String, String> {
    match s.trim() {
        p @ ("ss" | "netstat" | "lsof") => Ok(p.to_string()),
        other => Err(format!(
            "`{other}`: the peers that can be left out are ss, netstat and lsof"
        )),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kports-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Finds a sibling binary of this program, or `fallback`.
fn beside_me(name: &str, fallback: &str) -> Option<PathBuf> {
    let mine = std::env::current_exe().ok()?.with_file_name(name);
    if mine.is_file() {
        return Some(mine);
    }
    let f = PathBuf::from(fallback);
    f.is_file().then_some(f)
}

fn tool(name: &str, package: &str) -> Result<PathBuf> {
    measure::which(name)
        .with_context(|| format!("`{name}` is not installed (Debian package {package})"))
}

fn tools(args: &Args) -> Result<Tools> {
    let kports = match &args.kports {
        Some(p) => p.clone(),
        None => beside_me("kports", "target/release/kports")
            .context("no kports binary next to kports-bench or at target/release/kports: run `cargo build --release -p kports` or pass --kports")?,
    };
    let loadgen = match &args.loadgen {
        Some(p) => p.clone(),
        None => beside_me("kports-loadgen", "target/release/kports-loadgen")
            .context("no kports-loadgen next to kports-bench: run `cargo build --release -p kports-bench` or pass --loadgen")?,
    };
    for p in [&kports, &loadgen] {
        if !p.is_file() {
            bail!("{} does not exist", p.display());
        }
    }
    Ok(Tools {
        kports,
        loadgen,
        ss: tool("ss", "iproute2")?,
        netstat: tool("netstat", "net-tools")?,
        lsof: tool("lsof", "lsof")?,
    })
}

fn first_line(argv: &Argv, stderr: bool) -> String {
    match measure::run(argv, Duration::from_secs(10), measure::Stdout::Capture) {
        Ok(r) => {
            let text =
                String::from_utf8_lossy(if stderr { &r.stderr } else { &r.stdout }).into_owned();
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("unknown")
                .to_string()
        }
        Err(_) => "unknown".into(),
    }
}

fn machine(t: &Tools) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo.lines().find_map(|l| {
        l.strip_prefix("model name")?
            .split_once(':')
            .map(|(_, v)| v.trim().to_string())
    });
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let lsof = first_line(&Argv::new(&t.lsof, &["-v"]), true);
    let lsof_rev = measure::run(
        &Argv::new(&t.lsof, &["-v"]),
        Duration::from_secs(10),
        measure::Stdout::Capture,
    )
    .ok()
    .and_then(|r| {
        let text = r.stderr_text();
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("revision:")
                .map(|v| format!("lsof {}", v.trim()))
        })
    })
    .unwrap_or(lsof);
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu: cpu.unwrap_or_else(|| "unknown CPU".into()),
        mem_gib: kib / 1024.0 / 1024.0,
        kernel: sys::kernel_release(),
        date: report::utc(now),
        tools: vec![
            first_line(&Argv::new(&t.kports, &["--version"]), false),
            first_line(&Argv::new(&t.ss, &["-V"]), false),
            first_line(&Argv::new(&t.netstat, &["-V"]), false),
            lsof_rev,
        ],
    }
}

fn reproduce() -> String {
    let mut s = String::from(
        "cargo build --release -p kports -p kports-bench && target/release/kports-bench",
    );
    for a in std::env::args().skip(1) {
        s.push(' ');
        if a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./".contains(c))
        {
            s.push_str(&a);
        } else {
            s.push_str(&format!("'{}'", a.replace('\'', r"'\''")));
        }
    }
    s
}

fn run(args: &Args) -> Result<bool> {
    let t = tools(args)?;
    if !sys::is_root() {
        eprintln!(
            "kports-bench: warning: not root: kports, ss -p, netstat -p and lsof see only this user's processes"
        );
    }
    let _ = sys::become_subreaper();
    let leftover = t.loadgen_sockets("all")?;
    if leftover > 0 {
        bail!(
            "{leftover} TCP sockets already use 127.77.0.0/16: is another kports-loadgen running? Stop it first"
        );
    }
    let mut report = Report {
        machine: machine(&t),
        reproduce: reproduce(),
        runs: usize::from(args.runs),
        warmup: usize::from(args.warmup),
        budget_secs: args.budget,
        min_runs: usize::from(args.min_runs),
        rss_floor_mib: harness::rss_floor(),
        sizes: Vec::new(),
    };
    let commands: Vec<_> = t
        .commands()
        .into_iter()
        .filter(|(label, _)| {
            let program = label.split_whitespace().next().unwrap_or("");
            !args.skip.iter().any(|s| s == program)
        })
        .collect();
    let setup = Duration::from_secs(args.setup_timeout);
    let schedule = Schedule {
        runs: usize::from(args.runs),
        warmup: usize::from(args.warmup),
        timeout: Duration::from_secs(args.timeout),
        budget: Duration::from_secs(args.budget),
        min_runs: usize::from(args.min_runs),
        warm_below: Duration::from_secs(5),
    };
    for &n in &args.sizes {
        let tag = format!("N={}", thousands(n));
        eprintln!("[{tag}] starting the load generator");
        let (lg, ready) = LoadGen::start(&t.loadgen, n, args.listeners, args.workers, setup)?;
        eprintln!(
            "[{tag}] {} connections and {} listeners over {} processes in {:.1} s",
            ready.conns, ready.listeners, ready.processes, ready.secs
        );
        let ours = t.loadgen_sockets("established")?;
        let total = t.established()?;
        let all = t.all_tcp()?;
        if ours != 2 * n {
            bail!(
                "`ss` counts {ours} established sockets on 127.77.0.0/16, not {}: the load is not what it should be",
                2 * n
            );
        }
        eprintln!(
            "[{tag}] ss: {ours} established sockets of the load, {total} in all, {all} TCP sockets in every state"
        );
        let checked = harness::cross_check(&t, &ready)?;
        for c in &checked.checks {
            eprintln!("[{tag}] check: {c}");
        }
        for p in &checked.problems {
            eprintln!("[{tag}] MISMATCH: {p}");
        }
        let mut checks = vec![format!(
            "`ss -tanH state established` counted {} sockets of the load ({} in all; {} TCP sockets in every state)",
            thousands(ours),
            thousands(total),
            thousands(all)
        )];
        checks.extend(checked.checks);
        // Commands that took over 5 s at the previous size skip the warm-up.
        let slow: Vec<bool> = commands
            .iter()
            .map(|(l, _)| {
                report
                    .sizes
                    .last()
                    .and_then(|p| p.get(l)?.median)
                    .is_some_and(|m| m > schedule.warm_below.as_secs_f64())
            })
            .collect();
        let load_before = harness::load_average();
        let results = harness::measure_all(&commands, &schedule, &slow, &tag);
        let load_after = harness::load_average();
        lg.stop(&t)?;
        report.sizes.push(SizeResult {
            n,
            listeners: ready.listeners,
            processes: ready.processes,
            setup_secs: ready.secs,
            load_before,
            load_after,
            checks,
            problems: checked.problems,
            commands: results,
        });
    }
    let md = report.markdown();
    println!("{md}");
    if let Some(path) = &args.markdown {
        write_markdown(path, &md)?;
        eprintln!("kports-bench: wrote {}", path.display());
    }
    let problems: usize = report.sizes.iter().map(|s| s.problems.len()).sum();
    if problems > 0 {
        eprintln!(
            "kports-bench: {problems} cross-check MISMATCH(ES): kports and ss disagree; see the report"
        );
    }
    Ok(problems == 0)
}

fn write_markdown(path: &Path, section: &str) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        // A document without the markers keeps its text; the results go at its end.
        Ok(doc) => report::splice(&doc, section)
            .unwrap_or_else(|| format!("{}\n\n{section}", doc.trim_end())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => section.to_string(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_plain_and_k_suffixed_numbers() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("100k"), Ok(100_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("2000k").is_err());
        assert!(parse_size("ten").is_err());
    }

    #[test]
    fn only_peers_can_be_skipped() {
        assert_eq!(parse_peer("netstat"), Ok("netstat".to_string()));
        assert!(parse_peer("kports").is_err());
        assert!(parse_peer("").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
