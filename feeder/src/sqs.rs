//! The SQS side: client construction, long-poll receive, batched delete with per-entry retry,
//! visibility extension, queue depth, and the seeding helper.
//!
//! Errors are sorted into transient (network, throttling, 5xx: retry with backoff) and fatal
//! (no such queue, bad credentials: a human must act), each with one line that says what to do.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::Common;
use crate::sink::Row;

#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    #[error("cannot reach SQS at {endpoint}: {detail} (is the emulator or network up?)")]
    Unreachable { endpoint: String, detail: String },
    #[error("SQS queue {queue} does not exist: create it (feeder seed FILE creates it) or fix --queue-url")]
    NoQueue { queue: String },
    #[error("SQS rejected the credentials ({code}): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (any value works for LocalStack)")]
    Credentials { code: String },
    #[error("no AWS credentials found (environment, profile or instance role): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any values work for LocalStack and the emulators) or AWS_PROFILE")]
    NoCredentials,
    #[error("SQS error {code}: {message}")]
    Service { code: String, message: String, transient: bool },
    #[error("invalid SQS request: {0}")]
    Build(String),
}

impl SqsError {
    pub fn is_transient(&self) -> bool {
        match self {
            SqsError::Unreachable { .. } => true,
            SqsError::Service { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// A received message with what the pipeline needs to load and acknowledge it.
#[derive(Debug, Clone)]
pub struct Received {
    pub row: Row,
    pub receipt: String,
    pub received_at: std::time::Instant,
}

#[derive(Clone)]
pub struct Queue {
    client: Client,
    pub url: String,
    endpoint: String,
}

impl Queue {
    pub async fn connect(common: &Common) -> Self {
        let endpoint = common.sqs_endpoint();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(common.region.clone()));
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
        }
        let sdk = loader.load().await;
        let client = Client::new(&sdk);
        Queue {
            client,
            url: common.queue_url.clone(),
            endpoint: endpoint.unwrap_or_else(|| format!("AWS SQS in {}", common.region)),
        }
    }

    fn classify<E, R>(&self, e: SdkError<E, R>) -> SqsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match &e {
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => {
                // Never the whole error context in a log: for a response error it ends in a
                // Debug dump of the raw response, body included, and a ReceiveMessage body holds
                // the messages' personal data.
                let cause = root_cause(&e);
                tracing::debug!("SQS request failed: {cause}");
                // The request was never signed: no credentials anywhere in the chain. Not the
                // network's fault, and waiting will not fix it. (A dispatch failure has no
                // response, so its context is safe to read.)
                if let SdkError::DispatchFailure(_) = &e {
                    let context = DisplayErrorContext(&e).to_string();
                    if context.contains("loading credentials") || context.contains("no credentials")
                    {
                        return SqsError::NoCredentials;
                    }
                }
                SqsError::Unreachable { endpoint: self.endpoint.clone(), detail: cause }
            }
            _ => {
                let code = e.code().unwrap_or("Unknown").to_owned();
                let message = e.message().unwrap_or("").to_owned();
                if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") {
                    SqsError::NoQueue { queue: self.url.clone() }
                } else if matches!(
                    code.as_str(),
                    "InvalidClientTokenId"
                        | "UnrecognizedClientException"
                        | "SignatureDoesNotMatch"
                        | "AccessDenied"
                        | "AccessDeniedException"
                ) {
                    SqsError::Credentials { code }
                } else {
                    let transient = code.contains("Throttl")
                        || code.contains("RequestThrottled")
                        || code.contains("ServiceUnavailable")
                        || code.contains("InternalError")
                        || code == "Unknown";
                    SqsError::Service { code, message, transient }
                }
            }
        }
    }

    /// The queue's name: the last segment of its URL.
    fn name(&self) -> String {
        self.url.trim_end_matches('/').rsplit('/').next().unwrap_or("login-queue").to_owned()
    }

