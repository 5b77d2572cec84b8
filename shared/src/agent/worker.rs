//! One task delivery: decode, validate, run with progress and timeout,
//! publish the result, then ack; or retry, or dead-letter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use cloudevents::AttributesReader;
use serde_json::Value;
use tracing::{Instrument, info_span, warn};

use super::attempts::{self, Delivery};
use super::context::{Context, Shared};
use super::metrics::CapMetrics;
use super::{Agent, Task, TaskError};
use crate::consume::{DeadLetter, Disposition, dead_letter};
use crate::event::{self, Limits, ext, types};
use crate::id::{Capability, RequestId};
use crate::publish::{self, Published};
use crate::reason::Reason;
use crate::retry;
use crate::subject;

/// State shared by every delivery of one agent instance.
pub(crate) struct Instance {
    pub shared: Arc<Shared>,
    pub agent: Arc<dyn Agent>,
    pub max_deliver: i64,
    pub ack_wait: Duration,
    pub retry: retry::Policy,
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    pub in_flight: AtomicU64,
}

/// How a delivery ended; each settles its message one way.
enum Outcome {
    /// Result stored: ack.
    Completed,
    /// Failure recorded (result and DLQ copy): terminate.
    Failed,
    /// To be tried again after the delay: NAK.
    Retried(Duration),
    /// Deadline passed before it ran, answered: terminate.
    Skipped,
}

impl Outcome {
    fn disposition(&self) -> Disposition {
        match self {
            Outcome::Completed => Disposition::Ack,
            Outcome::Failed | Outcome::Skipped => Disposition::Term,
            Outcome::Retried(d) => Disposition::Nak(*d),
        }
    }
}

/// Handles one delivery and says how to settle it.
pub(crate) async fn process(
    inst: &Instance,
    cap: &Capability,
    m: &CapMetrics,
    msg: &jetstream::Message,
) -> Disposition {
    let attempt = msg.info().map(|i| i.delivered.max(1) as u64).unwrap_or(1);
    inst.in_flight.fetch_add(1, Ordering::Relaxed);
    m.in_flight.inc();
    let started = Instant::now();
    let outcome = run(inst, cap, msg, attempt).await;
    m.in_flight.dec();
    inst.in_flight.fetch_sub(1, Ordering::Relaxed);
    match &outcome {
        Outcome::Completed => {
            inst.processed.fetch_add(1, Ordering::Relaxed);
            m.completed.inc();
            m.duration.observe(started.elapsed().as_secs_f64());
        }
        Outcome::Failed => {
            inst.failed.fetch_add(1, Ordering::Relaxed);
            m.failed.inc();
            m.duration.observe(started.elapsed().as_secs_f64());
        }
        Outcome::Retried(_) => m.retried.inc(),
        Outcome::Skipped => m.timeout.inc(),
    }
    outcome.disposition()
}

