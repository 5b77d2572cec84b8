//! Tasks, steps, accepted-request facts and quarantine per tenant and principal.

use super::*;

/// Contract 2: the engine stamps `tenant` on every task and step from the subject, replacing a value the client forged (binary header or structured attribute); untenanted requests carry none.
#[tokio::test]
async fn tasks_and_steps_carry_the_tenant_of_the_subject() {
    let mut sys = System::builder().start().await;
    let admin_js = sys.admin.clone();
    agentry::workflow::store::put(&admin_js, ONE).await.unwrap();
    // No agent: the tasks stay queued where the test can read them.
    sys.engine(|_| {});
    let (_g, gjs) = as_tenant(&sys.server, "globex").await;
    let globex = tenant("globex");

    // Globex claims to be acme, in binary mode and in structured mode.
    let forged_bin = RequestId::new("forged-bin").unwrap();
    let ev = task_request(&forged_bin, "/billing", "echo", json!({"x": 1}), None);
    publish_with(
        &gjs,
        &globex,
        &ev,
        &[("ce-tenant", "acme"), ("CE-Tenant", "acme")],
    )
    .await;
    let forged_st = RequestId::new("forged-structured").unwrap();
    let mut ev = task_request(&forged_st, "/billing", "echo", json!({"x": 2}), None);
    ev.set_extension(ext::TENANT, "acme");
    client::publish_request_as(&gjs, Some(&globex), &ev, Mode::Structured)
        .await
        .unwrap();
    // A plain one, and a workflow whose step task must carry the tenant too.
    let plain = RequestId::new("plain").unwrap();
    let ev = task_request(&plain, "/billing", "echo", json!({"x": 3}), None);
    client::publish_request_as(&gjs, Some(&globex), &ev, Mode::Binary)
        .await
        .unwrap();
    let run = RequestId::new("wf-run").unwrap();
    let ev = workflow_request(&run, "/billing", "one", None, json!({"x": 4}));
    client::publish_request_as(&gjs, Some(&globex), &ev, Mode::Binary)
        .await
        .unwrap();
    // Untenanted (a service role on `agentry.requests`), with a forged tenant.
    let untenanted = RequestId::new("untenanted").unwrap();
    let mut ev = task_request(&untenanted, "/svc", "echo", json!({"x": 5}), None);
    ev.set_extension(ext::TENANT, "acme");
    client::publish_request_as(&admin_js, None, &ev, Mode::Binary)
        .await
        .unwrap();

    eventually(Duration::from_secs(20), "five tasks queued", || {
        let admin_js = admin_js.clone();
        async move { queued_tasks(&admin_js).await.len() == 5 }
    })
    .await;
    let tasks = queued_tasks(&admin_js).await;
    for id in ["forged-bin", "forged-structured", "plain", "wf-run-only-1"] {
        let t = &tasks[id];
        assert_eq!(
            event::ext_str(t, ext::TENANT).as_deref(),
            Some("globex"),
            "{id}"
        );
    }
    assert_eq!(event::ext_str(&tasks["untenanted"], ext::TENANT), None);
    assert_eq!(
        event::ext_str(&tasks["plain"], ext::REPLYTO).as_deref(),
        Some("agentry.results.globex.plain")
    );
    // The step task answers to the tenant's run.
    let step = &tasks["wf-run-only-1"];
    assert_eq!(
        event::ext_str(step, ext::REPLYTO).as_deref(),
        Some("agentry.steps.globex.wf-run")
    );
    assert_eq!(
        event::ext_str(step, ext::RUNID).as_deref(),
        Some("globex.wf-run")
    );
    sys.stop().await;
}

