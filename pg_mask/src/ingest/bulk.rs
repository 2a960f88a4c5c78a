//! The fast path of a flush: the logins go into the table the way COPY writes rows,
//! `table_multi_insert` in chunks and then each index, with no plan, no `unnest` and no row
//! trigger per row. In a profile of 1M messages the `INSERT … SELECT FROM unnest(…)` executor,
//! leaving out the unique-index work every path pays, was half of the whole ingest time.
//!
//! It is taken only when it is indistinguishable from that INSERT run by the session's role;
//! [`Layout::resolve`] says why not otherwise, and the flush uses the INSERT. The table must be
//! a plain table without rules or row-level security, the role must have INSERT on it, its only
//! triggers must be pg_mask's `mask_columns` over the two columns this path fills with tokens
//! (so the trigger would have kept every value), it must have no stored generated columns, no
//! other column may have a default or an identity, and the eight ingest columns must have the
//! types and widths the validation checked. NOT NULL and CHECK constraints are checked per row
//! as an INSERT does; an id already in the table raises `unique_violation` as an INSERT does (the
//! flush then leaves out the loaded ids and tries again).

use super::buffer::LoginRow;
use super::target::Widths;
use crate::attributes;
use crate::mask_trigger::mask_columns_wrapper;
use crate::text::text_datum;
use pg_mask_core::create_date::utc_date;
use pgrx::pg_sys;
use std::ffi::CStr;

/// Rows per `table_multi_insert` call (COPY's own buffer size).
const CHUNK_ROWS: usize = 1000;

/// The columns the ingest fills, in the order of [`Layout::attnos`].
const COLUMNS: [&str; 8] = [
    "message_id",
    "user_id",
    "device_type",
    "masked_ip",
    "masked_device_id",
    "locale",
    "app_version",
    "create_date",
];
const MESSAGE_ID: usize = 0;
const USER_ID: usize = 1;
const DEVICE_TYPE: usize = 2;
const MASKED_IP: usize = 3;
const MASKED_DEVICE_ID: usize = 4;
const LOCALE: usize = 5;
const APP_VERSION: usize = 6;
const CREATE_DATE: usize = 7;

/// Where each ingest column is in a table that qualifies for the bulk path.
pub struct Layout {
    relid: pg_sys::Oid,
    /// 0-based attribute index of each of [`COLUMNS`].
    attnos: [usize; 8],
    /// Whether the table has NOT NULL or CHECK constraints to check per row.
    check_constraints: bool,
}

impl Layout {
    /// The layout of `table` (a quoted, possibly qualified name) if the bulk path may write
    /// it, or why not. Takes the lock an INSERT takes, so the answer holds for the flush.
    ///
    /// # Safety
    /// Must be called inside a transaction.
    pub unsafe fn resolve(table: &str, widths: &Widths) -> Result<Layout, &'static str> {
        // SAFETY: inside a transaction (the caller's contract); inspect only reads the relation.
        unsafe {
            attributes::with_table(table, pg_sys::RowExclusiveLock, |rel| inspect(rel, widths))
        }
        .unwrap_or(Err("the table does not exist"))
    }
}

/// The checks of [`Layout::resolve`] on an open relation.
///
/// # Safety
/// `rel` must be an open relation.
unsafe fn inspect(rel: pg_sys::Relation, widths: &Widths) -> Result<Layout, &'static str> {
    // SAFETY: reading the relcache entry of an open relation.
    unsafe {
        let class = &*(*rel).rd_rel;
        if class.relkind as u8 != pg_sys::RELKIND_RELATION {
            return Err("not a plain table");
        }
        if class.relhasrules {
            return Err("the table has rules");
        }
        if class.relrowsecurity {
            return Err("the table has row-level security");
        }
        if pg_sys::pg_class_aclcheck((*rel).rd_id, pg_sys::GetUserId(), pg_sys::ACL_INSERT as _)
            != pg_sys::AclResult::ACLCHECK_OK
        {
            return Err("the role lacks INSERT on the table");
        }
        check_triggers((*rel).trigdesc)?;

        let tupdesc = (*rel).rd_att;
        let constr = (*tupdesc).constr;
        let check_constraints =
            !constr.is_null() && ((*constr).has_not_null || (*constr).num_check > 0);
        if !constr.is_null() && (*constr).has_generated_stored {
            return Err("the table has generated columns");
        }
        let mut attnos = [usize::MAX; 8];
        for (attnum, attr) in attributes::attrs(tupdesc) {
            match COLUMNS.iter().position(|c| c.as_bytes() == attributes::name(attr)) {
                Some(col) => {
                    check_type(col, attr, widths)?;
                    attnos[col] = attnum - 1;
                }
                None if attr.atthasdef || attr.attidentity != 0 || attr.attgenerated != 0 => {
                    return Err("another column has a default");
                }
                None => {}
            }
        }
        if attnos.contains(&usize::MAX) {
            return Err("an ingest column is missing");
        }
        Ok(Layout { relid: (*rel).rd_id, attnos, check_constraints })
    }
}

