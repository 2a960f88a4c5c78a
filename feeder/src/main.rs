//! feeder: streams SQS login events into PostgreSQL through pg_mask's `login_ingest` view.
//!
//! `main` only sets up and reports: configuration and logging first, then the command
//! ([`commands`]), and the outcome as an exit code ([`exit`]); an error leaves as one line on
//! stderr with exit code 1.

mod commands;
mod config;
mod db_error;
mod exit;
mod pg_config;
mod pipeline;
mod receivers;
mod retry;
mod row;
mod settle;
mod shutdown;
mod sink;
mod source;
mod sqs;
mod store;
mod telemetry;
#[cfg(test)]
mod testing;
mod tls;

use clap::Parser;
use std::process::ExitCode;

/// The AWS SDK allocates and frees a great deal per request (a fifth of the feeder's CPU in
/// glibc's malloc in a profile of a 20,000-message drain); mimalloc does it for less, and the
/// CPU it saves goes to the queue and the database on the same machine. Built without
/// transparent huge pages (`no_thp`): with them a `feeder load` peaked at 51 MiB RSS instead of
/// 33 MiB, past the 50 MB the streaming load promises.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = config::Cli::parse();
    telemetry::init_logging(cli.common.log_format);
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::from(exit::FATAL);
            }
        };
    let result = runtime.block_on(commands::dispatch(cli));
    // Tasks still running (a receive dropped at shutdown, a connection) end with the runtime;
    // none of them holds work that is not already accounted for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(exit::FATAL)
        }
    }
}
