//! Agents under the production accounts (`nats/accounts.conf`): every
//! component connects as its own user (engine, monitor, one NATS user per
//! agent kind), clients as tenants (`client_acme`; `client_globex` is the
//! attacking tenant). Delegation and A2A, the security monitor's inputs,
//! incidents and quarantine per principal, tenant-scoped agent data, DLQ
//! replay and the agent-metrics hook.

use std::time::Duration;

use agentry::client::{self, task_request};
use agentry::event::{self, Limits, Mode};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::quarantine;
use agentry::subject::{self, Tenant};
use agentry_tests::auth::AuthServer;
use agentry_tests::*;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};

fn tenant(t: &str) -> Tenant {
    Tenant::new(t).unwrap()
}

/// Engine, monitor and the agents `kinds`, each kind connected as
/// `agent_<kind>` (the agent binary's per-kind users), all in this process.
struct System {
    procs: InProcess,
    agents_obs: Observer,
    _fixture: Option<agentry_weather_fixture::Server>,
}

impl System {
    async fn start(
        server: &AuthServer,
        kinds: &str,
        tune: impl FnOnce(&mut agentry_engine::Config, &mut agentry_agent::Config),
    ) -> Self {
        let mut procs = InProcess::new();
        let mut engine = engine_config(&server.url);
        engine.nats = server.nats("engine");
        let mut monitor = monitor_config(&server.url);
        monitor.nats = server.nats("monitor");
        let mut agents = agent_config(&server.url, kinds);
        // The shared user is the generic one: a kind without its own user
        // would get only the base rights, so the tests fail if the per-kind
        // selection does not happen.
        agents.nats = server.nats("agent");
        for kind in agentry_agent::select(kinds).unwrap() {
            agents
                .kind_nats
                .insert(kind.clone(), server.nats(&format!("agent_{kind}")));
        }
        let fixture = if kinds.contains("weather") {
            let f = agentry_weather_fixture::Server::start().await.unwrap();
            agents.builtin.weather_base_url = Some(f.base_url());
            Some(f)
        } else {
            None
        };
        tune(&mut engine, &mut agents);
        procs.spawn(move |t| agentry_engine::run_with(engine, Observer::new(), t));
        procs.spawn(move |t| agentry_monitor::run_with(monitor, Observer::new(), t));
        let agents_obs = Observer::new();
        let obs = agents_obs.clone();
        procs.spawn(move |t| agentry_agent::run_with(agents, obs, t));
        Self {
            procs,
            agents_obs,
            _fixture: fixture,
        }
    }
}

/// A tenant client: its connection and JetStream context.
async fn tenant_client(server: &AuthServer, t: &str) -> (async_nats::Client, jetstream::Context) {
    let c = server.client(&format!("client_{t}")).await;
    let js = jetstream::new(c.clone());
    (c, js)
}

async fn submit_as(
    c: &async_nats::Client,
    js: &jetstream::Context,
    t: &str,
    source: &str,
    capability: &str,
    input: Value,
) -> client::Outcome {
    let id = RequestId::generate();
    let ev = task_request(&id, source, capability, input, None);
    client::submit_as(
        c,
        js,
        Some(&tenant(t)),
        &ev,
        Mode::Binary,
        Duration::from_secs(40),
    )
    .await
    .expect("result")
}

/// Acceptance 3: `plan_tasks` with a city, submitted by acme, completes under
/// auth; the planner (user agent_planning) delegates `weather_forecast` on
/// acme's request subject and waits on acme's result subject; the weather
/// agent (agent_weather) answers from the offline fixture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_tasks_with_a_city_delegates_weather_within_the_tenant() {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    let sys = System::start(&server, "planning,weather", |_, _| {}).await;
    let (c, js) = tenant_client(&server, "acme").await;
    let out = submit_as(
        &c,
        &js,
        "acme",
        "/planner-ui",
        "plan_tasks",
        json!({
            "start": "2025-06-02T07:00:00+02:00",
            "tasks": [
                {"id": "deliver", "name": "Deliver", "duration_h": 2},
                {"id": "dig", "name": "Dig", "duration_h": 3, "depends_on": ["deliver"], "outdoor": true}
            ],
            "weather": {"city": "Berlin", "country_code": "DE", "max_precipitation_probability": 40}
        }),
    )
    .await;
    assert_eq!(out.ty, "io.agentry.task.completed", "{:#}", out.data);
    let weather = &out.data["output"]["weather"];
    assert!(weather.is_object(), "no weather in {:#}", out.data);
    assert!(
        weather.to_string().contains("Berlin"),
        "weather not for Berlin: {weather:#}"
    );
    // The child counted against acme: its result is on acme's subject too
    // (a delegation retried under load adds another child there), and
    // nothing went to the untenanted or another tenant's subjects.
    let counts = subject_counts(&admin_js, subject::RESULTS_STREAM, ">").await;
    let acme: usize = counts
        .iter()
        .filter(|(s, _)| s.starts_with("agentry.results.acme."))
        .map(|(_, n)| n)
        .sum();
    assert!(
        acme >= 2,
        "parent and delegated child on acme's subject: {counts:?}"
    );
    assert_eq!(acme, counts.values().sum::<usize>(), "{counts:?}");
    sys.procs.stop().await;
}