/// Only `mask_columns` triggers over the token columns fire on INSERT: they would keep every
/// value as is.
///
/// # Safety
/// `trigdesc` must be null or a relation's trigger descriptor.
unsafe fn check_triggers(trigdesc: *mut pg_sys::TriggerDesc) -> Result<(), &'static str> {
    if trigdesc.is_null() {
        return Ok(());
    }
    // SAFETY: numtriggers entries; each has tgnargs NUL-terminated arguments.
    unsafe {
        let triggers =
            std::slice::from_raw_parts((*trigdesc).triggers, (*trigdesc).numtriggers as usize);
        // Triggers that never fire on INSERT (say, a foreign key's ON DELETE action) do not
        // matter here.
        for t in triggers.iter().filter(|t| t.tgtype as u32 & pg_sys::TRIGGER_TYPE_INSERT != 0) {
            let mut finfo = pg_sys::FmgrInfo::default();
            pg_sys::fmgr_info(t.tgfoid, &mut finfo);
            let is_mask_columns =
                finfo.fn_addr.is_some_and(|f| f as *const () == mask_columns_wrapper as *const ());
            if !is_mask_columns {
                return Err("the table has other triggers");
            }
            let args = std::slice::from_raw_parts(t.tgargs, t.tgnargs.max(0) as usize);
            let masks_only_tokens = args.iter().all(|&a| {
                let a = CStr::from_ptr(a).to_bytes();
                a == COLUMNS[MASKED_IP].as_bytes() || a == COLUMNS[MASKED_DEVICE_ID].as_bytes()
            });
            if !masks_only_tokens {
                return Err("mask_columns masks a column the ingest writes as is");
            }
        }
    }
    Ok(())
}

/// The type the ingest writes, and for `varchar(n)` the width its validation enforced.
fn check_type(
    col: usize,
    attr: &pg_sys::FormData_pg_attribute,
    widths: &Widths,
) -> Result<(), &'static str> {
    let expected = match col {
        APP_VERSION | CREATE_DATE => {
            let want = if col == APP_VERSION { pg_sys::INT4OID } else { pg_sys::DATEOID };
            return (attr.atttypid == want).then_some(()).ok_or("a column type changed");
        }
        USER_ID => widths.user_id,
        DEVICE_TYPE => widths.device_type,
        LOCALE => widths.locale,
        MASKED_IP => widths.masked_ip,
        MASKED_DEVICE_ID => widths.masked_device_id,
        _ => usize::MAX, // message_id: not length-checked by the validation
    };
    // Widths use usize::MAX for "unbounded", as the validation limits do.
    let width = attributes::text_width(attr).ok_or("a column type changed")?.unwrap_or(usize::MAX);
    if width == expected {
        Ok(())
    } else {
        Err("a column width changed")
    }
}

