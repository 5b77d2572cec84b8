//! Distributed traces: one span per hop, exported over OTLP, one trace from
//! the client's `traceparent` to the last workflow step.
//!
//! - [`context`]: the W3C `traceparent` carried in the CloudEvent
//!   `traceparent` extension, child contexts, derived span ids;
//! - [`export`]: [`init`] reads the standard `OTEL_*` variables and installs
//!   the OTLP exporter (HTTP/protobuf or gRPC) behind the batch processor;
//!   without `OTEL_EXPORTER_OTLP_ENDPOINT` nothing is installed;
//! - [`span`]: [`Span`], built with the OpenTelemetry API and handed to the
//!   batch processor directly (no `tracing` layer on the hot path);
//! - [`tls`]: TLS to the collector from the standard certificate variables,
//!   and the OTLP/HTTP client;
//! - `watch`: failed exports logged, their spans dropped and counted
//!   ([`dropped_counter`]).
//!
//! Each hop starts its span from the `traceparent` it received and sends
//! the next hop its own span's context ([`Span::propagate`]); with export
//! off the incoming value is forwarded unchanged. The spans and their tree
//! are described in `docs/observability.md`.

pub mod context;
pub mod export;
pub mod span;
pub mod tls;
mod watch;

pub use context::{TraceParent, derived_span_id, new_span_id};
pub use export::{Guard, Protocol, Settings, TraceError, enabled, init};
pub use span::{Kind, Span, attr};
pub use watch::{dropped_counter, dropped_spans};
