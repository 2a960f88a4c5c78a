//! The one retry loop every part of the feeder uses: start-up waits, receives, batch loads,
//! acknowledgements, seeding.
//!
//! Capped exponential backoff with full jitter; one log line when failures start and one when
//! they end (an outage must not print a line per attempt); every pause ends at the shutdown
//! signal, and an attempt in progress runs on only as the caller allows ([`OnShutdown`]).
//! What counts as retryable is the caller's decision ([`Next`]); this module never inspects an
//! error beyond its `Display`, and never logs more of it than that.

use crate::shutdown::Shutdown;
use rand::Rng;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the caller wants after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Retry,
    GiveUp,
}

/// When to stop retrying a failure the caller calls retryable.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Forever,
    Attempts(u32),
    /// Gives up once failures have lasted this long without a success.
    For(Duration),
}

/// What happens to an attempt in progress when shutdown is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnShutdown {
    /// Dropped at the signal (waits: connects, long polls).
    Drop,
    /// May finish within the grace after the signal (a COPY about to commit, deletes).
    Grace,
    /// No new attempt starts after the signal, but the one running finishes (seeding).
    Finish,
}

#[derive(Debug)]
pub enum Failed<E> {
    /// A failure the caller gave up on, or the last one when the limit ran out.
    Error(E),
    /// Shutdown was requested before an attempt succeeded.
    Stopped,
}

pub struct Retry<'a> {
    what: &'a str,
    note: &'a str,
    base: Duration,
    cap: Duration,
    limit: Limit,
    on_shutdown: OnShutdown,
    quiet: bool,
    /// Set while an outage is being reported, shared by loops that fail together (the
    /// receivers): only the first to fail and the first to recover log.
    outage: Option<&'a AtomicBool>,
    shutdown: &'a Shutdown,
}

impl<'a> Retry<'a> {
    /// Retries forever from 200 ms up to 10 s, logging as `what` ("PostgreSQL", "SQS"): one
    /// line "`what`: error; retrying with backoff" when failures start, one "`what` reachable
    /// again after N s" when they end.
    pub fn new(what: &'a str, shutdown: &'a Shutdown) -> Self {
        Retry {
            what,
            note: "",
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            limit: Limit::Forever,
            on_shutdown: OnShutdown::Drop,
            quiet: false,
            outage: None,
            shutdown,
        }
    }

    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base = base;
        self.cap = cap;
        self
    }

    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = limit;
        self
    }

    pub fn on_shutdown(mut self, on_shutdown: OnShutdown) -> Self {
        self.on_shutdown = on_shutdown;
        self
    }

    /// Words added to the line that reports failures starting ("waiting up to 30 s").
    pub fn note(mut self, note: &'a str) -> Self {
        self.note = note;
        self
    }

    /// Several loops share one outage: one line when the first fails, one when one recovers.
    pub fn shared_outage(mut self, flag: &'a AtomicBool) -> Self {
        self.outage = Some(flag);
        self
    }

    /// No log lines: the caller reports the outcome itself (deletes report once per batch).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Runs `attempt` until it succeeds, `next` gives up, the limit runs out or shutdown ends
    /// it. `attempt` gets the attempt number, from 1.
    pub async fn run<T, E, F, Fut>(
        self,
        mut attempt: F,
        mut next: impl FnMut(&E) -> Next,
    ) -> Result<T, Failed<E>>
    where
        E: Display,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut backoff = Backoff::new(self.base, self.cap);
        let mut n = 0u32;
        loop {
            if self.shutdown.requested() && n > 0 {
                return Err(Failed::Stopped);
            }
            n += 1;
            let fut = attempt(n);
            let result = match self.on_shutdown {
                OnShutdown::Drop => self.shutdown.unless_requested(fut).await,
                OnShutdown::Grace => self.shutdown.within_grace(fut).await,
                OnShutdown::Finish => Some(fut.await),
            };
            let Some(result) = result else { return Err(Failed::Stopped) };
            let e = match result {
                Ok(v) => {
                    if let Some(outage) = backoff.succeed() {
                        let first = self.outage.is_none_or(|f| f.swap(false, Ordering::Relaxed));
                        if !self.quiet && first {
                            tracing::info!(
                                "{} reachable again after {:.1} s",
                                self.what,
                                outage.as_secs_f64()
                            );
                        }
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            let exhausted = match self.limit {
                Limit::Forever => false,
                Limit::Attempts(max) => n >= max,
                Limit::For(d) => backoff.failing_for() >= d,
            };
            if next(&e) == Next::GiveUp || exhausted {
                return Err(Failed::Error(e));
            }
            let (delay, first) = backoff.fail();
            let first = first && self.outage.is_none_or(|f| !f.swap(true, Ordering::Relaxed));
            if first && !self.quiet {
                tracing::warn!("{}: {e}; retrying with backoff{}", self.what, self.note);
            }
            if self.shutdown.unless_requested(tokio::time::sleep(delay)).await.is_none() {
                return Err(Failed::Stopped);
            }
        }
    }
}

/// Capped exponential backoff with full jitter, and when the current run of failures began.
struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
    failing_since: Option<Instant>,
}

