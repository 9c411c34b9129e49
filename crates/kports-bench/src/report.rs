//! The markdown report: machine, load, one table per N, medians across N, ratios, the project's
//! targets at N = 100,000, and the cross-checks. It can replace its own section inside an
//! existing document (BENCHMARKS.md) between two marker comments, leaving the prose around it.

use std::fmt::Write as _;

use crate::stats::{Summary, ratio, secs};

pub const BEGIN: &str = "<!-- kports-bench results: begin -->";
pub const END: &str = "<!-- kports-bench results: end -->";

/// Labels of the commands the targets are about.
pub const CONNS: &str = "kports conns";
pub const LISTEN: &str = "kports listen";
pub const SS_TANP: &str = "ss -tanpH";
pub const SS_TLNP: &str = "ss -tlnpH";

/// The N the project's targets are stated for.
pub const TARGET_N: usize = 100_000;

/// Where and how the run was made.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub mem_gib: f64,
    pub kernel: String,
    pub date: String,
    /// `(name, version)` of kports and each tool.
    pub tools: Vec<String>,
}

/// Everything measured at one N.
#[derive(Debug, Clone, Default)]
pub struct SizeResult {
    pub n: usize,
    pub listeners: usize,
    pub processes: usize,
    /// Seconds the load generator took to build the load.
    pub setup_secs: f64,
    /// `/proc/loadavg`'s 1-minute load before and after the measurement: how busy the machine was.
    pub load_before: f64,
    pub load_after: f64,
    /// Cross-check findings, in words; `problems` are the mismatches among them.
    pub checks: Vec<String>,
    pub problems: Vec<String>,
    /// Per command label, in the order they were run.
    pub commands: Vec<(String, Summary)>,
}

impl SizeResult {
    pub fn get(&self, label: &str) -> Option<&Summary> {
        self.commands
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, s)| s)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub machine: Machine,
    /// The exact command line to reproduce, build included.
    pub reproduce: String,
    pub runs: usize,
    pub warmup: usize,
    pub budget_secs: u64,
    /// Runs a command makes at one N before the time budget can stop it.
    pub min_runs: usize,
    /// Peak memory `/bin/true` shows when measured the same way: the floor of the method.
    pub rss_floor_mib: f64,
    pub sizes: Vec<SizeResult>,
}

/// `100000` -> `100,000`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1.23` -> `1.23x`; below 1, also how many times faster.
fn times(r: f64) -> String {
    if r < 1.0 {
        format!("{r:.3}x ({:.1}x faster)", 1.0 / r)
    } else {
        format!("{r:.2}x ({r:.1}x slower)")
    }
}

fn median_cell(s: &Summary) -> String {
    let mut c = s.median.map_or_else(|| "-".to_string(), secs);
    if !s.failed.is_empty() {
        let _ = write!(
            c,
            " ({} of {} failed)",
            s.failed.len(),
            s.failed.len() + s.secs.len()
        );
    }
    c
}

/// `5`, `3 (time budget)`, `4, 1 timed out`.
fn runs_cell(s: &Summary) -> String {
    let mut c = s.secs.len().to_string();
    for f in &s.failed {
        let _ = write!(c, ", 1 {}", f);
    }
    if s.cut_short {
        c.push_str(" (time budget)");
    }
    c
}

