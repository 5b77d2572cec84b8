//! What a handler can reach: A2A calls, delegation, lifecycle events, the
//! registry, Redis and JetStream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::Value;

use super::metrics::Metrics;
use crate::client;
use crate::event::{self, Mode, ext};
use crate::id::{AgentId, RequestId};
use crate::registry::Registry;
use crate::subject;

#[derive(Debug, thiserror::Error)]
pub enum A2aError {
    #[error("no agent answers on {0}")]
    NoResponders(String),
    #[error("{target} did not answer within {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    #[error("{target} failed: {message}")]
    Remote {
        target: String,
        code: String,
        message: String,
    },
    #[error("no live agent serves capability {0}")]
    NoAgent(String),
    #[error("delegated request failed")]
    Submit(#[from] client::SubmitError),
    #[error("a2a request cannot be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("a2a request to {target} failed")]
    Request {
        target: String,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("a2a answer of {target} is not JSON")]
    Decode {
        target: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("agent registry")]
    Registry(#[from] crate::registry::RegistryError),
    #[error("the registry names an invalid agent id")]
    AgentId(#[source] crate::id::IdError),
}

/// Header carrying the asking task's tenant on an A2A request, so the
/// answering handler's [`Context::tenant`] (and its own delegations) stay in
/// that tenant. Agents are trusted peers; clients cannot reach `agentry.a2a`.
pub const A2A_TENANT_HEADER: &str = "agentry-tenant";

/// Header carrying an A2A request's id (a fresh [`RequestId`] per call):
/// the answering handler's `Task::request_id` and the `messaging.message.id`
/// of both spans of the call.
pub const A2A_ID_HEADER: &str = "agentry-request-id";

/// Per-task handle given to [`super::Agent::handle`].
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<Shared>,
    pub(crate) traceparent: Option<String>,
    pub(crate) request_id: Option<RequestId>,
    /// The tenant of the task, from the `tenant` extension the engine stamps.
    pub(crate) tenant: Option<subject::Tenant>,
}

pub(crate) struct Shared {
    pub agent_id: AgentId,
    /// `/agents/<agent-id>`, the `source` of the events this agent publishes.
    pub source: String,
    pub kind: String,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub metrics: Metrics,
    pub registry: tokio::sync::OnceCell<Registry>,
}

impl Context {
    pub fn agent_id(&self) -> &AgentId {
        &self.inner.agent_id
    }

    pub fn kind(&self) -> &str {
        &self.inner.kind
    }

    pub fn nats(&self) -> &async_nats::Client {
        &self.inner.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    /// Redis, when configured (`AGENTRY_REDIS_URL`).
    pub fn redis(&self) -> Option<redis::aio::ConnectionManager> {
        self.inner.redis.clone()
    }

    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The tenant the current task belongs to (the engine's `tenant`
    /// extension, taken from the subject the request arrived on); `None` for
    /// untenanted requests and outside a task.
    pub fn tenant(&self) -> Option<&subject::Tenant> {
        self.tenant.as_ref()
    }

    pub async fn registry(&self) -> Result<&Registry, crate::registry::RegistryError> {
        self.inner
            .registry
            .get_or_try_init(|| Registry::open(&self.inner.js))
            .await
    }

    /// Asks agent `target` directly (request/reply on `agentry.a2a.<id>`).
    pub async fn ask(
        &self,
        target: &AgentId,
        capability: Option<&str>,
        input: Value,
        timeout: Duration,
    ) -> Result<Value, A2aError> {
        let started = Instant::now();
        let res = self.ask_inner(target, capability, input, timeout).await;
        self.record("ask", &res, started);
        res
    }

    async fn ask_inner(
        &self,
        target: &AgentId,
        capability: Option<&str>,
        input: Value,
        timeout: Duration,
    ) -> Result<Value, A2aError> {
        let subj = subject::a2a(target);
        let id = RequestId::generate();
        // The client span of the call (ended when this returns), failed
        // with the error's kind when the call fails.
        let mut call = super::spans::a2a_call(
            &subj,
            id.as_str(),
            &self.inner.agent_id,
            self.traceparent.as_deref(),
        );
        let res = self
            .send_ask(&subj, &id, &call, target, capability, input, timeout)
            .await;
        if let Err(e) = &res {
            call.fail(a2a_error_kind(e), e.to_string());
        }
        res
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_ask(
        &self,
        subj: &str,
        id: &RequestId,
        call: &crate::trace::Span,
        target: &AgentId,
        capability: Option<&str>,
        input: Value,
        timeout: Duration,
    ) -> Result<Value, A2aError> {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(tp) = call.propagate(self.traceparent.as_deref()) {
            headers.insert("traceparent", tp.as_str());
        }
        headers.insert(A2A_ID_HEADER, id.as_str());
        headers.insert("agentry-from", self.inner.agent_id.as_str());
        if let Some(t) = &self.tenant {
            headers.insert(A2A_TENANT_HEADER, t.as_str());
        }
        let body =
            serde_json::to_vec(&serde_json::json!({"capability": capability, "input": input}))
                .map_err(A2aError::Encode)?;
        let req = async_nats::Request::new()
            .payload(body.into())
            .headers(headers)
            .timeout(Some(timeout));
        let resp = match self.inner.client.send_request(subj.to_owned(), req).await {
            Ok(r) => r,
            Err(e) => {
                return Err(match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => {
                        A2aError::NoResponders(subj.to_owned())
                    }
                    async_nats::RequestErrorKind::TimedOut => A2aError::Timeout {
                        target: target.to_string(),
                        timeout,
                    },
                    _ => A2aError::Request {
                        target: target.to_string(),
                        source: e,
                    },
                });
            }
        };
        let v: Value =
            serde_json::from_slice(&resp.payload).map_err(|source| A2aError::Decode {
                target: target.to_string(),
                source,
            })?;
        if let Some(err) = v.get("error") {
            return Err(A2aError::Remote {
                target: target.to_string(),
                code: err["code"].as_str().unwrap_or("error").to_owned(),
                message: err["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(v.get("output").cloned().unwrap_or(Value::Null))
    }

    /// Asks the least-loaded live agent serving `capability`.
    pub async fn ask_capability(
        &self,
        capability: &str,
        input: Value,
        timeout: Duration,
    ) -> Result<Value, A2aError> {
        let agents = self.registry().await?.find(capability).await?;
        let target = agents
            .first()
            .ok_or_else(|| A2aError::NoAgent(capability.to_owned()))?;
        let id = AgentId::new(target.id.as_str()).map_err(A2aError::AgentId)?;
        self.ask(&id, Some(capability), input, timeout).await
    }

    /// Delegates a child task by capability through the request subject of
    /// the current task's tenant (`agentry.requests[.<tenant>]`: queued,
    /// retried and rate limited like any request of that tenant) and awaits
    /// its result on that tenant's result subject.
    pub async fn delegate(
        &self,
        capability: &str,
        input: Value,
        timeout: Duration,
    ) -> Result<Value, A2aError> {
        let started = Instant::now();
        let res = self.delegate_inner(capability, input, timeout).await;
        self.record("delegate", &res, started);
        res
    }

    async fn delegate_inner(
        &self,
        capability: &str,
        input: Value,
        timeout: Duration,
    ) -> Result<Value, A2aError> {
        let id = RequestId::generate();
        let source = format!("/agents/{}", self.inner.agent_id);
        let mut ev = client::task_request(
            &id,
            &source,
            capability,
            input,
            Some(timeout.as_millis() as u64),
        );
        if let Some(tp) = &self.traceparent {
            ev.set_extension(ext::TRACEPARENT, tp.as_str());
        }
        if let Some(parent) = &self.request_id {
            ev.set_extension("parentid", parent.as_str());
        }
        // The child belongs to the parent's tenant: published on
        // `agentry.requests.<tenant>`, awaited on `agentry.results.<tenant>.<id>`.
        let out = client::submit_as(
            &self.inner.client,
            &self.inner.js,
            self.tenant.as_ref(),
            &ev,
            Mode::Binary,
            timeout + Duration::from_secs(2),
        )
        .await?;
        if out.is_success() {
            Ok(out.data.get("output").cloned().unwrap_or(Value::Null))
        } else {
            let err = out
                .data
                .get("error")
                .cloned()
                .unwrap_or_else(|| out.data.clone());
            Err(A2aError::Remote {
                target: capability.to_owned(),
                code: err["code"]
                    .as_str()
                    .or(out.data["reason"].as_str())
                    .unwrap_or("failed")
                    .to_owned(),
                message: err["message"]
                    .as_str()
                    .or(out.data["detail"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            })
        }
    }

    fn record<T>(&self, kind: &str, res: &Result<T, A2aError>, started: Instant) {
        let outcome = match res {
            Ok(_) => "ok",
            Err(A2aError::Timeout { .. }) => "timeout",
            Err(_) => "error",
        };
        self.inner
            .metrics
            .a2a_calls
            .with_label_values(&[kind, outcome])
            .inc();
        self.inner
            .metrics
            .a2a_duration
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Publishes a lifecycle event `ty` (`io.agentry.<a>.<b>`) on `agentry.events.<a>.<b>`.
    pub async fn emit(&self, ty: &str, data: Value) -> Result<(), crate::publish::PublishError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut ev = event::new_event(&id, &format!("/agents/{}", self.inner.agent_id), ty, data);
        if let Some(tp) = &self.traceparent {
            ev.set_extension(ext::TRACEPARENT, tp.as_str());
        }
        crate::publish::event(&self.inner.js, &subject::events_for_type(ty), &ev, &id)
            .await
            .map(|_| ())
    }
}

/// The `error.type` of a failed A2A call's span.
fn a2a_error_kind(e: &A2aError) -> &str {
    match e {
        A2aError::NoResponders(_) => "no_responders",
        A2aError::Timeout { .. } => "timeout",
        A2aError::Remote { code, .. } => code,
        A2aError::NoAgent(_) => "no_agent",
        A2aError::Submit(_) => "submit",
        A2aError::Encode(_) => "encode",
        A2aError::Request { .. } => "request",
        A2aError::Decode { .. } => "decode",
        A2aError::Registry(_) => "registry",
        A2aError::AgentId(_) => "agent_id",
    }
}
