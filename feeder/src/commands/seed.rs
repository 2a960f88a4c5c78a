//! `feeder seed FILE|-`: JSON lines onto the queue (creating it), 10 per SendMessageBatch.
//! Of a request SQS answered, only the entries it failed are resent. A request whose answer is
//! lost (the network failed after sending it) is resent whole: a standard queue has no
//! idempotent send, so such a failure can queue a line twice, as it can for any SQS producer
//! (it then lands as two rows, being two messages).

use super::startup::{self, Startup};
use super::FeederError;
use crate::config::{Common, SqsOptions};
use crate::exit::Outcome;
use crate::retry::{Failed, Limit, Next, OnShutdown, Retry};
use crate::shutdown::Shutdown;
use crate::source::file::FileSource;
use crate::source::Source;
use crate::sqs::{Queue, SqsError};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// SendMessageBatch requests in flight at once.
const SENDS_IN_PARALLEL: usize = 8;

pub async fn seed(
    common: &Common,
    sqs: &SqsOptions,
    path: &std::path::Path,
    shutdown: &Shutdown,
) -> Result<Outcome, FeederError> {
    let file = FileSource::open(path).await?;
    let Startup::Ready(queue) = startup::queue(common, sqs, shutdown, true).await? else {
        return Ok(Outcome { released: 0, interrupted: true });
    };
    let timeout = Duration::from_secs(common.startup_timeout);
    let start = Instant::now();
    let mut sent = 0;
    let outage = std::sync::atomic::AtomicBool::new(false);
    loop {
        let lines = file.receive(1000).await?;
        if lines.is_empty() {
            break;
        }
        let bodies: Vec<String> = lines.into_iter().map(|m| m.row.body).collect();
        let chunks: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
        let result: Result<Vec<usize>, Failed<SqsError>> = stream::iter(chunks)
            .map(|chunk| send_chunk(&queue, chunk, timeout, shutdown, &outage))
            .buffer_unordered(SENDS_IN_PARALLEL)
            .try_collect()
            .await;
        match result {
            Ok(n) => sent += n.iter().sum::<usize>(),
            Err(Failed::Error(e)) => return Err(e.into()),
            Err(Failed::Stopped) => {
                tracing::warn!("stopped after sending {sent} messages");
                return Ok(Outcome { released: 0, interrupted: true });
            }
        }
        if shutdown.requested() {
            tracing::warn!("stopped after sending {sent} messages");
            return Ok(Outcome { released: 0, interrupted: true });
        }
    }
    let msg = format!(
        "seeded {sent} messages into {} in {:.1} s",
        queue.url,
        start.elapsed().as_secs_f64()
    );
    tracing::info!("{msg}");
    println!("{msg}");
    Ok(Outcome::default())
}

/// Why a send attempt did not finish.
#[derive(Debug)]
enum SendError {
    Sqs(SqsError),
    /// Some entries failed; they are resent.
    Partial(usize),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Sqs(e) => e.fmt(f),
            SendError::Partial(n) => write!(f, "SQS failed {n} entries of a batch"),
        }
    }
}

/// Sends up to 10 bodies, resending only the entries that failed; gives up when SQS has
/// failed for `timeout`. Finishes the request in flight at a signal, starts no new one.
async fn send_chunk(
    queue: &Queue,
    bodies: Vec<String>,
    timeout: Duration,
    shutdown: &Shutdown,
    outage: &std::sync::atomic::AtomicBool,
) -> Result<usize, Failed<SqsError>> {
    let total = bodies.len();
    let pending = Mutex::new(bodies);
    let result = Retry::new("SQS", shutdown)
        .note(" (sending)")
        .shared_outage(outage)
        .backoff(Duration::from_millis(100), Duration::from_secs(5))
        .limit(Limit::For(timeout))
        .on_shutdown(OnShutdown::Finish)
        .run(
            |_| {
                let batch = pending.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let pending = &pending;
                async move {
                    let failed = queue.send_batch(&batch).await.map_err(SendError::Sqs)?;
                    if failed.is_empty() {
                        return Ok(());
                    }
                    let n = failed.len();
                    *pending.lock().unwrap_or_else(|p| p.into_inner()) = failed;
                    Err(SendError::Partial(n))
                }
            },
            |e| match e {
                SendError::Sqs(e) if !e.is_transient() => Next::GiveUp,
                _ => Next::Retry,
            },
        )
        .await;
    match result {
        Ok(()) => Ok(total),
        Err(Failed::Stopped) => Err(Failed::Stopped),
        Err(Failed::Error(SendError::Sqs(e))) => Err(Failed::Error(e)),
        Err(Failed::Error(SendError::Partial(n))) => Err(Failed::Error(SqsError::Busy {
            code: format!("{n} entries still failing after {timeout:?}"),
        })),
    }
}
