//! The fast path of a flush: the logins go into the table the way COPY writes rows
//! ([`crate::pg::multi_insert`]).
//!
//! It is taken only when it is indistinguishable from the INSERT the flush would otherwise run
//! as the view's owner, and only for a table it can prove is a plain local heap:
//! [`Layout::resolve`] says why not otherwise, and the flush uses the INSERT. The table must be
//! an ordinary table (not partitioned, not a partition, not foreign), stored by the heap access
//! method, not distributed or replicated by Citus, without rules or row-level security; the role
//! must have INSERT on it; its only triggers that fire on INSERT must be pg_mask's
//! `mask_columns` over the token columns (so the trigger would have kept every value); it must
//! have no stored generated columns, no other column may have a default or an identity, and the
//! ingest columns must have the types and widths the validation checked. NOT NULL and CHECK
//! constraints are checked per row as an INSERT does; an id already in the table raises
//! `unique_violation` as an INSERT does (the flush then leaves out the loaded ids and tries
//! again).

use super::buffer::{LoginRow, Stored};
use super::target::Target;
use crate::mask_trigger::mask_columns_wrapper;
use crate::pg::multi_insert::{self, Value};
use crate::pg::relation::{Kind, Lock, Oid, Relation};
use pg_mask_core::create_date::utc_date;
use pg_mask_core::schema::{self, FIELDS, N};
use pgrx::pg_sys;
use pgrx::spi::Spi;

/// Where each ingest column is in a table that qualifies for the bulk path.
pub struct Layout {
    relid: Oid,
    message_id: usize,
    fields: [usize; N],
    create_date: usize,
    /// Whether the table has NOT NULL or CHECK constraints to check per row.
    check_constraints: bool,
}

impl Layout {
    /// The layout of the target's logins table if the bulk path may write it, or why not.
    /// Takes the lock an INSERT takes, so the answer holds for the flush.
    pub fn resolve(target: &Target) -> Result<Layout, &'static str> {
        let rel = Relation::open(target.logins.oid, Lock::Write).ok_or("the table was dropped")?;
        if rel.kind() != Kind::Table {
            return Err("not an ordinary table");
        }
        if rel.is_partition() {
            return Err("a partition");
        }
        if !rel.is_heap() {
            return Err("not stored by the heap access method");
        }
        if citus_manages(rel.oid()) {
            return Err("a Citus distributed or reference table");
        }
        if rel.has_rules() {
            return Err("the table has rules");
        }
        if rel.has_row_security() {
            return Err("the table has row-level security");
        }
        if !rel.current_role_may_insert() {
            return Err("the role lacks INSERT on the table");
        }
        for t in rel.triggers().filter(|t| t.fires_on_insert()) {
            if !t.calls(mask_columns_wrapper as *const ()) {
                return Err("the table has other triggers");
            }
            let masked: Vec<&str> = schema::masked_columns().collect();
            if !t.args().iter().all(|a| masked.iter().any(|m| m.as_bytes() == *a)) {
                return Err("mask_columns masks a column the ingest writes as is");
            }
        }
        if rel.has_stored_generated_columns() {
            return Err("the table has generated columns");
        }
        let position = |name: &str| rel.attribute(name).map(|a| a.number());
        let mut fields = [0; N];
        for (i, field) in FIELDS.iter().enumerate() {
            let attr = rel.attribute(field.column).ok_or("an ingest column is missing")?;
            let fits = match field.kind {
                schema::Kind::Version => attr.type_oid() == pg_sys::INT4OID,
                schema::Kind::Text | schema::Kind::Masked => {
                    attr.text_width().is_some_and(|w| w == target.widths[i])
                }
            };
            if !fits {
                return Err("a column's type or width changed");
            }
            fields[i] = attr.number();
        }
        let message_id = position(schema::MESSAGE_ID).ok_or("message_id is missing")?;
        let create_date = rel
            .attribute(schema::CREATE_DATE)
            .filter(|a| a.type_oid() == pg_sys::DATEOID)
            .map(|a| a.number())
            .ok_or("create_date is missing or not a date")?;
        let ours = |n: usize| n == message_id || n == create_date || fields.contains(&n);
        if rel.attributes().any(|a| !ours(a.number()) && a.is_filled_by_default()) {
            return Err("another column has a default");
        }
        if rel.attributes().any(|a| !ours(a.number()) && a.is_domain()) {
            return Err("another column has a domain type, whose constraints an INSERT checks");
        }
        // Message ids are not length-checked by the validation: only an unbounded column
        // takes them as they are.
        if rel.attribute(schema::MESSAGE_ID).and_then(|a| a.text_width()) != Some(None) {
            return Err("message_id is not text or unbounded varchar");
        }
        Ok(Layout {
            relid: rel.oid(),
            message_id,
            fields,
            create_date,
            check_constraints: rel.has_row_constraints(),
        })
    }

    /// Inserts `rows` (sorted by message id) and returns how many. Raises like an INSERT:
    /// `unique_violation` for an id already in the table, a constraint's error for a bad row.
    pub fn insert(&self, rows: &[LoginRow], load_time: i64) -> usize {
        multi_insert::insert(self.relid, rows, self.check_constraints, &|row: &LoginRow, set| {
            set(self.message_id, Value::Text(row.message_id()));
            for (i, &column) in self.fields.iter().enumerate() {
                set(
                    column,
                    match row.value(i) {
                        None => Value::Null,
                        Some(Stored::Text(t)) => Value::Text(t),
                        Some(Stored::Int(v)) => Value::Int4(v),
                    },
                );
            }
            set(self.create_date, Value::Date(utc_date(row.sent_at.unwrap_or(load_time))));
        })
    }
}

/// Whether Citus distributes or replicates the table (its metadata lists it).
pub fn citus_manages(relid: Oid) -> bool {
    if !crate::pg::relation::extension_installed(c"citus") {
        return false;
    }
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)",
        &[relid.into()],
    )
    .ok()
    .flatten()
    // If Citus's catalog cannot be read, do not bet the rows on it.
    .unwrap_or(true)
}
