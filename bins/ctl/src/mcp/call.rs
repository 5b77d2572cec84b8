//! One tool call: a request on `agentry.requests.<tenant>` (so rate limits,
//! quarantine, tenancy and the DLQ apply as for any client), the terminal
//! result as the tool result, step events as MCP progress, and the MCP
//! cancellation as a workflow cancel request.

use std::collections::BTreeSet;
use std::time::Duration;

use agentry::client::{self, SubmitError};
use agentry::event::{self, Limits, Mode, types};
use agentry::id::RequestId;
use agentry::subject::Tenant;
use futures::{FutureExt, StreamExt};
use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::catalog::{Target, structured};

/// Step events of every run; a call keeps those of its own run.
const STEP_EVENTS: &str = "agentry.events.step.>";
/// Source of requests made by the MCP server.
pub const SOURCE: &str = "/mcp";

/// What a call needs from the server.
pub struct Call<'a> {
    pub nats: &'a async_nats::Client,
    pub js: &'a async_nats::jetstream::Context,
    pub tenant: &'a Tenant,
    pub timeout: Duration,
    pub peer: &'a Peer<RoleServer>,
    pub progress: Option<ProgressToken>,
    pub cancel: &'a CancellationToken,
}

/// Runs `target` with `input` and turns its outcome into a tool result.
/// Failures of the run are tool errors the model can read, never protocol errors.
pub async fn run(call: Call<'_>, target: &Target, input: Value) -> CallToolResult {
    let id = RequestId::generate();
    let (event, steps_total) = match target {
        Target::Capability(cap) => (client::task_request(&id, SOURCE, cap, input, None), None),
        Target::Workflow {
            name,
            version,
            steps,
        } => (
            client::workflow_request(&id, SOURCE, name, Some(*version), input),
            Some(*steps),
        ),
    };
    // Subscribed before the request goes out, so no step event is missed.
    let step_events = match (&call.progress, steps_total) {
        (Some(_), Some(_)) => match call.nats.subscribe(STEP_EVENTS).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no progress for this call: cannot subscribe to step events");
                None
            }
        },
        _ => None,
    };
    notify(&call, 0.0, steps_total, format!("request {id} submitted")).await;
    let submit = client::submit_as(
        call.nats,
        call.js,
        Some(call.tenant),
        &event,
        Mode::Binary,
        call.timeout,
    );
    tokio::pin!(submit);
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut step_events = step_events;
    let outcome = loop {
        tokio::select! {
            out = &mut submit => break out,
            _ = call.cancel.cancelled() => {
                cancel(&call, target, &id).await;
                return CallToolResult::error(vec![ContentBlock::text(format!(
                    "cancelled by the client (request {id})"
                ))]);
            }
            Some(msg) = async {
                match step_events.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => step_progress(&call, &msg, &id, &mut done, steps_total).await,
        }
    };
    if let Some(s) = step_events.as_mut() {
        // Step events that arrived before the result but were not picked
        // yet (select! takes ready branches in random order): report them
        // before "done".
        while let Some(Some(msg)) = s.next().now_or_never() {
            step_progress(&call, &msg, &id, &mut done, steps_total).await;
        }
        let _ = s.unsubscribe().await;
    }
    match outcome {
        Ok(o) if o.is_success() => {
            let total = steps_total.unwrap_or(1);
            if done.len() < total {
                notify(&call, total as f64, steps_total, "done".into()).await;
            }
            CallToolResult::structured(structured(o.data))
        }
        // task.failed, workflow.failed/cancelled/timed_out, request.rejected:
        // the type says which, the data why.
        Ok(o) => CallToolResult::structured_error(json!({"type": o.ty, "data": o.data})),
        Err(SubmitError::Timeout { id, timeout }) => {
            CallToolResult::error(vec![ContentBlock::text(format!(
                "no result for request {id} within {timeout:?}; it stays queued (fetch it later with `agentry submit --result {id} --tenant {}`)",
                call.tenant.as_str()
            ))])
        }
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
    }
}

/// Reports a finished step of run `id` (once per step) as MCP progress.
async fn step_progress(
    call: &Call<'_>,
    msg: &async_nats::Message,
    id: &RequestId,
    done: &mut BTreeSet<String>,
    steps_total: Option<usize>,
) {
    if let Some((step, status)) = step_of(msg, id)
        && matches!(status.as_str(), "completed" | "skipped")
        && done.insert(step.clone())
    {
        let message = format!("step {step} {status}");
        notify(call, done.len() as f64, steps_total, message).await;
    }
}

/// `(step, status)` of a step event of run `id`.
fn step_of(msg: &async_nats::Message, id: &RequestId) -> Option<(String, String)> {
    let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).ok()?;
    let data = event::data_json(&d.event).ok()?;
    if data["run_id"].as_str() != Some(id.as_str()) {
        return None;
    }
    let step = data["step"].as_str()?.to_owned();
    let status = data["status"].as_str()?.to_owned();
    Some((step, status))
}

async fn notify(call: &Call<'_>, progress: f64, total: Option<usize>, message: String) {
    let Some(token) = &call.progress else {
        return;
    };
    let mut p = ProgressNotificationParam::new(token.clone(), progress);
    p.total = Some(total.unwrap_or(1) as f64);
    p.message = Some(message);
    if let Err(e) = call.peer.notify_progress(p).await {
        tracing::debug!(error = %e, "progress notification not sent");
    }
}

/// Cancels the run of a cancelled workflow call. A single task has no
/// cancel in agentry: it runs to its end and its result stays stored.
async fn cancel(call: &Call<'_>, target: &Target, id: &RequestId) {
    let Target::Workflow { .. } = target else {
        tracing::info!(request = %id, "call cancelled; the task runs on (tasks cannot be cancelled), its result stays stored");
        return;
    };
    let cancel_id = RequestId::generate();
    let ev = event::new_event(
        cancel_id.as_str(),
        SOURCE,
        types::WORKFLOW_CANCEL,
        json!({"run_id": id.as_str(), "reason": "cancelled by the MCP client"}),
    );
    match client::publish_request_as(call.js, Some(call.tenant), &ev, Mode::Binary).await {
        Ok(()) => tracing::info!(run = %id, "call cancelled; run cancel requested"),
        Err(e) => {
            tracing::warn!(run = %id, error = %e, "call cancelled but the run cancel was not accepted")
        }
    }
}
