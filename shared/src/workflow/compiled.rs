//! A checked workflow, ready for the executor: every CEL program compiled
//! once, the step graph in topological order, and the decisions an executor
//! asks for at each event (what can start, what does an expression say,
//! what to compensate).
//!
//! `Compiled` is `Send + Sync` (CEL programs and the environment are), so
//! one instance per `<name>.<version>` can be shared behind an `Arc` by every
//! run and task of an engine replica.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use cel::Program;

use super::cel::MAX_FOREACH_ITEMS;
use super::convert::cel_to_json;
use super::dag::Dag;
use super::definition::{Definition, OnError, Step, StepId};
use super::eval::{EvalContext, EvalError, RunInfo, StepState, StepStatus};

/// A compiled input mapping.
pub(crate) enum CompiledInput {
    /// No mapping: the input is `{}`.
    Empty,
    /// One expression producing a map.
    Expr { at: String, program: Program },
    /// Field name, path, program.
    Fields(Vec<(String, String, Program)>),
}

/// The compiled expressions of one step.
pub(crate) struct CompiledStep {
    pub when: Option<(String, Program)>,
    pub foreach: Option<(String, Program)>,
    pub input: CompiledInput,
    pub compensate: Option<CompiledInput>,
}

/// Where a run stands, judged from its steps' statuses. A `compensated`
/// step counts as unsettled: by then the executor has already failed or
/// cancelled the run and no longer asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Steps are pending, in flight or waiting.
    Running,
    /// Every step settled (completed, skipped, or failed with `on_error: continue`):
    /// evaluate the output.
    Completed,
    /// This step failed with `on_error: fail` (the first such in topological
    /// order): fail the run and compensate.
    Failed { step: StepId },
    /// A step was cancelled.
    Cancelled,
}

/// Read access to step statuses; a step that is absent is `pending`.
pub trait StepStatuses {
    fn status_of(&self, step: &str) -> StepStatus;
}

impl<S: BuildHasher> StepStatuses for HashMap<StepId, StepStatus, S> {
    fn status_of(&self, step: &str) -> StepStatus {
        self.get(step).copied().unwrap_or_default()
    }
}

impl StepStatuses for BTreeMap<StepId, StepStatus> {
    fn status_of(&self, step: &str) -> StepStatus {
        self.get(step).copied().unwrap_or_default()
    }
}

impl<S: BuildHasher> StepStatuses for HashMap<StepId, StepState, S> {
    fn status_of(&self, step: &str) -> StepStatus {
        self.get(step).map(|s| s.status).unwrap_or_default()
    }
}

impl StepStatuses for BTreeMap<StepId, StepState> {
    fn status_of(&self, step: &str) -> StepStatus {
        self.get(step).map(|s| s.status).unwrap_or_default()
    }
}

/// A checked workflow. Built by [`Definition::check`].
pub struct Compiled {
    pub(crate) definition: Definition,
    pub(crate) dag: Dag,
    pub(crate) index: HashMap<StepId, usize>,
    pub(crate) order: Vec<StepId>,
    pub(crate) steps: Vec<CompiledStep>,
    /// The `output` expression, or a generated map of every step's output.
    pub(crate) output: Program,
    pub(crate) input_schema: Option<jsonschema::Validator>,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("workflow", &self.definition.key())
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

/// The run input breaks the workflow's `input_schema`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run input does not match the workflow's input_schema: {}", .0.join("; "))]
pub struct InputError(pub Vec<String>);

impl Compiled {
    pub fn definition(&self) -> &Definition {
        &self.definition
    }

    /// Step ids in topological order (ties by declaration order).
    pub fn order(&self) -> &[StepId] {
        &self.order
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.index.get(id).map(|&i| &self.definition.steps[i])
    }

