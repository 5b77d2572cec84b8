//! Workflow run state as stored in KV `agentry-runs` (key = run id): the
//! vocabulary the engine writes (by compare-and-set on the entry revision)
//! and the CLI, the monitor and operators read (`nats kv get agentry-runs <id>`).
//!
//! Versioned by [`RunState::schema_version`]; fields are added with
//! `#[serde(default)]` so a new binary reads what an old one wrote.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::eval::{StepState, StepStatus};

/// The `schema_version` this code writes.
pub const RUN_SCHEMA_VERSION: u32 = 1;

/// Step outputs larger than this (serialised) live in the object store
/// `agentry-artifacts`; the run keeps a reference.
pub const INLINE_OUTPUT_LIMIT: usize = 256 * 1024;

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Failed, cancelled or timed out: compensations are running; the final
    /// status is [`Compensation::ending`].
    Compensating,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
}

impl RunStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut
        )
    }

    /// Parses [`RunStatus::as_str`].
    pub fn from_name(s: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Compensating,
            Self::Completed,
            Self::Failed,
            Self::Cancelled,
            Self::TimedOut,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// The shared error object: `{code, message, retryable?, details?}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ErrorInfo {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            retryable: false,
            details: None,
        }
    }

    /// The error object as JSON (for events and results).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A value kept in the object store `agentry-artifacts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub bucket: String,
    pub name: String,
    pub bytes: u64,
}

/// The step of a parent run that a child run answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub run_id: String,
    /// The parent's slot (`step` or `step-i<n>` for a foreach item).
    pub slot: String,
    pub attempt: u32,
}

/// One unit of work: a plain step's current attempt, or one element of a
/// `foreach` step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    pub status: StepStatus,
    /// The current (or last) attempt, from 1; 0 before the first.
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_ref: Option<ArtifactRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The child run of a `workflow` step (current attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_run: Option<String>,
    /// When the current attempt was dispatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Wall time of the last attempt as reported by the agent, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl Unit {
    /// Whether work for it is out (a task, a child run, a signal wait, a retry timer).
    pub fn in_flight(&self) -> bool {
        matches!(
            self.status,
            StepStatus::Scheduled
                | StepStatus::Running
                | StepStatus::Retrying
                | StepStatus::Waiting
        )
    }

    /// Whether a task or child run for its current attempt is out.
    pub fn awaiting_result(&self) -> bool {
        matches!(self.status, StepStatus::Scheduled | StepStatus::Running)
    }
}

/// The compensation of one completed step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompensationRecord {
    /// `running`, `retrying`, `completed` or `failed`.
    pub status: StepStatus,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

/// One step of a run. The fields of [`Unit`] are stored flat beside the
/// step's own (`status`, `attempt`, `output`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    #[serde(flatten)]
    pub unit: Unit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// The signal a `wait_for` step waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The elements of a `foreach` step, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreach: Option<Vec<Value>>,
    /// One unit per element of a `foreach` step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Unit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<CompensationRecord>,
    /// When the step first left `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

impl StepRecord {
    pub fn status(&self) -> StepStatus {
        self.unit.status
    }

    /// Wall time from start to end (or to `now` while running), in ms.
    pub fn elapsed_ms(&self, now: DateTime<Utc>) -> Option<u64> {
        let start = self.started_at?;
        let end = self.unit.ended_at.unwrap_or(now);
        u64::try_from((end - start).num_milliseconds()).ok()
    }
}

/// Compensation progress of a failed, cancelled or timed-out run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compensation {
    /// The status the run ends with once compensation is over.
    pub ending: RunStatus,
    /// Steps still to compensate, next first.
    #[serde(default)]
    pub pending: Vec<String>,
    /// The step being compensated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub done: Vec<String>,
    #[serde(default)]
    pub failed: Vec<String>,
}

/// A workflow run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub schema_version: u32,
    /// The run's key in `agentry-runs`: `<tenant>.<id>` for a tenant's run,
    /// `<id>` for an untenanted one ([`crate::subject::run_key`]).
    pub run_id: String,
    /// Id of the request that started the run (its result subject).
    pub request_id: String,
    /// The tenant that owns the run (from the subject its request arrived
    /// on; a child run inherits its parent's). Absent for untenanted runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub workflow: String,
    pub version: u32,
    /// The `agentry-workflows` key pinned at start (`<name>.<version>`).
    pub definition: String,
    pub status: RunStatus,
    #[serde(default)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_ref: Option<ArtifactRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The run's deadline (its timeout from `created_at`).
    pub deadline: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// Child nesting depth (0 for a top-level run).
    #[serde(default)]
    pub depth: u32,
    #[serde(default)]
    pub steps: BTreeMap<String, StepRecord>,
    /// Steps in the order they completed (for compensation).
    #[serde(default)]
    pub completed_order: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<Compensation>,
    /// Signals received before a step waited for them, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub signals: BTreeMap<String, Value>,
    /// Request ids of signals already applied (the latest few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen_signals: Vec<String>,
    /// Lifecycle events emitted so far (their ids are derived from it).
    #[serde(default)]
    pub event_seq: u64,
    /// Effects of the last transition not yet confirmed done (engine-internal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<String>,
}

