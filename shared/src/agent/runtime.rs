//! Hosts agents: one instance per agent with its own id, registration,
//! heartbeats, `$SRV` service and pull loops on its capabilities' consumers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::context::{Context, Shared};
use super::metrics::Metrics;
use super::worker::{self, Instance};
use super::{Agent, service};
use crate::config;
use crate::consume::Pull;
use crate::event::{self, types};
use crate::http::Observer;
use crate::id::{AgentId, Capability};
use crate::publish;
use crate::registry::{AgentRecord, Status};
use crate::retry;
use crate::subject;
use crate::telemetry::{self, ConnectionMetrics};
use crate::topology::{self, Settings};

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats: config::Nats,
    /// Tasks in flight per agent instance.
    pub capacity: usize,
    pub heartbeat: Duration,
    /// How long SIGTERM waits for in-flight work before giving up.
    pub drain_timeout: Duration,
    pub topology: Settings,
    pub redis_url: Option<String>,
    /// Delays between retries of a retryable failure (nak delay).
    pub retry: retry::Policy,
}

impl Config {
    pub fn new(nats: config::Nats) -> Self {
        Self {
            nats,
            capacity: default_capacity(),
            heartbeat: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            topology: Settings::default(),
            redis_url: None,
            retry: retry::Policy::default(),
        }
    }
}

/// Default in-flight bound: 32 per CPU (handlers are mostly I/O bound).
pub fn default_capacity() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 32)
        .unwrap_or(64)
}

/// Runs `agents` until `shutdown`, then drains, deregisters and returns.
pub async fn run(
    agents: Vec<Arc<dyn Agent>>,
    cfg: Config,
    obs: Observer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kinds: Vec<String> = agents.iter().map(|a| a.descriptor().kind).collect();
    let registry = telemetry::registry("agent", &[("agent_kind", &kinds.join(","))]);
    let conn_metrics = ConnectionMetrics::new(&registry);
    let metrics = Metrics::new(&registry);
    for a in &agents {
        a.register_metrics(&registry);
    }
    obs.add_registry(registry);
    let client = crate::connect::connect(
        &cfg.nats,
        &format!("agentry-agent-{}", kinds.join("-")),
        Some(conn_metrics),
        &shutdown,
    )
    .await?;
    obs.add_nats(format!("agent {} nats", kinds.join(",")), client.clone());
    let js = jetstream::new(client.clone());
    obs.add_kv(js.clone(), subject::AGENTS_BUCKET);
    if let Some(url) = &cfg.redis_url {
        obs.add_redis(format!("agent {} redis", kinds.join(",")), url);
    }
    let redis = match &cfg.redis_url {
        Some(url) => connect_redis(url).await,
        None => None,
    };
    let tracker = TaskTracker::new();
    for agent in agents {
        let d = agent.descriptor();
        let id = AgentId::generate(&d.kind)?;
        let shared = Arc::new(Shared {
            source: format!("/agents/{id}"),
            agent_id: id.clone(),
            kind: d.kind.clone(),
            client: client.clone(),
            js: js.clone(),
            redis: redis.clone(),
            metrics: metrics.clone(),
            registry: tokio::sync::OnceCell::new(),
        });
        let ready = obs.add_flag(format!("agent {id} consumers bound"));
        let pulses: Vec<crate::http::Pulse> = d
            .capabilities
            .iter()
            .map(|cap| obs.add_loop(format!("agent {id} pull {cap}")))
            .collect();
        let cfg = cfg.clone();
        let shutdown = shutdown.clone();
        // Error policy: an instance that cannot start (consumers, service) stops the
        // whole process via `shutdown`, so an orchestrator restarts it.
        let stop_all = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = run_instance(agent, shared, cfg, ready, pulses, shutdown).await {
                error!(agent = %id, error = %format!("{e:#}"), "agent instance failed");
                stop_all.cancel();
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    crate::connect::final_flush(&client).await;
    Ok(())
}

async fn connect_redis(url: &str) -> Option<redis::aio::ConnectionManager> {
    let client = match redis::Client::open(url) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "invalid AGENTRY_REDIS_URL, running without Redis");
            return None;
        }
    };
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2);
    match tokio::time::timeout(
        Duration::from_secs(5),
        redis::aio::ConnectionManager::new_with_config(client, cfg),
    )
    .await
    {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => {
            warn!(error = %e, "redis unreachable at start, running without it");
            None
        }
        Err(_) => {
            warn!("redis connect timed out, running without it");
            None
        }
    }
}

