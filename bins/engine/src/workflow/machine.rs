//! The run state machine: one input (a step result, a timer, a signal, a
//! cancellation) applied to a run's state produces the next state and the
//! effects to carry out. Pure: no I/O, the clock is passed in, so a
//! transition that lost a compare-and-set race is simply recomputed on the
//! newer state.
//!
//! The step-level parts live beside it: `steps.rs` (starting steps,
//! attempts, results, retries, timeouts, foreach), `signals.rs` and
//! `compensate.rs` (failure, cancellation, timeout and the saga).

use std::collections::BTreeMap;

use agentry::event::types;
use agentry::subject;
use agentry::workflow::state::{ErrorInfo, RunState, RunStatus};
use agentry::workflow::{Compiled, EvalContext, EvalError, Progress};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::effects::Effect;
use super::ids;
use crate::timers::Timer;

/// What happened to a run.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    /// Nothing new: only flush a pending outbox.
    Touch,
    StepResult(StepResult),
    StepTimeout {
        slot: String,
        attempt: u32,
    },
    StepRetry {
        slot: String,
        attempt: u32,
    },
    RunTimeout,
    SignalTimeout {
        step: String,
    },
    Signal {
        request_id: String,
        name: String,
        payload: Value,
    },
    Cancel {
        reason: Option<String>,
    },
}

/// A task (or child run) outcome for one attempt of a slot.
#[derive(Clone, Debug)]
pub(crate) struct StepResult {
    pub slot: String,
    pub attempt: u32,
    pub outcome: Result<Value, ErrorInfo>,
    pub agent_id: Option<String>,
    pub duration_ms: Option<u64>,
}

/// Facts for metrics, recorded once the transition is durable.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub finished: Option<(RunStatus, f64)>,
    /// Steps that settled: (step, seconds).
    pub steps: Vec<(String, f64)>,
}

pub(crate) struct Machine<'a> {
    pub run: &'a mut RunState,
    pub wf: &'a Compiled,
    pub now: DateTime<Utc>,
    /// Values not inline in the state: artifacts and composed foreach
    /// outputs, by slot spelling (`step`, `step-i<n>`).
    pub outputs: BTreeMap<String, Value>,
    pub effects: Vec<Effect>,
    pub notes: Notes,
}

impl<'a> Machine<'a> {
    pub fn new(
        run: &'a mut RunState,
        wf: &'a Compiled,
        now: DateTime<Utc>,
        outputs: BTreeMap<String, Value>,
    ) -> Self {
        Self {
            run,
            wf,
            now,
            outputs,
            effects: Vec::new(),
            notes: Notes::default(),
        }
    }

    /// A new run: announce it, arm its deadline, start what can start.
    pub fn start(&mut self) {
        self.run_event(types_run::STARTED);
        let key = ids::run_timer(&self.run.run_id);
        let timer = Timer::RunTimeout {
            run_id: self.run.run_id.clone(),
        };
        self.timer(key, self.run.deadline, timer);
        self.advance();
    }

    pub fn apply(&mut self, input: &Input) {
        match input {
            Input::Touch => {}
            Input::StepResult(r) => self.on_result(r),
            Input::StepTimeout { slot, attempt } => self.on_step_timeout(slot, *attempt),
            Input::StepRetry { slot, attempt } => self.on_step_retry(slot, *attempt),
            Input::RunTimeout => {
                if self.run.status == RunStatus::Running {
                    let limit = self.run.deadline - self.run.created_at;
                    let err = ErrorInfo::new(
                        "timeout",
                        format!(
                            "run exceeded its timeout of {}s",
                            limit.num_milliseconds() as f64 / 1000.0
                        ),
                    );
                    self.abort(RunStatus::TimedOut, err);
                }
            }
            Input::SignalTimeout { step } => self.on_signal_timeout(step),
            Input::Signal {
                request_id,
                name,
                payload,
            } => self.on_signal(request_id, name, payload),
            Input::Cancel { reason } => {
                if self.run.status == RunStatus::Running {
                    let message = reason
                        .clone()
                        .unwrap_or_else(|| "cancelled by request".to_owned());
                    self.abort(RunStatus::Cancelled, ErrorInfo::new("cancelled", message));
                }
            }
        }
    }

