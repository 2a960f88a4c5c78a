//! `mask_columns(col, …)`: a BEFORE INSERT OR UPDATE … FOR EACH ROW trigger that masks the named
//! text/varchar columns on every write path (INSERT, COPY, UPDATE, INSERT … SELECT).
//!
//! A value that already is a valid token (it authenticates under the key ring) is kept, so a
//! dump/restore or a re-insert never double-masks; on UPDATE an unchanged column is not looked at
//! at all. Attribute numbers are resolved once per trigger and re-checked by name per row (one
//! `strcmp`), so an `ALTER TABLE` is noticed. Tokens are written straight into palloc'd text
//! values and the new tuple is built with one `heap_modify_tuple_by_cols` per row: no Rust heap
//! allocation per row on the INSERT/COPY path.
//!
//! A BEFORE trigger's output is not re-checked against `varchar(n)`, so this module enforces the
//! column length itself.

use crate::error::MaskError;
use crate::keys;
use crate::text::new_text;
use pgrx::prelude::*;
use pgrx::{pg_sys, FromDatum};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

/// One column to mask, as resolved against the table.
#[derive(Clone)]
struct Column {
    attnum: usize,
    name: String,
    /// `n` of `varchar(n)`; `None` for text and unbounded varchar.
    max_chars: Option<usize>,
}

thread_local! {
    /// Resolved columns per trigger OID.
    static COLUMNS: RefCell<HashMap<pg_sys::Oid, Rc<[Column]>>> = RefCell::new(HashMap::new());
}

/// Most tables mask a handful of columns; more than this many are masked in several passes.
const MAX_COLUMNS_PER_PASS: usize = 16;

#[pg_trigger]
fn mask_columns<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    Ok(mask_row(trigger).unwrap_or_else(|e| e.report()))
}

fn mask_row<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, MaskError> {
    let td = trigger.trigger_data();
    let event = trigger.event();
    let is_update = event.fired_by_update();
    if !(event.fired_before() && event.fired_for_row() && (event.fired_by_insert() || is_update)) {
        return Err(MaskError::Trigger(
            "mask_columns must be a BEFORE INSERT OR UPDATE … FOR EACH ROW trigger".into(),
        ));
    }
    let (mut tuple, old) = if is_update {
        (td.tg_newtuple, td.tg_trigtuple)
    } else {
        (td.tg_trigtuple, std::ptr::null_mut())
    };
    // SAFETY: PostgreSQL hands a row trigger a valid relation and tuple descriptor.
    let tupdesc = unsafe { (*td.tg_relation).rd_att };
    let columns = columns_for(trigger, tupdesc)?;
    let ring = keys::current_ring()?;

    for pass in columns.chunks(MAX_COLUMNS_PER_PASS) {
        let mut attnums = [0i32; MAX_COLUMNS_PER_PASS];
        let mut values = [pg_sys::Datum::from(0usize); MAX_COLUMNS_PER_PASS];
        let nulls = [false; MAX_COLUMNS_PER_PASS];
        let mut n = 0;
        for col in pass {
            let attno = col.attnum as i32;
            let mut is_null = false;
            // SAFETY: attno was validated against this tupdesc by columns_for.
            let datum = unsafe { pg_sys::heap_getattr(tuple, attno, tupdesc, &mut is_null) };
            if is_null {
                continue;
            }
            if is_update {
                let mut old_null = false;
                // SAFETY: the old tuple has the same descriptor.
                let old_datum = unsafe { pg_sys::heap_getattr(old, attno, tupdesc, &mut old_null) };
                // SAFETY: both are varlena datums of one column.
                if !old_null && unsafe { same_varlena(datum, old_datum) } {
                    continue;
                }
            }
            // SAFETY: text and varchar are varlenas; the bytes are detoasted for this call.
            let Some(value) =
                (unsafe { <&[u8]>::from_polymorphic_datum(datum, false, pg_sys::TEXTOID) })
            else {
                continue;
            };
            if ring.is_token_bytes(value) {
                continue;
            }
            let len = ring.mask_len(value.len());
            if let Some(max) = col.max_chars {
                // Tokens are ASCII: bytes are characters.
                if len > max {
                    return Err(MaskError::TokenTooLong { column: col.name.clone(), len, max });
                }
            }
            attnums[n] = attno;
            // SAFETY: a fresh text varlena of exactly `len` payload bytes, filled by mask_into.
            values[n] = unsafe { new_text(len, |out| ring.mask_into(value, out)) };
            n += 1;
        }
        if n > 0 {
            // SAFETY: `tupdesc` describes `tuple`; the new tuple lives in the trigger's memory
            // context. Only the replaced columns are passed (no natts-sized arrays per row).
            tuple = unsafe {
                pg_sys::heap_modify_tuple_by_cols(
                    tuple,
                    tupdesc,
                    n as i32,
                    attnums.as_mut_ptr(),
                    values.as_mut_ptr(),
                    nulls.as_ptr().cast_mut(),
                )
            };
        }
    }
    // SAFETY: `tuple` is the trigger's tuple or one formed from it with the same descriptor.
    Ok(Some(unsafe {
        PgHeapTuple::from_heap_tuple(pgrx::PgTupleDesc::from_pg_unchecked(tupdesc), tuple)
    }))
}

