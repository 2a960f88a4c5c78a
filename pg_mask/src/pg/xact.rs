//! Transaction and subtransaction events, for the per-backend state that must follow them (the
//! ingest buffer, caches re-checked once per transaction).
//!
//! One pair of callbacks is registered with PostgreSQL; the modules that care register plain
//! Rust functions here from `_PG_init`.

use pgrx::pg_sys;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// PostgreSQL's id of a (sub)transaction within its top-level transaction: 1 for the top level,
/// higher for each subtransaction started after.
pub type SubTransactionId = pg_sys::SubTransactionId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// About to commit: a listener may still raise an error, which aborts the transaction.
    PreCommit,
    /// Committed, aborted or prepared: the transaction is over.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubEvent {
    Start(SubTransactionId),
    Commit(SubTransactionId),
    Abort(SubTransactionId),
}

thread_local! {
    static LISTENERS: RefCell<Vec<fn(Event)>> = const { RefCell::new(Vec::new()) };
    static SUB_LISTENERS: RefCell<Vec<fn(SubEvent)>> = const { RefCell::new(Vec::new()) };
}

/// Transactions this backend has ended: a cheap "which transaction is this" for caches.
static ENDED: AtomicU64 = AtomicU64::new(0);

/// Registers the callbacks with PostgreSQL; from `_PG_init`, once.
pub fn init() {
    // SAFETY: called once from _PG_init; the callbacks live as long as the library.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// Calls `f` at every transaction event.
pub fn on_transaction(f: fn(Event)) {
    LISTENERS.with_borrow_mut(|l| l.push(f));
}

/// Calls `f` at every subtransaction event.
pub fn on_subtransaction(f: fn(SubEvent)) {
    SUB_LISTENERS.with_borrow_mut(|l| l.push(f));
}

/// The current transaction's number in this backend; it changes when the transaction ends.
pub fn transaction_number() -> u64 {
    ENDED.load(Ordering::Relaxed)
}

/// The id of the (sub)transaction running now.
pub fn current_subtransaction() -> SubTransactionId {
    // SAFETY: a plain read of the transaction state stack.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    let event = match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            Event::PreCommit
        }
        XACT_EVENT_COMMIT
        | XACT_EVENT_ABORT
        | XACT_EVENT_PREPARE
        | XACT_EVENT_PARALLEL_COMMIT
        | XACT_EVENT_PARALLEL_ABORT => {
            ENDED.fetch_add(1, Ordering::Relaxed);
            Event::End
        }
        _ => return,
    };
    let listeners = LISTENERS.with_borrow(Clone::clone);
    for f in listeners {
        f(event);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    my: SubTransactionId,
    _parent: SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    let event = match event {
        SUBXACT_EVENT_START_SUB => SubEvent::Start(my),
        SUBXACT_EVENT_COMMIT_SUB => SubEvent::Commit(my),
        SUBXACT_EVENT_ABORT_SUB => SubEvent::Abort(my),
        _ => return,
    };
    let listeners = SUB_LISTENERS.with_borrow(Clone::clone);
    for f in listeners {
        f(event);
    }
}