    /// Starts every ready step, repeatedly (a step can settle at once), then
    /// completes or fails the run if its steps say so.
    pub fn advance(&mut self) {
        while self.run.status == RunStatus::Running {
            let ready = self.wf.ready_steps(&*self.run);
            if ready.is_empty() {
                break;
            }
            for id in ready {
                self.launch(id.as_str());
            }
            if matches!(self.wf.progress(&*self.run), Progress::Failed { .. }) {
                break;
            }
        }
        if self.run.status != RunStatus::Running {
            return;
        }
        match self.wf.progress(&*self.run) {
            Progress::Running | Progress::Cancelled => {}
            Progress::Completed => self.complete(),
            Progress::Failed { step } => self.fail_run(step.as_str()),
        }
    }

    /// Every step settled: evaluate the output.
    fn complete(&mut self) {
        let output = self.ctx().and_then(|ctx| self.wf.eval_output(&ctx));
        match output {
            Ok(v) => {
                self.run.output = Some(v);
                self.finish(RunStatus::Completed);
            }
            Err(e) => {
                let err = ErrorInfo::new("output", format!("workflow output: {e}"));
                self.abort(RunStatus::Failed, err);
            }
        }
    }

    /// The evaluation context over the current state.
    pub fn ctx(&self) -> Result<EvalContext, EvalError> {
        let states = self.run.step_states(&self.outputs);
        self.wf.context(
            &self.run.input,
            &states,
            &self
                .wf
                .run_info(self.run.id().to_owned(), self.run.tenant.clone()),
        )
    }

    /// Ends the run with `status`: lifecycle event, terminal result, the
    /// parent's step result, timers dropped.
    pub fn finish(&mut self, status: RunStatus) {
        self.run.status = status;
        self.run.ended_at = Some(self.now);
        if let Some(c) = self.run.compensation.as_mut() {
            c.current = None;
        }
        let duration_ms = self.run.duration_ms(self.now);
        let (run_ty, result_ty) = match status {
            RunStatus::Completed => (types_run::COMPLETED, types::WORKFLOW_COMPLETED),
            RunStatus::Cancelled => (types_run::CANCELLED, types::WORKFLOW_CANCELLED),
            RunStatus::TimedOut => (types_run::TIMED_OUT, types::WORKFLOW_TIMED_OUT),
            _ => (types_run::FAILED, types::WORKFLOW_FAILED),
        };
        if status != RunStatus::Completed && self.run.error.is_none() {
            self.run.error = Some(ErrorInfo::new(status.as_str(), "the run did not complete"));
        }
        self.run_event(run_ty);
        let mut data = json!({
            "request_id": self.run.request_id,
            "run_id": self.run.id(),
            "workflow": self.run.workflow,
            "version": self.run.version,
            "duration_ms": duration_ms,
        });
        match status {
            RunStatus::Completed => {
                data["output"] = self.run.output.clone().unwrap_or(Value::Null);
            }
            _ => data["error"] = self.error_json(),
        }
        self.effects.push(Effect::Result {
            request_id: self.run.request_id.clone(),
            ty: result_ty.to_owned(),
            data,
        });
        self.effects.push(Effect::DropTimer {
            key: ids::run_timer(&self.run.run_id),
        });
        if let Some(parent) = self.run.parent.clone() {
            let (output, error) = match status {
                RunStatus::Completed => (self.run.output.clone(), None),
                _ => {
                    let mut e = self
                        .run
                        .error
                        .clone()
                        .unwrap_or_else(|| ErrorInfo::new("failed", "child run failed"));
                    if status == RunStatus::TimedOut {
                        e.code = "timeout".into();
                    }
                    e.message = format!(
                        "child run {} {}: {}",
                        self.run.id(),
                        status.as_str(),
                        e.message
                    );
                    (None, Some(e))
                }
            };
            self.effects.push(Effect::ParentResult {
                parent,
                child_run: self.run.run_id.clone(),
                output,
                error,
            });
        }
        self.notes.finished = Some((status, duration_ms as f64 / 1000.0));
    }

