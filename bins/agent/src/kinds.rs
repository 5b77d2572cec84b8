//! The table of built-in agent kinds: each kind's name and how to build it
//! from [`Settings`]. The agents themselves live in their own crates under
//! `agents/` (`agentry-echo`, `agentry-weather`, `agentry-planning`,
//! `agentry-data-analysis`, `agentry-customer-service`, `agentry-security`);
//! this host only picks them by kind.

use std::sync::Arc;
use std::time::Duration;

use agentry::agent::Agent;
use agentry::config::parse_duration;

use crate::AgentsError;

/// One built-in kind: its name and its constructor.
struct Kind {
    name: &'static str,
    build: fn(&Settings) -> Result<Arc<dyn Agent>, AgentsError>,
}

/// Every built-in kind, in start order.
const TABLE: &[Kind] = &[
    Kind {
        name: "echo",
        build: |_| Ok(Arc::new(agentry_echo::Echo::default())),
    },
    Kind {
        name: "weather",
        build: |s| {
            let agent = agentry_weather::WeatherAgent::new(s.weather_config())
                .map_err(AgentsError::WeatherSettings)?;
            Ok(Arc::new(agent))
        },
    },
    Kind {
        name: "planning",
        build: |_| Ok(Arc::new(agentry_planning::PlanningAgent::default())),
    },
    Kind {
        name: "customer_service",
        build: |s| {
            Ok(Arc::new(agentry_customer_service::CustomerService::new(
                s.customer_service_config(),
            )))
        },
    },
    Kind {
        name: "data_analysis",
        build: |_| Ok(Arc::new(agentry_data_analysis::DataAnalysisAgent)),
    },
    Kind {
        name: "security_monitor",
        build: |s| {
            Ok(Arc::new(agentry_security::SecurityMonitor::new(
                s.security_config(),
            )))
        },
    },
];

/// The names of every built-in kind, in start order.
pub fn names() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|k| k.name)
}

/// Whether `kind` names a built-in kind.
pub fn is_known(kind: &str) -> bool {
    TABLE.iter().any(|k| k.name == kind)
}

/// Builds the agent of `kind`.
pub fn build(kind: &str, settings: &Settings) -> Result<Arc<dyn Agent>, AgentsError> {
    let entry = TABLE
        .iter()
        .find(|k| k.name == kind)
        .ok_or_else(|| AgentsError::UnknownKind(kind.to_owned()))?;
    (entry.build)(settings)
}

