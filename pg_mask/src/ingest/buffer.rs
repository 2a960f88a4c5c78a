//! The per-backend buffer between the row trigger and the flush, and the counters of what the
//! current transaction loaded.
//!
//! The buffer only ever holds rows of the statement that is running (the statement trigger
//! flushes it), so an aborted (sub)transaction simply empties it: a failed COPY must not leak
//! its rows into the next statement. Counters are snapshotted at each subtransaction start and
//! restored when it aborts. A commit with rows still buffered is refused, not silently lossy.

use super::target::Target;
use crate::error::MaskError;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::rc::Rc;

pub struct LoginRow {
    pub message_id: String,
    pub sent_at: Option<TimestampWithTimeZone>,
    pub user_id: String,
    pub device_type: Option<String>,
    /// Token, already masked.
    pub ip: Option<String>,
    pub locale: Option<String>,
    /// Token, already masked.
    pub device_id: Option<String>,
    pub app_version: Option<i32>,
}

pub struct RejectRow {
    pub message_id: String,
    pub sent_at: Option<TimestampWithTimeZone>,
    pub reason: &'static str,
    pub detail: String,
    /// The whole body as a token, already masked.
    pub payload: Option<String>,
}

#[derive(Clone, Copy, Default, Debug)]
pub struct Stats {
    pub loaded: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

#[derive(Default)]
pub struct Batch {
    pub target: Option<Rc<Target>>,
    pub logins: Vec<LoginRow>,
    pub rejects: Vec<RejectRow>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.logins.len() + self.rejects.len()
    }
}

#[derive(Default)]
struct State {
    batch: Batch,
    stats: Stats,
    saved_stats: Vec<Stats>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Adds to the buffer and returns how many rows it now holds.
pub fn push(target: &Rc<Target>, add: impl FnOnce(&mut Batch)) -> usize {
    STATE.with_borrow_mut(|s| {
        if s.batch.target.as_ref().is_none_or(|t| !Rc::ptr_eq(t, target)) {
            s.batch.target = Some(Rc::clone(target));
        }
        add(&mut s.batch);
        s.batch.len()
    })
}

/// Takes the buffered rows, leaving the buffer empty.
pub fn take() -> Batch {
    STATE.with_borrow_mut(|s| std::mem::take(&mut s.batch))
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

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            if STATE.with_borrow(|s| s.batch.len() > 0) {
                // Raising here aborts the transaction, which empties the buffer.
                MaskError::Unflushed.report();
            }
        }
        _ => STATE.with_borrow_mut(|s| *s = State::default()),
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    STATE.with_borrow_mut(|s| match event {
        SUBXACT_EVENT_START_SUB => s.saved_stats.push(s.stats),
        SUBXACT_EVENT_COMMIT_SUB => {
            s.saved_stats.pop();
        }
        SUBXACT_EVENT_ABORT_SUB => {
            s.batch = Batch::default();
            if let Some(saved) = s.saved_stats.pop() {
                s.stats = saved;
            }
        }
        _ => {}
    });
}

pub fn register_callbacks() {
    // SAFETY: called once from _PG_init; the callbacks live as long as the library.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}
