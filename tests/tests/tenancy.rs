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
    let server = AuthServer::start();
    server.setup().await;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    quarantine(&server, &globex, "/billing").await;
    let redis_url = redis.map(|r| r.url.clone());
    let mut sys = Sys::start(&server, |c| {
        c.rate_limit = 1000;
        c.rate_limit_tenant = 30;
        c.redis.url = redis_url;
    });
    sys.echo(&server, 32);
    let (ac, ajs) = as_tenant(&server, "acme").await;
    let (gc, gjs) = as_tenant(&server, "globex").await;

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

/// A run that waits for an `approve` signal between two echo steps.
const GATE: &str = r#"
name: gate
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
    input: { doc: steps.draft.output.echo.doc, by: steps.approve.output.by }
output: "{'doc': steps.publish.output.echo.doc, 'by': steps.approve.output.by}"
"#;

/// Runs the `agentry` CLI connected as `role`; (exit code, stdout, stderr).
async fn cli_as(server: &AuthServer, role: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(bin("agentry"));
    cmd.args(args);
    for (k, v) in server.env(role) {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run agentry (cargo build -p agentry-ctl): {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The run state under `key` in `agentry-runs`, read as admin.
async fn run_state(
    admin: &jetstream::Context,
    key: &str,
) -> Option<agentry::workflow::state::RunState> {
    let kv = admin.get_key_value(subject::RUNS_BUCKET).await.unwrap();
    let bytes = kv.get(key).await.unwrap()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// Sends a signal or cancel with the CLI as tenant `t`; returns the CLI's
/// exit code and the request id it printed.
async fn cli_request_as(server: &AuthServer, t: &Tenant, args: &[&str]) -> (i32, RequestId) {
    let role = format!("client_{t}");
    let mut full = vec!["--json", "workflow"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--tenant", t.as_str()]);
    let (code, out, err) = cli_as(server, &role, &full).await;
    assert!(code == 0 || code == 1, "exit {code}: {out}{err}");
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let id = RequestId::new(v["request_id"].as_str().unwrap()).unwrap();
    (code, id)
}

/// The rejection the engine stored for tenant `t`'s request `id`.
async fn rejection_of(server: &AuthServer, t: &Tenant, id: &RequestId) -> serde_json::Value {
    let (_c, js) = as_tenant(server, t.as_str()).await;
    eventually(Duration::from_secs(20), "the request's rejection", || {
        let (js, id, t) = (js.clone(), id.clone(), t.clone());
        async move { client::fetch_result_as(&js, Some(&t), &id).await.is_some() }
    })
    .await;
    let o = client::fetch_result_as(&js, Some(t), id).await.unwrap();
    assert_eq!(o.ty, event::types::REQUEST_REJECTED, "{:?}", o.data);
    o.data
}

/// Acceptance 2: acme and globex run `echo_diamond` under the same run id and each gets its own result on its own subject; globex's signal and cancel of acme's waiting run are refused exactly like an unknown run's, and acme's run is unaffected and completes on acme's own signal (CLI `--tenant` throughout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_per_tenant() {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    let diamond =
        std::fs::read_to_string(repo_root().join("schemas/examples/workflows/echo_diamond.yaml"))
            .unwrap();
    agentry::workflow::store::put(&admin_js, &diamond)
        .await
        .unwrap();
    agentry::workflow::store::put(&admin_js, GATE)
        .await
        .unwrap();
    let mut sys = Sys::start(&server, |_| {});
    sys.echo(&server, 16);
    let (acme, globex) = (tenant("acme"), tenant("globex"));

    // Same run id, two tenants, different inputs: two runs, two results.
    let run = RequestId::new("shared-run").unwrap();
    let submit = |t: Tenant, n: i64| {
        let (server, run) = (&server, run.clone());
        async move {
            let (c, js) = as_tenant(server, t.as_str()).await;
            let ev = workflow_request(&run, "/app", "echo_diamond", None, json!({"n": n}));
            client::submit_as(
                &c,
                &js,
                Some(&t),
                &ev,
                Mode::Binary,
                Duration::from_secs(60),
            )
            .await
            .unwrap()
        }
    };
    let (a, g) = tokio::join!(submit(acme.clone(), 3), submit(globex.clone(), 0));
    assert_eq!(a.ty, event::types::WORKFLOW_COMPLETED, "{:?}", a.data);
    assert_eq!(g.ty, event::types::WORKFLOW_COMPLETED, "{:?}", g.data);
    assert_eq!(a.data["output"]["total"], 19, "{:?}", a.data);
    assert_eq!(g.data["output"]["total"], 1, "{:?}", g.data);
    for (t, total) in [(&acme, 3), (&globex, 0)] {
        let st = run_state(&admin_js, &format!("{t}.shared-run"))
            .await
            .unwrap();
        assert_eq!(st.tenant.as_deref(), Some(t.as_str()));
        assert_eq!(st.input["n"], total);
    }
    // Each result lives on its tenant's subject only.
    let mut results = admin_js.get_stream(subject::RESULTS_STREAM).await.unwrap();
    for t in [&acme, &globex] {
        let m = results
            .get_last_raw_message_by_subject(&subject::results_for(Some(t), &run))
            .await
            .unwrap();
        assert!(!m.payload.is_empty() || !m.headers.is_empty());
    }
    assert!(
        results
            .get_last_raw_message_by_subject(&subject::results(&run))
            .await
            .is_err(),
        "no untenanted result"
    );
    let info = results.info().await.unwrap();
    assert!(info.state.messages >= 2);

    // `agentry submit --workflow --tenant` gets its result as the tenant's user.
    let (code, out, err) = cli_as(
        &server,
        "client_globex",
        &[
            "--json",
            "submit",
            "--workflow",
            "echo_diamond",
            "--input",
            r#"{"n": 2}"#,
            "--tenant",
            "globex",
            "--id",
            "shared-run-2",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["data"]["output"]["total"], 11, "{v}");

    // Acme's run waits for approval; globex tries to approve and to cancel it.
    let (code, out, err) = cli_as(
        &server,
        "client_acme",
        &[
            "workflow",
            "run",
            "gate",
            "--id",
            "gate-1",
            "--input",
            r#"{"doc": "q3"}"#,
            "--tenant",
            "acme",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    eventually(
        Duration::from_secs(20),
        "acme's run waits for approval",
        || {
            let admin_js = admin_js.clone();
            async move {
                run_state(&admin_js, "acme.gate-1").await.is_some_and(|r| {
                    r.steps
                        .get("approve")
                        .is_some_and(|s| s.unit.status.as_str() == "waiting")
                })
            }
        },
    )
    .await;
    let signal = [
        "signal",
        "gate-1",
        "approve",
        "--payload",
        r#"{"by": "mallory"}"#,
    ];
    let mut refused = Vec::new();
    for args in [
        &signal[..],
        &["cancel", "gate-1"],
        &["cancel", "no-such-run"],
    ] {
        let (_code, id) = cli_request_as(&server, &globex, args).await;
        refused.push(rejection_of(&server, &globex, &id).await);
    }
    let (forged, cancel, unknown) = (&refused[0], &refused[1], &refused[2]);
    for o in [forged, cancel, unknown] {
        assert_eq!(o["reason"], "unknown_run", "{o:?}");
    }
    // The same words as for a run that does not exist: existence does not leak.
    assert_eq!(forged["detail"], "no workflow run gate-1");
    assert_eq!(cancel["detail"], "no workflow run gate-1");
    assert_eq!(unknown["detail"], "no workflow run no-such-run");
    let st = run_state(&admin_js, "acme.gate-1").await.unwrap();
    assert_eq!(st.status.as_str(), "running");
    assert_eq!(st.steps["approve"].unit.status.as_str(), "waiting");
    assert!(run_state(&admin_js, "globex.gate-1").await.is_none());

    // The operator's views by tenant.
    let (code, out, err) = cli_as(
        &server,
        "admin",
        &["--json", "workflow", "runs", "--tenant", "acme"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"gate-1") && ids.contains(&"shared-run"));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["tenant"] == "acme")
    );
    let (code, out, err) = cli_as(
        &server,
        "admin",
        &["workflow", "show", "gate-1", "--tenant", "acme"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tenant    acme") && out.contains("approve"),
        "{out}"
    );
    let (code, _, err) = cli_as(
        &server,
        "admin",
        &["workflow", "show", "gate-1", "--tenant", "globex"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no workflow run gate-1"), "{err}");

    // Acme approves its own run: it completes and answers on acme's subject.
    let (ac, ajs) = as_tenant(&server, "acme").await;
    let gate = RequestId::new("gate-1").unwrap();
    let mut sub = ac
        .subscribe(subject::results_for(Some(&acme), &gate))
        .await
        .unwrap();
    ac.flush().await.unwrap();
    let signal = [
        "signal",
        "gate-1",
        "approve",
        "--payload",
        r#"{"by": "ana"}"#,
    ];
    let (code, _) = cli_request_as(&server, &acme, &signal).await;
    assert_eq!(code, 0, "acme's own signal was refused");
    let done = match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
        Ok(Some(_)) => client::fetch_result_as(&ajs, Some(&acme), &gate)
            .await
            .unwrap(),
        _ => panic!("acme's run did not finish"),
    };
    assert_eq!(done.ty, event::types::WORKFLOW_COMPLETED, "{:?}", done.data);
    assert_eq!(done.data["output"], json!({"doc": "q3", "by": "ana"}));
    sys.stop().await;
}

/// Percentile `q` (0..1) of `waits`, nearest rank.
fn pct(waits: &[Duration], q: f64) -> Duration {
    let mut w = waits.to_vec();
    w.sort();
    let rank = ((q * w.len() as f64).ceil() as usize).clamp(1, w.len());
    w[rank - 1]
}

/// Tasks and how long each waited for its result (publish to result).
struct Waits {
    acme: Vec<Duration>,
    globex: Vec<Duration>,
    drain: Duration,
}

const FLOOD: usize = 20_000;
const TRICKLE: usize = 40;

/// Acme floods `FLOOD` echo tasks; once the engine has taken them in, one
/// echo agent drains them while globex sends one task every 100 ms. The
/// engine holds tenants' tasks at queue depth `depth` (0 = fairness off).
async fn flood_and_trickle(depth: u64) -> Waits {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    let mut sys = Sys::start(&server, |c| c.fair_queue_depth = depth);
    let (ac, ajs) = as_tenant(&server, "acme").await;
    let acme = tenant("acme");
    let started = std::time::Instant::now();

    // Acme's results, timed as they arrive.
    let mut results = ac.subscribe("agentry.results.acme.>").await.unwrap();
    ac.flush().await.unwrap();
    let arrivals = tokio::spawn(async move {
        let mut at = HashMap::with_capacity(FLOOD);
        while at.len() < FLOOD {
            match tokio::time::timeout(Duration::from_secs(90), results.next()).await {
                Ok(Some(m)) => {
                    let id = m.subject.rsplit('.').next().unwrap_or_default().to_owned();
                    at.insert(id, std::time::Instant::now());
                }
                _ => break,
            }
        }
        at
    });

    // The flood, published as fast as JetStream takes it.
    let published: Vec<(String, std::time::Instant)> = futures::stream::iter(0..FLOOD)
        .map(|i| {
            let (ajs, acme) = (ajs.clone(), acme.clone());
            async move {
                let id = RequestId::new(format!("f-{i}")).unwrap();
                let ev = task_request(&id, "/flood", "echo", json!({"i": i}), None);
                let t0 = std::time::Instant::now();
                client::publish_request_as(&ajs, Some(&acme), &ev, Mode::Binary)
                    .await
                    .unwrap();
                (id.to_string(), t0)
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    // The engine has taken in the whole flood (queued or held): now the one
    // echo agent starts to drain it, and globex joins in. (Taking the flood
    // in first keeps the engine's own intake, a FIFO that fairness does not
    // reorder, out of the measurement; docs/tenancy.md, limits.)
    eventually(
        Duration::from_secs(60),
        "the engine took in the flood",
        || {
            let admin_js = admin_js.clone();
            async move {
                let mut st = admin_js.get_stream(subject::REQUESTS_STREAM).await.unwrap();
                st.info().await.is_ok_and(|i| i.state.messages == 0)
            }
        },
    )
    .await;
    sys.echo(&server, 16);
    // Globex: one task every 100 ms, each timed from publish to result.
    let trickle = {
        let server_g = server.client("client_globex").await;
        let gjs = jetstream::new(server_g.clone());
        tokio::spawn(async move {
            let globex = tenant("globex");
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut waits = Vec::new();
            for i in 0..TRICKLE {
                tick.tick().await;
                let (c, js, g) = (server_g.clone(), gjs.clone(), globex.clone());
                waits.push(tokio::spawn(async move {
                    let t0 = std::time::Instant::now();
                    let id = RequestId::new(format!("g-{i}")).unwrap();
                    let ev = task_request(&id, "/light", "echo", json!({"i": i}), None);
                    let out = client::submit_as(
                        &c,
                        &js,
                        Some(&g),
                        &ev,
                        Mode::Binary,
                        Duration::from_secs(90),
                    )
                    .await
                    .unwrap();
                    assert!(out.is_success(), "{:?}", out.data);
                    t0.elapsed()
                }));
            }
            let mut out = Vec::new();
            for w in waits {
                out.push(w.await.unwrap());
            }
            out
        })
    };

    let globex = trickle.await.unwrap();
    let at = arrivals.await.unwrap();
    let drain = started.elapsed();
    assert_eq!(at.len(), FLOOD, "every flood task finished");
    let acme_waits = published
        .iter()
        .map(|(id, t0)| at[id].duration_since(*t0))
        .collect();
    sys.stop().await;
    Waits {
        acme: acme_waits,
        globex,
        drain,
    }
}

/// Acceptance 5: while acme's 20,000-task flood drains through one echo agent, globex's tasks (one every 100 ms) wait under 1 s at p99 with fairness on; with it off globex starves behind the flood (p99 over 1 s). Prints both tenants' p50/p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_does_not_starve_another_tenant() {
    let mut report = Vec::new();
    for (label, depth) in [("off", 0), ("on", agentry_engine::DEFAULT_FAIR_QUEUE_DEPTH)] {
        let w = flood_and_trickle(depth).await;
        let line = format!(
            "fairness {label:>3}: acme p50 {:>7.0?} p99 {:>7.0?} | globex p50 {:>7.0?} p99 {:>7.0?} | flood drained in {:.1?}",
            pct(&w.acme, 0.5),
            pct(&w.acme, 0.99),
            pct(&w.globex, 0.5),
            pct(&w.globex, 0.99),
            w.drain
        );
        eprintln!("{line}");
        report.push((label, w, line));
    }
    let (off, on) = (&report[0].1, &report[1].1);
    assert!(
        pct(&on.globex, 0.99) < Duration::from_secs(1),
        "with fairness globex waits: {}",
        report[1].2
    );
    assert!(
        pct(&off.globex, 0.99) > Duration::from_secs(1),
        "without fairness globex should starve behind the flood: {}",
        report[0].2
    );
}

/// A child workflow (one echo step doubling `x`).
const LEAF: &str = "name: leaf\nversion: 1\nsteps:\n  - id: double\n    capability: echo\n    input: { x: \"input.x * 2\" }\noutput: steps.double.output.echo.x\n";

/// A parent with one child-workflow step.
const NEST: &str = "name: nest\nversion: 1\nsteps:\n  - id: child\n    workflow: { name: leaf }\n    input: \"{'x': input.x}\"\noutput: steps.child.output\n";

/// Child runs inherit the parent's tenant: keyed `<tenant>.<id>-child-1`, tenant in their state, the parent answered; two tenants' equal run ids nest without meeting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_runs_inherit_the_tenant() {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    agentry::workflow::store::put(&admin_js, LEAF)
        .await
        .unwrap();
    agentry::workflow::store::put(&admin_js, NEST)
        .await
        .unwrap();
    let mut sys = Sys::start(&server, |_| {});
    sys.echo(&server, 16);
    let run = RequestId::new("nest-1").unwrap();
    for (name, x) in [("acme", 5), ("globex", 7)] {
        let (c, js) = as_tenant(&server, name).await;
        let t = tenant(name);
        let ev = workflow_request(&run, "/app", "nest", None, json!({"x": x}));
        let out = client::submit_as(
            &c,
            &js,
            Some(&t),
            &ev,
            Mode::Binary,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(out.ty, event::types::WORKFLOW_COMPLETED, "{:?}", out.data);
        assert_eq!(out.data["output"], x * 2);
        let child = run_state(&admin_js, &format!("{name}.nest-1-child-1"))
            .await
            .expect("the child run under the parent's tenant");
        assert_eq!(child.tenant.as_deref(), Some(name));
        assert_eq!(child.request_id, "nest-1-child-1");
        assert_eq!(child.parent.unwrap().run_id, format!("{name}.nest-1"));
        assert_eq!(child.output, Some(json!(x * 2)));
    }
    assert!(run_state(&admin_js, "nest-1-child-1").await.is_none());
    assert!(run_state(&admin_js, "nest-1").await.is_none());
    sys.stop().await;
}
