//! The state machine without NATS: inputs applied to a run state, effects
//! and statuses checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use agentry::workflow::state::{ErrorInfo, RunState, RunStatus};
use agentry::workflow::{Compiled, Definition};
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::effects::Effect;
use super::machine::{Input, Machine, StepResult};
use super::run::{NewRun, initial_state};
use crate::timers::Timer;

fn compile(yaml: &str) -> Compiled {
    Definition::parse(yaml)
        .unwrap()
        .check(&|_: &str| true, &|_: &str, _: Option<u32>| true)
        .unwrap()
}

fn new_run(wf: &Compiled, input: Value) -> RunState {
    let new = NewRun {
        run_id: "r1".into(),
        request_id: "r1".into(),
        tenant: None,
        source: "/t".into(),
        traceparent: None,
        input,
        timeout: None,
        parent: None,
        depth: 0,
    };
    initial_state("w.1".into(), wf, new, Utc::now())
}

/// Applies `input` (or starts the run) and returns the effects.
fn step(run: &mut RunState, wf: &Compiled, input: Option<Input>) -> Vec<Effect> {
    let mut m = Machine::new(run, wf, Utc::now(), BTreeMap::new());
    match input {
        Some(i) => m.apply(&i),
        None => m.start(),
    }
    m.effects
}

fn tasks(effects: &[Effect]) -> Vec<(String, u32, Value)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Task {
                slot,
                attempt,
                input,
                ..
            } => Some((slot.clone(), *attempt, input.clone())),
            _ => None,
        })
        .collect()
}

fn events(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event { ty, data, .. } => Some(format!(
                "{}:{}",
                ty.trim_start_matches("io.agentry."),
                data["step"].as_str().unwrap_or("")
            )),
            _ => None,
        })
        .collect()
}

fn ok(slot: &str, attempt: u32, output: Value) -> Input {
    Input::StepResult(StepResult {
        slot: slot.into(),
        attempt,
        outcome: Ok(output),
        agent_id: Some("echo-1".into()),
        duration_ms: Some(5),
    })
}

fn failed(slot: &str, attempt: u32, retryable: bool) -> Input {
    let mut e = ErrorInfo::new("handler", "boom");
    e.retryable = retryable;
    Input::StepResult(StepResult {
        slot: slot.into(),
        attempt,
        outcome: Err(e),
        agent_id: None,
        duration_ms: None,
    })
}

const CHAIN: &str = r#"
name: w
version: 1
steps:
  - id: a
    capability: echo
    input: { n: input.n }
    retry: { max_attempts: 3, initial: 2s, multiplier: 2 }
  - id: b
    capability: echo
    needs: [a]
    input: { n: "steps.a.output.n + 1" }
output: "steps.b.output.n"
"#;

/// A chain: the root starts with the run; its result starts the next step with
/// the CEL-mapped input; the last result completes the run with its output.
#[test]
fn chain_runs_to_completion() {
    let wf = compile(CHAIN);
    let mut run = new_run(&wf, json!({"n": 1}));
    let fx = step(&mut run, &wf, None);
    assert_eq!(tasks(&fx), [("a".to_owned(), 1, json!({"n": 1}))]);
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Timer {
            timer: Timer::RunTimeout { .. },
            ..
        }
    )));
    assert_eq!(events(&fx), ["run.started:", "step.scheduled:a"]);
    let fx = step(&mut run, &wf, Some(ok("a", 1, json!({"n": 1}))));
    assert_eq!(tasks(&fx), [("b".to_owned(), 1, json!({"n": 2}))]);
    let fx = step(&mut run, &wf, Some(ok("b", 1, json!({"n": 2}))));
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(json!(2)));
    assert!(
        fx.iter().any(
            |e| matches!(e, Effect::Result { ty, .. } if ty == "io.agentry.workflow.completed")
        )
    );
    assert_eq!(run.completed_order, ["a", "b"]);
}