/// Inserts `rows` (sorted by message id) and returns how many. Raises like an INSERT:
/// `unique_violation` for an id already in the table, a constraint's error for a bad row.
///
/// # Safety
/// Must be called inside the transaction that resolved `layout`.
pub unsafe fn insert(layout: &Layout, rows: &[LoginRow]) -> usize {
    // SAFETY: the same sequence as COPY FROM's multi-insert (copyfrom.c), on a relation locked
    // by Layout::resolve. Every value is copied into the slot before the per-row memory is reset.
    unsafe {
        let rel = pg_sys::table_open(layout.relid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let estate = pg_sys::CreateExecutorState();
        let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            .cast::<pg_sys::ResultRelInfo>();
        pg_sys::InitResultRelInfo(rri, rel, 0, std::ptr::null_mut(), 0);
        pg_sys::ExecOpenIndices(rri, false);
        #[cfg(feature = "pg13")]
        {
            // PostgreSQL 13's index insertion finds the relation through the executor state.
            (*estate).es_result_relation_info = rri;
        }
        let econtext = pg_sys::MakePerTupleExprContext(estate);
        let row_memory = (*econtext).ecxt_per_tuple_memory;
        let cid = pg_sys::GetCurrentCommandId(true);
        let bistate = pg_sys::GetBulkInsertState();
        let now = pg_sys::GetCurrentTransactionStartTimestamp();
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
                let mut set = |col: usize, value: Option<pg_sys::Datum>| {
                    if let Some(v) = value {
                        values[layout.attnos[col]] = v;
                        nulls[layout.attnos[col]] = false;
                    }
                };
                set(MESSAGE_ID, Some(text_datum(&row.message_id)));
                set(USER_ID, Some(text_datum(&row.user_id)));
                set(DEVICE_TYPE, row.device_type.as_deref().map(|v| text_datum(v)));
                set(MASKED_IP, row.ip.as_deref().map(|v| text_datum(v)));
                set(MASKED_DEVICE_ID, row.device_id.as_deref().map(|v| text_datum(v)));
                set(LOCALE, row.locale.as_deref().map(|v| text_datum(v)));
                set(APP_VERSION, row.app_version.map(pg_sys::Datum::from));
                let sent = row.sent_at.map_or(now, pg_sys::TimestampTz::from);
                set(CREATE_DATE, Some(pg_sys::Datum::from(utc_date(sent))));
                pg_sys::MemoryContextSwitchTo(old);
                pg_sys::ExecStoreVirtualTuple(slot);
                if layout.check_constraints {
                    pg_sys::ExecConstraints(rri, slot, estate);
                }
                // The slot now owns a copy: the per-row memory can go.
                pg_sys::ExecMaterializeSlot(slot);
                pg_sys::MemoryContextReset(row_memory);
            }
            let n = chunk.len();
            pg_sys::table_multi_insert(rel, slots.as_mut_ptr(), n as i32, cid, 0, bistate);
            for &slot in &slots[..n] {
                pg_sys::list_free(insert_index_entries(rri, slot, estate));
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
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        // Later statements of this transaction (the rejects INSERT's probe) see the rows.
        pg_sys::CommandCounterIncrement();
        rows.len()
    }
}

/// `ExecInsertIndexTuples` for a plain insert, whose signature changed in PostgreSQL 14 and 16.
/// Returns the indexes that need a deferred recheck (none: deferrable ones come with a
/// constraint trigger, which keeps a table off this path).
///
/// # Safety
/// `slot` holds a tuple just inserted into the relation of `rri`, whose indexes are open.
unsafe fn insert_index_entries(
    rri: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
) -> *mut pg_sys::List {
    let (no_conflict, no_arbiters) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: guaranteed by the caller.
    unsafe {
        #[cfg(feature = "pg13")]
        let recheck = {
            let _ = rri; // insert() made it the executor state's result relation
            pg_sys::ExecInsertIndexTuples(slot, estate, false, no_conflict, no_arbiters)
        };
        #[cfg(any(feature = "pg14", feature = "pg15"))]
        let recheck = pg_sys::ExecInsertIndexTuples(
            rri,
            slot,
            estate,
            false,
            false,
            no_conflict,
            no_arbiters,
        );
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        let recheck = pg_sys::ExecInsertIndexTuples(
            rri,
            slot,
            estate,
            false,
            false,
            no_conflict,
            no_arbiters,
            false,
        );
        recheck
    }
}
