//! Quarantine and release, and probing detected from the DLQ.

use super::*;

/// incident_response quarantines a source (KV entry, event) and releases it (entry deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_then_release() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, None);
    let mut events = admin.subscribe("agentry.events.source.>").await.unwrap();
    admin.flush().await.unwrap();
    let kv = js.get_key_value(subject::QUARANTINE_BUCKET).await.unwrap();
    let source = "/clients/mallory";

    let out = submit(&acme, "q-1", "/tests/operator", "incident_response", json!({"action": "quarantine", "source": source, "quarantine_minutes": 30, "note": "credential stuffing"})).await;
    let out = completed(&out, "incident_response");
    assert_eq!(out["event"], "contained", "{out:#}");
    assert_eq!(out["incident"]["id"], "inc-q-1");
    assert_eq!(
        out["quarantine"]["key"],
        quarantine::key(Some(&tenant("acme")), source)
    );

    let entry = quarantine::lookup(&kv, Some(&tenant("acme")), source)
        .await
        .unwrap()
        .expect("quarantined");
    assert_eq!(entry.source, source);
    assert_eq!(entry.reason, "credential stuffing");
    assert_eq!(entry.incident_id.as_deref(), Some("inc-q-1"));
    let left = entry.until.expect("until").timestamp_millis() - now_ms();
    assert!(
        left > 29 * MINUTE_MS && left <= 30 * MINUTE_MS,
        "{left} ms left"
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("quarantined event")
        .unwrap();
    assert_eq!(msg.subject.as_str(), "agentry.events.source.quarantined");

    let incidents = js.get_key_value(subject::INCIDENTS_BUCKET).await.unwrap();
    let stored: Value =
        serde_json::from_slice(&incidents.get("inc-q-1").await.unwrap().expect("incident"))
            .unwrap();
    assert_eq!(stored["status"], "contained");

    // The engine refuses the quarantined source...
    let refused = until_outcome(&acme, source, "io.agentry.request.rejected").await;
    assert_eq!(refused.data["reason"], "quarantined", "{:#}", refused.data);
    assert!(
        refused.data["detail"]
            .as_str()
            .unwrap()
            .contains("credential stuffing"),
        "{:#}",
        refused.data
    );

    let out = submit(
        &acme,
        "q-2",
        "/tests/operator",
        "incident_response",
        json!({"action": "release", "incident_id": "inc-q-1", "note": "false positive"}),
    )
    .await;
    let out = completed(&out, "incident_response");
    assert_eq!(out["event"], "released", "{out:#}");
    assert!(
        quarantine::lookup(&kv, Some(&tenant("acme")), source)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        kv.get(quarantine::key(Some(&tenant("acme")), source))
            .await
            .unwrap()
            .is_none(),
        "key deleted"
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("released event")
        .unwrap();
    assert_eq!(msg.subject.as_str(), "agentry.events.source.released");
    let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
    let data = event::data_json(&d.event).unwrap();
    assert_eq!(
        data,
        json!({"source": source, "reason": "false positive", "incident_id": "inc-q-1"})
    );

    // ...and accepts it again once released.
    let accepted = until_outcome(&acme, source, "io.agentry.task.completed").await;
    assert_eq!(accepted.data["output"]["summary"]["unparsed_lines"], 1);
    sys.stop().await;
}

/// Eight malformed requests from one source reach the DLQ and, within seconds, a probing incident is published and the source quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_is_detected_from_the_dlq() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let globex = nats.tenant("globex").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, None);
    let mut incidents = admin
        .subscribe(subject::events_for_type("io.agentry.security.incident"))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    // No need to wait for the monitor: its durable consumer `security-dlq`
    // exists since the topology was created and keeps what arrives meanwhile.
    for n in 0..8 {
        let mut h = async_nats::HeaderMap::new();
        h.insert("ce-specversion", "1.0");
        h.insert("ce-id", format!("probe{n}").as_str());
        h.insert("ce-source", "/attacker");
        h.insert("ce-type", "io.agentry.nope");
        h.insert("ce-datacontenttype", "application/json");
        globex
            .js
            .publish_with_headers(globex.requests_subject(), h, "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let data = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let msg = incidents.next().await.expect("subscription");
            let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
            let data = event::data_json(&d.event).unwrap();
            if data["kind"] == "probing" && data["source"] == "/attacker" {
                return data;
            }
        }
    })
    .await
    .expect("probing incident within 15 s");
    let v = agentry::schema::global()
        .event("io.agentry.security.incident")
        .unwrap();
    agentry::schema::check(v, &data).unwrap();
    assert!(
        data["evidence"]
            .as_array()
            .unwrap()
            .contains(&json!("unknown_type x5")),
        "{data:#}"
    );
    let incident_id = data["incident_id"].as_str().unwrap().to_owned();
    assert!(incident_id.starts_with("inc-probing-"), "{incident_id}");

    // Opened in KV and, by default, the source quarantined.
    let kv = js.get_key_value(subject::QUARANTINE_BUCKET).await.unwrap();
    let inc_kv = js.get_key_value(subject::INCIDENTS_BUCKET).await.unwrap();
    eventually(Duration::from_secs(10), "attacker quarantined", || {
        let (kv, t) = (kv.clone(), globex.tenant.clone());
        async move {
            quarantine::lookup(&kv, Some(&t), "/attacker")
                .await
                .ok()
                .flatten()
                .is_some()
        }
    })
    .await;
    let entry = quarantine::lookup(&kv, Some(&globex.tenant), "/attacker")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.incident_id.as_deref(), Some(incident_id.as_str()));
    let left = entry.until.unwrap().timestamp_millis() - now_ms();
    assert!(
        left > 14 * MINUTE_MS && left <= 15 * MINUTE_MS,
        "{left} ms left"
    );
    let stored: Value = serde_json::from_slice(
        &inc_kv
            .get(incident_id.as_str())
            .await
            .unwrap()
            .expect("incident"),
    )
    .unwrap();
    assert_eq!(stored["status"], "contained");
    assert_eq!(stored["source"], "/attacker");

    // The loop is closed: the engine now refuses even a valid request from it.
    let refused = until_outcome(&globex, "/attacker", "io.agentry.request.rejected").await;
    assert_eq!(refused.data["reason"], "quarantined", "{:#}", refused.data);
    sys.stop().await;
}