    /// Checks that the queue exists and adopts the URL the server reports for it (emulators
    /// spell queue URLs differently: `localhost:4566/…`, `sqs.us-east-1.localhost:4566/…`).
    pub async fn resolve(&mut self) -> Result<(), SqsError> {
        let out = self
            .client
            .get_queue_url()
            .queue_name(self.name())
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        if let Some(url) = out.queue_url {
            self.url = url;
        }
        self.depth().await.map(|_| ())
    }

    /// (visible, in flight) message counts as SQS approximates them.
    pub async fn depth(&self) -> Result<(u64, u64), SqsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: &QueueAttributeName| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok((
            get(&QueueAttributeName::ApproximateNumberOfMessages),
            get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    pub async fn receive(
        &self,
        wait_seconds: i32,
        visibility: i32,
    ) -> Result<Vec<Received>, SqsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let now = std::time::Instant::now();
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let sent_at = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
                Some(Received {
                    row: Row {
                        message_id: m.message_id?,
                        sent_at,
                        body: m.body.unwrap_or_default(),
                    },
                    receipt: m.receipt_handle?,
                    received_at: now,
                })
            })
            .collect())
    }

    /// Deletes up to 10 receipts; returns the receipts that failed.
    pub async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<String>, SqsError> {
        let entries = entries(receipts, |id, r| {
            DeleteMessageBatchRequestEntry::builder().id(id).receipt_handle(r).build()
        })?;
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(failed_items(receipts, &out.failed))
    }

    /// Extends the visibility of up to 10 receipts.
    pub async fn extend_visibility(
        &self,
        receipts: &[String],
        seconds: i32,
    ) -> Result<(), SqsError> {
        let entries = entries(receipts, |id, r| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(r)
                .visibility_timeout(seconds)
                .build()
        })?;
        self.client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(())
    }

    /// Creates the queue named by the URL's last path segment if it does not exist, and points
    /// this handle at the URL the server reports.
    pub async fn ensure_exists(&mut self) -> Result<(), SqsError> {
        let out = self
            .client
            .create_queue()
            .queue_name(self.name())
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        if let Some(url) = out.queue_url {
            self.url = url;
        }
        Ok(())
    }

    /// Sends up to 10 bodies in one request; returns the bodies that failed for a reason worth
    /// retrying (only those: resending an accepted body would queue the event twice). A body
    /// the server refuses outright is an error.
    pub async fn send_batch(&self, bodies: &[String]) -> Result<Vec<String>, SqsError> {
        let entries = entries(bodies, |id, b| {
            SendMessageBatchRequestEntry::builder().id(id).message_body(b).build()
        })?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        if let Some(f) = out.failed.iter().find(|f| f.sender_fault) {
            return Err(SqsError::Service {
                code: f.code.clone(),
                message: f.message.clone().unwrap_or_default(),
                transient: false,
            });
        }
        Ok(failed_items(bodies, &out.failed))
    }
}

/// The innermost error of a chain ("Connection refused (os error 111)"): the SDK's own display
/// of a dispatch failure ends in a Debug dump of every layer.
fn root_cause(e: &dyn std::error::Error) -> String {
    let Some(mut cause) = e.source() else { return e.to_string() };
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Batch request entries whose ids are the items' positions: distinct within a request, and how
/// a per-entry failure is mapped back to its item ([`failed_items`]).
fn entries<T, E: std::fmt::Display>(
    items: &[String],
    build: impl Fn(String, &str) -> Result<T, E>,
) -> Result<Vec<T>, SqsError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| build(i.to_string(), item).map_err(|e| SqsError::Build(e.to_string())))
        .collect()
}

/// The items whose entries (made by [`entries`]) a batch response lists as failed.
fn failed_items(items: &[String], failed: &[BatchResultErrorEntry]) -> Vec<String> {
    failed
        .iter()
        .filter_map(|f| f.id.parse::<usize>().ok())
        .filter_map(|i| items.get(i).cloned())
        .collect()
}
