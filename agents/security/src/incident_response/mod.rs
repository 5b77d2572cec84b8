//! The `incident_response` capability: incident state transitions.
//!
//! | action | needs | effect |
//! |---|---|---|
//! | `open` | `source` (or findings from one source) | new `open` incident; on an existing not-closed incident nothing changes (idempotent) |
//! | `update` | an incident not closed | appends a note, merges findings, raises severity |
//! | `quarantine` | `source` or an incident not closed | status `contained`, quarantine `set` until now + `quarantine_minutes` (default 60); opens the incident if there is none |
//! | `release` | an incident | status back to `open` if contained, quarantine `remove` |
//! | `close` | an incident | status `closed` (quarantine `remove` if it was contained); closing a closed incident changes nothing |
//!
//! The caller stores the incident in KV `agentry-incidents` (key = id) and
//! applies the [`QuarantineChange`] to KV `agentry-quarantine` under
//! [`quarantine_key`] of the source.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::LogicError;
use super::types::{Finding, Severity, ThreatKind};

/// Default quarantine length.
pub const DEFAULT_QUARANTINE_MINUTES: u32 = 60;
/// Longest quarantine (7 days).
pub const MAX_QUARANTINE_MINUTES: u32 = 7 * 24 * 60;
/// Timeline entries kept per incident (the oldest after the first are dropped).
pub const MAX_TIMELINE: usize = 200;

/// Lifecycle of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Contained,
    Closed,
}

/// One thing that happened to an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub action: String,
    pub note: String,
    /// The task request that made this change (set by the agent, so a
    /// redelivered task is recognised and not applied twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A security incident about one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub source: String,
    /// The tenant of the principal (tenant, source) the incident is about;
    /// `None`: untenanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub timeline: Vec<TimelineEntry>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub kinds: BTreeSet<ThreatKind>,
    /// Sum of the counts of the findings attached so far.
    #[serde(default)]
    pub findings_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_until: Option<DateTime<Utc>>,
}

/// What to do to KV `agentry-quarantine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum QuarantineChange {
    /// Put `key` with this record; the engine refuses requests from `source`
    /// until `until`.
    Set {
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        key: String,
        until: DateTime<Utc>,
        incident_id: String,
        reason: String,
    },
    /// Delete `key`.
    Remove {
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        key: String,
        incident_id: String,
    },
}

/// The KV key of an untenanted source in `agentry-quarantine` (the engine
/// looks it up with the same function, [`agentry::quarantine::key`]).
pub fn quarantine_key(source: &str) -> String {
    agentry::quarantine::key(None, source)
}