/// A retryable failure arms a retry timer after the policy's delay; the
/// timer dispatches the next attempt; results of stale attempts and
/// duplicates change nothing.
#[test]
fn retries_and_stale_results() {
    let wf = compile(CHAIN);
    let mut run = new_run(&wf, json!({"n": 1}));
    step(&mut run, &wf, None);
    let before = Utc::now();
    let fx = step(&mut run, &wf, Some(failed("a", 1, true)));
    let at = fx
        .iter()
        .find_map(|e| match e {
            Effect::Timer {
                at,
                timer: Timer::StepRetry { attempt, .. },
                ..
            } => Some((*at, *attempt)),
            _ => None,
        })
        .unwrap();
    assert_eq!(at.1, 2);
    assert!(at.0 >= before + Duration::seconds(2) && at.0 < before + Duration::seconds(3));
    assert_eq!(run.steps["a"].unit.status.as_str(), "retrying");
    // A duplicate of the failed result, or a result of attempt 2 before it started: ignored.
    let snapshot = run.clone();
    assert!(step(&mut run, &wf, Some(failed("a", 1, true))).is_empty());
    assert!(step(&mut run, &wf, Some(ok("a", 2, json!({"n": 1})))).is_empty());
    assert_eq!(run, snapshot);
    let fx = step(
        &mut run,
        &wf,
        Some(Input::StepRetry {
            slot: "a".into(),
            attempt: 2,
        }),
    );
    assert_eq!(tasks(&fx), [("a".to_owned(), 2, json!({"n": 1}))]);
    // A permanent failure is not retried: the run fails.
    let fx = step(&mut run, &wf, Some(failed("a", 2, false)));
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.error.as_ref().unwrap().code, "step_failed");
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Result { ty, .. } if ty == "io.agentry.workflow.failed"))
    );
}

const SAGA: &str = r#"
name: w
version: 1
steps:
  - id: a
    capability: echo
    compensate: { capability: echo, input: { undo: "'a'" } }
  - id: b
    capability: echo
    compensate: { capability: echo, input: { undo: "'b'" } }
  - id: c
    capability: echo
    needs: [a, b]
"#;

/// Cancel: the in-flight step is dropped, completed steps are compensated
/// one at a time, latest completion first, then the run ends `cancelled`.
#[test]
fn cancel_compensates_in_reverse_completion_order() {
    let wf = compile(SAGA);
    let mut run = new_run(&wf, json!({}));
    step(&mut run, &wf, None);
    step(&mut run, &wf, Some(ok("b", 1, json!({}))));
    step(&mut run, &wf, Some(ok("a", 1, json!({}))));
    assert_eq!(run.steps["c"].unit.status.as_str(), "scheduled");
    let fx = step(&mut run, &wf, Some(Input::Cancel { reason: None }));
    assert_eq!(run.status, RunStatus::Compensating);
    assert_eq!(run.steps["c"].unit.status.as_str(), "cancelled");
    assert_eq!(tasks(&fx), [("a-c".to_owned(), 1, json!({"undo": "a"}))]);
    // The abandoned step's result is ignored.
    assert!(step(&mut run, &wf, Some(ok("c", 1, json!({})))).is_empty());
    let fx = step(&mut run, &wf, Some(ok("a-c", 1, json!({}))));
    assert_eq!(tasks(&fx), [("b-c".to_owned(), 1, json!({"undo": "b"}))]);
    assert_eq!(events(&fx), ["step.compensated:a"]);
    step(&mut run, &wf, Some(ok("b-c", 1, json!({}))));
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.compensation.as_ref().unwrap().done, ["a", "b"]);
}

/// A signal that arrives before its step waits is kept and consumed when the
/// step starts; a duplicate delivery of the same signal request is ignored.
#[test]
fn early_signal_is_buffered() {
    let wf = compile(
        "name: w\nversion: 1\nsteps:\n  - id: a\n    capability: echo\n  - id: s\n    needs: [a]\n    wait_for: { signal: go }\noutput: steps.s.output.ok\n",
    );
    let mut run = new_run(&wf, json!({}));
    step(&mut run, &wf, None);
    let go = Input::Signal {
        request_id: "sig-1".into(),
        name: "go".into(),
        payload: json!({"ok": true}),
    };
    step(&mut run, &wf, Some(go.clone()));
    assert_eq!(run.signals["go"], json!({"ok": true}));
    step(&mut run, &wf, Some(go));
    step(&mut run, &wf, Some(ok("a", 1, json!({}))));
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(json!(true)));
    assert!(run.signals.is_empty());
}

/// A foreach keeps at most `max_parallel` elements in flight and gathers
/// outputs in element order, whatever order they finish in.
#[test]
fn foreach_is_bounded_and_ordered() {
    let wf = compile(
        "name: w\nversion: 1\nsteps:\n  - id: f\n    capability: echo\n    foreach: input.xs\n    max_parallel: 2\n    input: { x: item }\noutput: steps.f.output\n",
    );
    let mut run = new_run(&wf, json!({"xs": [10, 20, 30]}));
    let fx = step(&mut run, &wf, None);
    assert_eq!(
        tasks(&fx).iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        ["f-i0", "f-i1"]
    );
    let fx = step(&mut run, &wf, Some(ok("f-i1", 1, json!("B"))));
    assert_eq!(tasks(&fx), [("f-i2".to_owned(), 1, json!({"x": 30}))]);
    step(&mut run, &wf, Some(ok("f-i2", 1, json!("C"))));
    assert_eq!(run.status, RunStatus::Running);
    step(&mut run, &wf, Some(ok("f-i0", 1, json!("A"))));
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(json!(["A", "B", "C"])));
}
