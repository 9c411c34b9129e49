//! The refresh loop: one round now, then one every interval, jittered so that a DaemonSet's
//! agents started together do not all take their census and probe at the same moment.
//!
//! The random source is a seeded [`Rng`] and the clock is tokio's, so tests run the loop on a
//! paused clock and check every delay exactly.

use std::future::Future;
use std::time::Duration;

use crate::state::{AgentState, Round};

/// One round of work the binary provides: this node's report and its probes of its peers.
pub trait Collector: Send + Sync + 'static {
    fn collect(&self) -> impl Future<Output = Round> + Send;
}

impl<F, Fut> Collector for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Round> + Send,
{
    fn collect(&self) -> impl Future<Output = Round> + Send {
        self()
    }
}

/// When rounds run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The mean time from the end of one round to the start of the next.
    pub interval: Duration,
    /// How far a delay may stray from `interval`, as a fraction of it (clamped to 0..=0.5).
    pub jitter: f64,
    /// A round that takes longer is abandoned and counted as failed.
    pub round_timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            interval: Duration::from_secs(30),
            jitter: 0.2,
            round_timeout: Duration::from_secs(120),
        }
    }
}

impl Schedule {
    /// The delay before the next round: uniform in `interval × (1 ± jitter)`.
    pub fn delay(&self, rng: &mut Rng) -> Duration {
        let jitter = self.jitter.clamp(0.0, 0.5);
        let factor = 1.0 + jitter * (2.0 * rng.next_f64() - 1.0);
        self.interval.mul_f64(factor)
    }
}

/// SplitMix64: small, fast, and the same sequence for the same seed on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs rounds into `state` until `shutdown` completes (checked between rounds and while one
/// runs).
pub async fn run<C: Collector>(
    collector: C,
    state: AgentState,
    schedule: Schedule,
    seed: u64,
    shutdown: impl Future<Output = ()>,
) {
    let mut rng = Rng::new(seed);
    tokio::pin!(shutdown);
    loop {
        let round = tokio::select! {
            r = tokio::time::timeout(schedule.round_timeout, collector.collect()) => r,
            () = &mut shutdown => return,
        };
        let round = round.unwrap_or_else(|_| {
            let why = format!("the round took longer than {:?}", schedule.round_timeout);
            Round {
                report: Err(why.clone()),
                probes: Some(Err(why)),
            }
        });
        state.update(round);
        tokio::select! {
            () = tokio::time::sleep(schedule.delay(&mut rng)) => {}
            () = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ProbeRun, Report};
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    fn schedule(jitter: f64) -> Schedule {
        Schedule {
            interval: Duration::from_secs(30),
            jitter,
            round_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn delays_stay_within_the_jitter_and_follow_the_seed() {
        let s = schedule(0.2);
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..1000).map(|_| s.delay(&mut rng)).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert!(
            a.iter()
                .all(|d| *d >= Duration::from_secs(24) && *d <= Duration::from_secs(36))
        );
        // Spread over the whole window, not stuck at one value.
        assert!(a.iter().any(|d| *d < Duration::from_secs(26)));
        assert!(a.iter().any(|d| *d > Duration::from_secs(34)));
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let mut rng = Rng::new(1);
        assert_eq!(schedule(0.0).delay(&mut rng), Duration::from_secs(30));
        // Jitter beyond one half is clamped: a delay never drops under half the interval.
        let wild = schedule(5.0);
        assert!((0..1000).all(|_| wild.delay(&mut rng) >= Duration::from_secs(15)));
    }

    fn ok_round() -> Round {
        Round {
            report: Ok(Report {
                document: serde_json::json!({"kind": "report"}),
                findings: vec![],
                took: Duration::ZERO,
            }),
            probes: Some(Ok(ProbeRun {
                rows: vec![],
                took: Duration::ZERO,
            })),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_run_at_the_jittered_delays() {
        let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let t = times.clone();
        let collector = move || {
            t.lock().unwrap().push(Instant::now());
            async { ok_round() }
        };
        let state = AgentState::new("n1");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = schedule(0.3);
        let task = tokio::spawn(run(collector, state.clone(), s, 42, async {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_secs(200)).await;
        stop.send(()).unwrap();
        task.await.unwrap();
        assert!(state.ready());
        let times = times.lock().unwrap().clone();
        let mut rng = Rng::new(42);
        let expected: Vec<Duration> = (1..times.len()).map(|_| s.delay(&mut rng)).collect();
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() >= 5, "{gaps:?}");
        // The paused clock counts in whole milliseconds.
        assert_eq!(gaps.len(), expected.len());
        for (gap, want) in gaps.iter().zip(&expected) {
            assert!(
                gap.abs_diff(*want) < Duration::from_millis(1),
                "{gaps:?} != {expected:?}"
            );
        }
        assert!(
            gaps.windows(2).any(|w| w[0] != w[1]),
            "not jittered: {gaps:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_round_is_abandoned_and_counted() {
        let calls = Arc::new(Mutex::new(0));
        let c = calls.clone();
        let collector = move || {
            *c.lock().unwrap() += 1;
            std::future::pending::<Round>()
        };
        let state = AgentState::new("n1");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(collector, state.clone(), schedule(0.0), 1, async {
            let _ = stopped.await;
        }));
        // Rounds start at 0 s and 35 s (5 s timeout + 30 s interval) and end 5 s later.
        tokio::time::sleep(Duration::from_secs(45)).await;
        stop.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(*calls.lock().unwrap(), 2);
        assert!(!state.ready());
        let m = state.metrics().encode();
        assert!(
            m.contains("kports_refresh_failures_total{phase=\"report\"} 2"),
            "{m}"
        );
    }
}