/// A2A `ask` under auth: an echo agent connected as agent_echo asks another
/// echo agent connected as the generic `agent` user; the answer reaches the
/// asker's own inbox (`_INBOX.agent_echo`) through `allow_responses`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_ask_is_answered_across_agent_users() {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    let mut sys = System::start(&server, "echo", |_, _| {}).await;
    // The answering agent, as the generic user, serving a capability of its own.
    let nats = server.nats("agent");
    sys.procs.spawn(move |t| async move {
        let mut rc = agentry::agent::Config::new(nats);
        rc.heartbeat = Duration::from_secs(1);
        rc.topology = test_settings();
        let echo = agentry_echo::Echo::default();
        agentry::agent::run(vec![std::sync::Arc::new(echo)], rc, Observer::new(), t).await
    });
    let reg = wait_for_agents(&admin_js, "echo", 2).await;
    let targets = reg.find("echo").await.unwrap();
    let (c, js) = tenant_client(&server, "acme").await;
    for target in targets {
        let out = submit_as(
            &c,
            &js,
            "acme",
            "/a2a-drill",
            "echo",
            json!({"call": {"ask": target.id.as_str(), "input": {"ping": target.id.as_str()}}}),
        )
        .await;
        assert_eq!(out.ty, "io.agentry.task.completed", "{:#}", out.data);
        let called = &out.data["output"]["called"];
        assert_eq!(called["agent_id"], target.id.as_str(), "{:#}", out.data);
        assert_eq!(called["echo"]["ping"], target.id.as_str(), "{:#}", out.data);
    }
    sys.procs.stop().await;
}

/// Waits for `io.agentry.security.incident` of `kind` about `source`.
async fn incident(sub: &mut async_nats::Subscriber, kind: &str, source: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let msg = sub.next().await.expect("subscription");
            let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
            let data = event::data_json(&d.event).unwrap();
            if data["kind"] == kind && data["source"] == source {
                return data;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} incident about {source} within 30 s"))
}

/// After globex's principal (globex, /shared) is quarantined: acme with the
/// same source completes, globex with it is refused `quarantined`.
async fn only_globex_is_quarantined(server: &AuthServer, admin_js: &jetstream::Context) {
    let kv = admin_js
        .get_key_value(subject::QUARANTINE_BUCKET)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "globex /shared quarantined",
        || {
            let kv = kv.clone();
            async move {
                quarantine::lookup(&kv, Some(&tenant("globex")), "/shared")
                    .await
                    .ok()
                    .flatten()
                    .is_some()
            }
        },
    )
    .await;
    let entry = quarantine::lookup(&kv, Some(&tenant("globex")), "/shared")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.tenant.as_deref(), Some("globex"));
    assert!(
        quarantine::lookup(&kv, Some(&tenant("acme")), "/shared")
            .await
            .unwrap()
            .is_none()
    );
    let (ac, ajs) = tenant_client(server, "acme").await;
    let ok = submit_as(&ac, &ajs, "acme", "/shared", "echo", json!({"who": "acme"})).await;
    assert_eq!(ok.ty, "io.agentry.task.completed", "{:#}", ok.data);
    let (gc, gjs) = tenant_client(server, "globex").await;
    let refused = submit_as(&gc, &gjs, "globex", "/shared", "echo", json!({})).await;
    assert_eq!(refused.data["reason"], "quarantined", "{:#}", refused.data);
}

/// The incident counter of the agent-metrics hook, on the agents' /metrics.
fn incidents_counted(obs: &Observer, kind: &str, t: &str) -> bool {
    obs.metrics_text().lines().any(|l| {
        l.starts_with("agentry_security_incidents_total{")
            && l.contains(&format!("kind=\"{kind}\""))
            && l.contains(&format!("tenant=\"{t}\""))
            && l.contains("component=\"agent\"")
            && !l.ends_with(" 0")
    })
}

