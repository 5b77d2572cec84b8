//! Tenants end to end under the production accounts (`nats/accounts.conf`):
//! every component connects as its own role, clients as `client_acme` and
//! `client_globex` (globex plays the attacker). The tenant comes only from
//! the subject a request arrived on; see docs/tenancy.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed assertion
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentry::client::{self, task_request, workflow_request};
use agentry::event::{self, Mode, ext};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::subject::{self, Tenant};
use agentry_tests::*;
use async_nats::jetstream;
use cloudevents::AttributesReader as _;
use futures::StreamExt;
use serde_json::json;

/// A one-step echo workflow.
const ONE: &str = "name: one\nversion: 1\nsteps:\n  - id: only\n    capability: echo\n    input: { x: input.x }\noutput: steps.only.output.echo.x\n";

/// The engine (as `engine`) and, optionally, echo agents (as their kind's user).
struct Sys {
    parts: InProcess,
}

impl Sys {
    fn start(server: &AuthServer, tune: impl FnOnce(&mut agentry_engine::Config)) -> Self {
        let mut cfg = engine_config(&server.url);
        cfg.nats = server.nats("engine");
        tune(&mut cfg);
        let mut parts = InProcess::new();
        parts.spawn(move |t| agentry_engine::run_with(cfg, Observer::new(), t));
        Self { parts }
    }

    /// Adds one echo agent handling at most `capacity` tasks at once.
    #[allow(dead_code)] // used by the tests below once they run agents
    fn echo(&mut self, server: &AuthServer, capacity: usize) {
        let role = if server.has_user("agent_echo") {
            "agent_echo"
        } else {
            "agent"
        };
        let nats = server.nats(role);
        self.parts.spawn(move |t| async move {
            let mut rc = agentry::agent::Config::new(nats);
            rc.capacity = capacity;
            rc.heartbeat = Duration::from_secs(1);
            rc.topology = test_settings();
            let echo = agentry_agent::agents::Echo::default();
            agentry::agent::run(vec![Arc::new(echo)], rc, Observer::new(), t).await
        });
    }

    async fn stop(self) {
        self.parts.stop().await;
    }
}

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

/// A tenant's connection and JetStream context.
async fn as_tenant(server: &AuthServer, name: &str) -> (async_nats::Client, jetstream::Context) {
    let c = server.client(&format!("client_{name}")).await;
    let js = jetstream::new(c.clone());
    (c, js)
}

/// Publishes `ev` on `tenant`'s request subject with extra `headers`
/// (binary mode), as a client would with `nats pub -H`.
async fn publish_with(
    js: &jetstream::Context,
    t: &Tenant,
    ev: &cloudevents::Event,
    extra: &[(&str, &str)],
) {
    let (mut headers, body) = event::encode(ev, Mode::Binary).unwrap();
    for (k, v) in extra {
        headers.insert(*k, *v);
    }
    let id = RequestId::new(ev.id()).unwrap();
    headers.insert(
        event::header::MSG_ID,
        subject::request_key(Some(t), &id).as_str(),
    );
    js.publish_with_headers(subject::requests_for(Some(t)), headers, body)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Every task waiting in `AGENTRY_TASKS`, decoded, by event id.
async fn queued_tasks(admin: &jetstream::Context) -> HashMap<String, cloudevents::Event> {
    let mut st = admin.get_stream(subject::TASKS_STREAM).await.unwrap();
    let (first, last) = {
        let state = &st.info().await.unwrap().state;
        (state.first_sequence, state.last_sequence)
    };
    let mut out = HashMap::new();
    for seq in first..=last {
        if let Ok(m) = st.get_raw_message(seq).await {
            let limits = event::Limits::default();
            let d = event::decode(Some(&m.headers), &m.payload, &limits).unwrap();
            out.insert(d.event.id().to_owned(), d.event);
        }
    }
    out
}

/// Contract 2: the engine stamps `tenant` on every task and step from the subject, replacing a value the client forged (binary header or structured attribute); untenanted requests carry none.
#[tokio::test]
async fn tasks_and_steps_carry_the_tenant_of_the_subject() {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    agentry::workflow::store::put(&admin_js, ONE).await.unwrap();
    // No agent: the tasks stay queued where the test can read them.
    let sys = Sys::start(&server, |_| {});
    let (_g, gjs) = as_tenant(&server, "globex").await;
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
    let server = AuthServer::start();
    let (admin, admin_js) = server.setup().await;
    agentry::workflow::store::put(&admin_js, ONE).await.unwrap();
    let sys = Sys::start(&server, |_| {});
    let mut facts = admin
        .subscribe(subject::events_for_type(event::types::REQUEST_ACCEPTED))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    let (_a, ajs) = as_tenant(&server, "acme").await;
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
        let d = event::decode(
            msg.headers.as_ref(),
            &msg.payload,
            &event::Limits::default(),
        )
        .unwrap();
        assert_eq!(d.event.source().to_string(), "/engine");
        let data = event::data_json(&d.event).unwrap();
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
