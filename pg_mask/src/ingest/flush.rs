//! Writes buffered rows out: the logins by bulk insert ([`super::bulk`]) where the table allows
//! it, else by one set-based INSERT ([`super::sql`]); the rejects by one set-based INSERT.
//!
//! The writes run as the ingest view's owner ([`crate::pg::security::as_role`]), with checks as
//! an INSERT by the owner would make them: a loader needs only INSERT on the view and never
//! holds a right on the tables, so it can load personal data but cannot read back a token for a
//! value of its choice. Rows are sorted by message id first, so two sessions loading overlapping
//! ids take their unique-index locks in the same order (they wait and skip instead of
//! deadlocking).
//!
//! On a plain local table the logins go in without conflict handling inside a subtransaction
//! first: most batches hold no already-loaded id, and `ON CONFLICT` costs a second unique-index
//! search per row (a quarter of the ingest time in a profile of 1M rows). Only if that raises
//! `unique_violation` is it rolled back; see [`insert_logins`]. On a table whose duplicates are
//! not found by `message_id` alone (a partitioned table keyed on the partition column too), the
//! loaded ids are looked up first and the rest inserted with `ON CONFLICT`. A Citus table gets
//! `ON CONFLICT` alone: looking up a batch's ids with `= ANY` across every shard cost more than
//! the insert itself (5 s for 10,000 ids on a two-worker cluster here).
//!
//! An error from the tables (a CHECK constraint, a partition bound, a timeout) reaches the
//! loader with its SQLSTATE and the name of the constraint or column, but without PostgreSQL's
//! DETAIL, whose "Failing row contains (…)" would show the tokens of the values sent
//! ([`MaskError::refused`]). Array parameters are split so none comes near 1 GB.

use super::buffer::{self, Batch, LoginRow, RejectRow, Stats, Stored};
use super::bulk::{self, Layout};
use super::sql::{self, Statements};
use super::target::Target;
use crate::error::MaskError;
use crate::pg::security::{as_role, with_settings};
use crate::pg::subxact::{in_subtransaction, rethrow_as};
use pg_mask_core::schema::{Kind, FIELDS, N};
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::collections::HashSet;

/// Most bytes of rows in one array parameter or one bulk insert. The buffer flushes at this
/// size too, so a batch normally makes one statement.
pub const MAX_STATEMENT_BYTES: usize = 64 << 20;

/// `ingest_flush()`: the AFTER INSERT … FOR EACH STATEMENT trigger of an ingest view.
#[pg_trigger]
fn ingest_flush<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    flush().unwrap_or_else(|e| e.report());
    buffer::statement_done();
    Ok(None)
}

/// Writes what the running (sub)transaction buffered.
pub fn flush() -> Result<(), MaskError> {
    for batch in buffer::take_flushable() {
        let target = std::rc::Rc::clone(&batch.target);
        let table = target.logins.sql_name.clone();
        let delta = rethrow_as(
            || as_role(target.owner, || write(batch)),
            |caught| {
                if caught.is_ours() {
                    caught.rethrow()
                }
                MaskError::refused(&table, &caught).report()
            },
        )?;
        buffer::add_stats(delta);
    }
    Ok(())
}

/// How the logins of a flush go in.
enum Path {
    /// COPY's multi-insert, tried in a subtransaction.
    Bulk(Layout),
    /// A plain INSERT, tried in a subtransaction.
    Insert,
    /// Loaded ids looked up first, the rest inserted with `ON CONFLICT`; no subtransaction.
    LookUpFirst,
    /// `ON CONFLICT` alone (Citus); no subtransaction.
    SkipOnConflict,
}

fn write(batch: Batch) -> Result<Stats, MaskError> {
    let Batch { target, mut logins, mut rejects } = batch;
    logins.sort_unstable_by(|a, b| a.message_id().cmp(b.message_id()));
    rejects.sort_unstable_by(|a, b| a.message_id.cmp(&b.message_id));
    Spi::connect_mut(|client| {
        if target.statements.borrow().is_none() {
            let prepared = sql::prepare(client, &target)?;
            *target.statements.borrow_mut() = Some(prepared);
        }
        let statements = target.statements.borrow();
        let Some(statements) = statements.as_ref() else {
            return Err(MaskError::Spi("statements were not prepared".into()));
        };
        let mut delta = Stats::default();
        if !logins.is_empty() {
            let path = path(&target);
            let n = logins.len() as i64;
            let mut inserted = 0;
            for chunk in chunks_by_bytes(logins, LoginRow::bytes) {
                inserted += insert_logins(client, statements, &path, chunk)? as i64;
            }
            delta.loaded = inserted;
            delta.duplicates += n - inserted;
        }
        if !rejects.is_empty() {
            let n = rejects.len() as i64;
            let mut inserted = 0;
            for chunk in chunks_by_bytes(rejects, RejectRow::bytes) {
                inserted += insert_rejects(client, statements, chunk)?;
            }
            delta.rejected = inserted;
            delta.duplicates += n - inserted;
        }
        Ok(delta)
    })
}

