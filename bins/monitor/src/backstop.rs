//! DLQ backstop: a message whose deliveries reached `max_deliver` without
//! anyone recording its outcome stays stored in a work-queue stream. The
//! agent runtime records the outcome itself on a task's last delivery (the
//! attempt-limit rule, docs/reliability.md), so this is the second line: the
//! server announces the exhausted message with a max-deliveries advisory; we
//! copy the original to `AGENTRY_DLQ` (dedup id = stream + sequence, the same
//! id the runtime uses), answer a task with a terminal `task.failed` on its
//! reply subject (first result wins), and delete it from its stream.
//!
//! Advisories are handled concurrently (at most [`CONCURRENCY`] at once),
//! each capture retried with backoff while its message is still stored.

use std::sync::Arc;
use std::time::Duration;

use agentry::dlq::{self, Origin};
use agentry::event::{self, ext, types};
use agentry::publish;
use agentry::reason::Reason;
use agentry::subject;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::Monitor;

/// Advisories captured at once.
const CONCURRENCY: usize = 16;
/// Tries per capture before giving up (the message then stays stored and
/// `agentry dlq` / the depth gauges show it).
const TRIES: u32 = 6;

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
    let sem = Arc::new(Semaphore::new(CONCURRENCY));
    let work = TaskTracker::new();
    loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            m = sub.next() => match m { Some(m) => m, None => break },
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
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            p = sem.clone().acquire_owned() => p?,
        };
        let mon = mon.clone();
        let stop = shutdown.clone();
        // Owned by `work`, awaited below; errors are retried, then logged.
        work.spawn(async move {
            capture_with_retries(&mon, &adv, &stop).await;
            drop(permit);
        });
    }
    work.close();
    work.wait().await;
    Ok(())
}

async fn capture_with_retries(mon: &Monitor, adv: &Advisory, stop: &CancellationToken) {
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=TRIES {
        match capture(mon, adv).await {
            Ok(()) => return,
            Err(e) if attempt == TRIES => {
                warn!(error = %format!("{e:#}"), stream = %adv.stream, seq = adv.stream_seq, "backstop capture failed; the message stays stored");
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), stream = %adv.stream, seq = adv.stream_seq, attempt, "backstop capture failed, retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
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
    dlq::dead_letter(
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
    if adv.stream == subject::TASKS_STREAM {
        answer_task(mon, &msg.headers, adv).await?;
    }
    let stream = mon.js.get_stream_no_info(&adv.stream).await?;
    stream.delete_message(adv.stream_seq).await?;
    info!(stream = %adv.stream, seq = adv.stream_seq, "captured a message that exhausted max_deliver");
    Ok(())
}

/// The value of binary-mode CloudEvent attribute `name` (`ce-<name>`).
fn ce<'a>(headers: &'a async_nats::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(format!("ce-{name}").as_str())
        .map(|v| v.as_str())
}

/// Answers an exhausted task on its reply subject with `task.failed`
/// (first result wins: an agent that answered first keeps its answer).
async fn answer_task(
    mon: &Monitor,
    headers: &async_nats::HeaderMap,
    adv: &Advisory,
) -> anyhow::Result<()> {
    let Some(replyto) = ce(headers, ext::REPLYTO) else {
        return Ok(());
    };
    if !subject::is_allowed_reply(replyto) {
        return Ok(());
    }
    let request_id = ce(headers, "id").unwrap_or_default();
    let id = uuid::Uuid::now_v7().simple().to_string();
    let mut ev = event::Outbound::new(&id, "/agentry/monitor", types::TASK_FAILED);
    ev.extension(ext::REQUESTID, request_id);
    for name in [
        ext::TRACEPARENT,
        ext::RUNID,
        ext::STEPID,
        ext::ATTEMPT,
        ext::TENANT,
    ] {
        if let Some(v) = ce(headers, name) {
            ev.extension(name, v);
        }
    }
    let capability = adv.consumer.strip_prefix("cap-").unwrap_or(&adv.consumer);
    let data = serde_json::json!({
        "request_id": request_id,
        "capability": capability,
        "attempts": adv.deliveries,
        "error": publish::error_object(
            "retries_exhausted",
            &format!("{} deliveries without an outcome (worker crashes?)", adv.deliveries),
            false,
        ),
    });
    let dedup = format!("backstop-{}-{}", adv.stream, adv.stream_seq);
    publish::outbound(&mon.js, replyto, ev, &data, &dedup).await?;
    Ok(())
}
