//! Writes the buffered batch out: the logins by bulk insert ([`bulk`]) where the table allows it,
//! else by one set-based INSERT; the rejects by one set-based INSERT.
//!
//! Rows are sorted by message id first, so two sessions loading overlapping ids take their
//! unique-index locks in the same order (they wait and skip instead of deadlocking).
//!
//! The logins go in without conflict handling inside a subtransaction first: most batches hold
//! no already-loaded id, and `ON CONFLICT` costs a second unique-index search per row (a quarter
//! of the ingest time in a profile of 1M rows). Only if that raises `unique_violation` is the
//! subtransaction rolled back; see [`insert_logins`] for what follows. Rows left out are counted
//! as duplicates.

use super::buffer::{self, Batch, LoginRow, RejectRow, Stats};
use super::bulk;
use super::target::Target;
use crate::error::MaskError;
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::collections::HashSet;
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

    let mut delta = Stats::default();
    if !logins.is_empty() {
        let n = logins.len() as i64;
        let inserted = insert_logins(&target, logins)? as i64;
        delta.loaded = inserted;
        delta.duplicates += n - inserted;
    }
    if !rejects.is_empty() {
        let inserted = insert_rejects(&target, rejects)?;
        delta.rejected = inserted.0;
        delta.duplicates += inserted.1;
    }
    buffer::add_stats(delta);
    Ok(())
}

/// Inserts the logins and returns how many were new.
///
/// The batch is tried as is in a subtransaction (bulk insert where the table allows, else a plain
/// INSERT). If an id was already there, the ids already loaded are looked up in one query and
/// left out, and the rest is tried again: a redelivered batch costs one index probe per row, not
/// a second full insert. Only if that meets an id too (a concurrent loader got there between the
/// probe and the insert) does the rest go in with `ON CONFLICT DO NOTHING`.
fn insert_logins(target: &Target, mut logins: Vec<LoginRow>) -> Result<usize, MaskError> {
    // SAFETY: inside the transaction of the statement being flushed.
    let layout = unsafe { bulk::Layout::resolve(target.logins_table(), &target.widths()?) };
    if let Err(why) = &layout {
        debug1!("pg_mask: {} rows go in by INSERT, not bulk insert: {why}", logins.len());
    }
    let spi = |e: pgrx::spi::SpiError| MaskError::Spi(e.to_string());
    Spi::connect_mut(|client| {
        if let Some(inserted) = attempt(client, target, &layout, &logins)? {
            return Ok(inserted);
        }
        let ids: Vec<&str> = logins.iter().map(|r| r.message_id.as_str()).collect();
        let mut loaded = HashSet::new();
        for row in client.select(&target.loaded_ids, None, &[ids.into()]).map_err(spi)? {
            loaded.extend(row.get::<String>(1).map_err(spi)?);
        }
        logins.retain(|r| !loaded.contains(&r.message_id));
        if logins.is_empty() {
            return Ok(0);
        }
        if let Some(inserted) = attempt(client, target, &layout, &logins)? {
            return Ok(inserted);
        }
        client
            .update(&target.insert_logins, None, &login_args(&logins))
            .map(|t| t.len())
            .map_err(spi)
    })
}

/// One try at inserting `rows` in a subtransaction: `None` if an id was already there.
fn attempt(
    client: &mut SpiClient<'_>,
    target: &Target,
    layout: &Result<bulk::Layout, &'static str>,
    rows: &[LoginRow],
) -> Result<Option<usize>, MaskError> {
    // SAFETY: called inside a transaction, with an SPI connection open.
    let result = unsafe {
        in_subtransaction(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, move || match layout {
            Ok(layout) => Ok(bulk::insert(layout, rows)),
            Err(_) => {
                client.update(&target.insert_logins_fast, None, &login_args(rows)).map(|t| t.len())
            }
        })
    };
    result.transpose().map_err(|e| MaskError::Spi(e.to_string()))
}

/// The logins as the eight array parameters of the INSERT statements.
fn login_args(rows: &[LoginRow]) -> [DatumWithOid<'_>; 8] {
    let text = |f: fn(&LoginRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
    [
        text(|r| Some(&r.message_id)).into(),
        rows.iter().map(|r| r.sent_at).collect::<Vec<_>>().into(),
        text(|r| Some(&r.user_id)).into(),
        text(|r| r.device_type.as_deref()).into(),
        text(|r| r.ip.as_deref()).into(),
        text(|r| r.device_id.as_deref()).into(),
        text(|r| r.locale.as_deref()).into(),
        rows.iter().map(|r| r.app_version).collect::<Vec<_>>().into(),
    ]
}

/// Inserts the rejects; returns (inserted, duplicates).
fn insert_rejects(target: &Target, rejects: Vec<RejectRow>) -> Result<(i64, i64), MaskError> {
    let n = rejects.len() as i64;
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
    let inserted = Spi::connect_mut(|client| {
        client.update(&target.insert_rejects, None, &args).map(|t| t.len() as i64)
    })
    .map_err(|e| MaskError::Spi(e.to_string()))?;
    Ok((inserted, n - inserted))
}
