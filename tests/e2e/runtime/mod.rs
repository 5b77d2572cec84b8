//! Agent runtime, routing, registry and DLQ end to end (issue: agent runtime).
//! Under the production accounts: engine, monitor and agents as their roles,
//! requests from tenant `acme`, inspection as `admin`.

use std::collections::HashMap;
use std::time::Duration;

use agentry::client::{self, task_request};
use agentry::event::{self, Limits, Mode};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::registry::Status;
use agentry::subject;
use agentry_tests::*;
use futures::StreamExt;
use serde_json::json;

mod lifecycle;
mod service;

async fn submit(tenant: &TenantClient, input: serde_json::Value) -> client::Outcome {
    let id = RequestId::generate();
    let ev = task_request(&id, "/tests", "echo", input, None);
    tenant
        .submit(&ev, Duration::from_secs(30))
        .await
        .expect("result")
}

/// An echo agent serving `echo` (its own counter), 16 tasks at once,
/// quick retries.
fn start_echo(sys: &mut System, echo: agentry_echo::Echo) {
    let nats = sys.server.agent_nats("echo");
    sys.parts.spawn(move |t| async move {
        let mut rc = agentry::agent::Config::new(nats);
        rc.capacity = 16;
        rc.heartbeat = Duration::from_secs(1);
        rc.topology = test_settings();
        rc.retry = agentry::retry::Policy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            multiplier: 2.0,
        };
        agentry::agent::run(vec![std::sync::Arc::new(echo)], rc, Observer::new(), t).await
    });
}

