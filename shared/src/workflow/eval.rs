//! What expressions see when they run: [`EvalContext`], and what can go wrong
//! ([`EvalError`]).
//!
//! Variables:
//! - `input`: the run input;
//! - `steps`: map step id -> `{status, output, error, attempts}` where
//!   `status` is a [`StepStatus`] spelling (`completed`, `skipped`, `failed`,
//!   ...; an expression only reads settled steps), `output` the step's output (`null` unless completed), `error` a
//!   string or `null`, `attempts` an int. A skipped step is present with
//!   status `skipped` and output `null`: its dependants still run and may test
//!   `steps.x.status == 'skipped'`;
//! - `run`: `{id, workflow, version}`;
//! - `item`, `index`: the element and its position, in the `input` of a
//!   `foreach` step only.
//!
//! The context converts the JSON once; every evaluation borrows it.

use std::collections::BTreeMap;

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use serde::{Deserialize, Serialize};

use super::convert::{NotJson, json_to_cel};
use super::definition::StepId;

/// Where a step is in its life. The spellings are those of the
/// `io.agentry.step.*` events where both exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started: its needs have not settled, or nobody looked yet.
    #[default]
    Pending,
    /// Its task (or child run) was published and not yet picked up.
    Scheduled,
    /// A task or child run is in flight.
    Running,
    /// An attempt failed; a timer will start the next one.
    Retrying,
    /// Waiting for a signal.
    Waiting,
    Completed,
    /// Failed after its retries (`error` says why).
    Failed,
    /// `when` was false.
    Skipped,
    /// The run was cancelled before the step finished.
    Cancelled,
    /// It had completed, and its compensation ran.
    Compensated,
}

impl StepStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Compensated => "compensated",
        }
    }

    /// No further change will happen to the step (compensation aside).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Skipped | Self::Cancelled | Self::Compensated
        )
    }
}

/// A step as expressions see it (`steps.<id>`), and as run state may store it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub status: StepStatus,
    #[serde(default)]
    pub output: serde_json::Value,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub attempts: u32,
}

impl StepState {
    pub fn completed(output: serde_json::Value, attempts: u32) -> Self {
        Self {
            status: StepStatus::Completed,
            output,
            error: None,
            attempts,
        }
    }

    pub fn skipped() -> Self {
        Self {
            status: StepStatus::Skipped,
            ..Self::default()
        }
    }

    pub fn failed(error: impl Into<String>, attempts: u32) -> Self {
        Self {
            status: StepStatus::Failed,
            output: serde_json::Value::Null,
            error: Some(error.into()),
            attempts,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": self.status.as_str(),
            "output": self.output,
            "error": self.error,
            "attempts": self.attempts,
        })
    }
}

/// `run` as expressions see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run id (never the tenant-prefixed key).
    pub id: String,
    /// The tenant that owns the run; `null` in expressions when untenanted.
    pub tenant: Option<String>,
    pub workflow: String,
    pub version: u32,
}

/// Why an expression could not produce what its place needs. All of these
/// are deterministic: retrying the same evaluation gives the same error, so
/// the step fails (and `on_error` decides what the run does).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    #[error("no step `{0}` in this workflow")]
    UnknownStep(String),
    /// The expression failed while running (missing key, bad operand types,
    /// division by zero, ...). `at` is the definition path, e.g. `steps[2].when`.
    #[error("{at}: {source}")]
    Execution {
        at: String,
        #[source]
        source: cel::ExecutionError,
    },
    #[error("{at}: expected a {expected}, got a {got}")]
    WrongType {
        at: String,
        expected: &'static str,
        got: String,
    },
    #[error("{at}: {source}")]
    NotJson {
        at: String,
        #[source]
        source: NotJson,
    },
    #[error("{at}: foreach produced {count} items, the limit is {max}")]
    TooManyItems {
        at: String,
        count: usize,
        max: usize,
    },
    /// A context value could not be handed to CEL (not expected for values
    /// built from JSON).
    #[error("cannot bind `{name}`: {source}")]
    Bind {
        name: &'static str,
        #[source]
        source: cel::ExecutionError,
    },
}

/// The variables of one evaluation, converted once and borrowed by every
/// expression evaluated against it.
#[derive(Debug)]
pub struct EvalContext {
    input: Box<dyn Val>,
    steps: Box<dyn Val>,
    run: Box<dyn Val>,
    item: Option<Box<dyn Val>>,
    index: Option<Box<dyn Val>>,
}

fn bind(name: &'static str, value: &serde_json::Value) -> Result<Box<dyn Val>, EvalError> {
    Box::<dyn Val>::try_from(json_to_cel(value)).map_err(|source| EvalError::Bind { name, source })
}

