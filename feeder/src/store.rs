//! The seam between the pipeline and the database: what a store does with a batch, how its
//! failures are classified, and what the pipeline may assume.
//!
//! Contract for an implementation ([`crate::sink::Sink`] for PostgreSQL, an in-memory one in
//! the pipeline's tests):
//! - [`Store::load`] writes every row of the slice in ONE transaction and returns only after it
//!   committed, with counts that account for every row (loaded + duplicates + rejected = rows);
//!   on any error nothing of the slice is committed.
//! - [`Store::reject`] stores one message the database refused, as a reject carrying the
//!   refusal (`database_error`: a SQLSTATE and at most a constraint/column/table name, never a
//!   value from the body), in its own transaction.
//! - Errors say how to go on ([`Class`]); the pipeline never reads their text.
//!
//! This module owns no I/O.

use crate::row::Row;
use std::future::Future;

/// What the database did with a slice of rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub loaded: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

impl Loaded {
    pub fn total(&self) -> u64 {
        self.loaded + self.duplicates + self.rejected
    }
}

/// How a failed write should be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// The same write may succeed later (connection lost, serialization failure, no key yet):
    /// retry the same rows with backoff until shutdown.
    Transient,
    /// A human must act (credentials, missing schema or privilege, a view that does not
    /// account for the rows): stop, acknowledge nothing of it.
    Fatal,
    /// The rows themselves are refused and will be again (data exception, constraint,
    /// statement timeout, a trigger's RAISE): isolate the offending messages.
    Permanent,
    /// An error of no known class, by SQLSTATE: retried, and treated as permanent once the
    /// same SQLSTATE has failed the same rows [`UNCLASSIFIED_ATTEMPTS`] times.
    Unclassified(String),
}

/// How often an unclassified SQLSTATE may fail the same rows before they are isolated.
pub const UNCLASSIFIED_ATTEMPTS: u32 = 3;

pub trait StoreError: std::error::Error + Send + Sync + 'static {
    fn class(&self) -> Class;
    /// What a reject records about this refusal: `SQLSTATE` or `SQLSTATE constraint "name"`
    /// (or `column`/`table`). Never a value from the row.
    fn database_error(&self) -> String;
}

pub trait Store: Send + Sync {
    type Error: StoreError;

    /// Writes `rows` in one transaction (see the module contract).
    fn load(&self, rows: &[&Row]) -> impl Future<Output = Result<Loaded, Self::Error>> + Send;

    /// Stores `row` as a reject of `database_error` in one transaction.
    fn reject(
        &self,
        row: &Row,
        database_error: &str,
    ) -> impl Future<Output = Result<Loaded, Self::Error>> + Send;
}

/// A shared store is a store (the pipeline's tests keep a handle to inspect it).
impl<T: Store> Store for std::sync::Arc<T> {
    type Error = T::Error;

    fn load(&self, rows: &[&Row]) -> impl Future<Output = Result<Loaded, Self::Error>> + Send {
        (**self).load(rows)
    }

    fn reject(
        &self,
        row: &Row,
        database_error: &str,
    ) -> impl Future<Output = Result<Loaded, Self::Error>> + Send {
        (**self).reject(row, database_error)
    }
}
