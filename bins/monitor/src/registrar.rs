//! Registry events -> `agentry-agents`. Idempotent under redelivery and
//! with several replicas: every write is a compare-and-set on the record's
//! revision, and a record only moves forward (a stale heartbeat never
//! resurrects a deregistered agent).

use std::sync::Arc;
use std::time::Duration;

use agentry::event::{self, Limits, types};
use agentry::registry::{AgentRecord, Status};
use agentry::subject;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer, kv};
use cloudevents::AttributesReader;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Monitor;

pub async fn run(
    mon: Arc<Monitor>,
    kv: kv::Store,
    pulse: agentry::http::Pulse,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let consumer: PullConsumer = loop {
        let res = async {
            let st = mon.js.get_stream_no_info(subject::REGISTRY_STREAM).await?;
            st.get_consumer(subject::REGISTRAR_CONSUMER)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
        .await;
        match res {
            Ok(c) => break c,
            Err(e) => {
                warn!(error = %e, "registrar consumer not available yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(256)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
        {
            Ok(m) => pulse.track(m),
            Err(e) => {
                warn!(error = %e, "registrar pull failed, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = messages.next() => m,
            };
            match next {
                Some(Ok(msg)) => {
                    let kind = match apply(&mon, &kv, &msg).await {
                        Ok(()) => AckKind::Ack,
                        Err(e) => {
                            warn!(error = %e, "registry event not applied, retrying");
                            AckKind::Nak(Some(Duration::from_millis(500)))
                        }
                    };
                    if let Err(e) = msg.ack_with(kind).await {
                        warn!(error = %e, "registrar ack failed");
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %e, "registrar pull error");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                None => break,
            }
        }
    }
}

async fn apply(mon: &Monitor, kv: &kv::Store, msg: &jetstream::Message) -> anyhow::Result<()> {
    mon.metrics.heartbeats.inc();
    let decoded = match event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()) {
        Ok(d) => d.event,
        Err(e) => {
            warn!(error = %e, subject = %msg.subject, "ignoring malformed registry message");
            return Ok(());
        }
    };
    let ty = decoded.ty().to_owned();
    let mut rec: AgentRecord = match event::data_json(&decoded)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
    {
        Some(r) => r,
        None => {
            warn!(subject = %msg.subject, "ignoring registry event without a valid agent record");
            return Ok(());
        }
    };
    if agentry::id::AgentId::new(rec.id.as_str()).is_err()
        || msg.subject.as_str() != format!("{}.{}", subject::REGISTRY_PREFIX, rec.id)
    {
        warn!(subject = %msg.subject, "registry event id does not match its subject, ignoring");
        return Ok(());
    }
    rec.status = match ty.as_str() {
        types::AGENT_DEREGISTERED => Status::Deregistered,
        types::AGENT_EXPIRED => Status::Expired,
        _ => rec.status,
    };
    // The server's timestamp, not the agent's clock.
    if ty != types::AGENT_EXPIRED {
        rec.last_heartbeat = agentry::agent::runtime::server_time(msg);
    }
    for _ in 0..5 {
        let current = kv.entry(&rec.id).await?;
        let (revision, existing) = match &current {
            Some(e) if e.operation == kv::Operation::Put => (
                e.revision,
                serde_json::from_slice::<AgentRecord>(&e.value).ok(),
            ),
            Some(e) => (e.revision, None),
            None => (0, None),
        };
        if let Some(old) = &existing {
            if !moves_forward(old, &rec, &ty) {
                debug!(agent = %rec.id, event = %ty, "stale registry event ignored");
                return Ok(());
            }
            if ty == types::AGENT_EXPIRED {
                // The sweep already wrote `expired`; keep its record.
                return Ok(());
            }
        }
        let body = serde_json::to_vec(&rec)?;
        let res = if revision == 0 {
            kv.create(&rec.id, body.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            kv.update(&rec.id, body.into(), revision)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        match res {
            Ok(()) => return Ok(()),
            Err(e) => debug!(agent = %rec.id, error = %e, "registry write lost a race, retrying"),
        }
    }
    anyhow::bail!("could not write record {} after 5 attempts", rec.id)
}

/// Whether `new` (from event `ty`) may replace `old`.
fn moves_forward(old: &AgentRecord, new: &AgentRecord, ty: &str) -> bool {
    match old.status {
        Status::Deregistered => false,
        Status::Expired => {
            ty == types::AGENT_HEARTBEAT
                || ty == types::AGENT_REGISTERED
                || ty == types::AGENT_DEREGISTERED
        }
        _ => new.last_heartbeat >= old.last_heartbeat || ty == types::AGENT_DEREGISTERED,
    }
}
