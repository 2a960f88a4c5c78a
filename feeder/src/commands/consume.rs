//! `feeder run` and `feeder drain`: the SQS queue through the pipeline into PostgreSQL.

use super::startup::{self, Startup};
use super::FeederError;
use crate::config::Cli;
use crate::exit::Outcome;
use crate::pipeline::{self, Mode, Settings};
use crate::shutdown::Shutdown;
use crate::source::sqs::SqsSource;
use crate::telemetry::{self, Counters};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes per transaction. With SQS's 1 MiB messages a batch stays within this, and the
/// pipeline holds at most two batches' worth: memory is bounded whatever the backlog or file.
pub const BATCH_BYTES: usize = 8 << 20;

pub async fn consume(cli: &Cli, mode: Mode, shutdown: &Shutdown) -> Result<Outcome, FeederError> {
    let common = &cli.common;
    if let Some(addr) = cli.run.metrics_addr {
        telemetry::serve_metrics(addr).await.map_err(FeederError::Metrics)?;
    }
    // A signal during start-up: nothing received, so nothing left over; but a drain has not
    // done its job.
    let stopped = Outcome { released: 0, interrupted: mode == Mode::UntilEmpty };
    let Startup::Ready(sink) = startup::sink(common, shutdown).await? else {
        return Ok(stopped);
    };
    let Startup::Ready(queue) = startup::queue(common, &cli.sqs, shutdown, false).await? else {
        return Ok(stopped);
    };
    tracing::info!(queue = %queue.url, database = %sink.target(), "feeder started ({mode:?})");
    // A drain does not long-poll: it ends when a receive finds the queue empty (and the
    // queue's counts agree), and a receive in progress then must not keep it waiting.
    let wait = if mode == Mode::UntilEmpty { 0 } else { cli.run.wait_seconds };
    let source =
        Arc::new(SqsSource::new(queue, wait, cli.run.visibility_timeout, cli.run.receivers));
    let counters = Arc::new(Counters::default());
    let progress = telemetry::spawn_progress(
        Arc::clone(&counters),
        Duration::from_secs(common.progress_interval),
        "deleted",
        || None,
    );
    let settings = Settings {
        mode,
        batch_rows: common.batch_size,
        batch_bytes: BATCH_BYTES,
        linger: cli.run.linger(),
    };
    let start = Instant::now();
    let result = pipeline::run(source, sink, &settings, shutdown, Arc::clone(&counters)).await;
    progress.abort();
    let outcome = result?;
    let summary = counters.summary(start.elapsed());
    tracing::info!("done: {summary}");
    if mode == Mode::UntilEmpty {
        println!("{summary}");
    }
    report(&outcome);
    Ok(outcome)
}

/// The line that explains a non-zero outcome.
pub fn report(outcome: &Outcome) {
    if outcome.released > 0 {
        tracing::warn!(
            "{} messages released: the database refused them even as rejects (their ids are in \
             the warnings above); they were not deleted, and the queue's redrive policy moves \
             them to its dead-letter queue",
            outcome.released
        );
    }
    if outcome.interrupted {
        tracing::warn!(
            "stopped before all received work was committed and acknowledged; the rest is \
             redelivered (nothing is lost, duplicates are skipped)"
        );
    }
}
