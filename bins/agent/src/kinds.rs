//! The table of built-in agent kinds: each kind's name and how to build it
//! from [`Settings`]. The agents themselves live in their own crates under
//! `agents/` (`agentry-echo`, `agentry-weather`, `agentry-planning`,
//! `agentry-data-analysis`, `agentry-customer-service`, `agentry-security`,
//! `agentry-assistant`); this host only picks them by kind. A kind may be
//! off for want of configuration ([`Built::Off`]: the assistant without an
//! LLM endpoint); the host then starts the others and says why.

use std::sync::Arc;
use std::time::Duration;

use agentry::agent::Agent;
use agentry::config::parse_duration;

use crate::AgentsError;

/// One built-in kind: its name and its constructor.
struct Kind {
    name: &'static str,
    build: fn(&Settings) -> Result<Built, AgentsError>,
}

/// What building a kind gave.
pub enum Built {
    Ready(Arc<dyn Agent>),
    /// Not started: the settings it needs are missing (the text says which).
    Off(String),
}

impl<A: Agent> From<A> for Built {
    fn from(agent: A) -> Self {
        Self::Ready(Arc::new(agent))
    }
}

/// Every built-in kind, in start order.
const TABLE: &[Kind] = &[
    Kind {
        name: "echo",
        build: |_| Ok(agentry_echo::Echo::default().into()),
    },
    Kind {
        name: "weather",
        build: |s| {
            let agent = agentry_weather::WeatherAgent::new(s.weather_config())
                .map_err(AgentsError::WeatherSettings)?;
            Ok(agent.into())
        },
    },
    Kind {
        name: "planning",
        build: |_| Ok(agentry_planning::PlanningAgent::default().into()),
    },
    Kind {
        name: "customer_service",
        build: |s| {
            Ok(agentry_customer_service::CustomerService::new(s.customer_service_config()).into())
        },
    },
    Kind {
        name: "data_analysis",
        build: |_| Ok(agentry_data_analysis::DataAnalysisAgent.into()),
    },
    Kind {
        name: "security_monitor",
        build: |s| Ok(agentry_security::SecurityMonitor::new(s.security_config()).into()),
    },
    Kind {
        name: "assistant",
        build: |s| {
            let Some(cfg) = s.assistant_config() else {
                return Ok(Built::Off(
                    "AGENTRY_LLM_BASE_URL is not set: the assistant needs an OpenAI-compatible \
                     chat-completions endpoint (e.g. https://api.openai.com/v1 or \
                     http://localhost:11434/v1)"
                        .into(),
                ));
            };
            let agent =
                agentry_assistant::Assistant::new(cfg).map_err(AgentsError::AssistantSettings)?;
            Ok(agent.into())
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

/// Builds the agent of `kind`, or says why it is off.
pub fn build(kind: &str, settings: &Settings) -> Result<Built, AgentsError> {
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
    /// Base URL of an OpenAI-compatible API for the assistant, e.g.
    /// `https://api.openai.com/v1` or `http://localhost:11434/v1`
    /// (`/chat/completions` is appended). Without it the assistant is not started.
    #[arg(long = "llm-base-url", env = "AGENTRY_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// API key sent to the LLM endpoint as a bearer token (optional).
    #[arg(long = "llm-api-key", env = "AGENTRY_LLM_API_KEY", hide_env_values = true, value_parser = agentry_assistant::ApiKey::parse)]
    pub llm_api_key: Option<agentry_assistant::ApiKey>,
    /// Model the assistant asks when a task names none, e.g. `gpt-4o-mini`.
    #[arg(long = "llm-model", env = "AGENTRY_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// Deadline of one chat-completion call, e.g. `60s` [default: 120s].
    #[arg(long = "llm-timeout", env = "AGENTRY_LLM_TIMEOUT", value_parser = parse_duration)]
    pub llm_timeout: Option<Duration>,
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

    /// The assistant configuration these settings describe; `None` without
    /// an LLM base URL (the kind is then off).
    pub fn assistant_config(&self) -> Option<agentry_assistant::Config> {
        let base = self
            .llm_base_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())?;
        let mut cfg = agentry_assistant::Config::new(base.trim());
        cfg.api_key = self.llm_api_key.clone().filter(|k| !k.0.is_empty());
        cfg.model = self.llm_model.clone().filter(|m| !m.trim().is_empty());
        if let Some(t) = self.llm_timeout {
            cfg.llm_timeout = t;
        }
        Some(cfg)
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