impl Report {
    /// The kports peak memory at `n`, over its commands.
    fn kports_peak(&self, r: &SizeResult) -> f64 {
        r.commands
            .iter()
            .filter(|(l, _)| l.starts_with("kports"))
            .map(|(_, s)| s.peak_mib)
            .fold(0.0, f64::max)
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let _ = writeln!(o, "{BEGIN}");
        let _ = writeln!(
            o,
            "Machine: {} CPUs ({}), {:.1} GiB RAM, Linux {}; run {}.  ",
            m.nproc, m.cpu, m.mem_gib, m.kernel, m.date
        );
        let _ = writeln!(o, "Tools: {}.  ", m.tools.join("; "));
        let _ = writeln!(o, "Reproduce: `{}`", self.reproduce);
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Each command ran {} times per N, interleaved (the order rotates every round), after {} unrecorded \
             warm-up round(s) (a command slower than 5 s at the previous N skips the warm-up; one that has used \
             {} s at one N stops after {} run(s)); standard output to /dev/null. Wall time is from fork to exit; \
             peak memory is the process's own `ru_maxrss` from `wait4` (the measurement's floor, `/bin/true`, \
             shows {:.1} MiB). Everything else on the machine is in every census too.",
            self.runs, self.warmup, self.budget_secs, self.min_runs, self.rss_floor_mib
        );
        let _ = writeln!(o);

        // Medians across N.
        let labels: Vec<&str> = self
            .sizes
            .first()
            .map(|s| s.commands.iter().map(|(l, _)| l.as_str()).collect())
            .unwrap_or_default();
        let _ = writeln!(o, "### Median wall seconds (peak MiB)\n");
        let mut head = String::from("| command |");
        let mut rule = String::from("|---|");
        for s in &self.sizes {
            let _ = write!(head, " N={} |", thousands(s.n));
            rule.push_str("--:|");
        }
        let _ = writeln!(o, "{head}\n{rule}");
        for l in &labels {
            let _ = write!(o, "| `{l}` |");
            for s in &self.sizes {
                match s.get(l) {
                    Some(x) => {
                        let _ = write!(o, " {} ({:.0}) |", median_cell(x), x.peak_mib);
                    }
                    None => o.push_str(" - |"),
                }
            }
            o.push('\n');
        }
        let _ = writeln!(o);

        // Ratios.
        let _ = writeln!(o, "### Ratios of medians, same run\n");
        let _ = writeln!(o, "{head}\n{rule}");
        for (a, b) in [(CONNS, SS_TANP), (LISTEN, SS_TLNP)] {
            let _ = write!(o, "| `{a}` / `{b}` |");
            for s in &self.sizes {
                let r = ratio(
                    s.get(a).and_then(|x| x.median),
                    s.get(b).and_then(|x| x.median),
                );
                let _ = write!(o, " {} |", r.map_or_else(|| "-".into(), times));
            }
            o.push('\n');
        }
        let _ = writeln!(o);

        // One table per N.
        for s in &self.sizes {
            let _ = writeln!(
                o,
                "### N = {}: {} established sockets, {} listeners, {} processes\n\n\
                 Load built in {:.1} s; machine load average {:.1} before and {:.1} after the runs.\n",
                thousands(s.n),
                thousands(2 * s.n),
                s.listeners,
                s.processes,
                s.setup_secs,
                s.load_before,
                s.load_after
            );
            let _ = writeln!(
                o,
                "| command | median s | min s | max s | median CPU s | peak MiB | runs |\n|---|--:|--:|--:|--:|--:|---|"
            );
            for (l, x) in &s.commands {
                let f = |v: Option<f64>| v.map_or_else(|| "-".into(), secs);
                let _ = writeln!(
                    o,
                    "| `{l}` | {} | {} | {} | {} | {:.1} | {} |",
                    f(x.median),
                    f(x.min),
                    f(x.max),
                    f(x.cpu_median),
                    x.peak_mib,
                    runs_cell(x)
                );
            }
            let _ = writeln!(o);
        }

        // Targets.
        let _ = writeln!(o, "### Targets at N = {}\n", thousands(TARGET_N));
        match self.sizes.iter().find(|s| s.n == TARGET_N) {
            None => {
                let _ = writeln!(o, "Not measured in this run (add {TARGET_N} to --sizes).\n");
            }
            Some(s) => {
                let _ = writeln!(o, "| target | measured | met |\n|---|---|---|");
                let med = |l: &str| s.get(l).and_then(|x| x.median);
                let yes = |b: bool| if b { "yes" } else { "**no**" };
                let conns = med(CONNS);
                match conns {
                    Some(c) => {
                        let _ = writeln!(
                            o,
                            "| `kports conns` at most 1.0 s | {} s | {} |",
                            secs(c),
                            yes(c <= 1.0)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            o,
                            "| `kports conns` at most 1.0 s | no successful run | **no** |"
                        );
                    }
                }
                let r = ratio(med(SS_TANP), conns);
                let _ = writeln!(
                    o,
                    "| `kports conns` at least 10x faster than `ss -tanpH` | {} | {} |",
                    r.map_or_else(|| "-".into(), |r| format!("{r:.1}x faster")),
                    yes(r.is_some_and(|r| r >= 10.0))
                );
                let r = ratio(med(LISTEN), med(SS_TLNP));
                let _ = writeln!(
                    o,
                    "| `kports listen` at most 0.3x `ss -tlnpH` | {} | {} |",
                    r.map_or_else(|| "-".into(), |r| format!("{r:.3}x")),
                    yes(r.is_some_and(|r| r <= 0.3))
                );
                let peak = self.kports_peak(s);
                let _ = writeln!(
                    o,
                    "| kports peak memory at most 64 MiB | {peak:.1} MiB | {} |",
                    yes(peak > 0.0 && peak <= 64.0)
                );
                let _ = writeln!(o);
            }
        }

        // Cross-checks.
        let _ = writeln!(o, "### Cross-checks\n");
        for s in &self.sizes {
            for c in &s.checks {
                let _ = writeln!(o, "- N={}: {c}", thousands(s.n));
            }
            for p in &s.problems {
                let _ = writeln!(o, "- N={}: **MISMATCH**: {p}", thousands(s.n));
            }
        }
        let _ = writeln!(o, "{END}");
        o
    }
}

