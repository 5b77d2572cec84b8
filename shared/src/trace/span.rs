//! Spans built with the OpenTelemetry API and handed straight to the batch
//! processor: no `tracing` layer and no per-span registry work on the hot
//! path. A span that is off (no exporter) or not sampled is a `None` and
//! costs one branch per call.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceState,
};
use opentelemetry::{Context, Key, KeyValue, Value};
use opentelemetry_sdk::trace::{SamplingDecision, SpanData, SpanEvents, SpanLinks};

use super::context::{TraceParent, new_span_id, new_trace_id};
use super::export::pipeline;

/// Semantic-convention attribute keys used by agentry's spans.
pub mod attr {
    /// `nats` on every messaging span.
    pub const MESSAGING_SYSTEM: &str = "messaging.system";
    /// The subject a message was published to or received from.
    pub const MESSAGING_DESTINATION: &str = "messaging.destination.name";
    /// The request id (the CloudEvent id of the request or task).
    pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
    /// `process`, `send`, `receive`.
    pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";
    /// The durable consumer a task was pulled from.
    pub const MESSAGING_CONSUMER_GROUP: &str = "messaging.consumer.group.name";
    /// JetStream delivery count of the message being processed.
    pub const MESSAGING_DELIVERY_COUNT: &str = "messaging.nats.message.delivery_count";
    pub const CAPABILITY: &str = "agentry.capability";
    pub const TENANT: &str = "agentry.tenant";
    pub const RUN_ID: &str = "agentry.run_id";
    pub const STEP_ID: &str = "agentry.step_id";
    pub const ATTEMPT: &str = "agentry.attempt";
    pub const WORKFLOW: &str = "agentry.workflow";
    pub const STATUS: &str = "agentry.status";
    pub const AGENT_ID: &str = "agentry.agent_id";
    /// Set on the intake span of a request the engine refused: the reason.
    pub const REJECTION_REASON: &str = "agentry.rejection.reason";
    /// Set on failed spans: the error code (`error.type` in the conventions).
    pub const ERROR_TYPE: &str = "error.type";
}

pub use opentelemetry::trace::SpanKind as Kind;

/// One span; exported when dropped (or [`Span::end`]). Off or unsampled,
/// every method is a no-op and [`Span::context`] is `None`: callers then
/// forward the incoming `traceparent` unchanged.
#[must_use = "a span is exported when it is dropped"]
pub struct Span(Option<Box<Live>>);

struct Live {
    ctx: TraceParent,
    parent: SpanId,
    remote_parent: bool,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    end: Option<SystemTime>,
    attrs: Vec<KeyValue>,
    status: Status,
}

impl Span {
    /// A span that records nothing.
    pub const fn none() -> Self {
        Span(None)
    }

    /// Starts a span whose parent is the `traceparent` that arrived with a
    /// message (a new trace when there is none or it is invalid); the
    /// configured sampler decides (`parentbased_always_on` by default).
    pub fn start(name: impl Into<Cow<'static, str>>, kind: Kind, parent: Option<&str>) -> Self {
        let Some(p) = pipeline() else {
            return Span(None);
        };
        let name = name.into();
        let parent = parent.and_then(TraceParent::parse);
        let trace_id = parent.map_or_else(new_trace_id, |p| p.trace_id);
        let cx = parent.map(|p| {
            let flags = if p.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            Context::new().with_remote_span_context(SpanContext::new(
                p.trace_id,
                p.span_id,
                flags,
                true,
                TraceState::NONE,
            ))
        });
        let decision = p
            .sampler
            .should_sample(cx.as_ref(), trace_id, &name, &kind, &[], &[]);
        if decision.decision != SamplingDecision::RecordAndSample {
            return Span(None);
        }
        Span(Some(Box::new(Live {
            ctx: TraceParent {
                trace_id,
                span_id: new_span_id(),
                sampled: true,
            },
            parent: parent.map_or(SpanId::INVALID, |p| p.span_id),
            remote_parent: parent.is_some(),
            kind,
            name,
            start: SystemTime::now(),
            end: None,
            attrs: Vec::with_capacity(8),
            status: Status::Unset,
        })))
    }

