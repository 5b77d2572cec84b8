//! Publishing terminal results and dead letters.
//!
//! Results: every writer of `agentry.results.<id>` publishes with
//! `Nats-Expected-Last-Subject-Sequence: 0`, so the first terminal result
//! wins and later ones are refused (and counted), never duplicated. That
//! check already absorbs a retried publish, so results carry no
//! `Nats-Msg-Id`: the server keeps no deduplication entry per result
//! (docs/performance.md). Other subjects (step results, facts) keep it.
//! Dead letters: original bytes and headers plus `Agentry-Dlq-*` headers,
//! deduplicated by stream and sequence.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use cloudevents::Event;

use crate::event::{self, Mode, header};
use crate::reason::Reason;
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
    #[error("publish to {subject} failed: {detail}")]
    Nats { subject: String, detail: String },
}

impl PublishError {
    /// `true` when retrying later may succeed (server down, stream full).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Nats { .. })
    }
}

/// Publishes a result (or step result) event to `subject`, awaiting the PubAck.
/// On `agentry.results.*` only the first result per subject is stored.
pub async fn publish_result(
    js: &jetstream::Context,
    subject: &str,
    event: &Event,
    dedup_id: &str,
) -> Result<Published, PublishError> {
    let (mut headers, body) = event::encode(event, Mode::Binary)?;
    if subject.starts_with(subject::RESULTS_PREFIX) {
        headers.insert(header::EXPECTED_LAST_SUBJECT_SEQ, "0");
    } else {
        headers.insert(header::MSG_ID, dedup_id);
    }
    publish_acked(js, subject, headers, body).await
}

/// [`publish_result`] for an event built with [`event::Outbound`].
pub async fn publish_outbound(
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
    publish_acked(js, subject, headers, body).await
}

/// Publishes with headers and waits for JetStream's ack; "wrong last
/// sequence" is reported as [`Published::DuplicateRefused`].
pub async fn publish_acked(
    js: &jetstream::Context,
    subject: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Published, PublishError> {
    let err = |detail: String| PublishError::Nats {
        subject: subject.to_owned(),
        detail,
    };
    let ack = js
        .publish_with_headers(subject.to_owned(), headers, body)
        .await
        .map_err(|e| err(e.to_string()))?;
    match ack.await {
        Ok(_) => Ok(Published::Stored),
        Err(e) if matches!(e.kind(), PublishErrorKind::WrongLastSequence) => {
            Ok(Published::DuplicateRefused)
        }
        Err(e) => {
            let text = e.to_string();
            if text.contains("10071") || text.contains("wrong last sequence") {
                Ok(Published::DuplicateRefused)
            } else {
                Err(err(text))
            }
        }
    }
}

/// Where a dead letter came from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub subject: &'a str,
    pub stream: &'a str,
    pub stream_seq: u64,
    pub attempts: u64,
    pub request_id: Option<&'a str>,
    pub source: Option<&'a str>,
}

/// Copies a message to `agentry.dlq.<reason>` with its original headers and bytes.
pub async fn dead_letter(
    js: &jetstream::Context,
    reason: Reason,
    detail: &str,
    origin: &Origin<'_>,
    original_headers: Option<&HeaderMap>,
    payload: Bytes,
) -> Result<Published, PublishError> {
    let mut headers = HeaderMap::new();
    if let Some(h) = original_headers {
        for (name, values) in h.iter() {
            let n: &str = name.as_ref();
            if n.starts_with("Nats-") {
                continue;
            }
            for v in values {
                headers.append(n, v.as_str());
            }
        }
    }
    let detail: String = detail
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect();
    headers.insert(header::DLQ_REASON, reason.as_str());
    headers.insert(header::DLQ_DETAIL, detail.as_str());
    headers.insert(header::DLQ_SUBJECT, origin.subject);
    headers.insert(header::DLQ_STREAM, origin.stream);
    headers.insert(header::DLQ_SEQ, origin.stream_seq.to_string().as_str());
    headers.insert(header::DLQ_ATTEMPTS, origin.attempts.to_string().as_str());
    if let Some(id) = origin.request_id {
        headers.insert(header::DLQ_REQUEST_ID, id);
    }
    if let Some(src) = origin.source {
        let src: String = src
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(256)
            .collect();
        headers.insert(header::DLQ_SOURCE, src.as_str());
    }
    let dedup = if origin.stream_seq > 0 {
        format!("dlq-{}-{}", origin.stream, origin.stream_seq)
    } else {
        format!("dlq-{}", uuid::Uuid::now_v7().simple())
    };
    headers.insert(header::MSG_ID, dedup.as_str());
    publish_acked(js, &subject::dlq(reason.as_str()), headers, payload).await
}

/// A `*.failed` / `request.rejected` style error object.
pub fn error_object(code: &str, message: &str, retryable: bool) -> serde_json::Value {
    serde_json::json!({"code": code, "message": message, "retryable": retryable})
}
