//! Command line and environment configuration. Every option has a flag, most have an
//! environment variable, and the defaults match the reference setup (LocalStack's
//! `login-queue`, Postgres on localhost with postgres/postgres). Parsing only: the database
//! connection is read in `pg_config`, and nothing here touches the network.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_QUEUE_URL: &str = "http://localhost:4566/000000000000/login-queue";

/// Default of `--batch-size`.
pub const DEFAULT_BATCH_SIZE: usize = 2000;
/// Default of `--receivers`.
pub const DEFAULT_RECEIVERS: usize = 8;

#[derive(Parser, Debug)]
#[command(
    name = "feeder",
    version,
    about = "Streams SQS login events into PostgreSQL with COPY; pg_mask validates and masks them in the database.",
    long_about = "Streams SQS login events into PostgreSQL with COPY. The feeder does not parse or mask \
the payload: it COPYs (message_id, sent_at, body) into pg_mask's login_ingest view, commits, and only \
then deletes the messages from the queue. Redelivered messages are skipped by the database, so the \
effect is exactly once. A message the database refuses is stored as a reject; one it refuses even \
as a reject is released to the queue's dead-letter queue.\n\nWithout a subcommand it runs until \
stopped: SIGINT/SIGTERM end every wait within a second, commit and acknowledge what can be in that \
second and leave the rest to redelivery. Exit codes: 0 done, 1 error (one line on stderr), 65 \
messages released, 75 stopped by a signal with work left (nothing lost: run again), 130 second signal."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub sqs: SqsOptions,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Consume the queue until stopped (the default).
    Run,
    /// Consume until the queue is empty, print a summary and exit.
    Drain,
    /// Put the JSON lines of FILE on the queue (creating the queue if needed), 10 per request.
    Seed {
        /// JSON-lines file, one message body per line; `-` reads stdin.
        file: PathBuf,
    },
    /// Load the JSON lines of FILE straight into Postgres through the same COPY path (backfills,
    /// replays). Message ids are derived from each line's position and content, so a re-run is
    /// idempotent.
    Load {
        /// JSON-lines file; `-` reads stdin.
        file: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// PostgreSQL connection URL or `key=value` string (sslmode up to verify-full, sslrootcert,
    /// sslcert, sslkey). The PG* variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
    /// PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY) fill in what it leaves out, as libpq's do;
    /// without it they override the reference default.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Log format, on stderr. The environment variable FEEDER_LOG sets which lines are logged
    /// (tracing's filter syntax, e.g. `debug` or `feeder=debug,warn`; default `info`)
    #[arg(long, env = "FEEDER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// Most rows per COPY transaction. Batches follow the arrival rate: a partial batch is
    /// loaded as soon as receives come back short, so this only caps a backlog's batches.
    #[arg(long, env = "FEEDER_BATCH_SIZE", default_value_t = DEFAULT_BATCH_SIZE, global = true,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub batch_size: usize,
    /// Seconds to wait for Postgres or SQS at start-up before giving up with an error.
    #[arg(long, env = "FEEDER_STARTUP_TIMEOUT", default_value_t = 30, global = true)]
    pub startup_timeout: u64,
    /// Seconds between progress lines in the log.
    #[arg(long, env = "FEEDER_PROGRESS_INTERVAL", default_value_t = 5, global = true)]
    pub progress_interval: u64,
}

/// Where the queue is: `run`, `drain` and `seed` (not `load`).
#[derive(Args, Debug, Clone)]
pub struct SqsOptions {
    /// SQS queue URL.
    #[arg(long, env = "SQS_QUEUE_URL", default_value = DEFAULT_QUEUE_URL, global = true)]
    pub queue_url: String,
    /// SQS endpoint. Defaults to AWS_ENDPOINT_URL, else to the queue URL's host when it is not
    /// an AWS host (LocalStack, fauxqs, moto).
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true)]
    pub endpoint_url: Option<String>,
    /// AWS region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
    pub region: String,
}

/// How the queue is consumed: `run` and `drain` (the linger also shapes `load`'s batches).
#[derive(Args, Debug, Clone)]
pub struct RunOptions {
    /// Most concurrent SQS receivers (each a long-polling ReceiveMessage loop). The feeder runs
    /// between 1 and this many: one more while receives come back full and the database keeps
    /// up, one fewer when a receive comes back short (fewer than 10).
    #[arg(long, env = "FEEDER_RECEIVERS", global = true, default_value_t = DEFAULT_RECEIVERS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub receivers: usize,
    /// Milliseconds a partial batch may wait for more messages while receives still come back
    /// full (a backlog); it is loaded at once when they come back short.
    #[arg(long, env = "FEEDER_LINGER_MS", global = true, default_value_t = 500)]
    pub linger_ms: u64,
    /// Long-poll wait per ReceiveMessage on an idle queue, seconds (0-20). Shutdown does not
    /// wait for it.
    #[arg(long, env = "FEEDER_WAIT_SECONDS", global = true, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=20))]
    pub wait_seconds: i32,
    /// Visibility timeout requested on receive, seconds (1-43200, SQS's range). A batch still in
    /// flight after half of it gets its visibility extended.
    #[arg(long, env = "FEEDER_VISIBILITY_TIMEOUT", global = true, default_value_t = 60,
          value_parser = clap::value_parser!(i32).range(1..=43_200))]
    pub visibility_timeout: i32,
    /// Serve Prometheus metrics on /metrics and a health check on /healthz at this address
    /// (e.g. 127.0.0.1:9187).
    #[arg(long, env = "FEEDER_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl RunOptions {
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl SqsOptions {
    /// The SQS endpoint to use, if not AWS's own.
    pub fn sqs_endpoint(&self) -> Option<String> {
        if let Some(e) = &self.endpoint_url {
            return Some(e.clone());
        }
        let url = url::Url::parse(&self.queue_url).ok()?;
        let host = url.host_str()?;
        if host.ends_with("amazonaws.com") {
            return None;
        }
        Some(format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeHost..url::Position::AfterPort]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("feeder").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn endpoint_comes_from_a_local_queue_url() {
        let cli = parse(&["--queue-url", "http://127.0.0.1:4566/000000000000/q", "drain"]);
        assert_eq!(cli.sqs.sqs_endpoint().as_deref(), Some("http://127.0.0.1:4566"));
        let aws = parse(&["--queue-url", "https://sqs.us-east-1.amazonaws.com/1/q"]);
        assert!(aws.sqs.endpoint_url.is_some() || aws.sqs.sqs_endpoint().is_none());
    }

    #[test]
    fn subcommands_and_bounds() {
        assert!(matches!(parse(&["seed", "data/x.jsonl"]).command, Some(Command::Seed { .. })));
        assert!(matches!(parse(&["load", "-"]).command, Some(Command::Load { .. })));
        for bad in [
            ["--wait-seconds", "21"],
            ["--batch-size", "0"],
            ["--receivers", "0"],
            ["--visibility-timeout", "0"],
        ] {
            assert!(Cli::try_parse_from(std::iter::once("feeder").chain(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(parse(&["drain", "--batch-size", "1"]).common.batch_size, 1);
    }
}
