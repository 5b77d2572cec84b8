//! Tickets in KV `agentry-tickets` (value = the ticket JSON). The key is
//! [`key`]: the ticket id, prefixed with the tenant for a tenant's tickets,
//! so one tenant never reads or changes another's ticket of the same id.
//!
//! Every history entry a task adds carries the task's request id. A
//! redelivered task finds its own entry and is answered from the revision
//! before it (the bucket keeps 20) instead of being applied twice. Writes
//! are compare-and-set on the revision read, so two tasks changing one
//! ticket at once cannot lose an update: the loser is retried.

use agentry::agent::TaskError;
use async_nats::jetstream::kv::{self, Operation};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::ticket::Ticket;

/// The stored ticket, the revision it was read at and its KV key.
pub struct Stored {
    pub ticket: Ticket,
    pub revision: u64,
    pub key: String,
}

/// The KV key of ticket `id` of `tenant`: `<tenant>.<id>`, or the bare id
/// for untenanted (operator, dev-mode) requests.
pub fn key(tenant: Option<&agentry::subject::Tenant>, id: &str) -> String {
    match tenant {
        Some(t) => format!("{}.{id}", t.as_str()),
        None => id.to_owned(),
    }
}

/// The ticket as it was before `request_id` changed it, and when that
/// change was made: `Some((pre-image, at))` when `request_id` has already
/// been applied to the ticket.
pub type Replay = Option<(Option<Ticket>, DateTime<Utc>)>;

/// Reads the ticket stored under `id` (a [`key`]).
pub async fn load(store: &kv::Store, id: &str) -> Result<Option<Stored>, TaskError> {
    let entry = store
        .entry(id)
        .await
        .map_err(|e| TaskError::retryable(format!("reading ticket {id}: {e}")))?;
    let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
        return Ok(None);
    };
    let ticket = serde_json::from_slice(&entry.value)
        .map_err(|e| TaskError::permanent(format!("stored ticket {id} is not valid: {e}")))?;
    Ok(Some(Stored {
        ticket,
        revision: entry.revision,
        key: id.to_owned(),
    }))
}

fn applied_at(ticket: &Ticket, request_id: &str) -> Option<DateTime<Utc>> {
    ticket
        .history
        .iter()
        .find(|h| h.request_id.as_deref() == Some(request_id))
        .map(|h| h.at)
}

/// Whether `request_id` already changed the ticket; if so, the ticket before it.
pub async fn replay(
    store: &kv::Store,
    current: Option<&Stored>,
    request_id: &str,
) -> Result<Replay, TaskError> {
    let Some(at) = current.and_then(|c| applied_at(&c.ticket, request_id)) else {
        return Ok(None);
    };
    let Some(current) = current else {
        return Ok(None);
    };
    let id = current.key.as_str();
    let mut history = store
        .history(id)
        .await
        .map_err(|e| TaskError::retryable(format!("reading ticket {id} history: {e}")))?;
    let mut before: Option<Ticket> = None;
    while let Some(entry) = history.next().await {
        let entry =
            entry.map_err(|e| TaskError::retryable(format!("reading ticket {id} history: {e}")))?;
        let ticket: Option<Ticket> = match entry.operation {
            Operation::Put => serde_json::from_slice(&entry.value).ok(),
            Operation::Delete | Operation::Purge => None,
        };
        if ticket
            .as_ref()
            .is_some_and(|t| applied_at(t, request_id).is_some())
        {
            return Ok(Some((before, at)));
        }
        before = ticket;
        if entry.delta == 0 {
            break;
        }
    }
    // The revision before the change is older than the bucket's history:
    // answer from the current ticket, which already contains the change.
    Ok(Some((Some(current.ticket.clone()), at)))
}

/// Marks the history entries added at `now` as made by `request_id`.
pub fn mark(ticket: &mut Ticket, request_id: &str, now: DateTime<Utc>) {
    for h in &mut ticket.history {
        if h.request_id.is_none() && h.at == now {
            h.request_id = Some(request_id.to_owned());
        }
    }
}

/// Writes `ticket` under `id` (a [`key`]): created if `previous` is
/// `None`, else updated at its revision.
pub async fn save(
    store: &kv::Store,
    id: &str,
    ticket: &Ticket,
    previous: Option<&Stored>,
) -> Result<(), TaskError> {
    let value = serde_json::to_vec(ticket)
        .map_err(|e| TaskError::permanent(format!("ticket {id} does not serialise: {e}")))?;
    let res = match previous {
        Some(p) => store
            .update(id, value.into(), p.revision)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => store
            .create(id, value.into())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    res.map_err(|e| {
        TaskError::retryable(format!("writing ticket {id} (changed concurrently?): {e}"))
    })
}
