//! The SQS → Postgres run loop: receivers → batcher → loader → deleter.
//!
//! - Several receivers long-poll SQS and push messages into a bounded channel.
//! - The loader gathers a batch (size or linger time, whichever comes first), COPYs it in one
//!   transaction, and retries the same batch with backoff until it commits, extending the
//!   messages' visibility when half the timeout has passed.
//! - Only after the commit are the messages deleted, in the background, 10 per request, with
//!   the failed entries retried. A delete that never succeeds is harmless: the redelivered message
//!   is skipped by the database as a duplicate.
//! - Shutdown stops the receivers; the batch in flight is loaded and deleted before exit.

use crate::backoff::Backoff;
use crate::config::RunOptions;
use crate::shutdown::Shutdown;
use crate::sink::{Row, Sink};
use crate::sqs::{Queue, Received};
use crate::telemetry::{count, Counters};
use futures_util::stream::{self, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How the loop ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Until shutdown is requested.
    Forever,
    /// Until a receive comes back empty (the drain command checks the queue depth after).
    UntilEmpty,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Sqs(#[from] crate::sqs::SqsError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
}

const DELETE_ATTEMPTS: u32 = 5;
const DELETE_CONCURRENCY: usize = 8;

pub async fn run(
    queue: &Queue,
    sink: &mut Sink,
    opts: &RunOptions,
    batch_size: usize,
    mode: Mode,
    shutdown: &Shutdown,
    counters: &Arc<Counters>,
) -> Result<(), PipelineError> {
    let (tx, mut rx) = mpsc::channel::<Received>(batch_size.max(10) * 2);
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<crate::sqs::SqsError>(1);
    let wait = if mode == Mode::UntilEmpty { opts.wait_seconds.min(1) } else { opts.wait_seconds };
    let mut receivers = JoinSet::new();
    for _ in 0..opts.receivers.max(1) {
        receivers.spawn(receive_loop(
            queue.clone(),
            tx.clone(),
            fatal_tx.clone(),
            wait,
            opts.visibility_timeout,
            mode,
            shutdown.clone(),
            Arc::clone(counters),
        ));
    }
    drop(tx);
    drop(fatal_tx);

    let mut deletes = JoinSet::new();
    let mut result = Ok(());
    loop {
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + opts.linger();
        while batch.len() < batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => batch.push(m),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(e) =
            load_with_retry(queue, sink, &batch, opts.visibility_timeout, counters).await
        {
            result = Err(e);
            break;
        }
        let receipts: Vec<String> = batch.into_iter().map(|m| m.receipt).collect();
        deletes.spawn(delete_all(queue.clone(), receipts, Arc::clone(counters)));
        while deletes.try_join_next().is_some() {}
    }
    receivers.abort_all();
    while deletes.join_next().await.is_some() {}
    metrics::gauge!("feeder_in_flight").set(0.0);
    if let Ok(e) = fatal_rx.try_recv() {
        return Err(e.into());
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn receive_loop(
    queue: Queue,
    tx: mpsc::Sender<Received>,
    fatal: mpsc::Sender<crate::sqs::SqsError>,
    wait_seconds: i32,
    visibility: i32,
    mode: Mode,
    mut shutdown: Shutdown,
    counters: Arc<Counters>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    while !shutdown.requested() {
        // Not raced against shutdown: a receive cancelled after the server handed out messages
        // would leave them invisible until their timeout. Shutdown waits at most one long poll.
        let received = queue.receive(wait_seconds, visibility).await;
        match received {
            Ok(messages) => {
                if let Some(outage) = backoff.succeed() {
                    tracing::info!("SQS reachable again after {:.1} s", outage.as_secs_f64());
                }
                if messages.is_empty() && mode == Mode::UntilEmpty {
                    break;
                }
                count!(counters, received, messages.len());
                metrics::gauge!("feeder_in_flight").increment(messages.len() as f64);
                for m in messages {
                    // The loader owns the message now; if it is gone we are shutting down and
                    // SQS will redeliver after the visibility timeout.
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.is_transient() => {
                let (delay, first) = backoff.fail();
                if first {
                    tracing::warn!("{e}; retrying with backoff");
                }
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => {
                let _ = fatal.try_send(e);
                return;
            }
        }
    }
}

async fn load_with_retry(
    queue: &Queue,
    sink: &mut Sink,
    batch: &[Received],
    visibility: i32,
    counters: &Counters,
) -> Result<(), PipelineError> {
    let rows: Vec<Row> = batch.iter().map(|m| m.row.clone()).collect();
    let every = Duration::from_secs(visibility.max(1) as u64) / 2;
    let oldest = batch.iter().map(|m| m.received_at).min().unwrap_or_else(Instant::now);
    // Extend when half of the visibility timeout is left, whether the database is slow, locked
    // or down: the batch must not be redelivered while we still hold it.
    let keep_alive = KeepAlive {
        next: tokio::time::Instant::from_std(oldest + every),
        every,
        queue,
        batch,
        visibility,
    };
    load_until_committed(sink, &rows, counters, Some(keep_alive)).await?;
    Ok(())
}

/// Keeps a batch's messages invisible while it is in flight.
pub struct KeepAlive<'a> {
    next: tokio::time::Instant,
    every: Duration,
    queue: &'a Queue,
    batch: &'a [Received],
    visibility: i32,
}

impl KeepAlive<'_> {
    async fn extend(&mut self) {
        let receipts: Vec<String> = self.batch.iter().map(|m| m.receipt.clone()).collect();
        let mut failed = 0;
        for chunk in receipts.chunks(10) {
            if self.queue.extend_visibility(chunk, self.visibility).await.is_err() {
                failed += chunk.len();
            }
        }
        tracing::info!(
            "batch of {} still in flight: extended its visibility by {} s{}",
            receipts.len(),
            self.visibility,
            if failed > 0 { format!(" ({failed} could not be extended)") } else { String::new() }
        );
        self.next = tokio::time::Instant::now() + self.every;
    }
}

/// Awaits `fut`, extending visibility whenever `keep_alive` is due meanwhile.
async fn with_keep_alive<T>(
    fut: impl std::future::Future<Output = T>,
    keep_alive: &mut Option<KeepAlive<'_>>,
) -> T {
    tokio::pin!(fut);
    loop {
        let Some(k) = keep_alive.as_mut() else { return fut.await };
        tokio::select! {
            r = &mut fut => return r,
            _ = tokio::time::sleep_until(k.next) => k.extend().await,
        }
    }
}

/// Loads `rows` in one transaction, retrying transient failures with capped backoff (one log
/// line when they start, one when they end) until a commit succeeds; counts the result. Used by
/// the queue loop (with a [`KeepAlive`]) and by `feeder load` (without).
pub async fn load_until_committed(
    sink: &mut Sink,
    rows: &[Row],
    counters: &Counters,
    mut keep_alive: Option<KeepAlive<'_>>,
) -> Result<crate::sink::Loaded, crate::sink::SinkError> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let started = Instant::now();
        match with_keep_alive(sink.load(rows), &mut keep_alive).await {
            Ok(done) => {
                if let Some(outage) = backoff.succeed() {
                    tracing::info!(
                        "PostgreSQL reachable again after {:.1} s",
                        outage.as_secs_f64()
                    );
                }
                metrics::histogram!("feeder_batch_seconds").record(started.elapsed().as_secs_f64());
                count!(counters, loaded, done.loaded);
                count!(counters, duplicates, done.duplicates);
                count!(counters, rejected, done.rejected);
                count!(counters, batches, 1);
                tracing::debug!(rows = rows.len(), ?done, "batch committed");
                return Ok(done);
            }
            Err(e) if e.is_transient() => {
                let (delay, first) = backoff.fail();
                if first {
                    tracing::warn!(
                        "{e}; keeping the batch of {} and retrying with backoff",
                        rows.len()
                    );
                }
                with_keep_alive(tokio::time::sleep(delay), &mut keep_alive).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn delete_all(queue: Queue, receipts: Vec<String>, counters: Arc<Counters>) {
    let n = receipts.len();
    let failed: usize = stream::iter(receipts.chunks(10).map(<[String]>::to_vec))
        .map(|chunk| {
            let queue = queue.clone();
            let counters = Arc::clone(&counters);
            async move {
                let mut pending = chunk;
                let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
                for attempt in 1..=DELETE_ATTEMPTS {
                    if let Ok(failed) = queue.delete_batch(&pending).await {
                        count!(counters, deleted, pending.len() - failed.len());
                        pending = failed;
                    }
                    if pending.is_empty() || attempt == DELETE_ATTEMPTS {
                        break;
                    }
                    tokio::time::sleep(backoff.fail().0).await;
                }
                pending.len()
            }
        })
        .buffer_unordered(DELETE_CONCURRENCY)
        .fold(0, |acc, f| async move { acc + f })
        .await;
    if failed > 0 {
        // One line per batch, not per request: an SQS outage must not flood the log.
        count!(counters, delete_failures, failed);
        tracing::warn!(
            "could not delete {failed} of {n} committed messages after {DELETE_ATTEMPTS} attempts; \
             they will be redelivered and skipped as duplicates"
        );
    }
    metrics::gauge!("feeder_in_flight").decrement(n as f64);
}
