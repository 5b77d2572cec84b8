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
        // Results are the record, not work: a result the security monitor's
        // `security-results` consumer failed to ack is never deleted.
        if !adv.stream.starts_with("AGENTRY_")
            || adv.stream == subject::DLQ_STREAM
            || adv.stream == subject::RESULTS_STREAM
        {
            continue;
        }
        // Let a runtime that is dead-lettering this delivery itself finish first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Err(e) = capture(&mon, &adv).await {
            warn!(error = %e, stream = %adv.stream, seq = adv.stream_seq, "backstop capture failed");
        }
    }
}

/// A stored message read through the raw JetStream API, so that a message
/// the client library cannot parse (e.g. invalid UTF-8 in a header, which
/// makes async-nats drop its connection) can still be captured.
struct RawStored {
    subject: String,
    headers: async_nats::HeaderMap,
    /// The header block when it is not valid UTF-8 (kept base64 in the DLQ).
    raw_headers: Option<String>,
    payload: bytes::Bytes,
}

async fn get_raw(mon: &Monitor, stream: &str, seq: u64) -> anyhow::Result<Option<RawStored>> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = serde_json::to_vec(&serde_json::json!({"seq": seq}))?;
    let reply = mon
        .client
        .request(format!("$JS.API.STREAM.MSG.GET.{stream}"), body.into())
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    if let Some(err) = v.get("error") {
        // 10037: no message found — the worker terminated it (and dead-lettered it) itself.
        if err["err_code"].as_u64() == Some(10037) || err["code"].as_u64() == Some(404) {
            return Ok(None);
        }
        anyhow::bail!("message get failed: {err}");
    }
    let m = &v["message"];
    let subject = m["subject"].as_str().unwrap_or_default().to_owned();
    let payload = b64.decode(m["data"].as_str().unwrap_or_default())?;
    let hdr_bytes = b64.decode(m["hdrs"].as_str().unwrap_or_default())?;
    let mut headers = async_nats::HeaderMap::new();
    let mut raw_headers = None;
    match std::str::from_utf8(&hdr_bytes) {
        Ok(text) => {
            for line in text.lines().skip(1) {
                if let Some((k, val)) = line.split_once(':')
                    && !k.trim().is_empty()
                {
                    headers.append(k.trim(), val.trim());
                }
            }
        }
        Err(_) => raw_headers = Some(b64.encode(&hdr_bytes)),
    }
    Ok(Some(RawStored {
        subject,
        headers,
        raw_headers,
        payload: payload.into(),
    }))
}

async fn capture(mon: &Monitor, adv: &Advisory) -> anyhow::Result<()> {
    let Some(msg) = get_raw(mon, &adv.stream, adv.stream_seq).await? else {
        return Ok(());
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
    let mut headers = msg.headers.clone();
    let mut detail = format!(
        "{} deliveries to consumer {} without an ack or a failure report (worker crashes?)",
        adv.deliveries, adv.consumer
    );
    if let Some(raw) = &msg.raw_headers {
        headers.insert(agentry::event::header::DLQ_HEADERS, raw.as_str());
        detail
            .push_str("; its header block is not valid UTF-8 (kept base64 in Agentry-Dlq-Headers)");
    }
    reply::dead_letter(
        &mon.js,
        Reason::MaxDeliveries,
        &detail,
        &origin,
        Some(&headers),
        msg.payload.clone(),
    )
    .await?;
    mon.metrics
        .dlq_entries
        .with_label_values(&[Reason::MaxDeliveries.as_str()])
        .inc();
    let stream = mon.js.get_stream_no_info(&adv.stream).await?;
    stream.delete_message(adv.stream_seq).await?;
    info!(stream = %adv.stream, seq = adv.stream_seq, "captured a message that exhausted max_deliver");
    Ok(())
}
