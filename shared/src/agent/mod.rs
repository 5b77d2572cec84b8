//! The SDK for writing agents, and the runtime that hosts them.
//!
//! An agent is a type implementing [`Agent`]: it declares its kind, version
//! and capabilities, and handles one task at a time (the runtime runs many
//! concurrently, bounded by its capacity). The [`runtime`] does the rest:
//! registration and heartbeats, pulling from `cap-<capability>` consumers,
//! input validation, progress for long work, timeouts, results, retries
//! with backoff, the DLQ, the `$SRV` service API, A2A and graceful drain.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::id::{Capability, RequestId};

mod attempts;
mod context;
mod metrics;
pub mod runtime;
mod service;
mod spans;
mod worker;

pub use context::{A2A_ID_HEADER, A2A_TENANT_HEADER, A2aError, Context};
pub use runtime::{Config, run};

/// What an agent is and what it can do.
#[derive(Debug, Clone)]
pub struct Descriptor {
    /// Agent kind, e.g. `weather` (ids are `<kind>-<hex>`).
    pub kind: String,
    pub version: String,
    pub description: String,
    pub capabilities: Vec<Capability>,
}

/// One task as the handler sees it.
#[derive(Debug, Clone)]
pub struct Task {
    pub request_id: RequestId,
    pub capability: Capability,
    pub input: Value,
    /// Delivery attempt, 1-based.
    pub attempt: u32,
    pub source: String,
    pub deadline: Option<DateTime<Utc>>,
    pub traceparent: Option<String>,
    /// Set for workflow steps.
    pub run_id: Option<String>,
    pub step_id: Option<String>,
}

/// How a handler failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    /// Transient: the runtime retries with backoff up to `max_deliver`.
    #[error("{0}")]
    Retryable(String),
    /// The task can never succeed as given: no retry.
    #[error("{message}")]
    Permanent { code: &'static str, message: String },
}

impl TaskError {
    pub fn retryable(msg: impl Into<String>) -> Self {
        Self::Retryable(msg.into())
    }
    pub fn invalid_input(msg: impl Into<String>) -> Self {
        Self::Permanent {
            code: "invalid_input",
            message: msg.into(),
        }
    }
    pub fn permanent(msg: impl Into<String>) -> Self {
        Self::Permanent {
            code: "permanent",
            message: msg.into(),
        }
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
    pub fn code(&self) -> &'static str {
        match self {
            Self::Retryable(_) => "retryable",
            Self::Permanent { code, .. } => code,
        }
    }
}

/// An agent implementation.
#[async_trait::async_trait]
pub trait Agent: Send + Sync + 'static {
    fn descriptor(&self) -> Descriptor;

    /// Handles one task. Must be idempotent by request id: delivery is at-least-once.
    async fn handle(&self, task: Task, ctx: Context) -> Result<Value, TaskError>;

    /// Optional long-running work beside task handling (e.g. consuming an
    /// event stream). Returns when `shutdown` fires; an error stops the process.
    async fn background(&self, _ctx: Context, _shutdown: CancellationToken) -> anyhow::Result<()> {
        Ok(())
    }

    /// Metrics hook: registers the agent's own Prometheus metrics on the
    /// component's registry (served on its `/metrics`, labelled with
    /// `component` and `agent_kind`). Called once, before any task or
    /// [`Agent::background`] runs. Use [`crate::telemetry::register`], which
    /// logs instead of failing on a duplicate name.
    fn register_metrics(&self, _registry: &prometheus::Registry) {}

    /// Upper bound for one task of this agent when the request sets none.
    fn default_timeout(&self) -> Duration {
        Duration::from_secs(300)
    }
}
