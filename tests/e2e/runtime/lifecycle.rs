//! Agent process lifecycle (kill -9, SIGTERM drain) and routing rejections.

use super::*;

/// kill -9 of an agent holding in-flight tasks: every task completes elsewhere exactly once; the dead agent expires within 3 heartbeats with an expired event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_agent_tasks_complete_elsewhere_and_agent_expires() {
    let mut sys = System::builder().engine(|_| {}).monitor().start().await;
    let js = sys.admin.clone();
    let admin = sys.server.client("admin").await;
    let acme = sys.tenant("acme").await;
    let mut victim = ChildProc::spawn(
        "agentry-agent",
        &[ECHO_AGENT_ARGS, &["--capacity", "20"]].concat(),
        &sys.server.agent_env("echo"),
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
    start_echo(&mut sys, agentry_echo::Echo::default());

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
    let sys = System::builder().engine(|_| {}).monitor().start().await;
    let js = sys.admin.clone();
    let acme = sys.tenant("acme").await;
    let mut agent = ChildProc::echo_agent(&sys.server.agent_env("echo"));
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
    let sys = System::builder().engine(|_| {}).monitor().start().await;
    let js = sys.admin.clone();
    let acme = sys.tenant("acme").await;
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

/// SIGTERM with the NATS server gone: the engine, the monitor and an agent
/// each still exit, with status 0, within a bound (their publishes and the
/// final flush time out instead of waiting for a reconnect that never comes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_without_nats_still_exits() {
    let mut nats = AuthServer::start();
    let (_admin, js) = nats.setup().await;
    let engine = ChildProc::engine(&nats.env("engine"));
    let monitor = ChildProc::spawn(
        "agentry-monitor",
        &["--http-addr", "off"],
        &nats.env("monitor"),
    );
    let agent = ChildProc::echo_agent(&nats.agent_env("echo"));
    wait_for_agents(&js, "echo", 1).await;
    nats.kill();
    let exits = tokio::task::spawn_blocking(move || {
        let mut procs = [("engine", engine), ("monitor", monitor), ("agent", agent)];
        for (_, p) in &procs {
            p.signal("TERM");
        }
        // Each bounded part: a drain of in-flight work (none here), a few
        // publishes that time out (5 s each), the final flush (5 s).
        procs
            .iter_mut()
            .map(|(name, p)| (*name, p.wait_exit(Duration::from_secs(60))))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (name, status) in exits {
        let status = status.unwrap_or_else(|| panic!("{name} still running 60 s after SIGTERM"));
        assert_eq!(status.code(), Some(0), "{name}: {status}");
    }
}
