//! The receiving side of the pipeline: a pool of concurrent receive loops that grows while
//! receives come back full and the loader keeps up, and shrinks when they come back empty
//! (as Lambda's SQS event source scales its pollers), feeding a channel bounded by bytes.
//!
//! Owns: how many receives run, backpressure, and the "arrivals paused" hint the batcher uses
//! to flush a partial batch at once. Never loads, acknowledges or drops a message it received:
//! what it cannot hand over (at shutdown) stays held and is redelivered by the source.

use crate::retry::{Failed, Next, OnShutdown, Retry};
use crate::shutdown::{Shutdown, Trigger};
use crate::source::{Message, Source, SourceError};
use crate::telemetry::{count, Counters};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

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
    /// The source said it is drained (drain mode).
    drained: AtomicBool,
    /// Receives stop: shutdown, drained, or the pipeline is done.
    stop: Shutdown,
    stop_all: Trigger,
    drain: bool,
    counters: Arc<Counters>,
    fatal: std::sync::Mutex<Option<S::Error>>,
}

impl<S: Source> Pool<S> {
    /// Starts one receive loop; more follow while receives come back full. The channel closes
    /// when every loop has ended; `stop_all`/`stop` end them.
    pub fn start(
        source: Arc<S>,
        budget_bytes: usize,
        drain: bool,
        (stop_all, stop): (Trigger, Shutdown),
        counters: Arc<Counters>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Held<S::Ack>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = Arc::new(Pool {
            source,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            active: AtomicUsize::new(0),
            arrivals_paused: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            outage: AtomicBool::new(false),
            stop,
            stop_all,
            drain,
            counters,
            fatal: std::sync::Mutex::new(None),
        });
        Self::spawn(&pool, tx);
        (pool, rx)
    }

    fn spawn(pool: &Arc<Self>, tx: mpsc::UnboundedSender<Held<S::Ack>>) {
        pool.active.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("feeder_receivers").set(pool.active.load(Ordering::Relaxed) as f64);
        tokio::spawn(Arc::clone(pool).receive_loop(tx));
    }

    pub fn arrivals_paused(&self) -> bool {
        self.arrivals_paused.load(Ordering::Relaxed)
    }

    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
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
        loop {
            let got = Retry::new("SQS", &self.stop)
                .note(" (receiving)")
                .shared_outage(&self.outage)
                .on_shutdown(OnShutdown::Drop)
                .run(
                    |_| self.source.receive(max),
                    |e| {
                        if e.is_transient() {
                            Next::Retry
                        } else {
                            Next::GiveUp
                        }
                    },
                )
                .await;
            let messages = match got {
                Ok(m) => m,
                Err(Failed::Stopped) => break,
                Err(Failed::Error(e)) => {
                    self.fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    break;
                }
            };
            let full = messages.len() >= max;
            self.arrivals_paused.store(!full, Ordering::Relaxed);
            count!(self.counters, received, messages.len());
            if !self.hand_over(&tx, messages).await {
                break;
            }
            if full {
                // Backlog: another receiver, while the loader keeps up (budget mostly free).
                let n = self.active.load(Ordering::Relaxed);
                if n < self.source.max_receivers() && self.room() > 0.5 {
                    Self::spawn(&self, tx.clone());
                }
            } else if self.drain
                && self.stop.unless_requested(self.source.drained()).await.is_some_and(|d| {
                    // An error here is not the end of the queue: keep receiving.
                    d.unwrap_or(false)
                })
            {
                // Nothing left anywhere: stop every receiver, not only this one, so no long
                // poll keeps the drain waiting.
                self.drained.store(true, Ordering::Relaxed);
                self.stop_all.fire();
                break;
            } else if self.active.load(Ordering::Relaxed) > 1 {
                // Idle: one receiver is enough to notice the next arrivals.
                break;
            }
        }
        let left = self.active.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("feeder_receivers").set(left as f64);
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
