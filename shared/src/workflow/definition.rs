//! The definition model: what a workflow document says, as Rust types.
//!
//! The model is read by serde after the document passed the JSON Schema (see
//! [`Definition::parse`]) and is only trusted after
//! [`Definition::check`](super::Definition::check) turned it into a
//! [`Compiled`](super::Compiled) workflow.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::retry::RetryPolicy;

/// Workflow timeout when the definition sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Fan-out cap of a `foreach` step when neither the step nor the workflow sets one.
pub const DEFAULT_MAX_PARALLEL: u32 = 10;

/// A step id: `^[a-z][a-z0-9_]{0,63}$` (so `steps.<id>` is valid CEL).
/// Checked on construction and on deserialisation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StepId(String);

/// A string that is not a valid step id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a step id (^[a-z][a-z0-9_]{{0,63}}$)")]
pub struct InvalidStepId(pub String);

impl StepId {
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidStepId> {
        let id = id.into();
        if is_step_id(&id) {
            Ok(Self(id))
        } else {
            Err(InvalidStepId(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StepId {
    type Error = InvalidStepId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for StepId {
    type Error = InvalidStepId;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<StepId> for String {
    fn from(id: StepId) -> Self {
        id.0
    }
}

impl Borrow<str> for StepId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for StepId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for StepId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for StepId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_name(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
}

/// `^[a-z][a-z0-9_]{0,63}$`
pub fn is_step_id(s: &str) -> bool {
    is_name(s, &['_'])
}

/// `^[a-z][a-z0-9_]{0,63}$`, one NATS subject token (DESIGN §2).
pub fn is_capability_name(s: &str) -> bool {
    is_name(s, &['_'])
}

/// `^[a-z][a-z0-9_-]{0,63}$`; with the version it forms the KV key
/// `<name>.<version>` in `agentry-workflows`.
pub fn is_workflow_name(s: &str) -> bool {
    is_name(s, &['_', '-'])
}

/// `^[a-z][a-z0-9_]{0,63}$`, like capabilities (schemas/README.md).
pub fn is_signal_name(s: &str) -> bool {
    is_name(s, &['_'])
}

/// A CEL expression as written in the definition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Expr(pub String);

impl Expr {
    pub fn new(source: impl Into<String>) -> Self {
        Self(source.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a step's input (or a compensation's) is computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputMapping {
    /// One CEL expression that must evaluate to a map.
    Expr(Expr),
    /// Field name -> CEL expression; the input is the map of the results.
    Fields(BTreeMap<String, Expr>),
}

/// What a failed step (after its retries) does to the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The run fails (and compensates what completed).
    #[default]
    Fail,
    /// The step ends `failed`, its dependants still run and can test
    /// `steps.<id>.status == 'failed'`.
    Continue,
}

impl OnError {
    fn is_fail(&self) -> bool {
        *self == Self::Fail
    }
}

/// A child workflow reference: `workflow: { name, version }`; without a
/// version, the latest one at the time the step starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// `wait_for: { signal, timeout }`: the step waits for an
/// `io.agentry.workflow.signal` with this name; its output is the payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitFor {
    #[serde(default)]
    pub signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// The saga half of a step: run when the run fails or is cancelled after this
/// step completed, in reverse completion order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compensation {
    pub capability: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Send a task to `agentry.tasks.<capability>`.
    Task { capability: String },
    /// Run another workflow as a child run; its output is the step's output.
    Child { name: String, version: Option<u32> },
    /// Wait for a signal; its payload is the step's output.
    Signal {
        name: String,
        timeout: Option<Duration>,
    },
}

/// One step of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawStep", into = "RawStep")]
pub struct Step {
    pub id: StepId,
    pub kind: StepKind,
    /// Input mapping; `None` means the empty map `{}`.
    pub input: Option<InputMapping>,
    pub needs: Vec<StepId>,
    pub when: Option<Expr>,
    /// `None`: one attempt, no retry ([`RetryPolicy::NONE`]).
    pub retry: Option<RetryPolicy>,
    /// Per-attempt timeout of a task or child step.
    pub timeout: Option<Duration>,
    pub on_error: OnError,
    pub compensate: Option<Compensation>,
    pub foreach: Option<Expr>,
    pub max_parallel: Option<u32>,
}

impl Step {
    /// The retry policy in force (the default is a single attempt).
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry.clone().unwrap_or(RetryPolicy::NONE)
    }

    pub fn capability(&self) -> Option<&str> {
        match &self.kind {
            StepKind::Task { capability } => Some(capability),
            _ => None,
        }
    }
}

/// The wire shape of a step: `capability`, `workflow` and `wait_for` side by
/// side, exactly one present.
#[derive(Serialize, Deserialize)]
struct RawStep {
    id: StepId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workflow: Option<ChildRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wait_for: Option<WaitFor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<InputMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    needs: Vec<StepId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    when: Option<Expr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "OnError::is_fail")]
    on_error: OnError,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compensate: Option<Compensation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    foreach: Option<Expr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_parallel: Option<u32>,
}

/// A step with none or several of `capability`, `workflow`, `wait_for`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step `{0}` needs exactly one of `capability`, `workflow`, `wait_for`")]
pub struct AmbiguousStepKind(pub String);

impl TryFrom<RawStep> for Step {
    type Error = AmbiguousStepKind;

    fn try_from(raw: RawStep) -> Result<Self, Self::Error> {
        let kind = match (raw.capability, raw.workflow, raw.wait_for) {
            (Some(capability), None, None) => StepKind::Task { capability },
            (None, Some(child), None) => StepKind::Child {
                name: child.name,
                version: child.version,
            },
            (None, None, Some(wait)) => StepKind::Signal {
                name: wait.signal,
                timeout: wait.timeout,
            },
            _ => return Err(AmbiguousStepKind(raw.id.0)),
        };
        Ok(Step {
            id: raw.id,
            kind,
            input: raw.input,
            needs: raw.needs,
            when: raw.when,
            retry: raw.retry,
            timeout: raw.timeout,
            on_error: raw.on_error,
            compensate: raw.compensate,
            foreach: raw.foreach,
            max_parallel: raw.max_parallel,
        })
    }
}

impl From<Step> for RawStep {
    fn from(step: Step) -> Self {
        let (capability, workflow, wait_for) = match step.kind {
            StepKind::Task { capability } => (Some(capability), None, None),
            StepKind::Child { name, version } => (None, Some(ChildRef { name, version }), None),
            StepKind::Signal { name, timeout } => (
                None,
                None,
                Some(WaitFor {
                    signal: name,
                    timeout,
                }),
            ),
        };
        RawStep {
            id: step.id,
            capability,
            workflow,
            wait_for,
            input: step.input,
            needs: step.needs,
            when: step.when,
            retry: step.retry,
            timeout: step.timeout,
            on_error: step.on_error,
            compensate: step.compensate,
            foreach: step.foreach,
            max_parallel: step.max_parallel,
        }
    }
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_max_parallel() -> u32 {
    DEFAULT_MAX_PARALLEL
}

/// A workflow definition. Build one with [`Definition::parse`] (schema
/// first, then serde) and turn it into something runnable with
/// [`Definition::check`](super::Definition::check).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub name: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Deadline of a whole run, from its start.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Default fan-out cap of `foreach` steps.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// JSON Schema the run input must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    pub steps: Vec<Step>,
    /// CEL for the run output; without it, the map of step id -> output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Expr>,
}

impl Definition {
    /// The `agentry-workflows` KV key: `<name>.<version>`.
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.version)
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.as_str() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Step ids follow the documented pattern, names allow `-` where documented.
    #[test]
    fn name_patterns() {
        assert!(is_step_id("a"));
        assert!(is_step_id("fetch_2"));
        assert!(!is_step_id("2a"));
        assert!(!is_step_id("a-b"));
        assert!(!is_step_id("A"));
        assert!(!is_step_id(""));
        assert!(!is_step_id(&"a".repeat(65)));
        assert!(is_step_id(&"a".repeat(64)));
        assert!(is_workflow_name("trip-planning_2"));
        assert!(!is_capability_name("trip-planning"));
        assert!(StepId::new("Bad").is_err());
        assert!(serde_json::from_str::<StepId>("\"ok_id\"").is_ok());
        assert!(serde_json::from_str::<StepId>("\"not ok\"").is_err());
    }

    /// The three step kinds read from their wire fields and write back the same JSON.
    #[test]
    fn step_kinds_round_trip() {
        let json = serde_json::json!([
            {"id": "a", "capability": "echo", "input": {"x": "input.x"}},
            {"id": "b", "workflow": {"name": "other", "version": 2}, "input": "input", "needs": ["a"]},
            {"id": "c", "wait_for": {"signal": "approve", "timeout": "1h"}, "on_error": "continue"}
        ]);
        let steps: Vec<Step> = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            steps[0].kind,
            StepKind::Task {
                capability: "echo".into()
            }
        );
        assert_eq!(
            steps[1].kind,
            StepKind::Child {
                name: "other".into(),
                version: Some(2)
            }
        );
        assert_eq!(
            steps[2].kind,
            StepKind::Signal {
                name: "approve".into(),
                timeout: Some(Duration::from_secs(3600))
            }
        );
        assert_eq!(steps[2].on_error, OnError::Continue);
        assert!(matches!(steps[1].input, Some(InputMapping::Expr(_))));
        assert_eq!(serde_json::to_value(&steps).unwrap(), json);
    }

    /// A step with two kinds (or none) does not deserialise.
    #[test]
    fn ambiguous_kind_is_refused() {
        let two = serde_json::json!({"id": "a", "capability": "echo", "wait_for": {"signal": "s"}});
        let err = serde_json::from_value::<Step>(two).unwrap_err();
        assert!(err.to_string().contains("exactly one of"));
        let none = serde_json::json!({"id": "a"});
        assert!(serde_json::from_value::<Step>(none).is_err());
    }

    /// Workflow-level defaults: timeout 3600 s, max_parallel 10.
    #[test]
    fn workflow_defaults() {
        let def: Definition = serde_json::from_value(serde_json::json!({
            "name": "w", "version": 1, "steps": [{"id": "a", "capability": "echo"}]
        }))
        .unwrap();
        assert_eq!(def.timeout, Duration::from_secs(3600));
        assert_eq!(def.max_parallel, 10);
        assert_eq!(def.key(), "w.1");
        assert_eq!(def.steps[0].retry_policy(), RetryPolicy::NONE);
    }
}
