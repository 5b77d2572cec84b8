//! The JetStream topology (DESIGN §3) as data, and its idempotent creation.
//!
//! [`Topology::new`] turns [`Settings`] into stream, consumer and bucket
//! configurations; [`ensure`] creates what is missing, updates what may be
//! updated and refuses, naming the field, an existing object whose config
//! conflicts in a way the server cannot change (e.g. retention). The same
//! configurations are written to `nats/` in `nats` CLI JSON form
//! ([`Topology::cli_files`]); a test keeps the two in step.
//!
//! Module map: [`settings`] (sizes, ages and replicas, as flags),
//! [`layout`] (settings -> [`Topology`], and its `nats` CLI form),
//! [`ensure`](mod@ensure) (create, update or refuse against a live server).

mod ensure;
mod layout;
mod settings;

pub use ensure::{Change, Report, TopologyError, ensure, ensure_task_consumer};
pub use layout::{ConsumerDef, Topology, task_consumer};
pub use settings::Settings;

/// Every built-in capability: `agentry setup` creates a `cap-<capability>`
/// consumer for each, so KEDA can scale their agents from zero.
pub const BUILTIN_CAPABILITIES: &[&str] = &[
    "echo",
    "weather_current",
    "weather_forecast",
    "plan_tasks",
    "customer_inquiry",
    "issue_resolution",
    "escalation",
    "data_processing",
    "statistical_analysis",
    "visualization",
    "threat_detection",
    "security_analysis",
    "incident_response",
    "assistant",
];

/// Built-in capabilities whose agent runs only when configured (`assistant`
/// needs `AGENTRY_LLM_BASE_URL`): `agentry check` does not require a live
/// agent for them unless asked to with `--capabilities`.
pub const OPTIONAL_CAPABILITIES: &[&str] = &["assistant"];
