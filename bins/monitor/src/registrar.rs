//! Registry events -> `agentry-agents`. Idempotent under redelivery and
//! with several replicas: every write is a compare-and-set on the record's
//! revision, and a record only moves forward (a stale heartbeat never
//! resurrects a deregistered agent).

use std::sync::Arc;
use std::time::Duration;

use agentry::consume::{self, Disposition, Pull, ready::ReadyError};
use agentry::event::{self, Limits, types};
use agentry::registry::{AgentRecord, Status};
use agentry::subject;
use async_nats::jetstream::{self, kv};
use cloudevents::AttributesReader;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::Monitor;

pub async fn run(
    mon: Arc<Monitor>,
    kv: kv::Store,
    pulse: agentry::http::Pulse,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let consumer = match consume::ready::consumer(
        &mon.js,
        subject::REGISTRY_STREAM,
        subject::REGISTRAR_CONSUMER,
        &shutdown,
    )
    .await
    {
        Ok(c) => c,
        Err(ReadyError::Cancelled { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // One event at a time, in order; a failed write is retried by redelivery.
    let work = TaskTracker::new();
    let js = mon.js.clone();
    Pull::new(js, consumer, pulse)
        .batch(256)
        .concurrency(1)
        .run(shutdown, work.clone(), move |msg, _permit| {
            let mon = mon.clone();
            let kv = kv.clone();
            async move {
                match apply(&mon, &kv, &msg).await {
                    Ok(()) => Disposition::Ack,
                    Err(e) => {
                        warn!(error = %e, "registry event not applied, retrying");
                        Disposition::Nak(Duration::from_millis(500))
                    }
                }
            }
        })
        .await;
    work.close();
    work.wait().await;
    Ok(())
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
