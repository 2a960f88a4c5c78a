//! Settling one batch: write it, retry what may pass later, isolate what never will, and
//! acknowledge each message once the transaction holding it has committed.
//!
//! - Transient failures retry the same rows with backoff until they commit or shutdown.
//! - Fatal failures stop the feeder; nothing of the batch is acknowledged.
//! - Permanent failures (and an unclassified SQLSTATE that failed the same rows
//!   [`UNCLASSIFIED_ATTEMPTS`] times) bisect the batch, each half in its own transaction, down
//!   to single messages. One that still fails is written as a reject carrying the SQLSTATE;
//!   one whose reject fails too is released to the source (dead-letter queue).
//! - While any of the batch is held, its lease is kept alive.
//!
//! Never logs a body; a released message is named by its id only.

use crate::retry::{Failed, Limit, Next, OnShutdown, Retry};
use crate::row::Row;
use crate::shutdown::{Shutdown, Trigger};
use crate::source::{Message, Source, SourceError};
use crate::store::{Class, Loaded, Store, StoreError, UNCLASSIFIED_ATTEMPTS};
use crate::telemetry::{count, Counters};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Attempts at acknowledging a committed message before leaving it to redelivery.
const ACK_ATTEMPTS: u32 = 5;

/// Why settling stopped short.
#[derive(Debug)]
pub enum Stop<E> {
    /// A failure a human must fix.
    Fatal(E),
    /// Shutdown came before the rows committed.
    Interrupted,
}

/// Settles batches against one store and acknowledges through one source.
pub struct Settler<S: Source, T: Store> {
    pub source: Arc<S>,
    pub store: T,
    pub shutdown: Shutdown,
    pub counters: Arc<Counters>,
    /// Acknowledgements in progress; one that meets an error that will not go away returns it.
    pub acks: JoinSet<Result<(), S::Error>>,
    /// The first such error: the run stops with it.
    pub ack_failed: Option<S::Error>,
    /// Stops the receivers when an acknowledgement fails for good.
    pub stop_receiving: Trigger,
    /// The feeder's own acknowledgements under way and finished: a drain that found the
    /// source not drained while some were under way asks again once they have all ended.
    pub own_acks: watch::Sender<OwnAcks>,
}

/// The settler's acknowledgements, as a draining receiver reads them (see `drain_pause`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnAcks {
    pub under_way: usize,
    pub finished: u64,
}

/// One acknowledgement counted under way until it is dropped, however its task ends (done,
/// panicked or aborted): a count left above zero would make every later drain pause run out.
struct AckUnderWay(watch::Sender<OwnAcks>);

impl AckUnderWay {
    fn start(own_acks: &watch::Sender<OwnAcks>) -> Self {
        own_acks.send_modify(|a| a.under_way += 1);
        AckUnderWay(own_acks.clone())
    }
}

impl Drop for AckUnderWay {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.under_way = a.under_way.saturating_sub(1);
            a.finished += 1;
        });
    }
}

impl<S: Source, T: Store> Settler<S, T> {
    /// Settles `batch`: every message ends committed (and its acknowledgement under way) or
    /// released, unless this returns an error.
    pub async fn settle(&mut self, batch: &[Message<S::Ack>]) -> Result<(), Stop<T::Error>> {
        let pending: Mutex<Vec<bool>> = Mutex::new(vec![true; batch.len()]);
        let all: Vec<usize> = (0..batch.len()).collect();
        let source = Arc::clone(&self.source);
        let work = self.write(batch, &all, &pending);
        tokio::pin!(work);
        let keep = keep_alive(&*source, batch, &pending);
        tokio::select! {
            r = &mut work => r,
            never = keep => match never {},
        }
    }

    /// Writes the messages at `idx` in one transaction, isolating them if they are refused.
    async fn write(
        &mut self,
        batch: &[Message<S::Ack>],
        idx: &[usize],
        pending: &Mutex<Vec<bool>>,
    ) -> Result<(), Stop<T::Error>> {
        let rows: Vec<&Row> = idx.iter().map(|&i| &batch[i].row).collect();
        let note = format!(" (holding a batch of {})", rows.len());
        let mut seen: HashMap<String, u32> = HashMap::new();
        let started = Instant::now();
        let store = &self.store;
        let result = Retry::new("PostgreSQL", &self.shutdown)
            .note(&note)
            .on_shutdown(OnShutdown::Grace)
            .run(|_| store.load(&rows), |e| retry_or_isolate(e, &mut seen))
            .await;
        match result {
            Ok(done) => {
                metrics::histogram!("feeder_batch_seconds").record(started.elapsed().as_secs_f64());
                self.committed(batch, idx, pending, done);
                Ok(())
            }
            Err(Failed::Stopped) => Err(Stop::Interrupted),
            Err(Failed::Error(e)) if e.class() == Class::Fatal => Err(Stop::Fatal(e)),
            Err(Failed::Error(e)) => {
                if idx.len() == 1 {
                    return self.reject_or_release(batch, idx[0], pending, &e).await;
                }
                if rows.len() == batch.len() {
                    tracing::warn!(
                        "batch of {} refused ({e}); loading it in halves to isolate the messages \
                         the database refuses",
                        rows.len()
                    );
                }
                let (left, right) = idx.split_at(idx.len() / 2);
                Box::pin(self.write(batch, left, pending)).await?;
                Box::pin(self.write(batch, right, pending)).await
            }
        }
    }

