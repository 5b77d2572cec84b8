//! Starts the in-process components for `agentry up`.

use agentry::config;
use agentry::http::Observer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::error;

use crate::up::Args;

/// Spawns engine, monitor and agents on `tracker`. A component that fails
/// logs its error and cancels `shutdown`, so `up` never runs half a system.
pub async fn start(
    tracker: &TaskTracker,
    obs: &Observer,
    nats: &config::Nats,
    args: &Args,
    shutdown: &CancellationToken,
    weather_fixture: Option<&str>,
) -> anyhow::Result<()> {
    let url = nats.resolved_url();
    let mut engine = agentry_engine::Config::for_url(&url);
    engine.nats = nats.clone();
    engine.redis.url = args.redis_url.clone();
    let mut monitor = agentry_monitor::Config::for_url(&url);
    monitor.nats = nats.clone();
    let mut agents = agentry_agent::Config::for_url(&url, &args.agents);
    agents.nats = nats.clone();
    agents.redis.url = args.redis_url.clone();
    agents.topology = args.settings.clone();
    if let Some(url) = weather_fixture {
        agents.builtin.weather_base_url = Some(url.to_owned());
        agents.builtin.weather_geocoding_url = Some(url.to_owned());
    }
    agentry_agent::select(&args.agents)?;

    let spawn = |name: &'static str,
                 fut: std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>,
    >| {
        let stop = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = fut.await {
                error!(component = name, error = %format!("{e:#}"), "component failed, stopping everything");
                stop.cancel();
            }
        });
    };
    spawn(
        "engine",
        Box::pin(agentry_engine::run_with(
            engine,
            obs.clone(),
            shutdown.clone(),
        )),
    );
    spawn(
        "monitor",
        Box::pin(agentry_monitor::run_with(
            monitor,
            obs.clone(),
            shutdown.clone(),
        )),
    );
    spawn(
        "agents",
        Box::pin(agentry_agent::run_with(
            agents,
            obs.clone(),
            shutdown.clone(),
        )),
    );
    Ok(())
}
