//! `agentry-monitor`: the only writer of `agentry-agents`. Materialises the
//! registry from registration and heartbeat events, expires silent agents
//! by compare-and-set (so of several replicas exactly one announces it),
//! purges old records, exports queue depth / ack-pending per consumer and
//! DLQ sizes, and dead-letters messages that exhausted `max_deliver` with
//! nobody seeing them fail (a crashed worker).

use std::sync::Arc;
use std::time::Duration;

use agentry::config;
use agentry::consume::{self, ready::ReadyError, supervise::Supervisor};
use agentry::http::Observer;
use agentry::subject;
use agentry::telemetry::{self, ConnectionMetrics};
use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod backstop;
mod depth;
mod metrics;
mod registrar;
mod sweep;

pub use metrics::Metrics;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub nats: config::Nats,
    #[command(flatten)]
    pub observe: config::Observe,
    /// Heartbeats an agent may miss before it is expired.
    #[arg(long, env = "AGENTRY_MISSED_HEARTBEATS", default_value_t = 3)]
    pub missed_heartbeats: u32,
    /// How often to sweep the registry for silent agents.
    #[arg(long, env = "AGENTRY_SWEEP_INTERVAL", default_value = "2s", value_parser = config::parse_duration)]
    pub sweep_interval: Duration,
    /// How long expired and deregistered records are kept.
    #[arg(long, env = "AGENTRY_PURGE_AFTER", default_value = "1h", value_parser = config::parse_duration)]
    pub purge_after: Duration,
    /// How often queue depth and DLQ gauges are refreshed.
    #[arg(long, env = "AGENTRY_DEPTH_INTERVAL", default_value = "5s", value_parser = config::parse_duration)]
    pub depth_interval: Duration,
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
            missed_heartbeats: 3,
            sweep_interval: Duration::from_secs(2),
            purge_after: Duration::from_secs(3600),
            depth_interval: Duration::from_secs(5),
        }
    }
}

pub(crate) struct Monitor {
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub metrics: Metrics,
    pub cfg: Config,
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
    let registry = telemetry::registry("monitor", &[]);
    let conn = ConnectionMetrics::new(&registry);
    let metrics = Metrics::new(&registry);
    obs.add_registry(registry);
    let client =
        agentry::connect::connect(&cfg.nats, "agentry-monitor", Some(conn), &shutdown).await?;
    obs.add_nats("monitor nats", client.clone());
    let ready = obs.add_loop("monitor registrar");
    let js = jetstream::new(client.clone());
    obs.add_kv(js.clone(), subject::AGENTS_BUCKET);
    let kv = match consume::ready::bucket(&js, subject::AGENTS_BUCKET, &shutdown).await {
        Ok(kv) => kv,
        Err(ReadyError::Cancelled { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mon = Arc::new(Monitor {
        js,
        client: client.clone(),
        metrics,
        cfg,
    });
    let tracker = TaskTracker::new();
    // Each loop runs until shutdown; a loop that fails logs and stops the monitor
    // (an orchestrator restarts it), since a half-working registry misleads.
    let loops = Supervisor::new(tracker.clone(), shutdown.clone());
    loops.spawn(
        "registrar",
        registrar::run(mon.clone(), kv.clone(), ready, shutdown.clone()),
    );
    loops.spawn(
        "sweep",
        sweep::run(
            mon.clone(),
            kv.clone(),
            obs.add_loop("monitor sweep"),
            shutdown.clone(),
        ),
    );
    loops.spawn(
        "depth",
        depth::run(
            mon.clone(),
            kv,
            obs.add_loop("monitor depth"),
            shutdown.clone(),
        ),
    );
    loops.spawn("backstop", backstop::run(mon.clone(), shutdown.clone()));
    tracker.close();
    tracker.wait().await;
    agentry::connect::final_flush(&client).await;
    Ok(())
}