/// Contract 3: each accepted request yields one `io.agentry.request.accepted` fact on `agentry.events.request.accepted` naming the principal (tenant from the subject, source) and the capability or workflow; a rejected request yields none.
#[tokio::test]
async fn accepted_requests_publish_facts_per_principal() {
    let mut sys = System::builder().start().await;
    let admin_js = sys.admin.clone();
    let admin = sys.server.client("admin").await;
    agentry::workflow::store::put(&admin_js, ONE).await.unwrap();
    sys.engine(|_| {});
    let mut facts = admin
        .subscribe(subject::events_for_type(event::types::REQUEST_ACCEPTED))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    let (_a, ajs) = as_tenant(&sys.server, "acme").await;
    let acme = tenant("acme");
    let t1 = RequestId::new("fact-task").unwrap();
    let mut ev = task_request(&t1, "/billing", "echo", json!({}), None);
    ev.set_extension(ext::TENANT, "globex");
    client::publish_request_as(&ajs, Some(&acme), &ev, Mode::Binary)
        .await
        .unwrap();
    let bad = RequestId::new("fact-bad").unwrap();
    let ev = task_request(&bad, "/billing", "no_such_capability", json!({}), None);
    client::publish_request_as(&ajs, Some(&acme), &ev, Mode::Binary)
        .await
        .unwrap();
    let w1 = RequestId::new("fact-run").unwrap();
    let ev = workflow_request(&w1, "/ops", "one", None, json!({"x": 1}));
    client::publish_request_as(&ajs, Some(&acme), &ev, Mode::Structured)
        .await
        .unwrap();
    let u1 = RequestId::new("fact-untenanted").unwrap();
    let ev = task_request(&u1, "/svc", "echo", json!({}), None);
    client::publish_request_as(&admin_js, None, &ev, Mode::Binary)
        .await
        .unwrap();

    let mut got = HashMap::new();
    while got.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(20), facts.next())
            .await
            .expect("a request.accepted fact")
            .unwrap();
        let ev = agentry_tests::event_of(&msg);
        assert_eq!(ev.source().to_string(), "/engine");
        let data = event::data_json(&ev).unwrap();
        got.insert(data["request_id"].as_str().unwrap().to_owned(), data);
    }
    assert_eq!(
        got["fact-task"],
        json!({"request_id": "fact-task", "type": "io.agentry.task.requested",
               "source": "/billing", "tenant": "acme", "capability": "echo"})
    );
    assert_eq!(
        got["fact-run"],
        json!({"request_id": "fact-run", "type": "io.agentry.workflow.requested",
               "source": "/ops", "tenant": "acme", "workflow": "one"})
    );
    assert_eq!(
        got["fact-untenanted"],
        json!({"request_id": "fact-untenanted", "type": "io.agentry.task.requested",
               "source": "/svc", "capability": "echo"})
    );
    // The rejected request (unknown capability) has no fact.
    eventually(Duration::from_secs(20), "fact-bad rejected", || {
        let ajs = ajs.clone();
        let (acme, bad) = (acme.clone(), bad.clone());
        async move {
            client::fetch_result_as(&ajs, Some(&acme), &bad)
                .await
                .is_some_and(|o| o.ty == event::types::REQUEST_REJECTED)
        }
    })
    .await;
    let extra = tokio::time::timeout(Duration::from_millis(500), facts.next()).await;
    assert!(extra.is_err(), "unexpected fact: {extra:?}");
    // The facts are captured by AGENTRY_EVENTS (the security monitor's consumer reads them there).
    let st = admin_js.get_stream(subject::EVENTS_STREAM).await.unwrap();
    let m = st
        .get_last_raw_message_by_subject("agentry.events.request.accepted")
        .await
        .unwrap();
    assert!(!m.payload.is_empty());
    sys.stop().await;
}

/// Submits an echo task as tenant `t` from `source` and returns its outcome.
async fn echo_as(
    c: &async_nats::Client,
    js: &jetstream::Context,
    t: &Tenant,
    source: &str,
    input: serde_json::Value,
) -> client::Outcome {
    let id = RequestId::generate();
    let ev = task_request(&id, source, "echo", input, None);
    client::submit_as(c, js, Some(t), &ev, Mode::Binary, Duration::from_secs(30))
        .await
        .expect("a result")
}

