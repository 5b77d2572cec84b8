//! Expires agents that missed their heartbeats and purges old records.
//! The status change is a compare-and-set on the revision the sweep read,
//! so when several monitor replicas sweep at once exactly one wins, and only
//! the winner publishes `io.agentry.agent.expired`.

use std::sync::Arc;

use agentry::event::{self, types};
use agentry::publish;
use agentry::registry::{AgentRecord, Status};
use agentry::subject;
use async_nats::jetstream::kv;
use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Monitor;

pub async fn run(
    mon: Arc<Monitor>,
    kv: kv::Store,
    pulse: agentry::http::Pulse,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(mon.cfg.sweep_interval);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {
                pulse.beat();
                if let Err(e) = sweep(&mon, &kv).await {
                    warn!(error = %e, "registry sweep failed");
                }
            }
        }
    }
}

async fn sweep(mon: &Monitor, kv: &kv::Store) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut keys = kv.keys().await?;
    let mut counts: std::collections::HashMap<(String, &'static str), i64> = Default::default();
    while let Some(key) = keys.next().await {
        let key = key?;
        let Some(entry) = kv.entry(&key).await? else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let Ok(mut rec) = serde_json::from_slice::<AgentRecord>(&entry.value) else {
            continue;
        };
        match rec.status {
            Status::Live | Status::Draining if rec.is_stale(now, mon.cfg.missed_heartbeats) => {
                rec.status = Status::Expired;
                let body = serde_json::to_vec(&rec)?;
                if kv.update(&key, body.into(), entry.revision).await.is_ok() {
                    mon.metrics.expirations.inc();
                    info!(agent = %rec.id, last_heartbeat = %rec.last_heartbeat, "agent expired");
                    announce(mon, &rec).await;
                }
            }
            Status::Expired | Status::Deregistered => {
                let age = now - rec.last_heartbeat;
                if age
                    .to_std()
                    .map(|a| a > mon.cfg.purge_after)
                    .unwrap_or(false)
                {
                    // Purge keeps no history for the key; a racing replica's purge is harmless.
                    if let Err(e) = kv.purge(&key).await {
                        warn!(agent = %rec.id, error = %e, "purge failed");
                    }
                    continue;
                }
            }
            _ => {}
        }
        for cap in &rec.capabilities {
            *counts
                .entry((cap.clone(), rec.status.as_str()))
                .or_default() += 1;
        }
    }
    mon.metrics.agents.reset();
    for ((cap, status), n) in counts {
        mon.metrics
            .agents
            .with_label_values(&[cap.as_str(), status])
            .set(n);
    }
    Ok(())
}

async fn announce(mon: &Monitor, rec: &AgentRecord) {
    let Ok(id) = agentry::id::AgentId::new(rec.id.as_str()) else {
        return;
    };
    let Ok(data) = serde_json::to_value(rec) else {
        return;
    };
    let eid = uuid::Uuid::now_v7().simple().to_string();
    let ev = event::new_event(&eid, "/agentry/monitor", types::AGENT_EXPIRED, data);
    if let Err(e) = publish::event(
        &mon.js,
        &subject::registry(&id),
        &ev,
        &format!(
            "expired-{}-{}",
            rec.id,
            rec.last_heartbeat.timestamp_millis()
        ),
    )
    .await
    {
        warn!(error = %e, "expired event not published");
    }
}
