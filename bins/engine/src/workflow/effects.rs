//! What a transition does outside the run state: tasks, timers, lifecycle
//! events, the terminal result, child runs. A transition's effects are
//! written into the run state (its outbox) by the same compare-and-set that
//! records the transition, then executed, then cleared; whoever finds a
//! non-empty outbox (a redelivery after a crash) executes it again. Every
//! effect is idempotent: deterministic message ids (JetStream dedup),
//! first-write-wins results, create-if-absent child runs.

use agentry::Capability;
use agentry::event::{Outbound, ext, header, types};
use agentry::publish::{self, Published};
use agentry::subject;
use agentry::workflow::state::{ErrorInfo, ParentRef};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;

use crate::Engine;
use crate::timers::{self, Timer};

pub(crate) const SOURCE: &str = "/agentry/engine";

/// A child run to start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChildSpec {
    pub run_id: String,
    pub workflow: String,
    #[serde(default)]
    pub version: Option<u32>,
    pub input: Value,
    pub parent: ParentRef,
    pub depth: u32,
    pub source: String,
    #[serde(default)]
    pub traceparent: Option<String>,
}

/// One effect of a transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub(crate) enum Effect {
    /// Publish a step task to `agentry.tasks.<capability>`.
    Task {
        task_id: String,
        slot: String,
        attempt: u32,
        capability: String,
        input: Value,
        #[serde(default)]
        deadline_ms: Option<i64>,
    },
    Timer {
        key: String,
        at: DateTime<Utc>,
        timer: Timer,
    },
    /// Remove a timer that is no longer needed (best effort).
    DropTimer {
        key: String,
    },
    /// A lifecycle event on `agentry.events.*`.
    Event {
        id: String,
        ty: String,
        data: Value,
    },
    /// The terminal result on `agentry.results[.<tenant>].<request-id>`.
    Result {
        request_id: String,
        ty: String,
        data: Value,
    },
    StartChild {
        child: ChildSpec,
    },
    CancelChild {
        run_id: String,
        reason: String,
    },
    /// A child run's outcome, sent to its parent like a step result.
    ParentResult {
        parent: ParentRef,
        child_run: String,
        output: Option<Value>,
        error: Option<ErrorInfo>,
    },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EffectError {
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    #[error("invalid id in an effect")]
    Id(#[from] agentry::id::IdError),
    #[error("child run not started")]
    Child(#[source] Box<super::driver::DriverError>),
}

/// Who the effects belong to.
pub(crate) struct Origin<'a> {
    /// The run's key (`[<tenant>.]<id>`).
    pub run_id: &'a str,
    /// The owning tenant, stamped on its step tasks (`ext::TENANT`).
    pub tenant: Option<&'a str>,
    pub traceparent: Option<&'a str>,
}

/// Executes `effects` concurrently; the first error is returned (the rest still ran).
pub(crate) async fn execute(
    engine: &Engine,
    origin: &Origin<'_>,
    effects: &[Effect],
) -> Result<(), EffectError> {
    // Events and the result carry the run span; each task its step span.
    let run_tp = crate::spans::run_traceparent(origin.traceparent, origin.run_id);
    let run_tp = run_tp.as_deref();
    let results = join_all(
        effects
            .iter()
            .map(|e| execute_one(engine, origin, run_tp, e)),
    )
    .await;
    results.into_iter().collect()
}

async fn execute_one(
    engine: &Engine,
    origin: &Origin<'_>,
    run_tp: Option<&str>,
    effect: &Effect,
) -> Result<(), EffectError> {
    match effect {
        Effect::Task {
            task_id,
            slot,
            attempt,
            capability,
            input,
            deadline_ms,
        } => {
            let steps = subject::steps_for_key(origin.run_id)?;
            let cap = Capability::new(capability.as_str())?;
            // The event id is the bare request id; the message id keeps the
            // tenant, so equal run ids of two tenants are not deduplicated.
            let mut ev = Outbound::new(super::ids::bare(task_id), SOURCE, types::TASK_REQUESTED);
            ev.extension(ext::REPLYTO, &steps)
                .extension(ext::RUNID, origin.run_id)
                .extension(ext::STEPID, slot)
                .extension(ext::ATTEMPT, &attempt.to_string())
                .header(header::MSG_ID, task_id);
            if let Some(t) = origin.tenant {
                ev.extension(ext::TENANT, t);
            }
            let step = super::ids::step_of(slot);
            if let Some(tp) =
                crate::spans::step_traceparent(origin.traceparent, origin.run_id, step)
            {
                ev.extension(ext::TRACEPARENT, &tp);
            }
            if let Some(d) = deadline_ms {
                ev.extension(ext::DEADLINE, &d.to_string());
            }
            let data = TaskData { capability, input };
            let (headers, body) = ev.finish(&data).map_err(publish::PublishError::from)?;
            publish::acked(&engine.js, &subject::tasks(&cap), headers, body).await?;
            Ok(())
        }
        Effect::Timer { key, at, timer } => {
            timers::schedule(&engine.js, key, *at, timer).await?;
            Ok(())
        }
        Effect::DropTimer { key } => {
            timers::cancel(&engine.js, key).await;
            Ok(())
        }
        Effect::Event { id, ty, data } => {
            publish_event(engine, origin, run_tp, id, ty, data).await;
            Ok(())
        }
        Effect::Result {
            request_id,
            ty,
            data,
        } => {
            let id = agentry::RequestId::new(request_id.as_str())?;
            let tenant = origin.tenant.map(subject::Tenant::new).transpose()?;
            let to = subject::results_for(tenant.as_ref(), &id);
            let eid = format!("{}-result", origin.run_id);
            let mut ev = Outbound::new(&super::ids::ce_id(&eid), SOURCE, ty);
            ev.extension(ext::REQUESTID, request_id)
                .extension(ext::RUNID, origin.run_id);
            if let Some(tp) = run_tp {
                ev.extension(ext::TRACEPARENT, tp);
            }
            match publish::outbound(&engine.js, &to, ev, data, &eid).await? {
                Published::Stored => {}
                Published::DuplicateRefused => engine.metrics.duplicates.inc(),
            }
            Ok(())
        }
        Effect::StartChild { child } => {
            // The child run hangs off the step that started it.
            let mut child = child.clone();
            if crate::spans::enabled() {
                let step = super::ids::step_of(&child.parent.slot);
                child.traceparent =
                    crate::spans::step_traceparent(origin.traceparent, origin.run_id, step)
                        .map(|t| t.into_owned());
            }
            Box::pin(super::run::start_child(engine, &child))
                .await
                .map_err(|e| EffectError::Child(Box::new(e)))
        }
        Effect::CancelChild { run_id, reason } => {
            let input = super::machine::Input::Cancel {
                reason: Some(reason.clone()),
            };
            match Box::pin(super::driver::drive(engine, run_id, &input)).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    // The child's own timeout still ends it; the parent has moved on.
                    warn!(child = %run_id, error = %agentry::error::Chain(&e), "child run not cancelled");
                    Ok(())
                }
            }
        }
        Effect::ParentResult {
            parent,
            child_run,
            output,
            error,
        } => publish_step_result(
            engine,
            parent,
            child_run,
            output.as_ref(),
            error.as_ref(),
            run_tp,
        )
        .await
        .map_err(EffectError::from),
    }
}