/// Writes a quarantine entry for (tenant, source) as the security role does.
async fn quarantine(server: &AuthServer, t: &Tenant, source: &str) {
    let role = if server.has_user("agent_security_monitor") {
        "agent_security_monitor"
    } else {
        "agent"
    };
    let js = jetstream::new(server.client(role).await);
    let kv = js.get_key_value(subject::QUARANTINE_BUCKET).await.unwrap();
    let entry = agentry::quarantine::QuarantineEntry {
        tenant: Some(t.to_string()),
        source: source.to_owned(),
        reason: "probing (written by the test as the security role)".into(),
        incident_id: None,
        until: Some(chrono::Utc::now() + chrono::Duration::minutes(15)),
    };
    kv.put(
        agentry::quarantine::key(Some(t), source),
        serde_json::to_vec(&entry).unwrap().into(),
    )
    .await
    .unwrap();
}

/// Acceptance 1, with the counters in `redis` (or in process): the attacker
/// globex quarantined for `/billing` does not lock acme out of `/billing`;
/// globex rotating 50 sources hits the per-tenant total of 30.
async fn principal_quarantine_and_tenant_total(redis: Option<&Redis>) {
    let mut sys = System::builder().start().await;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    quarantine(&sys.server, &globex, "/billing").await;
    let redis_url = redis.map(|r| r.url.clone());
    sys.engine(|c| {
        c.rate_limit = 1000;
        c.rate_limit_tenant = 30;
        c.redis.url = redis_url;
    });
    sys.echo_agent(32);
    let (ac, ajs) = as_tenant(&sys.server, "acme").await;
    let (gc, gjs) = as_tenant(&sys.server, "globex").await;

    let a = echo_as(&ac, &ajs, &acme, "/billing", json!({"who": "acme"})).await;
    assert_eq!(a.ty, event::types::TASK_COMPLETED, "{:?}", a.data);
    let g = echo_as(&gc, &gjs, &globex, "/billing", json!({"who": "globex"})).await;
    assert_eq!(g.ty, event::types::REQUEST_REJECTED, "{:?}", g.data);
    assert_eq!(g.data["reason"], "quarantined");

    // 50 sources, one request each: the tenant's total admits 30 (the
    // quarantined request above was refused before counting).
    let outcomes = futures::future::join_all((0..50).map(|i| {
        let (gc, gjs, globex) = (gc.clone(), gjs.clone(), globex.clone());
        async move {
            echo_as(
                &gc,
                &gjs,
                &globex,
                &format!("/rotating/{i}"),
                json!({"i": i}),
            )
            .await
        }
    }))
    .await;
    let completed = outcomes.iter().filter(|o| o.is_success()).count();
    let limited: Vec<_> = outcomes
        .iter()
        .filter(|o| o.data["reason"] == "rate_limited")
        .collect();
    eprintln!(
        "rotating sources: {completed} completed, {} rate_limited",
        limited.len()
    );
    assert_eq!((completed, limited.len()), (30, 20));
    let detail = limited[0].data["detail"].as_str().unwrap();
    assert!(detail.contains("tenant globex"), "{detail}");
    // Acme's budget is its own.
    let a = echo_as(&ac, &ajs, &acme, "/rotating/0", json!({})).await;
    assert_eq!(a.ty, event::types::TASK_COMPLETED, "{:?}", a.data);
    if let Some(r) = redis {
        // The counters really live in Redis (fail-open would hide an outage).
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &r.port.to_string(),
                "HGET",
                "agentry:ratelimit:=globex",
                "c",
            ])
            .output()
            .expect("redis-cli");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30");
    }
    sys.stop().await;
}

/// Acceptance 1 (in-process counters): a quarantine for globex's `/billing` leaves acme's `/billing` served; globex rotating 50 sources is cut at its per-tenant total.
#[tokio::test]
async fn principal_is_tenant_and_source_in_process() {
    principal_quarantine_and_tenant_total(None).await;
}

/// Acceptance 1 with the counters in Redis (shared by replicas): the same outcome.
#[tokio::test]
async fn principal_is_tenant_and_source_in_redis() {
    let redis = Redis::start();
    principal_quarantine_and_tenant_total(Some(&redis)).await;
}
