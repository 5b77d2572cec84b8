//! Approvals go through behind a thousand queued workflows.

use super::*;

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
    input: { doc: steps.draft.output.echo.doc }
"#;

const QUICK: &str = r#"
name: quick
version: 1
steps:
  - id: one
    capability: echo
    input: { n: input.n, sleep_ms: "50" }
"#;

async fn run_state(admin: &jetstream::Context, run: &str) -> Option<RunState> {
    let kv = admin.get_key_value(subject::RUNS_BUCKET).await.unwrap();
    let v = kv.get(format!("acme.{run}")).await.ok()??;
    serde_json::from_slice(&v).ok()
}

/// Counts runs among `ids` whose state satisfies `f`, remembering those
/// that did in `done` (so a long poll only reads the runs still open).
async fn count_runs(
    admin: &jetstream::Context,
    ids: &[String],
    done: &std::sync::Mutex<std::collections::HashSet<String>>,
    f: impl Fn(&RunState) -> bool,
) -> usize {
    let kv = admin.get_key_value(subject::RUNS_BUCKET).await.unwrap();
    let open: Vec<&String> = {
        let d = done.lock().unwrap();
        ids.iter().filter(|id| !d.contains(*id)).collect()
    };
    for id in open {
        // Run keys name their tenant (`acme.<run-id>`).
        if let Ok(Some(v)) = kv.get(format!("acme.{id}")).await
            && let Ok(s) = serde_json::from_slice::<RunState>(&v)
            && f(&s)
        {
            done.lock().unwrap().insert(id.clone());
        }
    }
    done.lock().unwrap().len()
}

/// Liveness: 100 runs parked on an approval signal plus 1,000 queued workflow
/// requests, on an engine with 100 run slots and 64 permits: the parked runs
/// hold no slot and the waiting starts hold no permit, so the approvals go
/// through and all 1,100 runs complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_go_through_behind_a_thousand_queued_workflows() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|c| {
        c.max_runs = 100;
        c.concurrency = 64;
    });
    sys.echo_agent();
    wait_pulling(&sys.admin).await;
    for def in [APPROVAL, QUICK] {
        agentry::workflow::store::put(&sys.admin, def)
            .await
            .unwrap();
    }
    let approvals: Vec<String> = (0..100).map(|i| format!("appr-{i}")).collect();
    for id in &approvals {
        let rid = RequestId::new(id.as_str()).unwrap();
        sys.publish(&client::workflow_request(
            &rid,
            SOURCE,
            "approval",
            None,
            json!({"doc": id}),
        ))
        .await;
    }
    let parked = Arc::new(std::sync::Mutex::new(Default::default()));
    let admin = sys.admin.clone();
    let waiting = approvals.clone();
    eventually(
        Duration::from_secs(120),
        "100 runs waiting for approval",
        || {
            let admin = admin.clone();
            let ids = waiting.clone();
            let parked = parked.clone();
            async move { count_runs(&admin, &ids, &parked, RunState::is_parked).await == 100 }
        },
    )
    .await;
    let quick: Vec<String> = (0..1000).map(|i| format!("quick-{i}")).collect();
    for (i, id) in quick.iter().enumerate() {
        let rid = RequestId::new(id.as_str()).unwrap();
        sys.publish(&client::workflow_request(
            &rid,
            SOURCE,
            "quick",
            None,
            json!({"n": i}),
        ))
        .await;
    }
    for id in &approvals {
        let sid = RequestId::generate();
        let ev = event::new_event(
            sid.as_str(),
            SOURCE,
            types::WORKFLOW_SIGNAL,
            json!({"run_id": id, "signal": "approve", "payload": {"ok": true}}),
        );
        sys.publish(&ev).await;
    }
    // Every run ends with exactly one result: 1,100 results means all ended.
    let admin = sys.admin.clone();
    eventually(Duration::from_secs(400), "1,100 run results", || {
        let admin = admin.clone();
        async move { stream_messages(&admin, subject::RESULTS_STREAM).await >= 1_100 }
    })
    .await;
    let all: Vec<String> = approvals.iter().chain(quick.iter()).cloned().collect();
    let completed = Arc::new(std::sync::Mutex::new(Default::default()));
    let n = count_runs(&sys.admin, &all, &completed, |s| {
        s.status == RunStatus::Completed
    })
    .await;
    assert_eq!(n, all.len(), "every run completed");
    let st = run_state(&sys.admin, "appr-7").await.unwrap();
    assert_eq!(st.status, RunStatus::Completed);
    sys.sys.stop().await;
}
