//! `agentry-agent`: hosts the built-in agents on the agent runtime
//! (`agentry::agent`). `--agents echo,weather` or `all`.

use std::sync::Arc;
use std::time::Duration;

use agentry::agent::{self, Agent};
use agentry::config;
use agentry::http::Observer;
use tokio_util::sync::CancellationToken;

pub mod agents;

/// Every built-in agent kind, in start order.
pub const KINDS: &[&str] = &[
    "echo",
    "weather",
    "planning",
    "customer_service",
    "data_analysis",
    "security_monitor",
];

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub nats: config::Nats,
    #[command(flatten)]
    pub observe: config::Observe,
    #[command(flatten)]
    pub redis: config::Redis,
    #[command(flatten)]
    pub topology: agentry::topology::Settings,
    /// Agent kinds to run: `all` or a comma-separated list of echo, weather,
    /// planning, customer_service, data_analysis, security_monitor.
    #[arg(long, env = "AGENTRY_AGENTS", default_value = "all")]
    pub agents: String,
    /// Tasks in flight per agent instance (default: 32 per CPU).
    #[arg(long, env = "AGENTRY_CAPACITY")]
    pub capacity: Option<usize>,
    /// Heartbeat interval.
    #[arg(long, env = "AGENTRY_HEARTBEAT", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Grace period for in-flight work on SIGTERM.
    #[arg(long, env = "AGENTRY_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    #[command(flatten)]
    pub builtin: agents::Settings,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    config::parse_duration(s).map_err(|e| e.to_string())
}

impl Config {
    /// A config for tests and `agentry up`: no HTTP server of its own.
    pub fn for_url(url: &str, agents: &str) -> Self {
        Self {
            nats: config::Nats::plain(url),
            observe: config::Observe {
                http_addr: "off".into(),
                log_format: config::LogFormat::Text,
                stall_after: "5m".into(),
            },
            redis: config::Redis::default(),
            topology: agentry::topology::Settings::default(),
            agents: agents.into(),
            capacity: None,
            heartbeat: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            builtin: agents::Settings::default(),
        }
    }

    fn runtime(&self) -> agent::Config {
        let mut rc = agent::Config::new(self.nats.clone());
        if let Some(c) = self.capacity {
            rc.capacity = c;
        }
        rc.heartbeat = self.heartbeat;
        rc.drain_timeout = self.drain_timeout;
        rc.topology = self.topology.clone();
        rc.redis_url = self.redis.url.clone();
        rc
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    #[error("unknown agent kind {0:?} (known: {known})", known = KINDS.join(", "))]
    UnknownKind(String),
    #[error("no agent kinds selected")]
    Empty,
    #[error("invalid {kind} agent settings: {detail}")]
    Settings { kind: &'static str, detail: String },
}

/// Parses `all` or a comma-separated list of kinds.
pub fn select(list: &str) -> Result<Vec<String>, AgentsError> {
    let kinds: Vec<String> = if list.trim() == "all" {
        KINDS.iter().map(|k| (*k).to_owned()).collect()
    } else {
        list.split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect()
    };
    if kinds.is_empty() {
        return Err(AgentsError::Empty);
    }
    for k in &kinds {
        if !KINDS.contains(&k.as_str()) {
            return Err(AgentsError::UnknownKind(k.clone()));
        }
    }
    Ok(kinds)
}

/// Runs the selected agents with their own HTTP endpoint (per `cfg.observe`).
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let obs = Observer::for_component(&cfg.observe, &shutdown).await?;
    run_with(cfg, obs, shutdown).await
}

/// Runs the selected agents, registering metrics and checks into `obs`.
pub async fn run_with(
    cfg: Config,
    obs: Observer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kinds = select(&cfg.agents)?;
    let mut list: Vec<Arc<dyn Agent>> = Vec::new();
    for k in &kinds {
        list.push(agents::build(k, &cfg.builtin)?);
    }
    agent::run(list, cfg.runtime(), obs, shutdown).await
}
