//! Carrying out an incident change: the `incident_response` logic against
//! the stored incident, then the incident in KV, the quarantine entry and
//! the lifecycle events. Used by the `incident_response` capability and by
//! the continuous monitor's alerts.

use agentry::agent::Context;
use agentry::event::types;
use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tracing::info;

use super::incident_response::{Incident, QuarantineChange, incident_response};
use super::store::{self, StoreError};
use super::{LogicError, Severity, ThreatKind};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Logic(#[from] LogicError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing {event}")]
    Emit {
        event: &'static str,
        #[source]
        source: agentry::publish::PublishError,
    },
}

/// The two buckets an incident change touches.
pub struct Buckets {
    pub incidents: kv::Store,
    pub quarantine: kv::Store,
}

/// One incident change to carry out.
pub struct Change<'a> {
    /// The `incident_response` input.
    pub input: &'a Value,
    /// The incident it applies to (or opens).
    pub incident_id: &'a str,
    /// The request (or alert) making the change, recorded in the timeline.
    pub change_id: &'a str,
    /// Publish `io.agentry.security.incident` when this opens an incident
    /// (the monitor publishes its own, with the alert's kind).
    pub announce_opening: bool,
}

/// Runs the change and returns the `incident_response` output.
pub async fn apply(b: &Buckets, ctx: &Context, change: &Change<'_>) -> Result<Value, ApplyError> {
    let current = store::load(&b.incidents, change.incident_id).await?;
    let replay = store::replay(&b.incidents, current.as_ref(), change.change_id).await?;
    let (output, incident, quarantine, opened, at) = match replay {
        // Redelivered: answer as the first delivery did; the side effects
        // below are idempotent and repeated in case it stopped before them.
        Some((before, at)) => {
            let opened = before.is_none();
            let (mut output, mut incident, q) =
                incident_response(change.input, before, at, change.incident_id)?;
            store::mark(&mut incident, change.change_id, at);
            output["incident"] = incident_json(&incident)?;
            (output, incident, q, opened, at)
        }
        None => {
            let now = Utc::now();
            let (mut output, mut incident, q) = incident_response(
                change.input,
                current.as_ref().map(|c| c.incident.clone()),
                now,
                change.incident_id,
            )?;
            let changed = output["changed"].as_bool() == Some(true);
            if changed {
                store::mark(&mut incident, change.change_id, now);
                output["incident"] = incident_json(&incident)?;
                store::save(&b.incidents, &incident, current.as_ref()).await?;
            }
            (output, incident, q, changed && current.is_none(), now)
        }
    };
    if opened && change.announce_opening {
        let data = opening_event(ctx, change.input, &incident, at);
        emit(ctx, types::SECURITY_INCIDENT, data).await?;
    }
    if let Some(q) = &quarantine {
        store::apply_quarantine(&b.quarantine, q).await?;
        let (ty, data) = quarantine_event(q, change.input);
        emit(ctx, ty, data).await?;
        info!(incident = %incident.id, source = %incident.source, event = ty, "quarantine changed");
    }
    Ok(output)
}

async fn emit(ctx: &Context, ty: &'static str, data: Value) -> Result<(), ApplyError> {
    ctx.emit(ty, data)
        .await
        .map_err(|source| ApplyError::Emit { event: ty, source })
}

fn incident_json(incident: &Incident) -> Result<Value, ApplyError> {
    serde_json::to_value(incident).map_err(|source| {
        ApplyError::Store(StoreError::Corrupt {
            id: incident.id.clone(),
            source,
        })
    })
}

/// `io.agentry.security.incident` for an incident opened by a task: the
/// kind of its most severe finding (`other` without findings).
fn opening_event(ctx: &Context, input: &Value, incident: &Incident, at: DateTime<Utc>) -> Value {
    let findings: Vec<(ThreatKind, Severity, String)> = input["findings"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| {
                    let kind = serde_json::from_value(f["kind"].clone()).ok()?;
                    let severity = serde_json::from_value(f["severity"].clone()).ok()?;
                    let line = format!(
                        "{} x{}",
                        f["rule"].as_str().unwrap_or("finding"),
                        f["count"].as_u64().unwrap_or(0)
                    );
                    Some((kind, severity, line))
                })
                .collect()
        })
        .unwrap_or_default();
    let kind = findings
        .iter()
        .max_by_key(|(_, s, _)| *s)
        .map_or("other", |(k, _, _)| k.as_str());
    let note = incident
        .timeline
        .first()
        .map(|t| t.note.as_str())
        .filter(|n| !n.is_empty());
    let summary = match note {
        Some(n) => format!("incident opened for {}: {n}", incident.source),
        None => format!("incident opened for {}", incident.source),
    };
    let evidence: Vec<String> = findings.into_iter().map(|(_, _, l)| l).take(10).collect();
    json!({
        "incident_id": incident.id,
        "kind": kind,
        "severity": incident.severity,
        "summary": summary,
        "evidence": evidence,
        "detected_at": at,
        "source": incident.source,
        "agent_id": ctx.agent_id().as_str(),
    })
}

fn quarantine_event(q: &QuarantineChange, input: &Value) -> (&'static str, Value) {
    match q {
        QuarantineChange::Set {
            source,
            until,
            incident_id,
            reason,
            ..
        } => (
            types::SOURCE_QUARANTINED,
            json!({"source": source, "reason": reason, "incident_id": incident_id, "until": until}),
        ),
        QuarantineChange::Remove {
            source,
            incident_id,
            ..
        } => {
            let reason = input["note"]
                .as_str()
                .filter(|n| !n.trim().is_empty())
                .map_or_else(
                    || {
                        format!(
                            "incident {incident_id}: {}",
                            input["action"].as_str().unwrap_or("release")
                        )
                    },
                    str::to_owned,
                );
            (
                types::SOURCE_RELEASED,
                json!({"source": source, "reason": reason, "incident_id": incident_id}),
            )
        }
    }
}