fn path(target: &Target) -> Path {
    if bulk::citus_manages(target.logins.oid) {
        return Path::SkipOnConflict;
    }
    if !target.logins.conflicts_on_message_id() {
        return Path::LookUpFirst;
    }
    match Layout::resolve(target) {
        Ok(layout) => Path::Bulk(layout),
        Err(why) => {
            debug1!("pg_mask: rows go in by INSERT, not bulk insert: {why}");
            Path::Insert
        }
    }
}

/// Splits `rows` into runs of at most [`MAX_STATEMENT_BYTES`] (at least one row each).
fn chunks_by_bytes<T>(rows: Vec<T>, bytes: fn(&T) -> usize) -> Vec<Vec<T>> {
    // The usual case, one chunk, without moving the rows.
    if rows.iter().map(bytes).sum::<usize>() <= MAX_STATEMENT_BYTES {
        return vec![rows];
    }
    let mut out: Vec<Vec<T>> = vec![Vec::new()];
    let mut size = 0;
    for row in rows {
        let b = bytes(&row);
        if size + b > MAX_STATEMENT_BYTES && out.last().is_some_and(|c| !c.is_empty()) {
            out.push(Vec::new());
            size = 0;
        }
        size += b;
        if let Some(last) = out.last_mut() {
            last.push(row);
        }
    }
    out
}

fn spi(e: pgrx::spi::SpiError) -> MaskError {
    MaskError::Spi(e.to_string())
}

/// Inserts the logins and returns how many were new.
///
/// On the fast paths the batch is tried as is in a subtransaction. If an id was already there,
/// the ids already loaded are looked up in one query and left out, and the rest is tried again:
/// a redelivered batch costs one index probe per row, not a second full insert. Only if that
/// meets an id too (a concurrent loader got there between the probe and the insert) does the
/// rest go in with `ON CONFLICT DO NOTHING`.
fn insert_logins(
    client: &mut SpiClient<'_>,
    statements: &Statements,
    path: &Path,
    mut logins: Vec<LoginRow>,
) -> Result<usize, MaskError> {
    if matches!(path, Path::LookUpFirst | Path::SkipOnConflict) {
        if matches!(path, Path::LookUpFirst) {
            drop_loaded(client, statements, &mut logins)?;
            if logins.is_empty() {
                return Ok(0);
            }
        }
        return counted(client, &statements.insert_logins_skipping, &login_args(&logins));
    }
    if let Some(inserted) = attempt(client, statements, path, &logins)? {
        return Ok(inserted);
    }
    drop_loaded(client, statements, &mut logins)?;
    if logins.is_empty() {
        return Ok(0);
    }
    if let Some(inserted) = attempt(client, statements, path, &logins)? {
        return Ok(inserted);
    }
    counted(client, &statements.insert_logins_skipping, &login_args(&logins))
}

