//! Distributed traces: one span per hop, exported over OTLP, one trace from
//! the client's `traceparent` to the last workflow step.
//!
//! - [`context`]: the W3C `traceparent` carried in the CloudEvent
//!   `traceparent` extension, child contexts, derived span ids;
//! - [`span`]: [`Span`], encoded to OTLP protobuf as it is built, from
//!   borrowed names and values ([`Joined`] parts, no `format!`);
//! - `wire`: the hand-written protobuf encoding of spans and export requests;
//! - `batch`: the bounded queue of encoded spans and the export thread's
//!   loop (a full queue drops and counts, never blocks);
//! - `transport`: OTLP/HTTP (protobuf) or OTLP/gRPC to the collector;
//! - [`tls`]: TLS to the collector from the standard certificate variables;
//! - [`export`]: [`init`] reads the standard `OTEL_*` variables
//!   ([`Settings`], [`sampler`]) and starts the pipeline; without
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` nothing is built;
//! - `watch`: dropped spans counted ([`dropped_counter`]), failed exports
//!   logged.
//!
//! Each hop starts its span from the `traceparent` it received and sends
//! the next hop its own span's context ([`Span::propagate`]); with export
//! off the incoming value is forwarded unchanged. The spans and their tree
//! are described in `docs/observability.md`.

mod batch;
pub mod context;
pub mod export;
pub mod sampler;
mod settings;
pub mod span;
pub mod tls;
mod transport;
mod watch;
mod wire;

pub use batch::Limits;
pub use context::{TraceParent, derived_span_id, derived_span_id_of, new_span_id};
pub use export::{Guard, enabled, init};
pub use sampler::Sampler;
pub use settings::{Protocol, Settings, TraceError};
pub use span::{Kind, Span, attr};
pub use watch::{dropped_counter, dropped_spans};
pub use wire::{AttrValue, Joined, Text};
