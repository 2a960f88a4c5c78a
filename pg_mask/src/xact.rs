//! Which transaction this is, for caches that re-check something once per transaction (the key
//! file's `stat`, the ingest's column widths): a count of this backend's ended transactions.
//! Comparing it costs nothing per row, unlike asking for the transaction's start time (which the
//! ingest once did for every row), and no two transactions share a value.

use pgrx::pg_sys;
use std::sync::atomic::{AtomicU64, Ordering};

static ENDED: AtomicU64 = AtomicU64::new(0);

/// Called from `_PG_init`.
pub fn init() {
    // SAFETY: called once from _PG_init; the callback lives as long as the library.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut()) };
}

/// The current transaction's number in this backend; it changes when the transaction ends.
pub fn current() -> u64 {
    ENDED.load(Ordering::Relaxed)
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PREPARE
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PARALLEL_ABORT
    ) {
        ENDED.fetch_add(1, Ordering::Relaxed);
    }
}
