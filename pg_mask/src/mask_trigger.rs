//! `mask_columns(col, …)`: a BEFORE INSERT OR UPDATE … FOR EACH ROW trigger that masks the named
//! text/varchar columns on every write path (INSERT, COPY, UPDATE, INSERT … SELECT).
//!
//! A value that already is a valid token (it authenticates under the key ring) is kept, so a
//! dump/restore or a re-insert never double-masks; on UPDATE an unchanged column is not looked at
//! at all. Attribute numbers are resolved once per trigger and re-checked by name per row (one
//! comparison), so an `ALTER TABLE` is noticed. Per row the tuple is deformed once, the tokens are
//! written straight into one palloc'd buffer, and the new tuple is formed once: no Rust heap
//! allocation and few calls into PostgreSQL per row (each one is guarded, which is not free at a
//! million rows).
//!
//! A BEFORE trigger's output is not re-checked against `varchar(n)`, so this module enforces the
//! column length itself.

use crate::attributes;
use crate::error::MaskError;
use crate::keys;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
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
    /// Resolved columns per trigger OID (a backend fires few distinct masking triggers, so a
    /// list beats a hash map).
    static COLUMNS: RefCell<Vec<(pg_sys::Oid, Rc<[Column]>)>> = const { RefCell::new(Vec::new()) };
}

/// Most tables mask a handful of columns; more than this many are masked in several passes.
const MAX_COLUMNS_PER_PASS: usize = 16;

/// Tables up to this many attributes are deformed into arrays on the stack; wider ones use palloc.
const STACK_ATTRIBUTES: usize = 64;

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
    let (tuple, old) = if is_update {
        (td.tg_newtuple, td.tg_trigtuple)
    } else {
        (td.tg_trigtuple, std::ptr::null_mut())
    };
    // SAFETY: PostgreSQL hands a row trigger a valid relation and tuple descriptor.
    let tupdesc = unsafe { (*td.tg_relation).rd_att };
    let columns = columns_for(trigger, tupdesc)?;
    let ring = keys::current_ring()?;

    // Every attribute, deformed once: the masked ones are read from here and the new tuple is
    // formed from here.
    // SAFETY: natts of a valid descriptor.
    let natts = unsafe { (*tupdesc).natts } as usize;
    let mut stack_values = [pg_sys::Datum::from(0usize); STACK_ATTRIBUTES];
    let mut stack_nulls = [false; STACK_ATTRIBUTES];
    let (values, nulls): (&mut [pg_sys::Datum], &mut [bool]) = if natts <= STACK_ATTRIBUTES {
        (&mut stack_values[..natts], &mut stack_nulls[..natts])
    } else {
        // SAFETY: palloc'd arrays of natts elements, alive for this call.
        unsafe {
            (
                std::slice::from_raw_parts_mut(
                    pg_sys::palloc0(natts * std::mem::size_of::<pg_sys::Datum>()).cast(),
                    natts,
                ),
                std::slice::from_raw_parts_mut(pg_sys::palloc0(natts).cast(), natts),
            )
        }
    };
    // SAFETY: both arrays have natts entries; `tupdesc` describes `tuple`.
    unsafe { pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr()) };

    let mut changed = false;
    for pass in columns.chunks(MAX_COLUMNS_PER_PASS) {
        // (attribute index, plaintext, token length) of each value to mask in this pass.
        let mut to_mask = [(0usize, &[][..], 0usize); MAX_COLUMNS_PER_PASS];
        let mut n = 0;
        let mut bytes = 0;
        for col in pass {
            let i = col.attnum - 1;
            if nulls[i] {
                continue;
            }
            if is_update {
                let mut old_null = false;
                // SAFETY: the old tuple has the same descriptor; attnum was validated.
                let old_datum =
                    unsafe { pg_sys::heap_getattr(old, col.attnum as i32, tupdesc, &mut old_null) };
                // SAFETY: both are varlena datums of one column.
                if !old_null && unsafe { same_varlena(values[i], old_datum) } {
                    continue;
                }
            }
            // SAFETY: text and varchar are varlenas.
            let value = unsafe { varlena_bytes(values[i]) };
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
            to_mask[n] = (i, value, len);
            n += 1;
            bytes += aligned_text_size(len);
        }
        if n == 0 {
            continue;
        }
        // One allocation for the pass's tokens, each a text varlena written in place.
        // SAFETY: `bytes` covers every token at its aligned offset; heap_form_tuple below copies
        // them into the new tuple.
        unsafe {
            let buffer = pg_sys::palloc(bytes).cast::<u8>();
            let mut offset = 0;
            for &(i, value, len) in &to_mask[..n] {
                let text = buffer.add(offset).cast::<pg_sys::varlena>();
                pgrx::varlena::set_varsize_4b(text, (pg_sys::VARHDRSZ + len) as i32);
                let out =
                    std::slice::from_raw_parts_mut(text.cast::<u8>().add(pg_sys::VARHDRSZ), len);
                ring.mask_into(value, out);
                values[i] = pg_sys::Datum::from(text);
                offset += aligned_text_size(len);
            }
        }
        changed = true;
    }
    let tuple = if changed {
        // SAFETY: the values and nulls of `tuple` with the masked columns replaced; the new
        // tuple keeps the old one's identity, as heap_modify_tuple does.
        unsafe {
            let new = pg_sys::heap_form_tuple(tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
            (*(*new).t_data).t_ctid = (*(*tuple).t_data).t_ctid;
            (*new).t_self = (*tuple).t_self;
            (*new).t_tableOid = (*tuple).t_tableOid;
            new
        }
    } else {
        tuple
    };
    // SAFETY: `tuple` is the trigger's tuple or one formed from it with the same descriptor.
    Ok(Some(unsafe {
        PgHeapTuple::from_heap_tuple(pgrx::PgTupleDesc::from_pg_unchecked(tupdesc), tuple)
    }))
}

