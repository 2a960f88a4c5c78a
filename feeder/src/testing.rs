//! In-memory [`Source`] and [`Store`] for the pipeline's unit tests: no network, no database,
//! and a record of every call so the tests can check the contract (acknowledged only after
//! commit, kept alive while held, released never acknowledged).

use crate::row::Row;
use crate::source::{Message, Source, SourceError};
use crate::store::{Class, Loaded, Store, StoreError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, thiserror::Error)]
#[error("memory source failed")]
pub struct MemSourceError {
    transient: bool,
}

impl SourceError for MemSourceError {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

/// Ids committed by the store: what the source checks each acknowledgement against.
pub type Committed = Arc<Mutex<HashSet<String>>>;

pub struct MemorySource {
    queue: Mutex<VecDeque<Row>>,
    /// Held by "another consumer": in flight, not drained, until `reveal_at`.
    hidden: Mutex<Vec<Row>>,
    reveal_at: Mutex<Option<tokio::time::Instant>>,
    ids: Mutex<HashMap<u64, String>>,
    next: AtomicU32,
    pub lease: Option<Duration>,
    committed: Committed,
    pub acked: Mutex<Vec<String>>,
    pub acked_before_commit: Mutex<Vec<String>>,
    pub kept_alive: AtomicU32,
    pub released: Mutex<Vec<String>>,
    /// `drained` fails with an error that will not go away (as a refused permission would).
    pub counts_refused: std::sync::atomic::AtomicBool,
    /// Every acknowledgement fails with an error that will not go away (a denied delete).
    pub acks_denied: std::sync::atomic::AtomicBool,
    /// How long every receive takes (a round trip).
    pub receive_delay: Duration,
    /// How long an empty receive waits on top (a long poll; a drain's receives do not wait).
    pub idle_wait: Duration,
    /// How long an acknowledgement takes. Until it ends its messages still count as in flight
    /// and the source does not look drained, as SQS counts a message until its delete is done.
    pub ack_delay: Duration,
    acks_under_way: AtomicU32,
    /// How many times `drained` was asked.
    pub counts_read: AtomicU32,
    /// When the last acknowledgement ended.
    pub last_ack_at: Mutex<Option<tokio::time::Instant>>,
}

impl MemorySource {
    pub fn new(rows: Vec<Row>, lease: Option<Duration>, committed: Committed) -> Self {
        MemorySource {
            queue: Mutex::new(rows.into()),
            hidden: Mutex::new(Vec::new()),
            reveal_at: Mutex::new(None),
            ids: Mutex::new(HashMap::new()),
            next: AtomicU32::new(0),
            lease,
            committed,
            acked: Mutex::new(Vec::new()),
            acked_before_commit: Mutex::new(Vec::new()),
            kept_alive: AtomicU32::new(0),
            released: Mutex::new(Vec::new()),
            counts_refused: std::sync::atomic::AtomicBool::new(false),
            acks_denied: std::sync::atomic::AtomicBool::new(false),
            receive_delay: Duration::ZERO,
            idle_wait: Duration::from_secs(1),
            ack_delay: Duration::ZERO,
            acks_under_way: AtomicU32::new(0),
            counts_read: AtomicU32::new(0),
            last_ack_at: Mutex::new(None),
        }
    }

    /// Rows another consumer holds until `after` has passed, then redelivered.
    pub fn hold_elsewhere(&self, rows: Vec<Row>, after: Duration) {
        *lock(&self.hidden) = rows;
        *lock(&self.reveal_at) = Some(tokio::time::Instant::now() + after);
    }

    fn reveal(&self) {
        let due = lock(&self.reveal_at).is_some_and(|t| tokio::time::Instant::now() >= t);
        if due {
            let rows = std::mem::take(&mut *lock(&self.hidden));
            lock(&self.queue).extend(rows);
        }
    }

    pub fn acked(&self) -> Vec<String> {
        let mut v = lock(&self.acked).clone();
        v.sort();
        v
    }
}

impl Source for MemorySource {
    type Ack = u64;
    type Error = MemSourceError;

    async fn receive(&self, max: usize) -> Result<Vec<Message<u64>>, MemSourceError> {
        tokio::time::sleep(self.receive_delay).await;
        self.reveal();
        let taken: Vec<Row> = {
            let mut q = lock(&self.queue);
            let n = max.min(q.len());
            q.drain(..n).collect()
        };
        if taken.is_empty() {
            // An idle long poll.
            tokio::time::sleep(self.idle_wait).await;
        }
        Ok(taken
            .into_iter()
            .map(|row| {
                let ack = u64::from(self.next.fetch_add(1, Ordering::Relaxed));
                lock(&self.ids).insert(ack, row.message_id.clone());
                Message { row, ack, received_at: Instant::now() }
            })
            .collect())
    }