impl EvalContext {
    /// A context from the run input, the state of the steps (missing steps
    /// are simply absent from `steps`; see
    /// [`Compiled::context`](super::Compiled::context) for one that lists
    /// every step) and the run.
    pub fn new(
        input: &serde_json::Value,
        steps: &BTreeMap<StepId, StepState>,
        run: &RunInfo,
    ) -> Result<Self, EvalError> {
        let steps_json: serde_json::Map<String, serde_json::Value> = steps
            .iter()
            .map(|(id, state)| (id.to_string(), state.to_json()))
            .collect();
        let run_json = serde_json::json!({"id": run.id, "tenant": run.tenant, "workflow": run.workflow, "version": run.version});
        Ok(Self {
            input: bind("input", input)?,
            steps: bind("steps", &serde_json::Value::Object(steps_json))?,
            run: bind("run", &run_json)?,
            item: None,
            index: None,
        })
    }

    /// Binds `item` and `index` for one element of a `foreach`.
    pub fn set_item(&mut self, item: &serde_json::Value, index: usize) -> Result<(), EvalError> {
        self.item = Some(bind("item", item)?);
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        self.index = Some(bind("index", &serde_json::Value::from(index))?);
        Ok(())
    }

    /// [`EvalContext::set_item`], by value.
    pub fn with_item(mut self, item: &serde_json::Value, index: usize) -> Result<Self, EvalError> {
        self.set_item(item, index)?;
        Ok(self)
    }

    /// Unbinds `item` and `index`.
    pub fn clear_item(&mut self) {
        self.item = None;
        self.index = None;
    }

    /// Runs `program` against this context; `at` names it in errors.
    pub(crate) fn execute(
        &self,
        program: &cel::Program,
        at: &str,
    ) -> Result<cel::Value, EvalError> {
        let mut ctx = cel::Context::with_env(super::cel::env().clone());
        ctx.set_variable_resolver(self);
        program
            .execute(&ctx)
            .map_err(|source| EvalError::Execution {
                at: at.to_owned(),
                source,
            })
    }
}

impl VariableResolver for EvalContext {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value: &'b dyn Val = match variable.trim_start_matches('.') {
            "input" => self.input.as_ref(),
            "steps" => self.steps.as_ref(),
            "run" => self.run.as_ref(),
            "item" => self.item.as_deref()?,
            "index" => self.index.as_deref()?,
            _ => return None,
        };
        Some(CowVal::Borrowed(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run() -> RunInfo {
        RunInfo {
            id: "r1".into(),
            tenant: Some("acme".into()),
            workflow: "w".into(),
            version: 3,
        }
    }

    fn eval(ctx: &EvalContext, source: &str) -> Result<cel::Value, EvalError> {
        let program = super::super::cel::env().compile(source).unwrap();
        ctx.execute(&program, "test")
    }

    /// Every documented variable is visible with its documented shape.
    #[test]
    fn variables_are_bound() {
        let mut steps = BTreeMap::new();
        steps.insert(
            StepId::new("a").unwrap(),
            StepState::completed(json!({"x": 2}), 1),
        );
        steps.insert(StepId::new("b").unwrap(), StepState::skipped());
        steps.insert(StepId::new("c").unwrap(), StepState::failed("boom", 3));
        let mut ctx = EvalContext::new(&json!({"n": 40}), &steps, &run()).unwrap();
        let truthy = [
            "input.n + steps.a.output.x == 42",
            "steps.a.status == 'completed' && steps.a.attempts == 1",
            "steps.b.status == 'skipped' && steps.b.output == null",
            "steps.c.error == 'boom' && steps.c.attempts == 3",
            "steps.a.error == null",
            "run.id == 'r1' && run.tenant == 'acme' && run.workflow == 'w' && run.version == 3",
            "!has(steps.nope)",
        ];
        for src in truthy {
            assert_eq!(eval(&ctx, src).unwrap(), cel::Value::Bool(true), "{src}");
        }
        assert!(matches!(
            eval(&ctx, "item"),
            Err(EvalError::Execution { .. })
        ));
        ctx.set_item(&json!({"k": "v"}), 4).unwrap();
        assert_eq!(
            eval(&ctx, "item.k + string(index)").unwrap(),
            cel::Value::from("v4")
        );
        ctx.clear_item();
        assert!(eval(&ctx, "index").is_err());
    }

    /// Macro variables shadow context variables of the same name.
    #[test]
    fn macro_variables_shadow() {
        let ctx = EvalContext::new(&json!({"xs": [1, 2, 3]}), &BTreeMap::new(), &run())
            .unwrap()
            .with_item(&json!(100), 0)
            .unwrap();
        let v = eval(&ctx, "input.xs.map(item, item * 10)").unwrap();
        assert_eq!(
            super::super::convert::cel_to_json(&v).unwrap(),
            json!([10, 20, 30])
        );
    }

    /// Status spellings match serde's.
    #[test]
    fn status_spelling() {
        for s in [
            StepStatus::Pending,
            StepStatus::Scheduled,
            StepStatus::Running,
            StepStatus::Retrying,
            StepStatus::Waiting,
            StepStatus::Completed,
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::Cancelled,
            StepStatus::Compensated,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        assert!(StepStatus::Skipped.is_terminal());
        assert!(!StepStatus::Waiting.is_terminal());
    }
}