/// Settings of the built-in agents.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {
    /// Base URL of the Open-Meteo forecast API, without `/v1/forecast`
    /// [default: https://api.open-meteo.com]. When the geocoding URL is not
    /// set, this server also answers geocoding (as the bundled fixture does).
    #[arg(long = "weather-base-url", env = "AGENTRY_WEATHER_BASE_URL")]
    pub weather_base_url: Option<String>,
    /// Base URL of the Open-Meteo geocoding API, without `/v1/search`
    /// [default: the weather base URL when set, else https://geocoding-api.open-meteo.com].
    #[arg(long = "weather-geocoding-url", env = "AGENTRY_WEATHER_GEOCODING_URL")]
    pub weather_geocoding_url: Option<String>,
    /// Deadline for one Open-Meteo HTTP attempt, e.g. `10s`, `500ms` [default: 10s].
    #[arg(long = "weather-timeout", env = "AGENTRY_WEATHER_TIMEOUT", value_parser = parse_duration)]
    pub weather_timeout: Option<Duration>,
    /// Retries of one Open-Meteo call after the first attempt, for 5xx, 429,
    /// timeouts and connection failures [default: 3].
    #[arg(long = "weather-retries", env = "AGENTRY_WEATHER_RETRIES")]
    pub weather_retries: Option<u32>,
    /// How long customer_service remembers a conversation after its last
    /// message (Redis key TTL), e.g. `30m`, `24h` [default: 24h].
    #[arg(long = "conversation-ttl", env = "AGENTRY_CONVERSATION_TTL", value_parser = parse_duration)]
    pub conversation_ttl: Option<Duration>,
    /// Conversations customer_service keeps in process when Redis is not
    /// configured or not answering (least recently used dropped first) [default: 10000].
    #[arg(
        long = "conversation-local-max",
        env = "AGENTRY_CONVERSATION_LOCAL_MAX"
    )]
    pub conversation_local_max: Option<usize>,
    /// Alert kinds whose source security_monitor quarantines automatically:
    /// `on` (flood and probing), `off`, or a list of `flood`, `probing` [default: on].
    #[arg(long = "security-auto-quarantine", env = "AGENTRY_SECURITY_AUTO_QUARANTINE", value_parser = agentry_security::agent::parse_auto_quarantine)]
    pub security_auto_quarantine: Option<agentry_security::agent::AutoQuarantine>,
    /// Length of an automatic quarantine in minutes [default: 15].
    #[arg(long = "security-quarantine-minutes", env = "AGENTRY_SECURITY_QUARANTINE_MINUTES", value_parser = clap::value_parser!(u32).range(1..=10080))]
    pub security_quarantine_minutes: Option<u32>,
    /// Requests (accepted or rejected) from one source within a minute above
    /// which security_monitor raises a flood [default: 600].
    #[arg(
        long = "security-flood-requests",
        env = "AGENTRY_SECURITY_FLOOD_REQUESTS"
    )]
    pub security_flood_requests: Option<u64>,
    /// `rate_limited` rejections of one source within a minute from which
    /// security_monitor raises a flood [default: 50].
    #[arg(
        long = "security-flood-rate-limited",
        env = "AGENTRY_SECURITY_FLOOD_RATE_LIMITED"
    )]
    pub security_flood_rate_limited: Option<u64>,
    /// Invalid requests (validation rejections) from one source within a
    /// minute from which security_monitor raises probing [default: 5].
    #[arg(
        long = "security-probing-rejections",
        env = "AGENTRY_SECURITY_PROBING_REJECTIONS"
    )]
    pub security_probing_rejections: Option<usize>,
}

impl Settings {
    /// The weather client configuration these settings describe.
    pub fn weather_config(&self) -> agentry_weather::Config {
        let mut cfg = agentry_weather::Config::default();
        if let Some(base) = &self.weather_base_url {
            cfg.forecast_base_url = base.clone();
            cfg.geocoding_base_url = base.clone();
        }
        if let Some(geo) = &self.weather_geocoding_url {
            cfg.geocoding_base_url = geo.clone();
        }
        if let Some(t) = self.weather_timeout {
            cfg.timeout = t;
        }
        if let Some(r) = self.weather_retries {
            cfg.max_retries = r;
        }
        cfg
    }

    /// The customer_service configuration these settings describe.
    pub fn customer_service_config(&self) -> agentry_customer_service::Config {
        let mut cfg = agentry_customer_service::Config::default();
        if let Some(ttl) = self.conversation_ttl {
            cfg.conversation_ttl = ttl;
        }
        if let Some(n) = self.conversation_local_max {
            cfg.local_conversations = n;
        }
        cfg
    }

    /// The security_monitor configuration these settings describe.
    pub fn security_config(&self) -> agentry_security::Config {
        let mut cfg = agentry_security::Config::default();
        if let Some(kinds) = &self.security_auto_quarantine {
            cfg.auto_quarantine = kinds.0.clone();
        }
        if let Some(m) = self.security_quarantine_minutes {
            cfg.quarantine_minutes = m;
        }
        if let Some(n) = self.security_flood_requests {
            cfg.detector.flood_requests = n;
        }
        if let Some(n) = self.security_flood_rate_limited {
            cfg.detector.flood_rate_limited = n;
        }
        if let Some(n) = self.security_probing_rejections {
            cfg.detector.probing_rejections = n;
        }
        cfg
    }
}
