//! Shutdown signalling: SIGINT or SIGTERM flips a watch channel that every wait selects on.
//!
//! Owns the signal handlers and the one rule every task follows: a wait (a sleep, a long poll,
//! a connect, a retry) ends at the signal; work that can still be finished (a COPY about to
//! commit, deletes of committed messages) may use the [`GRACE`] after it, and is dropped at its
//! end. So the process exits within about a second of the signal. A second signal exits at
//! once with [`crate::exit::SECOND_SIGNAL`]. This module never decides what happens to the
//! work in flight; the pipeline does.

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long after the signal an operation in progress may still complete. Leaves room inside
/// the promised second for the final log lines and the exit.
pub const GRACE: Duration = Duration::from_millis(750);

#[derive(Clone)]
pub struct Shutdown(watch::Receiver<Option<Instant>>);

/// Requests shutdown by hand (tests, and the pipeline when it stops on a fatal error).
#[derive(Clone)]
pub struct Trigger(std::sync::Arc<watch::Sender<Option<Instant>>>);

impl Trigger {
    pub fn fire(&self) {
        self.0.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(Instant::now());
                true
            } else {
                false
            }
        });
    }
}

impl Shutdown {
    /// A shutdown flag with no signal handler: fired through the [`Trigger`].
    pub fn manual() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(None);
        (Trigger(std::sync::Arc::new(tx)), Shutdown(rx))
    }

    /// Installs the SIGINT/SIGTERM handlers.
    pub fn install() -> Self {
        let (trigger, shutdown) = Self::manual();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                "shutdown requested: committing and acknowledging what can be within a second"
            );
            trigger.fire();
            wait_for_signal().await;
            tracing::warn!(
                "second signal: exiting now (unacknowledged messages will be redelivered)"
            );
            std::process::exit(crate::exit::SECOND_SIGNAL.into());
        });
        shutdown
    }

    pub fn requested(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Resolves at the signal.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// Resolves when the grace after the signal has run out.
    pub async fn expired(&self) {
        let mut rx = self.0.clone();
        let at = rx.wait_for(Option::is_some).await.ok().and_then(|v| *v);
        match at {
            Some(at) => tokio::time::sleep_until(at + GRACE).await,
            // The sender is gone: no signal can come any more.
            None => std::future::pending().await,
        }
    }

    /// Runs `fut` to completion unless the signal comes first.
    pub async fn unless_requested<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.wait() => None,
            v = fut => Some(v),
        }
    }

    /// Runs `fut` to completion unless the grace after the signal runs out first.
    pub async fn within_grace<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            v = fut => Some(v),
            _ = self.expired() => None,
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_end_at_the_signal_and_work_at_the_grace() {
        let (trigger, shutdown) = Shutdown::manual();
        assert!(!shutdown.requested());
        let s = shutdown.clone();
        let slow = tokio::spawn(async move {
            s.within_grace(tokio::time::sleep(Duration::from_secs(60))).await
        });
        let s = shutdown.clone();
        let wait = tokio::spawn(async move {
            s.unless_requested(tokio::time::sleep(Duration::from_secs(60))).await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let fired = Instant::now();
        trigger.fire();
        assert_eq!(wait.await.expect("join"), None);
        assert_eq!(slow.await.expect("join"), None);
        assert!(fired.elapsed() <= GRACE + Duration::from_millis(1));
        assert!(shutdown.requested());
    }
}
