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
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// At most 10 messages per ReceiveMessage and per batch request (SQS's limit).
const SQS_BATCH: usize = 10;
/// Concurrent delete / visibility requests per acknowledgement.
const REQUESTS_IN_PARALLEL: usize = 8;

/// Receipts whose request failed, and why.
type Unsent = (Vec<String>, SqsError);

pub struct SqsSource {
    queue: Queue,
    wait_seconds: i32,
    visibility: i32,
    max_receivers: usize,
    /// Received and neither acknowledged nor released: ours, invisible to everyone else.
    held: AtomicI64,
    /// The last receive returned messages: the next one does not wait (a backlog needs no
    /// long poll, and a drain ends as soon as a receive finds nothing).
    busy: AtomicBool,
    /// When each released message was let go: it stays invisible for up to one visibility
    /// timeout after that, and a drain need not wait for it.
    released: Mutex<Vec<Instant>>,
}

impl SqsSource {
    pub fn new(queue: Queue, wait_seconds: i32, visibility: i32, max_receivers: usize) -> Self {
        SqsSource {
            queue,
            wait_seconds,
            visibility,
            max_receivers: max_receivers.max(1),
            held: AtomicI64::new(0),
            busy: AtomicBool::new(false),
            released: Mutex::new(Vec::new()),
        }
    }

    fn released_still_invisible(&self) -> u64 {
        let lease = Duration::from_secs(self.visibility.max(1) as u64);
        let mut released = self.released.lock().unwrap_or_else(|p| p.into_inner());
        released.retain(|at| at.elapsed() < lease);
        released.len() as u64
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
        let got = self.queue.receive(max, wait, self.visibility).await?;
        self.busy.store(!got.is_empty(), Ordering::Relaxed);
        let now = Instant::now();
        let messages: Vec<_> = got.into_iter().filter_map(|m| to_message(m, now)).collect();
        self.held.fetch_add(messages.len() as i64, Ordering::Relaxed);
        Ok(messages)
    }

    async fn acknowledge(&self, acks: Vec<String>) -> Result<Vec<String>, SqsError> {
        let results: Vec<Result<Vec<String>, Unsent>> =
            stream::iter(acks.chunks(SQS_BATCH).map(<[String]>::to_vec))
                .map(|chunk| async move {
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
        let done = acks.len() - failed.len();
        self.held.fetch_sub(done as i64, Ordering::Relaxed);
        match error {
            // Every request failed: say why, so the retry's log line names the cause.
            Some(e) if done == 0 => Err(e),
            _ => Ok(failed),
        }
    }

    async fn keep_alive(&self, acks: &[String]) -> Result<(), SqsError> {
        let mut first_error = None;
        for chunk in acks.chunks(SQS_BATCH) {
            // An entry can fail because its receipt expired (the message was redelivered
            // elsewhere): the database skips it as a duplicate there, so it is not an error.
            if let Err(e) = self.queue.change_visibility(chunk, self.visibility).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn release(&self, _message_id: &str, _ack: &String) {
        self.held.fetch_sub(1, Ordering::Relaxed);
        self.released.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
    }

    async fn drained(&self) -> Result<bool, SqsError> {
        let (visible, in_flight) = self.queue.depth().await?;
        // In flight and not ours: another consumer (or a crashed run) holds messages that may
        // come back. Our own held and released messages are accounted for by us.
        let ours =
            self.held.load(Ordering::Relaxed).max(0) as u64 + self.released_still_invisible();
        Ok(visible == 0 && in_flight <= ours)
    }

    fn lease(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.visibility.max(1) as u64))
    }

    fn max_receivers(&self) -> usize {
        self.max_receivers
    }

    fn max_per_receive(&self) -> usize {
        SQS_BATCH
    }
}