    /// Stores one refused message as a reject; releases it if even that is refused.
    async fn reject_or_release(
        &mut self,
        batch: &[Message<S::Ack>],
        i: usize,
        pending: &Mutex<Vec<bool>>,
        refusal: &T::Error,
    ) -> Result<(), Stop<T::Error>> {
        let m = &batch[i];
        let database_error = refusal.database_error();
        let mut seen = HashMap::new();
        let store = &self.store;
        let result = Retry::new("PostgreSQL", &self.shutdown)
            .note(" (storing a reject)")
            .on_shutdown(OnShutdown::Grace)
            .run(|_| store.reject(&m.row, &database_error), |e| retry_or_isolate(e, &mut seen))
            .await;
        match result {
            Ok(done) => {
                tracing::info!(
                    message_id = %m.row.message_id,
                    "message refused by the database ({database_error}): stored as a reject"
                );
                self.committed(batch, &[i], pending, done);
                Ok(())
            }
            Err(Failed::Stopped) => Err(Stop::Interrupted),
            Err(Failed::Error(e)) if e.class() == Class::Fatal => Err(Stop::Fatal(e)),
            Err(Failed::Error(e)) => {
                tracing::warn!(
                    message_id = %m.row.message_id,
                    "message released: the database refused it ({database_error}) and its \
                     reject too ({e}); it is not acknowledged, so the source's dead-letter \
                     handling takes it"
                );
                set(pending, &[i], false);
                self.source.release(&m.row.message_id, &m.ack);
                count!(self.counters, released, 1);
                Ok(())
            }
        }
    }

    /// Counts a commit and starts acknowledging its messages.
    fn committed(
        &mut self,
        batch: &[Message<S::Ack>],
        idx: &[usize],
        pending: &Mutex<Vec<bool>>,
        done: Loaded,
    ) {
        count!(self.counters, loaded, done.loaded);
        count!(self.counters, duplicates, done.duplicates);
        count!(self.counters, rejected, done.rejected);
        count!(self.counters, batches, 1);
        tracing::debug!(rows = idx.len(), ?done, "batch committed");
        set(pending, idx, false);
        let acks: Vec<S::Ack> = idx.iter().map(|&i| batch[i].ack.clone()).collect();
        let (source, shutdown, counters) =
            (Arc::clone(&self.source), self.shutdown.clone(), Arc::clone(&self.counters));
        let stop_receiving = self.stop_receiving.clone();
        let under_way = AckUnderWay::start(&self.own_acks);
        self.acks.spawn(async move {
            let result = acknowledge(&*source, acks, &shutdown, &counters).await;
            // Stop first: a paused receiver woken by the count must find receiving stopped.
            if result.is_err() {
                stop_receiving.fire();
            }
            drop(under_way);
            result
        });
        self.reap_finished_acks();
    }

    /// Takes the finished acknowledgements out of the set (so it does not grow), keeping the
    /// first that failed for good.
    fn reap_finished_acks(&mut self) {
        while let Some(done) = self.acks.try_join_next() {
            self.reaped(done);
        }
    }

    /// Waits for the acknowledgements in progress (each bounded by its attempts and by the
    /// grace after a signal).
    pub async fn finish_acks(&mut self) {
        while let Some(done) = self.acks.join_next().await {
            self.reaped(done);
        }
    }

    fn reaped(&mut self, done: Result<Result<(), S::Error>, tokio::task::JoinError>) {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.ack_failed.get_or_insert(e);
            }
            Err(e) if e.is_panic() => {
                tracing::error!("an acknowledgement panicked; its messages will be redelivered");
            }
            Err(_) => {}
        }
    }

    /// An acknowledgement failed for good: load nothing more (it could not be acknowledged
    /// either).
    pub fn acks_refused(&mut self) -> bool {
        self.reap_finished_acks();
        self.ack_failed.is_some()
    }
}

/// The retry decision for a failed write: retry transient and (a few times) unclassified
/// failures; give up on fatal and permanent ones, and on an unclassified SQLSTATE repeated.
fn retry_or_isolate<E: StoreError>(e: &E, seen: &mut HashMap<String, u32>) -> Next {
    match e.class() {
        Class::Transient => Next::Retry,
        Class::Fatal | Class::Permanent => Next::GiveUp,
        Class::Unclassified(code) => {
            let n = seen.entry(code).or_default();
            *n += 1;
            if *n >= UNCLASSIFIED_ATTEMPTS {
                Next::GiveUp
            } else {
                Next::Retry
            }
        }
    }
}

fn set(pending: &Mutex<Vec<bool>>, idx: &[usize], v: bool) {
    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
    for &i in idx {
        p[i] = v;
    }
}

