//! Durable timers on JetStream message schedules (server 2.12+): a schedule
//! published to `agentry.timers.schedule.<key>` fires once, at its time,
//! into `agentry.timers.fire.<key>` in the same stream, where the
//! `engine-timers` consumer picks it up. Timers survive engine restarts
//! because they live in the server; a fired timer whose purpose has passed
//! (the task finished, the run moved on) is acknowledged and ignored.

use async_nats::HeaderMap;
use async_nats::jetstream;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use std::time::Duration;

use agentry::event::{self, header};
use agentry::publish::{self, PublishError, Published};
use agentry::reason::Reason;
use agentry::subject;
use tracing::{info, warn};

use crate::{Disposition, Engine};

/// What a timer means when it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Timer {
    /// A single task's deadline: answer `task.failed` (timeout) unless answered.
    TaskTimeout {
        request_id: String,
        capability: String,
    },
    /// A workflow run's deadline.
    RunTimeout { run_id: String },
    /// A step attempt's deadline.
    StepTimeout {
        run_id: String,
        step: String,
        attempt: u32,
    },
    /// A retry backoff of a step has elapsed.
    StepRetry {
        run_id: String,
        step: String,
        attempt: u32,
    },
    /// A signal wait's deadline.
    SignalTimeout { run_id: String, step: String },
}

/// Schedules `timer` to fire at `at` under `key` (one subject token).
pub async fn schedule(
    js: &jetstream::Context,
    key: &str,
    at: DateTime<Utc>,
    timer: &Timer,
) -> Result<(), PublishError> {
    // Schedules have second resolution: round up so a timer never fires early.
    let secs = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    let at = DateTime::from_timestamp(secs, 0).unwrap_or(at);
    let mut headers = HeaderMap::new();
    headers.insert(
        "Nats-Schedule",
        format!("@at {}", at.to_rfc3339_opts(SecondsFormat::Secs, true)).as_str(),
    );
    headers.insert("Nats-Schedule-Target", subject::timer_fire(key).as_str());
    headers.insert(header::MSG_ID, format!("timer-{key}").as_str());
    let body = serde_json::to_vec(timer)?;
    publish::acked(js, &subject::timer_schedule(key), headers, body.into())
        .await
        .map(|_| ())
}

/// Removes the schedule `key` if it has not fired (best effort: a timer that
/// fires anyway finds its purpose gone and is ignored).
pub async fn cancel(js: &jetstream::Context, key: &str) {
    let res = async {
        let stream = js.get_stream_no_info(subject::TIMERS_STREAM).await?;
        stream
            .purge()
            .filter(subject::timer_schedule(key))
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }
    .await;
    if let Err(e) = res {
        tracing::debug!(key, error = %e, "timer not removed");
    }
}

/// Handles a fired durable timer of any kind: a single task's deadline
/// here, workflow timers (run/step deadlines, retries, signal waits) in
/// `workflow::on_timer`.
pub(crate) async fn fire(engine: &Engine, msg: &jetstream::Message) -> Disposition {
    let timer: Timer = match serde_json::from_slice(&msg.payload) {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "unreadable timer, dead-lettering");
            return Disposition::dead_letter(
                Reason::SchemaInvalid,
                format!("unreadable timer: {e}"),
            );
        }
    };
    match timer {
        Timer::TaskTimeout {
            request_id,
            capability,
        } => {
            // The timer's subject names the tenant (`task-<tenant>.<id>`).
            let (tenant, id) = match subject::task_timer_of(msg.subject.as_str()) {
                Some(t) => t,
                None => match agentry::id::RequestId::new(request_id.as_str()) {
                    Ok(id) => (None, id),
                    Err(_) => return Disposition::Term,
                },
            };
            let data = serde_json::json!({
                "request_id": id,
                "capability": capability,
                "error": publish::error_object("timeout", "no agent finished the task before its deadline", false),
            });
            let eid = uuid::Uuid::now_v7().simple().to_string();
            let ev = event::new_event(&eid, "/agentry/engine", event::types::TASK_FAILED, data);
            match publish::event(
                &engine.js,
                &subject::results_for(tenant.as_ref(), &id),
                &ev,
                &format!("timeout-{}", subject::request_key(tenant.as_ref(), &id)),
            )
            .await
            {
                Ok(Published::Stored) => {
                    engine
                        .metrics
                        .task_timeouts
                        .with_label_values(&[capability.as_str(), "timeout"])
                        .inc();
                    info!(request_id = %id, "task timed out");
                    Disposition::Ack
                }
                Ok(Published::DuplicateRefused) => Disposition::Ack,
                Err(e) => {
                    warn!(error = %agentry::error::Chain(&e), "timeout result not published, retrying");
                    Disposition::Nak(Duration::from_secs(1))
                }
            }
        }
        workflow_timer => crate::workflow::on_timer(engine, workflow_timer).await,
    }
}
