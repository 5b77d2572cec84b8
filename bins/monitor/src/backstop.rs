//! DLQ backstop: a message whose deliveries reached `max_deliver` without
//! anyone seeing it fail (its worker crashed on every attempt) stays stored
//! in a work-queue stream. The server announces it with a max-deliveries
//! advisory; we copy the original to `AGENTRY_DLQ` (dedup id = stream +
//! sequence, the same id the runtime uses) and delete it from its stream.

use std::sync::Arc;
use std::time::Duration;

use agentry::reason::Reason;
use agentry::reply::{self, Origin};
use agentry::subject;
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Monitor;

#[derive(Debug, Deserialize)]
struct Advisory {
    stream: String,
    consumer: String,
    stream_seq: u64,
    #[serde(default)]
    deliveries: u64,
}

pub async fn run(mon: Arc<Monitor>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut sub = mon
        .client
        .subscribe(format!("{}.>", subject::MAX_DELIVERIES_ADVISORY))
        .await?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = sub.next() => match m { Some(m) => m, None => return Ok(()) },
        };
        let Ok(adv) = serde_json::from_slice::<Advisory>(&msg.payload) else {
            continue;
        };
        if !adv.stream.starts_with("AGENTRY_") || adv.stream == subject::DLQ_STREAM {
            continue;
        }
        // Let a runtime that is dead-lettering this delivery itself finish first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Err(e) = capture(&mon, &adv).await {
            warn!(error = %e, stream = %adv.stream, seq = adv.stream_seq, "backstop capture failed");
        }
    }
}

async fn capture(mon: &Monitor, adv: &Advisory) -> anyhow::Result<()> {
    // With stream info: `get_raw_message` then uses the right API for streams without direct get.
    let stream = mon.js.get_stream(&adv.stream).await?;
    let msg = match stream.get_raw_message(adv.stream_seq).await {
        Ok(m) => m,
        // Already gone: the worker terminated it (and dead-lettered it) itself.
        Err(_) => return Ok(()),
    };
    let request_id = msg.headers.get("ce-id").map(|v| v.as_str().to_owned());
    let origin = Origin {
        subject: msg.subject.as_str(),
        stream: &adv.stream,
        stream_seq: adv.stream_seq,
        attempts: adv.deliveries,
        request_id: request_id.as_deref(),
        source: None,
    };
    let detail = format!(
        "{} deliveries to consumer {} without an ack or a failure report (worker crashes?)",
        adv.deliveries, adv.consumer
    );
    reply::dead_letter(
        &mon.js,
        Reason::MaxDeliveries,
        &detail,
        &origin,
        Some(&msg.headers),
        msg.payload.clone(),
    )
    .await?;
    mon.metrics
        .dlq_entries
        .with_label_values(&[Reason::MaxDeliveries.as_str()])
        .inc();
    stream.delete_message(adv.stream_seq).await?;
    info!(stream = %adv.stream, seq = adv.stream_seq, "captured a message that exhausted max_deliver");
    Ok(())
}
