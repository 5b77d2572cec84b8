//! Spans written straight to OTLP protobuf: a live span is its context,
//! its times and one byte buffer into which its name, attributes and
//! status are encoded as they are set ([`super::wire`]); ending it appends
//! the ids and times and copies the bytes into the batch queue
//! ([`super::batch`]). Names and values are borrowed, never joined into a
//! `String` first. A span that is off (no exporter) or not sampled is a
//! `None` and costs one branch per call.

use std::time::SystemTime;

use opentelemetry::trace::SpanId;

use super::context::{TraceParent, new_span_id, new_trace_id};
use super::export::pipeline;
use super::wire::{self, AttrValue, Text};

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

/// The span kinds of the OTLP data model (the discriminants are OTLP's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

/// One span; exported when dropped (or [`Span::end`]). Off or unsampled,
/// every method is a no-op and [`Span::context`] is `None`: callers then
/// forward the incoming `traceparent` unchanged.
#[must_use = "a span is exported when it is dropped"]
pub struct Span(Option<Box<Live>>);

struct Live {
    ctx: TraceParent,
    /// The parent span and whether it is in another process.
    parent: Option<(SpanId, bool)>,
    kind: Kind,
    start: SystemTime,
    end: Option<SystemTime>,
    /// The encoded `Span` fields so far: name, attributes, status.
    buf: Vec<u8>,
}

/// Room for a span with a dozen short attributes without growing.
const SPAN_BYTES: usize = 512;

impl Live {
    /// A recording span named `name`.
    fn start(
        name: &(impl Text + ?Sized),
        kind: Kind,
        ctx: TraceParent,
        parent: Option<(SpanId, bool)>,
        start: SystemTime,
    ) -> Span {
        let mut buf = Vec::with_capacity(SPAN_BYTES);
        wire::name(&mut buf, name);
        Span(Some(Box::new(Live {
            ctx,
            parent,
            kind,
            start,
            end: None,
            buf,
        })))
    }
}

impl Span {
    /// A span that records nothing.
    pub const fn none() -> Self {
        Span(None)
    }

    /// Starts a span whose parent is the `traceparent` that arrived with a
    /// message (a new trace when there is none or it is invalid); the
    /// configured sampler decides (`parentbased_always_on` by default).
    /// `name` is borrowed: a `&str` or [`super::Joined`] parts.
    pub fn start(name: impl Text, kind: Kind, parent: Option<&str>) -> Self {
        let Some(p) = pipeline() else {
            return Span(None);
        };
        let parent = parent.and_then(TraceParent::parse);
        let trace_id = parent.map_or_else(new_trace_id, |p| p.trace_id);
        if !p.sampler.sample(parent.map(|p| p.sampled), trace_id) {
            return Span(None);
        }
        let ctx = TraceParent {
            trace_id,
            span_id: new_span_id(),
            sampled: true,
        };
        Live::start(
            &name,
            kind,
            ctx,
            parent.map(|p| (p.span_id, true)),
            SystemTime::now(),
        )
    }

    /// A span known in advance, recorded after the fact: its id is given
    /// (see [`super::derived_span_id`]) and so is its start. It records
    /// when export is on and `parent` is sampled.
    pub fn at(
        name: impl Text,
        kind: Kind,
        parent: TraceParent,
        span_id: SpanId,
        start: SystemTime,
    ) -> Self {
        Self::at_with(name, kind, parent, false, span_id, start)
    }

    /// [`Span::at`] for a parent in another process (a context that
    /// arrived with a message).
    pub fn at_remote(
        name: impl Text,
        kind: Kind,
        parent: TraceParent,
        span_id: SpanId,
        start: SystemTime,
    ) -> Self {
        Self::at_with(name, kind, parent, true, span_id, start)
    }

    fn at_with(
        name: impl Text,
        kind: Kind,
        parent: TraceParent,
        remote: bool,
        span_id: SpanId,
        start: SystemTime,
    ) -> Self {
        if pipeline().is_none() || !parent.sampled {
            return Span(None);
        }
        Live::start(
            &name,
            kind,
            parent.child(span_id),
            Some((parent.span_id, remote)),
            start,
        )
    }

    /// A child of this span in the same process, starting now (recording
    /// iff this one is).
    pub fn child(&self, name: impl Text, kind: Kind) -> Self {
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

    /// The context of this span's parent (remote or local), when it has one.
    pub fn parent(&self) -> Option<TraceParent> {
        let l = self.0.as_ref()?;
        let (span_id, _) = l.parent?;
        Some(l.ctx.child(span_id))
    }

    /// This span's `traceparent`, or `incoming` unchanged when it does not
    /// record (export off or not sampled): what the next hop should get.
    pub fn propagate(&self, incoming: Option<&str>) -> Option<String> {
        match &self.0 {
            Some(l) => Some(l.ctx.header()),
            None => incoming.map(str::to_owned),
        }
    }

    /// Sets an attribute (no-op when not recording): text (`&str`,
    /// `String`, [`super::Joined`]), `i64` or `bool`, encoded at once.
    #[inline]
    pub fn set(&mut self, key: &'static str, value: impl AttrValue) {
        if let Some(l) = &mut self.0 {
            wire::attribute(&mut l.buf, key, &value);
        }
    }

    /// Sets an attribute computed only when recording.
    #[inline]
    pub fn set_with<V: AttrValue>(&mut self, key: &'static str, value: impl FnOnce() -> V) {
        if let Some(l) = &mut self.0 {
            wire::attribute(&mut l.buf, key, &value());
        }
    }

    /// The messaging attributes of the conventions: system `nats`, the
    /// subject, the message id (the request id) and the operation type.
    pub fn messaging(&mut self, operation: &'static str, destination: &str, message_id: &str) {
        if let Some(l) = &mut self.0 {
            let b = &mut l.buf;
            wire::attribute(b, attr::MESSAGING_SYSTEM, "nats");
            wire::attribute(b, attr::MESSAGING_DESTINATION, destination);
            wire::attribute(b, attr::MESSAGING_MESSAGE_ID, message_id);
            wire::attribute(b, attr::MESSAGING_OPERATION_TYPE, operation);
        }
    }

    /// Marks the span failed with `code` (`error.type`) and a description.
    pub fn fail(&mut self, code: &str, description: impl AsRef<str>) {
        if let Some(l) = &mut self.0 {
            wire::attribute(&mut l.buf, attr::ERROR_TYPE, code);
            wire::error_status(&mut l.buf, description.as_ref());
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

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Drop for Span {
    fn drop(&mut self) {
        let (Some(live), Some(p)) = (self.0.take(), pipeline()) else {
            return;
        };
        let Live {
            ctx,
            parent,
            kind,
            start,
            end,
            mut buf,
        } = *live;
        let end = end.unwrap_or_else(SystemTime::now).max(start);
        wire::finish(
            &mut buf,
            &wire::Ends {
                trace_id: ctx.trace_id.to_bytes(),
                span_id: ctx.span_id.to_bytes(),
                parent: parent.map(|(id, _)| id.to_bytes()),
                remote_parent: parent.is_some_and(|(_, remote)| remote),
                kind: kind as u8,
                start_unix_nano: unix_nanos(start),
                end_unix_nano: unix_nanos(end),
            },
        );
        p.queue.push(&buf);
    }
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Span(off)"),
            Some(l) => write!(f, "Span({:?} {})", l.kind, l.ctx),
        }
    }
}
