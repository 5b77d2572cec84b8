//! `agentry`: the protocol and everything the agentry binaries share.
//!
//! Module map:
//! - [`id`]: validated identifiers (request, run, agent ids, capability names);
//! - [`subject`]: every subject, stream, consumer and bucket name;
//! - [`event`]: the CloudEvents <-> NATS binding (structured and binary mode);
//! - [`reason`]: the closed set of rejection and dead-letter reasons;
//! - [`topology`]: streams, consumers and buckets as data, and `ensure`;
//! - [`agent`]: the SDK for writing agents and the runtime hosting them;
//! - [`registry`]: agent records and discovery;
//! - [`publish`]: acked publishes of events: results (first one wins),
//!   step results, registry records and facts (deduplicated);
//! - [`dlq`]: dead-letter copies with their origin;
//! - [`retry`]: retry delay policies;
//! - [`ratelimit`]: per-source rate limiting (Redis or in-process);
//! - [`client`]: submit a request and wait for its one result;
//! - [`config`]: flags and `AGENTRY_*` environment shared by every binary;
//! - [`connect`]: NATS connection with auth, TLS, backoff and version check;
//! - [`consume`]: the one pull loop (bind when ready, bounded concurrency,
//!   dispositions, dead letters), KV watches that stay open, supervised tasks;
//! - [`error`]: showing an error with its causes ([`error::Chain`]);
//! - [`telemetry`]: tracing subscriber and common metrics;
//! - [`trace`]: spans per hop, W3C trace context, OTLP export;
//! - [`http`]: `/health`, `/ready`, `/metrics` for one or many components;
//! - [`liveness`]: per-loop pulses (running, failing, stalled) behind them;
//! - [`schema`]: embedded JSON Schemas, compiled once;
//! - [`shutdown`]: SIGTERM/SIGINT to a cancellation token;
//! - [`workflow`]: workflow definitions, validation and CEL;

pub mod agent;
pub mod client;
pub mod config;
pub mod connect;
pub mod consume;
pub mod dlq;
pub mod error;
pub mod event;
pub mod http;
pub mod id;
pub mod liveness;
pub mod publish;
pub mod quarantine;
pub mod ratelimit;
pub mod reason;
pub mod registry;
pub mod retry;
pub mod schema;
pub mod shutdown;
pub mod subject;
pub mod telemetry;
pub mod topology;
pub mod trace;
pub mod workflow;

pub use id::{AgentId, Capability, RequestId, RunId};
