//! The feeder's commands, each in its own module: `run`/`drain` ([`consume`]), `load`
//! ([`load`]) and `seed` ([`seed`]), with the start-up waits they share ([`startup`]).
//!
//! Owns which command runs and the error a command can end with; `main` only turns that into
//! an exit code and one line.

mod consume;
mod load;
mod seed;
mod startup;

use crate::config::{Cli, Command};
use crate::exit::Outcome;
use crate::pipeline::{Mode, PipelineError};
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum FeederError {
    #[error(transparent)]
    Sqs(#[from] crate::sqs::SqsError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error(transparent)]
    File(#[from] crate::source::file::FileError),
    #[error(transparent)]
    Config(#[from] crate::pg_config::ConfigError),
    #[error("cannot serve metrics: {0}")]
    Metrics(std::io::Error),
}

impl<SE, TE> From<PipelineError<SE, TE>> for FeederError
where
    SE: std::error::Error + Into<FeederError> + 'static,
    TE: std::error::Error + Into<FeederError> + 'static,
{
    fn from(e: PipelineError<SE, TE>) -> Self {
        match e {
            PipelineError::Source(e) => e.into(),
            PipelineError::Store(e) => e.into(),
        }
    }
}

/// Runs the command the command line names (`run` when none).
pub async fn dispatch(mut cli: Cli) -> Result<Outcome, FeederError> {
    let shutdown = Shutdown::install();
    match cli.command.take().unwrap_or(Command::Run) {
        Command::Seed { file } => seed::seed(&cli.common, &cli.sqs, &file, &shutdown).await,
        Command::Load { file } => load::load(&cli, &file, &shutdown).await,
        Command::Run => consume::consume(&cli, Mode::Forever, &shutdown).await,
        Command::Drain => consume::consume(&cli, Mode::UntilEmpty, &shutdown).await,
    }
}
