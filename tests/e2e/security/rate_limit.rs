//! Rate limiting (Redis, Redis down, in-process) and quarantine.

use super::*;

/// Publishes `n` echo requests from `source` as acme at once, then collects
/// their results: (completed, rejected `rate_limited` with their details).
async fn burst(
    c: &async_nats::Client,
    js: &jetstream::Context,
    source: &str,
    prefix: &str,
    n: usize,
) -> (usize, Vec<String>) {
    let mut sub = c.subscribe("agentry.results.acme.>").await.unwrap();
    let mut acks = Vec::new();
    for i in 0..n {
        let id = RequestId::new(format!("{prefix}-{i}")).unwrap();
        let ev = task_request(&id, source, "echo", json!({"i": i}), None);
        let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
        h.insert(
            event::header::MSG_ID,
            subject::request_key(Some(&acme()), &id).as_str(),
        );
        acks.push(
            js.publish_with_headers(subject::requests_for(Some(&acme())), h, body)
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    let (mut completed, mut limited) = (0, Vec::new());
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{prefix}: only {} of {n} results", seen.len()))
            .unwrap();
        if !msg
            .subject
            .as_str()
            .starts_with(&format!("agentry.results.acme.{prefix}-"))
        {
            continue;
        }
        if !seen.insert(msg.subject.to_string()) {
            continue;
        }
        let ev = agentry_tests::event_of(&msg);
        let data = event::data_json(&ev).unwrap();
        match ev.ty() {
            "io.agentry.task.completed" => completed += 1,
            "io.agentry.request.rejected" if data["reason"] == "rate_limited" => {
                limited.push(data["detail"].as_str().unwrap_or_default().to_owned())
            }
            other => panic!("{prefix}: unexpected {other} {data}"),
        }
    }
    (completed, limited)
}

fn rate_limited_to_100(
    redis: Option<&Redis>,
    fail: agentry::ratelimit::FailMode,
) -> impl FnOnce(&mut agentry_engine::Config) {
    let url = redis.map(|r| r.url.clone());
    move |cfg| {
        cfg.rate_limit = 100;
        cfg.rate_limit_fail = fail;
        cfg.redis.url = url;
    }
}

/// Redis, 100/min: a burst of 150 from one source yields exactly 100 accepted and 50 `rate_limited`, another source is unaffected; with Redis killed and fail-open, the per-process limiter admits and the system keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_redis_fail_open() {
    let mut redis = Redis::start();
    let server = AuthServer::start();
    server.setup().await;
    let sys = Stack::start(
        &server,
        rate_limited_to_100(Some(&redis), agentry::ratelimit::FailMode::Open),
        false,
    );
    let (c, js) = tenant_client(&server, "acme").await;

    let (ok, limited) = burst(&c, &js, "/burst", "open-a", 150).await;
    assert_eq!((ok, limited.len()), (100, 50), "{limited:?}");
    assert!(
        limited[0].contains("exceeded 100 requests per minute"),
        "{}",
        limited[0]
    );
    let (ok, limited) = burst(&c, &js, "/other", "open-b", 30).await;
    assert_eq!((ok, limited.len()), (30, 0));
    // The counters live in Redis (shared by every engine replica).
    let keys = redis_cli(&redis, &["--scan", "--pattern", "agentry:ratelimit:*"]);
    assert!(keys.contains("agentry:ratelimit:acme:/burst"), "{keys}");

    redis.kill();
    // Fail-open: the engine answers promptly from its own counters (fresh for /burst).
    let started = Instant::now();
    let (ok, limited) = burst(&c, &js, "/burst", "open-c", 20).await;
    assert_eq!((ok, limited.len()), (20, 0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // ... and still limits: the local window holds 100.
    let (ok, limited) = burst(&c, &js, "/burst", "open-d", 90).await;
    assert_eq!((ok, limited.len()), (80, 10));
    sys.stop().await;
}

/// Redis, 100/min, fail-closed: with Redis killed every request is refused `rate_limited` naming the outage, promptly; after Redis restarts requests are admitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_redis_fail_closed() {
    let mut redis = Redis::start();
    let server = AuthServer::start();
    server.setup().await;
    let sys = Stack::start(
        &server,
        rate_limited_to_100(Some(&redis), agentry::ratelimit::FailMode::Closed),
        false,
    );
    let (c, js) = tenant_client(&server, "acme").await;

    let (ok, limited) = burst(&c, &js, "/burst", "closed-a", 150).await;
    assert_eq!((ok, limited.len()), (100, 50));
    let (ok, limited) = burst(&c, &js, "/other", "closed-b", 30).await;
    assert_eq!((ok, limited.len()), (30, 0));

    redis.kill();
    let started = Instant::now();
    let (ok, limited) = burst(&c, &js, "/other", "closed-c", 20).await;
    assert_eq!((ok, limited.len()), (0, 20));
    assert!(
        limited
            .iter()
            .all(|d| d.contains("failing closed") && d.contains("Redis")),
        "{limited:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refusals took {:?}",
        started.elapsed()
    );

    redis.restart();
    let attempt = std::sync::atomic::AtomicUsize::new(0);
    eventually(
        Duration::from_secs(20),
        "requests admitted after Redis came back",
        || async {
            let n = attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            burst(&c, &js, "/other", &format!("closed-d{n}"), 1).await.0 == 1
        },
    )
    .await;
    sys.stop().await;
}

/// Without Redis the in-process limiter applies the same limit, and a per-source override wins over the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_in_process_with_override() {
    let server = AuthServer::start();
    server.setup().await;
    let sys = Stack::start(
        &server,
        |cfg| {
            cfg.rate_limit = 100;
            cfg.rate_limit_overrides = "/tiny=5,/vip=0".parse().unwrap();
        },
        false,
    );
    let (c, js) = tenant_client(&server, "acme").await;
    let (ok, limited) = burst(&c, &js, "/burst", "local-a", 150).await;
    assert_eq!((ok, limited.len()), (100, 50));
    let (ok, limited) = burst(&c, &js, "/tiny", "local-b", 12).await;
    assert_eq!((ok, limited.len()), (5, 7));
    let (ok, limited) = burst(&c, &js, "/vip", "local-c", 150).await;
    assert_eq!((ok, limited.len()), (150, 0));
    sys.stop().await;
}

fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A source quarantined in KV agentry-quarantine (written by the agent_security_monitor user, as the security monitor does) is rejected `quarantined`, with a result and a DLQ copy, while other sources pass; an expired quarantine and a released source are admitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_source_is_rejected() {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    let sys = Stack::start(&server, |_| {}, false);
    let (c, js) = tenant_client(&server, "acme").await;
    // Only the security monitor's user may write the quarantine.
    let agent = jetstream::new(server.client("agent_security_monitor").await);
    let kv = agent
        .get_key_value(subject::QUARANTINE_BUCKET)
        .await
        .unwrap();
    let entry = |source: &str, until: Option<chrono::DateTime<chrono::Utc>>| {
        serde_json::to_vec(&agentry::quarantine::QuarantineEntry {
            tenant: Some("acme".into()),
            source: source.to_owned(),
            reason: "probing".into(),
            incident_id: Some("inc-1".into()),
            until,
        })
        .unwrap()
    };
    kv.put(
        agentry::quarantine::key(Some(&acme()), "/evil"),
        entry("/evil", None).into(),
    )
    .await
    .unwrap();
    kv.put(
        agentry::quarantine::key(Some(&acme()), "/was-evil"),
        entry(
            "/was-evil",
            Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
        )
        .into(),
    )
    .await
    .unwrap();

    let submit = |source: &'static str| {
        let (c, js) = (c.clone(), js.clone());
        async move {
            let id = RequestId::generate();
            let ev = task_request(&id, source, "echo", json!({}), None);
            client::submit_as(
                &c,
                &js,
                Some(&acme()),
                &ev,
                Mode::Binary,
                Duration::from_secs(20),
            )
            .await
            .unwrap()
        }
    };
    let out = eventually_some(Duration::from_secs(15), "/evil rejected", || async {
        let out = submit("/evil").await;
        (out.ty == "io.agentry.request.rejected").then_some(out)
    })
    .await;
    assert_eq!(out.data["reason"], "quarantined", "{:?}", out.data);
    assert!(out.data["detail"].as_str().unwrap().contains("probing"));
    assert!(submit("/fine").await.is_success());
    assert!(
        submit("/was-evil").await.is_success(),
        "an expired quarantine still refuses"
    );
    let dlq = admin_js.get_stream(subject::DLQ_STREAM).await.unwrap();
    let m = dlq
        .get_last_raw_message_by_subject("agentry.dlq.quarantined")
        .await
        .unwrap();
    assert_eq!(
        m.headers.get(event::header::DLQ_SOURCE).map(|v| v.as_str()),
        Some("/evil")
    );

    kv.delete(agentry::quarantine::key(Some(&acme()), "/evil"))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "a released source is admitted again",
        || async { submit("/evil").await.is_success() },
    )
    .await;
    sys.stop().await;
}
