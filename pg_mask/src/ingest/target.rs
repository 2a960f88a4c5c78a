//! Where an ingest view writes: the logins table and the rejects table named in the row
//! trigger's arguments, their prepared INSERT statements, and their column widths.
//!
//! Resolved once per trigger and kept for the life of the backend; the column widths (which
//! bound what validation accepts) are re-read from the relcache once per transaction, so an
//! `ALTER TABLE … TYPE varchar(n)` is honoured from the next transaction on. Prepared plans are
//! SPI-kept and re-planned by PostgreSQL itself when the tables change.

use crate::attributes;
use crate::error::MaskError;
use crate::xact;
use pg_mask_core::login::Limits;
use pg_mask_core::token::max_plaintext_len;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{pg_sys, PgOid};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// Width of a column in characters; `usize::MAX` for text or unbounded varchar.
#[derive(Clone, Copy, Debug)]
pub struct Widths {
    pub user_id: usize,
    pub device_type: usize,
    pub locale: usize,
    pub masked_ip: usize,
    pub masked_device_id: usize,
}

impl Widths {
    const UNBOUNDED: Widths = Widths {
        user_id: usize::MAX,
        device_type: usize::MAX,
        locale: usize::MAX,
        masked_ip: usize::MAX,
        masked_device_id: usize::MAX,
    };

    /// Validation limits for a key id of `kid_len` characters.
    pub fn limits(&self, kid_len: usize) -> Limits {
        let masked = self.masked_ip.min(self.masked_device_id);
        let masked_bytes =
            if masked == usize::MAX { usize::MAX } else { max_plaintext_len(kid_len, masked) };
        Limits {
            user_id_chars: self.user_id,
            device_type_chars: self.device_type,
            locale_chars: self.locale,
            masked_bytes,
        }
    }
}

pub struct Target {
    /// Plain INSERT: the fast path, tried first in a subtransaction.
    pub insert_logins_fast: OwnedPreparedStatement,
    /// INSERT … ON CONFLICT DO NOTHING: the path for batches that hold already-loaded ids.
    pub insert_logins: OwnedPreparedStatement,
    pub insert_rejects: OwnedPreparedStatement,
    /// Which of the ids in `$1` the logins table already holds.
    pub loaded_ids: OwnedPreparedStatement,
    logins_table: String,
    widths: Cell<Widths>,
    /// The transaction ([`xact::current`]) that read `widths`.
    widths_read_in: Cell<u64>,
}

impl Target {
    /// The logins table, quoted and possibly schema-qualified.
    pub fn logins_table(&self) -> &str {
        &self.logins_table
    }

    pub fn widths(&self) -> Result<Widths, MaskError> {
        let this_xact = xact::current();
        if self.widths_read_in.get() != this_xact {
            let w = read_widths(&self.logins_table)?;
            self.widths.set(w);
            self.widths_read_in.set(this_xact);
        }
        Ok(self.widths.get())
    }
}

thread_local! {
    static TARGETS: RefCell<HashMap<pg_sys::Oid, Rc<Target>>> = RefCell::new(HashMap::new());
}

/// The target of the trigger being fired.
pub fn for_trigger(trigger: &PgTrigger<'_>) -> Result<Rc<Target>, MaskError> {
    let tgoid = trigger.trigger().tgoid;
    if let Some(t) = TARGETS.with_borrow(|m| m.get(&tgoid).cloned()) {
        return Ok(t);
    }
    let args = trigger.extra_args().map_err(|e| MaskError::Trigger(e.to_string()))?;
    let [logins, rejects] = args.as_slice() else {
        return Err(MaskError::Trigger(
            "ingest_login_events needs two arguments: the logins table and the rejects table"
                .into(),
        ));
    };
    let target = Rc::new(Spi::connect(|client| prepare(client, logins, rejects))?);
    TARGETS.with_borrow_mut(|m| m.insert(tgoid, Rc::clone(&target)));
    Ok(target)
}

fn spi_err(e: impl std::fmt::Display) -> MaskError {
    MaskError::Spi(e.to_string())
}

/// `schema.table` or `table`, each part quoted as an identifier.
fn quote_qualified(name: &str) -> String {
    name.split('.').map(pgrx::spi::quote_identifier).collect::<Vec<_>>().join(".")
}