/// The trigger's columns, from the cache when every cached attnum still has its name.
fn columns_for(
    trigger: &PgTrigger<'_>,
    tupdesc: pg_sys::TupleDesc,
) -> Result<Rc<[Column]>, MaskError> {
    let tgoid = trigger.trigger().tgoid;
    let cached = COLUMNS.with_borrow(|m| m.get(&tgoid).cloned());
    if let Some(cols) = cached {
        if cols.iter().all(|c| attr_name_bytes(tupdesc, c.attnum) == Some(c.name.as_bytes())) {
            return Ok(cols);
        }
    }
    let cols: Rc<[Column]> = resolve(trigger, tupdesc)?.into();
    COLUMNS.with_borrow_mut(|m| m.insert(tgoid, Rc::clone(&cols)));
    Ok(cols)
}

fn attr(
    tupdesc: pg_sys::TupleDesc,
    attnum: usize,
) -> Option<&'static pg_sys::FormData_pg_attribute> {
    // SAFETY: bounds-checked against natts; attributes live as long as the descriptor, which
    // outlives the trigger call.
    unsafe {
        if attnum == 0 || attnum > (*tupdesc).natts as usize {
            return None;
        }
        let a = &*(*tupdesc).attrs.as_ptr().add(attnum - 1);
        (!a.attisdropped).then_some(a)
    }
}

fn attr_name_bytes(tupdesc: pg_sys::TupleDesc, attnum: usize) -> Option<&'static [u8]> {
    // SAFETY: NameData is NUL-terminated.
    attr(tupdesc, attnum).map(|a| unsafe { CStr::from_ptr(a.attname.data.as_ptr()) }.to_bytes())
}

fn resolve(trigger: &PgTrigger<'_>, tupdesc: pg_sys::TupleDesc) -> Result<Vec<Column>, MaskError> {
    let table = trigger.table_name().unwrap_or_default();
    let names = trigger.extra_args().map_err(|e| MaskError::Trigger(e.to_string()))?;
    if names.is_empty() {
        return Err(MaskError::Trigger(
            "mask_columns needs the column names as trigger arguments, e.g. mask_columns('masked_ip')".into(),
        ));
    }
    // SAFETY: natts of a valid descriptor.
    let natts = unsafe { (*tupdesc).natts } as usize;
    names
        .into_iter()
        .map(|name| {
            let attnum = (1..=natts)
                .find(|&n| attr_name_bytes(tupdesc, n) == Some(name.as_bytes()))
                .ok_or_else(|| MaskError::UnknownColumn {
                    table: table.clone(),
                    column: name.clone(),
                })?;
            let a = attr(tupdesc, attnum).ok_or_else(|| MaskError::UnknownColumn {
                table: table.clone(),
                column: name.clone(),
            })?;
            let max_chars = match a.atttypid {
                pg_sys::TEXTOID => None,
                pg_sys::VARCHAROID if a.atttypmod >= pg_sys::VARHDRSZ as i32 => {
                    Some((a.atttypmod - pg_sys::VARHDRSZ as i32) as usize)
                }
                pg_sys::VARCHAROID => None,
                other => {
                    return Err(MaskError::NotText {
                        table: table.clone(),
                        column: name,
                        type_name: type_name(other),
                    })
                }
            };
            Ok(Column { attnum, name, max_chars })
        })
        .collect()
}

/// Byte-wise equality of two varlena datums in their stored form (an unchanged value keeps its
/// TOAST pointer or its bytes, so this never needs to detoast).
///
/// # Safety
/// Both datums must be non-null varlena datums.
unsafe fn same_varlena(a: pg_sys::Datum, b: pg_sys::Datum) -> bool {
    let (pa, pb) = (a.cast_mut_ptr::<pg_sys::varlena>(), b.cast_mut_ptr::<pg_sys::varlena>());
    if pa == pb {
        return true;
    }
    // SAFETY: guaranteed by the caller.
    unsafe {
        let (la, lb) = (pgrx::varlena::varsize_any(pa), pgrx::varlena::varsize_any(pb));
        la == lb
            && std::slice::from_raw_parts(pa as *const u8, la)
                == std::slice::from_raw_parts(pb as *const u8, lb)
    }
}

fn type_name(oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be handles any OID and returns a palloc'd C string.
    unsafe { CStr::from_ptr(pg_sys::format_type_be(oid)) }.to_string_lossy().into_owned()
}
