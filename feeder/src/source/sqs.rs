//! The SQS queue as a [`Source`]: a long-polling ReceiveMessage per receive, acknowledgement
//! by DeleteMessageBatch, keep-alive by ChangeMessageVisibilityBatch.
//!
//! A released message is simply left alone: no delete, no more visibility extensions, so it
//! comes back after its visibility timeout and, once it has been received `maxReceiveCount`
//! times, the queue's redrive policy moves it to the dead-letter queue. This module never
//! deletes a message on its own initiative; only [`Source::acknowledge`] does.

use super::{Message, Source};
use crate::row::Row;
use crate::sqs::{Queue, SqsError};
use futures_util::stream::{self, StreamExt};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// At most 10 messages per ReceiveMessage and per batch request (SQS's limit).
const SQS_BATCH: usize = 10;
/// Concurrent delete / visibility requests per acknowledgement.
const REQUESTS_IN_PARALLEL: usize = 8;

/// How long a lease must still run for its message to count as surely ours in `drained`.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// Receipts whose request failed, and why.
type Unsent = (Vec<String>, SqsError);

pub struct SqsSource {
    queue: Queue,
    wait_seconds: i32,
    visibility: i32,
    max_receivers: usize,
    /// The messages held (by a hash of their receipt), with the time until which each is surely
    /// invisible to everyone else: one visibility timeout after its receive or its last
    /// keep-alive was *sent* (SQS starts the timeout later, never earlier). A message counts as
    /// surely ours (see `drained`) only until then: after it, SQS may have handed it out again,
    /// to another consumer or to this one under a new receipt, and counting it too could end a
    /// drain early. A delete request takes its messages out for good: whether it failed or not,
    /// they may be gone (a request can take effect and its answer be lost, and a delete SQS
    /// refuses is one of a receipt that expired). Counting too few only makes a drain wait.
    held: Mutex<HashMap<u64, Instant>>,
    /// How many messages have left `held` so far: `drained` subtracts those that leave while
    /// it reads the queue's counts.
    forgotten: AtomicU64,
    receipts: RandomState,
    /// The last receive returned messages: the next one does not wait (a backlog needs no
    /// long poll, and a drain ends as soon as a receive finds nothing).
    busy: AtomicBool,
}

impl SqsSource {
    pub fn new(queue: Queue, wait_seconds: i32, visibility: i32, max_receivers: usize) -> Self {
        SqsSource {
            queue,
            wait_seconds,
            visibility,
            max_receivers: max_receivers.max(1),
            held: Mutex::new(HashMap::new()),
            forgotten: AtomicU64::new(0),
            receipts: RandomState::new(),
            busy: AtomicBool::new(false),
        }
    }

    fn lease_duration(&self) -> Duration {
        Duration::from_secs(self.visibility.max(1) as u64)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key of a receipt in `held`.
    fn key(&self, receipt: &str) -> u64 {
        self.receipts.hash_one(receipt)
    }

    /// These messages no longer count as surely ours.
    fn forget<'a>(&self, receipts: impl IntoIterator<Item = &'a String>) {
        let mut held = self.held();
        let before = held.len();
        for receipt in receipts {
            held.remove(&self.key(receipt));
        }
        self.forgotten.fetch_add((before - held.len()) as u64, Ordering::AcqRel);
    }
}

fn to_message(m: aws_sdk_sqs::types::Message, now: Instant) -> Option<Message<String>> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let sent_at = m
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    Some(Message {
        row: Row { message_id: m.message_id?, sent_at, body: m.body.unwrap_or_default() },
        ack: m.receipt_handle?,
        received_at: now,
    })
}

impl Source for SqsSource {
    type Ack = String;
    type Error = SqsError;

