//! The masked ingest path for SQS login events.
//!
//! A client runs `COPY login_ingest (message_id, sent_at, body) FROM STDIN` into a view that has
//! two triggers from this module:
//! - [`row::ingest_login_events`] (INSTEAD OF INSERT, FOR EACH ROW): validates the body with
//!   [`pg_mask_core::login`] and buffers either a row for the logins table or a reject;
//! - [`flush::ingest_flush`] (AFTER INSERT, FOR EACH STATEMENT): writes the buffer out, the
//!   logins by [`bulk`] insert (COPY's own multi-insert) where the table allows it and otherwise
//!   by one set-based `INSERT … SELECT FROM unnest(…)`, duplicates skipped by
//!   `ON CONFLICT (message_id) DO NOTHING`.
//!
//! `ip`, `device_id` and a reject's whole payload are masked in the row trigger, before
//! buffering (the tables' own `mask_columns` triggers then see valid tokens and keep them).
//! Plaintext lives only in this backend's memory for the duration of one row: never in a
//! relation, a temp file, the WAL or a log line. A bad body never raises: it becomes a reject.
//! [`stats::ingest_stats`] reports what the current transaction loaded.

mod buffer;
mod bulk;
mod flush;
mod row;
mod stats;
mod target;

/// Registers the transaction callbacks that keep the buffer honest across aborts.
pub fn init() {
    buffer::register_callbacks();
}
