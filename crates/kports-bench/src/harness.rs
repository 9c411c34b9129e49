//! The harness's moving parts: the load generator as a child process group that is always
//! cleaned up, the commands under test, the cross-check, and the interleaved measurement.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::crosscheck;
use crate::loadgen::{NET_PREFIX, Ready};
use crate::measure::{self, Argv, End, Run, Stdout};
use crate::report::thousands;
use crate::stats::{self, Summary};
use crate::sys;

/// The programs the harness runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub kports: PathBuf,
    pub loadgen: PathBuf,
    pub ss: PathBuf,
    pub netstat: PathBuf,
    pub lsof: PathBuf,
}

/// Timeout of the short helper commands (counts, JSON for the cross-check).
const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

fn net() -> String {
    let [a, b] = NET_PREFIX;
    format!("{a}.{b}.0.0/16")
}

impl Tools {
    /// The commands under test, in their base order: label and command line.
    pub fn commands(&self) -> Vec<(String, Argv)> {
        let k = &self.kports;
        vec![
            ("kports conns".into(), Argv::new(k, &["conns"])),
            ("kports listen".into(), Argv::new(k, &["listen"])),
            (
                "kports listen --all-states".into(),
                Argv::new(k, &["listen", "--all-states"]),
            ),
            ("ss -tanH".into(), Argv::new(&self.ss, &["-tanH"])),
            ("ss -tanpH".into(), Argv::new(&self.ss, &["-tanpH"])),
            ("ss -tlnpH".into(), Argv::new(&self.ss, &["-tlnpH"])),
            ("netstat -tanp".into(), Argv::new(&self.netstat, &["-tanp"])),
            (
                "lsof -nP -iTCP".into(),
                Argv::new(&self.lsof, &["-nP", "-iTCP"]),
            ),
        ]
    }

    /// `ss -tanH state established | wc -l`, counted here.
    pub fn established(&self) -> Result<usize> {
        let out = measure::capture(
            &Argv::new(&self.ss, &["-tanH", "state", "established"]),
            HELPER_TIMEOUT,
        )?;
        Ok(crosscheck::count_lines(&out))
    }

    /// `ss -tanH | wc -l`: TCP sockets in every state, everyone's.
    pub fn all_tcp(&self) -> Result<usize> {
        let out = measure::capture(&Argv::new(&self.ss, &["-tanH"]), HELPER_TIMEOUT)?;
        Ok(crosscheck::count_lines(&out))
    }

    /// TCP sockets in any state with a local address in the load generator's network.
    pub fn loadgen_sockets(&self, state: &str) -> Result<usize> {
        let out = measure::capture(
            &Argv::new(&self.ss, &["-tanH", "state", state, "src", &net()]),
            HELPER_TIMEOUT,
        )?;
        Ok(crosscheck::count_lines(&out))
    }
}

/// A running load generator in its own process group. Dropping it stops the whole group.
#[derive(Debug)]
pub struct LoadGen {
    child: Child,
    stdin: Option<ChildStdin>,
    pgid: libc::pid_t,
    stopped: bool,
}