    async fn receive(&self, max: usize) -> Result<Vec<Message<String>>, SqsError> {
        let max = max.clamp(1, SQS_BATCH) as i32;
        let wait = if self.busy.load(Ordering::Relaxed) { 0 } else { self.wait_seconds };
        let invisible_until = Instant::now() + self.lease_duration();
        let got = self.queue.receive(max, wait, self.visibility).await?;
        self.busy.store(!got.is_empty(), Ordering::Relaxed);
        let now = Instant::now();
        let messages: Vec<_> = got.into_iter().filter_map(|m| to_message(m, now)).collect();
        self.held().extend(messages.iter().map(|m| (self.key(&m.ack), invisible_until)));
        Ok(messages)
    }

    async fn acknowledge(&self, acks: Vec<String>) -> Result<Vec<String>, SqsError> {
        let results: Vec<Result<Vec<String>, Unsent>> =
            stream::iter(acks.chunks(SQS_BATCH).map(<[String]>::to_vec))
                .map(|chunk| async move {
                    // From before the request goes out, SQS may delete these at any moment.
                    self.forget(&chunk);
                    self.queue.delete_batch(&chunk).await.map_err(|e| (chunk, e))
                })
                .buffer_unordered(REQUESTS_IN_PARALLEL)
                .collect()
                .await;
        let mut failed = Vec::new();
        let mut error = None;
        for r in results {
            match r {
                Ok(f) => failed.extend(f),
                Err((chunk, e)) => {
                    failed.extend(chunk);
                    error.get_or_insert(e);
                }
            }
        }
        match error {
            // Every request failed: say why, so the retry's log line names the cause.
            Some(e) if failed.len() == acks.len() => Err(e),
            _ => Ok(failed),
        }
    }

    async fn keep_alive(&self, acks: &[String]) -> Result<(), SqsError> {
        let mut first_error = None;
        for chunk in acks.chunks(SQS_BATCH) {
            // An entry can fail because its receipt expired (the message was redelivered
            // elsewhere): the database skips it as a duplicate there, so it is not an error.
            let invisible_until = Instant::now() + self.lease_duration();
            match self.queue.change_visibility(chunk, self.visibility).await {
                Ok(failed) => {
                    let now = Instant::now();
                    let mut held = self.held();
                    for receipt in chunk.iter().filter(|r| !failed.contains(r)) {
                        // Only a message still held: one in a delete request stays out, and
                        // one whose lease ran out may be held again under a new receipt
                        // (SQS may accept the old one: it would count twice).
                        if let Some(until) = held.get_mut(&self.key(receipt)) {
                            if *until > now {
                                *until = invisible_until;
                            }
                        }
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn release(&self, _message_id: &str, _ack: &String) {
        // Nothing to do: its keep-alives stop, so its lease in `held` runs out when the message
        // can come back, and until then it is surely invisible because of this feeder (a drain
        // need not wait for it).
    }

    async fn drained(&self) -> Result<bool, SqsError> {
        // What is surely ours across the whole read of the counts. Read before them: a receive
        // answered meanwhile only makes SQS's count larger (not drained yet). And less what
        // left `held` meanwhile: a delete that goes out after this count and is done before
        // SQS counts would be counted as ours and not by SQS, standing in for messages held
        // elsewhere. What left before the count and is counted again here only counts less.
        let forgotten = self.forgotten.load(Ordering::Acquire);
        // A lease must outlast the read of the counts by a margin, or it could run out and its
        // message be handed out again before SQS counts it.
        let counted_from = Instant::now() + LEASE_MARGIN;
        let held = self.held().values().filter(|&&until| until > counted_from).count() as u64;
        let (waiting, in_flight) = self.queue.depth().await?;
        let left_meanwhile = self.forgotten.load(Ordering::Acquire) - forgotten;
        let ours = held.saturating_sub(left_meanwhile);
        // In flight and not ours: another consumer (or a crashed run) holds messages that may
        // come back; a receive under way holds some too. Either way, not drained yet.
        tracing::debug!(waiting, in_flight, ours, "queue depth");
        Ok(waiting == 0 && in_flight <= ours)
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.lease_duration())
    }

    fn max_receivers(&self) -> usize {
        self.max_receivers
    }

    fn max_per_receive(&self) -> usize {
        SQS_BATCH
    }
}