/// Sends a step result to `agentry.steps.<parent run>`, the way an agent does.
pub(crate) async fn publish_step_result(
    engine: &Engine,
    parent: &ParentRef,
    request_id: &str,
    output: Option<&Value>,
    error: Option<&ErrorInfo>,
    traceparent: Option<&str>,
) -> Result<(), publish::PublishError> {
    let steps = subject::steps_for_key(parent.run_id.as_str()).map_err(|source| {
        publish::PublishError::Subject {
            key: parent.run_id.to_string(),
            source,
        }
    })?;
    let (ty, data) = match error {
        Some(e) => (
            types::TASK_FAILED,
            serde_json::json!({"request_id": request_id, "error": e.to_json()}),
        ),
        None => (
            types::TASK_COMPLETED,
            serde_json::json!({"request_id": request_id, "output": output.cloned().unwrap_or(Value::Null)}),
        ),
    };
    let id = format!("{request_id}-done");
    let mut ev = Outbound::new(&super::ids::ce_id(&id), SOURCE, ty);
    ev.extension(ext::REQUESTID, request_id)
        .extension(ext::RUNID, parent.run_id.as_str())
        .extension(ext::STEPID, parent.slot.as_str())
        .extension(ext::ATTEMPT, &parent.attempt.to_string());
    if let Some(tp) = traceparent {
        ev.extension(ext::TRACEPARENT, tp);
    }
    publish::outbound(&engine.js, &steps, ev, &data, &id)
        .await
        .map(|_| ())
}

/// The data of a step task (`task.requested`).
#[derive(Serialize)]
struct TaskData<'a> {
    capability: &'a str,
    input: &'a Value,
}

/// Publishes a lifecycle event without waiting for JetStream's ack.
///
/// Lifecycle events are facts for observers; the run state in KV (written
/// by compare-and-set before any effect runs) is the source of truth, and
/// nothing in the engine reads the events back. So an event is handed to
/// the connection (which sends in order: the events of a transition reach
/// the server before its terminal result) and the transition does not wait
/// for one PubAck per event; the deterministic `Nats-Msg-Id` still makes a
/// repeated outbox write it once. A publish that cannot be queued (the
/// connection is gone) is logged, not retried: the event is lost while the
/// run carries on, which is the price of not blocking runs on observers.
async fn publish_event(
    engine: &Engine,
    origin: &Origin<'_>,
    run_tp: Option<&str>,
    id: &str,
    ty: &str,
    data: &Value,
) {
    let mut ev = Outbound::new(&super::ids::ce_id(id), SOURCE, ty);
    ev.extension(ext::RUNID, origin.run_id)
        .header(header::MSG_ID, id);
    if let Some(tp) = run_tp {
        ev.extension(ext::TRACEPARENT, tp);
    }
    let sent = match ev.finish(data) {
        Ok((headers, body)) => engine
            .js
            .client()
            .publish_with_headers(subject::events_for_type(ty), headers, body)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        warn!(event = %id, r#type = %ty, error = %e, "lifecycle event not published");
    }
}
