//! The SQS API as the feeder uses it: client construction, receive, batched delete and
//! visibility change, queue depth, queue creation and batched send; and the typed
//! classification of SQS failures.
//!
//! Errors are sorted by the SDK's types, never by message text: a dispatch failure, timeout or
//! unparsable response is the network's (transient), `QueueDoesNotExist` and a 403 need a
//! human, throttling and 5xx pass. This module must never log a response body: a
//! ReceiveMessage response carries the messages' personal data.

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::{
    change_message_visibility_batch::ChangeMessageVisibilityBatchError,
    create_queue::CreateQueueError, delete_message_batch::DeleteMessageBatchError,
    get_queue_attributes::GetQueueAttributesError, get_queue_url::GetQueueUrlError,
    receive_message::ReceiveMessageError, send_message_batch::SendMessageBatchError,
};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;

use crate::config::SqsOptions;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    #[error("cannot reach SQS at {endpoint}: {detail} (is the emulator or network up?)")]
    Unreachable { endpoint: String, detail: String },
    #[error("SQS queue {queue} does not exist: create it (feeder seed FILE creates it) or fix --queue-url")]
    NoQueue { queue: String },
    #[error("SQS refused the credentials ({code}): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (any value works for LocalStack) or grant the role access to the queue")]
    Credentials { code: String },
    #[error("SQS denied sqs:{action} on the queue ({code}): grant that action to the feeder's role or user")]
    Denied { action: &'static str, code: String },
    #[error("no AWS credentials found (environment, profile or instance role): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any values work for LocalStack and the emulators) or AWS_PROFILE")]
    NoCredentials,
    #[error("SQS is busy ({code}); backing off")]
    Busy { code: String },
    #[error("SQS error {code}: {message}")]
    Service { code: String, message: String },
    #[error("invalid SQS request: {0}")]
    Build(String),
}

impl SqsError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SqsError::Unreachable { .. } | SqsError::Busy { .. })
    }
}

impl crate::source::SourceError for SqsError {
    fn is_transient(&self) -> bool {
        SqsError::is_transient(self)
    }

    fn needs_a_human(&self) -> bool {
        matches!(
            self,
            SqsError::Denied { .. }
                | SqsError::Credentials { .. }
                | SqsError::NoCredentials
                | SqsError::NoQueue { .. }
        )
    }
}

/// The typed variants of each operation's error that the classification needs.
trait Kinds {
    fn no_queue(&self) -> bool;
    fn throttled(&self) -> bool;
}

macro_rules! kinds {
    ($($t:ident),* $(,)?) => {$(
        impl Kinds for $t {
            fn no_queue(&self) -> bool {
                matches!(self, $t::QueueDoesNotExist(_))
            }
            fn throttled(&self) -> bool {
                matches!(self, $t::RequestThrottled(_))
            }
        }
    )*};
}
kinds!(
    ReceiveMessageError,
    DeleteMessageBatchError,
    ChangeMessageVisibilityBatchError,
    GetQueueUrlError,
    GetQueueAttributesError,
    SendMessageBatchError,
);

impl Kinds for CreateQueueError {
    fn no_queue(&self) -> bool {
        false
    }
    fn throttled(&self) -> bool {
        matches!(self, CreateQueueError::RequestThrottled(_))
    }
}

#[derive(Clone)]
pub struct Queue {
    client: Client,
    pub url: String,
    endpoint: String,
}

/// The longest one SQS request may take: the longest long poll (20 s) and a margin.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

