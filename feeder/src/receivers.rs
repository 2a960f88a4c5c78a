//! The receiving side of the pipeline: a pool of concurrent receive loops that grows while
//! receives come back full and the loader keeps up, and shrinks when they come back empty
//! (as Lambda's SQS event source scales its pollers), feeding a channel bounded by bytes.
//!
//! Owns: how many receives run, backpressure, and the "arrivals paused" hint the batcher uses
//! to flush a partial batch at once. Never loads, acknowledges or drops a message it received:
//! what it cannot hand over (at shutdown) stays held and is redelivered by the source.

use crate::retry::{Failed, Next, OnShutdown, Retry};
use crate::shutdown::Shutdown;
use crate::source::{Message, Source, SourceError};
use crate::telemetry::{count, Counters};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// Between receives that find a draining queue empty while it is not drained yet, unless one
/// of the feeder's own acknowledgements ends first.
pub(crate) const DRAIN_POLL_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// A received message with its share of the in-flight byte budget, released when it drops.
pub struct Held<A> {
    pub message: Message<A>,
    _budget: OwnedSemaphorePermit,
}

/// State shared by the receive loops and read by the batcher.
pub struct Pool<S: Source> {
    source: Arc<S>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    active: AtomicUsize,
    /// The last receive returned fewer than it could: the source is momentarily empty.
    arrivals_paused: AtomicBool,
    /// An outage of the source is being reported (one line for all receivers).
    outage: AtomicBool,
    /// The source said it is drained (drain mode): no new receive starts, but those in
    /// progress finish and hand over what they got (the last messages of a queue may be in
    /// one of them: dropping it would leave them invisible until their visibility timeout).
    drained: AtomicBool,
    /// Receives are dropped: shutdown, or the pipeline has ended.
    stop: Shutdown,
    drain: bool,
    /// How many acknowledgements have finished (see `drain_pause`).
    acknowledged: watch::Receiver<u64>,
    counters: Arc<Counters>,
    fatal: std::sync::Mutex<Option<S::Error>>,
}

impl<S: Source> Pool<S> {
    /// Starts one receive loop; more follow while receives come back full. The channel closes
    /// when every loop has ended: drained (drain mode), or `stop` fired.
    pub fn start(
        source: Arc<S>,
        budget_bytes: usize,
        drain: bool,
        stop: Shutdown,
        acknowledged: watch::Receiver<u64>,
        counters: Arc<Counters>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Held<S::Ack>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = Arc::new(Pool {
            source,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            active: AtomicUsize::new(1),
            arrivals_paused: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            outage: AtomicBool::new(false),
            stop,
            drain,
            acknowledged,
            counters,
            fatal: std::sync::Mutex::new(None),
        });
        Self::spawn(&pool, tx);
        (pool, rx)
    }

    /// Starts a receive loop already counted in `active`.
    fn spawn(pool: &Arc<Self>, tx: mpsc::UnboundedSender<Held<S::Ack>>) {
        metrics::gauge!("feeder_receivers").set(pool.active() as f64);
        tokio::spawn(Arc::clone(pool).receive_loop(tx));
    }

    pub fn arrivals_paused(&self) -> bool {
        self.arrivals_paused.load(Ordering::Relaxed)
    }

    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// A fatal receive error, if one stopped the receivers.
    pub fn take_fatal(&self) -> Option<S::Error> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Room left in the byte budget, as a share of it.
    fn room(&self) -> f64 {
        self.budget.available_permits() as f64 / self.budget_bytes.max(1) as f64
    }

