//! `mask_columns(col, …)`: a BEFORE INSERT OR UPDATE … FOR EACH ROW trigger that masks the named
//! text/varchar columns on every write path (INSERT, COPY, UPDATE, INSERT … SELECT).
//!
//! A value that already is a valid token (it authenticates under the key ring) is kept, so a
//! dump/restore or a re-insert never double-masks; on UPDATE an unchanged column is not looked at
//! at all. Per row the tuple is deformed once, the tokens are written straight into one palloc'd
//! buffer, and the new tuple is formed once.
//!
//! The columns are resolved once per trigger and cached, but the cache trusts nothing DDL can
//! change: every row checks that the trigger's arguments are still the cached ones (`CREATE OR
//! REPLACE TRIGGER` keeps the trigger's OID) and that each cached attribute still has its name,
//! type and type modifier; any difference resolves the columns again. A column turned into
//! `bigint` or narrowed to `varchar(10)` in this or another session is therefore seen at the
//! next row, and the row reader refuses a non-text column outright.
//!
//! A BEFORE trigger's output is not re-checked against `varchar(n)`, so this module enforces the
//! column length itself.

use crate::error::MaskError;
use crate::functions::check_maskable;
use crate::keys;
use crate::pg::relation::{Oid, Relation};
use crate::pg::trigger::{TriggerCall, TriggerResult};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

/// One column to mask, as resolved against the table.
struct Column {
    attnum: usize,
    name: String,
    type_oid: Oid,
    typmod: i32,
    /// `n` of `varchar(n)`; `None` for text and unbounded varchar.
    max_chars: Option<usize>,
}

/// A trigger's columns and the arguments they were resolved from.
struct Resolved {
    args: Vec<Vec<u8>>,
    columns: Vec<Column>,
}

impl Resolved {
    /// Whether the trigger and the table still say what this was resolved from.
    fn still_holds(&self, call: &TriggerCall<'_>, table: &Relation<'_>) -> bool {
        let args = call.args();
        args.len() == self.args.len()
            && args.iter().zip(&self.args).all(|(a, b)| *a == b.as_slice())
            && self.columns.iter().all(|c| {
                table.attribute_at(c.attnum).is_some_and(|a| {
                    a.name() == c.name.as_bytes()
                        && a.type_oid() == c.type_oid
                        && a.typmod() == c.typmod
                })
            })
    }
}

thread_local! {
    /// Resolved columns per trigger OID (a backend fires few distinct masking triggers, so a
    /// list beats a hash map).
    static RESOLVED: RefCell<Vec<(Oid, Rc<Resolved>)>> = const { RefCell::new(Vec::new()) };
}

const USAGE: &str = "a BEFORE INSERT OR UPDATE … FOR EACH ROW trigger";

#[pg_trigger]
fn mask_columns<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<TriggerResult<'a>, std::convert::Infallible> {
    Ok(mask_row(&TriggerCall::new(trigger)).unwrap_or_else(|e| e.report()))
}

fn mask_row<'a>(call: &TriggerCall<'a>) -> Result<TriggerResult<'a>, MaskError> {
    let event = call.event();
    if !(event.fired_before() && event.fired_for_row())
        || !(event.fired_by_insert() || event.fired_by_update())
    {
        return Err(MaskError::WrongTriggerUse { function: "mask_columns", expected: USAGE });
    }
    let table = call.relation();
    let resolved = resolved_for(call, &table)?;
    let ring = keys::current_ring()?;

    call.with_new_row(|row, unchanged| {
        // (attnum, plaintext, token length) of each value to mask.
        let mut to_mask = Vec::with_capacity(resolved.columns.len());
        for col in &resolved.columns {
            let Some(value) = row.text(col.attnum) else { continue };
            if unchanged(row, col.attnum) || ring.is_token_bytes(value) {
                continue;
            }
            let len = ring.mask_len(value.len());
            check_maskable("a value", value.len(), len)?;
            if let Some(max) = col.max_chars {
                // Tokens are ASCII: bytes are characters.
                if len > max {
                    return Err(MaskError::TokenTooLong { column: col.name.clone(), len, max });
                }
            }
            to_mask.push((col.attnum, value, len));
        }
        if to_mask.is_empty() {
            return Ok(call.unchanged_row());
        }
        let columns: Vec<(usize, usize)> = to_mask.iter().map(|&(a, _, len)| (a, len)).collect();
        row.replace_texts(&columns, |k, out| ring.mask_into(to_mask[k].1, out));
        Ok(call.row_result(row.form()))
    })
}

/// The trigger's columns, from the cache when it still holds.
fn resolved_for(call: &TriggerCall<'_>, table: &Relation<'_>) -> Result<Rc<Resolved>, MaskError> {
    let tgoid = call.oid();
    let cached = RESOLVED
        .with_borrow(|m| m.iter().find(|(oid, _)| *oid == tgoid).map(|(_, r)| Rc::clone(r)));
    if let Some(r) = cached.filter(|r| r.still_holds(call, table)) {
        return Ok(r);
    }
    let r = Rc::new(resolve(call, table)?);
    RESOLVED.with_borrow_mut(|m| {
        m.retain(|(oid, _)| *oid != tgoid);
        m.push((tgoid, Rc::clone(&r)));
    });
    Ok(r)
}

fn resolve(call: &TriggerCall<'_>, table: &Relation<'_>) -> Result<Resolved, MaskError> {
    let args: Vec<Vec<u8>> = call.args().into_iter().map(<[u8]>::to_vec).collect();
    if args.is_empty() {
        return Err(MaskError::BadTriggerArguments {
            function: "mask_columns",
            problem:
                "it needs the column names as trigger arguments, e.g. mask_columns('masked_ip')"
                    .into(),
        });
    }
    let columns = args
        .iter()
        .map(|arg| {
            let name = String::from_utf8_lossy(arg).into_owned();
            let attr = table.attribute(&name).ok_or_else(|| MaskError::UnknownColumn {
                table: table.name(),
                column: name.clone(),
            })?;
            let Some(max_chars) = attr.text_width() else {
                return Err(MaskError::NotText {
                    table: table.name(),
                    column: name,
                    type_name: crate::pg::relation::type_name(attr.type_oid(), attr.typmod()),
                });
            };
            Ok(Column {
                attnum: attr.number(),
                name,
                type_oid: attr.type_oid(),
                typmod: attr.typmod(),
                max_chars,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Resolved { args, columns })
}
