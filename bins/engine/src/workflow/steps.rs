//! Steps: starting them (`when`, `foreach`, task, child run, signal wait),
//! attempts and their results, retries with backoff on durable timers,
//! per-attempt timeouts.

use agentry::workflow::retry::Failure;
use agentry::workflow::state::{ErrorInfo, RunStatus, StepRecord, Unit};
use agentry::workflow::{EvalContext, MAX_CHILD_DEPTH, RetryPolicy, StepKind, StepStatus};
use chrono::Duration as ChronoDuration;
use serde_json::Value;

use super::effects::{ChildSpec, Effect};
use super::ids::{self, Slot};
use super::machine::{Machine, StepEvent, StepResult, fields};
use crate::timers::Timer;

/// How a failed attempt is classified for the retry policy.
pub(crate) fn classify(e: &ErrorInfo) -> Failure {
    if e.code == "timeout" {
        Failure::Timeout
    } else if e.retryable {
        Failure::Retryable
    } else {
        Failure::Permanent
    }
}

pub(crate) fn chrono(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

impl Machine<'_> {
    pub(crate) fn unit(&mut self, step: &str, item: Option<usize>) -> Option<&mut Unit> {
        let rec = self.run.steps.get_mut(step)?;
        match item {
            None => Some(&mut rec.unit),
            Some(i) => rec.items.get_mut(i),
        }
    }

    fn record(&mut self, step: &str) -> &mut StepRecord {
        self.run.steps.entry(step.to_owned()).or_default()
    }

    /// A ready step: skip it, or start its work.
    pub(crate) fn launch(&mut self, step: &str) {
        let Some(def) = self.wf.step(step).cloned() else {
            return;
        };
        let now = self.now;
        let rec = self.record(step);
        rec.started_at = Some(now);
        rec.capability = def.capability().map(str::to_owned);
        let ctx = match self.ctx() {
            Ok(c) => c,
            Err(e) => return self.fail_now(step, &e.to_string()),
        };
        match self.wf.eval_when(step, &ctx) {
            Ok(true) => {}
            Ok(false) => {
                let rec = self.record(step);
                rec.unit.status = StepStatus::Skipped;
                rec.unit.ended_at = Some(now);
                self.step_event(StepEvent::Skipped, step, None, 0, Default::default());
                return;
            }
            Err(e) => return self.fail_now(step, &e.to_string()),
        }
        if let StepKind::Signal { name, timeout } = &def.kind {
            return self.wait_signal(step, name, timeout.map(|t| t.as_std()));
        }
        match self.wf.eval_foreach(step, &ctx) {
            Ok(None) => self.dispatch_in(step, None, 1, Some(ctx)),
            Ok(Some(items)) => {
                let n = items.len();
                let rec = self.record(step);
                rec.foreach = Some(items);
                rec.items = vec![Unit::default(); n];
                rec.unit.status = StepStatus::Running;
                if n == 0 {
                    self.step_completed(step, Value::Array(Vec::new()));
                } else {
                    self.fill_items(step);
                }
            }
            Err(e) => self.fail_now(step, &e.to_string()),
        }
    }

    /// An expression of the step failed: deterministic, so no retry.
    fn fail_now(&mut self, step: &str, message: &str) {
        let attempt = self.record(step).unit.attempt;
        self.unit_failed(
            step,
            None,
            attempt,
            ErrorInfo::new("expression", message),
            Failure::Permanent,
        );
    }

    /// Starts attempt `attempt` of a unit: publish its task or start its child run.
    pub(crate) fn dispatch(&mut self, step: &str, item: Option<usize>, attempt: u32) {
        self.dispatch_in(step, item, attempt, None);
    }

    /// [`Self::dispatch`] with the evaluation context of the current state,
    /// when the caller has just built it.
    fn dispatch_in(
        &mut self,
        step: &str,
        item: Option<usize>,
        attempt: u32,
        ctx: Option<EvalContext>,
    ) {
        let Some(def) = self.wf.step(step).cloned() else {
            return;
        };
        let slot = Slot::unit(step, item);
        let ctx = match ctx {
            Some(c) => Ok(c),
            None => self.ctx(),
        };
        let input = ctx.and_then(|mut ctx| {
            if let Some(i) = item {
                let value = self
                    .run
                    .steps
                    .get(step)
                    .and_then(|r| r.foreach.as_ref())
                    .and_then(|items| items.get(i))
                    .cloned()
                    .unwrap_or(Value::Null);
                ctx.set_item(&value, i)?;
            }
            self.wf.eval_input(step, &ctx)
        });
        let input = match input {
            Ok(v) => v,
            Err(e) => {
                let err = ErrorInfo::new("expression", e.to_string());
                return self.unit_failed(step, item, attempt, err, Failure::Permanent);
            }
        };
        let task_id = ids::task_id(&self.run.run_id, &slot, attempt);
        let timeout = def.timeout.map(|t| chrono(t.as_std()));
        let deadline = timeout.map(|t| self.now + t);
        let status = match &def.kind {
            StepKind::Task { capability } => {
                self.effects.push(Effect::Task {
                    task_id: task_id.clone(),
                    slot: slot.to_string(),
                    attempt,
                    capability: capability.clone(),
                    input,
                    deadline_ms: deadline.map(|d| d.timestamp_millis()),
                });
                StepStatus::Scheduled
            }
            StepKind::Child { name, version } => {
                if self.run.depth + 1 > MAX_CHILD_DEPTH {
                    let err = ErrorInfo::new(
                        "child_depth",
                        format!("child workflows nest deeper than {MAX_CHILD_DEPTH}"),
                    );
                    return self.unit_failed(step, item, attempt, err, Failure::Permanent);
                }
                let child = ChildSpec {
                    run_id: task_id.clone(),
                    workflow: name.clone(),
                    version: *version,
                    input,
                    parent: agentry::workflow::state::ParentRef {
                        run_id: self.run.run_id.clone(),
                        slot: slot.to_string(),
                        attempt,
                    },
                    depth: self.run.depth + 1,
                    source: self.run.source.clone(),
                    traceparent: self.run.traceparent.clone(),
                };
                self.effects.push(Effect::StartChild { child });
                StepStatus::Running
            }
            StepKind::Signal { .. } => {
                // Signal waits start in `launch`; nothing is dispatched for them.
                let err = ErrorInfo::new("unsupported", "a wait_for step has no task to dispatch");
                return self.unit_failed(step, item, attempt, err, Failure::Permanent);
            }
        };
        let now = self.now;
        let is_child = matches!(def.kind, StepKind::Child { .. });
        if let Some(u) = self.unit(step, item) {
            u.status = status;
            u.attempt = attempt;
            u.attempt_started_at = Some(now);
            u.error = None;
            u.child_run = is_child.then(|| task_id.clone());
        }
        let extra = fields([(
            "capability",
            def.capability().map(Value::from).unwrap_or(Value::Null),
        )]);
        let kind = if is_child {
            StepEvent::Started
        } else {
            StepEvent::Scheduled
        };
        self.step_event(kind, step, item, attempt, extra);
        if let Some(at) = deadline {
            let timer = Timer::StepTimeout {
                run_id: self.run.run_id.clone(),
                step: slot.to_string(),
                attempt,
            };
            self.timer(ids::step_timer(&task_id), at, timer);
        }
    }

    /// Starts pending items of a foreach step up to its `max_parallel`.
    pub(crate) fn fill_items(&mut self, step: &str) {
        let max = self.wf.max_parallel(step).unwrap_or(1).max(1) as usize;
        loop {
            let Some(rec) = self.run.steps.get(step) else {
                return;
            };
            if rec.unit.status != StepStatus::Running {
                return;
            }
            let busy = rec.items.iter().filter(|u| u.in_flight()).count();
            let next = rec
                .items
                .iter()
                .position(|u| u.status == StepStatus::Pending);
            match next {
                Some(i) if busy < max => self.dispatch(step, Some(i), 1),
                _ => return,
            }
        }
    }

    /// A task or child result arrived.
    pub(crate) fn on_result(&mut self, r: &StepResult) {
        let Some(slot) = Slot::parse(&r.slot) else {
            return;
        };
        if let Slot::Compensation(step) = &slot {
            return self.on_compensation_result(step, r);
        }
        if self.run.status != RunStatus::Running {
            return;
        }
        let (step, item) = (slot.step().to_owned(), slot.item());
        let current = self
            .unit(&step, item)
            .is_some_and(|u| u.awaiting_result() && u.attempt == r.attempt);
        if !current {
            return; // a stale attempt, a duplicate, or a step no longer waited on
        }
        if let Some(u) = self.unit(&step, item) {
            u.agent_id = r.agent_id.clone().or(u.agent_id.take());
            u.duration_ms = r.duration_ms;
        }
        self.drop_attempt_timer(&slot, r.attempt);
        match &r.outcome {
            Ok(output) => self.unit_completed(&step, item, output.clone()),
            Err(e) => self.unit_failed(&step, item, r.attempt, e.clone(), classify(e)),
        }
        self.advance();
    }

    fn drop_attempt_timer(&mut self, slot: &Slot, attempt: u32) {
        if self
            .wf
            .step(slot.step())
            .is_some_and(|s| s.timeout.is_some())
        {
            let task_id = ids::task_id(&self.run.run_id, slot, attempt);
            self.effects.push(Effect::DropTimer {
                key: ids::step_timer(&task_id),
            });
        }
    }

    fn unit_completed(&mut self, step: &str, item: Option<usize>, output: Value) {
        let now = self.now;
        let slot = Slot::unit(step, item).to_string();
        let Some(i) = item else {
            return self.step_completed(step, output);
        };
        let (attempt, agent) = {
            let Some(u) = self.unit(step, Some(i)) else {
                return;
            };
            u.status = StepStatus::Completed;
            u.ended_at = Some(now);
            u.output = Some(output.clone());
            (u.attempt, u.agent_id.clone())
        };
        self.outputs.insert(slot, output);
        let extra = fields([("agent_id", agent.map(Value::from).unwrap_or(Value::Null))]);
        self.step_event(StepEvent::Completed, step, Some(i), attempt, extra);
        let all_done = self
            .run
            .steps
            .get(step)
            .is_some_and(|r| r.items.iter().all(|u| u.status == StepStatus::Completed));
        if !all_done {
            return self.fill_items(step);
        }
        // Gather the outputs in item order; items keep none of their own.
        let n = self.run.steps.get(step).map_or(0, |r| r.items.len());
        let mut gathered = Vec::with_capacity(n);
        for i in 0..n {
            let key = Slot::Item(step.to_owned(), i).to_string();
            let inline = self.unit(step, Some(i)).and_then(|u| {
                u.output_ref = None;
                u.output.take()
            });
            gathered.push(self.outputs.remove(&key).or(inline).unwrap_or(Value::Null));
        }
        self.step_completed(step, Value::Array(gathered));
    }

    /// The step completed with `output`.
    pub(crate) fn step_completed(&mut self, step: &str, output: Value) {
        let now = self.now;
        self.outputs.remove(step);
        let rec = self.record(step);
        rec.unit.status = StepStatus::Completed;
        rec.unit.ended_at = Some(now);
        rec.unit.error = None;
        rec.unit.output_ref = None;
        rec.unit.output = Some(output);
        let attempt = rec.unit.attempt;
        let capability = rec.capability.clone();
        let agent = rec.unit.agent_id.clone();
        let duration = rec.unit.duration_ms;
        let secs = rec.elapsed_ms(now).unwrap_or(0) as f64 / 1000.0;
        self.run.completed_order.push(step.to_owned());
        self.notes.steps.push((step.to_owned(), secs));
        let extra = fields([
            (
                "capability",
                capability.map(Value::from).unwrap_or(Value::Null),
            ),
            ("agent_id", agent.map(Value::from).unwrap_or(Value::Null)),
            (
                "duration_ms",
                duration.map(Value::from).unwrap_or(Value::Null),
            ),
        ]);
        self.step_event(StepEvent::Completed, step, None, attempt, extra);
    }

    /// An attempt failed: retry it after its backoff, or fail the unit (and
    /// with a foreach item, its whole step).
    pub(crate) fn unit_failed(
        &mut self,
        step: &str,
        item: Option<usize>,
        attempt: u32,
        err: ErrorInfo,
        failure: Failure,
    ) {
        let policy = match self.wf.step(step).map(|s| (&s.kind, s.retry_policy())) {
            Some((StepKind::Signal { .. }, _)) | None => RetryPolicy::NONE,
            Some((_, p)) => p,
        };
        let slot = Slot::unit(step, item);
        let now = self.now;
        if attempt > 0 && policy.should_retry(attempt, failure) {
            let delay = policy.delay_after(attempt);
            if let Some(u) = self.unit(step, item) {
                u.status = StepStatus::Retrying;
                u.error = Some(err.clone());
            }
            let next = attempt + 1;
            let key = ids::retry_timer(&ids::task_id(&self.run.run_id, &slot, next));
            let timer = Timer::StepRetry {
                run_id: self.run.run_id.clone(),
                step: slot.to_string(),
                attempt: next,
            };
            self.timer(key, now + chrono(delay), timer);
            let extra = fields([
                ("error", err.to_json()),
                ("delay_ms", Value::from(delay.as_millis() as u64)),
            ]);
            return self.step_event(StepEvent::Retrying, step, item, attempt, extra);
        }
        if let Some(u) = self.unit(step, item) {
            u.status = StepStatus::Failed;
            u.error = Some(err.clone());
            u.ended_at = Some(now);
        }
        self.step_event(
            StepEvent::Failed,
            step,
            item,
            attempt,
            fields([("error", err.to_json())]),
        );
        let step_err = match item {
            None => err,
            Some(i) => {
                // One element failed for good: the step fails, its other elements stop.
                self.stop_items(step);
                let mut e = ErrorInfo::new(&err.code, format!("item {i}: {}", err.message));
                e.retryable = err.retryable;
                let rec = self.record(step);
                rec.unit.status = StepStatus::Failed;
                rec.unit.error = Some(e.clone());
                rec.unit.ended_at = Some(now);
                self.step_event(
                    StepEvent::Failed,
                    step,
                    None,
                    attempt,
                    fields([("error", e.to_json())]),
                );
                e
            }
        };
        let rec = self.record(step);
        rec.unit.error = Some(step_err);
        let secs = rec.elapsed_ms(now).unwrap_or(0) as f64 / 1000.0;
        self.notes.steps.push((step.to_owned(), secs));
    }

    /// Stops waiting for the in-flight elements of a foreach step.
    fn stop_items(&mut self, step: &str) {
        let now = self.now;
        let mut children = Vec::new();
        if let Some(rec) = self.run.steps.get_mut(step) {
            for u in rec
                .items
                .iter_mut()
                .filter(|u| u.in_flight() || u.status == StepStatus::Pending)
            {
                if let Some(c) = u.child_run.clone().filter(|_| u.in_flight()) {
                    children.push(c);
                }
                u.status = StepStatus::Cancelled;
                u.ended_at = Some(now);
            }
        }
        for run_id in children {
            self.effects.push(Effect::CancelChild {
                run_id,
                reason: format!("step {step} failed"),
            });
        }
    }

    pub(crate) fn on_step_timeout(&mut self, slot: &str, attempt: u32) {
        let Some(slot) = Slot::parse(slot) else {
            return;
        };
        if let Slot::Compensation(step) = &slot {
            return self.on_compensation_timeout(step, attempt);
        }
        if self.run.status != RunStatus::Running {
            return;
        }
        let (step, item) = (slot.step().to_owned(), slot.item());
        let Some(u) = self.unit(&step, item) else {
            return;
        };
        if !(u.awaiting_result() && u.attempt == attempt) {
            return;
        }
        if let Some(child) = u.child_run.clone() {
            self.effects.push(Effect::CancelChild {
                run_id: child,
                reason: format!("step {step} attempt {attempt} timed out"),
            });
        }
        let limit = self
            .wf
            .step(&step)
            .and_then(|s| s.timeout)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let err = ErrorInfo::new(
            "timeout",
            format!("attempt {attempt} exceeded the step timeout of {limit}"),
        );
        self.unit_failed(&step, item, attempt, err, Failure::Timeout);
        self.advance();
    }

    pub(crate) fn on_step_retry(&mut self, slot: &str, attempt: u32) {
        let Some(slot) = Slot::parse(slot) else {
            return;
        };
        if let Slot::Compensation(step) = &slot {
            return self.on_compensation_retry(step, attempt);
        }
        if self.run.status != RunStatus::Running {
            return;
        }
        let (step, item) = (slot.step().to_owned(), slot.item());
        let due = self
            .unit(&step, item)
            .is_some_and(|u| u.status == StepStatus::Retrying && u.attempt + 1 == attempt);
        if due {
            self.dispatch(&step, item, attempt);
            self.advance();
        }
    }
}
