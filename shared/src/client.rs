//! The client side of the request protocol: publish a CloudEvent to
//! `agentry.requests` (JetStream, deduplicated by id) and wait for the one
//! terminal result on `agentry.results.<id>`. Used by the CLI, benchmarks,
//! tests and `ctx.delegate` in the agent SDK.
//!
//! A client tenant (nats/README.md, option A) uses the `*_as` forms: requests
//! go to `agentry.requests.<tenant>` and the result comes back on
//! `agentry.results.<tenant>.<id>`, the only results its NATS user may read.

use std::time::Duration;

use async_nats::jetstream;
use cloudevents::{AttributesReader, Event};
use futures::StreamExt;
use serde_json::Value;

use crate::event::{self, Limits, Mode, header};
use crate::id::RequestId;
use crate::subject::{self, Tenant};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("request id")]
    Id(#[from] crate::id::IdError),
    #[error("cannot encode the request")]
    Encode(#[from] event::EncodeError),
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    #[error("JetStream refused the request")]
    Publish(#[source] jetstream::context::PublishError),
    #[error(
        "no result for request {id} within {timeout:?} (it stays queued; fetch it later with `agentry submit --result {id}`)"
    )]
    Timeout { id: String, timeout: Duration },
    #[error("result for {id} is not a valid CloudEvent")]
    BadResult {
        id: String,
        #[source]
        source: event::DecodeError,
    },
}

/// A terminal result as received.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub request_id: String,
    pub ty: String,
    pub data: Value,
    pub event: Event,
}

impl Outcome {
    /// `true` for `*.completed`.
    pub fn is_success(&self) -> bool {
        self.ty.ends_with(".completed")
    }
}

/// Publishes `event` to `agentry.requests` and waits up to `timeout` for its result.
pub async fn submit(
    nats: &async_nats::Client,
    js: &jetstream::Context,
    event: &Event,
    mode: Mode,
    timeout: Duration,
) -> Result<Outcome, SubmitError> {
    submit_as(nats, js, None, event, mode, timeout).await
}

/// [`submit`] for `tenant`: publishes to `agentry.requests.<tenant>` and
/// waits on `agentry.results.<tenant>.<id>` (without a tenant, the plain subjects).
pub async fn submit_as(
    nats: &async_nats::Client,
    js: &jetstream::Context,
    tenant: Option<&Tenant>,
    event: &Event,
    mode: Mode,
    timeout: Duration,
) -> Result<Outcome, SubmitError> {
    let id = RequestId::new(event.id())?;
    let results = subject::results_for(tenant, &id);
    let mut sub =
        nats.subscribe(results.clone())
            .await
            .map_err(|source| SubmitError::Subscribe {
                subject: results.clone(),
                source,
            })?;
    publish_request_as(js, tenant, event, mode).await?;
    let got = tokio::time::timeout(timeout, sub.next()).await;
    let _ = sub.unsubscribe().await;
    match got {
        Ok(Some(msg)) => outcome(&id, msg.headers.as_ref(), &msg.payload),
        // Missed on the live subscription (e.g. reconnect): the results stream has it.
        _ => match fetch_result_as(js, tenant, &id).await {
            Some(o) => Ok(o),
            None => Err(SubmitError::Timeout {
                id: id.to_string(),
                timeout,
            }),
        },
    }
}

/// Publishes a request and waits for JetStream's acknowledgement.
pub async fn publish_request(
    js: &jetstream::Context,
    event: &Event,
    mode: Mode,
) -> Result<(), SubmitError> {
    publish_request_as(js, None, event, mode).await
}

/// [`publish_request`] for `tenant` (`agentry.requests.<tenant>`). The
/// `Nats-Msg-Id` is tenant-qualified (`<tenant>.<id>`), so equal request ids
/// of two tenants are not mistaken for duplicates in the shared stream.
pub async fn publish_request_as(
    js: &jetstream::Context,
    tenant: Option<&Tenant>,
    event: &Event,
    mode: Mode,
) -> Result<(), SubmitError> {
    let id = RequestId::new(event.id())?;
    let (mut headers, body) = event::encode(event, mode)?;
    headers.insert(header::MSG_ID, subject::request_key(tenant, &id).as_str());
    let ack = js
        .publish_with_headers(subject::requests_for(tenant), headers, body)
        .await
        .map_err(SubmitError::Publish)?;
    ack.await.map_err(SubmitError::Publish)?;
    Ok(())
}

/// The stored result of a request, if there is one (late clients).
pub async fn fetch_result(js: &jetstream::Context, id: &RequestId) -> Option<Outcome> {
    fetch_result_as(js, None, id).await
}

/// [`fetch_result`] for `tenant`: a direct get of the last message on
/// `agentry.results.<tenant>.<id>` (the subject form, the only one a tenant
/// user may send; no stream info is needed).
pub async fn fetch_result_as(
    js: &jetstream::Context,
    tenant: Option<&Tenant>,
    id: &RequestId,
) -> Option<Outcome> {
    let stream = js.get_stream_no_info(subject::RESULTS_STREAM).await.ok()?;
    let msg = stream
        .direct_get_last_for_subject(subject::results_for(tenant, id))
        .await
        .ok()?;
    outcome(id, Some(&msg.headers), &msg.payload).ok()
}

fn outcome(
    id: &RequestId,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Result<Outcome, SubmitError> {
    let d = event::decode(
        headers,
        payload,
        &Limits {
            max_payload: usize::MAX,
            ..Limits::default()
        },
    )
    .map_err(|source| SubmitError::BadResult {
        id: id.to_string(),
        source,
    })?;
    let data = event::data_json(&d.event).map_err(|source| SubmitError::BadResult {
        id: id.to_string(),
        source,
    })?;
    Ok(Outcome {
        request_id: id.to_string(),
        ty: d.event.ty().to_owned(),
        data,
        event: d.event,
    })
}

/// A task request event.
pub fn task_request(
    id: &RequestId,
    source: &str,
    capability: &str,
    input: Value,
    timeout_ms: Option<u64>,
) -> Event {
    let mut data = serde_json::json!({"capability": capability, "input": input});
    if let Some(t) = timeout_ms {
        data["timeout_ms"] = t.into();
    }
    event::new_event(id.as_str(), source, event::types::TASK_REQUESTED, data)
}

/// A workflow request event.
pub fn workflow_request(
    id: &RequestId,
    source: &str,
    workflow: &str,
    version: Option<u32>,
    input: Value,
) -> Event {
    let mut data = serde_json::json!({"workflow": workflow, "input": input});
    if let Some(v) = version {
        data["version"] = v.into();
    }
    event::new_event(id.as_str(), source, event::types::WORKFLOW_REQUESTED, data)
}