/// The rare paths (dead letters, failures) are boxed: the common path's
/// future, moved into every delivery's task, stays small.
async fn run(inst: &Instance, cap: &Capability, msg: &jetstream::Message, attempt: u64) -> Outcome {
    let mut decoded = match event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()) {
        Ok(d) => d.event,
        Err(e) => {
            let recorded = Box::pin(dead_letter(
                inst,
                msg,
                e.reason(),
                &crate::error::chain(&e),
                None,
                None,
            ))
            .await;
            return settle_dead_letter(inst, recorded, attempt);
        }
    };
    let request_id = match RequestId::new(decoded.id()) {
        Ok(id) => id,
        Err(e) => {
            let recorded = Box::pin(dead_letter(
                inst,
                msg,
                Reason::InvalidId,
                &e.to_string(),
                None,
                None,
            ))
            .await;
            return settle_dead_letter(inst, recorded, attempt);
        }
    };
    let source = decoded.source().to_string();
    let replyto = event::ext_str(&decoded, ext::REPLYTO).unwrap_or_default();
    if !subject::is_allowed_reply(&replyto) {
        let detail =
            format!("replyto {replyto:?} is not an agentry.results.* or agentry.steps.* subject");
        let recorded = Box::pin(dead_letter(
            inst,
            msg,
            Reason::MissingAttribute,
            &detail,
            Some(&request_id),
            Some(&source),
        ))
        .await;
        return settle_dead_letter(inst, recorded, attempt);
    }
    let is_step = replyto.starts_with(subject::STEPS_PREFIX);
    let traceparent = event::ext_str(&decoded, ext::TRACEPARENT);
    let span = info_span!("task", agentry.request_id = %request_id, agentry.capability = %cap, attempt, trace = traceparent.as_deref().unwrap_or(""));
    // The execution span; what the handler sends carries its context.
    let (mut exec, traceparent) =
        super::spans::execution(msg, cap, &request_id, traceparent, attempt, &decoded);
    async {
        let input = match event::take_data_json(&mut decoded) {
            Ok(Value::Object(mut o)) => o.remove("input").unwrap_or(Value::Null),
            Ok(_) | Err(_) => Value::Null,
        };
        let deadline = event::ext_i64(&decoded, ext::DEADLINE).and_then(chrono::DateTime::from_timestamp_millis);
        let step_attempt = event::ext_i64(&decoded, ext::ATTEMPT).map(|a| a as u32);
        let reply_ctx = ReplyCtx {
            replyto: &replyto,
            request_id: &request_id,
            cap,
            decoded: &decoded,
            attempt: step_attempt.unwrap_or(attempt as u32),
        };
        let delivery = attempts::classify(attempt, inst.max_deliver);
        if delivery == Delivery::RecordOnly {
            // Every attempt was used up without an outcome (the worker crashed,
            // timed out or could not record): record it now, run nothing.
            let err = TaskError::Permanent {
                code: "retries_exhausted",
                message: format!("no outcome after {} attempts (worker crashes or timeouts?)", attempt - 1),
            };
            return Box::pin(fail(inst, msg, &reply_ctx, &err, attempt, &source, is_step, Reason::MaxDeliveries)).await;
        }
        if let Some(v) = crate::schema::global().capability_input(cap.as_str())
            && let Err(e) = crate::schema::check(v, &input)
        {
            let err = TaskError::invalid_input(format!("input does not match the {cap} schema: {e}"));
            return Box::pin(fail(inst, msg, &reply_ctx, &err, attempt, &source, is_step, Reason::SchemaInvalid)).await;
        }
        if let Some(d) = deadline
            && d <= Utc::now()
        {
            // The engine's deadline timer answers the requester; running now is wasted work.
            warn!("task deadline passed before it started, skipping");
            let err = TaskError::Permanent { code: "timeout", message: "deadline passed before an agent picked the task up".into() };
            if !publish_outcome(inst, &reply_ctx, Err(&err), Duration::ZERO).await {
                                return Outcome::Retried(record_retry(inst, attempt));
            }
            return Outcome::Skipped;
        }
        let task = Task {
            request_id: request_id.clone(),
            capability: cap.clone(),
            input,
            attempt: step_attempt.unwrap_or(attempt as u32),
            source: source.clone(),
            deadline,
            traceparent: traceparent.clone(),
            run_id: event::ext_str(&decoded, ext::RUNID),
            step_id: event::ext_str(&decoded, ext::STEPID),
        };
        // Set only by the engine (which strips any client value); an invalid one reads as none.
        let tenant = event::ext_str(&decoded, ext::TENANT).and_then(|t| subject::Tenant::new(t).ok());
        let ctx = Context { inner: inst.shared.clone(), traceparent: traceparent.clone(), request_id: Some(request_id.clone()), tenant };
        let mut limit = inst.agent.default_timeout();
        if let Some(d) = deadline {
            let left = (d - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            limit = limit.min(left);
        }
        let started = Instant::now();
        let result = with_progress(msg, inst.ack_wait, tokio::time::timeout(limit, inst.agent.handle(task, ctx))).await;
        let elapsed = started.elapsed();
        match &result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => exec.fail(e.code(), e.to_string()),
            Err(_) => exec.fail("timeout", "handler exceeded its time limit"),
        }
        match result {
            Ok(Ok(output)) => {
                // Output checks only warn; they cost about half of a task's CPU, so release
                // builds run them only when AGENTRY_VALIDATE_OUTPUT is set (debug builds always).
                if validate_outputs()
                    && let Some(v) = crate::schema::global().capability_output(cap.as_str())
                    && let Err(e) = crate::schema::check(v, &output)
                {
                    warn!(error = %e, "handler output does not match its schema");
                }
                if publish_outcome(inst, &reply_ctx, Ok(&output), elapsed).await {
                    tracing::debug!(duration_ms = elapsed.as_millis() as u64, "task completed");
                    Outcome::Completed
                } else {
                    // Result not stored (NATS trouble): let the delivery be retried.
                                        Outcome::Retried(record_retry(inst, attempt))
                }
            }
            Ok(Err(err)) => {
                if err.is_retryable() && !is_step && delivery == (Delivery::Run { last: false }) {
                    let delay = inst.retry.delay(attempt as u32);
                    warn!(error = %err, attempt, delay_ms = delay.as_millis() as u64, "task failed, retrying");
                                        return Outcome::Retried(delay);
                }
                let err = if err.is_retryable() && !is_step {
                    TaskError::Permanent { code: "retries_exhausted", message: format!("failed after {attempt} attempts: {err}") }
                } else {
                    err
                };
                Box::pin(fail(inst, msg, &reply_ctx, &err, attempt, &source, is_step, Reason::TaskFailed)).await
            }
            Err(_) => {
                let err = TaskError::Permanent { code: "timeout", message: format!("handler exceeded {limit:?}") };
                Box::pin(fail(inst, msg, &reply_ctx, &err, attempt, &source, is_step, Reason::TaskFailed)).await
            }
        }
    }
    .instrument(span)
    .await
}

/// The data of `task.completed` / `task.failed` (keys in the order a JSON
/// object map would write them).
#[derive(serde::Serialize)]
struct ResultData<'a> {
    agent_id: &'a str,
    attempts: u32,
    capability: &'a str,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a Value>,
    request_id: &'a str,
}

