//! Capped exponential backoff with full jitter, and "log once per failure state" bookkeeping so
//! an outage produces one line when it starts and one when it ends, not a line per retry.

use rand::Rng;
use std::time::Duration;

pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
    failing_since: Option<std::time::Instant>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff { attempt: 0, base, cap, failing_since: None }
    }

    /// Records a failure; returns the delay to sleep and whether this failure starts an outage
    /// (the caller logs only then).
    pub fn fail(&mut self) -> (Duration, bool) {
        let first = self.failing_since.is_none();
        if first {
            self.failing_since = Some(std::time::Instant::now());
        }
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = exp.min(self.cap);
        let jittered = rand::rng().random_range(ceiling / 2..=ceiling);
        (jittered, first)
    }

    /// Records a success; returns how long the outage lasted if one just ended.
    pub fn succeed(&mut self) -> Option<Duration> {
        self.attempt = 0;
        self.failing_since.take().map(|t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_reports_outage_edges_once() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let (d1, first) = b.fail();
        assert!(first && d1 <= Duration::from_millis(100));
        let mut last = d1;
        for _ in 0..20 {
            let (d, first) = b.fail();
            assert!(!first);
            assert!(d <= Duration::from_secs(2));
            last = d;
        }
        assert!(last >= Duration::from_secs(1), "capped delays stay near the cap");
        assert!(b.succeed().is_some());
        assert!(b.succeed().is_none());
        assert!(b.fail().1, "a new outage is reported again");
    }
}
