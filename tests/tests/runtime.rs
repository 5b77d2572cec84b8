//! Agent runtime, routing, registry and DLQ end to end (issue: agent runtime).
//! Under the production accounts: engine, monitor and agents as their roles,
//! requests from tenant `acme`, inspection as `admin`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed assertion

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

async fn submit(tenant: &TenantClient, input: serde_json::Value) -> client::Outcome {
    let id = RequestId::generate();
    let ev = task_request(&id, "/tests", "echo", input, None);
    tenant
        .submit(&ev, Duration::from_secs(30))
        .await
        .expect("result")
}

fn start_core(sys: &mut InProcess, nats: &AuthServer) {
    let cfg = nats.engine_config();
    sys.spawn(move |t| agentry_engine::run_with(cfg, Observer::new(), t));
    let cfg = nats.monitor_config();
    sys.spawn(move |t| agentry_monitor::run_with(cfg, Observer::new(), t));
}

fn start_echo(sys: &mut InProcess, nats: &AuthServer, echo: agentry_agent::agents::Echo) {
    let cfg = nats.agent_config("echo");
    sys.spawn(move |t| async move {
        let mut rc = agentry::agent::Config::new(cfg.nats.clone());
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
    let nats = AuthServer::start();
    let (_admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start_core(&mut sys, &nats);
    let echo = agentry_agent::agents::Echo::default();
    start_echo(&mut sys, &nats, echo.clone());

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
    let nats = AuthServer::start();
    let (_admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start_core(&mut sys, &nats);
    let a = agentry_agent::agents::Echo::default();
    let b = agentry_agent::agents::Echo::default();
    start_echo(&mut sys, &nats, a.clone());
    start_echo(&mut sys, &nats, b.clone());
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
    let nats = AuthServer::start();
    let (_admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start_core(&mut sys, &nats);
    let echo = agentry_agent::agents::Echo::default();
    start_echo(&mut sys, &nats, echo.clone());

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
        .envs(nats.env("admin"))
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
        .envs(nats.env("admin"))
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
    let nats = AuthServer::start();
    let (_admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start_core(&mut sys, &nats);
    let echo = agentry_agent::agents::Echo::default();
    start_echo(&mut sys, &nats, echo.clone());
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

/// Every running agent answers $SRV.PING; $SRV.STATS counts endpoint requests; A2A asks by id and delegates by capability across processes; a missing target is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_api_and_a2a() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start_core(&mut sys, &nats);
    start_echo(&mut sys, &nats, agentry_agent::agents::Echo::default());
    let _child = ChildProc::spawn(
        "agentry-agent",
        &[
            "--agents",
            "echo",
            "--http-addr",
            "off",
            "--heartbeat",
            "1s",
        ],
        &nats.agent_env("echo"),
    );
    let reg = wait_for_agents(&js, "echo", 2).await;
    let agents = reg.find("echo").await.unwrap();

    // $SRV.PING from the operator (admin): every agent answers.
    let inbox = admin.new_inbox();
    let mut replies = admin.subscribe(inbox.clone()).await.unwrap();
    admin
        .publish_with_reply("$SRV.PING", inbox.clone(), "".into())
        .await
        .unwrap();
    let mut ids = std::collections::HashSet::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(700), replies.next()).await {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["type"], "io.nats.micro.v1.ping_response");
        assert_eq!(v["name"], "echo");
        ids.insert(
            v["metadata"]["agent_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    for a in &agents {
        assert!(
            ids.contains(&a.id),
            "{} did not answer $SRV.PING ({ids:?})",
            a.id
        );
    }

    // A2A: ask the *other* agent by id (across processes) and delegate by capability.
    let (first, second) = (&agents[0], &agents[1]);
    let ask = submit(
        &acme,
        json!({"call": {"ask": second.id, "input": {"hi": 1}}}),
    )
    .await;
    assert!(ask.is_success(), "{:?}", ask.data);
    assert_eq!(ask.data["output"]["called"]["agent_id"], second.id.as_str());
    let del = submit(
        &acme,
        json!({"call": {"delegate": "echo", "input": {"nested": true}}}),
    )
    .await;
    assert!(del.is_success(), "{:?}", del.data);
    assert_eq!(del.data["output"]["called"]["echo"]["nested"], true);
    let missing = submit(
        &acme,
        json!({"call": {"ask": "echo-000000", "input": {}, "timeout_ms": 500}}),
    )
    .await;
    assert_eq!(missing.ty, "io.agentry.task.failed");
    let msg = missing.data["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("no agent answers on agentry.a2a.echo-000000")
            || msg.contains("did not answer"),
        "{msg}"
    );
    let slow = submit(
        &acme,
        json!({"call": {"ask": first.id, "input": {"sleep_ms": 3000}, "timeout_ms": 300}}),
    )
    .await;
    assert_eq!(slow.ty, "io.agentry.task.failed");
    assert!(
        slow.data["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer within"),
        "{:?}",
        slow.data
    );

    // $SRV.STATS counts requests on the a2a endpoint of the agent we asked
    // (the slow ask is counted when its late reply is sent).
    eventually(
        Duration::from_secs(10),
        "STATS counts 2 a2a requests",
        || {
            let admin = admin.clone();
            async move {
                let inbox = admin.new_inbox();
                let mut replies = admin.subscribe(inbox.clone()).await.unwrap();
                admin
                    .publish_with_reply("$SRV.STATS.echo", inbox, "".into())
                    .await
                    .unwrap();
                let mut total = 0u64;
                while let Ok(Some(m)) =
                    tokio::time::timeout(Duration::from_millis(700), replies.next()).await
                {
                    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                    for ep in v["endpoints"].as_array().cloned().unwrap_or_default() {
                        total += ep["num_requests"].as_u64().unwrap_or(0);
                    }
                }
                total >= 2
            }
        },
    )
    .await;
    sys.stop().await;
}

/// kill -9 of an agent holding in-flight tasks: every task completes elsewhere exactly once; the dead agent expires within 3 heartbeats with an expired event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_agent_tasks_complete_elsewhere_and_agent_expires() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start_core(&mut sys, &nats);
    let mut victim = ChildProc::spawn(
        "agentry-agent",
        &[
            "--agents",
            "echo",
            "--http-addr",
            "off",
            "--heartbeat",
            "1s",
            "--capacity",
            "20",
        ],
        &nats.agent_env("echo"),
    );
    let reg = wait_for_agents(&js, "echo", 1).await;
    let victim_id = reg.find("echo").await.unwrap()[0].id.clone();
    let mut expired = admin
        .subscribe(format!("agentry.registry.{victim_id}"))
        .await
        .unwrap();

    let mut sub = acme.client.subscribe(acme.results_all()).await.unwrap();
    for i in 0..10 {
        let id = RequestId::new(format!("k9-{i}")).unwrap();
        let ev = task_request(&id, "/tests", "echo", json!({"sleep_ms": 2000}), None);
        acme.publish(&ev, Mode::Binary).await.unwrap();
    }
    // Wait until the victim holds them.
    eventually(
        Duration::from_secs(10),
        "victim has tasks in flight",
        || {
            let js = js.clone();
            async move {
                let st = js.get_stream_no_info(subject::TASKS_STREAM).await.unwrap();
                st.consumer_info("cap-echo")
                    .await
                    .map(|i| i.num_ack_pending >= 10)
                    .unwrap_or(false)
            }
        },
    )
    .await;
    victim.kill9();
    start_echo(&mut sys, &nats, agentry_agent::agents::Echo::default());

    let mut seen = HashMap::new();
    while seen.len() < 10 {
        let msg = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("results")
            .unwrap();
        let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
        let data = event::data_json(&d.event).unwrap();
        assert_eq!(
            cloudevents::AttributesReader::ty(&d.event),
            "io.agentry.task.completed"
        );
        assert_ne!(data["agent_id"], victim_id.as_str());
        *seen.entry(msg.subject.to_string()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|c| *c == 1));
    let counts = subject_counts(&js, subject::RESULTS_STREAM, &acme.results_all()).await;
    assert!(counts.values().all(|c| *c == 1) && counts.len() == 10);

    // Expired within 3 heartbeat intervals (plus the sweep period), with an event.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    let mut got_event = false;
    while std::time::Instant::now() < deadline && !got_event {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), expired.next()).await
        {
            got_event = m
                .headers
                .as_ref()
                .and_then(|h| h.get("ce-type"))
                .map(|v| v.as_str() == "io.agentry.agent.expired")
                .unwrap_or(false);
        }
    }
    assert!(got_event, "no io.agentry.agent.expired event");
    let rec = reg.get(&victim_id).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Expired);
    sys.stop().await;
}

/// SIGTERM: the agent finishes in-flight work, deregisters, exits 0, and nothing is redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_deregisters() {
    let nats = AuthServer::start();
    let (_admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start_core(&mut sys, &nats);
    let mut agent = ChildProc::spawn(
        "agentry-agent",
        &[
            "--agents",
            "echo",
            "--http-addr",
            "off",
            "--heartbeat",
            "1s",
        ],
        &nats.agent_env("echo"),
    );
    let reg = wait_for_agents(&js, "echo", 1).await;
    let id = reg.find("echo").await.unwrap()[0].id.clone();
    let mut sub = acme.client.subscribe(acme.results_all()).await.unwrap();
    for i in 0..5 {
        let rid = RequestId::new(format!("term-{i}")).unwrap();
        acme.publish(
            &task_request(&rid, "/tests", "echo", json!({"sleep_ms": 1500}), None),
            Mode::Binary,
        )
        .await
        .unwrap();
    }
    eventually(Duration::from_secs(10), "tasks in flight", || {
        let js = js.clone();
        async move {
            let st = js.get_stream_no_info(subject::TASKS_STREAM).await.unwrap();
            st.consumer_info("cap-echo")
                .await
                .map(|i| i.num_ack_pending >= 5)
                .unwrap_or(false)
        }
    })
    .await;
    agent.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = agent.wait_exit(Duration::from_secs(20));
        (s, agent)
    })
    .await
    .unwrap();
    assert_eq!(status.0.and_then(|s| s.code()), Some(0));
    for _ in 0..5 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("result")
            .unwrap();
        let d = event::decode(m.headers.as_ref(), &m.payload, &Limits::default()).unwrap();
        assert_eq!(
            cloudevents::AttributesReader::ty(&d.event),
            "io.agentry.task.completed"
        );
    }
    let st = js.get_stream_no_info(subject::TASKS_STREAM).await.unwrap();
    let info = st.consumer_info("cap-echo").await.unwrap();
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(info.num_ack_pending, 0);
    eventually(Duration::from_secs(5), "deregistered", || {
        let reg = reg.clone();
        let id = id.clone();
        async move {
            reg.get(&id)
                .await
                .ok()
                .flatten()
                .map(|r| r.status == Status::Deregistered)
                .unwrap_or(false)
        }
    })
    .await;
    sys.stop().await;
}