/// Acknowledges committed messages, retrying the entries that failed; what still fails is
/// left to redelivery (the database skips it then), with one line per batch. An error that
/// needs a human (SQS denies the delete) is returned: retrying it would only load every
/// message again as a duplicate, for ever, so the run stops and says what to fix.
async fn acknowledge<S: Source>(
    source: &S,
    acks: Vec<S::Ack>,
    shutdown: &Shutdown,
    counters: &Counters,
) -> Result<(), S::Error> {
    let n = acks.len();
    let pending = Mutex::new(acks);
    let result = Retry::new("acknowledging", shutdown)
        .backoff(Duration::from_millis(100), Duration::from_secs(2))
        .limit(Limit::Attempts(ACK_ATTEMPTS))
        .on_shutdown(OnShutdown::Grace)
        .quiet()
        .run(
            |_| {
                let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
                let pending = &pending;
                async move {
                    let tried = batch.len();
                    match source.acknowledge(batch.clone()).await {
                        Ok(failed) if failed.is_empty() => Ok(tried),
                        Ok(failed) => {
                            // saturating: a response may list an entry twice.
                            let done = tried.saturating_sub(failed.len());
                            count!(counters, deleted, done);
                            *pending.lock().unwrap_or_else(|p| p.into_inner()) = failed;
                            Err(AckError::Partial)
                        }
                        Err(e) => {
                            *pending.lock().unwrap_or_else(|p| p.into_inner()) = batch;
                            Err(AckError::Source(e))
                        }
                    }
                }
            },
            |e| match e {
                AckError::Source(e) if e.needs_a_human() => Next::GiveUp,
                _ => Next::Retry,
            },
        )
        .await;
    match result {
        Ok(done) => {
            count!(counters, deleted, done);
            Ok(())
        }
        Err(stop) => {
            let left = pending.lock().unwrap_or_else(|p| p.into_inner()).len();
            count!(counters, delete_failures, left);
            let why = match stop {
                Failed::Error(AckError::Source(e)) if e.needs_a_human() => return Err(e),
                Failed::Error(AckError::Source(e)) => format!(" ({e})"),
                _ => String::new(),
            };
            // One line per batch, not per request: an outage must not flood the log.
            tracing::warn!(
                "could not acknowledge {left} of {n} committed messages{why}; they will be \
                 redelivered and skipped as duplicates"
            );
            Ok(())
        }
    }
}

#[derive(Debug)]
enum AckError<E> {
    Partial,
    Source(E),
}

impl<E: std::fmt::Display> std::fmt::Display for AckError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::Partial => f.write_str("some entries failed"),
            AckError::Source(e) => e.fmt(f),
        }
    }
}

/// Keeps the held messages of a batch alive for as long as it is being settled. Never ends.
async fn keep_alive<S: Source>(
    source: &S,
    batch: &[Message<S::Ack>],
    pending: &Mutex<Vec<bool>>,
) -> std::convert::Infallible {
    let Some(lease) = source.lease() else { return std::future::pending().await };
    let every = lease / 2;
    let oldest = batch.iter().map(|m| m.received_at).min().unwrap_or_else(Instant::now);
    let mut next = tokio::time::Instant::from_std(oldest + every);
    loop {
        tokio::time::sleep_until(next).await;
        let acks: Vec<S::Ack> = {
            let p = pending.lock().unwrap_or_else(|p| p.into_inner());
            batch
                .iter()
                .zip(p.iter())
                .filter(|(_, &held)| held)
                .map(|(m, _)| m.ack.clone())
                .collect()
        };
        if !acks.is_empty() {
            match source.keep_alive(&acks).await {
                Ok(()) => tracing::info!(
                    "batch of {} still in flight: extended its visibility by {} s",
                    acks.len(),
                    lease.as_secs()
                ),
                Err(e) => tracing::warn!(
                    "batch of {} still in flight: could not extend its visibility ({e})",
                    acks.len()
                ),
            }
        }
        next = tokio::time::Instant::now() + every;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_acknowledgement_counts_as_ended_however_its_task_ends() {
        let (own_acks, seen) = watch::channel(OwnAcks::default());
        let done = tokio::spawn({
            let under_way = AckUnderWay::start(&own_acks);
            async move { drop(under_way) }
        });
        let aborted = tokio::spawn({
            let under_way = AckUnderWay::start(&own_acks);
            async move {
                let _under_way = under_way;
                std::future::pending::<()>().await
            }
        });
        let panicked = tokio::spawn({
            let under_way = AckUnderWay::start(&own_acks);
            async move {
                let _under_way = under_way;
                panic!("an acknowledgement that panics")
            }
        });
        assert_eq!(seen.borrow().under_way, 3);
        aborted.abort();
        let ends = [done.await.is_ok(), aborted.await.is_err(), panicked.await.is_err()];
        assert_eq!(ends, [true, true, true]);
        let now = *seen.borrow();
        assert_eq!((now.under_way, now.finished), (0, 3));
    }
}
