//! `feeder load FILE|-`: JSON lines straight into the COPY path, streamed through the same
//! pipeline as the queue (backfills, replays).

use super::startup::{self, Startup};
use super::FeederError;
use crate::config::Cli;
use crate::exit::Outcome;
use crate::pipeline::{self, Mode, Settings};
use crate::shutdown::Shutdown;
use crate::source::file::{FileSource, MAX_LINE};
use crate::telemetry::{self, Counters};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes per transaction. Reading ahead buys a file nothing (the disk is not the
/// bottleneck, the database is), so a load holds less than a queue: two batches of this.
const BATCH_BYTES: usize = 4 << 20;

pub async fn load(
    cli: &Cli,
    path: &std::path::Path,
    shutdown: &Shutdown,
) -> Result<Outcome, FeederError> {
    let common = &cli.common;
    let source = Arc::new(FileSource::open(path).await?);
    let Startup::Ready(sink) = startup::sink(common, shutdown).await? else {
        return Ok(Outcome { released: 0, interrupted: true });
    };
    let counters = Arc::new(Counters::default());
    let progress = {
        let source = Arc::clone(&source);
        telemetry::spawn_progress(
            Arc::clone(&counters),
            Duration::from_secs(common.progress_interval),
            "committed",
            move || crate::source::Source::progress(&*source),
        )
    };
    let settings = Settings {
        mode: Mode::UntilEmpty,
        batch_rows: common.batch_size,
        batch_bytes: BATCH_BYTES,
        linger: cli.run.linger(),
    };
    let start = Instant::now();
    let result =
        pipeline::run(Arc::clone(&source), sink, &settings, shutdown, Arc::clone(&counters)).await;
    progress.abort();
    let outcome = result?;
    let (repaired, cut) = source.repairs();
    if repaired > 0 {
        tracing::warn!("{repaired} lines had invalid UTF-8 or NUL bytes; they were repaired and will likely be rejected");
    }
    if cut > 0 {
        tracing::warn!(
            "{cut} lines were longer than {MAX_LINE} bytes and were cut (stored as rejects)"
        );
    }
    for id in source.released() {
        // The id names the line: line-<n>-<hash>.
        tracing::warn!(message_id = %id, "line not loaded: the database refused it even as a reject");
    }
    let summary = counters.summary_as(start.elapsed(), "committed");
    tracing::info!("done: {summary}");
    println!("{summary}");
    if outcome.interrupted {
        tracing::warn!(
            "stopped after {} lines; run the same load again to finish (lines already loaded are \
             skipped)",
            counters.get(|c| &c.deleted)
        );
    }
    if outcome.released > 0 {
        tracing::warn!(
            "{} lines released (listed above): fix them and load them again",
            outcome.released
        );
    }
    Ok(outcome)
}
