//! COPY's multi-insert, for pg_mask's ingest: rows go into a plain heap table with
//! `table_multi_insert` in chunks and then into each index, with no plan, no `unnest` and no
//! row trigger per row. In a profile of 1M messages the `INSERT … SELECT FROM unnest(…)`
//! executor, leaving out the unique-index work every path pays, was half of the ingest time.
//!
//! This module only guarantees memory safety: every value is checked against its column's type
//! before it is stored. Whether a table may be written this way at all (no triggers that would
//! fire, no rules, no row security, no defaults to fill, a plain local heap) is the caller's
//! decision ([`crate::ingest::bulk`]).

use super::relation::{Lock, Oid, Relation};
use super::tuple::text_datum;
use pgrx::pg_sys;

/// Rows per `table_multi_insert` call (COPY's own buffer size).
const CHUNK_ROWS: usize = 1000;

/// One value for one column.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Null,
    /// For a `text` or `varchar` column.
    Text(&'a str),
    /// For an `integer` column.
    Int4(i32),
    /// For a `date` column: days since 2000-01-01.
    Date(i32),
}

/// Sets the values of one row: `set(attnum, value)`, attnum 1-based. Columns not set are NULL.
pub type RowFiller<'f, T> = dyn Fn(&T, &mut dyn FnMut(usize, Value<'_>)) + 'f;

/// Inserts `rows` into table `relid` (already locked for writing by the caller) the way COPY
/// does, checking NOT NULL and CHECK constraints per row when `check_constraints`, and returns
/// how many went in. Raises like an INSERT: `unique_violation` for a duplicate key, a
/// constraint's error for a bad row, and an internal error for a value whose type does not
/// match its column.
pub fn insert<T>(
    relid: Oid,
    rows: &[T],
    check_constraints: bool,
    fill: &RowFiller<'_, T>,
) -> usize {
    let Some(table) = Relation::open(relid, Lock::Write) else {
        pgrx::error!("pg_mask: the ingest target table was dropped during the load");
    };
    let types: Vec<Option<Oid>> = {
        let mut t = vec![None; table.attributes().map(|a| a.number()).max().unwrap_or(0)];
        for a in table.attributes() {
            t[a.number() - 1] = Some(a.type_oid());
        }
        t
    };
    // SAFETY: the same sequence as COPY FROM's multi-insert (copyfrom.c), on a relation locked
    // for writing. Every value is checked against its column's type, copied into the slot, and
    // the slot materialised before the per-row memory is reset.
    unsafe {
        let rel = table.as_ptr();
        let estate = pg_sys::CreateExecutorState();
        let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            .cast::<pg_sys::ResultRelInfo>();
        pg_sys::InitResultRelInfo(rri, rel, 0, std::ptr::null_mut(), 0);
        pg_sys::ExecOpenIndices(rri, false);
        super::compat::set_current_result_relation(estate, rri);
        let econtext = pg_sys::MakePerTupleExprContext(estate);
        let row_memory = (*econtext).ecxt_per_tuple_memory;
        let cid = pg_sys::GetCurrentCommandId(true);
        let bistate = pg_sys::GetBulkInsertState();
        let natts = (*(*rel).rd_att).natts as usize;

        let mut slots: Vec<*mut pg_sys::TupleTableSlot> = (0..rows.len().min(CHUNK_ROWS))
            .map(|_| pg_sys::table_slot_create(rel, std::ptr::null_mut()))
            .collect();
        for chunk in rows.chunks(CHUNK_ROWS) {
            for (row, &slot) in chunk.iter().zip(&slots) {
                pg_sys::ExecClearTuple(slot);
                let old = pg_sys::MemoryContextSwitchTo(row_memory);
                let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
                let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
                nulls.fill(true);
                let mut set = |attnum: usize, value: Value<'_>| {
                    let column_type =
                        attnum.checked_sub(1).and_then(|i| types.get(i).copied().flatten());
                    let datum = match (value, column_type) {
                        (Value::Null, Some(_)) => None,
                        (Value::Text(s), Some(pg_sys::TEXTOID | pg_sys::VARCHAROID)) => {
                            Some(text_datum(s))
                        }
                        (Value::Int4(v), Some(pg_sys::INT4OID)) => Some(pg_sys::Datum::from(v)),
                        (Value::Date(v), Some(pg_sys::DATEOID)) => Some(pg_sys::Datum::from(v)),
                        _ => pgrx::error!(
                            "pg_mask: internal error: a bulk-insert value does not match the type of column {attnum}"
                        ),
                    };
                    if let Some(d) = datum {
                        values[attnum - 1] = d;
                        nulls[attnum - 1] = false;
                    }
                };
                fill(row, &mut set);
                pg_sys::MemoryContextSwitchTo(old);
                pg_sys::ExecStoreVirtualTuple(slot);
                if check_constraints {
                    pg_sys::ExecConstraints(rri, slot, estate);
                }
                // The slot now owns a copy: the per-row memory can go.
                pg_sys::ExecMaterializeSlot(slot);
                pg_sys::MemoryContextReset(row_memory);
            }
            let n = chunk.len();
            pg_sys::table_multi_insert(rel, slots.as_mut_ptr(), n as i32, cid, 0, bistate);
            for &slot in &slots[..n] {
                pg_sys::list_free(super::compat::insert_index_entries(rri, slot, estate));
                pg_sys::MemoryContextReset(row_memory);
            }
        }

        for slot in slots.drain(..) {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
        }
        pg_sys::FreeBulkInsertState(bistate);
        pg_sys::table_finish_bulk_insert(rel, 0);
        pg_sys::ExecCloseIndices(rri);
        pg_sys::FreeExecutorState(estate);
        // Later statements of this transaction (the rejects INSERT's probe) see the rows.
        pg_sys::CommandCounterIncrement();
    }
    rows.len()
}
