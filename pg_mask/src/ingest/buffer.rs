//! The per-backend buffer between the row trigger and the flush, and the counters of what the
//! current transaction loaded.
//!
//! The buffer keeps INSERT semantics. Each row remembers the (sub)transaction that buffered it;
//! when a subtransaction aborts (a `ROLLBACK TO SAVEPOINT`, an error caught by a PL/pgSQL
//! `EXCEPTION` block), exactly the rows it and its children buffered are dropped, and rows
//! buffered before it began survive, as rows an INSERT had written would. Subtransaction ids
//! grow, and while a subtransaction is open every newer one is its descendant, so "buffered at
//! or after id N" is "buffered by N or its children". For the same reason a flush writes only
//! the rows of the running subtransaction and its committed children ([`take_flushable`]): a
//! row buffered by an outer level, written inside an inner subtransaction that then rolls back,
//! would be lost.
//!
//! Rows are kept per ingest target, so two ingest views written in one statement each reach
//! their own tables. Counters are snapshotted at each subtransaction start and restored when it
//! aborts. A commit with rows still buffered is refused, not silently lossy.

use super::target::Target;
use crate::error::MaskError;
use crate::pg::xact::{self, Event, SubEvent, SubTransactionId};
use pg_mask_core::login::RejectReason;
use pg_mask_core::schema::N;
use pg_mask_core::KeyRing;
use std::cell::RefCell;
use std::rc::Rc;

/// A field value ready to store: a token for a masked field.
#[derive(Clone, Copy, Debug)]
pub enum Stored<'a> {
    Text(&'a str),
    Int(i32),
}

/// Where a row keeps one field's value.
#[derive(Clone, Copy, Debug)]
enum Kept {
    /// A range of the row's `text`.
    Text {
        start: usize,
        end: usize,
    },
    Int(i32),
}

/// One login, ready to store.
pub struct LoginRow {
    /// The message id and then every text value, back to back. One allocation per row, read
    /// in order by the flush: a `String` per field cost a malloc, a free and a cache miss each,
    /// 15% of a profiled ingest of 200k messages.
    text: String,
    message_id_end: usize,
    /// `timestamptz` microseconds since 2000; `None`: the load time.
    pub sent_at: Option<i64>,
    /// One per [`pg_mask_core::schema::FIELDS`] entry.
    values: [Option<Kept>; N],
    subxact: SubTransactionId,
}

pub struct RejectRow {
    pub message_id: String,
    pub sent_at: Option<i64>,
    pub reason: RejectReason,
    pub detail: String,
    /// The whole body as a token; `None` if there was none or it was too large to keep.
    pub payload: Option<String>,
    subxact: SubTransactionId,
}

impl LoginRow {
    /// A row with only its message id; `text_bytes` is what its text values will take.
    pub fn new(message_id: &str, sent_at: Option<i64>, text_bytes: usize) -> Self {
        let mut text = String::with_capacity(message_id.len() + text_bytes);
        text.push_str(message_id);
        LoginRow {
            message_id_end: text.len(),
            text,
            sent_at,
            values: [None; N],
            subxact: xact::current_subtransaction(),
        }
    }

    /// Sets field `i` (a [`pg_mask_core::schema::FIELDS`] index) to `value`.
    pub fn set_text(&mut self, i: usize, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.values[i] = Some(Kept::Text { start, end: self.text.len() });
    }

    /// Sets field `i` to the token of `plaintext`.
    pub fn set_masked(&mut self, i: usize, ring: &KeyRing, plaintext: &str) {
        let start = self.text.len();
        ring.mask_append(plaintext, &mut self.text);
        self.values[i] = Some(Kept::Text { start, end: self.text.len() });
    }

    pub fn set_int(&mut self, i: usize, value: i32) {
        self.values[i] = Some(Kept::Int(value));
    }

    pub fn message_id(&self) -> &str {
        &self.text[..self.message_id_end]
    }

    /// The value of field `i`, `None` for NULL.
    pub fn value(&self, i: usize) -> Option<Stored<'_>> {
        self.values.get(i).copied().flatten().map(|kept| match kept {
            Kept::Text { start, end } => Stored::Text(&self.text[start..end]),
            Kept::Int(v) => Stored::Int(v),
        })
    }

    /// Bytes this row holds, for the flush threshold and the size of array parameters.
    pub fn bytes(&self) -> usize {
        self.text.len() + 8 * N + 64
    }
}

