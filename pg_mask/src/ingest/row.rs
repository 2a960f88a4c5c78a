//! `ingest_login_events(logins_table, rejects_table)`: the INSTEAD OF INSERT row trigger of an
//! ingest view `(message_id text, sent_at timestamptz, body text[, database_error text])`.
//!
//! Each row becomes exactly one buffered login row or one buffered reject; nothing input-driven
//! raises. Only a missing key (nothing could be stored masked), a NULL message id (a client bug:
//! no idempotency without it) or a wrongly declared view raise, and they raise before anything
//! is buffered. A row with `database_error` set is a message the loader found the database
//! refuses (see [`pg_mask_core::refusal`]): it is stored as a `database_error` reject.

use super::buffer::{self, LoginRow, RejectRow};
use super::flush::{self, MAX_STATEMENT_BYTES};
use super::target;
use crate::error::MaskError;
use crate::functions::check_maskable;
use crate::keys;
use crate::pg::trigger::{TriggerCall, TriggerResult};
use crate::settings;
use pg_mask_core::login::{self, Limits, RejectReason, Value};
use pg_mask_core::refusal::Refusal;
use pg_mask_core::schema::{Kind, FIELDS};
use pg_mask_core::KeyRing;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::Spi;

/// Longest reject payload kept, as a token: a whole body masked. An SQS message is at most
/// 1 MiB; a bigger line from a file load is still rejected, with its payload left out.
const MAX_PAYLOAD_TOKEN: usize = 256 << 20;

#[pg_trigger]
fn ingest_login_events<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<TriggerResult<'a>, std::convert::Infallible> {
    Ok(ingest_row(&TriggerCall::new(trigger)).unwrap_or_else(|e| e.report()))
}

/// The view's columns: message_id, sent_at, body, and optionally database_error.
const SHAPE: [pg_sys::Oid; 4] =
    [pg_sys::TEXTOID, pg_sys::TIMESTAMPTZOID, pg_sys::TEXTOID, pg_sys::TEXTOID];

fn ingest_row<'a>(call: &TriggerCall<'a>) -> Result<TriggerResult<'a>, MaskError> {
    let event = call.event();
    if !(event.fired_instead() && event.fired_for_row() && event.fired_by_insert()) {
        return Err(MaskError::WrongTriggerUse {
            function: "ingest_login_events",
            expected: "an INSTEAD OF INSERT … FOR EACH ROW trigger on a view",
        });
    }
    let types = call.column_types();
    let shaped =
        (3..=4).contains(&types.len()) && types.iter().zip(SHAPE).all(|(t, want)| *t == Some(want));
    if !shaped {
        return Err(MaskError::BadViewShape);
    }
    let target = target::for_call(call)?;
    let ring = keys::current_ring()?;

    let message_id = call.text(1).ok_or(MaskError::NullMessageId)?;
    let message_id = utf8(message_id).into_owned();
    let sent_at = call.timestamptz(2);
    let body = call.text(3).map(utf8);
    let body = body.as_deref();
    let refused = if types.len() == 4 { call.text(4) } else { None };

    let held = if let Some(report) = refused {
        let refusal = known_objects_only(Refusal::parse(&utf8(report)), &target)?;
        let detail = refusal.detail();
        let reject = reject(&ring, message_id, sent_at, RejectReason::DatabaseError, detail, body);
        buffer::push_reject(&target, reject)
    } else {
        let limits = Limits::for_columns(&target.widths, ring.active_key_id().len());
        match login::parse(body.unwrap_or(""), &limits) {
            Ok(event) => {
                let text_bytes = FIELDS.iter().zip(&event.values).map(|(field, value)| {
                    match (field.kind, value) {
                        (Kind::Masked, Some(Value::Text(t))) => ring.mask_len(t.len()),
                        (_, Some(Value::Text(t))) => t.len(),
                        _ => 0,
                    }
                });
                let mut row = LoginRow::new(&message_id, sent_at, text_bytes.sum());
                for (i, (field, value)) in FIELDS.iter().zip(event.values).enumerate() {
                    match (field.kind, value) {
                        (_, None) => {}
                        (_, Some(Value::Int(v))) => row.set_int(i, v),
                        // Masked here, before anything leaves this function: plaintext never
                        // reaches the INSERT's parameters. The table's mask_columns trigger
                        // sees valid tokens and keeps them.
                        (Kind::Masked, Some(Value::Text(t))) => {
                            check_maskable(field.json, t.len(), ring.mask_len(t.len()))?;
                            row.set_masked(i, &ring, &t);
                        }
                        (_, Some(Value::Text(t))) => row.set_text(i, &t),
                    }
                }
                buffer::push_login(&target, row)
            }
            Err(r) => {
                let reject = reject(&ring, message_id, sent_at, r.reason, r.detail, body);
                buffer::push_reject(&target, reject)
            }
        }
    };
    if held.rows >= settings::ingest_batch_rows() || held.bytes >= MAX_STATEMENT_BYTES {
        flush::flush()?;
    }
    // Returning the view row tells COPY the row was handled (it counts it).
    Ok(call.unchanged_row())
}

