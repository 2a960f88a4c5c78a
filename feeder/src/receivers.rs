//! The receiving side of the pipeline: a pool of concurrent receive loops that grows while
//! receives come back full and the loader keeps up, and shrinks when they come back empty
//! (as Lambda's SQS event source scales its pollers), feeding a channel bounded by bytes.
//!
//! Owns: how many receives run, backpressure, and the "arrivals paused" hint the batcher uses
//! to flush a partial batch at once. Never loads, acknowledges or drops a message it received:
//! what it cannot hand over (at shutdown) stays held and is redelivered by the source.

use crate::retry::{Failed, Next, OnShutdown, Retry};
use crate::settle::OwnAcks;
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
    /// The source said it is drained (drain mode): no new receive starts. Only the last
    /// receiver asks, so none is in progress then; were one, it would finish and hand over
    /// what it got (dropping it would leave messages invisible until their visibility timeout).
    drained: AtomicBool,
    /// Receives are dropped: shutdown, or the pipeline has ended.
    stop: Shutdown,
    drain: bool,
    /// The settler's acknowledgements (see `drain_pause`).
    own_acks: watch::Receiver<OwnAcks>,
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
        own_acks: watch::Receiver<OwnAcks>,
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
            own_acks,
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
                continue;
            }
            // Short: one receiver is enough to notice the next arrivals. Retiring is one atomic
            // step, so two idle receivers cannot both leave the last place empty (which would
            // close the channel and end a drain early).
            if self
                .active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 1).then(|| n - 1))
                .is_ok()
            {
                metrics::gauge!("feeder_receivers").set(self.active() as f64);
                return;
            }
            if !self.drain {
                continue;
            }
            // The last receiver of a drain, after a short receive: is all done? (Only the last
            // asks: the others leave without a request.) Acknowledgements that end from here
            // on may change the answer.
            let acks_finished_before = self.own_acks.borrow().finished;
            match self.ask(" (reading the queue's counts)", |_| self.source.drained()).await {
                None => break,
                Some(true) => {
                    // Nothing left anywhere: no receiver starts another receive.
                    self.drained.store(true, Ordering::Relaxed);
                    break;
                }
                Some(false) if empty => {
                    // The queue looks empty but is not (the feeder's own deletes under way,
                    // another consumer holds messages, or the counts lag): poll again shortly,
                    // not in a tight loop.
                    let pause = drain_pause(self.own_acks.clone(), acks_finished_before);
                    if self.stop.unless_requested(pause).await.is_none() {
                        break;
                    }
                }
                Some(false) => {}
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

/// The pause before a draining receiver asks again. What kept the source from looking drained
/// is most often the feeder's own deletes under way (SQS still counts them in flight): the
/// pause ends as soon as every one of them has ended, if one ended since the source was asked
/// (`finished_before`), so a drain neither waits a whole pause for them nor asks again after
/// each of them.
async fn drain_pause(mut own_acks: watch::Receiver<OwnAcks>, finished_before: u64) {
    tokio::select! {
        _ = tokio::time::sleep(DRAIN_POLL_PAUSE) => {}
        // Closed (the settler is gone): the pause alone.
        Ok(_) = own_acks.wait_for(|a| a.under_way == 0 && a.finished > finished_before) => {}
    }
}
