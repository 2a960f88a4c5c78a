//! Where an ingest view writes: the logins and rejects tables named in its row trigger's
//! arguments, the role the writes run as, and what the validation needs to know of the tables.
//!
//! Names are resolved in the view's own schema (a qualified name in the one it names) and held
//! as OIDs, never looked up through the caller's `search_path`: a temporary table named
//! `user_logins` cannot divert rows. The writes run as the view's owner (see [`super::flush`]),
//! so a loader needs only INSERT on the view.
//!
//! A target is cached per trigger and trusts nothing DDL can change: it remembers the relcache
//! generation ([`crate::pg::inval`]) it was resolved at, watching the view and both tables, and
//! is resolved again after any change to them (a new column width, `CREATE OR REPLACE TRIGGER`
//! with other arguments, a rename, a new index), in this session at the next row, in another at
//! its next transaction. Within a transaction both tables are locked from the first row on, so
//! another session's DDL waits for the load instead of changing the tables under it.

use crate::error::MaskError;
use crate::pg::inval;
use crate::pg::relation::{self, Lock, Oid, Relation};
use crate::pg::trigger::TriggerCall;
use crate::pg::xact;
use pg_mask_core::ident;
use pg_mask_core::schema::{self, FIELDS, N};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// One table the ingest writes.
pub struct Table {
    pub oid: Oid,
    /// `schema.table`, quoted: for SQL text.
    pub sql_name: String,
    /// The columns of the unique index a duplicate id conflicts on (`message_id`, plus the
    /// partition key of a partitioned table).
    pub conflict_columns: Vec<String>,
}

impl Table {
    /// Whether duplicates are found on `message_id` alone.
    pub fn conflicts_on_message_id(&self) -> bool {
        self.conflict_columns == [schema::MESSAGE_ID]
    }
}

pub struct Target {
    pub trigger: Oid,
    /// The role the flush writes as.
    pub owner: Oid,
    pub logins: Table,
    pub rejects: Table,
    /// Width in characters of each field's column (`None`: unbounded or not text).
    pub widths: [Option<usize>; N],
    generation: u64,
    locked_in: Cell<u64>,
    /// Prepared statements, made by [`super::flush`] on first use (as the owner).
    pub statements: RefCell<Option<super::sql::Statements>>,
}

thread_local! {
    static TARGETS: RefCell<Vec<Rc<Target>>> = const { RefCell::new(Vec::new()) };
}

impl Target {
    /// Whether nothing this target was resolved from has changed.
    fn current(&self) -> bool {
        self.generation == inval::generation()
    }

    /// Locks both tables for this transaction (once), which also brings in other sessions'
    /// invalidations.
    fn lock_for_transaction(&self) {
        let now = xact::transaction_number();
        if self.locked_in.get() != now {
            relation::lock(self.logins.oid, Lock::Read);
            relation::lock(self.rejects.oid, Lock::Read);
            self.locked_in.set(now);
        }
    }
}

/// The target of the trigger being fired, resolved again if anything it depends on changed.
pub fn for_call(call: &TriggerCall<'_>) -> Result<Rc<Target>, MaskError> {
    let tgoid = call.oid();
    let cached = TARGETS.with_borrow(|t| t.iter().find(|t| t.trigger == tgoid).cloned());
    if let Some(target) = cached {
        target.lock_for_transaction();
        if target.current() {
            return Ok(target);
        }
    }
    let target = Rc::new(resolve(call)?);
    TARGETS.with_borrow_mut(|t| {
        t.retain(|t| t.trigger != tgoid);
        t.push(Rc::clone(&target));
    });
    Ok(target)
}

fn bad_args(problem: impl Into<String>) -> MaskError {
    MaskError::BadTriggerArguments { function: "ingest_login_events", problem: problem.into() }
}

fn resolve(call: &TriggerCall<'_>) -> Result<Target, MaskError> {
    let view = call.relation();
    let args = call.args();
    let [logins_arg, rejects_arg] = args.as_slice() else {
        return Err(bad_args("it needs two arguments: the logins table and the rejects table"));
    };
    let find = |arg: &[u8], role: &'static str| -> Result<Oid, MaskError> {
        let text = String::from_utf8_lossy(arg);
        let parts = ident::split_qualified(&text)
            .map_err(|e| bad_args(format!("the {role} table \"{text}\": {e}")))?;
        let found = match parts.as_slice() {
            [name] => relation::table_in_schema(None, name, view.namespace()),
            [schema, name] => relation::table_in_schema(Some(schema), name, view.namespace()),
            _ => return Err(bad_args(format!("the {role} table \"{text}\": too many dots"))),
        };
        found.ok_or(MaskError::MissingTable { role, name: text.into_owned() })
    };
    let logins_oid = find(logins_arg, "logins")?;
    let rejects_oid = find(rejects_arg, "rejects")?;
    for oid in [view.oid(), logins_oid, rejects_oid] {
        inval::watch(oid);
    }
    relation::lock(logins_oid, Lock::Read);
    relation::lock(rejects_oid, Lock::Read);
    // Taken after the locks, which process pending invalidations.
    let generation = inval::generation();

    let open = |oid: Oid, role: &'static str| {
        Relation::open(oid, Lock::Read)
            .ok_or(MaskError::MissingTable { role, name: format!("with OID {}", oid.to_u32()) })
    };
    let logins_rel = open(logins_oid, "logins")?;
    let rejects_rel = open(rejects_oid, "rejects")?;
    let mut widths = [None; N];
    for (i, field) in FIELDS.iter().enumerate() {
        let attr = logins_rel.attribute(field.column).ok_or_else(|| MaskError::MissingColumn {
            table: logins_rel.qualified_name(),
            column: field.column.to_owned(),
        })?;
        widths[i] = attr.text_width().flatten();
    }
    let logins = table(&logins_rel)?;
    let rejects = table(&rejects_rel)?;
    Ok(Target {
        trigger: call.oid(),
        owner: view.owner(),
        logins,
        rejects,
        widths,
        generation,
        locked_in: Cell::new(xact::transaction_number()),
        statements: RefCell::new(None),
    })
}

/// The table's SQL name and the columns a duplicate id conflicts on: the smallest usable unique
/// index made of `message_id` and, besides it, only columns the ingest fills from the message
/// itself (`create_date`, the usual partition key).
fn table(rel: &Relation<'_>) -> Result<Table, MaskError> {
    if rel.attribute(schema::MESSAGE_ID).is_none() {
        return Err(MaskError::MissingColumn {
            table: rel.qualified_name(),
            column: schema::MESSAGE_ID.to_owned(),
        });
    }
    let derived = |c: &String| c == schema::MESSAGE_ID || c == schema::CREATE_DATE;
    let conflict_columns = rel
        .unique_index_columns()
        .into_iter()
        .filter(|cols| cols.iter().any(|c| c == schema::MESSAGE_ID) && cols.iter().all(derived))
        .min_by_key(Vec::len)
        .ok_or_else(|| MaskError::NoArbiterIndex { table: rel.qualified_name() })?;
    Ok(Table { oid: rel.oid(), sql_name: rel.qualified_name(), conflict_columns })
}
