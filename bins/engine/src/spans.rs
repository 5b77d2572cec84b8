//! The engine's spans (docs/observability.md, "Traces"): the intake of
//! each request, the send of a routed task, a workflow run as a whole and
//! each of its steps.
//!
//! A run outlives any one message and may move between replicas, so its
//! spans are recorded after the fact with ids derived from the run key
//! ([`agentry::trace::derived_span_id`]): a step task carries its step
//! span's context from the moment it is dispatched, and whichever replica
//! records the settled step or the ended run uses the same ids. With export
//! off every function returns the stored `traceparent` unchanged.

use std::borrow::Cow;
use std::time::SystemTime;

use agentry::id::Capability;
use agentry::trace::{self, Joined, Kind, Span, TraceParent, attr, derived_span_id_of};
use agentry::workflow::state::RunState;
use chrono::{DateTime, Utc};

use crate::validate::{Arrived, Rejection};

/// The span of one request's intake (decode, checks, routing or run start),
/// a consumer span under the client's `traceparent`.
pub(crate) fn intake(
    subject: &str,
    request_id: &str,
    traceparent: Option<&str>,
    tenant: Option<&str>,
) -> Span {
    let mut span = Span::start("process agentry.requests", Kind::Consumer, traceparent);
    if span.is_recording() {
        span.messaging("process", subject, request_id);
        if let Some(t) = tenant {
            span.set(attr::TENANT, t);
        }
    }
    span
}

/// The intake span of a request refused before its intake span started
/// (undecodable, bad input, rate limited, quarantined): a child of the
/// client's `traceparent` where one could be read, failed with the reason.
pub(crate) fn rejected(subject: &str, r: &Rejection) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let mut span = Span::start(
        "process agentry.requests",
        Kind::Consumer,
        r.traceparent.as_deref(),
    );
    let id = r.id.as_ref().map_or("", |i| i.as_str());
    span.messaging("process", subject, id);
    if let Arrived::Under(Some(t)) = &r.arrived {
        span.set(attr::TENANT, t.as_str());
    }
    refuse(&mut span, r);
    span
}

/// Marks an intake span refused: status error, `error.type` and
/// `agentry.rejection.reason` = the reason, the detail as description.
pub(crate) fn refuse(span: &mut Span, r: &Rejection) {
    if !span.is_recording() {
        return;
    }
    span.set(attr::REJECTION_REASON, r.reason.as_str());
    span.fail(r.reason.as_str(), &r.detail);
}

/// The producer span of a task routed to `subject` (`agentry.tasks.<cap>`),
/// a child of the intake span `intake` (in this process); none when the
/// intake span does not record.
pub(crate) fn send(
    cap: &Capability,
    subject: &str,
    intake: Option<TraceParent>,
    request_id: &str,
) -> Span {
    let Some(parent) = intake else {
        return Span::none();
    };
    let mut span = Span::at(
        Joined("send ", subject),
        Kind::Producer,
        parent,
        trace::new_span_id(),
        SystemTime::now(),
    );
    span.messaging("send", subject, request_id);
    span.set(attr::CAPABILITY, cap.as_str());
    span
}

/// `true` when spans are exported.
pub(crate) fn enabled() -> bool {
    trace::enabled()
}

/// The run span's context: a child of the stored `traceparent` (the intake
/// span that started the run) with an id derived from the run key.
fn run_context(stored: Option<&str>, run_key: &str) -> Option<TraceParent> {
    if !trace::enabled() {
        return None;
    }
    let parent = TraceParent::parse(stored?)?;
    Some(parent.child(derived_span_id_of(parent.trace_id, &["run/", run_key])))
}

fn step_context(run: &TraceParent, run_key: &str, step: &str) -> TraceParent {
    run.child(derived_span_id_of(
        run.trace_id,
        &["step/", run_key, "/", step],
    ))
}

/// The `traceparent` of a run's lifecycle events and result: its run span.
pub(crate) fn run_traceparent<'a>(stored: Option<&'a str>, run_key: &str) -> Option<Cow<'a, str>> {
    match run_context(stored, run_key) {
        Some(ctx) => Some(Cow::Owned(ctx.header())),
        None => stored.map(Cow::Borrowed),
    }
}

/// The `traceparent` a task (or child run) of `step` carries: its step span.
pub(crate) fn step_traceparent<'a>(
    stored: Option<&'a str>,
    run_key: &str,
    step: &str,
) -> Option<Cow<'a, str>> {
    match run_context(stored, run_key) {
        Some(run) => Some(Cow::Owned(step_context(&run, run_key, step).header())),
        None => stored.map(Cow::Borrowed),
    }
}

fn system_time(t: DateTime<Utc>) -> SystemTime {
    SystemTime::from(t)
}

/// Records the spans a committed transition of `state` closed: each step
/// that settled (`steps`) and, when `finished`, the run itself.
pub(crate) fn record<'a>(
    state: &RunState,
    steps: impl IntoIterator<Item = &'a String>,
    finished: bool,
) {
    let Some(run) = run_context(state.traceparent.as_deref(), &state.run_id) else {
        return;
    };
    let now = Utc::now();
    for step in steps {
        let Some(rec) = state.steps.get(step) else {
            continue;
        };
        let start = rec
            .started_at
            .or(rec.unit.attempt_started_at)
            .unwrap_or(now);
        let ctx = step_context(&run, &state.run_id, step);
        let mut span = Span::at(
            Joined("step ", step),
            Kind::Internal,
            run,
            ctx.span_id,
            system_time(start),
        );
        span.set(attr::RUN_ID, state.run_id.as_str());
        span.set(attr::STEP_ID, step.as_str());
        span.set(attr::ATTEMPT, i64::from(rec.unit.attempt));
        span.set(attr::STATUS, rec.unit.status.as_str());
        if let Some(cap) = &rec.capability {
            span.set(attr::CAPABILITY, cap.as_str());
        }
        if let Some(e) = &rec.unit.error {
            span.fail(&e.code, &e.message);
        }
        span.end_at(system_time(rec.unit.ended_at.unwrap_or(now)));
    }
    if !finished {
        return;
    }
    let Some(parent) = state.traceparent.as_deref().and_then(TraceParent::parse) else {
        return;
    };
    let mut span = Span::at(
        Joined("workflow ", &state.workflow),
        Kind::Internal,
        parent,
        run.span_id,
        system_time(state.created_at),
    );
    span.set(attr::RUN_ID, state.run_id.as_str());
    span.set(attr::WORKFLOW, state.definition.as_str());
    span.set(attr::STATUS, state.status.as_str());
    if let Some(t) = &state.tenant {
        span.set(attr::TENANT, t.as_str());
    }
    if let Some(e) = &state.error {
        span.fail(&e.code, &e.message);
    }
    span.end_at(system_time(state.ended_at.unwrap_or(now)));
}
