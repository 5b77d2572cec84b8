//! Incidents in KV `agentry-incidents` (key = incident id, value = the
//! incident JSON) and quarantine entries in KV `agentry-quarantine`.
//!
//! Every timeline entry a change adds carries the id of the request (or
//! alert) that made it. A redelivered task finds its own entry and is
//! answered from the revision before it (the bucket keeps 20) instead of
//! being applied twice. Incident writes are compare-and-set on the revision
//! read, so two concurrent changes cannot lose one: the loser is retried.

use agentry::quarantine::QuarantineEntry;
use async_nats::jetstream::kv::{self, Operation};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::incident_response::{Incident, QuarantineChange};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("KV {bucket}")]
    Kv {
        bucket: &'static str,
        /// async-nats errors of several operations, each its own type.
        #[source]
        source: async_nats::Error,
    },
    #[error("stored incident {id} is not valid")]
    Corrupt {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("incident {0} changed concurrently")]
    Conflict(String),
}

impl StoreError {
    fn kv(bucket: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Kv {
            bucket,
            source: Box::new(e),
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Corrupt { .. })
    }
}

const INCIDENTS: &str = agentry::subject::INCIDENTS_BUCKET;
const QUARANTINE: &str = agentry::subject::QUARANTINE_BUCKET;

/// The stored incident and the revision it was read at.
pub struct Stored {
    pub incident: Incident,
    pub revision: u64,
}

/// Reads an incident.
pub async fn load(store: &kv::Store, id: &str) -> Result<Option<Stored>, StoreError> {
    let entry = store
        .entry(id)
        .await
        .map_err(|e| StoreError::kv(INCIDENTS, e))?;
    let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
        return Ok(None);
    };
    let incident = serde_json::from_slice(&entry.value).map_err(|source| StoreError::Corrupt {
        id: id.to_owned(),
        source,
    })?;
    Ok(Some(Stored {
        incident,
        revision: entry.revision,
    }))
}

fn applied_at(incident: &Incident, change_id: &str) -> Option<DateTime<Utc>> {
    incident
        .timeline
        .iter()
        .find(|t| t.request_id.as_deref() == Some(change_id))
        .map(|t| t.at)
}

/// When `change_id` has already changed the incident: the incident before
/// that change and when it was made.
pub async fn replay(
    store: &kv::Store,
    current: Option<&Stored>,
    change_id: &str,
) -> Result<Option<(Option<Incident>, DateTime<Utc>)>, StoreError> {
    let (Some(current), Some(at)) = (
        current,
        current.and_then(|c| applied_at(&c.incident, change_id)),
    ) else {
        return Ok(None);
    };
    let mut history = store
        .history(current.incident.id.as_str())
        .await
        .map_err(|e| StoreError::kv(INCIDENTS, e))?;
    let mut before: Option<Incident> = None;
    while let Some(entry) = history.next().await {
        let entry = entry.map_err(|e| StoreError::kv(INCIDENTS, e))?;
        let incident: Option<Incident> = match entry.operation {
            Operation::Put => serde_json::from_slice(&entry.value).ok(),
            Operation::Delete | Operation::Purge => None,
        };
        if incident
            .as_ref()
            .is_some_and(|i| applied_at(i, change_id).is_some())
        {
            return Ok(Some((before, at)));
        }
        before = incident;
        if entry.delta == 0 {
            break;
        }
    }
    // Older than the bucket's history: answer from the current incident.
    Ok(Some((Some(current.incident.clone()), at)))
}

/// Marks the timeline entries added at `now` as made by `change_id`.
pub fn mark(incident: &mut Incident, change_id: &str, now: DateTime<Utc>) {
    for t in &mut incident.timeline {
        if t.request_id.is_none() && t.at == now {
            t.request_id = Some(change_id.to_owned());
        }
    }
}

/// Writes `incident`: created if `previous` is `None`, else updated at its revision.
pub async fn save(
    store: &kv::Store,
    incident: &Incident,
    previous: Option<&Stored>,
) -> Result<(), StoreError> {
    let id = incident.id.as_str();
    let value = serde_json::to_vec(incident).map_err(|source| StoreError::Corrupt {
        id: id.to_owned(),
        source,
    })?;
    match previous {
        Some(p) => store
            .update(id, value.into(), p.revision)
            .await
            .map(|_| ())
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => StoreError::Conflict(id.to_owned()),
                _ => StoreError::kv(INCIDENTS, e),
            }),
        None => store
            .create(id, value.into())
            .await
            .map(|_| ())
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => StoreError::Conflict(id.to_owned()),
                _ => StoreError::kv(INCIDENTS, e),
            }),
    }
}

/// Applies a quarantine change to KV `agentry-quarantine` (idempotent).
pub async fn apply_quarantine(
    store: &kv::Store,
    change: &QuarantineChange,
) -> Result<(), StoreError> {
    match change {
        QuarantineChange::Set {
            source,
            tenant,
            key,
            until,
            incident_id,
            reason,
        } => {
            let entry = QuarantineEntry {
                tenant: tenant.clone(),
                source: source.clone(),
                reason: reason.clone(),
                incident_id: Some(incident_id.clone()),
                until: Some(*until),
            };
            let value = serde_json::to_vec(&entry).map_err(|source| StoreError::Corrupt {
                id: incident_id.clone(),
                source,
            })?;
            store
                .put(key.as_str(), value.into())
                .await
                .map(|_| ())
                .map_err(|e| StoreError::kv(QUARANTINE, e))
        }
        QuarantineChange::Remove { key, .. } => store
            .delete(key.as_str())
            .await
            .map_err(|e| StoreError::kv(QUARANTINE, e)),
    }
}
