//! The `assistant` agent: a goal in plain language becomes real work
//! across the system. It asks an OpenAI-compatible chat-completions
//! endpoint what to do, offering every live capability as a tool; each
//! tool call the model makes is delegated to the live agents through
//! `agentry.requests` (queued, retried, rate limited and traced like any
//! request of the task's tenant), its result (or its error) goes back to
//! the model as a `tool` message, and the loop ends with the model's answer
//! or when the step budget is spent.
//!
//! Input `{goal, tools?, max_steps?, model?}`, output `{answer, model,
//! steps: [{tool, input, output | error, ms}], usage}`
//! (`schemas/capabilities/assistant.*.json`).
//!
//! Module map: [`llm`] (the endpoint's wire types and one call),
//! [`tools`] (registry records -> tool specs), [`conversation`] (the
//! messages, steps, usage and budget of one goal, no I/O), [`agent`] (the
//! runtime side: the loop, delegation, errors), [`metrics`].
//!
//! Configuration comes from `AGENTRY_LLM_BASE_URL` (the endpoint's base,
//! usually ending in `/v1`), `AGENTRY_LLM_API_KEY` and `AGENTRY_LLM_MODEL`
//! (the default model). Without a base URL the kind is not started.

use std::fmt;
use std::time::Duration;

pub mod agent;
pub mod conversation;
pub mod llm;
pub mod metrics;
pub mod tools;

pub use agent::{Assistant, AssistantError};

/// The capability this agent serves.
pub const CAPABILITY: &str = "assistant";
/// Tool calls per goal when the task does not say.
pub const DEFAULT_MAX_STEPS: u32 = 8;
/// The most tool calls a task may allow.
pub const MAX_STEPS: u32 = 32;

/// The endpoint's API key; its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl ApiKey {
    /// For `clap`'s `value_parser`.
    pub fn parse(s: &str) -> Result<Self, std::convert::Infallible> {
        Ok(Self(s.to_owned()))
    }
}

/// How the assistant reaches its LLM and the agents.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the OpenAI-compatible API, e.g. `https://api.openai.com/v1`
    /// or `http://localhost:11434/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<ApiKey>,
    /// The model when a task names none.
    pub model: Option<String>,
    /// Deadline of one chat-completion call.
    pub llm_timeout: Duration,
    /// Deadline of one delegated tool call (less when the task's own
    /// deadline is nearer).
    pub tool_timeout: Duration,
}

impl Config {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: None,
            llm_timeout: Duration::from_secs(120),
            tool_timeout: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_redacted() {
        let mut c = Config::new("http://h/v1");
        c.api_key = Some(ApiKey("sk-secret".into()));
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
