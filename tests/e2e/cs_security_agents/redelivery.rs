//! Redelivered tasks applied once, Redis outage, flood detection.

use super::*;

/// Publishes the task the engine would route for `input`, as a second
/// delivery would arrive: same request id, a fresh JetStream message.
async fn publish_task(
    js: &jetstream::Context,
    id: &str,
    capability: &str,
    input: Value,
    copy: &str,
) {
    let rid = RequestId::new(id).unwrap();
    let mut ev = task_request(&rid, "/tests/redelivery", capability, input, None);
    // As the engine routes a request of tenant acme.
    let acme = tenant("acme");
    ev.set_extension(event::ext::TENANT, acme.as_str());
    ev.set_extension(event::ext::REPLYTO, subject::results_for(Some(&acme), &rid));
    let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
    h.insert(event::header::MSG_ID, format!("{id}-{copy}").as_str());
    js.publish_with_headers(format!("agentry.tasks.{capability}"), h, body)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Waits until the capability's consumer has nothing pending or unacknowledged.
async fn drained(js: &jetstream::Context, capability: &str) {
    let js = js.clone();
    let consumer = format!("cap-{capability}");
    eventually(
        Duration::from_secs(30),
        &format!("{consumer} drained"),
        || {
            let (js, consumer) = (js.clone(), consumer.clone());
            async move {
                let Ok(stream) = js.get_stream(subject::TASKS_STREAM).await else {
                    return false;
                };
                stream
                    .consumer_info(consumer)
                    .await
                    .map(|i| i.num_pending == 0 && i.num_ack_pending == 0)
                    .unwrap_or(false)
            }
        },
    )
    .await;
}

/// A task delivered twice changes its ticket and its incident once: the second delivery is recognised by its request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_tasks_are_applied_once() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let _acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, None);
    // Tasks are published as the engine publishes them (only it may).
    let engine_js = jetstream::new(nats.client("engine").await);
    let mut results = admin.subscribe("agentry.results.>").await.unwrap();
    admin.flush().await.unwrap();

    let esc =
        json!({"intent": "complaint", "sentiment": -0.8, "tier": "premium", "customer_id": "c-9"});
    let inc = json!({"action": "quarantine", "source": "/clients/twice", "quarantine_minutes": 10});
    for copy in ["a", "b"] {
        publish_task(&engine_js, "dup-esc", "escalation", esc.clone(), copy).await;
        publish_task(
            &engine_js,
            "dup-inc",
            "incident_response",
            inc.clone(),
            copy,
        )
        .await;
    }
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(30), results.next())
            .await
            .expect("result")
            .unwrap();
        let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
        assert_eq!(
            d.event.ty(),
            "io.agentry.task.completed",
            "{:?}",
            event::data_json(&d.event)
        );
    }
    drained(&js, "escalation").await;
    drained(&js, "incident_response").await;

    // One result each: the first wins.
    for id in ["dup-esc", "dup-inc"] {
        let subj = subject::results_for(
            Some(&tenant("acme")),
            &RequestId::new(id.to_string()).unwrap(),
        );
        let counts = agentry_tests::subject_counts(&js, subject::RESULTS_STREAM, &subj).await;
        assert_eq!(counts.get(&subj), Some(&1), "{subj}");
    }

    // 32 (sentiment) + 20 (complaint) + 14 (premium) = 66: p2, applied once (a repeat would add 10).
    let tickets = js.get_key_value(subject::TICKETS_BUCKET).await.unwrap();
    let ticket: Value = serde_json::from_slice(
        &tickets
            .get("acme.tkt-dup-esc")
            .await
            .unwrap()
            .expect("ticket"),
    )
    .unwrap();
    let history = ticket["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{ticket:#}");
    assert!(history.iter().all(|h| h["request_id"] == "dup-esc"));
    assert_eq!(ticket["priority"], "p2");

    let incidents = js.get_key_value(subject::INCIDENTS_BUCKET).await.unwrap();
    let incident: Value = serde_json::from_slice(
        &incidents
            .get("inc-dup-inc")
            .await
            .unwrap()
            .expect("incident"),
    )
    .unwrap();
    let actions: Vec<&str> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["action"].as_str())
        .collect();
    assert_eq!(actions, ["open", "quarantine"], "{incident:#}");
    let kv = js.get_key_value(subject::QUARANTINE_BUCKET).await.unwrap();
    assert_eq!(
        quarantine::lookup(&kv, Some(&tenant("acme")), "/clients/twice")
            .await
            .unwrap()
            .unwrap()
            .incident_id
            .as_deref(),
        Some("inc-dup-inc")
    );
    sys.stop().await;
}

