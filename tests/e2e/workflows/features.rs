//! Single tasks, foreach and child workflows, duplicates, large outputs, and the CLI.

use super::*;

/// A single task gets a one-step workflow's guarantees without run state: the agent's retries (fails twice, completes on attempt 3), a deadline (timeout result), exactly one result; no key in `agentry-runs`. (That a task is cheaper than a one-step workflow is measured by `agentry bench --mode task|workflow`, not asserted by a timed test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_task_has_workflow_guarantees_without_run_state() {
    let sys = Sys::start().await;
    let submit = |input: Value, timeout_ms: Option<u64>| {
        let acme = sys.acme.clone();
        async move {
            let id = RequestId::generate();
            let ev = client::task_request(&id, SOURCE, "echo", input, timeout_ms);
            acme.submit(&ev, Duration::from_secs(30)).await.unwrap()
        }
    };
    let retried = submit(
        json!({"fail": "until_attempt", "fail_until_attempt": 3, "counter_key": "task-retry"}),
        None,
    )
    .await;
    assert_eq!(
        retried.ty, "io.agentry.task.completed",
        "{:?}",
        retried.data
    );
    assert_eq!(retried.data["attempts"], 3);
    let late = submit(
        json!({"sleep_ms": 4000, "counter_key": "task-late"}),
        Some(1000),
    )
    .await;
    assert_eq!(late.ty, "io.agentry.task.failed");
    assert_eq!(late.data["error"]["code"], "timeout");
    // The agent gives up at the deadline too; whatever it does, the first result stands alone.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for o in [&retried, &late] {
        let counts = subject_counts(
            &sys.js,
            subject::RESULTS_STREAM,
            &sys.acme
                .results_subject(&RequestId::new(o.request_id.as_str()).unwrap()),
        )
        .await;
        assert_eq!(counts.values().sum::<usize>(), 1, "{}", o.request_id);
    }
    sys.put("name: one\nversion: 1\nsteps:\n  - id: only\n    capability: echo\n    input: { x: input.x }\noutput: steps.only.output.echo.x\n").await;
    for i in 0..15 {
        let o = submit(json!({"x": i}), None).await;
        assert!(o.is_success());
        let o = sys.run("one", json!({"x": i})).await;
        assert_eq!(o.data["output"], i);
    }
    // Tasks leave no run state: only the 15 workflow runs are in agentry-runs.
    let kv = sys.js.get_key_value(subject::RUNS_BUCKET).await.unwrap();
    // A set: a key written again while the listing runs (a run just ended)
    // is listed twice. Waited for: a run's last write may follow its result.
    let keys: std::collections::BTreeSet<String> = eventually_some(
        Duration::from_secs(30),
        "15 runs in agentry-runs",
        || async {
            let list = kv.keys().await.ok()?;
            let keys: std::collections::BTreeSet<String> =
                list.filter_map(|k| async move { k.ok() }).collect().await;
            (keys.len() >= 15).then_some(keys)
        },
    )
    .await;
    assert_eq!(keys.len(), 15, "{keys:?}");
    assert!(!keys.contains(&key(&retried.request_id)) && !keys.contains(&key(&late.request_id)));
    sys.parts.stop().await;
}

const LEAF: &str = r#"
name: leaf
version: 1
steps:
  - id: double
    capability: echo
    input: { x: "input.x * 2" }
output: "steps.double.output.echo.x"
"#;

const PARENT: &str = r#"
name: parent
version: 1
steps:
  - id: each
    capability: echo
    foreach: input.xs
    max_parallel: 2
    input: { x: "item * 10", i: index, sleep_ms: "250" }
  - id: child
    workflow: { name: leaf }
    needs: [each]
    input: "{'x': size(steps.each.output)}"
  - id: children
    workflow: { name: leaf, version: 1 }
    foreach: "[1, 2, 3]"
    input: "{'x': item}"
output: "{'xs': steps.each.output.map(o, o.echo.x), 'child': steps.child.output, 'children': steps.children.output}"
"#;

/// `foreach` fans out with at most `max_parallel` elements in flight and gathers outputs in order; a child workflow step completes with the child run's output, also per element of a foreach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreach_and_child_workflows() {
    let sys = Sys::start().await;
    sys.put(LEAF).await;
    sys.put(PARENT).await;
    let out = sys.run("parent", json!({"xs": [1, 2, 3, 4, 5, 6]})).await;
    assert_eq!(out.ty, "io.agentry.workflow.completed", "{:?}", out.data);
    assert_eq!(
        out.data["output"],
        json!({"xs": [10, 20, 30, 40, 50, 60], "child": 12, "children": [2, 4, 6]})
    );
    let run = sys.state(&out.request_id).await;
    let items = &run.steps["each"].items;
    assert_eq!(items.len(), 6);
    let windows: Vec<(i64, i64)> = items
        .iter()
        .map(|u| {
            (
                u.attempt_started_at.unwrap().timestamp_millis(),
                u.ended_at.unwrap().timestamp_millis(),
            )
        })
        .collect();
    assert_eq!(max_overlap(&windows), 2, "{windows:?}");
    // The child is a run of its own, pointing back at its parent step.
    let child_id = run.steps["child"].unit.child_run.clone().unwrap();
    assert_eq!(child_id, key(&format!("{}-child-1", out.request_id)));
    let child = sys.state(&child_id).await;
    assert_eq!(child.status, RunStatus::Completed);
    assert_eq!(child.parent.as_ref().unwrap().run_id, key(&out.request_id));
    assert_eq!(child.depth, 1);
    let evs = events(&sys.js, Some(&child_id)).await;
    assert_eq!(
        evs.last().unwrap().data["parent_run_id"],
        out.request_id.as_str()
    );
    // A parent whose child fails fails too.
    sys.put("name: bad_leaf\nversion: 1\nsteps:\n  - id: x\n    capability: echo\n    input: { fail: \"'permanent'\" }\n").await;
    sys.put("name: bad_parent\nversion: 1\nsteps:\n  - id: c\n    workflow: { name: bad_leaf }\n")
        .await;
    let out = sys.run("bad_parent", json!({})).await;
    assert_eq!(out.ty, "io.agentry.workflow.failed", "{:?}", out.data);
    assert!(
        out.data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("child run"),
        "{:?}",
        out.data
    );
    sys.parts.stop().await;
}

