//! A trigger call as a safe value: what fired it, on which relation, with which arguments, and
//! the row it fired for. PostgreSQL guarantees the relation and tuples stay valid for the call,
//! which is the lifetime `'a` everything here borrows for.

use super::relation::{trigger_args, Oid, Relation};
use super::tuple::{self, Row};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgTupleDesc};

/// What a trigger function may return: the row to store (or, for an INSTEAD OF trigger, the row
/// to count as handled), or nothing.
pub type TriggerResult<'a> = Option<PgHeapTuple<'a, AllocatedByPostgres>>;

pub struct TriggerCall<'a> {
    trigger: &'a PgTrigger<'a>,
}

impl<'a> TriggerCall<'a> {
    pub fn new(trigger: &'a PgTrigger<'a>) -> Self {
        TriggerCall { trigger }
    }

    pub fn event(&self) -> pgrx::trigger_support::TriggerEvent {
        self.trigger.event()
    }

    /// The trigger's OID (stable across `CREATE OR REPLACE TRIGGER`, which keeps the row).
    pub fn oid(&self) -> Oid {
        self.trigger.trigger().tgoid
    }

    /// The arguments as they are now (the relcache entry reflects the latest trigger definition).
    pub fn args(&self) -> Vec<&'a [u8]> {
        trigger_args(self.trigger.trigger())
    }

    pub fn relation(&self) -> Relation<'a> {
        // SAFETY: a trigger's relation is open and locked for the whole call.
        unsafe { Relation::borrowed(self.trigger.trigger_data().tg_relation) }
            .unwrap_or_else(|| pgrx::error!("pg_mask: trigger called without a relation"))
    }

    fn desc(&self) -> pg_sys::TupleDesc {
        // SAFETY: as above.
        unsafe { (*self.trigger.trigger_data().tg_relation).rd_att }
    }

    /// The row being inserted, or the new row of an UPDATE.
    fn new_tuple(&self) -> pg_sys::HeapTuple {
        let td = self.trigger.trigger_data();
        if self.event().fired_by_update() {
            td.tg_newtuple
        } else {
            td.tg_trigtuple
        }
    }

    /// The old row of an UPDATE.
    fn old_tuple(&self) -> Option<pg_sys::HeapTuple> {
        self.event().fired_by_update().then_some(self.trigger.trigger_data().tg_trigtuple)
    }

    /// Runs `f` on the new row, deformed, with a way to ask whether a text column is unchanged
    /// from the old row (always `false` for an INSERT).
    pub fn with_new_row<R>(
        &self,
        f: impl FnOnce(&mut Row<'_>, &dyn Fn(&Row<'_>, usize) -> bool) -> R,
    ) -> R {
        let old = self.old_tuple();
        let unchanged = move |row: &Row<'_>, attnum: usize| match old {
            // SAFETY: the old row of an UPDATE has the relation's descriptor.
            Some(old) => unsafe { row.unchanged_from(attnum, old) },
            None => false,
        };
        // SAFETY: the new row and the relation's descriptor are valid for the call.
        unsafe { tuple::with_row(self.new_tuple(), self.desc(), |row| f(row, &unchanged)) }
    }

    /// Text column `attnum` (1-based) of the row the trigger fired for.
    pub fn text(&self, attnum: usize) -> Option<&'a [u8]> {
        // SAFETY: the trigger's row and descriptor are valid for 'a.
        unsafe {
            tuple::text_attribute(self.trigger.trigger_data().tg_trigtuple, self.desc(), attnum)
        }
    }

    /// `timestamptz` column `attnum` (1-based) of the row the trigger fired for.
    pub fn timestamptz(&self, attnum: usize) -> Option<i64> {
        // SAFETY: as above.
        unsafe {
            tuple::timestamptz_attribute(
                self.trigger.trigger_data().tg_trigtuple,
                self.desc(),
                attnum,
            )
        }
    }

    /// The types of the relation's columns, dropped ones as `None`.
    pub fn column_types(&self) -> Vec<Option<Oid>> {
        let desc = self.desc();
        // SAFETY: the relation's descriptor is valid for the call.
        unsafe {
            (1..=tuple::attribute_count(desc)).map(|n| tuple::attribute_type(desc, n)).collect()
        }
    }

    /// The row the trigger fired for, to return unchanged.
    pub fn unchanged_row(&self) -> TriggerResult<'a> {
        self.row_result(self.new_tuple())
    }

    /// `tuple` (formed from the new row by [`Row::form`]) as the trigger's result.
    pub fn row_result(&self, tuple: pg_sys::HeapTuple) -> TriggerResult<'a> {
        // SAFETY: the tuple has the relation's descriptor, which lives for the call.
        Some(unsafe {
            PgHeapTuple::from_heap_tuple(PgTupleDesc::from_pg_unchecked(self.desc()), tuple)
        })
    }
}