fn prepare(client: &SpiClient<'_>, logins: &str, rejects: &str) -> Result<Target, MaskError> {
    let logins_table = quote_qualified(logins);
    let rejects_table = quote_qualified(rejects);
    let text_arr = PgOid::from(pg_sys::TEXTARRAYOID);
    let ts_arr = PgOid::from(pg_sys::TIMESTAMPTZARRAYOID);
    let int_arr = PgOid::from(pg_sys::INT4ARRAYOID);
    // Sorted input (see flush.rs) plus ON CONFLICT DO NOTHING: concurrent loaders of the same
    // ids wait for each other in one order and skip, instead of failing or deadlocking. A message
    // id always comes with the same body, so a valid message never meets its own reject; the
    // rejects INSERT still checks the logins table (rejects are rare, the probe is cheap there),
    // which keeps one id in one table even for a hand-made batch that reuses an id.
    // Both probes of the logins table are correlated scalar subqueries with LIMIT, which stay
    // one index probe per id: written as EXISTS, the planner may make them a hash join over the
    // whole table when it misjudges a batch (seen: a seq scan of 1M rows for every flush).
    let insert_logins_fast = format!(
        "INSERT INTO {logins_table} AS t (message_id, user_id, device_type, masked_ip, \
         masked_device_id, locale, app_version, create_date) \
         SELECT m, u, d, i, di, l, v, (coalesce(s, now()) AT TIME ZONE 'UTC')::date \
         FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) AS r(m, s, u, d, i, di, l, v)"
    );
    let insert_logins = format!("{insert_logins_fast} ON CONFLICT (message_id) DO NOTHING");
    let insert_rejects = format!(
        "INSERT INTO {rejects_table} (message_id, sent_at, reason, detail, payload) \
         SELECT * FROM unnest($1, $2, $3, $4, $5) AS r(m, s, re, de, p) \
         WHERE (SELECT true FROM {logins_table} x WHERE x.message_id = r.m LIMIT 1) IS NULL \
         ON CONFLICT (message_id) DO NOTHING"
    );
    let login_types = [text_arr, ts_arr, text_arr, text_arr, text_arr, text_arr, text_arr, int_arr];
    let logins_fast_plan =
        client.prepare_mut(insert_logins_fast.as_str(), &login_types).map_err(spi_err)?.keep();
    let logins_plan =
        client.prepare_mut(insert_logins.as_str(), &login_types).map_err(spi_err)?.keep();
    let rejects_plan = client
        .prepare_mut(insert_rejects.as_str(), &[text_arr, ts_arr, text_arr, text_arr, text_arr])
        .map_err(spi_err)?
        .keep();
    let loaded_ids = client
        .prepare_mut(
            format!(
                "SELECT m FROM unnest($1) AS m \
                 WHERE (SELECT true FROM {logins_table} t WHERE t.message_id = m LIMIT 1)"
            )
            .as_str(),
            &[text_arr],
        )
        .map_err(spi_err)?
        .keep();
    let widths = read_widths(&logins_table)?;
    Ok(Target {
        insert_logins_fast: logins_fast_plan,
        insert_logins: logins_plan,
        insert_rejects: rejects_plan,
        loaded_ids,
        logins_table,
        widths: Cell::new(widths),
        widths_read_in: Cell::new(xact::current()),
    })
}

/// The widths of the logins table's text columns, from the relcache.
fn read_widths(logins_table: &str) -> Result<Widths, MaskError> {
    let widths_of = |rel: pg_sys::Relation| {
        let mut w = Widths::UNBOUNDED;
        // SAFETY: the descriptor of the relation with_table opened.
        for (_, attr) in attributes::attrs(unsafe { (*rel).rd_att }) {
            // Other types than text and varchar are not length-checked: unbounded.
            let width = attributes::text_width(attr).flatten().unwrap_or(usize::MAX);
            match attributes::name(attr) {
                b"user_id" => w.user_id = width,
                b"device_type" => w.device_type = width,
                b"locale" => w.locale = width,
                b"masked_ip" => w.masked_ip = width,
                b"masked_device_id" => w.masked_device_id = width,
                _ => {}
            }
        }
        w
    };
    // SAFETY: called from a trigger, inside a transaction.
    unsafe { attributes::with_table(logins_table, pg_sys::AccessShareLock, widths_of) }
        .ok_or_else(|| MaskError::Trigger(format!("ingest: table {logins_table} does not exist")))
}
