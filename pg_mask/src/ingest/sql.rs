//! The statements the flush runs when it cannot use the bulk insert, written from the column
//! description ([`pg_mask_core::schema::FIELDS`]) and prepared once per target.
//!
//! They work on a plain table, a partitioned one, and a Citus distributed one: every parameter is
//! an array unnested in the FROM clause, there are no correlated subqueries (Citus refuses them
//! over a set-returning function), duplicates are found by `= ANY` on the message id, and `ON
//! CONFLICT` names the table's own unique index on `message_id` (plus the partition key where
//! there is one; on Citus, the distribution column). Table names are the OIDs' current names,
//! quoted, functions are schema-qualified (but for multi-array `unnest`, which is syntax only
//! when unqualified), and the flush runs them with a pinned `search_path`
//! ([`crate::pg::security`]): the statements mean the same whatever the session's.

use super::target::{Table, Target};
use crate::error::MaskError;
use pg_mask_core::schema::{self, Kind, FIELDS};
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{pg_sys, PgOid};

pub struct Statements {
    /// Plain INSERT of the logins (no conflict handling): the fast path, tried first.
    pub insert_logins: OwnedPreparedStatement,
    /// The same with `ON CONFLICT (…) DO NOTHING`, returning how many rows it inserted (see
    /// [`counting`]).
    pub insert_logins_skipping: OwnedPreparedStatement,
    /// Which of the ids in `$1` the logins table already holds (run through
    /// [`crate::ingest::flush`]'s index-only planning).
    pub loaded_ids: OwnedPreparedStatement,
    /// Which of the ids in `$1` the rejects table already holds.
    pub rejected_ids: OwnedPreparedStatement,
    /// INSERT of the rejects, `ON CONFLICT (…) DO NOTHING`, returning how many it inserted.
    pub insert_rejects: OwnedPreparedStatement,
}

/// `insert`, made to return the number of rows it inserted as one `bigint`. Citus counts a row
/// its INSERT … SELECT skipped on conflict as processed (and SPI then refuses a `RETURNING`
/// whose row count differs), so the rows are counted from `RETURNING` in a CTE instead.
fn counting(insert: &str) -> String {
    format!("WITH inserted AS ({insert} RETURNING 1) SELECT pg_catalog.count(*) FROM inserted")
}

fn on_conflict(table: &Table) -> String {
    let cols: Vec<String> =
        table.conflict_columns.iter().map(pgrx::spi::quote_identifier).collect();
    format!(" ON CONFLICT ({}) DO NOTHING", cols.join(", "))
}

/// The logins INSERT: `$1` message ids, `$2` send times, then one array per field.
pub fn insert_logins_text(logins: &Table) -> String {
    let mut columns = vec![schema::MESSAGE_ID.to_owned()];
    let mut values = vec!["r.m".to_owned()];
    let mut params = vec!["$1".to_owned(), "$2".to_owned()];
    let mut aliases = vec!["m".to_owned(), "s".to_owned()];
    for (i, field) in FIELDS.iter().enumerate() {
        columns.push(pgrx::spi::quote_identifier(field.column));
        values.push(format!("r.f{i}"));
        params.push(format!("${}", i + 3));
        aliases.push(format!("f{i}"));
    }
    columns.push(schema::CREATE_DATE.to_owned());
    values.push(
        "(pg_catalog.timezone('UTC', COALESCE(r.s, pg_catalog.now())))::pg_catalog.date".to_owned(),
    );
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS r({})",
        logins.sql_name,
        columns.join(", "),
        values.join(", "),
        params.join(", "),
        aliases.join(", ")
    )
}

fn login_types() -> Vec<PgOid> {
    let mut types =
        vec![PgOid::from(pg_sys::TEXTARRAYOID), PgOid::from(pg_sys::TIMESTAMPTZARRAYOID)];
    types.extend(FIELDS.iter().map(|f| match f.kind {
        Kind::Text | Kind::Masked => PgOid::from(pg_sys::TEXTARRAYOID),
        Kind::Version => PgOid::from(pg_sys::INT4ARRAYOID),
    }));
    types
}

/// Prepares the statements of `target` (call as the role that will run them).
pub fn prepare(client: &SpiClient<'_>, target: &Target) -> Result<Statements, MaskError> {
    let spi = |e: pgrx::spi::SpiError| MaskError::Spi(e.to_string());
    let text_arr = PgOid::from(pg_sys::TEXTARRAYOID);
    let ts_arr = PgOid::from(pg_sys::TIMESTAMPTZARRAYOID);
    let insert = insert_logins_text(&target.logins);
    let skipping = counting(&format!("{insert}{}", on_conflict(&target.logins)));
    let known_ids = |table: &Table| {
        format!(
            "SELECT {id} FROM {table} WHERE {id} OPERATOR(pg_catalog.=) ANY ($1)",
            id = schema::MESSAGE_ID,
            table = table.sql_name
        )
    };
    let loaded = known_ids(&target.logins);
    let rejected = known_ids(&target.rejects);
    let rejects = counting(&format!(
        "INSERT INTO {} (message_id, sent_at, reason, detail, payload) \
         SELECT * FROM unnest($1, $2, $3, $4, $5){}",
        target.rejects.sql_name,
        on_conflict(&target.rejects)
    ));
    let types = login_types();
    Ok(Statements {
        insert_logins: client.prepare_mut(insert.as_str(), &types).map_err(spi)?.keep(),
        insert_logins_skipping: client.prepare_mut(skipping.as_str(), &types).map_err(spi)?.keep(),
        loaded_ids: client.prepare_mut(loaded.as_str(), &[text_arr]).map_err(spi)?.keep(),
        rejected_ids: client.prepare_mut(rejected.as_str(), &[text_arr]).map_err(spi)?.keep(),
        insert_rejects: client
            .prepare_mut(rejects.as_str(), &[text_arr, ts_arr, text_arr, text_arr, text_arr])
            .map_err(spi)?
            .keep(),
    })
}