async fn run_instance(
    agent: Arc<dyn Agent>,
    shared: Arc<Shared>,
    cfg: Config,
    ready: crate::http::Flag,
    pulses: Vec<crate::http::Pulse>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let d = agent.descriptor();
    let id = shared.agent_id.clone();
    let capacity = cfg.capacity.max(1);
    let sem = Arc::new(Semaphore::new(capacity));
    let work = TaskTracker::new();
    let pull_stop = CancellationToken::new();

    // Consumers first: an agent is only announced once it can take work.
    let mut consumers: Vec<(Capability, PullConsumer, i64, Duration)> = Vec::new();
    for cap in &d.capabilities {
        topology::ensure_task_consumer(&shared.js, cap, &cfg.topology).await?;
        let stream = shared.js.get_stream_no_info(subject::TASKS_STREAM).await?;
        let mut consumer: PullConsumer = stream
            .get_consumer(&subject::task_consumer(cap))
            .await
            .map_err(|e| anyhow::anyhow!("consumer cap-{cap}: {e}"))?;
        let info = consumer.info().await?.clone();
        let ack_wait = info
            .config
            .backoff
            .first()
            .copied()
            .unwrap_or(info.config.ack_wait);
        consumers.push((cap.clone(), consumer, info.config.max_deliver, ack_wait));
    }
    let (max_deliver, ack_wait) = consumers
        .first()
        .map(|c| (c.2, c.3))
        .unwrap_or((5, Duration::from_secs(30)));
    let inst = Arc::new(Instance {
        shared: shared.clone(),
        agent: agent.clone(),
        max_deliver,
        ack_wait,
        retry: cfg.retry,
        processed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
    });
    let started_at = Utc::now();
    let record = |status: Status| AgentRecord {
        id: id.to_string(),
        name: d.kind.clone(),
        kind: d.kind.clone(),
        version: d.version.clone(),
        capabilities: d.capabilities.iter().map(|c| c.to_string()).collect(),
        status,
        load: inst.in_flight.load(Ordering::Relaxed) as f64 / capacity as f64,
        in_flight: inst.in_flight.load(Ordering::Relaxed),
        capacity: capacity as u64,
        processed: inst.processed.load(Ordering::Relaxed),
        failed: inst.failed.load(Ordering::Relaxed),
        started_at,
        last_heartbeat: Utc::now(),
        heartbeat_interval_ms: cfg.heartbeat.as_millis() as u64,
        host: std::env::var("HOSTNAME").ok(),
    };

    let ctx = Context {
        inner: shared.clone(),
        traceparent: None,
        request_id: None,
        tenant: None,
    };
    let svc = service::start(
        agent.clone(),
        ctx.clone(),
        sem.clone(),
        &work,
        pull_stop.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("starting $SRV service: {e}"))?;

    for ((cap, consumer, _, _), pulse) in consumers.into_iter().zip(pulses) {
        let inst = inst.clone();
        // Pull loop: ends on drain (handing over what was already delivered);
        // pull errors are retried; each delivery's outcome settles it.
        let pull = Pull::new(shared.js.clone(), consumer, pulse)
            .batch(capacity)
            .permits(sem.clone())
            .drain_delivered()
            .count_dead_letters(shared.metrics.dlq.clone());
        let series = Arc::new(shared.metrics.for_capability(cap.as_str()));
        work.spawn(
            pull.run(pull_stop.clone(), work.clone(), move |msg, permit| {
                let inst = inst.clone();
                let cap = cap.clone();
                let series = series.clone();
                async move {
                    let d = worker::process(&inst, &cap, &series, &msg).await;
                    drop(permit);
                    d
                }
            }),
        );
    }

    publish_record(&shared, types::AGENT_REGISTERED, &record(Status::Live)).await;
    ready.set(true);
    info!(agent = %id, kind = %d.kind, capabilities = ?d.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>(), capacity, "agent registered");

    let bg_stop = CancellationToken::new();
    let bg = {
        let agent = agent.clone();
        let ctx = ctx.clone();
        let stop = bg_stop.clone();
        let shutdown = shutdown.clone();
        // Background work (e.g. the security monitor's event consumer): an error stops the process.
        tokio::spawn(async move {
            if let Err(e) = agent.background(ctx, stop).await {
                error!(error = %format!("{e:#}"), "agent background task failed");
                shutdown.cancel();
            }
        })
    };

    let mut beat = tokio::time::interval(cfg.heartbeat);
    beat.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = beat.tick() => publish_record(&shared, types::AGENT_HEARTBEAT, &record(Status::Live)).await,
        }
    }

    // Drain: stop pulling, announce, finish in-flight work, deregister.
    info!(agent = %id, in_flight = inst.in_flight.load(Ordering::Relaxed), "draining");
    pull_stop.cancel();
    bg_stop.cancel();
    publish_record(&shared, types::AGENT_HEARTBEAT, &record(Status::Draining)).await;
    work.close();
    let drained = tokio::time::timeout(cfg.drain_timeout, work.wait())
        .await
        .is_ok();
    if !drained {
        warn!(agent = %id, "drain timeout: unfinished tasks will be redelivered to other agents");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), bg).await;
    if let Err(e) = svc.stop().await {
        warn!(error = %e, "service stop failed");
    }
    publish_record(
        &shared,
        types::AGENT_DEREGISTERED,
        &record(Status::Deregistered),
    )
    .await;
    info!(agent = %id, drained, processed = inst.processed.load(Ordering::Relaxed), "agent deregistered");
    Ok(())
}

async fn publish_record(shared: &Shared, ty: &str, rec: &AgentRecord) {
    let data = match serde_json::to_value(rec) {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, "agent record does not serialise");
            return;
        }
    };
    let id = uuid::Uuid::now_v7().simple().to_string();
    let ev = event::new_event(&id, &format!("/agents/{}", shared.agent_id), ty, data);
    let subj = subject::registry(&shared.agent_id);
    match tokio::time::timeout(
        Duration::from_secs(5),
        publish::event(&shared.js, &subj, &ev, &id),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!(error = %e, event = ty, "registry publish failed"),
        Err(_) => warn!(event = ty, "registry publish timed out"),
    }
}

/// Time of a registry message as the server stamped it.
pub fn server_time(msg: &jetstream::Message) -> DateTime<Utc> {
    msg.info()
        .ok()
        .and_then(|i| {
            DateTime::from_timestamp(i.published.unix_timestamp(), i.published.nanosecond())
        })
        .unwrap_or_else(Utc::now)
}