impl RunState {
    /// The run's id (its request id, or for a child run the parent's task
    /// id) without the tenant: what events, results and `run.id` carry.
    pub fn id(&self) -> &str {
        crate::subject::run_id_of_key(&self.run_id)
    }

    /// Whether the run is parked: running, waiting for a signal, and with no
    /// task, child run or retry out. Parked runs do not count against the
    /// engine's active-run limit (docs/reliability.md, "Run limits").
    pub fn is_parked(&self) -> bool {
        let busy = |u: &Unit| {
            matches!(
                u.status,
                StepStatus::Scheduled | StepStatus::Running | StepStatus::Retrying
            )
        };
        self.status == RunStatus::Running
            && self
                .steps
                .values()
                .any(|s| s.unit.status == StepStatus::Waiting)
            && self
                .steps
                .values()
                .all(|s| !busy(&s.unit) && !s.items.iter().any(busy))
    }

    pub fn step_status(&self, step: &str) -> StepStatus {
        self.steps
            .get(step)
            .map(|s| s.unit.status)
            .unwrap_or_default()
    }

    /// Run wall time so far (or in total), in ms.
    pub fn duration_ms(&self, now: DateTime<Utc>) -> u64 {
        let end = self.ended_at.unwrap_or(now);
        u64::try_from((end - self.created_at).num_milliseconds()).unwrap_or(0)
    }

    /// The steps as CEL sees them; `outputs` supplies values kept as artifacts
    /// and the composed outputs of `foreach` steps.
    pub fn step_states(
        &self,
        outputs: &BTreeMap<String, Value>,
    ) -> BTreeMap<super::StepId, StepState> {
        self.steps
            .iter()
            .filter_map(|(id, rec)| {
                let id = super::StepId::new(id.as_str()).ok()?;
                let status = rec.unit.status;
                let output = if status == StepStatus::Completed || status == StepStatus::Compensated
                {
                    outputs
                        .get(id.as_str())
                        .cloned()
                        .or_else(|| rec.unit.output.clone())
                        .unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                let state = StepState {
                    status,
                    output,
                    error: rec.unit.error.as_ref().map(|e| e.message.clone()),
                    attempts: rec.unit.attempt,
                };
                Some((id, state))
            })
            .collect()
    }
}

impl super::StepStatuses for RunState {
    fn status_of(&self, step: &str) -> StepStatus {
        self.step_status(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunState {
        let now = Utc::now();
        RunState {
            schema_version: RUN_SCHEMA_VERSION,
            run_id: "r1".into(),
            request_id: "r1".into(),
            tenant: None,
            source: "/t".into(),
            traceparent: None,
            workflow: "w".into(),
            version: 1,
            definition: "w.1".into(),
            status: RunStatus::Running,
            input: serde_json::json!({"n": 1}),
            output: None,
            output_ref: None,
            error: None,
            created_at: now,
            updated_at: now,
            deadline: now,
            ended_at: None,
            parent: None,
            depth: 0,
            steps: BTreeMap::new(),
            completed_order: Vec::new(),
            compensation: None,
            signals: BTreeMap::new(),
            seen_signals: Vec::new(),
            event_seq: 0,
            outbox: Vec::new(),
            outbox_id: None,
        }
    }

    /// The stored form round-trips and carries its schema version and status spelling.
    #[test]
    fn round_trip() {
        let mut run = sample();
        run.steps.insert(
            "a".into(),
            StepRecord {
                unit: Unit {
                    status: StepStatus::Completed,
                    attempt: 2,
                    output: Some(serde_json::json!({"x": 1})),
                    ..Default::default()
                },
                capability: Some("echo".into()),
                ..Default::default()
            },
        );
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["status"], "running");
        assert_eq!(json["steps"]["a"]["status"], "completed");
        assert_eq!(json["steps"]["a"]["attempt"], 2);
        assert_eq!(json["steps"]["a"]["capability"], "echo");
        let back: RunState = serde_json::from_value(json).unwrap();
        assert_eq!(back, run);
        assert_eq!(RunStatus::from_name("timed_out"), Some(RunStatus::TimedOut));
        assert!(RunStatus::Cancelled.is_terminal());
        assert!(!RunStatus::Compensating.is_terminal());
    }

    /// CEL sees outputs of completed steps only, artifacts substituted.
    #[test]
    fn step_states_for_cel() {
        let mut run = sample();
        run.steps.insert(
            "a".into(),
            StepRecord {
                unit: Unit {
                    status: StepStatus::Completed,
                    attempt: 1,
                    output_ref: Some(ArtifactRef {
                        bucket: "b".into(),
                        name: "n".into(),
                        bytes: 3,
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        run.steps.insert(
            "b".into(),
            StepRecord {
                unit: Unit {
                    status: StepStatus::Failed,
                    attempt: 3,
                    error: Some(ErrorInfo::new("handler", "boom")),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let mut outputs = BTreeMap::new();
        outputs.insert("a".to_owned(), serde_json::json!([1, 2]));
        let states = run.step_states(&outputs);
        assert_eq!(states["a"].output, serde_json::json!([1, 2]));
        assert_eq!(states["b"].error.as_deref(), Some("boom"));
        assert_eq!(states["b"].attempts, 3);
        assert_eq!(states["b"].output, Value::Null);
    }
}
