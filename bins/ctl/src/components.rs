//! Starts the in-process components for `agentry up` and stops them in
//! order: agents first (they finish and answer what they hold), then the
//! engine and monitor (which route and record until the agents are gone).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use agentry::config;
use agentry::consume::supervise::Supervisor;
use agentry::http::Observer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::up::Args;

type Component = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One stage of the shutdown order: its tasks and the token that stops them.
struct Stage {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Stage {
    fn new() -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Spawns a component. Its error is logged and cancels `failed` (the
    /// whole `up`), so `up` never runs half a system; it stops when this
    /// stage's token is cancelled.
    fn spawn(&self, name: &'static str, fut: Component, failed: &CancellationToken) {
        Supervisor::new(self.tracker.clone(), failed.clone()).spawn(name, fut);
    }

    /// Cancels the stage and waits up to `grace` for its tasks.
    async fn stop(&self, grace: Duration) -> bool {
        self.tracker.close();
        self.stop.cancel();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// The running components, stopped by [`Running::stop`].
pub struct Running {
    agents: Stage,
    core: Stage,
}

/// How a stop went, stage by stage.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    pub agents: bool,
    pub core: bool,
}

impl Running {
    /// Stops agents (waiting up to `grace` for them to drain), then engine
    /// and monitor (another `grace`). Each stage is announced on stdout.
    pub async fn stop(self, grace: Duration) -> Stopped {
        println!("stopping      agents (draining in-flight tasks)");
        let agents = self.agents.stop(grace).await;
        println!("stopping      engine and monitor");
        let core = self.core.stop(grace).await;
        Stopped { agents, core }
    }
}

/// Starts engine, monitor and agents. A component that fails cancels
/// `failed`, which `up` treats like Ctrl-C.
pub async fn start(
    obs: &Observer,
    nats: &config::Nats,
    args: &Args,
    failed: &CancellationToken,
    weather_fixture: Option<&str>,
) -> anyhow::Result<Running> {
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
    agents.builtin = args.builtin.clone();
    if let Some(url) = weather_fixture {
        agents.builtin.weather_base_url = Some(url.to_owned());
        agents.builtin.weather_geocoding_url = Some(url.to_owned());
    }
    agentry_agent::select(&args.agents)?;

    let core = Stage::new();
    let agent_stage = Stage::new();
    core.spawn(
        "engine",
        Box::pin(agentry_engine::run_with(
            engine,
            obs.clone(),
            core.stop.clone(),
        )),
        failed,
    );
    core.spawn(
        "monitor",
        Box::pin(agentry_monitor::run_with(
            monitor,
            obs.clone(),
            core.stop.clone(),
        )),
        failed,
    );
    agent_stage.spawn(
        "agents",
        Box::pin(agentry_agent::run_with(
            agents,
            obs.clone(),
            agent_stage.stop.clone(),
        )),
        failed,
    );
    Ok(Running {
        agents: agent_stage,
        core,
    })
}
