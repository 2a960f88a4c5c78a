//! Command line and environment configuration. Every option has a flag, most have an
//! environment variable, and the defaults match the reference setup (LocalStack's
//! `login-queue`, Postgres on localhost with postgres/postgres).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_QUEUE_URL: &str = "http://localhost:4566/000000000000/login-queue";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@localhost:5432/postgres";

#[derive(Parser, Debug)]
#[command(
    name = "feeder",
    version,
    about = "Streams SQS login events into PostgreSQL with COPY; pg_mask validates and masks them in the database.",
    long_about = "Streams SQS login events into PostgreSQL with COPY. The feeder does not parse or mask \
the payload: it COPYs (message_id, sent_at, body) into pg_mask's login_ingest view, commits, and only \
then deletes the messages from the queue. Redelivered messages are skipped by the database, so the \
effect is exactly once.\n\nWithout a subcommand it runs until stopped (SIGINT/SIGTERM finish the batch \
in flight, delete it and exit 0)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
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
    /// PostgreSQL connection URL. When unset, PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE
    /// are used if present, else the reference default.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
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
    /// Log format, on stderr. The environment variable FEEDER_LOG sets which lines are logged
    /// (tracing's filter syntax, e.g. `debug` or `feeder=debug,warn`; default `info`)
    #[arg(long, env = "FEEDER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// Rows per COPY transaction.
    #[arg(long, env = "FEEDER_BATCH_SIZE", default_value_t = 1000, global = true,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub batch_size: usize,
    /// Seconds to wait for Postgres or SQS at start-up before giving up with an error.
    #[arg(long, env = "FEEDER_STARTUP_TIMEOUT", default_value_t = 30, global = true)]
    pub startup_timeout: u64,
    /// Seconds between progress lines in the log.
    #[arg(long, env = "FEEDER_PROGRESS_INTERVAL", default_value_t = 5, global = true)]
    pub progress_interval: u64,
}

#[derive(Args, Debug, Clone)]
pub struct RunOptions {
    /// Concurrent SQS receivers (each a long-polling ReceiveMessage loop).
    #[arg(long, env = "FEEDER_RECEIVERS", global = true, default_value_t = 4,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub receivers: usize,
    /// Milliseconds a partial batch may wait for more messages before it is loaded.
    #[arg(long, env = "FEEDER_LINGER_MS", global = true, default_value_t = 500)]
    pub linger_ms: u64,
    /// Long-poll wait per ReceiveMessage, seconds (0-20). Shutdown waits for the polls in
    /// progress, so this bounds how long SIGTERM takes on an idle queue.
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

impl Common {
    /// The database URL: flag/DATABASE_URL, else PG* variables, else the reference default.
    pub fn database_config(&self) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
        if let Some(url) = &self.database_url {
            return url.parse();
        }
        let mut config: tokio_postgres::Config = DEFAULT_DATABASE_URL.parse()?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(h) = env("PGHOST") {
            config = tokio_postgres::Config::new();
            config.host(&h).user("postgres").password("postgres").dbname("postgres").port(5432);
        }
        if let Some(p) = env("PGPORT").and_then(|p| p.parse().ok()) {
            config.port(p);
        }
        if let Some(u) = env("PGUSER") {
            config.user(&u);
        }
        if let Some(p) = env("PGPASSWORD") {
            config.password(p);
        }
        if let Some(d) = env("PGDATABASE") {
            config.dbname(&d);
        }
        Ok(config)
    }

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
        assert_eq!(cli.common.sqs_endpoint().as_deref(), Some("http://127.0.0.1:4566"));
        let aws = parse(&["--queue-url", "https://sqs.us-east-1.amazonaws.com/1/q"]);
        assert!(aws.common.endpoint_url.is_some() || aws.common.sqs_endpoint().is_none());
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
