//! Fairness between tenants at a congested capability (docs/tenancy.md).
//!
//! Tasks wait in `AGENTRY_TASKS` in arrival order, so a tenant that floods a
//! capability puts everyone behind its backlog. The engine keeps that queue
//! short instead: while a capability's live queue (the `cap-<capability>`
//! consumer's pending plus unacknowledged tasks) is at or above
//! `fair_queue_depth`, a tenant's new tasks for it are *held* on
//! `agentry.held.<capability>.<tenant>` (stream `AGENTRY_HELD`) and the
//! request is acknowledged; a release loop moves held tasks into the live
//! queue as it drains, taking an equal share from every tenant with held
//! tasks in turn. A light tenant therefore waits behind at most about
//! `fair_queue_depth` tasks plus its share of one release round, however
//! deep another tenant's backlog is.
//!
//! Costs: while the queue is short (agents keep up) routing is unchanged
//! (one atomic read and add); only tasks that would have queued behind a
//! backlog take the detour (one more stored message and one more publish).
//! Untenanted requests and workflow step tasks are never held. A tenant's
//! tasks keep their order (once a tenant has held tasks, its new ones are
//! held behind them). Held messages are read by per-tenant durable
//! consumers without a delivery limit, so holding never dead-letters.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use agentry::id::Capability;
use agentry::subject::{self, Tenant};
use async_nats::jetstream::{self, AckKind, consumer};
use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Engine;

/// Pause between release rounds while tasks are held.
const BUSY_ROUND: Duration = Duration::from_millis(20);
/// Pause between depth samples while nothing is held.
const IDLE_ROUND: Duration = Duration::from_millis(100);
/// Pause after a failed round.
const FAILED_ROUND: Duration = Duration::from_secs(2);
/// A tenant held this recently stays held even if the listing missed it.
const RECENT: Duration = Duration::from_secs(1);
/// A held consumer unused this long is removed by the server.
const HELD_CONSUMER_IDLE: Duration = Duration::from_secs(3600);
/// How long the server holds one fetch of held tasks open. Set, so the
/// client gives up on a fetch whose answer was lost (the server restarted
/// while it was in flight) instead of waiting for it forever.
const FETCH_EXPIRES: Duration = Duration::from_secs(2);
/// Longest a release round may take before it is abandoned as failed: no
/// single lost reply can stop held tasks from being released. Tasks taken
/// by an abandoned round are redelivered after the held consumer's ack wait
/// and republished under the same message id.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// Fairness state shared by routing and the release loop.
pub(crate) struct Fair {
    /// Live queue depth at which tenants' tasks are held; 0 = off.
    limit: u64,
    /// The release loop works (`AGENTRY_HELD` exists and is readable):
    /// nothing is held until it does, so a deployment without the stream
    /// routes as before instead of failing requests.
    available: AtomicBool,
    caps: RwLock<HashMap<String, Arc<CapState>>>,
}

#[derive(Default)]
struct CapState {
    /// Live depth as last sampled, plus tasks routed live since.
    depth: AtomicU64,
    /// Tenants with held tasks for this capability, and when this replica
    /// last held one of theirs.
    held: Mutex<HashMap<String, Instant>>,
}

impl Fair {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            available: AtomicBool::new(false),
            caps: RwLock::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    fn state(&self, cap: &str) -> Option<Arc<CapState>> {
        if let Some(s) = self.caps.read().ok()?.get(cap) {
            return Some(s.clone());
        }
        let mut caps = self.caps.write().ok()?;
        Some(caps.entry(cap.to_owned()).or_default().clone())
    }