impl Backoff {
    fn new(base: Duration, cap: Duration) -> Self {
        Backoff { attempt: 0, base, cap, failing_since: None }
    }

    /// Records a failure; returns the delay and whether it starts a run of failures.
    fn fail(&mut self) -> (Duration, bool) {
        let first = self.failing_since.is_none();
        self.failing_since.get_or_insert_with(Instant::now);
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = exp.min(self.cap);
        (rand::rng().random_range(ceiling / 2..=ceiling), first)
    }

    fn failing_for(&self) -> Duration {
        self.failing_since.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Records a success; returns how long the failures lasted if there were any.
    fn succeed(&mut self) -> Option<Duration> {
        self.attempt = 0;
        self.failing_since.take().map(|t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn backoff_grows_to_the_cap_and_reports_outage_edges_once() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let (d1, first) = b.fail();
        assert!(first && d1 <= Duration::from_millis(100));
        let mut last = d1;
        for _ in 0..20 {
            let (d, first) = b.fail();
            assert!(!first && d <= Duration::from_secs(2));
            last = d;
        }
        assert!(last >= Duration::from_secs(1), "capped delays stay near the cap");
        assert!(b.succeed().is_some());
        assert!(b.succeed().is_none());
        assert!(b.fail().1, "a new outage is reported again");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_gives_up_when_told_and_stops_at_the_signal() {
        let (trigger, shutdown) = Shutdown::manual();
        let calls = AtomicU32::new(0);
        let ok: Result<u32, Failed<String>> = Retry::new("test", &shutdown)
            .run(
                |n| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    async move {
                        if n < 3 {
                            Err(format!("fail {n}"))
                        } else {
                            Ok(n)
                        }
                    }
                },
                |_| Next::Retry,
            )
            .await;
        assert_eq!(ok.ok(), Some(3));
        let fatal: Result<(), Failed<&str>> =
            Retry::new("test", &shutdown).run(|_| async { Err("fatal") }, |_| Next::GiveUp).await;
        assert!(matches!(fatal, Err(Failed::Error("fatal"))));
        let limited: Result<(), Failed<&str>> = Retry::new("test", &shutdown)
            .limit(Limit::Attempts(4))
            .run(|_| async { Err("again") }, |_| Next::Retry)
            .await;
        assert!(matches!(limited, Err(Failed::Error("again"))));
        let s = shutdown.clone();
        let forever = tokio::spawn(async move {
            Retry::new("test", &s)
                .run(|_| async { Err::<(), _>("down") }, |_| Next::Retry)
                .await
                .is_err()
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        let at = tokio::time::Instant::now();
        trigger.fire();
        assert!(forever.await.expect("join"));
        assert!(at.elapsed() < Duration::from_millis(10), "the pause ends at the signal");
    }
}
