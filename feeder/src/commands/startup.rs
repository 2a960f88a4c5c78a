//! The start-up waits the commands share: PostgreSQL reachable with the schema in place, the
//! queue resolvable. Each retries transient failures for `--startup-timeout`, ends at a
//! signal, and gives up at once on what waiting cannot fix (credentials, a missing queue or
//! schema, an untrusted certificate).

use super::FeederError;
use crate::config::{Common, SqsOptions};
use crate::pg_config::Connector;
use crate::retry::{Failed, Limit, Retry};
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::sqs::Queue;
use crate::store::{Class, StoreError};
use std::time::Duration;

/// What a start-up wait can end with besides success.
pub enum Startup<T> {
    Ready(T),
    /// A signal came first: nothing was received, nothing is left.
    Stopped,
}

fn waiting(common: &Common) -> String {
    format!(" for up to {} s", common.startup_timeout)
}

/// A sink whose connection and schema have been checked.
pub async fn sink(common: &Common, shutdown: &Shutdown) -> Result<Startup<Sink>, FeederError> {
    let connector = Connector::from_env(common.database_url.as_deref())?;
    let what = format!("PostgreSQL at {}", connector.target());
    let note = waiting(common);
    let sink = Sink::new(connector);
    let checked = Retry::new(&what, shutdown)
        .note(&note)
        .backoff(Duration::from_millis(200), Duration::from_secs(5))
        .limit(Limit::For(Duration::from_secs(common.startup_timeout)))
        .run(|_| sink.check(), |e| next(e.class() == Class::Transient))
        .await;
    match checked {
        Ok(()) => Ok(Startup::Ready(sink)),
        Err(Failed::Stopped) => Ok(Startup::Stopped),
        Err(Failed::Error(e)) => Err(e.into()),
    }
}

/// The queue, its URL as the server spells it; `create` makes it if missing (`seed`).
pub async fn queue(
    common: &Common,
    sqs: &SqsOptions,
    shutdown: &Shutdown,
    create: bool,
) -> Result<Startup<Queue>, FeederError> {
    let queue = Queue::connect(sqs).await;
    let what = format!("SQS queue {}", queue.url);
    let note = waiting(common);
    let resolved = Retry::new(&what, shutdown)
        .note(&note)
        .backoff(Duration::from_millis(200), Duration::from_secs(5))
        .limit(Limit::For(Duration::from_secs(common.startup_timeout)))
        .run(
            |_| {
                let mut q = queue.clone();
                async move {
                    if create {
                        q.ensure_exists().await?;
                    } else {
                        q.resolve().await?;
                    }
                    Ok::<_, crate::sqs::SqsError>(q)
                }
            },
            |e| next(e.is_transient()),
        )
        .await;
    match resolved {
        Ok(q) => Ok(Startup::Ready(q)),
        Err(Failed::Stopped) => Ok(Startup::Stopped),
        Err(Failed::Error(e)) => Err(e.into()),
    }
}

fn next(transient: bool) -> crate::retry::Next {
    if transient {
        crate::retry::Next::Retry
    } else {
        crate::retry::Next::GiveUp
    }
}