    /// A span known in advance, recorded after the fact: its id is given
    /// (see [`super::derived_span_id`]) and so is its start. It records
    /// when export is on and `parent` is sampled.
    pub fn at(
        name: impl Into<Cow<'static, str>>,
        kind: Kind,
        parent: TraceParent,
        span_id: SpanId,
        start: SystemTime,
    ) -> Self {
        if pipeline().is_none() || !parent.sampled {
            return Span(None);
        }
        Span(Some(Box::new(Live {
            ctx: parent.child(span_id),
            parent: parent.span_id,
            remote_parent: false,
            kind,
            name: name.into(),
            start,
            end: None,
            attrs: Vec::with_capacity(8),
            status: Status::Unset,
        })))
    }

    /// A child of this span in the same process (recording iff this one is).
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: Kind) -> Self {
        match &self.0 {
            None => Span(None),
            Some(live) => Span::at(name, kind, live.ctx, new_span_id(), SystemTime::now()),
        }
    }

    /// `true` when this span will be exported.
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// This span's context, to propagate as the parent of the next hop.
    #[inline]
    pub fn context(&self) -> Option<TraceParent> {
        self.0.as_ref().map(|l| l.ctx)
    }

    /// This span's `traceparent`, or `incoming` unchanged when it does not
    /// record (export off or not sampled): what the next hop should get.
    pub fn propagate(&self, incoming: Option<&str>) -> Option<String> {
        match &self.0 {
            Some(l) => Some(l.ctx.header()),
            None => incoming.map(str::to_owned),
        }
    }

    /// Sets an attribute (no-op when not recording).
    #[inline]
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(l) = &mut self.0 {
            l.attrs
                .push(KeyValue::new(Key::from_static_str(key), value));
        }
    }

    /// Sets an attribute computed only when recording.
    #[inline]
    pub fn set_with<V: Into<Value>>(&mut self, key: &'static str, value: impl FnOnce() -> V) {
        if let Some(l) = &mut self.0 {
            l.attrs
                .push(KeyValue::new(Key::from_static_str(key), value()));
        }
    }

    /// The messaging attributes of the conventions: system `nats`, the
    /// subject, the message id (the request id) and the operation type.
    pub fn messaging(&mut self, operation: &'static str, destination: &str, message_id: &str) {
        if let Some(l) = &mut self.0 {
            l.attrs.extend([
                KeyValue::new(Key::from_static_str(attr::MESSAGING_SYSTEM), "nats"),
                KeyValue::new(
                    Key::from_static_str(attr::MESSAGING_DESTINATION),
                    destination.to_owned(),
                ),
                KeyValue::new(
                    Key::from_static_str(attr::MESSAGING_MESSAGE_ID),
                    message_id.to_owned(),
                ),
                KeyValue::new(
                    Key::from_static_str(attr::MESSAGING_OPERATION_TYPE),
                    operation,
                ),
            ]);
        }
    }

    /// Marks the span failed with `code` (`error.type`) and a description.
    pub fn fail(&mut self, code: &str, description: impl Into<Cow<'static, str>>) {
        if let Some(l) = &mut self.0 {
            l.attrs.push(KeyValue::new(
                Key::from_static_str(attr::ERROR_TYPE),
                code.to_owned(),
            ));
            l.status = Status::error(description);
        }
    }

    /// Ends the span now and exports it.
    pub fn end(self) {}

    /// Ends the span at `end` (a span recorded after the fact) and exports it.
    pub fn end_at(mut self, end: SystemTime) {
        if let Some(l) = &mut self.0 {
            l.end = Some(end);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let (Some(live), Some(p)) = (self.0.take(), pipeline()) else {
            return;
        };
        let Live {
            ctx,
            parent,
            remote_parent,
            kind,
            name,
            start,
            end,
            attrs,
            status,
        } = *live;
        let end = end.unwrap_or_else(SystemTime::now).max(start);
        p.submit(SpanData {
            span_context: SpanContext::new(
                ctx.trace_id,
                ctx.span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: parent,
            parent_span_is_remote: remote_parent,
            span_kind: kind,
            name,
            start_time: start,
            end_time: end,
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: p.scope.clone(),
        });
    }
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Span(off)"),
            Some(l) => write!(f, "Span({} {})", l.name, l.ctx),
        }
    }
}