    async fn acknowledge(&self, acks: Vec<u64>) -> Result<Vec<u64>, MemSourceError> {
        if self.acks_denied.load(Ordering::Relaxed) {
            return Err(MemSourceError { transient: false });
        }
        self.acks_under_way.fetch_add(1, Ordering::AcqRel);
        tokio::time::sleep(self.ack_delay).await;
        {
            let ids = lock(&self.ids);
            let committed = lock(&self.committed);
            for a in acks {
                let id = ids[&a].clone();
                if !committed.contains(&id) {
                    lock(&self.acked_before_commit).push(id.clone());
                }
                lock(&self.acked).push(id);
            }
        }
        *lock(&self.last_ack_at) = Some(tokio::time::Instant::now());
        self.acks_under_way.fetch_sub(1, Ordering::AcqRel);
        Ok(Vec::new())
    }

    async fn keep_alive(&self, _acks: &[u64]) -> Result<(), MemSourceError> {
        self.kept_alive.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn release(&self, message_id: &str, _ack: &u64) {
        lock(&self.released).push(message_id.to_owned());
    }

    async fn drained(&self) -> Result<bool, MemSourceError> {
        self.counts_read.fetch_add(1, Ordering::Relaxed);
        if self.counts_refused.load(Ordering::Relaxed) {
            return Err(MemSourceError { transient: false });
        }
        self.reveal();
        Ok(lock(&self.queue).is_empty()
            && lock(&self.hidden).is_empty()
            && self.acks_under_way.load(Ordering::Acquire) == 0)
    }

    fn lease(&self) -> Option<Duration> {
        self.lease
    }

    fn max_receivers(&self) -> usize {
        4
    }

    fn max_per_receive(&self) -> usize {
        10
    }
}

#[derive(Debug, thiserror::Error)]
#[error("memory store: {class:?}")]
pub struct MemStoreError {
    class: Class,
    database_error: String,
}

impl StoreError for MemStoreError {
    fn class(&self) -> Class {
        self.class.clone()
    }
    fn database_error(&self) -> String {
        self.database_error.clone()
    }
}

/// A store with programmable failures.
#[derive(Default)]
pub struct MemoryStore {
    pub committed: Committed,
    pub rejects: Mutex<Vec<(String, String)>>,
    /// A row with one of these ids fails its slice with this class.
    pub poison: HashMap<String, Class>,
    /// Rejects of these ids fail permanently.
    pub unrejectable: HashSet<String>,
    /// The next loads that fail transiently.
    pub transient: AtomicU32,
    /// Every load fails transiently.
    pub down: bool,
    /// Every load fails fatally (a view that does not account for the rows).
    pub fatal: bool,
    pub delay: Option<Duration>,
    pub loads: AtomicU32,
}

impl MemoryStore {
    fn fail(class: Class) -> MemStoreError {
        MemStoreError { class, database_error: "23514 constraint \"c\"".to_owned() }
    }
}

impl Store for MemoryStore {
    type Error = MemStoreError;

    async fn load(&self, rows: &[&Row]) -> Result<Loaded, MemStoreError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        if self.fatal {
            return Err(Self::fail(Class::Fatal));
        }
        if self.down
            || self
                .transient
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(Self::fail(Class::Transient));
        }
        if let Some(class) = rows.iter().find_map(|r| self.poison.get(&r.message_id)) {
            return Err(Self::fail(class.clone()));
        }
        let mut c = lock(&self.committed);
        let mut done = Loaded::default();
        for r in rows {
            if c.insert(r.message_id.clone()) {
                done.loaded += 1;
            } else {
                done.duplicates += 1;
            }
        }
        Ok(done)
    }

    async fn reject(&self, row: &Row, database_error: &str) -> Result<Loaded, MemStoreError> {
        if self.unrejectable.contains(&row.message_id) {
            return Err(Self::fail(Class::Permanent));
        }
        lock(&self.rejects).push((row.message_id.clone(), database_error.to_owned()));
        lock(&self.committed).insert(row.message_id.clone());
        Ok(Loaded { loaded: 0, duplicates: 0, rejected: 1 })
    }
}

pub fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            message_id: format!("m{i:04}"),
            sent_at: None,
            body: format!("{{\"user_id\":\"u{i}\"}}"),
        })
        .collect()
}
