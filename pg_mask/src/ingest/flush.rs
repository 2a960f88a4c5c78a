//! Writes the buffered batch out: one set-based INSERT for the logins, one for the rejects.
//!
//! Rows are sorted by message id first, so two sessions loading overlapping ids take their
//! unique-index locks in the same order (they wait and skip instead of deadlocking).
//!
//! The logins go in with a plain INSERT inside a subtransaction first: most batches hold no
//! already-loaded id, and `ON CONFLICT` costs a second unique-index search per row (a quarter of
//! the ingest time in a profile of 1M rows). Only if that raises `unique_violation` is the
//! subtransaction rolled back and the batch inserted again with `ON CONFLICT DO NOTHING`. Rows
//! that it skipped are counted as duplicates.

use super::buffer::{self, Batch, Stats};
use crate::error::MaskError;
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;

/// Runs `f` in a subtransaction. Returns `None` if it raised `expected` (the subtransaction is
/// rolled back); any other error is rolled back and re-raised. The same dance as PL/pgSQL's
/// `BEGIN … EXCEPTION` block: keep the caller's memory context and resource owner.
///
/// # Safety
/// Must be called inside a transaction.
unsafe fn in_subtransaction<R>(expected: PgSqlErrorCode, f: impl FnOnce() -> R) -> Option<R> {
    // SAFETY: plain reads/writes of backend globals, as PostgreSQL's own PLs do.
    unsafe {
        let old_cx = pg_sys::CurrentMemoryContext;
        let old_owner = pg_sys::CurrentResourceOwner;
        let restore = move || {
            pg_sys::MemoryContextSwitchTo(old_cx);
            pg_sys::CurrentResourceOwner = old_owner;
        };
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(old_cx);
        PgTryBuilder::new(AssertUnwindSafe(move || {
            let r = f();
            pg_sys::ReleaseCurrentSubTransaction();
            restore();
            Some(r)
        }))
        .catch_others(move |e| {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            restore();
            let code = match &e {
                pg_sys::panic::CaughtError::PostgresError(r)
                | pg_sys::panic::CaughtError::ErrorReport(r)
                | pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => r.sql_error_code(),
            };
            if code == expected {
                None
            } else {
                e.rethrow()
            }
        })
        .execute()
    }
}

/// `ingest_flush()`: the AFTER INSERT … FOR EACH STATEMENT trigger of an ingest view.
#[pg_trigger]
fn ingest_flush<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    flush().unwrap_or_else(|e| e.report());
    Ok(None)
}

pub fn flush() -> Result<(), MaskError> {
    let Batch { target, mut logins, mut rejects } = buffer::take();
    let Some(target) = target else { return Ok(()) };
    logins.sort_unstable_by(|a, b| a.message_id.cmp(&b.message_id));
    rejects.sort_unstable_by(|a, b| a.message_id.cmp(&b.message_id));
    let (n_logins, n_rejects) = (logins.len() as i64, rejects.len() as i64);

    let mut delta = Stats::default();
    Spi::connect_mut(|client| -> Result<(), MaskError> {
        if !logins.is_empty() {
            let mut ids = Vec::with_capacity(logins.len());
            let mut sent = Vec::with_capacity(logins.len());
            let mut users = Vec::with_capacity(logins.len());
            let mut types = Vec::with_capacity(logins.len());
            let mut ips = Vec::with_capacity(logins.len());
            let mut devices = Vec::with_capacity(logins.len());
            let mut locales = Vec::with_capacity(logins.len());
            let mut versions = Vec::with_capacity(logins.len());
            for r in logins {
                ids.push(r.message_id);
                sent.push(r.sent_at);
                users.push(r.user_id);
                types.push(r.device_type);
                ips.push(r.ip);
                devices.push(r.device_id);
                locales.push(r.locale);
                versions.push(r.app_version);
            }
            let args: [DatumWithOid; 8] = [
                ids.into(),
                sent.into(),
                users.into(),
                types.into(),
                ips.into(),
                devices.into(),
                locales.into(),
                versions.into(),
            ];
            let fast = {
                let client = &mut *client;
                let args = &args;
                let target = &target;
                // SAFETY: called inside a transaction, with an SPI connection open.
                unsafe {
                    in_subtransaction(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, move || {
                        client.update(&target.insert_logins_fast, None, args).map(|t| t.len())
                    })
                }
            };
            let inserted = match fast {
                Some(result) => result,
                None => client.update(&target.insert_logins, None, &args).map(|t| t.len()),
            }
            .map_err(|e| MaskError::Spi(e.to_string()))? as i64;
            delta.loaded = inserted;
            delta.duplicates += n_logins - inserted;
        }
        if !rejects.is_empty() {
            let mut ids = Vec::with_capacity(rejects.len());
            let mut sent: Vec<Option<TimestampWithTimeZone>> = Vec::with_capacity(rejects.len());
            let mut reasons = Vec::with_capacity(rejects.len());
            let mut details = Vec::with_capacity(rejects.len());
            let mut payloads = Vec::with_capacity(rejects.len());
            for r in rejects {
                ids.push(r.message_id);
                sent.push(r.sent_at);
                reasons.push(r.reason.to_owned());
                details.push(r.detail);
                payloads.push(r.payload);
            }
            let args: [DatumWithOid; 5] =
                [ids.into(), sent.into(), reasons.into(), details.into(), payloads.into()];
            let inserted = client
                .update(&target.insert_rejects, None, &args)
                .map_err(|e| MaskError::Spi(e.to_string()))?
                .len() as i64;
            delta.rejected = inserted;
            delta.duplicates += n_rejects - inserted;
        }
        Ok(())
    })?;
    buffer::add_stats(delta);
    Ok(())
}
