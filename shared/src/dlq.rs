//! Dead-letter copies on `agentry.dlq.<reason>`: the original bytes and
//! headers plus `Agentry-Dlq-*` headers saying why and where from,
//! deduplicated by origin stream and sequence.

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;

use crate::event::header;
use crate::publish::{self, PublishError, Published};
use crate::reason::Reason;
use crate::subject;

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
    publish::acked(js, &subject::dlq(reason.as_str()), headers, payload).await
}