    fn position(&self, id: &str) -> Result<usize, EvalError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| EvalError::UnknownStep(id.to_owned()))
    }

    /// The steps that list `id` in their `needs`.
    pub fn dependants(&self, id: &str) -> Vec<&StepId> {
        self.index
            .get(id)
            .map(|&i| {
                self.dag
                    .dependants(i)
                    .iter()
                    .map(|&d| &self.definition.steps[d].id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The fan-out cap of a `foreach` step: its own or the workflow's.
    pub fn max_parallel(&self, id: &str) -> Option<u32> {
        self.step(id)
            .map(|s| s.max_parallel.unwrap_or(self.definition.max_parallel))
    }

    /// Whether `status` of step `i` lets its dependants start.
    fn settled(&self, i: usize, status: StepStatus) -> bool {
        match status {
            StepStatus::Completed | StepStatus::Skipped => true,
            StepStatus::Failed => self.definition.steps[i].on_error == OnError::Continue,
            _ => false,
        }
    }

    /// Pending steps whose needs have all settled (completed, skipped, or
    /// failed with `on_error: continue`), in topological order. The executor
    /// evaluates `when` for each, then starts or skips it.
    pub fn ready_steps(&self, statuses: &impl StepStatuses) -> Vec<StepId> {
        self.dag
            .order()
            .iter()
            .copied()
            .filter(|&i| {
                statuses.status_of(self.definition.steps[i].id.as_str()) == StepStatus::Pending
            })
            .filter(|&i| {
                self.dag.needs(i).iter().all(|&n| {
                    self.settled(n, statuses.status_of(self.definition.steps[n].id.as_str()))
                })
            })
            .map(|i| self.definition.steps[i].id.clone())
            .collect()
    }

    /// Where the run stands.
    pub fn progress(&self, statuses: &impl StepStatuses) -> Progress {
        let mut all_settled = true;
        for &i in self.dag.order() {
            let step = &self.definition.steps[i];
            let status = statuses.status_of(step.id.as_str());
            match status {
                StepStatus::Failed if step.on_error == OnError::Fail => {
                    return Progress::Failed {
                        step: step.id.clone(),
                    };
                }
                StepStatus::Cancelled => return Progress::Cancelled,
                _ => all_settled &= self.settled(i, status),
            }
        }
        if all_settled {
            Progress::Completed
        } else {
            Progress::Running
        }
    }

    /// Steps to compensate, given the steps that completed in the order they
    /// completed: those with a `compensate`, latest first, each once.
    pub fn compensation_order(&self, completed_in_order: &[StepId]) -> Vec<StepId> {
        let mut out: Vec<StepId> = Vec::new();
        for id in completed_in_order.iter().rev() {
            if self
                .step(id.as_str())
                .is_some_and(|s| s.compensate.is_some())
                && !out.contains(id)
            {
                out.push(id.clone());
            }
        }
        out
    }

    /// The `run` variable for a run of this workflow: its bare run id (not
    /// the `agentry-runs` key) and its tenant.
    pub fn run_info(&self, run_id: impl Into<String>, tenant: Option<String>) -> RunInfo {
        RunInfo {
            id: run_id.into(),
            tenant,
            workflow: self.definition.name.clone(),
            version: self.definition.version,
        }
    }

    /// An evaluation context in which every step of the workflow is present
    /// in `steps` (those missing from `states` as `pending` with output null).
    pub fn context(
        &self,
        input: &serde_json::Value,
        states: &BTreeMap<StepId, StepState>,
        run: &RunInfo,
    ) -> Result<EvalContext, EvalError> {
        if self
            .definition
            .steps
            .iter()
            .all(|s| states.contains_key(&s.id))
        {
            return EvalContext::new(input, states, run);
        }
        let mut full = states.clone();
        for step in &self.definition.steps {
            full.entry(step.id.clone()).or_default();
        }
        EvalContext::new(input, &full, run)
    }

    /// Checks a run input against the workflow's `input_schema` (if any).
    pub fn validate_input(&self, input: &serde_json::Value) -> Result<(), InputError> {
        let Some(validator) = &self.input_schema else {
            return Ok(());
        };
        let errors: Vec<String> = validator
            .iter_errors(input)
            .take(10)
            .map(|e| {
                let at = super::parse::pointer_to_path(e.instance_path.as_str());
                let at = if at.is_empty() {
                    "input".to_owned()
                } else {
                    format!("input.{at}")
                };
                format!("{at}: {}", e.masked())
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(InputError(errors))
        }
    }

    /// The step's `when`: true when it has none.
    pub fn eval_when(&self, step: &str, ctx: &EvalContext) -> Result<bool, EvalError> {
        let i = self.position(step)?;
        let Some((at, program)) = &self.steps[i].when else {
            return Ok(true);
        };
        match ctx.execute(program, at)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(EvalError::WrongType {
                at: at.clone(),
                expected: "bool",
                got: other.type_of().to_string(),
            }),
        }
    }

    /// The items of a `foreach` step (`None` for other steps), at most
    /// [`MAX_FOREACH_ITEMS`].
    pub fn eval_foreach(
        &self,
        step: &str,
        ctx: &EvalContext,
    ) -> Result<Option<Vec<serde_json::Value>>, EvalError> {
        let i = self.position(step)?;
        let Some((at, program)) = &self.steps[i].foreach else {
            return Ok(None);
        };
        match ctx.execute(program, at)? {
            cel::Value::List(items) => {
                if items.len() > MAX_FOREACH_ITEMS {
                    return Err(EvalError::TooManyItems {
                        at: at.clone(),
                        count: items.len(),
                        max: MAX_FOREACH_ITEMS,
                    });
                }
                let json = items
                    .iter()
                    .map(|v| {
                        cel_to_json(v).map_err(|source| EvalError::NotJson {
                            at: at.clone(),
                            source,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(json))
            }
            other => Err(EvalError::WrongType {
                at: at.clone(),
                expected: "list",
                got: other.type_of().to_string(),
            }),
        }
    }

    /// The step's input (a JSON object). For a `foreach` step, bind the item
    /// first with [`EvalContext::set_item`].
    pub fn eval_input(
        &self,
        step: &str,
        ctx: &EvalContext,
    ) -> Result<serde_json::Value, EvalError> {
        let i = self.position(step)?;
        eval_mapping(&self.steps[i].input, ctx)
    }

    /// The input of the step's compensation task (`None` if it has none).
    pub fn eval_compensation_input(
        &self,
        step: &str,
        ctx: &EvalContext,
    ) -> Result<Option<serde_json::Value>, EvalError> {
        let i = self.position(step)?;
        self.steps[i]
            .compensate
            .as_ref()
            .map(|mapping| eval_mapping(mapping, ctx))
            .transpose()
    }

    /// The run output.
    pub fn eval_output(&self, ctx: &EvalContext) -> Result<serde_json::Value, EvalError> {
        let value = ctx.execute(&self.output, "output")?;
        cel_to_json(&value).map_err(|source| EvalError::NotJson {
            at: "output".into(),
            source,
        })
    }
}

fn eval_mapping(
    mapping: &CompiledInput,
    ctx: &EvalContext,
) -> Result<serde_json::Value, EvalError> {
    match mapping {
        CompiledInput::Empty => Ok(serde_json::Value::Object(serde_json::Map::new())),
        CompiledInput::Expr { at, program } => {
            let value = ctx.execute(program, at)?;
            if !matches!(value, cel::Value::Map(_)) {
                return Err(EvalError::WrongType {
                    at: at.clone(),
                    expected: "map",
                    got: value.type_of().to_string(),
                });
            }
            cel_to_json(&value).map_err(|source| EvalError::NotJson {
                at: at.clone(),
                source,
            })
        }
        CompiledInput::Fields(fields) => {
            let mut out = serde_json::Map::with_capacity(fields.len());
            for (name, at, program) in fields {
                let value = ctx.execute(program, at)?;
                let json = cel_to_json(&value).map_err(|source| EvalError::NotJson {
                    at: at.clone(),
                    source,
                })?;
                out.insert(name.clone(), json);
            }
            Ok(serde_json::Value::Object(out))
        }
    }
}
