//! The `customer_service` agent: `customer_inquiry` with conversation
//! memory, `issue_resolution` and `escalation` with tickets in KV
//! `agentry-tickets`, and `io.agentry.escalation.created` events.
//!
//! Ticket ids are `tkt-<request id>` unless the input names a ticket, so a
//! redelivered task writes the same ticket; see [`super::ticket_store`] for
//! how a redelivery is recognised.

use std::time::Duration;

use agentry::agent::{Agent, Context, Descriptor, Task, TaskError};
use agentry::event::types;
use agentry::id::Capability;
use agentry::subject;
use async_nats::jetstream::kv;
use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing::info;

use super::memory_store::MemoryStore;
use super::ticket::Ticket;
use super::ticket_store::{self, Stored};
use super::{LogicError, intent};

/// The capabilities, in descriptor order.
pub const CAPABILITIES: [&str; 3] = ["customer_inquiry", "issue_resolution", "escalation"];

/// Settings of the customer_service agent.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a conversation is remembered after its last message.
    pub conversation_ttl: Duration,
    /// Conversations kept in process when Redis is not available.
    pub local_conversations: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            conversation_ttl: Duration::from_secs(24 * 3600),
            local_conversations: 10_000,
        }
    }
}

/// The customer_service agent.
pub struct CustomerService {
    memory: MemoryStore,
    tickets: OnceCell<kv::Store>,
}

impl CustomerService {
    pub fn new(cfg: Config) -> Self {
        Self {
            memory: MemoryStore::new(cfg.conversation_ttl, cfg.local_conversations),
            tickets: OnceCell::new(),
        }
    }

    async fn tickets(&self, ctx: &Context) -> Result<&kv::Store, TaskError> {
        self.tickets
            .get_or_try_init(|| async {
                ctx.jetstream()
                    .get_key_value(subject::TICKETS_BUCKET)
                    .await
                    .map_err(|e| {
                        TaskError::retryable(format!("KV {}: {e}", subject::TICKETS_BUCKET))
                    })
            })
            .await
    }

    async fn inquiry(&self, task: &Task, ctx: &Context) -> Result<Value, TaskError> {
        let id = super::conversation_id(&task.input)
            .ok_or_else(|| TaskError::invalid_input("customer_inquiry needs a message"))?;
        // A tenant's conversations live apart from every other tenant's.
        let id = memory_key(ctx.tenant(), &id);
        let mut memory = self.memory.load(ctx.redis(), &id).await;
        // A redelivered task replaces the turn it added the first time.
        if memory.last_request_id.as_deref() == Some(task.request_id.as_str()) {
            memory.turns.pop();
        }
        let (output, mut next) =
            super::customer_inquiry(&task.input, &memory).map_err(TaskError::from)?;
        next.last_request_id = Some(task.request_id.to_string());
        self.memory.save(ctx.redis(), &id, &next).await;
        Ok(output)
    }

    async fn resolution(&self, task: &Task, ctx: &Context) -> Result<Value, TaskError> {
        let store = self.tickets(ctx).await?;
        let ticket_id = ticket_id_for(task);
        let key = ticket_store::key(ctx.tenant(), &ticket_id);
        let current = ticket_store::load(store, &key).await?;
        let request_id = task.request_id.as_str();
        if let Some((_, at)) = ticket_store::replay(store, current.as_ref(), request_id).await? {
            // Redelivered: the ticket exists; answer as the first delivery did.
            let (mut output, mut ticket) =
                super::issue_resolution(&task.input, &ticket_id, at).map_err(TaskError::from)?;
            ticket_store::mark(&mut ticket, request_id, at);
            output["ticket"] = to_json(&ticket)?;
            return Ok(output);
        }
        let now = Utc::now();
        let (mut output, mut ticket) =
            super::issue_resolution(&task.input, &ticket_id, now).map_err(TaskError::from)?;
        ticket_store::mark(&mut ticket, request_id, now);
        output["ticket"] = to_json(&ticket)?;
        ticket_store::save(store, &key, &ticket, current.as_ref()).await?;
        Ok(output)
    }

