//! Engine restarts and replicas: signals survive a restart, kill -9 with runs in flight, two replicas, `max_runs`.

use super::*;

/// An `agentry-engine` child process (killable with SIGKILL).
fn engine_process(nats: &AuthServer) -> ChildProc {
    ChildProc::spawn(
        "agentry-engine",
        &["--http-addr", "off"],
        &nats.env("engine"),
    )
}

const APPROVAL: &str = r#"
name: approval
version: 1
steps:
  - id: draft
    capability: echo
    input: { doc: input.doc }
  - id: approve
    needs: [draft]
    wait_for: { signal: approve, timeout: 10m }
  - id: publish
    capability: echo
    needs: [approve]
    when: "steps.approve.output.approved == true"
    input: { doc: steps.draft.output.echo.doc, by: steps.approve.output.by }
output: "{'published': steps.publish.status == 'completed', 'by': steps.approve.output.by, 'doc': steps.publish.output.echo.doc}"
"#;

/// A run waiting on a signal survives a SIGKILL of the engine and resumes when `agentry workflow signal` is sent to the restarted one, on the definition version it started with; a signal timeout fails the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_survives_engine_restart_and_times_out() {
    let sys = Sys::start_with(100, false).await;
    let nats = &sys.nats;
    sys.put(APPROVAL).await;
    sys.put(
        &APPROVAL
            .replace("name: approval", "name: approval_short")
            .replace("timeout: 10m", "timeout: 1s"),
    )
    .await;
    let mut engine = engine_process(nats);
    sys.start_run("sig-wait", "approval", json!({"doc": "q3-report"}))
        .await;
    sys.start_run("sig-late", "approval_short", json!({"doc": "memo"}))
        .await;
    let js = sys.js.clone();
    eventually(Duration::from_secs(20), "waiting for approval", || {
        let js = js.clone();
        async move {
            run_state(&js, "sig-wait").await.is_some_and(|r| {
                r.steps
                    .get("approve")
                    .is_some_and(|s| s.unit.status.as_str() == "waiting")
            })
        }
    })
    .await;
    // A new version does not change the run in flight.
    sys.put(
        &APPROVAL
            .replace("version: 1", "version: 2")
            .replace("'published'", "'v2'"),
    )
    .await;
    engine.kill9();
    let (code, _, err) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "no-such-run",
            "approve",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no workflow run no-such-run"), "{err}");
    let _engine = engine_process(nats);
    let (code, out, err) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "sig-wait",
            "approve",
            "--payload",
            r#"{"approved": true, "by": "ana"}"#,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let run = sys
        .wait_status("sig-wait", RunStatus::Completed, Duration::from_secs(40))
        .await;
    assert_eq!(
        run.output,
        Some(json!({"published": true, "by": "ana", "doc": "q3-report"}))
    );
    assert_eq!(run.definition, "approval.1");
    let result = sys
        .acme
        .fetch_result(&RequestId::new("sig-wait").unwrap())
        .await
        .unwrap();
    assert_eq!(result.ty, "io.agentry.workflow.completed");
    // Nobody signalled the short one: its wait timed out and the run failed.
    let run = sys
        .wait_status("sig-late", RunStatus::Failed, Duration::from_secs(40))
        .await;
    assert_eq!(
        run.steps["approve"].unit.error.as_ref().unwrap().code,
        "timeout"
    );
    assert_eq!(run.error.as_ref().unwrap().code, "step_failed");
    sys.parts.stop().await;
}

/// Waits for a completed result of every id; panics on any other outcome.
async fn all_completed(acme: &TenantClient, ids: &[String], limit: Duration) {
    eventually(limit, "every run completed", || async {
        let mut done = 0;
        for id in ids {
            if let Some(o) = acme
                .fetch_result(&RequestId::new(id.as_str()).unwrap())
                .await
            {
                assert_eq!(o.ty, "io.agentry.workflow.completed", "{id}: {:?}", o.data);
                done += 1;
            }
        }
        done == ids.len()
    })
    .await;
}

/// SIGKILL of the engine with 50 runs in flight, then a restart: all 50 complete with the right output, and no step runs to completion twice (side effects counted in the agent), one result each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_engine_with_50_runs_in_flight() {
    let sys = Sys::start_with(100, false).await;
    let nats = &sys.nats;
    sys.put(CHAIN).await;
    let mut engine = engine_process(nats);
    let ids: Vec<String> = (0..50).map(|i| format!("k9-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        sys.start_run(id, "chain", json!({"n": i})).await;
    }
    // Kill while runs are mid-way: some steps done, most not.
    eventually(Duration::from_secs(30), "runs under way", || async {
        sys.echo.executions.lock().map(|m| m.len()).unwrap_or(0) >= 30
    })
    .await;
    engine.kill9();
    let done_at_kill = sys.echo.executions.lock().map(|m| m.len()).unwrap();
    assert!(done_at_kill < 150, "everything finished before the kill");
    let _engine = engine_process(nats);
    all_completed(&sys.acme, &ids, Duration::from_secs(120)).await;
    for (i, id) in ids.iter().enumerate() {
        let o = sys
            .acme
            .fetch_result(&RequestId::new(id.as_str()).unwrap())
            .await
            .unwrap();
        assert_eq!(o.data["output"], json!(i + 2));
        for step in ["a", "b", "c"] {
            assert_eq!(
                sys.echo.executions_of(&format!("{id}-{step}")),
                1,
                "{id} step {step}"
            );
        }
    }
    let counts: HashMap<String, usize> =
        subject_counts(&sys.js, subject::RESULTS_STREAM, &sys.acme.results_all())
            .await
            .into_iter()
            .filter(|(s, _)| s.starts_with("agentry.results.acme.k9-"))
            .collect();
    assert_eq!(counts.len(), 50);
    assert!(counts.values().all(|n| *n == 1));
    sys.parts.stop().await;
}

