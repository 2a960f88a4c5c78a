//! Logs, counters and the optional Prometheus endpoint.
//!
//! Counters are kept twice on purpose: as `metrics` series for Prometheus, and as atomics for the
//! progress lines and the final summary, which must work without an exporter. Nothing here ever
//! logs a message body: bodies carry personal data until the database has masked them.

use crate::config::LogFormat;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn init_logging(format: LogFormat) {
    // aws_config warns at length for every credential provider it tries; a chain that finds
    // nothing reaches the log as one SqsError::NoCredentials line instead.
    let filter = tracing_subscriber::EnvFilter::try_from_env("FEEDER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,aws=warn,aws_config=error,aws_smithy_runtime=error",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Human => builder.compact().init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[derive(Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub loaded: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub released: AtomicU64,
    pub deleted: AtomicU64,
    pub delete_failures: AtomicU64,
    pub batches: AtomicU64,
}

/// Adds to an atomic counter and to the Prometheus counter of the same name.
macro_rules! count {
    ($counters:expr, $field:ident, $n:expr) => {{
        let n = $n as u64;
        $counters.$field.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!(concat!("feeder_", stringify!($field), "_total")).increment(n);
    }};
}
pub(crate) use count;

impl Counters {
    pub fn get(&self, f: fn(&Counters) -> &AtomicU64) -> u64 {
        f(self).load(Ordering::Relaxed)
    }

    pub fn summary(&self, elapsed: Duration) -> String {
        self.summary_as(elapsed, "deleted")
    }

    /// The summary, calling acknowledgements `acked` ("deleted" for a queue).
    pub fn summary_as(&self, elapsed: Duration, acked: &str) -> String {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let received = self.get(|c| &c.received);
        format!(
            "received {received}, loaded {}, duplicates {}, rejected {}, released {}, {acked} {}, delete failures {}, {:.2} s, {:.0} messages/s",
            self.get(|c| &c.loaded),
            self.get(|c| &c.duplicates),
            self.get(|c| &c.rejected),
            self.get(|c| &c.released),
            self.get(|c| &c.deleted),
            self.get(|c| &c.delete_failures),
            secs,
            (self.get(|c| &c.loaded) + self.get(|c| &c.duplicates) + self.get(|c| &c.rejected)) as f64 / secs,
        )
    }
}

/// Logs a progress line every `interval` while there is news, with the source's own words
/// (`feeder load`: its position in the file and an ETA).
pub fn spawn_progress(
    counters: Arc<Counters>,
    interval: Duration,
    acked: &'static str,
    extra: impl Fn() -> Option<String> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut last = u64::MAX;
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.tick().await;
        loop {
            tick.tick().await;
            let settled = counters.get(|c| &c.deleted)
                + counters.get(|c| &c.released)
                + counters.get(|c| &c.delete_failures);
            let held = counters.get(|c| &c.received).saturating_sub(settled);
            metrics::gauge!("feeder_in_flight").set(held as f64);
            let done = counters.get(|c| &c.loaded)
                + counters.get(|c| &c.duplicates)
                + counters.get(|c| &c.rejected);
            if done != last {
                let summary = counters.summary_as(start.elapsed(), acked);
                match extra() {
                    Some(more) => tracing::info!("progress: {more}; {summary}"),
                    None => tracing::info!("progress: {summary}"),
                }
                last = done;
            }
        }
    })
}

/// Serves `/metrics` (Prometheus text format) and `/healthz` on `addr`.
pub async fn serve_metrics(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("feeder_batch_seconds".into()),
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        )
        .and_then(|b| b.install_recorder())
        .map_err(std::io::Error::other)?;
    metrics::describe_counter!("feeder_received_total", "messages received from SQS");
    metrics::describe_counter!("feeder_loaded_total", "messages that became user_logins rows");
    metrics::describe_counter!(
        "feeder_duplicates_total",
        "messages skipped: id already loaded or rejected"
    );
    metrics::describe_counter!("feeder_rejected_total", "messages kept in user_login_rejects");
    metrics::describe_counter!(
        "feeder_released_total",
        "messages refused even as rejects: not acknowledged, left to the dead-letter queue"
    );
    metrics::describe_gauge!("feeder_receivers", "receive loops running (adaptive)");
    metrics::describe_counter!("feeder_deleted_total", "messages deleted from SQS after commit");
    metrics::describe_counter!(
        "feeder_delete_failures_total",
        "delete entries that failed after retries"
    );
    metrics::describe_histogram!("feeder_batch_seconds", "COPY + commit time per batch");
    metrics::describe_gauge!("feeder_in_flight", "messages received and not yet deleted");
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(move || std::future::ready(handle.render())))
        .route("/healthz", axum::routing::get(|| std::future::ready("ok\n")));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}
