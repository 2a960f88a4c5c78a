//! The run loop, generic over a [`Source`] and a [`Store`]: receivers → batcher → settler.
//!
//! - A pool of receivers ([`crate::receivers`]) feeds a channel bounded by bytes.
//! - The batcher takes what has arrived, up to the batch's rows and bytes; while receives come
//!   back full (a backlog) it waits up to the linger for a fuller batch, and as soon as one
//!   comes back short it loads what it has: batches follow the arrival rate.
//! - The settler ([`crate::settle`]) commits each batch and acknowledges after the commit.
//! - Shutdown: receives end at the signal; what was already received is loaded if it commits
//!   within the grace, and acknowledged within it; the rest is left to redelivery.
//!
//! Owns the order of those steps and the command's [`Outcome`]; never talks to SQS or
//! PostgreSQL itself.

use crate::exit::Outcome;
use crate::receivers::{Held, Pool};
use crate::settle::{OwnAcks, Settler, Stop};
use crate::shutdown::Shutdown;
use crate::source::{Message, Source};
use crate::store::Store;
use crate::telemetry::Counters;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{error::TryRecvError, UnboundedReceiver};
use tokio::task::JoinSet;

/// How the loop ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Until shutdown is requested.
    Forever,
    /// Until the source is drained.
    UntilEmpty,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// Most rows per transaction.
    pub batch_rows: usize,
    /// Most bytes per transaction (bodies and ids).
    pub batch_bytes: usize,
    /// Longest a partial batch waits for more while a backlog is being received.
    pub linger: Duration,
}