/// Unknown capabilities are rejected; invalid events are rejected and dead-lettered without crashing the engine.
#[tokio::test]
async fn routing_rejections() {
    let nats = AuthServer::start();
    let (_admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start_core(&mut sys, &nats);
    let id = RequestId::new("nocap-1").unwrap();
    let out = acme
        .submit(
            &task_request(&id, "/tests", "no_such_cap", json!({}), None),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(out.ty, "io.agentry.request.rejected");
    assert_eq!(out.data["reason"], "unknown_capability");
    // A known capability with zero live agents stays queued (scale from zero).
    let id = RequestId::new("queued-1").unwrap();
    acme.publish(
        &task_request(&id, "/tests", "plan_tasks", json!({"tasks": []}), None),
        Mode::Binary,
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "task queued", || {
        let js = js.clone();
        async move {
            let st = js.get_stream_no_info(subject::TASKS_STREAM).await.unwrap();
            st.consumer_info("cap-plan_tasks")
                .await
                .map(|i| i.num_pending == 1)
                .unwrap_or(false)
        }
    })
    .await;
    // Garbage: rejected with its reason, in the DLQ.
    let mut h = async_nats::HeaderMap::new();
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", "bad-1");
    h.insert("ce-source", "/tests");
    h.insert("ce-type", "io.agentry.nope");
    acme.js
        .publish_with_headers(acme.requests_subject(), h, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let bad = RequestId::new("bad-1").unwrap();
    eventually(Duration::from_secs(10), "rejection stored", || {
        let (acme, bad) = (acme.clone(), bad.clone());
        async move { acme.fetch_result(&bad).await.is_some() }
    })
    .await;
    let r = acme.fetch_result(&bad).await.unwrap();
    assert_eq!(r.data["reason"], "unknown_type");
    let dlq = js.get_stream_no_info(subject::DLQ_STREAM).await.unwrap();
    assert!(
        dlq.get_last_raw_message_by_subject("agentry.dlq.unknown_type")
            .await
            .is_ok()
    );
    sys.stop().await;
}