/// Sum of the samples of `metric` in Prometheus text whose labels contain every `labels` fragment.
fn metric_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two engine replicas process 200 runs together: both start a share of them, every run completes exactly once (one result, one run.completed event, each step executed once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_200_runs() {
    let mut sys = Sys::start_with(100, false).await;
    let nats = &sys.nats;
    sys.put(&CHAIN.replace("sleep_ms: \"150\"", "sleep_ms: \"5\""))
        .await;
    let observers = [Observer::new(), Observer::new()];
    for obs in &observers {
        let (cfg, obs) = (nats.engine_config(), obs.clone());
        sys.parts
            .spawn(move |t| agentry_engine::run_with(cfg, obs, t));
    }
    eventually(Duration::from_secs(20), "both replicas ready", || {
        let obs = observers.clone();
        async move { obs[0].readiness().await.ready && obs[1].readiness().await.ready }
    })
    .await;
    let ids: Vec<String> = (0..200).map(|i| format!("two-{i}")).collect();
    let mut acks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let ev = client::workflow_request(
            &RequestId::new(id.as_str()).unwrap(),
            SOURCE,
            "chain",
            None,
            json!({"n": i}),
        );
        let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
        h.insert(
            event::header::MSG_ID,
            subject::request_key(
                Some(&sys.acme.tenant),
                &RequestId::new(id.as_str()).unwrap(),
            )
            .as_str(),
        );
        acks.push(
            sys.acme
                .js
                .publish_with_headers(sys.acme.requests_subject(), h, body)
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    all_completed(&sys.acme, &ids, Duration::from_secs(120)).await;
    let started: Vec<f64> = observers
        .iter()
        .map(|o| {
            metric_sum(
                &o.metrics_text(),
                "agentry_requests_total",
                &["workflow.requested", "accepted"],
            )
        })
        .collect();
    assert_eq!(started.iter().sum::<f64>(), 200.0, "{started:?}");
    eprintln!("runs started per replica: {started:?}");
    assert!(
        started.iter().all(|n| *n >= 20.0),
        "both replicas start runs: {started:?}"
    );
    let finished: f64 = observers
        .iter()
        .map(|o| {
            metric_sum(
                &o.metrics_text(),
                "agentry_workflow_runs_total",
                &["completed"],
            )
        })
        .sum();
    assert_eq!(finished, 200.0);
    let counts: HashMap<String, usize> =
        subject_counts(&sys.js, subject::RESULTS_STREAM, &sys.acme.results_all())
            .await
            .into_iter()
            .filter(|(s, _)| s.starts_with("agentry.results.acme.two-"))
            .collect();
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|n| *n == 1));
    let evs = events(&sys.js, None).await;
    let mut completed: HashMap<String, usize> = HashMap::new();
    for e in evs.iter().filter(|e| e.ty == "io.agentry.run.completed") {
        *completed
            .entry(e.data["run_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(completed.len(), 200);
    assert!(completed.values().all(|n| *n == 1), "a run completed twice");
    for id in &ids {
        for step in ["a", "b", "c"] {
            assert_eq!(
                sys.echo.executions_of(&format!("{id}-{step}")),
                1,
                "{id} {step}"
            );
        }
    }
    sys.parts.stop().await;
}

/// With at most 5 active runs per replica and 50 submitted, never more than 5 run at once (from the runs' start and end times), the limit is used, and all 50 complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runs_bounds_concurrency() {
    let sys = Sys::start_with(5, true).await;
    sys.put(
        &CHAIN
            .replace("name: chain", "name: short")
            .replace("sleep_ms: \"150\"", "sleep_ms: \"100\""),
    )
    .await;
    let ids: Vec<String> = (0..50).map(|i| format!("lim-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        sys.start_run(id, "short", json!({"n": i})).await;
    }
    all_completed(&sys.acme, &ids, Duration::from_secs(90)).await;
    let mut intervals = Vec::new();
    for id in &ids {
        let run = sys.state(id).await;
        intervals.push((
            run.created_at.timestamp_millis(),
            run.ended_at.unwrap().timestamp_millis(),
        ));
    }
    let max = max_overlap(&intervals);
    assert!(max <= 5, "{max} runs were active at once");
    assert!(max >= 4, "the limit was not used: at most {max} at once");
    sys.parts.stop().await;
}