impl Settings {
    /// Bytes received and not yet settled, at most: two batches.
    fn budget(&self) -> usize {
        self.batch_bytes.saturating_mul(2).max(1 << 20)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError<SE: std::error::Error + 'static, TE: std::error::Error + 'static> {
    #[error(transparent)]
    Source(SE),
    #[error(transparent)]
    Store(TE),
}

enum Gathered<A> {
    Batch(Vec<Held<A>>),
    /// Shutdown: what had been received, to settle within the grace.
    Stopped(Vec<Held<A>>),
    /// Every receiver has ended and the channel is empty.
    Closed,
}

pub async fn run<S: Source, T: Store>(
    source: Arc<S>,
    store: T,
    settings: &Settings,
    shutdown: &Shutdown,
    counters: Arc<Counters>,
) -> Result<Outcome, PipelineError<S::Error, T::Error>> {
    let (stop_all, stop) = Shutdown::manual();
    let forward = {
        let (shutdown, stop_all) = (shutdown.clone(), stop_all.clone());
        tokio::spawn(async move {
            shutdown.wait().await;
            stop_all.fire();
        })
    };
    let drain = settings.mode == Mode::UntilEmpty;
    let (own_acks, own_acks_seen) = tokio::sync::watch::channel(OwnAcks::default());
    let (pool, mut rx) = Pool::start(
        Arc::clone(&source),
        settings.budget(),
        drain,
        stop,
        own_acks_seen,
        Arc::clone(&counters),
    );
    let mut settler = Settler {
        source: Arc::clone(&source),
        store,
        shutdown: shutdown.clone(),
        counters: Arc::clone(&counters),
        acks: JoinSet::new(),
        ack_failed: None,
        stop_receiving: stop_all.clone(),
        own_acks,
    };
    let mut fatal = None;
    loop {
        let (batch, last) = match gather(&mut rx, &pool, settings, shutdown).await {
            Gathered::Batch(b) => (b, false),
            Gathered::Stopped(b) => (b, true),
            Gathered::Closed => break,
        };
        if settler.acks_refused() {
            // What was received and not loaded stays in the queue for the next run.
            break;
        }
        if !batch.is_empty() {
            let messages: Vec<Message<S::Ack>> = batch.into_iter().map(|h| h.message).collect();
            match settler.settle(&messages).await {
                Ok(()) => {}
                Err(Stop::Interrupted) => break,
                Err(Stop::Fatal(e)) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        if last {
            break;
        }
    }
    stop_all.fire();
    forward.abort();
    settler.finish_acks().await;
    metrics::gauge!("feeder_receivers").set(0.0);
    if let Some(e) = fatal {
        return Err(PipelineError::Store(e));
    }
    if let Some(e) = settler.ack_failed.take().or_else(|| pool.take_fatal()) {
        return Err(PipelineError::Source(e));
    }
    let c = &counters;
    let settled = c.get(|c| &c.deleted) + c.get(|c| &c.released) + c.get(|c| &c.delete_failures);
    let left = c.get(|c| &c.received).saturating_sub(settled);
    let unfinished = drain && !pool.drained();
    Ok(Outcome {
        released: c.get(|c| &c.released),
        interrupted: shutdown.requested() && (left > 0 || unfinished),
    })
}

/// The next batch: what has arrived, more while a backlog is being received (up to the
/// linger), up to the batch's rows and bytes.
async fn gather<S: Source>(
    rx: &mut UnboundedReceiver<Held<S::Ack>>,
    pool: &Pool<S>,
    settings: &Settings,
    shutdown: &Shutdown,
) -> Gathered<S::Ack> {
    let first = tokio::select! {
        biased;
        _ = shutdown.wait() => return Gathered::Stopped(take_all(rx, Vec::new())),
        m = rx.recv() => match m {
            Some(m) => m,
            None => return Gathered::Closed,
        },
    };
    let mut bytes = first.message.row.weight();
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + settings.linger;
    while batch.len() < settings.batch_rows && bytes < settings.batch_bytes {
        let next = match rx.try_recv() {
            Ok(m) => Some(m),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) if pool.arrivals_paused() => break,
            Err(TryRecvError::Empty) => tokio::select! {
                biased;
                _ = shutdown.wait() => None,
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(deadline) => None,
            },
        };
        let Some(m) = next else { break };
        bytes += m.message.row.weight();
        batch.push(m);
    }
    if shutdown.requested() {
        return Gathered::Stopped(take_all(rx, batch));
    }
    Gathered::Batch(batch)
}

/// Everything already received: at shutdown it is loaded if it commits within the grace.
fn take_all<A>(rx: &mut UnboundedReceiver<Held<A>>, mut batch: Vec<Held<A>>) -> Vec<Held<A>> {
    while let Ok(m) = rx.try_recv() {
        batch.push(m);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;
    use crate::store::Class;
    use crate::testing::{rows, MemorySource, MemoryStore};
    use std::sync::atomic::Ordering;

    fn settings(mode: Mode) -> Settings {
        Settings { mode, batch_rows: 25, batch_bytes: 1 << 20, linger: Duration::from_millis(50) }
    }

    struct Run {
        source: Arc<MemorySource>,
        store: Arc<MemoryStore>,
        result: Result<Outcome, String>,
    }

    /// Drains `n` messages from a memory source into `store`.
    async fn drain(n: usize, store: MemoryStore, lease: Option<Duration>) -> Run {
        let store = Arc::new(store);
        let source = Arc::new(MemorySource::new(rows(n), lease, Arc::clone(&store.committed)));
        let result = drain_from(&source, &store).await;
        Run { source, store, result }
    }

    /// Runs a drain of `source` into `store` to its end.
    async fn drain_from(
        source: &Arc<MemorySource>,
        store: &Arc<MemoryStore>,
    ) -> Result<Outcome, String> {
        let (_trigger, shutdown) = Shutdown::manual();
        let counters = Arc::new(Counters::default());
        run(Arc::clone(source), Arc::clone(store), &settings(Mode::UntilEmpty), &shutdown, counters)
            .await
            .map_err(|e| e.to_string())
    }

    fn ids(prefix: &[usize]) -> Vec<String> {
        prefix.iter().map(|i| format!("m{i:04}")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledges_only_after_commit_and_retries_transient_failures() {
        let store = MemoryStore { transient: 3.into(), ..Default::default() };
        let r = drain(95, store, None).await;
        assert_eq!(r.result, Ok(Outcome::default()));
        assert_eq!(r.source.acked(), ids(&(0..95).collect::<Vec<_>>()));
        assert!(r.source.acked_before_commit.lock().expect("lock").is_empty());
        assert!(r.store.loads.load(Ordering::Relaxed) >= 4 + 95 / 25);
    }

    #[tokio::test(start_paused = true)]
    async fn poison_messages_become_rejects_and_the_rest_loads() {
        let mut store = MemoryStore::default();
        store.poison.insert("m0007".into(), Class::Permanent);
        store.poison.insert("m0031".into(), Class::Permanent);
        let r = drain(40, store, None).await;
        assert_eq!(r.result, Ok(Outcome::default()));
        let rejects = r.store.rejects.lock().expect("lock").clone();
        assert_eq!(
            rejects,
            vec![
                ("m0007".to_owned(), "23514 constraint \"c\"".to_owned()),
                ("m0031".to_owned(), "23514 constraint \"c\"".to_owned())
            ]
        );
        assert_eq!(r.source.acked().len(), 40, "rows and rejects are all acknowledged");
        assert!(r.source.acked_before_commit.lock().expect("lock").is_empty());
        assert!(r.store.loads.load(Ordering::Relaxed) < 40, "bisected, not retried forever");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_refused_even_as_a_reject_is_released_not_acknowledged() {
        let mut store = MemoryStore::default();
        store.poison.insert("m0003".into(), Class::Permanent);
        store.unrejectable.insert("m0003".into());
        let r = drain(10, store, Some(Duration::from_secs(30))).await;
        let outcome = r.result.expect("runs");
        assert_eq!(outcome.released, 1);
        assert_eq!(outcome.code(), exit::RELEASED);
        assert_eq!(*r.source.released.lock().expect("lock"), ids(&[3]));
        assert!(!r.source.acked().contains(&"m0003".to_owned()));
        assert_eq!(r.source.acked().len(), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unclassified_error_is_retried_then_isolated() {
        let mut store = MemoryStore::default();
        store.poison.insert("m0002".into(), Class::Unclassified("XX999".into()));
        let r = drain(5, store, None).await;
        assert_eq!(r.result, Ok(Outcome::default()));
        assert_eq!(r.store.rejects.lock().expect("lock").len(), 1);
        // 3 attempts on the batch, then halves (one of them 3 times more), down to one message.
        assert!(r.store.loads.load(Ordering::Relaxed) >= 3 + 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_batch_is_kept_alive_until_it_commits() {
        let store = MemoryStore { delay: Some(Duration::from_secs(25)), ..Default::default() };
        let r = drain(10, store, Some(Duration::from_secs(10))).await;
        assert_eq!(r.result, Ok(Outcome::default()));
        assert!(r.source.kept_alive.load(Ordering::Relaxed) >= 2);
        assert_eq!(r.source.acked().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_whose_counts_are_refused_stops_with_the_error_instead_of_polling() {
        let store = Arc::new(MemoryStore::default());
        let source = Arc::new(MemorySource::new(rows(30), None, Arc::clone(&store.committed)));
        source.counts_refused.store(true, std::sync::atomic::Ordering::Relaxed);
        let outcome = tokio::time::timeout(Duration::from_secs(600), drain_from(&source, &store))
            .await
            .expect("the drain ends");
        assert!(outcome.is_err(), "{outcome:?}");
        assert_eq!(source.acked().len(), 30, "what was committed is acknowledged");
    }

    /// Drains `n` messages whose receives take `receive` and whose acknowledgements take 30 ms
    /// (SQS counts a message in flight until its delete is done); checks all were acknowledged.
    async fn drain_with_slow_acknowledgements(n: usize, receive: Duration) -> Arc<MemorySource> {
        let store = Arc::new(MemoryStore::default());
        let mut source = MemorySource::new(rows(n), None, Arc::clone(&store.committed));
        source.receive_delay = receive;
        source.idle_wait = Duration::ZERO;
        source.ack_delay = Duration::from_millis(30);
        let source = Arc::new(source);
        assert_eq!(drain_from(&source, &store).await, Ok(Outcome::default()));
        assert_eq!(source.acked().len(), n);
        source
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_when_its_own_last_acknowledgement_does_not_a_poll_pause_later() {
        // The source counts messages in flight until their acknowledgement is done, as SQS
        // does: a receiver that finds the queue empty while the feeder's own deletes are under
        // way must ask again when they end, not a whole pause later.
        let source = drain_with_slow_acknowledgements(95, Duration::from_millis(5)).await;
        // Virtual time: one more empty receive after the last acknowledgement, then the end.
        let after = source.last_ack_at.lock().expect("lock").expect("acknowledged").elapsed();
        assert!(
            after <= source.receive_delay * 2,
            "the drain ended {after:?} after its last acknowledgement (a poll pause is {:?})",
            crate::receivers::DRAIN_POLL_PAUSE
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_asks_again_once_its_own_acknowledgements_have_all_ended_not_after_each() {
        // Batches of 25 commit every few milliseconds and each acknowledgement takes 30 ms, so
        // several are under way when the queue runs dry, with several receivers. Each receiver
        // read the queue's counts before retiring, and the last one again after each
        // acknowledgement that ended: 7 reads (and receives) where 2 can end the drain, one
        // when the queue runs dry and one once the feeder's own deletes have all ended.
        let source = drain_with_slow_acknowledgements(200, Duration::from_millis(1)).await;
        let reads = source.counts_read.load(Ordering::Relaxed);
        assert_eq!(reads, 2, "the queue's counts were read {reads} times");
        let after = source.last_ack_at.lock().expect("lock").expect("acknowledged").elapsed();
        assert!(
            after <= source.receive_delay * 2,
            "ended {after:?} after the last acknowledgement"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_acknowledgement_the_source_denies_stops_the_run_with_that_error() {
        // Retrying a denied delete would load every message again as a duplicate, for ever.
        let store = Arc::new(MemoryStore::default());
        let source = Arc::new(MemorySource::new(rows(300), None, Arc::clone(&store.committed)));
        source.acks_denied.store(true, Ordering::Relaxed);
        let outcome = tokio::time::timeout(Duration::from_secs(600), drain_from(&source, &store))
            .await
            .expect("the run ends");
        assert_eq!(outcome, Err("memory source failed".to_owned()));
        assert!(source.acked().is_empty());
        let committed = store.committed.lock().expect("lock").len();
        assert!(committed < 300, "loading stopped at the first denied acknowledgement");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_waits_for_messages_another_consumer_holds() {
        let store = Arc::new(MemoryStore::default());
        let source = Arc::new(MemorySource::new(rows(200), None, Arc::clone(&store.committed)));
        let elsewhere: Vec<_> = rows(230).split_off(200);
        source.hold_elsewhere(elsewhere, Duration::from_secs(5));
        let outcome = drain_from(&source, &store).await;
        assert_eq!(outcome, Ok(Outcome::default()));
        assert_eq!(source.acked().len(), 230, "several receivers, none ends the drain early");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fatal_error_stops_and_acknowledges_nothing() {
        let store = MemoryStore { fatal: true, ..Default::default() };
        let r = drain(10, store, None).await;
        assert!(r.result.is_err());
        assert!(r.source.acked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_retrying_batch_within_the_grace() {
        let store = Arc::new(MemoryStore { down: true, ..Default::default() });
        let source = Arc::new(MemorySource::new(rows(10), None, Arc::clone(&store.committed)));
        let (trigger, shutdown) = Shutdown::manual();
        let counters = Arc::new(Counters::default());
        let task = {
            let (source, store, shutdown) =
                (Arc::clone(&source), Arc::clone(&store), shutdown.clone());
            tokio::spawn(async move {
                run(source, store, &settings(Mode::Forever), &shutdown, counters).await
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        let at = tokio::time::Instant::now();
        trigger.fire();
        let outcome = task.await.expect("join").map_err(|e| e.to_string()).expect("runs");
        assert!(at.elapsed() <= Duration::from_secs(1), "{:?}", at.elapsed());
        assert!(outcome.interrupted);
        assert_eq!(outcome.code(), exit::INTERRUPTED);
        assert!(source.acked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_with_everything_committed_is_a_clean_exit() {
        let store = Arc::new(MemoryStore::default());
        let source = Arc::new(MemorySource::new(rows(30), None, Arc::clone(&store.committed)));
        let (trigger, shutdown) = Shutdown::manual();
        let counters = Arc::new(Counters::default());
        let task = {
            let (source, store, shutdown) =
                (Arc::clone(&source), Arc::clone(&store), shutdown.clone());
            tokio::spawn(async move {
                run(source, store, &settings(Mode::Forever), &shutdown, counters).await
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        trigger.fire();
        let outcome = task.await.expect("join").map_err(|e| e.to_string()).expect("runs");
        assert_eq!(outcome, Outcome::default());
        assert_eq!(source.acked().len(), 30);
    }
}