/// A workflow request delivered twice (past JetStream's dedup) starts one run with one result; an unknown workflow or run is rejected with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_requests_and_rejections() {
    let sys = Sys::start().await;
    sys.put(CHAIN).await;
    let id = RequestId::new("dup-1").unwrap();
    let ev = client::workflow_request(&id, SOURCE, "chain", None, json!({"n": 1}));
    for msg_id in ["dup-1", "dup-1-again"] {
        let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
        h.insert(event::header::MSG_ID, msg_id);
        sys.acme
            .js
            .publish_with_headers(sys.acme.requests_subject(), h, body)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    sys.wait_status("dup-1", RunStatus::Completed, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sys.echo.executions_of("dup-1-a"), 1);
    let evs = events(&sys.js, Some("dup-1")).await;
    assert_eq!(
        evs.iter()
            .filter(|e| e.ty == "io.agentry.run.started")
            .count(),
        1
    );
    let results = sys.acme.results_subject(&id);
    let counts = subject_counts(&sys.js, subject::RESULTS_STREAM, &results).await;
    assert_eq!(counts.get(&results), Some(&1));
    let out = sys.run("no_such_workflow", json!({})).await;
    assert_eq!(out.ty, "io.agentry.request.rejected");
    assert_eq!(out.data["reason"], "unknown_workflow");
    let id = RequestId::generate();
    let ev = event::new_event(
        id.as_str(),
        SOURCE,
        "io.agentry.workflow.cancel",
        json!({"run_id": "nope"}),
    );
    let out = sys.acme.submit(&ev, Duration::from_secs(20)).await.unwrap();
    assert_eq!(out.data["reason"], "unknown_run");
    sys.put("name: typed\nversion: 1\ninput_schema: { type: object, required: [n] }\nsteps:\n  - id: a\n    capability: echo\n").await;
    let out = sys.run("typed", json!({"m": 1})).await;
    assert_eq!(out.data["reason"], "schema_invalid", "{:?}", out.data);
    sys.parts.stop().await;
}

/// A step output above 256 KiB is kept in the object store `agentry-artifacts` and the run state holds a reference; later steps and the output still see the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outputs_live_in_the_object_store() {
    let sys = Sys::start().await;
    sys.put("name: big\nversion: 1\nsteps:\n  - id: make\n    capability: echo\n    input: { message: input.text }\n  - id: measure\n    capability: echo\n    needs: [make]\n    input: { len: size(steps.make.output.echo.message) }\noutput: steps.measure.output.echo.len\n").await;
    let text = "x".repeat(300 * 1024);
    let out = sys.run("big", json!({"text": text})).await;
    assert_eq!(out.ty, "io.agentry.workflow.completed", "{:?}", out.data);
    assert_eq!(out.data["output"], 300 * 1024);
    let run = sys.state(&out.request_id).await;
    let unit = &run.steps["make"].unit;
    assert!(unit.output.is_none());
    let r = unit.output_ref.as_ref().expect("artifact reference");
    assert_eq!(r.bucket, "agentry-artifacts");
    let store = sys.js.get_object_store("agentry-artifacts").await.unwrap();
    let info = store.info(&r.name).await.unwrap();
    assert_eq!(info.size as u64, r.bytes);
    assert!(r.bytes > 300 * 1024);
    sys.parts.stop().await;
}

/// `agentry workflow list|get|run --wait|runs|show` print definitions, results and a run's step table (also as JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_shows() {
    let sys = Sys::start().await;
    let nats = &sys.nats;
    sys.put(CHAIN).await;
    sys.put(&CHAIN.replace("version: 1", "version: 2")).await;
    let (code, out, _) = cli(nats, &["--json", "workflow", "list"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "chain");
    assert_eq!(v[0]["versions"], json!([1, 2]));
    let (code, out, _) = cli(
        nats,
        &["--json", "workflow", "get", "chain", "--version", "1"],
    )
    .await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["steps"].as_array().unwrap().len(), 3);
    let (code, out, err) = cli(
        nats,
        &[
            "--json",
            "workflow",
            "run",
            "--tenant",
            "acme",
            "chain",
            "--input",
            r#"{"n": 40}"#,
            "--wait",
            "--id",
            "cli-run",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["output"], 42);
    assert_eq!(v["data"]["version"], 2);
    let (code, out, _) = cli(
        nats,
        &[
            "--json",
            "workflow",
            "runs",
            "--tenant",
            "acme",
            "--status",
            "completed",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["run_id"], "cli-run");
    let (code, out, _) = cli(nats, &["workflow", "show", "--tenant", "acme", "cli-run"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("status    completed"), "{out}");
    let table: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("STEP")).collect();
    assert!(
        table[0].contains("STATUS")
            && table[0].contains("ATTEMPTS")
            && table[0].contains("DURATION")
            && table[0].contains("ERROR"),
        "{out}"
    );
    assert_eq!(table.len(), 4, "{out}");
    assert!(
        table[1].starts_with("a ") && table[1].contains("completed"),
        "{out}"
    );
    let (code, _, err) = cli(nats, &["workflow", "show", "--tenant", "acme", "missing"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no workflow run missing"));
    sys.parts.stop().await;
}
