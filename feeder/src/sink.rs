//! PostgreSQL as the feeder's [`Store`]: one binary COPY into `login_ingest` per slice, in one
//! transaction, checked against `ingest_stats()` before COMMIT; and the COPY that stores a
//! refused message as a reject.
//!
//! Binary COPY sends each body byte for byte (no escaping to get wrong) and keeps message text
//! out of the server log even when a row fails (PostgreSQL prints the offending line only for
//! text-format COPY). On any failure the connection is dropped (rolling the transaction back)
//! and re-made on the next attempt. Never formats a body or a DETAIL into an error.

use crate::pg_config::Connector;
use crate::row::Row;
use crate::store::{Class, Loaded, Store, StoreError};
use futures_util::pin_mut;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

const COPY_ROWS: &str = "COPY login_ingest (message_id, sent_at, body) FROM STDIN (FORMAT binary)";
const COPY_REJECT: &str =
    "COPY login_ingest (message_id, sent_at, body, database_error) FROM STDIN (FORMAT binary)";
const STATS: &str = "SELECT loaded, duplicates, rejected FROM ingest_stats()";

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot connect to PostgreSQL at {target}: {}", crate::db_error::explain(.source))]
    Connect { target: String, source: tokio_postgres::Error },
    #[error("the database has no pg_mask ingest view: run `make schema` (apply sql/) on {target}")]
    NoSchema { target: String },
    #[error("PostgreSQL: {}", crate::db_error::explain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "ingest_stats() accounts for {} of the {sent} rows sent (loaded {}, duplicates {}, rejected {}): \
         login_ingest did not process them (a disabled trigger, session_replication_role = replica, \
         or a view that is not pg_mask's); rolled back, nothing acknowledged",
        .counted.total(), .counted.loaded, .counted.duplicates, .counted.rejected
    )]
    Mismatch { sent: usize, counted: Loaded },
    #[error("login_ingest has no database_error column (a schema older than this feeder): apply sql/ to store refused messages as rejects")]
    NoRejectColumn,
}

impl StoreError for SinkError {
    fn class(&self) -> Class {
        match self {
            SinkError::Connect { source, .. } | SinkError::Db(source) => {
                crate::db_error::class_of(source)
            }
            SinkError::NoSchema { .. } | SinkError::Mismatch { .. } => Class::Fatal,
            // Without the column a refused message cannot become a reject: release it.
            SinkError::NoRejectColumn => Class::Permanent,
        }
    }

    fn database_error(&self) -> String {
        match self {
            SinkError::Connect { source, .. } | SinkError::Db(source) => match source.as_db_error()
            {
                Some(db) => crate::db_error::database_error(db),
                None => "08000".to_owned(),
            },
            SinkError::NoSchema { .. } | SinkError::Mismatch { .. } | SinkError::NoRejectColumn => {
                "XX000".to_owned()
            }
        }
    }
}

pub struct Sink {
    connector: Connector,
    client: tokio::sync::Mutex<Option<Client>>,
    /// The view takes `database_error` (checked at start).
    reject_column: AtomicBool,
}

impl Sink {
    pub fn new(connector: Connector) -> Self {
        Sink {
            connector,
            client: tokio::sync::Mutex::new(None),
            reject_column: AtomicBool::new(true),
        }
    }

    pub fn target(&self) -> &str {
        self.connector.target()
    }

    /// Connects and checks the schema: the ingest view, and whether it takes rejects. Works
    /// for a role that may only INSERT into the view (neither check needs a privilege).
    pub async fn check(&self) -> Result<(), SinkError> {
        let mut guard = self.client.lock().await;
        let client = self.client_in(&mut guard).await?;
        let row = client
            .query_one(
                "SELECT to_regclass('login_ingest') IS NOT NULL, EXISTS (SELECT FROM pg_attribute \
                 WHERE attrelid = to_regclass('login_ingest') AND attname = 'database_error' \
                 AND NOT attisdropped)",
                &[],
            )
            .await?;
        if !row.get::<_, bool>(0) {
            return Err(SinkError::NoSchema { target: self.target().to_owned() });
        }
        let rejects = row.get::<_, bool>(1);
        if !rejects {
            tracing::warn!("{}", SinkError::NoRejectColumn);
        }
        self.reject_column.store(rejects, Ordering::Relaxed);
        Ok(())
    }

    async fn client_in<'a>(
        &self,
        slot: &'a mut Option<Client>,
    ) -> Result<&'a mut Client, SinkError> {
        if let Some(client) = slot.take().filter(|c| !c.is_closed()) {
            return Ok(slot.insert(client));
        }
        let client = self
            .connector
            .connect()
            .await
            .map_err(|source| SinkError::Connect { target: self.target().to_owned(), source })?;
        Ok(slot.insert(client))
    }

    /// One COPY of `rows` (each with `extra` columns appended) in one transaction, committed
    /// only if `ingest_stats()` accounts for every row.
    async fn copy(
        &self,
        sql: &str,
        types: &[Type],
        rows: &[Vec<&(dyn ToSql + Sync)>],
    ) -> Result<Loaded, SinkError> {
        let mut guard = self.client.lock().await;
        let result = async {
            let client = self.client_in(&mut guard).await?;
            let tx = client.transaction().await?;
            let sink = tx.copy_in(sql).await?;
            let writer = BinaryCopyInWriter::new(sink, types);
            pin_mut!(writer);
            for r in rows {
                writer.as_mut().write(r).await?;
            }
            writer.finish().await?;
            let s = tx.query_one(STATS, &[]).await?;
            let counted = Loaded {
                loaded: s.get::<_, i64>(0).max(0) as u64,
                duplicates: s.get::<_, i64>(1).max(0) as u64,
                rejected: s.get::<_, i64>(2).max(0) as u64,
            };
            if counted.total() != rows.len() as u64 {
                // Dropping the transaction rolls it back.
                return Err(SinkError::Mismatch { sent: rows.len(), counted });
            }
            tx.commit().await?;
            Ok(counted)
        }
        .await;
        if result.is_err() {
            *guard = None;
        }
        result
    }
}

impl Store for Sink {
    type Error = SinkError;

    async fn load(&self, rows: &[&Row]) -> Result<Loaded, SinkError> {
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = rows
            .iter()
            .map(|r| vec![&r.message_id as &(dyn ToSql + Sync), &r.sent_at, &r.body])
            .collect();
        self.copy(COPY_ROWS, &[Type::TEXT, Type::TIMESTAMPTZ, Type::TEXT], &params).await
    }

    async fn reject(&self, row: &Row, database_error: &str) -> Result<Loaded, SinkError> {
        if !self.reject_column.load(Ordering::Relaxed) {
            return Err(SinkError::NoRejectColumn);
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> =
            vec![vec![&row.message_id, &row.sent_at, &row.body, &database_error]];
        let types = [Type::TEXT, Type::TIMESTAMPTZ, Type::TEXT, Type::TEXT];
        self.copy(COPY_REJECT, &types, &params).await
    }
}
