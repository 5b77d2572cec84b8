//! Rejections: a `request.rejected` result (where an id is readable), a DLQ
//! copy with the original bytes, a metric. Never a crash, never silence.

use agentry::event::{self, types};
use agentry::reason::Reason;
use agentry::reply::{self, Origin, Published};
use agentry::subject;
use async_nats::jetstream;
use tracing::{info, warn};

use crate::Engine;
use crate::intake::Rejection;

pub async fn reject(engine: &Engine, msg: &jetstream::Message, r: &Rejection) {
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
        match reply::publish_result(&engine.js, &to, &ev, &dedup).await {
            Ok(Published::DuplicateRefused) => engine.metrics.duplicates.inc(),
            Ok(Published::Stored) => {}
            Err(e) => warn!(error = %e, "rejection result not published"),
        }
    }
    // Benign duplicates are counted, not dead-lettered: the first result stands.
    if r.reason == Reason::Duplicate {
        return;
    }
    dead_letter(
        engine,
        msg,
        r.reason,
        &r.detail,
        r.id.as_ref().map(|i| i.as_str()),
        r.source.as_deref(),
    )
    .await;
}

pub async fn dead_letter(
    engine: &Engine,
    msg: &jetstream::Message,
    reason: Reason,
    detail: &str,
    id: Option<&str>,
    source: Option<&str>,
) {
    let (seq, attempts) = msg
        .info()
        .map(|i| (i.stream_sequence, i.delivered as u64))
        .unwrap_or((0, 1));
    let origin = Origin {
        subject: msg.subject.as_str(),
        stream: subject::REQUESTS_STREAM,
        stream_seq: seq,
        attempts,
        request_id: id,
        source,
    };
    match reply::dead_letter(
        &engine.js,
        reason,
        detail,
        &origin,
        msg.headers.as_ref(),
        msg.payload.clone(),
    )
    .await
    {
        Ok(_) => engine
            .metrics
            .dlq
            .with_label_values(&[reason.as_str()])
            .inc(),
        Err(e) => warn!(error = %e, "dead letter not written"),
    }
}