/// Acceptance 4, probing: globex sends a burst of invalid requests from
/// `/shared`; the security monitor (agent_security_monitor, reading
/// security-dlq) raises a probing incident for the principal (globex,
/// /shared), stores it with the tenant, counts it in
/// `agentry_security_incidents_total` and quarantines that principal only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_under_auth_quarantines_only_the_probing_principal() {
    let server = AuthServer::start();
    let (admin, admin_js) = server.setup().await;
    let sys = System::start(&server, "echo,security_monitor", |_, _| {}).await;
    let mut incidents = admin
        .subscribe(subject::events_for_type("io.agentry.security.incident"))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    let (_gc, gjs) = tenant_client(&server, "globex").await;
    for n in 0..8 {
        let mut h = async_nats::HeaderMap::new();
        h.insert("ce-specversion", "1.0");
        h.insert("ce-id", format!("probe{n}").as_str());
        h.insert("ce-source", "/shared");
        h.insert("ce-type", "io.agentry.nope");
        h.insert("ce-datacontenttype", "application/json");
        gjs.publish_with_headers(
            subject::requests_for(Some(&tenant("globex"))),
            h,
            "{}".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let data = incident(&mut incidents, "probing", "/shared").await;
    assert_eq!(data["tenant"], "globex", "{data:#}");
    let id = data["incident_id"].as_str().unwrap().to_owned();
    let inc_kv = admin_js
        .get_key_value(subject::INCIDENTS_BUCKET)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "incident stored", || {
        let kv = inc_kv.clone();
        let id = id.clone();
        async move { kv.get(id.as_str()).await.ok().flatten().is_some() }
    })
    .await;
    let stored: Value =
        serde_json::from_slice(&inc_kv.get(id.as_str()).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["tenant"], "globex", "{stored:#}");
    assert_eq!(stored["source"], "/shared");
    only_globex_is_quarantined(&server, &admin_js).await;
    assert!(
        incidents_counted(&sys.agents_obs, "probing", "globex"),
        "{}",
        sys.agents_obs.metrics_text()
    );
    sys.procs.stop().await;
}

/// Acceptance 4, flood: globex sends more accepted requests from `/shared`
/// than the flood threshold; the monitor counts the engine's
/// `io.agentry.request.accepted` facts per principal, raises a flood incident
/// for (globex, /shared) and quarantines it; acme's `/shared` still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_under_auth_quarantines_only_the_flooding_principal() {
    let server = AuthServer::start();
    let (admin, admin_js) = server.setup().await;
    let sys = System::start(&server, "echo,security_monitor", |_, agents| {
        agents.builtin.security_flood_requests = Some(40);
    })
    .await;
    let mut incidents = admin
        .subscribe(subject::events_for_type("io.agentry.security.incident"))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    // acme below the threshold from the same source: its own principal.
    let (ac, ajs) = tenant_client(&server, "acme").await;
    for n in 0..5 {
        let out = submit_as(&ac, &ajs, "acme", "/shared", "echo", json!({"n": n})).await;
        assert_eq!(out.ty, "io.agentry.task.completed", "{:#}", out.data);
    }
    let (_gc, gjs) = tenant_client(&server, "globex").await;
    let globex = tenant("globex");
    for n in 0..60 {
        let id = RequestId::new(format!("flood{n}")).unwrap();
        let ev = task_request(&id, "/shared", "echo", json!({"n": n}), None);
        client::publish_request_as(&gjs, Some(&globex), &ev, Mode::Binary)
            .await
            .unwrap();
    }
    let data = incident(&mut incidents, "flood", "/shared").await;
    assert_eq!(data["tenant"], "globex", "{data:#}");
    only_globex_is_quarantined(&server, &admin_js).await;
    assert!(incidents_counted(&sys.agents_obs, "flood", "globex"));
    assert!(!incidents_counted(&sys.agents_obs, "flood", "acme"));
    sys.procs.stop().await;
}

