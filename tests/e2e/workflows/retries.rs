//! Step retries, step timeouts, the run deadline, and saga compensation.

use super::*;

const RETRY: &str = r#"
name: retry
version: 1
steps:
  - id: flaky
    capability: echo
    input: { fail: "'until_attempt'", fail_until_attempt: "3", counter_key: "run.id + '-flaky'" }
    retry: { max_attempts: 4, initial: 1s, multiplier: 3, max: 10s }
output: "steps.flaky.output.attempt"
"#;

const TIMEOUTS: &str = r#"
name: timeouts
version: 1
timeout: 1m
steps:
  - id: slow
    capability: echo
    input: { sleep_ms: "input.sleep" }
    timeout: 1s
    on_error: "fail"
  - id: after
    capability: echo
    needs: [slow]
    input: { saw: steps.slow.status }
output: "steps.after.output.echo.saw"
"#;

/// A step failing twice then succeeding is retried after the configured backoff (gaps from events: 1 s, then 3 s) and the run completes; a step over its timeout fails the run (`on_error: fail`) or lets it go on (`continue`); a run over the workflow timeout ends `timed_out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_timeouts_and_run_deadline() {
    let sys = Sys::start().await;
    sys.put(RETRY).await;
    sys.put(TIMEOUTS).await;
    sys.put(
        &TIMEOUTS
            .replace("name: timeouts", "name: timeouts_continue")
            .replace("on_error: \"fail\"", "on_error: continue"),
    )
    .await;
    sys.put(
        &TIMEOUTS
            .replace("name: timeouts", "name: deadline")
            .replace("timeout: 1m", "timeout: 2s")
            .replace("timeout: 1s", "timeout: 30s"),
    )
    .await;
    let (retry, fail, cont, deadline) = tokio::join!(
        sys.run("retry", json!({})),
        sys.run("timeouts", json!({"sleep": 4000})),
        sys.run("timeouts_continue", json!({"sleep": 4000})),
        sys.run("deadline", json!({"sleep": 8000})),
    );
    // Retries.
    assert_eq!(
        retry.ty, "io.agentry.workflow.completed",
        "{:?}",
        retry.data
    );
    assert_eq!(retry.data["output"], 3);
    assert_eq!(
        sys.echo
            .executions_of(&format!("{}-flaky", retry.request_id)),
        1,
        "only the successful attempt counts"
    );
    let evs = events(&sys.js, Some(&retry.request_id)).await;
    let retrying = step_events(&evs, "io.agentry.step.retrying", "flaky");
    let scheduled = step_events(&evs, "io.agentry.step.scheduled", "flaky");
    assert_eq!(retrying.len(), 2);
    assert_eq!(scheduled.len(), 3);
    assert_eq!(retrying[0].data["delay_ms"], 1000);
    assert_eq!(retrying[1].data["delay_ms"], 3000);
    assert_eq!(retrying[0].data["error"]["retryable"], true);
    let gap1 = scheduled[1].time - retrying[0].time;
    let gap2 = scheduled[2].time - retrying[1].time;
    // Durable timers have one-second resolution and never fire early.
    assert!((1000..2600).contains(&gap1), "first backoff {gap1} ms");
    assert!((3000..4600).contains(&gap2), "second backoff {gap2} ms");
    assert_eq!(
        sys.state(&retry.request_id).await.steps["flaky"]
            .unit
            .attempt,
        3
    );
    // Step timeout, on_error: fail.
    assert_eq!(fail.ty, "io.agentry.workflow.failed", "{:?}", fail.data);
    assert_eq!(fail.data["error"]["code"], "step_failed");
    assert_eq!(fail.data["error"]["details"]["error"]["code"], "timeout");
    let run = sys.state(&fail.request_id).await;
    assert_eq!(run.steps["slow"].unit.status.as_str(), "failed");
    assert!(
        !run.steps.contains_key("after") || run.steps["after"].unit.status.as_str() == "pending"
    );
    // Step timeout, on_error: continue: the dependant runs and sees the failure.
    assert_eq!(cont.ty, "io.agentry.workflow.completed", "{:?}", cont.data);
    assert_eq!(cont.data["output"], "failed");
    // Workflow timeout.
    assert_eq!(
        deadline.ty, "io.agentry.workflow.timed_out",
        "{:?}",
        deadline.data
    );
    assert_eq!(deadline.data["error"]["code"], "timeout");
    let run = sys.state(&deadline.request_id).await;
    assert_eq!(run.status, RunStatus::TimedOut);
    let ms = run.duration_ms(run.ended_at.unwrap());
    assert!((2000..4000).contains(&ms), "timed out after {ms} ms");
    let evs = events(&sys.js, Some(&deadline.request_id)).await;
    assert_eq!(evs.last().unwrap().ty, "io.agentry.run.timed_out");
    sys.parts.stop().await;
}