impl RejectRow {
    pub fn new(
        message_id: String,
        sent_at: Option<i64>,
        reason: RejectReason,
        detail: String,
        payload: Option<String>,
    ) -> Self {
        RejectRow {
            message_id,
            sent_at,
            reason,
            detail,
            payload,
            subxact: xact::current_subtransaction(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.message_id.len()
            + self.detail.len()
            + self.payload.as_ref().map_or(0, String::len)
            + 64
    }
}

#[derive(Clone, Copy, Default, Debug)]
pub struct Stats {
    pub loaded: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

/// Rows buffered for one target.
pub struct Batch {
    pub target: Rc<Target>,
    pub logins: Vec<LoginRow>,
    pub rejects: Vec<RejectRow>,
}

#[derive(Default)]
struct State {
    /// A load is under way: set by the row trigger, cleared by the statement trigger's flush
    /// and at every (sub)transaction end.
    loading: bool,
    batches: Vec<Batch>,
    rows: usize,
    bytes: usize,
    stats: Stats,
    /// Counters as they were when each open subtransaction started.
    saved_stats: Vec<(SubTransactionId, Stats)>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Most rows a new batch reserves room for.
const BATCH_ROWS_RESERVED: usize = 16_384;

/// What the buffer holds after a push.
pub struct Held {
    pub rows: usize,
    pub bytes: usize,
}

fn push(target: &Rc<Target>, bytes: usize, add: impl FnOnce(&mut Batch)) -> Held {
    STATE.with_borrow_mut(|s| {
        s.loading = true;
        let batch = match s.batches.iter().position(|b| Rc::ptr_eq(&b.target, target)) {
            Some(i) => &mut s.batches[i],
            None => {
                // Room for a whole batch up front: growing a multi-megabyte Vec by doubling
                // copied it and faulted in fresh pages at every step (4% of an ingest).
                let rows = crate::settings::ingest_batch_rows().min(BATCH_ROWS_RESERVED);
                s.batches.push(Batch {
                    target: Rc::clone(target),
                    logins: Vec::with_capacity(rows),
                    rejects: Vec::new(),
                });
                let last = s.batches.len() - 1;
                &mut s.batches[last]
            }
        };
        add(batch);
        s.rows += 1;
        s.bytes += bytes;
        Held { rows: s.rows, bytes: s.bytes }
    })
}

pub fn push_login(target: &Rc<Target>, row: LoginRow) -> Held {
    push(target, row.bytes(), |b| b.logins.push(row))
}

pub fn push_reject(target: &Rc<Target>, row: RejectRow) -> Held {
    push(target, row.bytes(), |b| b.rejects.push(row))
}

/// Takes the rows the running (sub)transaction may write: those it or its committed children
/// buffered. Rows of outer levels stay for their own level's flush.
pub fn take_flushable() -> Vec<Batch> {
    let current = xact::current_subtransaction();
    STATE.with_borrow_mut(|s| {
        let mut out = Vec::new();
        for batch in &mut s.batches {
            let logins = drain_where(&mut batch.logins, |r| r.subxact >= current);
            let rejects = drain_where(&mut batch.rejects, |r| r.subxact >= current);
            if !logins.is_empty() || !rejects.is_empty() {
                out.push(Batch { target: Rc::clone(&batch.target), logins, rejects });
            }
        }
        s.batches.retain(|b| !b.logins.is_empty() || !b.rejects.is_empty());
        recount(s);
        out
    })
}

/// Removes and returns the items matching `pred`, keeping the others in order.
fn drain_where<T>(items: &mut Vec<T>, pred: impl Fn(&T) -> bool) -> Vec<T> {
    if items.iter().all(&pred) {
        return std::mem::take(items);
    }
    let (taken, kept) = std::mem::take(items).into_iter().partition(|r| pred(r));
    *items = kept;
    taken
}

fn recount(s: &mut State) {
    s.rows = s.batches.iter().map(|b| b.logins.len() + b.rejects.len()).sum();
    s.bytes = s
        .batches
        .iter()
        .map(|b| {
            b.logins.iter().map(LoginRow::bytes).sum::<usize>()
                + b.rejects.iter().map(RejectRow::bytes).sum::<usize>()
        })
        .sum();
}

/// See [`super::statement_running`].
pub fn statement_running() -> bool {
    STATE.try_with(|s| s.try_borrow().is_ok_and(|s| s.loading)).unwrap_or(false)
}

/// The statement's load is done (its statement trigger ran).
pub fn statement_done() {
    STATE.with_borrow_mut(|s| s.loading = false);
}

pub fn add_stats(delta: Stats) {
    STATE.with_borrow_mut(|s| {
        s.stats.loaded += delta.loaded;
        s.stats.duplicates += delta.duplicates;
        s.stats.rejected += delta.rejected;
    });
}

pub fn stats() -> Stats {
    STATE.with_borrow(|s| s.stats)
}

fn on_transaction(event: Event) {
    match event {
        Event::PreCommit => {
            if STATE.with_borrow(|s| s.rows > 0) {
                // Raising here aborts the transaction, which empties the buffer.
                MaskError::Unflushed.report();
            }
        }
        Event::End => STATE.with_borrow_mut(|s| *s = State::default()),
    }
}

fn on_subtransaction(event: SubEvent) {
    STATE.with_borrow_mut(|s| match event {
        SubEvent::Start(id) => s.saved_stats.push((id, s.stats)),
        SubEvent::Commit(id) => s.saved_stats.retain(|(saved, _)| *saved < id),
        SubEvent::Abort(id) => {
            s.loading = false;
            for batch in &mut s.batches {
                batch.logins.retain(|r| r.subxact < id);
                batch.rejects.retain(|r| r.subxact < id);
            }
            s.batches.retain(|b| !b.logins.is_empty() || !b.rejects.is_empty());
            recount(s);
            if let Some(i) = s.saved_stats.iter().position(|(saved, _)| *saved == id) {
                s.stats = s.saved_stats[i].1;
                s.saved_stats.truncate(i);
            }
        }
    });
}

pub fn init() {
    xact::on_transaction(on_transaction);
    xact::on_subtransaction(on_subtransaction);
}