    async fn receive_loop(self: Arc<Self>, tx: mpsc::UnboundedSender<Held<S::Ack>>) {
        let max = self.source.max_per_receive();
        while !self.drained.load(Ordering::Relaxed) {
            let Some(messages) = self.ask(" (receiving)", |_| self.source.receive(max)).await
            else {
                break;
            };
            let full = messages.len() >= max;
            let empty = messages.is_empty();
            self.arrivals_paused.store(!full, Ordering::Relaxed);
            count!(self.counters, received, messages.len());
            if !self.hand_over(&tx, messages).await {
                break;
            }
            // A receive that came back short: in a drain, time to ask whether all is done.
            // Acknowledgements that end from here on may change the answer.
            let mut acks_seen = self.acknowledged.clone();
            acks_seen.borrow_and_update();
            let drained = if self.drain && !full {
                match self.ask(" (reading the queue's counts)", |_| self.source.drained()).await {
                    Some(drained) => drained,
                    None => break,
                }
            } else {
                false
            };
            if full {
                // Backlog: another receiver, while the loader keeps up (budget mostly free).
                let max = self.source.max_receivers();
                if self.room() > 0.5
                    && self
                        .active
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            (n < max).then_some(n + 1)
                        })
                        .is_ok()
                {
                    Self::spawn(&self, tx.clone());
                }
            } else if drained {
                // Nothing left anywhere: no receiver starts another receive.
                self.drained.store(true, Ordering::Relaxed);
                break;
            } else if self
                .active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 1).then(|| n - 1))
                .is_ok()
            {
                // Idle: one receiver is enough to notice the next arrivals. Retiring is one
                // atomic step, so two idle receivers cannot both leave the last place empty
                // (which would close the channel and end a drain early).
                metrics::gauge!("feeder_receivers").set(self.active() as f64);
                return;
            } else if self.drain && empty {
                // Draining, the queue looks empty but is not (another consumer holds messages,
                // or the source's counts lag): poll again shortly, not in a tight loop.
                if self.stop.unless_requested(drain_pause(&mut acks_seen)).await.is_none() {
                    break;
                }
            }
        }
        let left = self.active.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("feeder_receivers").set(left as f64);
    }

    /// One request to the source, retried while it is unreachable (one line when that starts,
    /// one when it ends, `note` saying what was being done). None: stop receiving, at a signal
    /// or on an error that will not go away (a refused permission), which is kept as the run's
    /// fatal error: swallowing it would leave a receiver retrying for ever without a word.
    async fn ask<T, Fut>(&self, note: &str, request: impl FnMut(u32) -> Fut) -> Option<T>
    where
        Fut: std::future::Future<Output = Result<T, S::Error>>,
    {
        let asked = Retry::new("SQS", &self.stop)
            .note(note)
            .shared_outage(&self.outage)
            .on_shutdown(OnShutdown::Drop)
            .run(request, |e| if e.is_transient() { Next::Retry } else { Next::GiveUp })
            .await;
        match asked {
            Ok(answer) => Some(answer),
            Err(Failed::Stopped) => None,
            Err(Failed::Error(e)) => {
                self.fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                None
            }
        }
    }

    /// Passes messages to the batcher, waiting for budget. False when receiving must stop.
    async fn hand_over(
        &self,
        tx: &mpsc::UnboundedSender<Held<S::Ack>>,
        messages: Vec<Message<S::Ack>>,
    ) -> bool {
        for message in messages {
            let want = message.row.weight().min(self.budget_bytes) as u32;
            let budget = Arc::clone(&self.budget);
            let Some(Ok(permit)) =
                self.stop.unless_requested(budget.acquire_many_owned(want)).await
            else {
                // Stopping: what was received and not handed over stays held by the source
                // and comes back after its lease.
                return false;
            };
            if tx.send(Held { message, _budget: permit }).is_err() {
                return false;
            }
        }
        true
    }
}

/// The pause before a draining receiver asks again. It ends early when one of the feeder's own
/// acknowledgements finishes after `acks_seen` was marked: what kept the source from looking
/// drained is most often the feeder's own deletes under way (SQS still counts them in flight),
/// and the end of a drain should not wait a whole pause for them.
async fn drain_pause(acks_seen: &mut watch::Receiver<u64>) {
    tokio::select! {
        _ = tokio::time::sleep(DRAIN_POLL_PAUSE) => {}
        // Closed (the settler is gone): the pause alone.
        Ok(()) = acks_seen.changed() => {}
    }
}
