//! Handles one request from `AGENTRY_REQUESTS`.

use agentry::error::Chain;
use agentry::event::{Outbound, header, types};
use agentry::subject;
use async_nats::jetstream;
use cloudevents::AttributesReader;
use tracing::{Instrument, info_span, warn};

use crate::validate::{self, Request};
use crate::{Disposition, Engine, answered, reject, tasks, workflow};

/// The `source` of the facts the engine publishes about requests (contract 3).
const ENGINE_SOURCE: &str = "/engine";

pub(crate) async fn handle(
    engine: &Engine,
    msg: &jetstream::Message,
    permit: crate::EnginePermit,
) -> Disposition {
    // The stored-result lookup starts before decoding, so its round trip
    // overlaps decoding, validation and the guard's checks.
    let mut early = early_lookup(engine, msg);
    if let Some((_, pending)) = early.as_mut() {
        pending.start().await;
    }
    let mut accepted = match validate::decode(
        msg.subject.as_str(),
        msg.headers.as_ref(),
        &msg.payload,
        &engine.limits,
    ) {
        Ok(a) => a,
        Err(r) => {
            let _span = crate::spans::rejected(msg.subject.as_str(), &r);
            let recorded = Box::pin(reject::reject(engine, msg, &r)).await;
            return reject::settle(msg, recorded, Disposition::Ack);
        }
    };
    if let Some(r) = crate::guard::check(engine, &accepted).await {
        let _span = crate::spans::rejected(msg.subject.as_str(), &r);
        let recorded = Box::pin(reject::reject(engine, msg, &r)).await;
        return reject::settle(msg, recorded, Disposition::Ack);
    }
    let tp = agentry::event::ext_str(&accepted.event, agentry::event::ext::TRACEPARENT)
        .unwrap_or_default();
    let span = info_span!("request", agentry.request_id = %accepted.id, agentry.type = accepted.request.type_label(), trace = %tp);
    // The intake span: the task or run started here hangs off it.
    let mut intake = crate::spans::intake(
        msg.subject.as_str(),
        accepted.id.as_str(),
        (!tp.is_empty()).then_some(tp.as_str()),
        accepted.tenant.as_ref().map(|t| t.as_str()),
    );
    if let Some(ctx) = intake.context() {
        accepted
            .event
            .set_extension(agentry::event::ext::TRACEPARENT, ctx.header());
    }
    async {
        // A task or workflow request seen again after the duplicate window:
        // answer it with its stored result and run nothing.
        if matches!(
            accepted.request,
            Request::Task { .. } | Request::Workflow { .. }
        ) {
            let to = subject::results_for(accepted.tenant.as_ref(), &accepted.id);
            let pending = match early.take() {
                Some((s, p)) if s == to => p,
                _ => engine.lookups.begin(to.clone()),
            };
            let replayed = match pending.answer().await {
                Ok(None) => Ok(false),
                Ok(Some(stored)) => answered::replay(&engine.js, &to, stored)
                    .await
                    .map(|()| true),
                Err(e) => Err(e),
            };
            match replayed {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(
                        "request already answered: replayed its stored result, ran nothing"
                    );
                    engine.metrics.duplicates.inc();
                    return Disposition::Ack;
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "stored-result lookup failed; the request is kept");
                    return Disposition::Nak(agentry::consume::record_retry(msg));
                }
            }
        }
        let result = match &accepted.request {
            Request::Task {
                capability,
                timeout_ms,
            } => {
                let parent = intake.context();
                tasks::route(engine, msg, &accepted, capability, *timeout_ms, parent).await
            }
            Request::Workflow {
                workflow,
                version,
                input,
                timeout_ms,
            } => {
                // Boxed, as the other rare or large paths below: the task
                // path's future stays small (it is moved into its task).
                Box::pin(workflow::start(
                    engine,
                    msg,
                    &accepted,
                    workflow,
                    *version,
                    input,
                    *timeout_ms,
                    permit,
                ))
                .await
            }
            Request::Signal {
                run_id,
                signal,
                payload,
            } => Box::pin(workflow::signal(engine, &accepted, run_id, signal, payload)).await,
            Request::Cancel { run_id, reason } => {
                Box::pin(workflow::cancel(engine, &accepted, run_id, reason.as_deref())).await
            }
        };
        match result {
            Ok(d) => {
                tracing::debug!("request accepted");
                if matches!(d, Disposition::Ack) {
                    publish_accepted(engine, &accepted).await;
                }
                let counted = &engine.metrics.accepted;
                match accepted.request {
                    Request::Task { .. } => &counted.task,
                    Request::Workflow { .. } => &counted.workflow,
                    Request::Signal { .. } => &counted.signal,
                    Request::Cancel { .. } => &counted.cancel,
                }
                .inc();
                d
            }
            Err(r) => {
                crate::spans::refuse(&mut intake, &r);
                let recorded = Box::pin(reject::reject(engine, msg, &r)).await;
                reject::settle(msg, recorded, Disposition::Ack)
            }
        }
    }
    .instrument(span)
    .await
}

/// Starts the stored-result lookup of a binary-mode request from its
/// `ce-id` header and the tenant of its subject; `None` when either is
/// missing or invalid (decoding then rejects it, or, for a structured
/// request, the lookup starts after decoding).
fn early_lookup(engine: &Engine, msg: &jetstream::Message) -> Option<(String, answered::Pending)> {
    let headers = msg.headers.as_ref()?;
    let ty = headers.get(header::CE_TYPE)?.as_str();
    if ty != types::TASK_REQUESTED && ty != types::WORKFLOW_REQUESTED {
        return None;
    }
    let id = headers.get(header::CE_ID)?;
    let id = agentry::id::RequestId::new(id.as_str()).ok()?;
    let tenant = subject::tenant_of_request(msg.subject.as_str()).ok()?;
    let to = subject::results_for(tenant.as_ref(), &id);
    let pending = engine.lookups.begin(to.clone());
    Some((to, pending))
}

/// Publishes the `io.agentry.request.accepted` fact of a request the engine
/// took on (for the security monitor, counted per principal). A core NATS
/// publish: no PubAck wait on the hot path; a fact that cannot be queued is
/// logged and lost (observers only), never a reason to redeliver the request.
/// The message id makes a redelivered request's fact count once.
async fn publish_accepted(engine: &Engine, req: &validate::Accepted) {
    let mut data = serde_json::json!({
        "request_id": req.id,
        "type": req.event.ty(),
        "source": req.source,
    });
    if let Some(t) = &req.tenant {
        data["tenant"] = serde_json::Value::from(t.as_str());
    }
    if let Some((field, name)) = req.request.target() {
        data[field] = serde_json::Value::from(name);
    }
    let key = subject::request_key(req.tenant.as_ref(), &req.id);
    let id = uuid::Uuid::now_v7().simple().to_string();
    let mut ev = Outbound::new(&id, ENGINE_SOURCE, types::REQUEST_ACCEPTED);
    ev.header(header::MSG_ID, &format!("acc-{key}"));
    let sent = match ev.finish(&data) {
        Ok((headers, body)) => engine
            .js
            .client()
            .publish_with_headers(
                subject::events_for_type(types::REQUEST_ACCEPTED),
                headers,
                body,
            )
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        warn!(request_id = %req.id, error = %e, "request.accepted fact not published");
    }
}
