//! Decodes and validates a request once, at the edge, into [`Request`].

use agentry::event::{self, Limits, types};
use agentry::id::{Capability, RequestId, RunId, SignalName, WorkflowName};
use agentry::reason::Reason;
use agentry::schema;
use agentry::subject::{self, Tenant};
use cloudevents::{AttributesReader, Event};
use serde_json::Value;

/// A valid request.
#[derive(Debug)]
pub enum Request {
    Task {
        capability: Capability,
        timeout_ms: Option<u64>,
    },
    Workflow {
        workflow: WorkflowName,
        version: Option<u32>,
        input: Value,
        timeout_ms: Option<u64>,
    },
    Signal {
        run_id: RunId,
        signal: SignalName,
        payload: Value,
    },
    Cancel {
        run_id: RunId,
        reason: Option<String>,
    },
}

impl Request {
    /// The capability or workflow it names, for the `request.accepted` fact.
    pub fn target(&self) -> Option<(&'static str, &str)> {
        match self {
            Request::Task { capability, .. } => Some(("capability", capability.as_str())),
            Request::Workflow { workflow, .. } => Some(("workflow", workflow.as_str())),
            Request::Signal { .. } | Request::Cancel { .. } => None,
        }
    }

    pub fn type_label(&self) -> &'static str {
        match self {
            Request::Task { .. } => "task.requested",
            Request::Workflow { .. } => "workflow.requested",
            Request::Signal { .. } => "workflow.signal",
            Request::Cancel { .. } => "workflow.cancel",
        }
    }
}

/// A request that must be rejected: reason, detail, and what could be read.
#[derive(Debug)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
    pub id: Option<RequestId>,
    pub source: Option<String>,
    pub arrived: Arrived,
    /// The client's `traceparent`, where one could be read: the parent of
    /// the rejection's intake span (boxed: the rejection is an `Err` kept small).
    pub traceparent: Option<Box<str>>,
}

/// The tenant a request arrived under, read from its subject only, once.
#[derive(Debug, Clone)]
pub enum Arrived {
    /// On `agentry.requests.<tenant>`, or on `agentry.requests` (`None`).
    Under(Option<Tenant>),
    /// On a subject naming no valid tenant (only a service role can
    /// publish there): its rejection gets no result, only the DLQ copy.
    Invalid,
}

pub struct Accepted {
    /// Content mode it arrived in (binary requests are forwarded without re-encoding).
    pub mode: event::Mode,
    pub id: RequestId,
    /// The tenant, taken only from the subject the request arrived on
    /// (`agentry.requests.<tenant>`); `None` on the untenanted `agentry.requests`.
    pub tenant: Option<Tenant>,
    pub source: String,
    pub event: Event,
    pub request: Request,
}

impl Accepted {
    /// Rejects this request (after it was decoded) for `reason`.
    pub fn reject(&self, reason: Reason, detail: String) -> Rejection {
        Rejection {
            reason,
            detail,
            id: Some(self.id.clone()),
            source: Some(self.source.clone()),
            arrived: Arrived::Under(self.tenant.clone()),
            traceparent: event::ext_str(&self.event, event::ext::TRACEPARENT).map(Into::into),
        }
    }
}

/// Decodes the request that arrived on `subject`.
pub fn decode(
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    limits: &Limits,
) -> Result<Accepted, Rejection> {
    // The principal's tenant: parsed here once, from the subject only.
    let tenant = subject::tenant_of_request(subject);
    let arrived = match &tenant {
        Ok(t) => Arrived::Under(t.clone()),
        Err(_) => Arrived::Invalid,
    };
    let decoded = event::decode(headers, payload, limits).map_err(|e| Rejection {
        reason: e.reason(),
        detail: agentry::error::chain(&e),
        id: event::request_id_hint(headers, payload),
        source: event::source_hint(headers, payload),
        arrived: arrived.clone(),
        traceparent: event::traceparent_hint(headers, payload).map(Into::into),
    })?;
    let mode = decoded.mode;
    let ev = decoded.event;
    let source = ev.source().to_string();
    let reject = |reason: Reason, detail: String, id: Option<RequestId>| Rejection {
        reason,
        detail,
        id,
        source: Some(source.clone()),
        arrived: arrived.clone(),
        traceparent: event::ext_str(&ev, event::ext::TRACEPARENT).map(Into::into),
    };
    let id = RequestId::new(ev.id()).map_err(|e| reject(Reason::InvalidId, e.to_string(), None))?;
    let tenant = tenant.map_err(|e| reject(Reason::InvalidId, e.to_string(), Some(id.clone())))?;
    let ty = ev.ty().to_owned();
    if ![
        types::TASK_REQUESTED,
        types::WORKFLOW_REQUESTED,
        types::WORKFLOW_SIGNAL,
        types::WORKFLOW_CANCEL,
    ]
    .contains(&ty.as_str())
    {
        return Err(reject(
            Reason::UnknownType,
            format!("type {ty:?} is not a request type"),
            Some(id),
        ));
    }
    let data = event::data_json(&ev).map_err(|e| {
        reject(
            Reason::SchemaInvalid,
            agentry::error::chain(&e),
            Some(id.clone()),
        )
    })?;
    if let Some(v) = schema::global().event(&ty)
        && let Err(e) = schema::check(v, &data)
    {
        return Err(reject(Reason::SchemaInvalid, e.to_string(), Some(id)));
    }
    let bad =
        |e: agentry::id::IdError| reject(Reason::SchemaInvalid, e.to_string(), Some(id.clone()));
    let request = match ty.as_str() {
        types::TASK_REQUESTED => Request::Task {
            capability: Capability::new(data["capability"].as_str().unwrap_or_default())
                .map_err(bad)?,
            timeout_ms: data["timeout_ms"].as_u64(),
        },
        types::WORKFLOW_REQUESTED => Request::Workflow {
            workflow: WorkflowName::new(data["workflow"].as_str().unwrap_or_default())
                .map_err(bad)?,
            version: data["version"].as_u64().map(|v| v as u32),
            input: data.get("input").cloned().unwrap_or(Value::Null),
            timeout_ms: data["timeout_ms"].as_u64(),
        },
        types::WORKFLOW_SIGNAL => Request::Signal {
            run_id: RunId::new(data["run_id"].as_str().unwrap_or_default()).map_err(bad)?,
            signal: SignalName::new(data["signal"].as_str().unwrap_or_default()).map_err(bad)?,
            payload: data.get("payload").cloned().unwrap_or(Value::Null),
        },
        _ => Request::Cancel {
            run_id: RunId::new(data["run_id"].as_str().unwrap_or_default()).map_err(bad)?,
            reason: data["reason"].as_str().map(str::to_owned),
        },
    };
    Ok(Accepted {
        mode,
        id,
        tenant,
        source,
        event: ev,
        request,
    })
}