/// The KV key of principal (`tenant`, `source`) in `agentry-quarantine`.
/// `tenant` was validated when the incident was made ([`incident_response`]).
pub fn principal_key(tenant: Option<&str>, source: &str) -> String {
    match tenant.and_then(|t| agentry::subject::Tenant::new(t).ok()) {
        Some(t) => agentry::quarantine::key(Some(&t), source),
        None => quarantine_key(source),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Open,
    Update,
    Quarantine,
    Release,
    Close,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    action: Action,
    #[serde(default)]
    incident_id: Option<String>,
    #[serde(default)]
    source: Option<String>,
    /// The tenant of the principal (tenant, source); set by the monitor from
    /// the subject, forced to the caller's tenant for tenant tasks.
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    findings: Vec<Finding>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    quarantine_minutes: Option<u32>,
}

fn push_timeline(incident: &mut Incident, at: DateTime<Utc>, action: &str, note: String) {
    incident.timeline.push(TimelineEntry {
        at,
        action: action.to_string(),
        note,
        request_id: None,
    });
    if incident.timeline.len() > MAX_TIMELINE {
        // Keep the opening entry, drop the oldest after it.
        incident.timeline.remove(1);
    }
    incident.updated_at = at;
}

fn absorb(incident: &mut Incident, findings: &[Finding]) {
    for f in findings {
        incident.severity = incident.severity.max(f.severity);
        incident.kinds.insert(f.kind);
        incident.findings_count += f.count;
    }
}

fn findings_note(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let kinds: BTreeSet<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
    format!(
        "{} finding(s): {}",
        findings.len(),
        kinds.into_iter().collect::<Vec<_>>().join(", ")
    )
}

fn join_notes(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `incident_response` capability.
///
/// `current` is the stored incident named by `input.incident_id` (the
/// caller looks it up), `now` stamps the change and `new_incident_id` names
/// an incident created here when the input gives no id. Returns the output,
/// the incident to store and the quarantine change to apply, if any.
pub fn incident_response(
    input: &Value,
    current: Option<Incident>,
    now: DateTime<Utc>,
    new_incident_id: &str,
) -> Result<(Value, Incident, Option<QuarantineChange>), LogicError> {
    let input: Input = agentry_agent_kit::input::decode(input)?;
    if let (Some(cur), Some(id)) = (&current, input.incident_id.as_deref())
        && cur.id != id
    {
        return Err(LogicError::InvalidInput(format!(
            "incident_id `{id}` does not match the stored incident `{}`",
            cur.id
        )));
    }
    let mut sources: BTreeSet<&str> = input.findings.iter().map(|f| f.source.as_str()).collect();
    if let Some(s) = input.source.as_deref() {
        sources.insert(s);
    }
    if let Some(cur) = &current {
        sources.insert(&cur.source);
    }
    if sources.len() > 1 {
        return Err(LogicError::InvalidInput(format!(
            "an incident is about one source, got {}",
            sources.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let source = sources.into_iter().next().map(str::to_string);
    let note = input.note.clone().unwrap_or_default();
    let minutes = input
        .quarantine_minutes
        .unwrap_or(DEFAULT_QUARANTINE_MINUTES);
    if minutes == 0 || minutes > MAX_QUARANTINE_MINUTES {
        return Err(LogicError::InvalidInput(format!(
            "quarantine_minutes must be in 1..={MAX_QUARANTINE_MINUTES}"
        )));
    }

    if let Some(t) = input.tenant.as_deref() {
        agentry::subject::Tenant::new(t)
            .map_err(|e| LogicError::InvalidInput(format!("tenant: {e}")))?;
    }
    if let (Some(cur), Some(t)) = (current.as_ref(), input.tenant.as_deref())
        && cur.tenant.as_deref() != Some(t)
    {
        return Err(LogicError::InvalidInput(format!(
            "no incident {} for tenant {t}",
            cur.id
        )));
    }
    let open_new = |source: &str| -> Incident {
        let mut incident = Incident {
            id: input
                .incident_id
                .clone()
                .unwrap_or_else(|| new_incident_id.to_string()),
            status: IncidentStatus::Open,
            severity: input.severity.unwrap_or(Severity::Low),
            source: source.to_string(),
            tenant: input.tenant.clone(),
            timeline: Vec::new(),
            created_at: now,
            updated_at: now,
            kinds: BTreeSet::new(),
            findings_count: 0,
            quarantine_until: None,
        };
        absorb(&mut incident, &input.findings);
        if input.findings.is_empty() && input.severity.is_none() {
            incident.severity = Severity::Medium;
        }
        push_timeline(
            &mut incident,
            now,
            "open",
            join_notes(&[&findings_note(&input.findings), &note]),
        );
        incident
    };
    let need_source = || {
        source.clone().ok_or_else(|| {
            LogicError::InvalidInput("source is required to open an incident".into())
        })
    };
    let need_current = |action: &str| {
        current.clone().ok_or_else(|| {
            LogicError::InvalidInput(format!("`{action}` needs an existing incident"))
        })
    };
    let not_closed = |incident: &Incident, action: &str| {
        if incident.status == IncidentStatus::Closed {
            Err(LogicError::Conflict(format!(
                "incident {} is closed; `{action}` does not apply",
                incident.id
            )))
        } else {
            Ok(())
        }
    };

    let (event, incident, change, changed) = match input.action {
        Action::Open => match current.clone() {
            Some(cur) if cur.status != IncidentStatus::Closed => ("unchanged", cur, None, false),
            Some(cur) => {
                return Err(LogicError::Conflict(format!(
                    "incident {} is closed; open a new one",
                    cur.id
                )));
            }
            None => ("opened", open_new(&need_source()?), None, true),
        },
        Action::Update => {
            let mut inc = need_current("update")?;
            not_closed(&inc, "update")?;
            if let Some(s) = input.severity {
                inc.severity = inc.severity.max(s);
            }
            absorb(&mut inc, &input.findings);
            push_timeline(
                &mut inc,
                now,
                "update",
                join_notes(&[&findings_note(&input.findings), &note]),
            );
            ("updated", inc, None, true)
        }
        Action::Quarantine => {
            let mut inc = match current.clone() {
                Some(c) => c,
                None => open_new(&need_source()?),
            };
            not_closed(&inc, "quarantine")?;
            if current.is_some() {
                absorb(&mut inc, &input.findings);
            }
            let until = now + Duration::minutes(i64::from(minutes));
            inc.status = IncidentStatus::Contained;
            inc.quarantine_until = Some(until);
            push_timeline(
                &mut inc,
                now,
                "quarantine",
                join_notes(&[&format!("source quarantined for {minutes} min"), &note]),
            );
            let reason = if note.is_empty() {
                format!("incident {} ({})", inc.id, inc.severity)
            } else {
                note.clone()
            };
            let change = QuarantineChange::Set {
                source: inc.source.clone(),
                tenant: inc.tenant.clone(),
                key: principal_key(inc.tenant.as_deref(), &inc.source),
                until,
                incident_id: inc.id.clone(),
                reason,
            };
            ("contained", inc, Some(change), true)
        }
        Action::Release => {
            let mut inc = need_current("release")?;
            let was_contained = inc.status == IncidentStatus::Contained;
            if was_contained {
                inc.status = IncidentStatus::Open;
            }
            inc.quarantine_until = None;
            push_timeline(
                &mut inc,
                now,
                "release",
                join_notes(&["quarantine lifted", &note]),
            );
            let change = QuarantineChange::Remove {
                source: inc.source.clone(),
                tenant: inc.tenant.clone(),
                key: principal_key(inc.tenant.as_deref(), &inc.source),
                incident_id: inc.id.clone(),
            };
            ("released", inc, Some(change), true)
        }
        Action::Close => {
            let mut inc = need_current("close")?;
            if inc.status == IncidentStatus::Closed {
                ("unchanged", inc, None, false)
            } else {
                let change =
                    (inc.status == IncidentStatus::Contained).then(|| QuarantineChange::Remove {
                        source: inc.source.clone(),
                        tenant: inc.tenant.clone(),
                        key: principal_key(inc.tenant.as_deref(), &inc.source),
                        incident_id: inc.id.clone(),
                    });
                inc.status = IncidentStatus::Closed;
                inc.quarantine_until = None;
                push_timeline(&mut inc, now, "close", note.clone());
                ("closed", inc, change, true)
            }
        }
    };
    let output = json!({
        "event": event,
        "changed": changed,
        "incident": incident,
        "quarantine": change,
    });
    Ok((output, incident, change))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