/// Customer-service memory and tickets are per tenant: the same customer id
/// and ticket id in two tenants are two conversations and two tickets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_service_memory_and_tickets_are_tenant_scoped() {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    let sys = System::start(&server, "customer_service", |_, _| {}).await;
    let (ac, ajs) = tenant_client(&server, "acme").await;
    let (gc, gjs) = tenant_client(&server, "globex").await;
    let ask = json!({"message": "Where is my order 12345?", "customer_id": "c-1"});
    let a1 = submit_as(&ac, &ajs, "acme", "/cs", "customer_inquiry", ask.clone()).await;
    let a2 = submit_as(&ac, &ajs, "acme", "/cs", "customer_inquiry", ask.clone()).await;
    let g1 = submit_as(&gc, &gjs, "globex", "/cs", "customer_inquiry", ask).await;
    assert_eq!(a1.data["output"]["turn"], 1, "{:#}", a1.data);
    assert_eq!(a2.data["output"]["turn"], 2, "{:#}", a2.data);
    assert_eq!(
        g1.data["output"]["turn"], 1,
        "globex must not continue acme's conversation: {:#}",
        g1.data
    );

    let esc = |who: &str| {
        json!({"message": format!("{who}: this is unacceptable, manager now!!!"),
               "tier": "enterprise", "customer_id": "c-1", "ticket_id": "tk-shared"})
    };
    let ae = submit_as(&ac, &ajs, "acme", "/cs", "escalation", esc("acme")).await;
    let ge = submit_as(&gc, &gjs, "globex", "/cs", "escalation", esc("globex")).await;
    assert_eq!(ae.ty, "io.agentry.task.completed", "{:#}", ae.data);
    assert_eq!(ge.ty, "io.agentry.task.completed", "{:#}", ge.data);
    let kv = admin_js
        .get_key_value(subject::TICKETS_BUCKET)
        .await
        .unwrap();
    let acme_t: Value = serde_json::from_slice(
        &kv.get("acme.tk-shared")
            .await
            .unwrap()
            .expect("acme ticket"),
    )
    .unwrap();
    let globex_t: Value = serde_json::from_slice(
        &kv.get("globex.tk-shared")
            .await
            .unwrap()
            .expect("globex ticket"),
    )
    .unwrap();
    assert!(kv.get("tk-shared").await.unwrap().is_none());
    // Each tenant's ticket holds only its own escalation.
    let made_by = |t: &Value| -> Vec<String> {
        t["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["request_id"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        made_by(&acme_t).iter().all(|r| *r == ae.request_id),
        "{acme_t:#}"
    );
    assert!(
        made_by(&globex_t).iter().all(|r| *r == ge.request_id),
        "{globex_t:#}"
    );
    assert!(!made_by(&acme_t).is_empty() && !made_by(&globex_t).is_empty());
    sys.procs.stop().await;
}

/// `agentry dlq replay` (as admin) of acme's rejected request republishes it
/// on acme's request subject (the DLQ copy kept it): the new generation's
/// result arrives on acme's result subject, where acme reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_keeps_the_tenant() {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    let sys = System::start(&server, "echo", |_, _| {}).await;
    let (ac, ajs) = tenant_client(&server, "acme").await;
    // A capability nobody serves: rejected and dead-lettered, and rejected
    // again after the replay, each time on acme's result subject.
    let id = RequestId::new("replay-me").unwrap();
    let ev = task_request(&id, "/replay", "no_such_cap", json!({"again": true}), None);
    let first = client::submit_as(
        &ac,
        &ajs,
        Some(&tenant("acme")),
        &ev,
        Mode::Binary,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(first.ty, "io.agentry.request.rejected", "{:#}", first.data);
    let dlq = admin_js.get_stream(subject::DLQ_STREAM).await.unwrap();
    eventually(Duration::from_secs(10), "rejection dead-lettered", || {
        let mut dlq = dlq.clone();
        async move {
            dlq.info()
                .await
                .map(|i| i.state.messages >= 1)
                .unwrap_or(false)
        }
    })
    .await;
    let mut later = ac.subscribe("agentry.results.acme.>").await.unwrap();
    ac.flush().await.unwrap();
    let mut cmd = std::process::Command::new(bin("agentry"));
    cmd.args(["dlq", "replay", "--all"]);
    for (k, v) in server.env("admin") {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run agentry dlq replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = tokio::time::timeout(Duration::from_secs(30), later.next())
        .await
        .expect("replayed result on acme's subject")
        .unwrap();
    assert!(
        msg.subject
            .as_str()
            .starts_with("agentry.results.acme.replay-me-r"),
        "{}",
        msg.subject
    );
    let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
    use cloudevents::AttributesReader as _;
    assert_eq!(d.event.ty(), "io.agentry.request.rejected");
    let data = event::data_json(&d.event).unwrap();
    assert_eq!(data["reason"], "unknown_capability", "{data:#}");
    sys.procs.stop().await;
}
