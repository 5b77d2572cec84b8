//! `agentry-engine`: the request router and workflow engine. Stateless
//! replicas; all state lives in JetStream (streams, KV, schedules).
//!
//! - `validate`: decode and validate a request once into an `Accepted` one;
//! - `guard`: quarantine and rate limits per principal;
//! - `dispatch`: route an accepted request, publish its `request.accepted`;
//! - `tasks`: single tasks; `timers`: durable timers, and every fired one;
//! - `reject`: rejections and dead letters; `answered`: stored-result replay;
//! - `fair`: fairness between tenants; `workflow`: the workflow engine.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agentry::config;
use agentry::consume::{self, Pull};
use agentry::event::Limits;
use agentry::http::Observer;
use agentry::ratelimit::{self, FailMode, Limiter, Overrides};
use agentry::subject;
use agentry::telemetry::{self, ConnectionMetrics};
use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

mod answered;
mod dispatch;
mod fair;
mod guard;
mod metrics;
mod reject;
mod spans;
mod tasks;
mod timers;
mod validate;
mod workflow;

pub use metrics::Metrics;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub nats: config::Nats,
    #[command(flatten)]
    pub observe: config::Observe,
    #[command(flatten)]
    pub redis: config::Redis,
    /// Requests handled concurrently by this replica.
    #[arg(long, env = "AGENTRY_ENGINE_CONCURRENCY", default_value_t = 512)]
    pub concurrency: usize,
    /// Largest request accepted, in bytes.
    #[arg(long, env = "AGENTRY_MAX_REQUEST_BYTES", default_value_t = 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Most headers a request may carry.
    #[arg(long, env = "AGENTRY_MAX_HEADERS", default_value_t = 64)]
    pub max_headers: usize,
    /// Workflow runs this replica keeps active at once; more requests wait (backpressure).
    #[arg(long, env = "AGENTRY_MAX_RUNS", default_value_t = 100)]
    pub max_runs: usize,
    /// Requests per minute per CloudEvent source and tenant (0 = unlimited).
    #[arg(long, env = "AGENTRY_RATE_LIMIT", default_value_t = ratelimit::DEFAULT_PER_MINUTE)]
    pub rate_limit: u32,
    /// Requests per minute per tenant over all its sources (0 = unlimited);
    /// bounds a tenant that rotates sources.
    #[arg(long, env = "AGENTRY_RATE_LIMIT_TENANT", default_value_t = ratelimit::DEFAULT_PER_TENANT)]
    pub rate_limit_tenant: u32,
    /// Per-source limits, `source=n,source2=m` (0 = unlimited).
    #[arg(long, env = "AGENTRY_RATE_LIMIT_OVERRIDES", default_value = "")]
    pub rate_limit_overrides: Overrides,
    /// Fairness between tenants: while a capability's queue holds this many
    /// tasks or more, tenants' new tasks for it are held and released in
    /// turn, an equal share per tenant (0 = off; docs/tenancy.md).
    #[arg(long, env = "AGENTRY_FAIR_QUEUE_DEPTH", default_value_t = DEFAULT_FAIR_QUEUE_DEPTH)]
    pub fair_queue_depth: u64,
    /// When Redis does not answer: `open` (limit per process) or `closed` (refuse).
    #[arg(long, env = "AGENTRY_RATE_LIMIT_FAIL", value_enum, default_value_t = FailMode::Open)]
    pub rate_limit_fail: FailMode,
}

impl Config {
    pub fn for_url(url: &str) -> Self {
        Self {
            nats: config::Nats::plain(url),
            observe: config::Observe {
                http_addr: "off".into(),
                log_format: config::LogFormat::Text,
                stall_after: "5m".into(),
            },
            redis: config::Redis::default(),
            concurrency: 512,
            max_request_bytes: 1024 * 1024,
            max_headers: 64,
            max_runs: 100,
            rate_limit: ratelimit::DEFAULT_PER_MINUTE,
            rate_limit_tenant: ratelimit::DEFAULT_PER_TENANT,
            rate_limit_overrides: Overrides::default(),
            rate_limit_fail: FailMode::Open,
            fair_queue_depth: DEFAULT_FAIR_QUEUE_DEPTH,
        }
    }

    /// The rate limiter this config asks for: in Redis when `AGENTRY_REDIS_URL`
    /// is set, else per process.
    fn limiter(&self) -> anyhow::Result<Limiter> {
        let limits = ratelimit::Limits {
            per_minute: self.rate_limit,
            overrides: self.rate_limit_overrides.clone(),
            per_tenant: self.rate_limit_tenant,
        };
        Ok(match &self.redis.url {
            Some(url) => Limiter::with_redis(
                limits,
                url,
                self.rate_limit_fail,
                ratelimit::DEFAULT_REDIS_TIMEOUT,
            )?,
            None => Limiter::in_process(limits),
        })
    }
}

/// Default live queue depth at which tenants' tasks are held (fairness).
pub const DEFAULT_FAIR_QUEUE_DEPTH: u64 = 200;

/// Requests pulled ahead of their handling by one replica.
const REQUEST_PREFETCH: usize = 64;

/// State shared by the engine's loops.
pub(crate) struct Engine {
    pub js: jetstream::Context,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Capabilities whose `cap-<capability>` consumer is known to exist.
    pub known_caps: RwLock<HashSet<String>>,
    /// Quarantine and rate limits.
    pub guard: guard::Guard,
    /// Fairness between tenants at congested capabilities.
    pub fair: fair::Fair,
    /// Workflow definitions, run state and the active-run limit.
    pub runs: workflow::Runs,
    /// Cancelled when the engine shuts down.
    pub shutdown: CancellationToken,
    /// Batched stored-result lookups (idempotency beyond the duplicate window).
    pub lookups: answered::Lookups,
}

pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let obs = Observer::for_component(&cfg.observe, &shutdown).await?;
    run_with(cfg, obs, shutdown).await
}

pub async fn run_with(
    cfg: Config,
    obs: Observer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = telemetry::registry("engine", &[]);
    let conn = ConnectionMetrics::new(&registry);
    let metrics = Metrics::new(&registry);
    obs.add_registry(registry);
    let client =
        agentry::connect::connect(&cfg.nats, "agentry-engine", Some(conn), &shutdown).await?;
    obs.add_nats("engine nats", client.clone());
    let ready = obs.add_flag("engine consumers bound");
    let js = jetstream::new(client.clone());
    obs.add_kv(js.clone(), subject::RUNS_BUCKET);
    obs.add_kv(js.clone(), subject::QUARANTINE_BUCKET);
    if let Some(url) = &cfg.redis.url {
        obs.add_redis("engine redis", url);
    }
    let runs = workflow::Runs::open(
        &js,
        cfg.max_runs,
        metrics.runs_active.clone(),
        metrics.runs_parked.clone(),
        &shutdown,
    )
    .await?;
    let lookups = answered::Lookups::start(&js).await?;
    let engine = Arc::new(Engine {
        js: js.clone(),
        metrics,
        limits: Limits {
            max_payload: cfg.max_request_bytes,
            max_headers: cfg.max_headers,
            ..Limits::default()
        },
        known_caps: RwLock::new(HashSet::new()),
        guard: guard::Guard::new(cfg.limiter()?),
        fair: fair::Fair::new(cfg.fair_queue_depth),
        runs,
        shutdown: shutdown.clone(),
        lookups,
    });
    let bind = |stream: &'static str, consumer: &'static str| {
        let js = js.clone();
        let shutdown = shutdown.clone();
        async move { consume::ready::consumer(&js, stream, consumer, &shutdown).await }
    };
    let requests = bind(subject::REQUESTS_STREAM, subject::ENGINE_CONSUMER).await?;
    let timers = bind(subject::TIMERS_STREAM, subject::ENGINE_TIMERS_CONSUMER).await?;
    let steps = bind(subject::STEPS_STREAM, subject::ENGINE_STEPS_CONSUMER).await?;
    ready.set(true);
    info!("engine consuming requests");

    let tracker = TaskTracker::new();
    // Keeps the quarantine copy current; never fails, stops on shutdown.
    tracker.spawn(guard::watch(engine.clone(), shutdown.clone()));
    if engine.fair.enabled() {
        // Samples queue depths and releases held tasks; never fails, stops on shutdown.
        tracker.spawn(fair::release(engine.clone(), shutdown.clone()));
    }
    let pull = |consumer, name: &str| {
        Pull::new(js.clone(), consumer, obs.add_loop(name))
            .count_dead_letters(engine.metrics.dlq.clone())
    };
    // The three pull loops stop on shutdown; message errors are handled per message.
    // Requests: prefetch stays small so replicas share them (a workflow request
    // waiting for a run permit holds its message; see workflow::limiter).
    let e = engine.clone();
    tracker.spawn(
        pull(requests, "engine requests")
            .batch(cfg.concurrency.min(REQUEST_PREFETCH))
            .concurrency(cfg.concurrency)
            .run(shutdown.clone(), tracker.clone(), move |msg, permit| {
                let engine = e.clone();
                Box::pin(async move { dispatch::handle(&engine, &msg, permit).await })
            }),
    );
    let e = engine.clone();
    tracker.spawn(pull(timers, "engine timers").run(
        shutdown.clone(),
        tracker.clone(),
        move |msg, permit| {
            let engine = e.clone();
            Box::pin(async move {
                let _permit = permit;
                timers::fire(&engine, &msg).await
            })
        },
    ));
    // Step results of workflow runs.
    let e = engine.clone();
    tracker.spawn(pull(steps, "engine steps").run(
        shutdown.clone(),
        tracker.clone(),
        move |msg, permit| {
            let engine = e.clone();
            Box::pin(async move {
                let _permit = permit;
                workflow::on_step_result(&engine, &msg).await
            })
        },
    ));
    // Frees run permits of runs that ended on any replica; never fails, stops on shutdown.
    tracker.spawn(workflow::watch(engine.clone(), shutdown.clone()));
    shutdown.cancelled().await;
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(30), tracker.wait())
        .await
        .is_err()
    {
        warn!("engine work did not finish within 30s; unacked requests will be redelivered");
    }
    // Outboxes already carried out need no repeating by whoever drives their runs next.
    if tokio::time::timeout(Duration::from_secs(5), workflow::settle(&engine))
        .await
        .is_err()
    {
        warn!("carried-out outboxes not all cleared; their effects may be repeated (idempotently)");
    }
    agentry::connect::final_flush(&client).await;
    Ok(())
}

pub(crate) use agentry::consume::Disposition;

/// One of a consumer's concurrency permits, handed to the handler: it is
/// held until the handler drops it (a workflow start waiting for a run slot
/// drops it early, see workflow::limiter).
pub(crate) type EnginePermit = tokio::sync::OwnedSemaphorePermit;