/// With Redis configured but down, inquiries still complete and the conversation is remembered in process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_to_in_process_memory() {
    let nats = AuthServer::start();
    let mut redis = Redis::start();
    let (_admin, _js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, Some(&redis));
    let out = submit(
        &acme,
        "down-0",
        "/tests/outage",
        "customer_inquiry",
        json!({"message": "hello", "conversation_id": "conv-up"}),
    )
    .await;
    assert_eq!(completed(&out, "customer_inquiry")["turn"], 1);
    redis.kill();

    let first = submit(&acme, "down-1", "/tests/outage", "customer_inquiry", json!({"message": "I returned order #5550123 and still have no refund", "conversation_id": "conv-down"})).await;
    assert_eq!(completed(&first, "customer_inquiry")["turn"], 1);
    let follow = submit(
        &acme,
        "down-2",
        "/tests/outage",
        "customer_inquiry",
        json!({"message": "what about my order?", "conversation_id": "conv-down"}),
    )
    .await;
    let follow = completed(&follow, "customer_inquiry");
    assert_eq!(follow["entities"]["order_number"], "5550123", "{follow:#}");
    assert_eq!(follow["turn"], 2);
    sys.stop().await;
}

/// A scripted flood from one source (rate limit 100/min) raises a flood incident within seconds and quarantines the source, while another source is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_detected() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let globex = nats.tenant("globex").await;
    let mut sys = InProcess::new();
    let mut engine = nats.engine_config();
    engine.rate_limit = 100;
    sys.spawn(move |t| agentry_engine::run_with(engine, Observer::new(), t));
    for kind in ["echo", "security_monitor"] {
        let cfg = nats.agent_config(kind);
        sys.spawn(move |t| agentry_agent::run_with(cfg, Observer::new(), t));
    }
    let mut incidents = admin
        .subscribe(subject::events_for_type("io.agentry.security.incident"))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    let mut acks = Vec::new();
    for n in 0..300 {
        let id = RequestId::new(format!("flood{n}")).unwrap();
        let ev = task_request(&id, "/flooder", "echo", json!({"n": n}), None);
        let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
        h.insert(
            event::header::MSG_ID,
            subject::request_key(Some(&globex.tenant), &id).as_str(),
        );
        acks.push(
            globex
                .js
                .publish_with_headers(globex.requests_subject(), h, body)
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    let started = std::time::Instant::now();
    let data = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let msg = incidents.next().await.expect("subscription");
            let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
            let data = event::data_json(&d.event).unwrap();
            if data["kind"] == "flood" && data["source"] == "/flooder" {
                return data;
            }
        }
    })
    .await
    .expect("flood incident within 20 s");
    assert!(started.elapsed() < Duration::from_secs(20));
    agentry::schema::check(
        agentry::schema::global()
            .event("io.agentry.security.incident")
            .unwrap(),
        &data,
    )
    .unwrap();
    let kv = js.get_key_value(subject::QUARANTINE_BUCKET).await.unwrap();
    eventually(Duration::from_secs(10), "flooder quarantined", || {
        let (kv, t) = (kv.clone(), globex.tenant.clone());
        async move {
            quarantine::lookup(&kv, Some(&t), "/flooder")
                .await
                .ok()
                .flatten()
                .is_some()
        }
    })
    .await;
    // Another source of the same tenant still gets served.
    let ok = submit(&globex, "calm-1", "/calm", "echo", json!({})).await;
    assert_eq!(ok.ty, "io.agentry.task.completed");
    sys.stop().await;
}
