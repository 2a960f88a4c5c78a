//! `ingest_login_events(logins_table, rejects_table)`: the INSTEAD OF INSERT row trigger of an
//! ingest view `(message_id text, sent_at timestamptz, body text)`.
//!
//! Each row becomes exactly one buffered login row or one buffered reject; nothing input-driven
//! raises. Only a missing key (nothing could be stored masked), a NULL message id (a client bug:
//! no idempotency without it) or a wrongly shaped view raise, and they raise before anything is
//! buffered.

use super::buffer::{self, LoginRow, RejectRow};
use super::{flush, target};
use crate::error::MaskError;
use crate::guc;
use crate::keys;
use pg_mask_core::login;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{pg_sys, FromDatum};

#[pg_trigger]
fn ingest_login_events<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    Ok(ingest_row(trigger).unwrap_or_else(|e| e.report()))
}

fn ingest_row<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, MaskError> {
    let event = trigger.event();
    if !(event.fired_instead() && event.fired_for_row() && event.fired_by_insert()) {
        return Err(MaskError::Trigger(
            "ingest_login_events must be an INSTEAD OF INSERT … FOR EACH ROW trigger on a view"
                .into(),
        ));
    }
    let td = trigger.trigger_data();
    let tuple = td.tg_trigtuple;
    // SAFETY: a row trigger's relation and descriptor are valid for the call.
    let tupdesc = unsafe { (*td.tg_relation).rd_att };
    check_view_shape(tupdesc)?;
    let target = target::for_trigger(trigger)?;
    let ring = keys::current_ring()?;
    let limits = target.widths()?.limits(ring.active_key_id().len());

    // SAFETY: check_view_shape verified three columns of types text, timestamptz, text.
    let (message_id, sent_at, body) = unsafe {
        let get = |n: i32| {
            let mut is_null = false;
            let d = pg_sys::heap_getattr(tuple, n, tupdesc, &mut is_null);
            (d, is_null)
        };
        let (d1, n1) = get(1);
        let (d2, n2) = get(2);
        let (d3, n3) = get(3);
        (
            <&str>::from_polymorphic_datum(d1, n1, pg_sys::TEXTOID),
            TimestampWithTimeZone::from_polymorphic_datum(d2, n2, pg_sys::TIMESTAMPTZOID),
            <&str>::from_polymorphic_datum(d3, n3, pg_sys::TEXTOID),
        )
    };
    let message_id = message_id.ok_or(MaskError::NullMessageId)?.to_owned();

    let buffered = match login::parse(body.unwrap_or(""), &limits) {
        Ok(e) => buffer::push(&target, |b| {
            b.logins.push(LoginRow {
                message_id,
                sent_at,
                user_id: e.user_id.into_owned(),
                device_type: e.device_type.map(Into::into),
                // Masked here, before anything leaves this function: plaintext never reaches the
                // INSERT's parameters. The table's mask_columns trigger sees valid tokens and
                // keeps them.
                ip: e.ip.map(|v| ring.mask(&v)),
                locale: e.locale.map(Into::into),
                device_id: e.device_id.map(|v| ring.mask(&v)),
                app_version: e.app_version,
            })
        }),
        Err(reject) => buffer::push(&target, |b| {
            b.rejects.push(RejectRow {
                message_id,
                sent_at,
                reason: reject.reason.as_str(),
                detail: reject.detail,
                // Masked now, like ip and device_id: a batch of large rejects could otherwise
                // spill plaintext into the INSERT's temp files.
                payload: body.map(|b| ring.mask(b)),
            })
        }),
    };
    if buffered >= guc::INGEST_BATCH_ROWS.get().max(1) as usize {
        flush::flush()?;
    }
    // SAFETY: returning the view row tells COPY the row was handled (it counts it).
    Ok(Some(unsafe {
        PgHeapTuple::from_heap_tuple(pgrx::PgTupleDesc::from_pg_unchecked(tupdesc), tuple)
    }))
}

fn check_view_shape(tupdesc: pg_sys::TupleDesc) -> Result<(), MaskError> {
    const SHAPE: [pg_sys::Oid; 3] = [pg_sys::TEXTOID, pg_sys::TIMESTAMPTZOID, pg_sys::TEXTOID];
    // SAFETY: reading a valid descriptor's attribute array within natts.
    let ok = unsafe {
        (*tupdesc).natts == 3
            && (0..3).all(|i| (*(*tupdesc).attrs.as_ptr().add(i)).atttypid == SHAPE[i])
    };
    if ok {
        Ok(())
    } else {
        Err(MaskError::Trigger(
            "an ingest view must have exactly the columns (message_id text, sent_at timestamptz, body text)".into(),
        ))
    }
}
