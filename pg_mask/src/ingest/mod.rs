//! The masked ingest path for SQS login events.
//!
//! A loader runs `COPY login_ingest (message_id, sent_at, body) FROM STDIN` into a view that has
//! two triggers from this module:
//! - [`row::ingest_login_events`] (INSTEAD OF INSERT, FOR EACH ROW): validates the body with
//!   [`pg_mask_core::login`], masks the personal fields, and buffers either a row for the logins
//!   table or a reject;
//! - [`flush::ingest_flush`] (AFTER INSERT, FOR EACH STATEMENT): writes the buffer out, as the
//!   view's owner, the logins by [`bulk`] insert (COPY's own multi-insert) where the table is a
//!   plain local heap that allows it and otherwise by one set-based INSERT, duplicates skipped.
//!
//! Where the rows go is resolved by [`target`] from the trigger's arguments, in the view's own
//! schema (never through the caller's `search_path`), and resolved again whenever DDL touches the
//! view or its tables. [`buffer`] keeps INSERT semantics across subtransactions: a rolled-back
//! savepoint or a caught error drops only the rows it buffered. [`sql`] writes the statements
//! from the column description in [`pg_mask_core::schema`]. [`stats::ingest_stats`] reports what
//! the current transaction loaded.
//!
//! Personal fields and a reject's whole payload are masked in the row trigger, before
//! buffering: plaintext lives only in this backend's memory for the duration of one row, never
//! in a relation, a temp file, the WAL or a log line. A bad body never raises: it becomes a
//! reject.

mod buffer;
mod bulk;
mod flush;
mod row;
mod sql;
mod stats;
mod target;

/// The address of the ingest row trigger's C function, by which pg_mask recognises an ingest
/// view whatever the trigger or function is called.
pub fn row_trigger_address() -> *const () {
    row::ingest_login_events_wrapper as *const ()
}

/// Whether a statement that loads an ingest view is running (its row trigger has fired and its
/// statement trigger has not): the log hook then keeps the statement, which holds the bodies,
/// out of the server log.
pub fn statement_running() -> bool {
    buffer::statement_running()
}

/// Registers the transaction callbacks that keep the buffer honest across aborts.
pub fn init() {
    buffer::init();
}