/// Puts `section` (which carries its own markers) in place of the marked section of
/// `document`; `None` if `document` has no complete marked section.
pub fn splice(document: &str, section: &str) -> Option<String> {
    let b = document.find(BEGIN)?;
    let e = document[b..].find(END)? + b + END.len();
    let rest = document[e..].strip_prefix('\n').unwrap_or(&document[e..]);
    Some(format!("{}{section}{rest}", &document[..b]))
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn splice_replaces_only_the_marked_section() {
        let doc = format!("# Title\n\nprose\n\n{BEGIN}\nold\n{END}\n\nmore prose\n");
        let new = format!("{BEGIN}\nnew\n{END}\n");
        assert_eq!(
            splice(&doc, &new).unwrap(),
            format!("# Title\n\nprose\n\n{BEGIN}\nnew\n{END}\n\nmore prose\n")
        );
        assert_eq!(splice("no markers", &new), None);
        assert_eq!(splice(&format!("{END} then {BEGIN}"), &new), None);
    }

    fn summary(median: f64, peak: f64) -> Summary {
        Summary {
            secs: vec![median],
            median: Some(median),
            cpu_median: Some(median),
            min: Some(median),
            max: Some(median),
            peak_mib: peak,
            failed: vec![],
            cut_short: false,
        }
    }

    #[test]
    fn targets_are_judged_from_medians() {
        let s = SizeResult {
            n: TARGET_N,
            commands: vec![
                (CONNS.into(), summary(0.8, 40.0)),
                (LISTEN.into(), summary(0.5, 30.0)),
                (SS_TANP.into(), summary(12.0, 38.0)),
                (SS_TLNP.into(), summary(1.5, 34.0)),
            ],
            ..SizeResult::default()
        };
        let md = Report {
            sizes: vec![s],
            ..Report::default()
        }
        .markdown();
        assert!(
            md.contains("| `kports conns` at most 1.0 s | 0.800 s | yes |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| `kports conns` at least 10x faster than `ss -tanpH` | 15.0x faster | yes |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| `kports listen` at most 0.3x `ss -tlnpH` | 0.333x | **no** |"),
            "{md}"
        );
        assert!(
            md.contains("| kports peak memory at most 64 MiB | 40.0 MiB | yes |"),
            "{md}"
        );
        assert!(md.starts_with(BEGIN) && md.trim_end().ends_with(END));
    }
}
