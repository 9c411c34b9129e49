//! Summaries of repeated runs: the median (the machine is shared and noisy, so the mean would
//! follow the outliers), the range, and the peak memory of any run.

use crate::measure::{End, Run};

/// What the runs of one command at one N come to.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Seconds of the runs that completed, in run order.
    pub secs: Vec<f64>,
    pub median: Option<f64>,
    /// Median CPU seconds (user plus system) of the completed runs: less sensitive than wall
    /// time to other load on a shared machine.
    pub cpu_median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Largest `ru_maxrss` of any run, in MiB.
    pub peak_mib: f64,
    /// Runs that did not exit with status 0, and how they ended.
    pub failed: Vec<End>,
    /// Fewer runs than asked for were made, to stay within the time budget.
    pub cut_short: bool,
}

/// The median of `xs` (the mean of the two middle values for an even count).
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Summarises runs; a run that timed out or failed is not a time and is listed in `failed`.
pub fn summarise(runs: &[Run]) -> Summary {
    let secs: Vec<f64> = runs
        .iter()
        .filter(|r| r.end.ok())
        .map(|r| r.wall.as_secs_f64())
        .collect();
    Summary {
        median: median(&secs),
        cpu_median: median(
            &runs
                .iter()
                .filter(|r| r.end.ok())
                .map(|r| r.cpu.as_secs_f64())
                .collect::<Vec<_>>(),
        ),
        min: secs.iter().copied().min_by(f64::total_cmp),
        max: secs.iter().copied().max_by(f64::total_cmp),
        peak_mib: runs.iter().map(|r| r.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
        failed: runs.iter().filter(|r| !r.end.ok()).map(|r| r.end).collect(),
        secs,
        cut_short: false,
    }
}

/// `a / b` of two medians, when both exist.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// A duration in seconds for tables: three significant decimals below 10 s.
pub fn secs(d: f64) -> String {
    if d < 0.1 {
        format!("{d:.4}")
    } else if d < 10.0 {
        format!("{d:.3}")
    } else {
        format!("{d:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(secs: f64, rss: u64, end: End) -> Run {
        Run {
            wall: Duration::from_secs_f64(secs),
            cpu: Duration::from_secs_f64(secs / 2.0),
            max_rss_kib: rss,
            end,
            stdout: vec![],
            stderr: vec![],
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn failed_runs_are_not_times_but_count_for_memory() {
        let s = summarise(&[
            run(0.5, 1024, End::Exit(0)),
            run(120.0, 8192, End::TimedOut),
            run(0.3, 2048, End::Exit(0)),
            run(0.4, 1024, End::Exit(0)),
        ]);
        assert_eq!(s.secs, [0.5, 0.3, 0.4]);
        assert_eq!((s.median, s.min, s.max), (Some(0.4), Some(0.3), Some(0.5)));
        assert_eq!(s.cpu_median, Some(0.2));
        assert_eq!(s.peak_mib, 8.0);
        assert_eq!(s.failed, [End::TimedOut]);
    }

    #[test]
    fn ratio_needs_both_sides() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(None, Some(4.0)), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    }

    #[test]
    fn seconds_are_shown_with_sensible_precision() {
        assert_eq!(secs(0.01234), "0.0123");
        assert_eq!(secs(1.23456), "1.235");
        assert_eq!(secs(22.61), "22.6");
    }
}
