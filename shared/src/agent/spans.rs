//! The agent runtime's spans (docs/observability.md, "Traces"): for each
//! task delivery the time it waited in its queue and its execution, both
//! children of the `traceparent` the task carried (a step span, or the
//! engine's send span); and both sides of an A2A call. Off (no exporter),
//! nothing here allocates: the incoming `traceparent` is passed on as is.
//! On, names and values are borrowed ([`Joined`] parts), never formatted.

use std::time::{Duration, SystemTime};

use async_nats::jetstream;

use crate::event::{self, ext};
use crate::id::{AgentId, Capability, RequestId};
use crate::subject;
use crate::trace::{self, Joined, Kind, Span, attr};

/// The execution span of one task delivery and the `traceparent` the
/// handler's own messages (results, child tasks, A2A calls) carry. Also
/// records the queue wait (publish time to now) beside it.
pub(crate) fn execution(
    msg: &jetstream::Message,
    cap: &Capability,
    request_id: &RequestId,
    incoming: Option<String>,
    delivery: u64,
    decoded: &cloudevents::Event,
) -> (Span, Option<String>) {
    if !trace::enabled() {
        return (Span::none(), incoming);
    }
    let dest = msg.subject.as_str();
    let mut span = Span::start(
        Joined("process ", dest),
        Kind::Consumer,
        incoming.as_deref(),
    );
    if !span.is_recording() {
        return (span, incoming);
    }
    span.messaging("process", dest, request_id.as_str());
    span.set(
        attr::MESSAGING_CONSUMER_GROUP,
        Joined(subject::TASK_CONSUMER_PREFIX, cap.as_str()),
    );
    span.set(attr::MESSAGING_DELIVERY_COUNT, delivery as i64);
    span.set(attr::CAPABILITY, cap.as_str());
    if let Some(s) = event::ext_ref(decoded, ext::STEPID) {
        span.set(attr::STEP_ID, s);
    }
    // The wait is a sibling of the execution: a child of the task's parent
    // (the sender's span, in another process).
    if let (Some(parent), Ok(info)) = (span.parent(), msg.info()) {
        let nanos = u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0);
        let published = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
        let mut wait = Span::at_remote(
            Joined("wait ", dest),
            Kind::Internal,
            parent,
            trace::new_span_id(),
            published,
        );
        wait.messaging("receive", dest, request_id.as_str());
        wait.set(attr::MESSAGING_DELIVERY_COUNT, delivery as i64);
        wait.end();
    }
    let tp = span.propagate(incoming.as_deref());
    (span, tp)
}

/// The client span of an A2A call to `subject` made by agent `from`; its
/// context goes in the request's `traceparent` header. `message_id` is the
/// call's id (header `agentry-request-id`).
pub(crate) fn a2a_call(
    subject: &str,
    message_id: &str,
    from: &AgentId,
    incoming: Option<&str>,
) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let mut span = Span::start("a2a call", Kind::Client, incoming);
    span.messaging("send", subject, message_id);
    span.set(attr::AGENT_ID, from.as_str());
    span
}

/// The server span of an A2A request agent `me` answers on `subject`.
pub(crate) fn a2a_handle(
    subject: &str,
    message_id: &str,
    me: &AgentId,
    incoming: Option<&str>,
) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let mut span = Span::start("a2a handle", Kind::Server, incoming);
    span.messaging("process", subject, message_id);
    span.set(attr::AGENT_ID, me.as_str());
    span
}