/// Runs one of the counting statements ([`super::sql`]) and returns its count.
fn counted(
    client: &mut SpiClient<'_>,
    statement: &pgrx::spi::OwnedPreparedStatement,
    args: &[DatumWithOid<'_>],
) -> Result<usize, MaskError> {
    let n = client
        .update(statement, None, args)
        .and_then(|t| t.first().get_one::<i64>())
        .map_err(spi)?;
    Ok(n.unwrap_or(0) as usize)
}

/// The message ids among `ids` that `probe` (one of the `*_ids` statements) finds.
fn known_ids(
    client: &mut SpiClient<'_>,
    probe: &pgrx::spi::OwnedPreparedStatement,
    ids: Vec<&str>,
) -> Result<HashSet<String>, MaskError> {
    // The unique index on message_id, always. Left to the planner, a look-up planned while
    // the table was small (the rejects table of a fresh load always is) keeps a sequential
    // scan, every row compared with every id at every flush: 6 of 16 s in a load of 1M
    // messages with 2% rejects. And with 10,000 ids on a 1M-row table the planner picked a
    // sequential scan that took 190 ms where the index takes a few.
    with_settings(&[(c"enable_seqscan", c"off")], || {
        let mut known = HashSet::new();
        for row in client.select(probe, None, &[ids.into()]).map_err(spi)? {
            known.extend(row.get::<String>(1).map_err(spi)?);
        }
        Ok(known)
    })
}

fn drop_loaded(
    client: &mut SpiClient<'_>,
    statements: &Statements,
    logins: &mut Vec<LoginRow>,
) -> Result<(), MaskError> {
    let ids = logins.iter().map(LoginRow::message_id).collect();
    let loaded = known_ids(client, &statements.loaded_ids, ids)?;
    logins.retain(|r| !loaded.contains(r.message_id()));
    Ok(())
}

/// One try at inserting `rows` in a subtransaction: `None` if an id was already there; any
/// other error is raised again as it was.
fn attempt(
    client: &mut SpiClient<'_>,
    statements: &Statements,
    path: &Path,
    rows: &[LoginRow],
) -> Result<Option<usize>, MaskError> {
    let result = in_subtransaction(|| match path {
        Path::Bulk(layout) => Ok(layout.insert(rows, load_time())),
        _ => client.update(&statements.insert_logins, None, &login_args(rows)).map(|t| t.len()),
    });
    match result {
        Ok(inserted) => inserted.map(Some).map_err(spi),
        Err(caught) if caught.code == PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION => Ok(None),
        Err(caught) => caught.rethrow(),
    }
}

/// The transaction's start time, which a row without a send time is dated by (as `now()`).
fn load_time() -> i64 {
    // SAFETY: a plain read of the transaction's start timestamp.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

fn timestamps<T>(rows: &[T], at: fn(&T) -> Option<i64>) -> Vec<Option<TimestampWithTimeZone>> {
    rows.iter().map(|r| at(r).and_then(|t| TimestampWithTimeZone::try_from(t).ok())).collect()
}

/// The logins as the array parameters of the INSERT statements: ids, send times, then one
/// array per field.
fn login_args(rows: &[LoginRow]) -> Vec<DatumWithOid<'_>> {
    let mut args: Vec<DatumWithOid<'_>> = Vec::with_capacity(N + 2);
    args.push(rows.iter().map(LoginRow::message_id).collect::<Vec<_>>().into());
    args.push(timestamps(rows, |r| r.sent_at).into());
    for (i, field) in FIELDS.iter().enumerate() {
        if field.kind == Kind::Version {
            let column: Vec<Option<i32>> = rows
                .iter()
                .map(|r| match r.value(i) {
                    Some(Stored::Int(v)) => Some(v),
                    _ => None,
                })
                .collect();
            args.push(column.into());
        } else {
            let column: Vec<Option<&str>> = rows
                .iter()
                .map(|r| match r.value(i) {
                    Some(Stored::Text(t)) => Some(t),
                    _ => None,
                })
                .collect();
            args.push(column.into());
        }
    }
    args
}

/// Inserts the rejects that are neither loaded nor already rejected; returns how many.
fn insert_rejects(
    client: &mut SpiClient<'_>,
    statements: &Statements,
    mut rejects: Vec<RejectRow>,
) -> Result<i64, MaskError> {
    // A message id always comes with the same body, so a valid message never meets its own
    // reject; the check still keeps one id in one table for a hand-made batch that reuses an id.
    // Ids already rejected are left out here too, not only by ON CONFLICT: on Citus the
    // INSERT's count includes a row skipped on conflict even through RETURNING, here (seen with
    // Citus 13.2), and the counts must be right. Rejects are few: the look-ups are cheap even
    // across Citus's shards.
    for probe in [&statements.loaded_ids, &statements.rejected_ids] {
        let ids = rejects.iter().map(|r| r.message_id.as_str()).collect();
        let known = known_ids(client, probe, ids)?;
        rejects.retain(|r| !known.contains(&r.message_id));
        if rejects.is_empty() {
            return Ok(0);
        }
    }
    let sent = timestamps(&rejects, |r| r.sent_at);
    let ids: Vec<&str> = rejects.iter().map(|r| r.message_id.as_str()).collect();
    let reasons: Vec<&str> = rejects.iter().map(|r| r.reason.as_str()).collect();
    let details: Vec<&str> = rejects.iter().map(|r| r.detail.as_str()).collect();
    let payloads: Vec<Option<&str>> = rejects.iter().map(|r| r.payload.as_deref()).collect();
    let args: [DatumWithOid; 5] =
        [ids.into(), sent.into(), reasons.into(), details.into(), payloads.into()];
    counted(client, &statements.insert_rejects, &args).map(|n| n as i64)
}
