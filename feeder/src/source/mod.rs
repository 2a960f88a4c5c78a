//! The seam between where messages come from and the pipeline that loads them.
//!
//! A [`Source`] hands out [`Message`]s: a row for the database and an opaque acknowledgement
//! token (an SQS receipt handle, a line number). What the pipeline guarantees every source:
//! - [`Source::acknowledge`] is called for a message only after the transaction holding its row
//!   or reject has committed. Never before, and never for a message that was released.
//! - While a message is held (received, not acknowledged), [`Source::keep_alive`] is called
//!   before half of [`Source::lease`] has passed since it was received or last kept alive.
//! - [`Source::release`] gives a message up for good: the database refuses it even as a
//!   reject. The pipeline stops keeping it alive and never acknowledges it; the source decides
//!   what happens next (SQS: its redrive policy moves it to a dead-letter queue).
//! - Messages are loaded in batches in the order received, but a source must not rely on any
//!   order of acknowledgements: batches commit and acknowledge independently.
//!
//! What a source may assume of nothing else: a message may be received twice (SQS delivers at
//! least once); the database skips an id it has seen.
//!
//! This module owns the contract only. Implementations: [`sqs`] (a queue) and [`file`] (JSON
//! lines, `feeder load`).

pub mod file;
pub mod sqs;

use crate::row::Row;
use std::future::Future;
use std::time::{Duration, Instant};

pub struct Message<A> {
    pub row: Row,
    pub ack: A,
    /// When it was received: its lease runs from here.
    pub received_at: Instant,
}

/// A source's error: retry it, or stop and tell a human.
pub trait SourceError: std::error::Error + Send + Sync + 'static {
    fn is_transient(&self) -> bool;

    /// Known never to pass without a human (a denied permission, a missing queue): an
    /// acknowledgement failing so stops the run. Narrower than "not transient": an
    /// acknowledgement that fails for a reason not known is left to redelivery, which only
    /// costs a duplicate.
    fn needs_a_human(&self) -> bool {
        !self.is_transient()
    }
}

pub trait Source: Send + Sync + 'static {
    type Ack: Clone + Send + Sync + 'static;
    type Error: SourceError;

    /// Up to `max` messages. May wait for them (a long poll) but returns an empty list when
    /// none came; the pipeline may drop the future at shutdown (a source must then lose
    /// nothing it cannot get back: SQS redelivers after the visibility timeout).
    fn receive(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Message<Self::Ack>>, Self::Error>> + Send;

    /// Acknowledges committed messages; returns those that could not be (retried by the
    /// pipeline).
    fn acknowledge(
        &self,
        acks: Vec<Self::Ack>,
    ) -> impl Future<Output = Result<Vec<Self::Ack>, Self::Error>> + Send;

    /// Keeps held messages from being handed to another consumer for another lease.
    fn keep_alive(
        &self,
        acks: &[Self::Ack],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Gives a message up (see the module contract). `message_id` is for the log and report.
    fn release(&self, message_id: &str, ack: &Self::Ack);

    /// True when no more messages will come: the queue is empty (and nobody else holds any),
    /// the file is read to its end.
    fn drained(&self) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// How long a received message stays ours without [`Source::keep_alive`]; `None`: for ever.
    fn lease(&self) -> Option<Duration>;

    /// How many receives may run at once (the pipeline adapts between 1 and this).
    fn max_receivers(&self) -> usize;

    /// The most messages one receive returns: a receive that returns fewer found the source
    /// momentarily empty.
    fn max_per_receive(&self) -> usize;

    /// A source-specific addition to progress lines (`feeder load`: what is loaded, of how
    /// much, and an ETA).
    fn progress(&self) -> Option<String> {
        None
    }
}