impl LoadGen {
    /// Starts `kports-loadgen` and waits for its `ready` line.
    pub fn start(
        path: &Path,
        conns: usize,
        listeners: usize,
        workers: usize,
        timeout: Duration,
    ) -> Result<(LoadGen, Ready)> {
        let mut cmd = Command::new(path);
        cmd.args([
            "--conns",
            &conns.to_string(),
            "--listeners",
            &listeners.to_string(),
            "--workers",
            &workers.to_string(),
        ])
        .args(["--timeout", &timeout.as_secs().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
        // SAFETY: the closure only calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // If the harness dies, the load generator stops (and its workers with it).
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGTERM as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", path.display()))?;
        let pgid = i32::try_from(child.id()).context("pid out of range")?;
        let stdout = child.stdout.take();
        let stdin = child.stdin.take();
        let mut lg = LoadGen {
            child,
            stdin,
            pgid,
            stopped: false,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let Some(out) = stdout else { return };
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            // Keep draining so the load generator never blocks on a full pipe.
            for _ in lines {}
        });
        // The load generator enforces its own timeout; this one only guards against a hang.
        let line = match rx.recv_timeout(timeout + Duration::from_secs(30)) {
            Ok(Some(l)) => l,
            Ok(None) => {
                lg.stop_within(Duration::from_secs(5));
                bail!("kports-loadgen stopped before it was ready (its error is above)");
            }
            Err(_) => {
                lg.stop_within(Duration::from_secs(5));
                bail!(
                    "kports-loadgen did not report ready within {} s",
                    timeout.as_secs() + 30
                );
            }
        };
        match Ready::parse(&line) {
            Some(r) => Ok((lg, r)),
            None => {
                lg.stop_within(Duration::from_secs(5));
                bail!("kports-loadgen printed {line:?} instead of a ready line");
            }
        }
    }

    /// Closes its standard input, waits up to `grace` for it to exit, then kills the whole group
    /// and reaps every member (the harness is their subreaper if the parent went first).
    fn stop_within(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        drop(self.stdin.take());
        let until = Instant::now() + grace;
        while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = sys::kill_group(self.pgid, libc::SIGKILL);
        let _ = self.child.wait();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            sys::reap_group(self.pgid);
            if !matches!(sys::kill_group(self.pgid, 0), Ok(true)) || Instant::now() > until {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the load generator and waits (bounded) until its sockets are gone.
    pub fn stop(mut self, tools: &Tools) -> Result<()> {
        self.stop_within(Duration::from_secs(30));
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let left = tools.loadgen_sockets("all")?;
            if left == 0 {
                return Ok(());
            }
            if Instant::now() > until {
                bail!(
                    "{left} sockets of the load were still open 30 s after the load generator stopped"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.stop_within(Duration::from_secs(5));
    }
}

/// What the cross-check found: observations, and mismatches among them.
#[derive(Debug, Default)]
pub struct CheckResult {
    pub checks: Vec<String>,
    pub problems: Vec<String>,
}

/// Takes `probe` between two counts by `count` until both counts agree (three tries), so that
/// the comparison is against a snapshot that did not change meanwhile. Returns the counts too.
fn between<C: PartialEq + Clone, T>(
    mut count: impl FnMut() -> Result<C>,
    mut probe: impl FnMut() -> Result<T>,
) -> Result<(C, C, T)> {
    let mut last = None;
    for _ in 0..3 {
        let before = count()?;
        let got = probe()?;
        let after = count()?;
        let stable = before == after;
        last = Some((before, after, got));
        if stable {
            break;
        }
    }
    last.context("no attempt was made")
}

/// `kports conns -o json` against `ss -tanH state established`, and `kports listen -o json`
/// against `ss -tlnH`; plus the load generator's own sockets, which must all have owners.
pub fn cross_check(tools: &Tools, ready: &Ready) -> Result<CheckResult> {
    let mut r = CheckResult::default();
    let n = ready.conns as u64;

    let (before, after, c) = between(
        || tools.established(),
        || {
            crosscheck::conns_json(&measure::capture(
                &Argv::new(&tools.kports, &["conns", "-o", "json"]),
                HELPER_TIMEOUT,
            )?)
        },
    )?;
    let kp = c.established as usize;
    if before == after && kp == before {
        r.checks.push(format!(
            "`kports conns` counted {} established sockets, as many as `ss` (same snapshot)",
            thousands(kp)
        ));
    } else if before == after {
        r.problems.push(format!(
            "`kports conns` counted {} established sockets, `ss` {}",
            thousands(kp),
            thousands(before)
        ));
    } else if (before.min(after)..=before.max(after)).contains(&kp) {
        r.checks.push(format!(
            "`kports conns` counted {} established sockets; `ss` counted {} before and {} after (other sockets kept changing)",
            thousands(kp),
            thousands(before),
            thousands(after)
        ));
    } else {
        r.problems.push(format!(
            "`kports conns` counted {} established sockets; `ss` counted {} before and {} after",
            thousands(kp),
            thousands(before),
            thousands(after)
        ));
    }
    if c.loadgen_in != n || c.loadgen_out != n {
        r.problems.push(format!(
            "of the load's {} connections, `kports conns` counted {} accepted (in) and {} opened (out)",
            thousands(ready.conns),
            thousands(c.loadgen_in as usize),
            thousands(c.loadgen_out as usize)
        ));
    }
    if c.loadgen_in_rows != ready.listeners || c.loadgen_in_unowned > 0 {
        r.problems.push(format!(
            "`kports conns` showed {} of the load's {} listeners, {} of them without an owner",
            c.loadgen_in_rows, ready.listeners, c.loadgen_in_unowned
        ));
    } else {
        r.checks.push(format!(
            "`kports conns`: each of the {} listeners of the load has its owner; {} connections in, {} out",
            ready.listeners,
            thousands(c.loadgen_in as usize),
            thousands(c.loadgen_out as usize)
        ));
    }

    let ss_listeners = || -> Result<_> {
        let out = measure::capture(&Argv::new(&tools.ss, &["-tlnH"]), HELPER_TIMEOUT)?;
        crosscheck::ss_listeners(&String::from_utf8_lossy(&out))
    };
    let (before, after, l) = between(ss_listeners, || {
        crosscheck::listen_json(&measure::capture(
            &Argv::new(&tools.kports, &["listen", "-o", "json"]),
            HELPER_TIMEOUT,
        )?)
    })?;
    let missing = crosscheck::missing_listeners(&before, &l.tcp);
    let missing_after = crosscheck::missing_listeners(&after, &l.tcp);
    if missing.is_empty() || missing_after.is_empty() {
        r.checks.push(format!(
            "`kports listen` listed every one of the {} TCP listeners `ss -tlnH` lists",
            before.len()
        ));
    } else {
        let shown: Vec<String> = missing
            .iter()
            .take(5)
            .map(|(a, p)| format!("{}:{p}", a.map_or("*".into(), |a| a.to_string())))
            .collect();
        r.problems.push(format!(
            "`kports listen` is missing {} listeners that `ss -tlnH` lists: {}",
            missing.len(),
            shown.join(", ")
        ));
    }
    if l.loadgen != ready.listeners || l.loadgen_unowned > 0 {
        r.problems.push(format!(
            "`kports listen` showed {} of the load's {} listeners, {} of them without an owner",
            l.loadgen, ready.listeners, l.loadgen_unowned
        ));
    }
    Ok(r)
}

/// How to repeat the commands at one N.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub runs: usize,
    pub warmup: usize,
    /// Per-run timeout.
    pub timeout: Duration,
    /// Time one command may take at one N, warm-up included; once spent (and at least
    /// `min_runs` runs made) the command is not repeated.
    pub budget: Duration,
    /// Runs a command makes at one N before the budget can stop it.
    pub min_runs: usize,
    /// Commands slower than this (median at the previous N) skip the warm-up: at that scale the
    /// cache a warm-up fills is filled by the first command of the round anyway.
    pub warm_below: Duration,
}

/// Runs every command `runs` times, interleaved, after `warmup` unrecorded rounds. The order
/// rotates by one command each round. A command that times out is not run again at this N.
/// `slow[i]` marks commands that skip the warm-up.
pub fn measure_all(
    commands: &[(String, Argv)],
    s: &Schedule,
    slow: &[bool],
    tag: &str,
) -> Vec<(String, Summary)> {
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); commands.len()];
    let mut spent = vec![Duration::ZERO; commands.len()];
    let mut stopped = vec![false; commands.len()];
    let mut cut = vec![false; commands.len()];
    for round in 0..s.warmup + s.runs {
        let measured = round >= s.warmup;
        let what = if measured {
            format!("run {}/{}", round - s.warmup + 1, s.runs)
        } else {
            format!("warm-up {}/{}", round + 1, s.warmup)
        };
        for k in 0..commands.len() {
            let i = (k + round) % commands.len();
            if stopped[i] || (!measured && slow.get(i).copied().unwrap_or(false)) {
                continue;
            }
            if measured && results[i].len() >= s.min_runs && spent[i] >= s.budget {
                stopped[i] = true;
                cut[i] = true;
                eprintln!(
                    "[{tag}] {}: {:.0} s spent: no more runs at this size (time budget)",
                    commands[i].0,
                    spent[i].as_secs_f64()
                );
                continue;
            }
            let (label, argv) = &commands[i];
            let run = match measure::run(argv, s.timeout, Stdout::Null) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("[{tag}] {what}: {label}: {e}");
                    Run {
                        wall: Duration::ZERO,
                        cpu: Duration::ZERO,
                        max_rss_kib: 0,
                        end: End::Exit(-1),
                        stdout: vec![],
                        stderr: vec![],
                    }
                }
            };
            spent[i] += run.wall;
            match run.end {
                End::Exit(0) => eprintln!(
                    "[{tag}] {what}: {label}: {:.3} s, {:.1} MiB",
                    run.wall.as_secs_f64(),
                    run.max_rss_kib as f64 / 1024.0
                ),
                end => eprintln!(
                    "[{tag}] {what}: {label}: {end} after {:.1} s {}",
                    run.wall.as_secs_f64(),
                    run.stderr_text()
                ),
            }
            if run.end == End::TimedOut {
                stopped[i] = true;
            }
            if measured || run.end == End::TimedOut {
                results[i].push(run);
            }
        }
    }
    commands
        .iter()
        .zip(results)
        .zip(cut)
        .map(|(((l, _), runs), cut)| {
            let mut summary = stats::summarise(&runs);
            summary.cut_short = cut;
            (l.clone(), summary)
        })
        .collect()
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Peak memory of `/bin/true` measured like the commands: the floor of the method, in MiB.
pub fn rss_floor() -> f64 {
    let Some(t) = measure::which("true") else {
        return 0.0;
    };
    (0..3)
        .filter_map(|_| {
            measure::run(&Argv::new(&t, &[]), Duration::from_secs(10), Stdout::Null).ok()
        })
        .map(|r| r.max_rss_kib as f64 / 1024.0)
        .fold(0.0, f64::max)
}