/// Bytes a text varlena of `len` payload bytes takes in the token buffer (8-byte aligned).
fn aligned_text_size(len: usize) -> usize {
    (pg_sys::VARHDRSZ + len).next_multiple_of(8)
}

/// The bytes of a text/varchar datum, detoasted only if it is compressed or stored out of line
/// (a plain in-line value, as COPY and INSERT pass them, is read where it is).
///
/// # Safety
/// `datum` must be a non-null varlena datum; the bytes live as long as the current call.
unsafe fn varlena_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    use pgrx::varlena::{varatt_is_1b_e, varatt_is_4b_c, vardata_any, varsize_any_exhdr};
    // SAFETY: guaranteed by the caller.
    unsafe {
        let mut ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
        if varatt_is_4b_c(ptr) || varatt_is_1b_e(ptr) {
            ptr = pg_sys::pg_detoast_datum_packed(ptr);
        }
        std::slice::from_raw_parts(vardata_any(ptr).cast::<u8>(), varsize_any_exhdr(ptr))
    }
}

/// The trigger's columns, from the cache when every cached attnum still has its name.
fn columns_for(
    trigger: &PgTrigger<'_>,
    tupdesc: pg_sys::TupleDesc,
) -> Result<Rc<[Column]>, MaskError> {
    let tgoid = trigger.trigger().tgoid;
    let cached =
        COLUMNS.with_borrow(|m| m.iter().find(|(oid, _)| *oid == tgoid).map(|(_, c)| Rc::clone(c)));
    if let Some(cols) = cached {
        if cols.iter().all(|c| attr_name_bytes(tupdesc, c.attnum) == Some(c.name.as_bytes())) {
            return Ok(cols);
        }
    }
    let cols: Rc<[Column]> = resolve(trigger, tupdesc)?.into();
    COLUMNS.with_borrow_mut(|m| {
        m.retain(|(oid, _)| *oid != tgoid);
        m.push((tgoid, Rc::clone(&cols)));
    });
    Ok(cols)
}

fn attr_name_bytes(tupdesc: pg_sys::TupleDesc, attnum: usize) -> Option<&'static [u8]> {
    attributes::attr(tupdesc, attnum).map(attributes::name)
}

fn resolve(trigger: &PgTrigger<'_>, tupdesc: pg_sys::TupleDesc) -> Result<Vec<Column>, MaskError> {
    let table = trigger.table_name().unwrap_or_default();
    let names = trigger.extra_args().map_err(|e| MaskError::Trigger(e.to_string()))?;
    if names.is_empty() {
        return Err(MaskError::Trigger(
            "mask_columns needs the column names as trigger arguments, e.g. mask_columns('masked_ip')".into(),
        ));
    }
    names
        .into_iter()
        .map(|name| {
            let (attnum, a) = attributes::attrs(tupdesc)
                .find(|(_, a)| attributes::name(a) == name.as_bytes())
                .ok_or_else(|| MaskError::UnknownColumn {
                    table: table.clone(),
                    column: name.clone(),
                })?;
            let Some(max_chars) = attributes::text_width(a) else {
                return Err(MaskError::NotText {
                    table: table.clone(),
                    column: name,
                    type_name: type_name(a.atttypid),
                });
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