    fn error_json(&self) -> Value {
        self.run
            .error
            .as_ref()
            .map(ErrorInfo::to_json)
            .unwrap_or(Value::Null)
    }

    pub fn timer(&mut self, key: String, at: DateTime<Utc>, timer: Timer) {
        self.effects.push(Effect::Timer { key, at, timer });
    }

    /// A lifecycle event with a deterministic id.
    pub fn event(&mut self, ty: &str, data: Value) {
        self.run.event_seq += 1;
        self.effects.push(Effect::Event {
            id: ids::event_id(&self.run.run_id, self.run.event_seq),
            ty: ty.to_owned(),
            data,
        });
    }

    /// `io.agentry.run.*` with the run's current status.
    fn run_event(&mut self, ty: &str) {
        let mut data = json!({
            "run_id": self.run.id(),
            "workflow": self.run.workflow,
            "version": self.run.version,
            "request_id": self.run.request_id,
            "status": self.run.status.as_str(),
            "duration_ms": self.run.duration_ms(self.now),
        });
        if let Some(p) = &self.run.parent {
            data["parent_run_id"] = subject::run_id_of_key(&p.run_id).into();
        }
        match self.run.status {
            RunStatus::Completed => {
                data["output"] = self.run.output.clone().unwrap_or(Value::Null);
            }
            RunStatus::Running => {}
            _ => {
                if self.run.error.is_some() {
                    data["error"] = self.error_json();
                }
            }
        }
        self.event(ty, data);
    }

    /// `io.agentry.step.<kind>` for `step` (or one of its items).
    pub fn step_event(
        &mut self,
        kind: StepEvent,
        step: &str,
        item: Option<usize>,
        attempt: u32,
        extra: Map<String, Value>,
    ) {
        let mut data = json!({
            "run_id": self.run.id(),
            "workflow": self.run.workflow,
            "version": self.run.version,
            "step": step,
            "attempt": attempt,
            "status": kind.status(),
        });
        if let Some(i) = item {
            data["item"] = i.into();
        }
        if let Some(obj) = data.as_object_mut() {
            obj.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
        }
        self.event(kind.ty(), data);
    }
}

/// The `io.agentry.step.*` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepEvent {
    Scheduled,
    Started,
    Completed,
    Failed,
    Retrying,
    Skipped,
    Compensated,
}

impl StepEvent {
    fn ty(self) -> &'static str {
        match self {
            Self::Scheduled => "io.agentry.step.scheduled",
            Self::Started => "io.agentry.step.started",
            Self::Completed => "io.agentry.step.completed",
            Self::Failed => "io.agentry.step.failed",
            Self::Retrying => "io.agentry.step.retrying",
            Self::Skipped => "io.agentry.step.skipped",
            Self::Compensated => "io.agentry.step.compensated",
        }
    }

    fn status(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Started => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Skipped => "skipped",
            Self::Compensated => "compensated",
        }
    }
}

/// `io.agentry.run.*` event types.
pub(crate) mod types_run {
    pub const STARTED: &str = "io.agentry.run.started";
    pub const COMPLETED: &str = "io.agentry.run.completed";
    pub const FAILED: &str = "io.agentry.run.failed";
    pub const CANCELLED: &str = "io.agentry.run.cancelled";
    pub const TIMED_OUT: &str = "io.agentry.run.timed_out";
}

/// Extra step-event fields, nulls dropped.
pub(crate) fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