/// An echo task returns its result; the same request id submitted twice executes once and stores one result.
#[tokio::test]
async fn echo_result_and_dedup() {
    let mut sys = System::builder().engine(|_| {}).monitor().start().await;
    let js = sys.admin.clone();
    let acme = sys.tenant("acme").await;
    let echo = agentry_echo::Echo::default();
    start_echo(&mut sys, echo.clone());

    let out = submit(&acme, json!({"message": "hello"})).await;
    assert_eq!(out.ty, "io.agentry.task.completed");
    assert_eq!(out.data["output"]["echo"]["message"], "hello");

    let id = RequestId::new("dedup-1").unwrap();
    let ev = task_request(
        &id,
        "/tests",
        "echo",
        json!({"counter_key": "dedup-1"}),
        None,
    );
    acme.publish(&ev, Mode::Binary).await.unwrap();
    acme.publish(&ev, Mode::Structured).await.unwrap();
    let out = acme
        .submit_mode(&ev, Mode::Binary, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(out.is_success());
    // Every copy handed to the engine and every task taken has been settled.
    eventually(
        Duration::from_secs(10),
        "requests and tasks settled",
        || {
            let js = js.clone();
            async move {
                let settled = |i: async_nats::jetstream::consumer::Info| {
                    i.num_pending == 0 && i.num_ack_pending == 0
                };
                let req = js
                    .get_stream_no_info(subject::REQUESTS_STREAM)
                    .await
                    .unwrap();
                let tasks = js.get_stream_no_info(subject::TASKS_STREAM).await.unwrap();
                req.consumer_info(subject::ENGINE_CONSUMER)
                    .await
                    .map(settled)
                    .unwrap_or(false)
                    && tasks
                        .consumer_info("cap-echo")
                        .await
                        .map(settled)
                        .unwrap_or(false)
            }
        },
    )
    .await;
    assert_eq!(echo.executions_of("dedup-1"), 1, "executed more than once");
    let results = acme.results_subject(&id);
    let counts = subject_counts(&js, subject::RESULTS_STREAM, &results).await;
    assert_eq!(counts.get(&results), Some(&1));
    sys.stop().await;
}

/// Two echo agents share 1,000 tasks; every request gets exactly one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_share_work() {
    let mut sys = System::builder().engine(|_| {}).monitor().start().await;
    let js = sys.admin.clone();
    let acme = sys.tenant("acme").await;
    let a = agentry_echo::Echo::default();
    let b = agentry_echo::Echo::default();
    start_echo(&mut sys, a.clone());
    start_echo(&mut sys, b.clone());
    wait_for_agents(&js, "echo", 2).await;

    let mut sub = acme.client.subscribe(acme.results_all()).await.unwrap();
    acme.client.flush().await.unwrap();
    let n = 1000;
    let mut acks = Vec::new();
    for i in 0..n {
        let id = RequestId::new(format!("share-{i}")).unwrap();
        let ev = task_request(
            &id,
            "/tests",
            "echo",
            json!({"counter_key": format!("k{i}"), "sleep_ms": 2}),
            None,
        );
        let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
        h.insert(
            event::header::MSG_ID,
            subject::request_key(Some(&acme.tenant), &id).as_str(),
        );
        acks.push(
            acme.js
                .publish_with_headers(acme.requests_subject(), h, body)
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    let mut by_agent: HashMap<String, usize> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("results keep coming")
            .unwrap();
        assert!(
            seen.insert(msg.subject.to_string()),
            "duplicate result on {}",
            msg.subject
        );
        let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
        let data = event::data_json(&d.event).unwrap();
        *by_agent
            .entry(data["agent_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(by_agent.len(), 2, "{by_agent:?}");
    for (agent, count) in &by_agent {
        assert!(*count >= 100, "agent {agent} did only {count} of {n}");
    }
    let counts = subject_counts(&js, subject::RESULTS_STREAM, &acme.results_all()).await;
    assert_eq!(counts.len(), n);
    assert!(counts.values().all(|c| *c == 1));
    sys.stop().await;
}

/// A retryable failure is retried up to max_deliver - 1 attempts (the last delivery is reserved for recording, docs/reliability.md), then dead-lettered with a failed result; replay with the handler fixed succeeds.
#[tokio::test]
async fn retries_then_dlq_then_replay() {
    let mut sys = System::builder().engine(|_| {}).monitor().start().await;
    let js = sys.admin.clone();
    let acme = sys.tenant("acme").await;
    let echo = agentry_echo::Echo::default();
    start_echo(&mut sys, echo.clone());

    let out = submit(&acme, json!({"fail": "retryable", "counter_key": "never"})).await;
    assert_eq!(out.ty, "io.agentry.task.failed");
    assert_eq!(out.data["error"]["code"], "retries_exhausted");
    assert_eq!(out.data["attempts"], 4);

    let dlq = js.get_stream_no_info(subject::DLQ_STREAM).await.unwrap();
    let msg = dlq
        .get_last_raw_message_by_subject("agentry.dlq.task_failed")
        .await
        .unwrap();
    assert_eq!(
        msg.headers.get("Agentry-Dlq-Attempts").map(|v| v.as_str()),
        Some("4")
    );
    assert_eq!(
        msg.headers
            .get("Agentry-Dlq-Request-Id")
            .map(|v| v.as_str()),
        Some(out.request_id.as_str())
    );
    assert_eq!(
        msg.headers.get("Agentry-Dlq-Subject").map(|v| v.as_str()),
        Some("agentry.tasks.echo")
    );

    echo.healed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let replayed = std::process::Command::new(bin("agentry"))
        .envs(sys.server.env("admin"))
        .args(["--json", "dlq", "replay", &msg.sequence.to_string()])
        .output()
        .unwrap();
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&replayed.stdout).unwrap();
    let new_id = RequestId::new(v[0]["request_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        new_id.as_str(),
        format!("{}-r{}", out.request_id, msg.sequence)
    );
    // The replay keeps the tenant: its result is the tenant's to read.
    eventually(Duration::from_secs(20), "replayed result for acme", || {
        let (acme, new_id) = (acme.clone(), new_id.clone());
        async move { acme.fetch_result(&new_id).await.is_some() }
    })
    .await;
    let got = acme.fetch_result(&new_id).await.unwrap();
    assert!(got.is_success(), "{:?}", got.data);
    assert_eq!(
        event::ext_str(&got.event, "requestid").as_deref(),
        Some(new_id.as_str())
    );
    assert_eq!(echo.executions_of("never"), 1);
    // The audit event exists.
    let events = js.get_stream(subject::EVENTS_STREAM).await.unwrap();
    assert!(
        events
            .get_last_raw_message_by_subject("agentry.events.dlq.replayed")
            .await
            .is_ok()
    );
    // `agentry dlq list` shows it.
    let list = std::process::Command::new(bin("agentry"))
        .envs(sys.server.env("admin"))
        .args(["--json", "dlq", "list", "--reason", "task_failed"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    sys.stop().await;
}

/// A task taking 3x AckWait completes once, with no redelivery, thanks to progress acks.
#[tokio::test]
async fn long_task_with_progress_is_not_redelivered() {
    let mut sys = System::builder().engine(|_| {}).monitor().start().await;
    let js = sys.admin.clone();
    let acme = sys.tenant("acme").await;
    let echo = agentry_echo::Echo::default();
    start_echo(&mut sys, echo.clone());
    // test_settings(): task AckWait 5 s.
    let out = submit(&acme, json!({"sleep_ms": 15_000, "counter_key": "long"})).await;
    assert!(out.is_success());
    assert_eq!(out.data["attempts"], 1);
    assert_eq!(echo.executions_of("long"), 1);
    let st = js.get_stream_no_info(subject::TASKS_STREAM).await.unwrap();
    let info = st.consumer_info("cap-echo").await.unwrap();
    assert_eq!(info.num_redelivered, 0);
    sys.stop().await;
}
