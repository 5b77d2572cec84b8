//! `agentry-agent`: hosts the built-in agents on the agent runtime
//! (`agentry::agent`). `--agents echo,weather` or `all`.
//!
//! A thin host: each agent is its own crate under `agents/`; the table in
//! `kinds` maps a kind name to its constructor and [`Settings`] holds the
//! agents' command-line settings. Its tests are in the end-to-end suite
//! (`tests/e2e/agent_host.rs`), through this public API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agentry::agent::{self, Agent};
use agentry::config::{self, parse_duration};
use agentry::http::Observer;
use tokio_util::sync::CancellationToken;

pub mod kinds;

pub use kinds::{Built, Settings};

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
    /// planning, customer_service, data_analysis, security_monitor,
    /// assistant (only with `AGENTRY_LLM_BASE_URL`; `all` leaves it out
    /// without, saying so). A kind
    /// connects as its own NATS user when `AGENTRY_NATS_USER_<KIND>` and
    /// `AGENTRY_NATS_PASSWORD_<KIND>` are set (docs/agents-under-auth.md).
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
    pub builtin: Settings,
    /// NATS connection per agent kind (least privilege: each built-in kind
    /// has its own NATS user). Filled by [`run`] from
    /// `AGENTRY_NATS_USER_<KIND>` / `AGENTRY_NATS_PASSWORD_<KIND>` (see
    /// [`kind_nats_from_env`]); a kind without an entry uses `nats`.
    #[arg(skip)]
    pub kind_nats: BTreeMap<String, config::Nats>,
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
            builtin: Settings::default(),
            kind_nats: BTreeMap::new(),
        }
    }

    /// The connection settings `kind` uses.
    pub fn nats_for(&self, kind: &str) -> &config::Nats {
        self.kind_nats.get(kind).unwrap_or(&self.nats)
    }

    fn runtime(&self, nats: config::Nats) -> agent::Config {
        let mut rc = agent::Config::new(nats);
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
    #[error("unknown agent kind {0:?} (known: {known})", known = kinds::names().collect::<Vec<_>>().join(", "))]
    UnknownKind(String),
    #[error("no agent kinds selected")]
    Empty,
    #[error("invalid weather agent settings")]
    WeatherSettings(#[source] agentry_weather::WeatherError),
    #[error("invalid assistant agent settings")]
    AssistantSettings(#[source] agentry_assistant::llm::ClientError),
    #[error("no selected agent kind can start: {0}")]
    AllOff(String),
    #[error("{user_var} and {password_var} go together")]
    KindCredentials {
        user_var: String,
        password_var: String,
    },
}

/// The environment variable of `kind`'s setting `what` (`USER`,
/// `PASSWORD`, `INBOX_PREFIX`): `AGENTRY_NATS_<WHAT>_<KIND>`.
pub fn kind_var(what: &str, kind: &str) -> String {
    format!("AGENTRY_NATS_{what}_{}", kind.to_uppercase())
}

/// Per-kind connection settings from variables read by `var`: for each of
/// `kinds` with `AGENTRY_NATS_USER_<KIND>` set, `base` with that user, its
/// `AGENTRY_NATS_PASSWORD_<KIND>` and the inbox prefix
/// `AGENTRY_NATS_INBOX_PREFIX_<KIND>` (default `_INBOX.<user>`, the prefix
/// the user may subscribe to). Kinds without a user are left out (they use
/// `base`).
pub fn kind_nats_from_env(
    base: &config::Nats,
    kinds: &[String],
    var: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, config::Nats>, AgentsError> {
    let mut out = BTreeMap::new();
    for kind in kinds {
        let (user_var, password_var) = (kind_var("USER", kind), kind_var("PASSWORD", kind));
        match (var(&user_var), var(&password_var)) {
            (None, None) => {}
            (Some(user), Some(password)) => {
                let mut n = base.clone();
                n.inbox_prefix = Some(
                    var(&kind_var("INBOX_PREFIX", kind))
                        .unwrap_or_else(|| agentry::subject::inbox_prefix(&user)),
                );
                n.user = Some(user);
                n.password = Some(password);
                n.creds = None;
                n.token = None;
                n.nkey = None;
                out.insert(kind.clone(), n);
            }
            _ => {
                return Err(AgentsError::KindCredentials {
                    user_var,
                    password_var,
                });
            }
        }
    }
    Ok(out)
}

/// Parses `all` or a comma-separated list of kinds.
pub fn select(list: &str) -> Result<Vec<String>, AgentsError> {
    let kinds: Vec<String> = if list.trim() == "all" {
        kinds::names().map(str::to_owned).collect()
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
        if !kinds::is_known(k) {
            return Err(AgentsError::UnknownKind(k.clone()));
        }
    }
    Ok(kinds)
}

/// Runs the selected agents with their own HTTP endpoint (per `cfg.observe`).
pub async fn run(mut cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let kinds = select(&cfg.agents)?;
    let from_env = kind_nats_from_env(&cfg.nats, &kinds, |k| std::env::var(k).ok())?;
    for (kind, nats) in from_env {
        cfg.kind_nats.entry(kind).or_insert(nats);
    }
    let obs = Observer::for_component(&cfg.observe, &shutdown).await?;
    run_with(cfg, obs, shutdown).await
}

/// Runs the selected agents, registering metrics and checks into `obs`.
///
/// Kinds that connect with the same settings share one connection; a kind
/// with its own user (`cfg.kind_nats`) gets its own connection, so each
/// kind acts only with its user's permissions. One group failing to start
/// stops the others.
pub async fn run_with(
    cfg: Config,
    obs: Observer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kinds = select(&cfg.agents)?;
    let mut groups: Vec<(config::Nats, Vec<Arc<dyn Agent>>)> = Vec::new();
    let mut off = Vec::new();
    for k in &kinds {
        let agent = match kinds::build(k, &cfg.builtin)? {
            Built::Ready(agent) => agent,
            Built::Off(why) => {
                tracing::warn!(kind = %k, "agent kind not started: {why}");
                off.push(format!("{k}: {why}"));
                continue;
            }
        };
        let nats = cfg.nats_for(k);
        match groups.iter_mut().find(|(n, _)| same_connection(n, nats)) {
            Some((_, list)) => list.push(agent),
            None => groups.push((nats.clone(), vec![agent])),
        }
    }
    if groups.is_empty() {
        return Err(AgentsError::AllOff(off.join("; ")).into());
    }
    let runs = groups.into_iter().map(|(nats, list)| {
        let rc = cfg.runtime(nats);
        let (obs, stop) = (obs.clone(), shutdown.clone());
        async move {
            let res = agent::run(list, rc, obs, stop.clone()).await;
            if res.is_err() {
                stop.cancel();
            }
            res
        }
    });
    for res in futures::future::join_all(runs).await {
        res?;
    }
    Ok(())
}

/// Whether two kinds may share a connection (same identity and server).
fn same_connection(a: &config::Nats, b: &config::Nats) -> bool {
    a.url == b.url
        && a.user == b.user
        && a.password == b.password
        && a.creds == b.creds
        && a.token == b.token
        && a.nkey == b.nkey
        && a.inbox_prefix == b.inbox_prefix
        && a.tls_cert == b.tls_cert
}
