//! CloudEvents 1.0 <-> NATS message binding for `async-nats`, on the
//! `cloudevents-sdk` types.
//!
//! Both content modes of the CloudEvents NATS protocol binding are decoded:
//! - structured: `Content-Type: application/cloudevents+json`, the body is the
//!   JSON event format (also accepted without the header when the body is a
//!   JSON object carrying `specversion` and no `ce-*` header is present);
//! - binary: every attribute in a `ce-<name>` header (values percent-encoded),
//!   including `ce-datacontenttype`; a plain `Content-Type` is the fallback
//!   when `ce-datacontenttype` is absent, and a conflict between the two is
//!   rejected.
//!
//! Outbound events use binary mode unless structured is asked for.
//!
//! Module map: [`decode`] (message -> [`Decoded`], with [`DecodeError`]),
//! [`encode`] (event -> message, and the hot-path [`Outbound`] builder),
//! [`read`] (data and extension accessors, hints from undecodable messages).

mod decode;
mod encode;
mod error;
mod read;

pub use decode::decode;
pub use encode::{Outbound, encode, new_event, set_binary_extension};
pub use error::{AttributeError, DataError, DecodeError, EncodeError, EncodingError};
pub use read::{
    data_json, ext_i64, ext_ref, ext_str, request_id_hint, source_hint, take_data_json,
    traceparent_hint,
};

use cloudevents::Event;

pub const SPEC_VERSION: &str = "1.0";
pub const TYPE_PREFIX: &str = "io.agentry.";
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
pub const JSON: &str = "application/json";

/// Event types (`io.agentry.*`).
pub mod types {
    pub const TASK_REQUESTED: &str = "io.agentry.task.requested";
    pub const WORKFLOW_REQUESTED: &str = "io.agentry.workflow.requested";
    pub const WORKFLOW_SIGNAL: &str = "io.agentry.workflow.signal";
    pub const WORKFLOW_CANCEL: &str = "io.agentry.workflow.cancel";
    pub const TASK_COMPLETED: &str = "io.agentry.task.completed";
    pub const TASK_FAILED: &str = "io.agentry.task.failed";
    pub const WORKFLOW_COMPLETED: &str = "io.agentry.workflow.completed";
    pub const WORKFLOW_FAILED: &str = "io.agentry.workflow.failed";
    pub const WORKFLOW_CANCELLED: &str = "io.agentry.workflow.cancelled";
    pub const WORKFLOW_TIMED_OUT: &str = "io.agentry.workflow.timed_out";
    pub const REQUEST_REJECTED: &str = "io.agentry.request.rejected";
    pub const AGENT_REGISTERED: &str = "io.agentry.agent.registered";
    pub const AGENT_HEARTBEAT: &str = "io.agentry.agent.heartbeat";
    pub const AGENT_DEREGISTERED: &str = "io.agentry.agent.deregistered";
    pub const AGENT_EXPIRED: &str = "io.agentry.agent.expired";
    pub const TASK_DEAD_LETTERED: &str = "io.agentry.task.dead_lettered";
    pub const DLQ_REPLAYED: &str = "io.agentry.dlq.replayed";
    pub const SECURITY_INCIDENT: &str = "io.agentry.security.incident";
    pub const ESCALATION_CREATED: &str = "io.agentry.escalation.created";
    pub const SOURCE_QUARANTINED: &str = "io.agentry.source.quarantined";
    pub const SOURCE_RELEASED: &str = "io.agentry.source.released";
    pub const REQUEST_ACCEPTED: &str = "io.agentry.request.accepted";
}

/// Extension attribute names used by agentry.
pub mod ext {
    /// Subject the result of a task goes to (set by the engine only).
    pub const REPLYTO: &str = "replyto";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// Original request id of a DLQ replay.
    pub const REPLAYOF: &str = "replayof";
    /// Absolute deadline of a task, milliseconds since the Unix epoch.
    pub const DEADLINE: &str = "deadline";
    /// Workflow run a step task belongs to.
    pub const RUNID: &str = "runid";
    /// Step id within the run.
    pub const STEPID: &str = "stepid";
    /// The attempt of the step (1-based) or the request.
    pub const ATTEMPT: &str = "attempt";
    /// The request id a result answers.
    pub const REQUESTID: &str = "requestid";
    /// Tenant a task or step belongs to (set by the engine only, from the
    /// subject the request arrived on; a client's own value is never trusted).
    pub const TENANT: &str = "tenant";
}

/// NATS header names outside the `ce-` namespace.
pub mod header {
    pub const MSG_ID: &str = "Nats-Msg-Id";
    pub const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
    /// On a direct get's answer: the subject the message was stored on.
    pub const NATS_SUBJECT: &str = "Nats-Subject";
    /// On a batched direct get's end-of-batch status: messages not sent.
    pub const NATS_NUM_PENDING: &str = "Nats-Num-Pending";
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// A binary-mode event's id (the request id of a request).
    pub const CE_ID: &str = "ce-id";
    /// A binary-mode event's type.
    pub const CE_TYPE: &str = "ce-type";
    pub const DLQ_REASON: &str = "Agentry-Dlq-Reason";
    pub const DLQ_DETAIL: &str = "Agentry-Dlq-Detail";
    pub const DLQ_SUBJECT: &str = "Agentry-Dlq-Subject";
    pub const DLQ_STREAM: &str = "Agentry-Dlq-Stream";
    pub const DLQ_SEQ: &str = "Agentry-Dlq-Seq";
    pub const DLQ_ATTEMPTS: &str = "Agentry-Dlq-Attempts";
    pub const DLQ_REQUEST_ID: &str = "Agentry-Dlq-Request-Id";
    pub const DLQ_SOURCE: &str = "Agentry-Dlq-Source";
    pub const DLQ_HEADERS: &str = "Agentry-Dlq-Headers";
}

/// Size and shape limits applied before anything is parsed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_payload: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 1024 * 1024,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Binary,
    Structured,
}

/// A decoded event and the mode it arrived in.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub event: Event,
    pub mode: Mode,
}

#[cfg(test)]
mod tests;
