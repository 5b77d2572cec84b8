//! The NATS service API (`$SRV.PING|INFO|STATS`) of an agent instance, with
//! one endpoint per capability on `agentry.a2a.<agent-id>.<capability>` and
//! a generic A2A endpoint on `agentry.a2a.<agent-id>` taking
//! `{capability?, input}`. Replies are `{"output": ...}` or a service error.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::service::{self, ServiceExt};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Agent, Context, Task, TaskError};
use crate::id::{Capability, RequestId};
use crate::subject;

pub(crate) async fn start(
    agent: Arc<dyn Agent>,
    ctx: Context,
    sem: Arc<Semaphore>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<service::Service, async_nats::Error> {
    let d = agent.descriptor();
    let id = ctx.agent_id().clone();
    let mut meta = HashMap::new();
    meta.insert("agent_id".to_owned(), id.to_string());
    meta.insert("kind".to_owned(), d.kind.clone());
    let svc = ctx
        .nats()
        .service_builder()
        .description(d.description.clone())
        .metadata(meta)
        .start(d.kind.clone(), d.version.clone())
        .await?;
    let base = subject::a2a(&id);
    let generic = svc.endpoint_builder().name("a2a").add(base.clone()).await?;
    spawn_endpoint(
        generic,
        None,
        agent.clone(),
        ctx.clone(),
        sem.clone(),
        tracker,
        shutdown.clone(),
    );
    for cap in d.capabilities {
        let ep = svc
            .endpoint_builder()
            .name(cap.as_str())
            .add(format!("{base}.{cap}"))
            .await?;
        spawn_endpoint(
            ep,
            Some(cap),
            agent.clone(),
            ctx.clone(),
            sem.clone(),
            tracker,
            shutdown.clone(),
        );
    }
    Ok(svc)
}

fn spawn_endpoint(
    mut ep: service::endpoint::Endpoint,
    fixed: Option<Capability>,
    agent: Arc<dyn Agent>,
    ctx: Context,
    sem: Arc<Semaphore>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let inner = tracker.clone();
    // Lives until shutdown or until the endpoint closes; requests run as tracked tasks.
    tracker.spawn(async move {
        loop {
            let req = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = ep.next() => match r { Some(r) => r, None => break },
            };
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            let agent = agent.clone();
            let ctx = ctx.clone();
            let fixed = fixed.clone();
            inner.spawn(async move {
                let result = call(
                    &agent,
                    ctx,
                    fixed,
                    &req.message.payload,
                    req.message.headers.as_ref(),
                    req.message.subject.as_str(),
                )
                .await;
                let reply = match result {
                    Ok(out) => Ok(serde_json::to_vec(&serde_json::json!({"output": out}))
                        .unwrap_or_default()
                        .into()),
                    Err(e) => Err(service::error::Error {
                        status: format!("{}: {e}", e.code()),
                        code: if e.is_retryable() { 503 } else { 400 },
                    }),
                };
                if let Err(e) = req.respond(reply).await {
                    tracing::warn!(error = %e, "a2a reply failed");
                }
                drop(permit);
            });
        }
    });
}

async fn call(
    agent: &Arc<dyn Agent>,
    ctx: Context,
    fixed: Option<Capability>,
    payload: &[u8],
    headers: Option<&async_nats::HeaderMap>,
    subject: &str,
) -> Result<Value, TaskError> {
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    // The caller's id for this call, or a fresh one (a caller that sent none).
    let request_id = header(super::context::A2A_ID_HEADER)
        .and_then(|v| RequestId::new(v).ok())
        .unwrap_or_else(RequestId::generate);
    let incoming = header("traceparent").map(str::to_owned);
    // The server span of this call (ended when this returns, failed with
    // the error's code): what the handler sends carries its context.
    let mut span = super::spans::a2a_handle(
        subject,
        request_id.as_str(),
        ctx.agent_id(),
        incoming.as_deref(),
    );
    let tp = span.propagate(incoming.as_deref());
    let res = answer(agent, ctx, fixed, payload, headers, request_id, tp).await;
    if let Err(e) = &res {
        span.fail(e.code(), e.to_string());
    }
    res
}

/// Reads the A2A request and runs the handler on it.
async fn answer(
    agent: &Arc<dyn Agent>,
    mut ctx: Context,
    fixed: Option<Capability>,
    payload: &[u8],
    headers: Option<&async_nats::HeaderMap>,
    request_id: RequestId,
    tp: Option<String>,
) -> Result<Value, TaskError> {
    let body: Value = serde_json::from_slice(payload)
        .map_err(|e| TaskError::invalid_input(format!("request is not JSON: {e}")))?;
    let (cap, input) = match fixed {
        Some(c) => (c, body),
        None => {
            let caps = agent.descriptor().capabilities;
            let cap = match body.get("capability").and_then(Value::as_str) {
                Some(c) => caps.into_iter().find(|x| x.as_str() == c).ok_or_else(|| {
                    TaskError::invalid_input(format!("this agent does not serve {c}"))
                })?,
                None if caps.len() == 1 => caps
                    .into_iter()
                    .next()
                    .ok_or_else(|| TaskError::invalid_input("no capability"))?,
                None => return Err(TaskError::invalid_input("name a capability")),
            };
            (cap, body.get("input").cloned().unwrap_or(Value::Null))
        }
    };
    if let Some(v) = crate::schema::global().capability_input(cap.as_str()) {
        crate::schema::check(v, &input).map_err(|e| TaskError::invalid_input(e.to_string()))?;
    }
    ctx.traceparent = tp.clone();
    ctx.tenant = headers
        .and_then(|h| h.get(super::context::A2A_TENANT_HEADER))
        .and_then(|v| crate::subject::Tenant::new(v.as_str()).ok());
    let task = Task {
        request_id,
        capability: cap,
        input,
        attempt: 1,
        source: headers
            .and_then(|h| h.get("agentry-from"))
            .map(|v| format!("/agents/{}", v.as_str()))
            .unwrap_or_else(|| "/a2a".into()),
        deadline: None,
        traceparent: tp,
        run_id: None,
        step_id: None,
    };
    let timeout = agent.default_timeout();
    match tokio::time::timeout(timeout, agent.handle(task, ctx)).await {
        Ok(r) => r,
        Err(_) => Err(TaskError::retryable(format!("timed out after {timeout:?}"))),
    }
}
