//! feeder: streams SQS login events into PostgreSQL through pg_mask's `login_ingest` view.
//!
//! `main` only sets up and reports: configuration and logging first, then the command, and any
//! error leaves as one line on stderr with a non-zero exit code.

mod backoff;
mod config;
mod file_source;
mod pipeline;
mod shutdown;
mod sink;
mod sqs;
mod telemetry;

use clap::Parser;
use config::{Cli, Command};
use pipeline::{Mode, PipelineError};
use shutdown::Shutdown;
use sink::Sink;
use sqs::Queue;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telemetry::Counters;

#[derive(Debug, thiserror::Error)]
enum FeederError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Sqs(#[from] sqs::SqsError),
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error("invalid database URL: {0}")]
    DatabaseUrl(tokio_postgres::Error),
    #[error("cannot read {path}: {source}")]
    Input { path: String, source: std::io::Error },
    #[error("cannot serve metrics: {0}")]
    Metrics(std::io::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.common.log_format);
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
    match runtime.block_on(try_main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn try_main(mut cli: Cli) -> Result<(), FeederError> {
    let common = cli.common.clone();
    match cli.command.take().unwrap_or(Command::Run) {
        Command::Seed { file } => seed(&common, &file).await,
        Command::Load { file } => load_file(&common, &file).await,
        Command::Run => consume(&cli, Mode::Forever).await,
        Command::Drain => consume(&cli, Mode::UntilEmpty).await,
    }
}

/// Retries `f` on transient errors until `timeout`, logging once.
async fn ready<T, E, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Transient,
{
    let start = Instant::now();
    let mut backoff = backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.transient() && start.elapsed() < timeout => {
                let (delay, first) = backoff.fail();
                if first {
                    tracing::warn!("{e}; waiting up to {} s for {what}", timeout.as_secs());
                }
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

trait Transient {
    fn transient(&self) -> bool;
}
impl Transient for sqs::SqsError {
    fn transient(&self) -> bool {
        self.is_transient()
    }
}
impl Transient for sink::SinkError {
    fn transient(&self) -> bool {
        self.is_transient()
    }
}

/// A sink whose connection and schema have been checked, waiting for the server if needed.
async fn connect_sink(common: &config::Common) -> Result<Sink, FeederError> {
    let config = common.database_config().map_err(FeederError::DatabaseUrl)?;
    let target = Sink::new(config.clone()).target().to_owned();
    let timeout = Duration::from_secs(common.startup_timeout);
    // Each attempt gets a fresh sink, so a failed connection is never reused; the one that
    // passes the check is kept, connection included.
    let sink = ready(&format!("PostgreSQL at {target}"), timeout, || {
        let mut s = Sink::new(config.clone());
        async move { s.check().await.map(|_| s) }
    })
    .await?;
    Ok(sink)
}

async fn consume(cli: &Cli, mode: Mode) -> Result<(), FeederError> {
    let common = &cli.common;
    if let Some(addr) = cli.run.metrics_addr {
        telemetry::serve_metrics(addr).await.map_err(FeederError::Metrics)?;
    }
    let shutdown = Shutdown::install();
    let mut sink = connect_sink(common).await?;
    let mut queue = Queue::connect(common).await;
    let timeout = Duration::from_secs(common.startup_timeout);
    let url = ready(&format!("SQS queue {}", queue.url), timeout, || {
        let mut q = queue.clone();
        async move { q.resolve().await.map(|_| q.url) }
    })
    .await?;
    queue.url = url;
    tracing::info!(queue = %queue.url, database = %sink.target(), "feeder started ({mode:?})");

    let counters = Arc::new(Counters::default());
    let progress = telemetry::spawn_progress(
        Arc::clone(&counters),
        Duration::from_secs(common.progress_interval),
    );
    let start = Instant::now();
    let result = loop {
        let r = pipeline::run(
            &queue,
            &mut sink,
            &cli.run,
            common.batch_size,
            mode,
            &shutdown,
            &counters,
        )
        .await;
        if r.is_err() || mode == Mode::Forever || shutdown.requested() {
            break r;
        }
        // Drain: an empty receive is not an empty queue while other consumers (or a crashed
        // run) still hold messages in flight; wait for those to come back or be deleted.
        match queue.depth().await {
            Ok((0, 0)) => break Ok(()),
            Ok((visible, in_flight)) => {
                tracing::info!(
                    "queue not empty yet ({visible} visible, {in_flight} in flight); waiting"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => break Err(e.into()),
        }
    };
    progress.abort();
    result?;
    let summary = counters.summary(start.elapsed());
    tracing::info!("done: {summary}");
    if mode == Mode::UntilEmpty {
        println!("{summary}");
    }
    Ok(())
}

fn read_input(path: &std::path::Path) -> Result<(Vec<sink::Row>, usize), FeederError> {
    let err = |source| FeederError::Input { path: path.display().to_string(), source };
    if path.as_os_str() == "-" {
        file_source::read_rows(std::io::stdin().lock()).map_err(err)
    } else {
        let f = std::fs::File::open(path).map_err(err)?;
        file_source::read_rows(std::io::BufReader::new(f)).map_err(err)
    }
}

async fn load_file(common: &config::Common, path: &std::path::Path) -> Result<(), FeederError> {
    let (rows, repaired) = read_input(path)?;
    if repaired > 0 {
        tracing::warn!("{repaired} lines had invalid UTF-8 or NUL bytes; they were repaired and will likely be rejected");
    }
    let shutdown = Shutdown::install();
    let mut sink = connect_sink(common).await?;
    let counters = Counters::default();
    let start = Instant::now();
    let mut last_log = Instant::now();
    let mut done_lines = 0;
    for chunk in rows.chunks(common.batch_size.max(1)) {
        // Between batches: each committed batch stays, and a re-run skips it by its ids.
        if shutdown.requested() {
            tracing::warn!(
                "stopped after {done_lines} of {} lines; run the same load again to finish \
                 (lines already loaded are skipped)",
                rows.len()
            );
            break;
        }
        pipeline::load_until_committed(&mut sink, chunk, &counters, None).await?;
        telemetry::count!(counters, received, chunk.len());
        done_lines += chunk.len();
        if last_log.elapsed() >= Duration::from_secs(common.progress_interval) {
            tracing::info!("progress: {}", counters.summary(start.elapsed()));
            last_log = Instant::now();
        }
    }
    let summary = counters.summary(start.elapsed());
    tracing::info!("done: {summary}");
    println!("{summary}");
    Ok(())
}

/// Sends one chunk of up to 10 bodies, retrying the entries that failed transiently with
/// backoff; gives up when SQS has failed for `timeout` without a break.
async fn send_chunk(
    queue: &Queue,
    mut pending: Vec<String>,
    timeout: Duration,
) -> Result<usize, sqs::SqsError> {
    let mut backoff = backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut failing_since: Option<Instant> = None;
    let mut sent = 0;
    loop {
        let result = queue.send_batch(&pending).await;
        match result {
            Ok(failed) if failed.is_empty() => return Ok(sent + pending.len()),
            Ok(failed) => {
                if failed.len() < pending.len() {
                    failing_since = None;
                } else if failing_since.get_or_insert_with(Instant::now).elapsed() > timeout {
                    return Err(sqs::SqsError::Service {
                        code: "SendMessageBatch".into(),
                        message: format!(
                            "{} messages still failing after {timeout:?}",
                            failed.len()
                        ),
                        transient: true,
                    });
                }
                sent += pending.len() - failed.len();
                pending = failed;
            }
            Err(e) if e.is_transient() => {
                if failing_since.get_or_insert_with(Instant::now).elapsed() > timeout {
                    return Err(e);
                }
                let (delay, first) = backoff.fail();
                if first {
                    tracing::warn!("{e}; retrying for up to {} s", timeout.as_secs());
                }
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(backoff.fail().0).await;
    }
}

async fn seed(common: &config::Common, path: &std::path::Path) -> Result<(), FeederError> {
    let (rows, _) = read_input(path)?;
    let mut queue = Queue::connect(common).await;
    let timeout = Duration::from_secs(common.startup_timeout);
    queue.url = ready(&format!("SQS at {}", queue.url), timeout, || {
        let mut q = queue.clone();
        async move { q.ensure_exists().await.map(|_| q.url) }
    })
    .await?;
    let bodies: Vec<String> = rows.into_iter().map(|r| r.body).collect();
    let start = Instant::now();
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let sent: usize = stream::iter(bodies.chunks(10).map(<[String]>::to_vec))
        .map(|chunk| send_chunk(&queue, chunk, timeout))
        .buffer_unordered(8)
        .try_fold(0, |acc, n| async move { Ok(acc + n) })
        .await?;
    let msg = format!(
        "seeded {sent} messages into {} in {:.1} s",
        queue.url,
        start.elapsed().as_secs_f64()
    );
    tracing::info!("{msg}");
    println!("{msg}");
    Ok(())
}
