//! Rejections: a `request.rejected` result (where an id is readable), a DLQ
//! copy with the original bytes, a metric. Never a crash, never silence:
//! [`reject`] says whether both were recorded, and a request whose rejection
//! could not be recorded is kept (NAK with delay) and rejected again later.

use agentry::dlq::{self, Origin};
use agentry::event::{self, types};
use agentry::publish::{self, Published};
use agentry::reason::Reason;
use agentry::subject;
use async_nats::jetstream;
use tracing::{info, warn};

use crate::Engine;
use crate::validate::Rejection;

/// Records the rejection of `msg`; `false` when its result or its DLQ copy
/// could not be written (the caller keeps the message).
pub async fn reject(engine: &Engine, msg: &jetstream::Message, r: &Rejection) -> bool {
    engine
        .metrics
        .rejections
        .with_label_values(&[r.reason.as_str()])
        .inc();
    engine
        .metrics
        .requests
        .with_label_values(&["other", "rejected"])
        .inc();
    info!(reason = %r.reason, id = ?r.id.as_ref().map(|i| i.as_str()), source = ?r.source, detail = %r.detail, "request rejected");
    // Dead letter first: a stored rejection then implies a stored DLQ copy
    // (a redelivery finding the result answers from it, answered.rs).
    // Benign duplicates are counted, not dead-lettered: the first result stands.
    if r.reason != Reason::Duplicate
        && !dead_letter(
            engine,
            msg,
            r.reason,
            &r.detail,
            r.id.as_ref().map(|i| i.as_str()),
            r.source.as_deref(),
        )
        .await
    {
        return false;
    }
    // The result goes where the client waits: the tenant comes from the
    // subject the request arrived on; a subject naming no valid tenant gets
    // no result (it can only come from a service role), only the DLQ copy.
    let tenant = subject::tenant_of_request(msg.subject.as_str());
    if let (Some(id), Ok(tenant)) = (&r.id, &tenant) {
        let data = serde_json::json!({"request_id": id, "reason": r.reason, "detail": r.detail});
        let eid = uuid::Uuid::now_v7().simple().to_string();
        let ev = event::new_event(&eid, "/agentry/engine", types::REQUEST_REJECTED, data);
        let to = subject::results_for(tenant.as_ref(), id);
        let dedup = format!("rej-{}", subject::request_key(tenant.as_ref(), id));
        match publish::event(&engine.js, &to, &ev, &dedup).await {
            Ok(Published::DuplicateRefused) => engine.metrics.duplicates.inc(),
            Ok(Published::Stored) => {}
            Err(e) => {
                warn!(error = %e, "rejection result not published; the request is kept");
                return false;
            }
        }
    }
    true
}

/// Copies `msg` to the DLQ; `false` when the copy was not stored.
pub async fn dead_letter(
    engine: &Engine,
    msg: &jetstream::Message,
    reason: Reason,
    detail: &str,
    id: Option<&str>,
    source: Option<&str>,
) -> bool {
    // The stream it came from: requests, step results or timers.
    let (stream, seq, attempts) = msg
        .info()
        .map(|i| (i.stream.to_owned(), i.stream_sequence, i.delivered as u64))
        .unwrap_or_else(|_| (subject::REQUESTS_STREAM.to_owned(), 0, 1));
    let origin = Origin {
        subject: msg.subject.as_str(),
        stream: &stream,
        stream_seq: seq,
        attempts,
        request_id: id,
        source,
    };
    match dlq::dead_letter(
        &engine.js,
        reason,
        detail,
        &origin,
        msg.headers.as_ref(),
        msg.payload.clone(),
    )
    .await
    {
        Ok(_) => {
            engine
                .metrics
                .dlq
                .with_label_values(&[reason.as_str()])
                .inc();
            true
        }
        Err(e) => {
            warn!(error = %e, "dead letter not written");
            false
        }
    }
}

/// How long a message whose outcome could not be recorded waits before it
/// is redelivered: grows with its delivery count (1 s, 2 s, 4 s, ... 8 s)
/// so a short NATS outage is outlasted within the consumer's `max_deliver`.
pub fn record_retry(msg: &jetstream::Message) -> std::time::Duration {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1).clamp(1, 4);
    std::time::Duration::from_secs(1 << (delivered - 1))
}

/// The disposition of a message after [`reject`] (or a DLQ copy): ack when
/// recorded, else keep it.
pub fn settle(
    msg: &jetstream::Message,
    recorded: bool,
    done: crate::Disposition,
) -> crate::Disposition {
    if recorded {
        done
    } else {
        crate::Disposition::Nak(record_retry(msg))
    }
}
