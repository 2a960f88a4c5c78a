//! The Postgres side: one binary COPY into `login_ingest` per batch, in one transaction, with the
//! per-batch counts read back from `ingest_stats()` before COMMIT.
//!
//! Binary COPY sends each body byte for byte (no escaping to get wrong) and keeps message text
//! out of the server log even when a row fails (PostgreSQL prints the offending line only for
//! text-format COPY). On any failure the connection is dropped and re-made on the next attempt;
//! the caller retries the same batch and deletes nothing until a commit succeeded.

use futures_util::pin_mut;
use std::time::SystemTime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls};

const COPY_SQL: &str = "COPY login_ingest (message_id, sent_at, body) FROM STDIN (FORMAT binary)";

/// One message as the database receives it.
#[derive(Clone)]
pub struct Row {
    pub message_id: String,
    pub sent_at: Option<SystemTime>,
    pub body: String,
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body holds personal data until the database masks it: never format it.
        f.debug_struct("Row")
            .field("message_id", &self.message_id)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// What the database did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub loaded: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot connect to PostgreSQL at {target}: {}", explain(.source))]
    Connect { target: String, source: tokio_postgres::Error },
    #[error("the database has no pg_mask ingest view: run `make schema` (apply sql/) on {target}")]
    NoSchema { target: String },
    #[error("PostgreSQL: {}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
}

impl SinkError {
    /// Errors worth retrying (the server may come back); the others need a human.
    pub fn is_transient(&self) -> bool {
        let e = match self {
            SinkError::NoSchema { .. } => return false,
            SinkError::Connect { source, .. } | SinkError::Db(source) => source,
        };
        match e.code() {
            // Bad credentials, a missing database and missing objects will not fix themselves.
            Some(code) => !matches!(&code.code()[..2], "28" | "3D" | "42"),
            None => true,
        }
    }
}

pub struct Sink {
    config: Config,
    target: String,
    client: Option<Client>,
}

impl Sink {
    pub fn new(config: Config) -> Self {
        let target = describe(&config);
        Sink { config, target, client: None }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Connects (if needed) and checks that the schema is there.
    pub async fn check(&mut self) -> Result<(), SinkError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT to_regclass('login_ingest') IS NOT NULL", &[]).await?;
        if !row.get::<_, bool>(0) {
            return Err(SinkError::NoSchema { target: self.target.clone() });
        }
        Ok(())
    }

    async fn client(&mut self) -> Result<&mut Client, SinkError> {
        if let Some(client) = self.client.take().filter(|c| !c.is_closed()) {
            return Ok(self.client.insert(client));
        }
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|source| SinkError::Connect { target: self.target.clone(), source })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        Ok(self.client.insert(client))
    }

    /// Loads one batch in one transaction. On error the connection is discarded.
    pub async fn load(&mut self, rows: &[Row]) -> Result<Loaded, SinkError> {
        let result = self.load_inner(rows).await;
        if result.is_err() {
            self.client = None;
        }
        result
    }

    async fn load_inner(&mut self, rows: &[Row]) -> Result<Loaded, SinkError> {
        let client = self.client().await?;
        let tx = client.transaction().await?;
        let sink = tx.copy_in(COPY_SQL).await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TIMESTAMPTZ, Type::TEXT]);
        pin_mut!(writer);
        for r in rows {
            writer.as_mut().write(&[&r.message_id, &r.sent_at, &r.body]).await?;
        }
        writer.finish().await?;
        let s =
            tx.query_one("SELECT loaded, duplicates, rejected FROM ingest_stats()", &[]).await?;
        tx.commit().await?;
        Ok(Loaded {
            loaded: s.get::<_, i64>(0) as u64,
            duplicates: s.get::<_, i64>(1) as u64,
            rejected: s.get::<_, i64>(2) as u64,
        })
    }
}

/// The server's message (with its hint) or the I/O cause, instead of tokio-postgres's bare
/// "db error" / "error connecting to server".
fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.hint() {
            Some(hint) => format!("{} ({hint})", db.message()),
            None => db.message().to_owned(),
        };
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// `user@host:port/db`, never the password.
fn describe(c: &Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("{}@{host}:{port}/{}", c.get_user().unwrap_or("?"), c.get_dbname().unwrap_or("?"))
}
