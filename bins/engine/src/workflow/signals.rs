//! `wait_for` steps: a step waits (status `waiting`) until an
//! `io.agentry.workflow.signal` with its name arrives for the run; the
//! payload is its output. A signal that arrives before any step waits for it
//! is kept and consumed by the first step that does. A durable timer fails
//! the wait when it has a timeout.

use agentry::workflow::StepStatus;
use agentry::workflow::retry::Failure;
use agentry::workflow::state::{ErrorInfo, RunStatus};
use serde_json::Value;

use super::effects::Effect;
use super::ids;
use super::machine::{Machine, StepEvent};
use super::steps::chrono;
use crate::timers::Timer;

/// How many applied signal request ids a run remembers (duplicate deliveries).
const SEEN_SIGNALS: usize = 64;

impl Machine<'_> {
    pub(crate) fn wait_signal(
        &mut self,
        step: &str,
        name: &str,
        timeout: Option<std::time::Duration>,
    ) {
        let now = self.now;
        let rec = self.run.steps.entry(step.to_owned()).or_default();
        rec.signal = Some(name.to_owned());
        rec.unit.status = StepStatus::Waiting;
        rec.unit.attempt = 1;
        rec.unit.attempt_started_at = Some(now);
        self.step_event(StepEvent::Started, step, None, 1, Default::default());
        if let Some(payload) = self.run.signals.remove(name) {
            return self.signal_arrived(step, payload);
        }
        if let Some(t) = timeout {
            let timer = Timer::SignalTimeout {
                run_id: self.run.run_id.clone(),
                step: step.to_owned(),
            };
            self.timer(
                ids::signal_timer(&self.run.run_id, step),
                now + chrono(t),
                timer,
            );
        }
    }

    fn signal_arrived(&mut self, step: &str, payload: Value) {
        let has_timeout = self.wf.step(step).is_some_and(|s| {
            matches!(
                s.kind,
                agentry::workflow::StepKind::Signal {
                    timeout: Some(_),
                    ..
                }
            )
        });
        if has_timeout {
            self.effects.push(Effect::DropTimer {
                key: ids::signal_timer(&self.run.run_id, step),
            });
        }
        self.step_completed(step, payload);
    }

    pub(crate) fn on_signal(&mut self, request_id: &str, name: &str, payload: &Value) {
        if self.run.status != RunStatus::Running
            || self.run.seen_signals.iter().any(|s| s == request_id)
        {
            return;
        }
        self.run.seen_signals.push(request_id.to_owned());
        if self.run.seen_signals.len() > SEEN_SIGNALS {
            self.run.seen_signals.remove(0);
        }
        let waiting = self
            .wf
            .order()
            .iter()
            .find(|id| {
                self.run.steps.get(id.as_str()).is_some_and(|r| {
                    r.unit.status == StepStatus::Waiting && r.signal.as_deref() == Some(name)
                })
            })
            .map(|id| id.as_str().to_owned());
        match waiting {
            Some(step) => {
                self.signal_arrived(&step, payload.clone());
                self.advance();
            }
            None => {
                self.run.signals.insert(name.to_owned(), payload.clone());
            }
        }
    }

    pub(crate) fn on_signal_timeout(&mut self, step: &str) {
        if self.run.status != RunStatus::Running {
            return;
        }
        let Some(rec) = self.run.steps.get(step) else {
            return;
        };
        if rec.unit.status != StepStatus::Waiting {
            return;
        }
        let name = rec.signal.clone().unwrap_or_default();
        let err = ErrorInfo::new("timeout", format!("no `{name}` signal arrived in time"));
        self.unit_failed(step, None, 1, err, Failure::Timeout);
        self.advance();
    }
}