/// Whether handler outputs are checked against their schema (see above).
fn validate_outputs() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        cfg!(debug_assertions) || std::env::var_os("AGENTRY_VALIDATE_OUTPUT").is_some()
    })
}

struct ReplyCtx<'a> {
    replyto: &'a str,
    request_id: &'a RequestId,
    cap: &'a Capability,
    decoded: &'a cloudevents::Event,
    attempt: u32,
}

#[allow(clippy::too_many_arguments)]
async fn fail(
    inst: &Instance,
    msg: &jetstream::Message,
    rc: &ReplyCtx<'_>,
    err: &TaskError,
    attempt: u64,
    source: &str,
    is_step: bool,
    reason: Reason,
) -> Outcome {
    warn!(error = %err, code = err.code(), "task failed");
    // Dead letter first: by the time the requester sees the failure, the DLQ has it.
    // Workflow steps: the engine owns retries and dead-lettering of runs.
    if !is_step
        && !dead_letter(
            inst,
            msg,
            reason,
            &err.to_string(),
            Some(rc.request_id),
            Some(source),
        )
        .await
    {
        // Neither copy may be skipped: keep the message and try again later.
        return Outcome::Retried(record_retry(inst, attempt));
    }
    if !publish_outcome(inst, rc, Err(err), Duration::ZERO).await {
        return Outcome::Retried(record_retry(inst, attempt));
    }
    Outcome::Failed
}

/// After an undecodable task was dead-lettered (or not): terminate it only
/// when its DLQ copy is stored.
fn settle_dead_letter(inst: &Instance, recorded: bool, attempt: u64) -> Outcome {
    if recorded {
        Outcome::Failed
    } else {
        Outcome::Retried(record_retry(inst, attempt))
    }
}

/// How long a delivery whose outcome could not be recorded waits before it
/// is redelivered (grows with the delivery count; NATS is in trouble).
fn record_retry(inst: &Instance, attempt: u64) -> Duration {
    inst.retry.delay(attempt as u32).max(Duration::from_secs(1))
}

/// Publishes the completed/failed result; `true` when it is stored (or a
/// result already existed).
async fn publish_outcome(
    inst: &Instance,
    rc: &ReplyCtx<'_>,
    result: Result<&Value, &TaskError>,
    elapsed: Duration,
) -> bool {
    let agent_id = inst.shared.agent_id.as_str();
    let (ty, output, error) = match result {
        Ok(out) => (types::TASK_COMPLETED, Some(out), None),
        Err(e) => (
            types::TASK_FAILED,
            None,
            Some(publish::error_object(
                e.code(),
                &e.to_string(),
                e.is_retryable(),
            )),
        ),
    };
    let data = ResultData {
        agent_id,
        attempts: rc.attempt,
        capability: rc.cap.as_str(),
        duration_ms: elapsed.as_millis() as u64,
        error,
        output,
        request_id: rc.request_id.as_str(),
    };
    let id = uuid::Uuid::now_v7().simple().to_string();
    let mut ev = event::Outbound::new(&id, &inst.shared.source, ty);
    ev.extension(ext::REQUESTID, rc.request_id.as_str());
    for name in [ext::TRACEPARENT, ext::RUNID, ext::STEPID, ext::ATTEMPT] {
        match rc.decoded.extension(name) {
            Some(cloudevents::event::ExtensionValue::String(v)) => {
                ev.extension(name, v);
            }
            Some(other) => {
                ev.extension(name, &other.to_string());
            }
            None => {}
        }
    }
    // The reply subject too: request ids may repeat across tenants.
    let dedup = format!("res-{}-{}-{}", rc.replyto, rc.request_id, rc.attempt);
    match publish::outbound(&inst.shared.js, rc.replyto, ev, &data, &dedup).await {
        Ok(Published::Stored) => true,
        Ok(Published::DuplicateRefused) => {
            inst.shared.metrics.duplicates.inc();
            true
        }
        Err(e) => {
            warn!(error = %e, "result publish failed");
            false
        }
    }
}

/// Copies `msg` to the DLQ (the one dead-letter path, [`dead_letter::record`]);
/// `false` when the copy is not stored.
async fn dead_letter(
    inst: &Instance,
    msg: &jetstream::Message,
    reason: Reason,
    detail: &str,
    request_id: Option<&RequestId>,
    source: Option<&str>,
) -> bool {
    let dl = DeadLetter::new(reason, detail).request(request_id.map(|r| r.as_str()), source);
    dead_letter::record(&inst.shared.js, msg, &dl, Some(&inst.shared.metrics.dlq)).await
}

/// Runs `fut`, sending `+WPI` every third of AckWait so long work is not redelivered.
async fn with_progress<F: std::future::Future>(
    msg: &jetstream::Message,
    ack_wait: Duration,
    fut: F,
) -> F::Output {
    let every = (ack_wait / 3).max(Duration::from_millis(200));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    warn!(error = %e, "progress ack failed");
                }
            }
        }
    }
}