/// Text from the database as `str`. The database's encoding is UTF-8 (pg_mask refuses to work
/// in any other), so the lossy conversion is only a guard; `from_utf8` checks ASCII a word at a
/// time where `from_utf8_lossy` goes byte by byte (3% of a profiled ingest).
fn utf8(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    std::str::from_utf8(bytes).map_or_else(|_| String::from_utf8_lossy(bytes), Into::into)
}

/// The refusal with its object name kept only if the target's tables (or their partitions)
/// really have a constraint, column or table of that name: the detail is stored in clear, and a
/// loader must not be able to store a value there by calling it a name.
fn known_objects_only(mut refusal: Refusal, target: &target::Target) -> Result<Refusal, MaskError> {
    let Some((kind, name)) = &refusal.object else { return Ok(refusal) };
    // The tables themselves, and their partitions (pg_partition_tree lists nothing for a table
    // that is not partitioned).
    let tables = "SELECT $2::pg_catalog.oid UNION ALL SELECT $3::pg_catalog.oid \
                  UNION ALL SELECT relid FROM pg_catalog.pg_partition_tree($2) \
                  UNION ALL SELECT relid FROM pg_catalog.pg_partition_tree($3)";
    let query = match *kind {
        "constraint" => format!(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conname = $1 AND conrelid IN ({tables}))"
        ),
        "column" => format!(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attname = $1              AND attnum > 0 AND NOT attisdropped AND attrelid IN ({tables}))"
        ),
        _ => format!(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_class WHERE relname = $1 AND oid IN ({tables}))"
        ),
    };
    let known = Spi::get_one_with_args::<bool>(
        &query,
        &[name.as_str().into(), target.logins.oid.into(), target.rejects.oid.into()],
    )
    .map_err(|e| MaskError::Spi(e.to_string()))?
    .unwrap_or(false);
    if !known {
        refusal.object = None;
    }
    Ok(refusal)
}

/// A reject with the whole body masked as its payload. Masked now, like the personal fields: a
/// batch of large rejects could otherwise spill plaintext into the INSERT's temp files.
fn reject(
    ring: &KeyRing,
    message_id: String,
    sent_at: Option<i64>,
    reason: RejectReason,
    mut detail: String,
    body: Option<&str>,
) -> RejectRow {
    let payload = body.and_then(|b| {
        if ring.mask_len(b.len()) <= MAX_PAYLOAD_TOKEN {
            Some(ring.mask(b))
        } else {
            detail.push_str(&format!(
                " (payload not kept: the body is {} bytes, over the {} MiB a reject keeps)",
                b.len(),
                (MAX_PAYLOAD_TOKEN * 3 / 4) >> 20
            ));
            None
        }
    });
    RejectRow::new(message_id, sent_at, reason, detail, payload)
}