impl Queue {
    pub async fn connect(options: &SqsOptions) -> Self {
        let endpoint = options.sqs_endpoint();
        // Every attempt is bounded: the SDK's defaults bound only the connect, so an answer that
        // never comes (a half-open connection, state lost in a NAT) would hang a receive, and
        // with it a drain, forever. A long poll waits at most 20 s.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(options.region.clone()))
            .timeout_config(timeouts);
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
        }
        let sdk = loader.load().await;
        Queue {
            client: Client::new(&sdk),
            url: options.queue_url.clone(),
            endpoint: endpoint.unwrap_or_else(|| format!("AWS SQS in {}", options.region)),
        }
    }

    /// Sorts a failed request; `action` is the IAM action it needs (`DeleteMessage` for a
    /// DeleteMessageBatch), named when SQS denies it.
    fn classify<E>(&self, action: &'static str, e: SdkError<E, HttpResponse>) -> SqsError
    where
        E: Kinds + ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &e {
            SdkError::ServiceError(ctx) => {
                let err = ctx.err();
                let code = err.code().unwrap_or("Unknown").to_owned();
                let status = ctx.raw().status().as_u16();
                if err.no_queue() {
                    SqsError::NoQueue { queue: self.url.clone() }
                } else if err.throttled() || status == 429 || status >= 500 || passing_error(&code)
                {
                    SqsError::Busy { code }
                } else if status == 403 && code.starts_with("AccessDenied") {
                    // Signed and known, not allowed: a missing permission, not bad keys.
                    SqsError::Denied { action, code }
                } else if status == 403 {
                    SqsError::Credentials { code }
                } else {
                    let message = err.message().unwrap_or("").to_owned();
                    SqsError::Service { code, message }
                }
            }
            SdkError::ConstructionFailure(_) => {
                // The request was never sent; with no credentials anywhere in the chain the
                // signer fails here or in dispatch, typed as the credential provider's error.
                if credentials_missing(&e) {
                    return SqsError::NoCredentials;
                }
                SqsError::Build(root_cause(&e))
            }
            _ => {
                if credentials_missing(&e) {
                    return SqsError::NoCredentials;
                }
                // Never the SDK's whole error context: for a response error it ends in a Debug
                // dump of the raw response, body included.
                SqsError::Unreachable { endpoint: self.endpoint.clone(), detail: root_cause(&e) }
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
            .map_err(|e| self.classify("GetQueueUrl", e))?;
        if let Some(url) = out.queue_url {
            self.url = url;
        }
        self.depth().await.map(|_| ())
    }

    /// (waiting, in flight) message counts as SQS approximates them: waiting is visible or
    /// delayed (sent with a delay, or to a queue with one: not receivable yet, but coming).
    pub async fn depth(&self) -> Result<(u64, u64), SqsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| self.classify("GetQueueAttributes", e))?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: &QueueAttributeName| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok((
            get(&QueueAttributeName::ApproximateNumberOfMessages)
                + get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    /// One ReceiveMessage of up to `max` (≤ 10) messages with their SentTimestamp.
    pub async fn receive(
        &self,
        max: i32,
        wait_seconds: i32,
        visibility: i32,
    ) -> Result<Vec<Message>, SqsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| self.classify("ReceiveMessage", e))?;
        Ok(out.messages.unwrap_or_default())
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
            .map_err(|e| self.classify("DeleteMessage", e))?;
        Ok(failed_items(receipts, &out.failed))
    }

    /// Sets the visibility of up to 10 receipts; returns the receipts that failed.
    pub async fn change_visibility(
        &self,
        receipts: &[String],
        seconds: i32,
    ) -> Result<Vec<String>, SqsError> {
        let entries = entries(receipts, |id, r| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(r)
                .visibility_timeout(seconds)
                .build()
        })?;
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.classify("ChangeMessageVisibility", e))?;
        Ok(failed_items(receipts, &out.failed))
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
            .map_err(|e| self.classify("CreateQueue", e))?;
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
            .map_err(|e| self.classify("SendMessage", e))?;
        if let Some(f) = out.failed.iter().find(|f| f.sender_fault) {
            return Err(SqsError::Service {
                code: f.code.clone(),
                message: f.message.clone().unwrap_or_default(),
            });
        }
        Ok(failed_items(bodies, &out.failed))
    }
}

/// An error code that AWS services answer for throttling or a timed-out request, whatever the
/// status (the SDK's own list, which its retries use: when they run out, these still pass).
fn passing_error(code: &str) -> bool {
    use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
    THROTTLING_ERRORS.contains(&code) || TRANSIENT_ERRORS.contains(&code)
}

/// True when the chain holds the credential provider's "no credentials" error.
fn credentials_missing(e: &(dyn std::error::Error + 'static)) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(CredentialsError::CredentialsNotLoaded(_)) = err.downcast_ref() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The innermost error of a chain ("Connection refused (os error 111)"): the SDK's own display
/// of a dispatch failure ends in a Debug dump of every layer.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
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
