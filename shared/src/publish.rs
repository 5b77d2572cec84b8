//! Acked publishes of events: terminal results, step results, registry
//! records (registrations, heartbeats) and facts. Dead-letter copies use
//! [`acked`] from [`crate::dlq`].
//!
//! Results: every writer of `agentry.results.<id>` publishes with
//! `Nats-Expected-Last-Subject-Sequence: 0`, so the first terminal result
//! wins and later ones are refused (and counted), never duplicated. That
//! check already absorbs a retried publish, so results carry no
//! `Nats-Msg-Id`: the server keeps no deduplication entry per result
//! (docs/performance.md). Other subjects (step results, facts) keep it.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, ErrorCode, context::PublishErrorKind};
use bytes::Bytes;
use cloudevents::Event;

use crate::event::{self, Mode, header};
use crate::subject;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Stored,
    /// A result for this request id already existed; ours was refused.
    DuplicateRefused,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("encode: {0}")]
    Encode(#[from] event::EncodeError),
    #[error("serialize")]
    Serialize(#[from] serde_json::Error),
    #[error("no subject for {key:?}")]
    Subject {
        key: String,
        #[source]
        source: crate::id::IdError,
    },
    #[error("publish to {subject} failed")]
    Nats {
        subject: String,
        #[source]
        source: jetstream::context::PublishError,
    },
}

impl PublishError {
    /// `true` when retrying later may succeed (server down, stream full).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Nats { .. })
    }
}

/// The JetStream error code the server refused a publish with, if any.
pub fn refusal_code(e: &jetstream::context::PublishError) -> Option<ErrorCode> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(|j| j.error_code())
}

/// `true` when the stream refused a publish because it is at its limits
/// (messages or bytes with discard `new`: 10077; account or server
/// resources: 10023).
pub fn stream_full(e: &jetstream::context::PublishError) -> bool {
    matches!(
        refusal_code(e),
        Some(ErrorCode::STREAM_STORE_FAILED | ErrorCode::INSUFFICIENT_RESOURCES)
    )
}

/// Publishes `ev` to `subject` in binary mode, awaiting the PubAck. On
/// `agentry.results.*` only the first result per subject is stored; other
/// subjects are deduplicated by `dedup_id`.
pub async fn event(
    js: &jetstream::Context,
    subject: &str,
    ev: &Event,
    dedup_id: &str,
) -> Result<Published, PublishError> {
    let (mut headers, body) = event::encode(ev, Mode::Binary)?;
    if subject.starts_with(subject::RESULTS_PREFIX) {
        headers.insert(header::EXPECTED_LAST_SUBJECT_SEQ, "0");
    } else {
        headers.insert(header::MSG_ID, dedup_id);
    }
    acked(js, subject, headers, body).await
}

/// [`event`] for an event built with [`event::Outbound`].
pub async fn outbound(
    js: &jetstream::Context,
    subject: &str,
    mut event: event::Outbound,
    data: &(impl serde::Serialize + ?Sized),
    dedup_id: &str,
) -> Result<Published, PublishError> {
    if subject.starts_with(subject::RESULTS_PREFIX) {
        event.header(header::EXPECTED_LAST_SUBJECT_SEQ, "0");
    } else {
        event.header(header::MSG_ID, dedup_id);
    }
    let (headers, body) = event.finish(data)?;
    acked(js, subject, headers, body).await
}

/// Publishes with headers and waits for JetStream's ack; "wrong last
/// sequence" is reported as [`Published::DuplicateRefused`].
pub async fn acked(
    js: &jetstream::Context,
    subject: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Published, PublishError> {
    let err = |source| PublishError::Nats {
        subject: subject.to_owned(),
        source,
    };
    let ack = js
        .publish_with_headers(subject.to_owned(), headers, body)
        .await
        .map_err(err)?;
    match ack.await {
        Ok(_) => Ok(Published::Stored),
        // Err code 10071: the subject already holds a message.
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
            Ok(Published::DuplicateRefused)
        }
        Err(e) => Err(err(e)),
    }
}

/// A `*.failed` / `request.rejected` style error object.
pub fn error_object(code: &str, message: &str, retryable: bool) -> serde_json::Value {
    serde_json::json!({"code": code, "message": message, "retryable": retryable})
}