    /// Whether `tenant`'s next task for `cap` is to be held (else it goes
    /// live and is counted in the depth estimate).
    pub fn hold(&self, cap: &Capability, tenant: Option<&Tenant>) -> bool {
        let Some(t) = tenant.filter(|_| self.enabled()) else {
            return false;
        };
        if !self.available.load(Ordering::Relaxed) {
            return false;
        }
        let Some(state) = self.state(cap.as_str()) else {
            return false;
        };
        let Ok(mut held) = state.held.lock() else {
            return false;
        };
        if held.contains_key(t.as_str()) || state.depth.load(Ordering::Relaxed) >= self.limit {
            held.insert(t.to_string(), Instant::now());
            return true;
        }
        state.depth.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Samples live depths and releases held tasks until `shutdown`. Errors are
/// logged and the round is retried; never fails.
pub(crate) async fn release(engine: Arc<Engine>, shutdown: CancellationToken) {
    let mut consumers: HashMap<String, consumer::PullConsumer> = HashMap::new();
    let mut turn: usize = 0;
    let mut failures: u32 = 0;
    loop {
        let outcome = tokio::time::timeout(ROUND_LIMIT, round(&engine, &mut consumers, &mut turn))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("release round took over {ROUND_LIMIT:?}")));
        let pause = match outcome {
            Ok(busy) => {
                if failures > 0 {
                    info!("fair release working again");
                }
                failures = 0;
                engine.fair.available.store(true, Ordering::Relaxed);
                if busy { BUSY_ROUND } else { IDLE_ROUND }
            }
            Err(e) => {
                // Held tasks stay held; new ones route live meanwhile. The
                // consumer handles are looked up afresh next time.
                engine.fair.available.store(false, Ordering::Relaxed);
                consumers.clear();
                if failures == 0 {
                    warn!(error = %e, "fair release round failed (is AGENTRY_HELD set up?); held tasks wait, new tasks route unheld");
                }
                failures = failures.saturating_add(1);
                FAILED_ROUND
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One round: sample depths, find held tasks, release a fair share of the
/// room in each congested queue. `Ok(true)` while tasks are held.
async fn round(
    engine: &Engine,
    consumers: &mut HashMap<String, consumer::PullConsumer>,
    turn: &mut usize,
) -> anyhow::Result<bool> {
    let fair = &engine.fair;
    let held_stream = engine.js.get_stream_no_info(subject::HELD_STREAM).await?;
    // Which tenants have held tasks, per capability (any replica may have held them).
    let mut held: HashMap<String, Vec<(Tenant, u64)>> = HashMap::new();
    let mut subjects = held_stream.info_with_subjects(subject::HELD_ALL).await?;
    while let Some((subj, count)) = subjects.try_next().await? {
        if let Some((cap, tenant)) = subject::held_of(&subj)
            && count > 0
        {
            held.entry(cap.to_string())
                .or_default()
                .push((tenant, count as u64));
        }
    }
    for cap in held.keys() {
        fair.state(cap);
    }
    let caps: Vec<(String, Arc<CapState>)> = fair
        .caps
        .read()
        .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let tasks = engine.js.get_stream_no_info(subject::TASKS_STREAM).await?;
    *turn = turn.wrapping_add(1);
    for (cap, state) in caps {
        let Ok(capability) = Capability::new(cap.as_str()) else {
            continue;
        };
        let depth = match tasks
            .consumer_info(subject::task_consumer(&capability))
            .await
        {
            Ok(i) => i.num_pending + i.num_ack_pending as u64,
            Err(e) => {
                debug!(capability = %cap, error = %e, "queue depth not sampled");
                continue;
            }
        };
        state.depth.store(depth, Ordering::Relaxed);
        let mut tenants = held.remove(&cap).unwrap_or_default();
        if let Ok(mut h) = state.held.lock() {
            // Forget tenants with nothing left held, except those held here
            // just now (their publish may postdate the listing).
            let listed: HashSet<&str> = tenants.iter().map(|(t, _)| t.as_str()).collect();
            h.retain(|t, at| listed.contains(t.as_str()) || at.elapsed() < RECENT);
        }
        if tenants.is_empty() || depth >= fair.limit {
            continue;
        }
        // An equal share of the room for every tenant, starting with a
        // different one each round.
        tenants.sort_by(|a, b| a.0.cmp(&b.0));
        let n = tenants.len();
        tenants.rotate_left(*turn % n);
        let room = fair.limit - depth;
        let share = (room / n as u64).max(1);
        for (tenant, count) in tenants {
            let want = share.min(count);
            let moved = release_some(engine, consumers, &held_stream, &capability, &tenant, want)
                .await
                .unwrap_or_else(|e| {
                    warn!(capability = %cap, tenant = %tenant, error = %e, "held tasks not released");
                    0
                });
            state.depth.fetch_add(moved, Ordering::Relaxed);
            engine
                .metrics
                .fair_tasks
                .with_label_values(&[cap.as_str(), "released"])
                .inc_by(moved);
        }
    }
    Ok(fair
        .caps
        .read()
        .map(|c| {
            c.values()
                .any(|s| s.held.lock().map(|h| !h.is_empty()).unwrap_or(false))
        })
        .unwrap_or(false))
}

/// Moves up to `want` of `tenant`'s held tasks for `cap` into the live
/// queue: publish (same headers, so the same message id), then ack the held
/// copy; a failed publish leaves it held (nak) for a later round.
async fn release_some(
    engine: &Engine,
    consumers: &mut HashMap<String, consumer::PullConsumer>,
    held_stream: &jetstream::stream::Stream<()>,
    cap: &Capability,
    tenant: &Tenant,
    want: u64,
) -> anyhow::Result<u64> {
    let name = subject::held_consumer(cap, tenant);
    let consumer = match consumers.get(&name) {
        Some(c) => c.clone(),
        None => {
            let c: consumer::PullConsumer = held_stream
                .get_or_create_consumer(
                    &name,
                    consumer::pull::Config {
                        durable_name: Some(name.clone()),
                        description: Some(format!("Held {cap} tasks of tenant {tenant}")),
                        filter_subject: subject::held(cap, tenant),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(30),
                        // Holding must never dead-letter a task.
                        max_deliver: -1,
                        inactive_threshold: HELD_CONSUMER_IDLE,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            consumers.insert(name.clone(), c.clone());
            c
        }
    };
    let batch = usize::try_from(want).unwrap_or(usize::MAX).clamp(1, 1000);
    let mut messages = consumer
        .fetch()
        .expires(FETCH_EXPIRES)
        .max_messages(batch)
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let live = subject::tasks(cap);
    let mut pending = Vec::new();
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("{e}"))?;
        let headers = msg.headers.clone().unwrap_or_default();
        let ack = engine
            .js
            .publish_with_headers(live.clone(), headers, msg.payload.clone())
            .await;
        pending.push((msg, ack));
    }
    let mut moved = 0;
    for (msg, ack) in pending {
        let stored = match ack {
            Ok(a) => a.await.is_ok(),
            Err(_) => false,
        };
        let kind = if stored {
            moved += 1;
            AckKind::Ack
        } else {
            AckKind::Nak(Some(Duration::from_millis(500)))
        };
        if let Err(e) = msg.ack_with(kind).await {
            // A held copy whose ack is lost is released again: the live
            // queue drops the repeat (same message id).
            debug!(error = %e, "held ack failed");
        }
    }
    Ok(moved)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Holding starts at the depth limit, only for tenants, only once the
    /// release loop works; a tenant with held tasks stays held (its order).
    #[test]
    fn hold_decisions() {
        let echo = Capability::new("echo").unwrap();
        let (acme, globex) = (Tenant::new("acme").unwrap(), Tenant::new("globex").unwrap());
        let off = Fair::new(0);
        off.available.store(true, Ordering::Relaxed);
        assert!(!off.hold(&echo, Some(&acme)));

        let fair = Fair::new(3);
        // Not available yet (no successful release round): never held.
        for _ in 0..5 {
            assert!(!fair.hold(&echo, Some(&acme)));
        }
        let fair = Fair::new(3);
        fair.available.store(true, Ordering::Relaxed);
        for _ in 0..3 {
            assert!(!fair.hold(&echo, Some(&acme)));
        }
        // Three routed live: the queue is at the limit.
        assert!(fair.hold(&echo, Some(&acme)));
        assert!(fair.hold(&echo, Some(&globex)));
        // Untenanted tasks are never held.
        assert!(!fair.hold(&echo, None));
        // The queue drains: tenants with held tasks stay held, others go live.
        let state = fair.state("echo").unwrap();
        state.depth.store(0, Ordering::Relaxed);
        assert!(fair.hold(&echo, Some(&acme)));
        state.held.lock().unwrap().clear();
        assert!(!fair.hold(&echo, Some(&acme)));
        // Another capability has its own depth.
        let other = Capability::new("weather").unwrap();
        assert!(!fair.hold(&other, Some(&acme)));
    }
}
