//! The one dead-letter path: copy a message to `agentry.dlq.<reason>`
//! (original bytes and headers, [`crate::dlq`]), count it, and report
//! whether the copy is stored. A caller lets a message go only when it is
//! ([`Disposition::DeadLetter`](super::Disposition::DeadLetter) does this
//! for [`super::Pull`]): a copy that could not be stored means NAK, so
//! nothing is lost.

use async_nats::jetstream;
use prometheus::IntCounterVec;
use tracing::warn;

use crate::dlq::{self, Origin};
use crate::reason::Reason;

/// Why a message is dead-lettered, and what could be read of it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: Reason,
    pub detail: String,
    pub request_id: Option<String>,
    pub source: Option<String>,
}

impl DeadLetter {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            request_id: None,
            source: None,
        }
    }

    pub fn request(mut self, id: Option<&str>, source: Option<&str>) -> Self {
        self.request_id = id.map(str::to_owned);
        self.source = source.map(str::to_owned);
        self
    }
}

/// Copies `msg` to the DLQ, counting it in `counter` (labelled by reason);
/// `false` when the copy is not stored (the caller keeps the message).
pub async fn record(
    js: &jetstream::Context,
    msg: &jetstream::Message,
    dl: &DeadLetter,
    counter: Option<&IntCounterVec>,
) -> bool {
    // The stream and sequence it came from make the copy's dedup id.
    let (stream, seq, attempts) = msg
        .info()
        .map(|i| (i.stream.to_owned(), i.stream_sequence, i.delivered as u64))
        .unwrap_or_else(|_| (String::new(), 0, 1));
    let origin = Origin {
        subject: msg.subject.as_str(),
        stream: &stream,
        stream_seq: seq,
        attempts,
        request_id: dl.request_id.as_deref(),
        source: dl.source.as_deref(),
    };
    match dlq::dead_letter(
        js,
        dl.reason,
        &dl.detail,
        &origin,
        msg.headers.as_ref(),
        msg.payload.clone(),
    )
    .await
    {
        Ok(_) => {
            if let Some(c) = counter {
                c.with_label_values(&[dl.reason.as_str()]).inc();
            }
            true
        }
        Err(e) => {
            warn!(error = %crate::error::Chain(&e), reason = %dl.reason, "dead letter not stored; the message is kept");
            false
        }
    }
}