const SAGA: &str = r#"
name: saga
version: 1
steps:
  - id: reserve
    capability: echo
    input: { what: "'reserve'" }
    compensate: { capability: echo, input: { undo: "'reserve'", counter_key: "run.id + '-undo-reserve'" } }
  - id: charge
    capability: echo
    needs: [reserve]
    input: { what: "'charge'", fail: "has(input.fail) ? input.fail : 'none'" }
    compensate: { capability: echo, input: { undo: "'charge'", counter_key: "run.id + '-undo-charge'" } }
  - id: ship
    capability: echo
    needs: [charge]
    input: { what: "'ship'", sleep_ms: "input.ship_ms", counter_key: "run.id + '-ship'" }
    compensate: { capability: echo, input: { undo: "'ship'", counter_key: "run.id + '-undo-ship'" } }
"#;

/// Cancel mid-run: the running step stops being waited on, completed steps are compensated in reverse completion order, the run ends `cancelled`; a failing step compensates what completed and the run ends `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_failure_compensate_in_reverse() {
    let sys = Sys::start().await;
    sys.put(SAGA).await;
    let nats = &sys.nats;
    sys.start_run("saga-cancel", "saga", json!({"ship_ms": 3000}))
        .await;
    let js = sys.js.clone();
    eventually(Duration::from_secs(20), "ship running", || {
        let js = js.clone();
        async move {
            run_state(&js, "saga-cancel").await.is_some_and(|r| {
                r.steps
                    .get("ship")
                    .is_some_and(|s| s.unit.status.as_str() == "scheduled")
            })
        }
    })
    .await;
    let (code, out, err) = cli(
        nats,
        &[
            "workflow",
            "cancel",
            "--tenant",
            "acme",
            "saga-cancel",
            "--reason",
            "customer changed their mind",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let run = sys
        .wait_status("saga-cancel", RunStatus::Cancelled, Duration::from_secs(20))
        .await;
    let result = sys
        .acme
        .fetch_result(&RequestId::new("saga-cancel").unwrap())
        .await
        .unwrap();
    assert_eq!(result.ty, "io.agentry.workflow.cancelled");
    assert_eq!(
        result.data["error"]["message"],
        "customer changed their mind"
    );
    assert_eq!(run.steps["ship"].unit.status.as_str(), "cancelled");
    assert_eq!(run.steps["charge"].unit.status.as_str(), "compensated");
    assert_eq!(run.steps["reserve"].unit.status.as_str(), "compensated");
    let evs = events(&sys.js, Some("saga-cancel")).await;
    let order: Vec<&str> = evs
        .iter()
        .filter(|e| e.ty == "io.agentry.step.compensated")
        .map(|e| e.data["step"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["charge", "reserve"]);
    assert_eq!(sys.echo.executions_of("saga-cancel-undo-charge"), 1);
    assert_eq!(sys.echo.executions_of("saga-cancel-undo-reserve"), 1);
    assert_eq!(sys.echo.executions_of("saga-cancel-undo-ship"), 0);
    // The abandoned step's late result changes nothing.
    eventually(
        Duration::from_secs(10),
        "ship finished in the agent",
        || async { sys.echo.executions_of("saga-cancel-ship") == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sys.state("saga-cancel").await.steps["ship"]
            .unit
            .status
            .as_str(),
        "cancelled"
    );
    // Failure: charge fails for good; reserve is compensated; ship never runs.
    let out = sys
        .run_id(
            &RequestId::new("saga-fail").unwrap(),
            "saga",
            json!({"ship_ms": 0, "fail": "permanent"}),
        )
        .await;
    assert_eq!(out.ty, "io.agentry.workflow.failed", "{:?}", out.data);
    assert_eq!(out.data["error"]["details"]["step"], "charge");
    let run = sys.state("saga-fail").await;
    assert_eq!(run.steps["reserve"].unit.status.as_str(), "compensated");
    assert_eq!(run.steps["charge"].unit.status.as_str(), "failed");
    assert!(!run.steps.contains_key("ship"));
    assert_eq!(sys.echo.executions_of("saga-fail-undo-reserve"), 1);
    assert_eq!(sys.echo.executions_of("saga-fail-undo-charge"), 0);
    sys.parts.stop().await;
}