    async fn escalation(&self, task: &Task, ctx: &Context) -> Result<Value, TaskError> {
        let store = self.tickets(ctx).await?;
        let named = task.input.get("ticket_id").and_then(Value::as_str);
        let ticket_id = named.map_or_else(|| ticket_id_for(task), str::to_owned);
        let key = ticket_store::key(ctx.tenant(), &ticket_id);
        let current = ticket_store::load(store, &key).await?;
        let request_id = task.request_id.as_str();
        let replay = ticket_store::replay(store, current.as_ref(), request_id).await?;
        let (output, ticket) = match replay {
            Some((before, at)) => {
                let (mut output, mut ticket) =
                    super::escalation(&task.input, before.as_ref(), &ticket_id, at)
                        .map_err(TaskError::from)?;
                ticket_store::mark(&mut ticket, request_id, at);
                output["ticket"] = to_json(&ticket)?;
                (output, ticket)
            }
            None => {
                let now = Utc::now();
                let existing = current.as_ref().map(|s: &Stored| &s.ticket);
                let (mut output, mut ticket) =
                    super::escalation(&task.input, existing, &ticket_id, now)
                        .map_err(TaskError::from)?;
                ticket_store::mark(&mut ticket, request_id, now);
                output["ticket"] = to_json(&ticket)?;
                ticket_store::save(store, &key, &ticket, current.as_ref()).await?;
                (output, ticket)
            }
        };
        if output["escalated"].as_bool() == Some(true) {
            // Also on a redelivery: the first delivery may have stopped before this.
            let data = escalation_event(task, &output, &ticket);
            ctx.emit(types::ESCALATION_CREATED, data)
                .await
                .map_err(|e| TaskError::retryable(format!("escalation event: {e}")))?;
            info!(ticket = %ticket.ticket_id, priority = %output["priority"], "escalated");
        }
        Ok(output)
    }
}

/// `tkt-<request id>`: the ticket a task creates when the input names none.
/// The memory id of conversation `id` of `tenant`: `<tenant>/<id>`, or the
/// bare id for untenanted requests (tenant names contain no `/`).
pub fn memory_key(tenant: Option<&agentry::subject::Tenant>, id: &str) -> String {
    match tenant {
        Some(t) => format!("{}/{id}", t.as_str()),
        None => id.to_owned(),
    }
}

pub fn ticket_id_for(task: &Task) -> String {
    format!("tkt-{}", task.request_id)
}

/// Data of `io.agentry.escalation.created` for an escalation output.
fn escalation_event(task: &Task, output: &Value, ticket: &Ticket) -> Value {
    let reason = task
        .input
        .get("reason")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let parts: Vec<&str> = output["reasons"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if parts.is_empty() {
                format!("escalation score {}", output["score"])
            } else {
                parts.join("; ")
            }
        });
    let mut data = json!({
        "ticket_id": ticket.ticket_id,
        "priority": output["priority"],
        "reason": reason,
        "intent": output["intent"],
        "request_id": task.request_id.as_str(),
    });
    if let Some(c) = ticket.customer_id.as_deref().filter(|c| !c.is_empty()) {
        data["customer_id"] = c.into();
    }
    data
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, TaskError> {
    serde_json::to_value(v).map_err(|e| TaskError::permanent(format!("output: {e}")))
}

/// Trains the intent classifier (and parses the FAQ) once per process, on
/// the blocking pool so the async workers keep serving heartbeats.
async fn warm_up() -> Result<(), TaskError> {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY
        .get_or_try_init(|| async {
            let started = std::time::Instant::now();
            let trained = tokio::task::spawn_blocking(|| {
                let model = intent::model()?;
                super::faq::bundled()?;
                Ok::<usize, LogicError>(model.n_train())
            })
            .await
            .map_err(|e| TaskError::retryable(format!("classifier training task: {e}")))?
            .map_err(TaskError::from)?;
            info!(
                examples = trained,
                ms = started.elapsed().as_millis() as u64,
                "intent classifier trained"
            );
            Ok(())
        })
        .await
        .map(|_| ())
}

#[async_trait::async_trait]
impl Agent for CustomerService {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: "customer_service".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Inquiry classification with conversation memory, FAQ answers, guided resolution and escalation tickets".into(),
            capabilities: CAPABILITIES
                .iter()
                .filter_map(|c| Capability::new(*c).ok())
                .collect(),
        }
    }

    async fn handle(&self, task: Task, ctx: Context) -> Result<Value, TaskError> {
        warm_up().await?;
        match task.capability.as_str() {
            "customer_inquiry" => self.inquiry(&task, &ctx).await,
            "issue_resolution" => self.resolution(&task, &ctx).await,
            "escalation" => self.escalation(&task, &ctx).await,
            other => Err(TaskError::permanent(format!(
                "customer_service does not serve {other}"
            ))),
        }
    }

    /// Trains the classifier at start, so the first inquiry does not wait for it.
    async fn background(
        &self,
        _ctx: Context,
        _shutdown: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        if let Err(e) = warm_up().await {
            tracing::warn!(error = %e, "classifier warm-up failed; the first task retries it");
        }
        Ok(())
    }

    fn default_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
}
