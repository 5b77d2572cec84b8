//! Rejections: a `request.rejected` result (where an id is readable), a DLQ
//! copy with the original bytes, a metric. Never a crash, never silence:
//! [`reject`] says whether both were recorded, and a request whose rejection
//! could not be recorded is kept (NAK with delay) and rejected again later.

use agentry::consume::{self, DeadLetter, dead_letter};
use agentry::event::{self, types};
use agentry::publish::{self, Published};
use agentry::reason::Reason;
use agentry::subject;
use async_nats::jetstream;
use tracing::{info, warn};

use crate::Engine;
use crate::validate::{Arrived, Rejection};

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
    let dl = DeadLetter::new(r.reason, r.detail.as_str())
        .request(r.id.as_ref().map(|i| i.as_str()), r.source.as_deref());
    if r.reason != Reason::Duplicate
        && !dead_letter::record(&engine.js, msg, &dl, Some(&engine.metrics.dlq)).await
    {
        return false;
    }
    // The result goes where the client waits: the tenant comes from the
    // subject the request arrived on; a subject naming no valid tenant gets
    // no result (it can only come from a service role), only the DLQ copy.
    if let (Some(id), Arrived::Under(tenant)) = (&r.id, &r.arrived) {
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
        crate::Disposition::Nak(consume::record_retry(msg))
    }
}
