//! Ending a run that did not complete, saga style: work in flight stops
//! being waited on (child runs are cancelled), then the compensations of the
//! completed steps run one at a time in reverse completion order, each with
//! its own retry policy and timeout; then the run ends `failed`,
//! `cancelled` or `timed_out`. A compensation that fails for good is
//! recorded and the next one still runs.

use agentry::workflow::retry::Failure;
use agentry::workflow::state::{Compensation, CompensationRecord, ErrorInfo, RunStatus};
use agentry::workflow::{RetryPolicy, StepStatus};
use serde_json::{Value, json};

use super::effects::Effect;
use super::ids::{self, Slot};
use super::machine::{Machine, StepEvent, StepResult, fields};
use super::steps::{chrono, classify};
use crate::timers::Timer;

/// Deadline of one compensation attempt when its definition sets none.
const DEFAULT_COMPENSATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

impl Machine<'_> {
    /// A step failed with `on_error: fail`.
    pub(crate) fn fail_run(&mut self, step: &str) {
        let cause = self
            .run
            .steps
            .get(step)
            .and_then(|r| r.unit.error.clone())
            .unwrap_or_else(|| ErrorInfo::new("handler", "failed"));
        let mut err = ErrorInfo::new(
            "step_failed",
            format!("step {step} failed: {}", cause.message),
        );
        err.details = Some(json!({"step": step, "error": cause.to_json()}));
        self.abort(RunStatus::Failed, err);
    }

    /// Stops the run's work in flight and compensates, ending with `ending`.
    pub(crate) fn abort(&mut self, ending: RunStatus, err: ErrorInfo) {
        self.stop_in_flight(&err.message);
        self.run.error = Some(err);
        let completed: Vec<agentry::workflow::StepId> = self
            .run
            .completed_order
            .iter()
            .filter(|s| self.run.step_status(s) == StepStatus::Completed)
            .filter_map(|s| agentry::workflow::StepId::new(s.as_str()).ok())
            .collect();
        let order: Vec<String> = self
            .wf
            .compensation_order(&completed)
            .into_iter()
            .map(String::from)
            .collect();
        if order.is_empty() {
            return self.finish(ending);
        }
        self.run.status = RunStatus::Compensating;
        self.run.compensation = Some(Compensation {
            ending,
            pending: order,
            current: None,
            done: Vec::new(),
            failed: Vec::new(),
        });
        self.next_compensation();
    }

    fn stop_in_flight(&mut self, why: &str) {
        let now = self.now;
        let mut children = Vec::new();
        for rec in self.run.steps.values_mut() {
            let units = std::iter::once(&mut rec.unit).chain(rec.items.iter_mut());
            for u in units {
                if u.in_flight() {
                    if let Some(c) = u.child_run.clone() {
                        children.push(c);
                    }
                    u.status = StepStatus::Cancelled;
                    u.ended_at = Some(now);
                }
            }
        }
        for run_id in children {
            self.effects.push(Effect::CancelChild {
                run_id,
                reason: why.to_owned(),
            });
        }
    }

    /// Starts the next compensation, or ends the run when none is left.
    fn next_compensation(&mut self) {
        loop {
            let Some(comp) = self.run.compensation.as_mut() else {
                return;
            };
            if comp.pending.is_empty() {
                let ending = comp.ending;
                return self.finish(ending);
            }
            let step = comp.pending.remove(0);
            comp.current = Some(step.clone());
            if self.dispatch_compensation(&step, 1) {
                return;
            }
        }
    }

    /// Publishes attempt `attempt` of `step`'s compensation; `false` when it
    /// could not even be built (recorded as failed).
    fn dispatch_compensation(&mut self, step: &str, attempt: u32) -> bool {
        let Some(c) = self.wf.step(step).and_then(|s| s.compensate.clone()) else {
            return false;
        };
        let input = self
            .ctx()
            .and_then(|ctx| self.wf.eval_compensation_input(step, &ctx));
        let input = match input {
            Ok(Some(v)) => v,
            Ok(None) => Value::Object(Default::default()),
            Err(e) => {
                self.compensation_failed(
                    step,
                    attempt,
                    ErrorInfo::new("expression", e.to_string()),
                );
                return false;
            }
        };
        let slot = Slot::Compensation(step.to_owned());
        let task_id = ids::task_id(&self.run.run_id, &slot, attempt);
        let timeout = c
            .timeout
            .map_or(DEFAULT_COMPENSATION_TIMEOUT, |t| t.as_std());
        let deadline = self.now + chrono(timeout);
        self.effects.push(Effect::Task {
            task_id: task_id.clone(),
            slot: slot.to_string(),
            attempt,
            capability: c.capability.clone(),
            input,
            deadline_ms: Some(deadline.timestamp_millis()),
        });
        let now = self.now;
        if let Some(rec) = self.run.steps.get_mut(step) {
            let started = rec
                .compensation
                .as_ref()
                .and_then(|r| r.started_at)
                .unwrap_or(now);
            rec.compensation = Some(CompensationRecord {
                status: StepStatus::Running,
                attempt,
                error: None,
                started_at: Some(started),
                ended_at: None,
            });
        }
        let timer = Timer::StepTimeout {
            run_id: self.run.run_id.clone(),
            step: slot.to_string(),
            attempt,
        };
        self.timer(ids::step_timer(&task_id), deadline, timer);
        true
    }

    /// Whether `step`'s compensation attempt `attempt` is the one out.
    fn compensation_awaited(&self, step: &str, attempt: u32, status: StepStatus) -> bool {
        self.run.status == RunStatus::Compensating
            && self
                .run
                .compensation
                .as_ref()
                .is_some_and(|c| c.current.as_deref() == Some(step))
            && self
                .run
                .steps
                .get(step)
                .and_then(|r| r.compensation.as_ref())
                .is_some_and(|r| r.status == status && r.attempt == attempt)
    }

    pub(crate) fn on_compensation_result(&mut self, step: &str, r: &StepResult) {
        if !self.compensation_awaited(step, r.attempt, StepStatus::Running) {
            return;
        }
        let slot = Slot::Compensation(step.to_owned());
        let key = ids::step_timer(&ids::task_id(&self.run.run_id, &slot, r.attempt));
        self.effects.push(Effect::DropTimer { key });
        match &r.outcome {
            Ok(_) => {
                let now = self.now;
                let capability = self
                    .wf
                    .step(step)
                    .and_then(|s| s.compensate.as_ref())
                    .map(|c| c.capability.clone());
                if let Some(rec) = self.run.steps.get_mut(step) {
                    rec.unit.status = StepStatus::Compensated;
                    if let Some(c) = rec.compensation.as_mut() {
                        c.status = StepStatus::Completed;
                        c.ended_at = Some(now);
                    }
                }
                if let Some(c) = self.run.compensation.as_mut() {
                    c.done.push(step.to_owned());
                }
                let extra = fields([
                    (
                        "capability",
                        capability.map(Value::from).unwrap_or(Value::Null),
                    ),
                    (
                        "agent_id",
                        r.agent_id.clone().map(Value::from).unwrap_or(Value::Null),
                    ),
                    (
                        "duration_ms",
                        r.duration_ms.map(Value::from).unwrap_or(Value::Null),
                    ),
                ]);
                self.step_event(StepEvent::Compensated, step, None, r.attempt, extra);
                self.next_compensation();
            }
            Err(e) => self.compensation_attempt_failed(step, r.attempt, e.clone(), classify(e)),
        }
    }

    pub(crate) fn on_compensation_timeout(&mut self, step: &str, attempt: u32) {
        if self.compensation_awaited(step, attempt, StepStatus::Running) {
            let err = ErrorInfo::new(
                "timeout",
                format!("compensation attempt {attempt} timed out"),
            );
            self.compensation_attempt_failed(step, attempt, err, Failure::Timeout);
        }
    }

    pub(crate) fn on_compensation_retry(&mut self, step: &str, attempt: u32) {
        if attempt > 1
            && self.compensation_awaited(step, attempt - 1, StepStatus::Retrying)
            && !self.dispatch_compensation(step, attempt)
        {
            self.next_compensation();
        }
    }

    fn compensation_attempt_failed(
        &mut self,
        step: &str,
        attempt: u32,
        err: ErrorInfo,
        failure: Failure,
    ) {
        let policy = self
            .wf
            .step(step)
            .and_then(|s| s.compensate.as_ref())
            .and_then(|c| c.retry.clone())
            .unwrap_or(RetryPolicy::NONE);
        if policy.should_retry(attempt, failure) {
            let delay = policy.delay_after(attempt);
            if let Some(c) = self
                .run
                .steps
                .get_mut(step)
                .and_then(|r| r.compensation.as_mut())
            {
                c.status = StepStatus::Retrying;
                c.error = Some(err.clone());
            }
            let slot = Slot::Compensation(step.to_owned());
            let next = attempt + 1;
            let timer = Timer::StepRetry {
                run_id: self.run.run_id.clone(),
                step: slot.to_string(),
                attempt: next,
            };
            let key = ids::retry_timer(&ids::task_id(&self.run.run_id, &slot, next));
            self.timer(key, self.now + chrono(delay), timer);
            return;
        }
        self.compensation_failed(step, attempt, err);
        self.next_compensation();
    }

    /// Records a compensation that failed for good (the run goes on compensating).
    fn compensation_failed(&mut self, step: &str, attempt: u32, err: ErrorInfo) {
        let now = self.now;
        if let Some(rec) = self.run.steps.get_mut(step) {
            rec.compensation = Some(CompensationRecord {
                status: StepStatus::Failed,
                attempt,
                error: Some(err.clone()),
                started_at: rec.compensation.as_ref().and_then(|c| c.started_at),
                ended_at: Some(now),
            });
        }
        if let Some(c) = self.run.compensation.as_mut() {
            c.failed.push(step.to_owned());
        }
        let mut e = ErrorInfo::new(
            "compensation_failed",
            format!("compensation of {step}: {}", err.message),
        );
        e.details = Some(err.to_json());
        self.step_event(
            StepEvent::Failed,
            step,
            None,
            attempt,
            fields([("error", e.to_json())]),
        );
    }
}
