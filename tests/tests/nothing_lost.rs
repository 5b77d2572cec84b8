//! Nothing lost, nothing stuck (issue 13): every error path keeps its
//! message until its outcome is recorded, exhausted tasks get a terminal
//! result without the monitor, runs awaiting approval do not block the
//! engine, and a request id resubmitted after the duplicate window is
//! answered from the results stream. Real nats-server with the production
//! accounts (`nats/accounts.conf`): engine as `engine`, monitor as
//! `monitor`, agents as `agent_echo` (or `agent`), clients as `client_acme`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed assertion

use std::sync::Arc;
use std::time::Duration;

use agentry::client::{self, Outcome};
use agentry::event::{self, Mode, types};
use agentry::http::Observer;
use agentry::id::{Capability, RequestId};
use agentry::subject::{self, Tenant};
use agentry::workflow::state::{RunState, RunStatus};
use agentry_agent::agents::Echo;
use agentry_tests::*;
use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use serde_json::{Value, json};

const SOURCE: &str = "/tests/nothing-lost";

/// The NATS user of the echo agent: its own kind's user when accounts.conf has one.
fn echo_role(server: &AuthServer) -> &'static str {
    if server.has_user("agent_echo") {
        "agent_echo"
    } else {
        "agent"
    }
}

fn acme() -> Tenant {
    Tenant::new("acme").unwrap()
}

/// The parts of one test, all in-process, each connected as its own role.
struct Sys {
    server: AuthServer,
    admin: jetstream::Context,
    acme: async_nats::Client,
    acme_js: jetstream::Context,
    parts: InProcess,
    echo: Echo,
}

impl Sys {
    async fn start(settings: agentry::topology::Settings) -> Self {
        let server = AuthServer::start();
        let admin = jetstream::new(server.client("admin").await);
        agentry::topology::ensure(&admin, &agentry::topology::Topology::new(&settings))
            .await
            .expect("topology as admin");
        let acme = server.client("client_acme").await;
        let acme_js = jetstream::new(acme.clone());
        Self {
            server,
            admin,
            acme,
            acme_js,
            parts: InProcess::new(),
            echo: Echo::default(),
        }
    }

    fn engine(&mut self, tune: impl FnOnce(&mut agentry_engine::Config)) {
        let mut cfg = engine_config(&self.server.url);
        cfg.nats = self.server.nats("engine");
        tune(&mut cfg);
        self.parts
            .spawn(move |t| agentry_engine::run_with(cfg, Observer::new(), t));
    }

    fn echo_agent(&mut self) -> tokio_util::sync::CancellationToken {
        let nats = self.server.nats(echo_role(&self.server));
        let echo = self.echo.clone();
        self.parts.spawn(move |t| async move {
            let mut rc = agentry::agent::Config::new(nats);
            rc.capacity = 64;
            rc.heartbeat = Duration::from_secs(1);
            rc.topology = test_settings();
            agentry::agent::run(vec![Arc::new(echo)], rc, Observer::new(), t).await
        })
    }

    fn monitor(&mut self) {
        let mut mc = monitor_config(&self.server.url);
        mc.nats = self.server.nats("monitor");
        self.parts
            .spawn(move |t| agentry_monitor::run_with(mc, Observer::new(), t));
    }

    async fn submit(&self, ev: &cloudevents::Event, limit: Duration) -> Outcome {
        client::submit_as(
            &self.acme,
            &self.acme_js,
            Some(&acme()),
            ev,
            Mode::Binary,
            limit,
        )
        .await
        .expect("a result")
    }

    async fn publish(&self, ev: &cloudevents::Event) {
        client::publish_request_as(&self.acme_js, Some(&acme()), ev, Mode::Binary)
            .await
            .expect("request stored");
    }

    async fn stored_result(&self, id: &RequestId) -> Option<Outcome> {
        client::fetch_result_as(&self.acme_js, Some(&acme()), id).await
    }

    /// Waits until acme's result for `id` is stored and returns it.
    async fn wait_result(&self, id: &RequestId, limit: Duration, what: &str) -> Outcome {
        eventually(limit, what, || async {
            self.stored_result(id).await.is_some()
        })
        .await;
        self.stored_result(id)
            .await
            .unwrap_or_else(|| panic!("{what}: stored, then gone"))
    }
}

fn echo_task(id: &RequestId, input: Value, timeout_ms: Option<u64>) -> cloudevents::Event {
    client::task_request(id, SOURCE, "echo", input, timeout_ms)
}

/// Makes `stream` refuse every publish by moving it to subjects nobody
/// uses (what an operator's mistaken edit or an outage looks like to a
/// publisher); returns its real subjects for [`accept`].
async fn refuse(admin: &jetstream::Context, stream: &str) -> Vec<String> {
    let mut st = admin.get_stream(stream).await.unwrap();
    let mut cfg = st.info().await.unwrap().config.clone();
    let subjects = cfg.subjects.clone();
    cfg.subjects = vec![format!("agentry.refused.{}.>", stream.to_lowercase())];
    admin.update_stream(&cfg).await.unwrap();
    subjects
}

async fn accept(admin: &jetstream::Context, stream: &str, subjects: Vec<String>) {
    let mut st = admin.get_stream(stream).await.unwrap();
    let mut cfg = st.info().await.unwrap().config.clone();
    cfg.subjects = subjects;
    admin.update_stream(&cfg).await.unwrap();
}

async fn consumer(admin: &jetstream::Context, stream: &str, name: &str) -> PullConsumer {
    admin
        .get_stream(stream)
        .await
        .unwrap()
        .get_consumer(name)
        .await
        .unwrap()
}

/// Waits until `consumer` has redelivered at least one message (the
/// message was kept, not acked or terminated).
async fn wait_redelivered(admin: &jetstream::Context, stream: &str, name: &str) {
    let admin = admin.clone();
    eventually(
        Duration::from_secs(30),
        &format!("{stream}/{name} redelivers"),
        || {
            let admin = admin.clone();
            async move {
                let mut c = consumer(&admin, stream, name).await;
                c.info().await.unwrap().num_redelivered >= 1
            }
        },
    )
    .await;
}

/// Waits until an echo worker is pulling (works without the monitor, which
/// the registry needs).
async fn wait_pulling(admin: &jetstream::Context) {
    let admin = admin.clone();
    eventually(Duration::from_secs(30), "an echo worker pulls", || {
        let admin = admin.clone();
        async move {
            let mut c = consumer(&admin, subject::TASKS_STREAM, "cap-echo").await;
            c.info().await.unwrap().num_waiting >= 1
        }
    })
    .await;
}

async fn stream_messages(admin: &jetstream::Context, stream: &str) -> u64 {
    let mut st = admin.get_stream(stream).await.unwrap();
    st.info().await.unwrap().state.messages
}

/// Waits until `stream` holds no message (everything in it was settled).
async fn wait_empty(admin: &jetstream::Context, stream: &str, what: &str) {
    eventually(Duration::from_secs(10), what, || async {
        stream_messages(admin, stream).await == 0
    })
    .await;
}

/// The DLQ copies whose `Agentry-Dlq-Request-Id` (or, without one, whose
/// `Agentry-Dlq-Stream`) matches.
async fn dlq_copies(
    admin: &jetstream::Context,
    request_id: Option<&str>,
    stream: &str,
) -> Vec<async_nats::HeaderMap> {
    let st = admin.get_stream(subject::DLQ_STREAM).await.unwrap();
    let c = st
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: subject::DLQ_ALL.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut st2 = admin.get_stream(subject::DLQ_STREAM).await.unwrap();
    let total = st2.info().await.unwrap().state.messages as usize;
    let mut out = Vec::new();
    if total == 0 {
        return out;
    }
    let mut batch = c
        .fetch()
        .max_messages(total)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(m)) = batch.next().await {
        let Some(h) = m.headers.clone() else { continue };
        let by_id = request_id
            .is_some_and(|id| h.get(event::header::DLQ_REQUEST_ID).map(|v| v.as_str()) == Some(id));
        let by_stream = request_id.is_none()
            && h.get(event::header::DLQ_STREAM).map(|v| v.as_str()) == Some(stream);
        if by_id || by_stream {
            out.push(h);
        }
    }
    out
}

async fn wait_dlq(
    admin: &jetstream::Context,
    request_id: Option<&str>,
    stream: &str,
) -> async_nats::HeaderMap {
    let admin2 = admin.clone();
    eventually(Duration::from_secs(30), "the DLQ copy", || {
        let admin = admin2.clone();
        async move { !dlq_copies(&admin, request_id, stream).await.is_empty() }
    })
    .await;
    let copies = dlq_copies(admin, request_id, stream).await;
    assert_eq!(copies.len(), 1, "exactly one DLQ copy");
    copies.into_iter().next().unwrap()
}

fn error_code(out: &Outcome) -> String {
    out.data["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Worker failure path: a task that fails permanently while the DLQ refuses
/// writes is NAKed (redelivered), not terminated; once the DLQ accepts again
/// the client gets `task.failed` and the DLQ holds exactly one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_task_is_kept_until_its_dlq_copy_is_stored() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    sys.echo_agent();
    wait_pulling(&sys.admin).await;
    let subjects = refuse(&sys.admin, subject::DLQ_STREAM).await;
    let id = RequestId::generate();
    sys.publish(&echo_task(&id, json!({"fail": "permanent"}), None))
        .await;
    wait_redelivered(&sys.admin, subject::TASKS_STREAM, "cap-echo").await;
    assert!(
        sys.stored_result(&id).await.is_none(),
        "no result while the DLQ refuses"
    );
    assert_eq!(
        stream_messages(&sys.admin, subject::TASKS_STREAM).await,
        1,
        "the task is kept"
    );
    accept(&sys.admin, subject::DLQ_STREAM, subjects).await;
    let out = sys
        .wait_result(&id, Duration::from_secs(30), "task.failed stored")
        .await;
    assert_eq!(out.ty, types::TASK_FAILED);
    let copy = wait_dlq(&sys.admin, Some(id.as_str()), subject::TASKS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
        Some("task_failed")
    );
    wait_empty(&sys.admin, subject::TASKS_STREAM, "task removed").await;
    sys.parts.stop().await;
}

/// Reject path: a request for an unknown capability while the DLQ refuses
/// writes is kept (redelivered by the engine's consumer) until its DLQ copy
/// is stored; the client gets `request.rejected` once, the DLQ one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_request_is_kept_until_its_dlq_copy_is_stored() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    let subjects = refuse(&sys.admin, subject::DLQ_STREAM).await;
    let id = RequestId::generate();
    let ev = client::task_request(&id, SOURCE, "no_such_capability", json!({}), None);
    sys.publish(&ev).await;
    wait_redelivered(
        &sys.admin,
        subject::REQUESTS_STREAM,
        subject::ENGINE_CONSUMER,
    )
    .await;
    assert_eq!(
        stream_messages(&sys.admin, subject::REQUESTS_STREAM).await,
        1,
        "the request is kept while its DLQ copy cannot be written"
    );
    accept(&sys.admin, subject::DLQ_STREAM, subjects).await;
    let copy = wait_dlq(&sys.admin, Some(id.as_str()), subject::REQUESTS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
        Some("unknown_capability")
    );
    assert_eq!(
        copy.get(event::header::DLQ_SUBJECT).map(|v| v.as_str()),
        Some("agentry.requests.acme")
    );
    let out = sys
        .stored_result(&id)
        .await
        .expect("request.rejected stored");
    assert_eq!(out.ty, types::REQUEST_REJECTED);
    wait_empty(&sys.admin, subject::REQUESTS_STREAM, "request removed").await;
    sys.parts.stop().await;
}

/// Undecodable step results: dead-lettered (reason and stream recorded),
/// never dropped; while the DLQ refuses, the step result stays in AGENTRY_STEPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_step_result_is_dead_lettered_not_dropped() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    let subjects = refuse(&sys.admin, subject::DLQ_STREAM).await;
    let agent = jetstream::new(sys.server.client(echo_role(&sys.server)).await);
    let run = agentry::id::RunId::new("run-garbage").unwrap();
    agent
        .publish(subject::steps(&run), "not a cloudevent {".into())
        .await
        .unwrap()
        .await
        .unwrap();
    wait_redelivered(
        &sys.admin,
        subject::STEPS_STREAM,
        subject::ENGINE_STEPS_CONSUMER,
    )
    .await;
    assert_eq!(
        stream_messages(&sys.admin, subject::STEPS_STREAM).await,
        1,
        "kept"
    );
    accept(&sys.admin, subject::DLQ_STREAM, subjects).await;
    let copy = wait_dlq(&sys.admin, None, subject::STEPS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_SUBJECT).map(|v| v.as_str()),
        Some("agentry.steps.run-garbage")
    );
    wait_empty(&sys.admin, subject::STEPS_STREAM, "step result removed").await;
    sys.parts.stop().await;
}

/// Task deadline timer: while timers cannot be scheduled, the request is kept
/// (not acked with an unenforced deadline); once they can, the timer is
/// scheduled and fires: the client gets `task.failed` with code `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_request_is_kept_until_its_deadline_timer_is_scheduled() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    sys.echo_agent();
    wait_pulling(&sys.admin).await;
    let subjects = refuse(&sys.admin, subject::TIMERS_STREAM).await;
    let id = RequestId::generate();
    // The agent holds the task far beyond its deadline: only the timer can answer.
    sys.publish(&echo_task(&id, json!({"sleep_ms": 60_000}), Some(2_000)))
        .await;
    wait_redelivered(
        &sys.admin,
        subject::REQUESTS_STREAM,
        subject::ENGINE_CONSUMER,
    )
    .await;
    assert_eq!(
        stream_messages(&sys.admin, subject::REQUESTS_STREAM).await,
        1,
        "kept"
    );
    accept(&sys.admin, subject::TIMERS_STREAM, subjects).await;
    let out = sys
        .wait_result(&id, Duration::from_secs(30), "timeout result")
        .await;
    assert_eq!(out.ty, types::TASK_FAILED);
    assert_eq!(error_code(&out), "timeout");
    wait_empty(&sys.admin, subject::REQUESTS_STREAM, "request acked").await;
    sys.parts.stop().await;
}

/// Pulls one delivery of the echo queue as a worker that crashes (never acks,
/// never reports): the delivery number it got.
async fn crash_once(agent: &jetstream::Context) -> u64 {
    let c: PullConsumer = agent
        .get_stream_no_info(subject::TASKS_STREAM)
        .await
        .unwrap()
        .get_consumer(&subject::task_consumer(&Capability::new("echo").unwrap()))
        .await
        .unwrap();
    loop {
        let mut batch = c
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .unwrap();
        if let Some(Ok(m)) = batch.next().await {
            return m.info().unwrap().delivered as u64;
        }
    }
}

/// No reliance on advisories, monitor not running: a task whose handler always
/// fails retryably runs `max_deliver - 1` times and gets `task.failed`
/// (retries_exhausted) plus a DLQ copy; a task whose workers crashed on every
/// attempt gets the same from the runtime on the last delivery, without running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_tasks_get_a_terminal_result_without_the_monitor() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    let max_deliver = test_settings().task_max_deliver;
    // Workers that crash on every attempt but the last.
    let crashed = RequestId::generate();
    sys.publish(&echo_task(
        &crashed,
        json!({"counter_key": "crashed"}),
        None,
    ))
    .await;
    let agent = jetstream::new(sys.server.client(echo_role(&sys.server)).await);
    let mut deliveries = 0;
    while deliveries < (max_deliver - 1) as u64 {
        deliveries = crash_once(&agent).await;
    }
    sys.echo_agent();
    let out = sys
        .submit(
            &echo_task(&RequestId::generate(), json!({"fail": "retryable"}), None),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(out.ty, types::TASK_FAILED);
    assert_eq!(error_code(&out), "retries_exhausted");
    assert_eq!(out.data["attempts"], json!(max_deliver - 1));
    let id = RequestId::new(out.data["request_id"].as_str().unwrap()).unwrap();
    let copy = wait_dlq(&sys.admin, Some(id.as_str()), subject::TASKS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
        Some("task_failed")
    );

    let out = sys
        .wait_result(&crashed, Duration::from_secs(30), "crashed task answered")
        .await;
    assert_eq!(out.ty, types::TASK_FAILED);
    assert_eq!(error_code(&out), "retries_exhausted");
    assert_eq!(
        sys.echo.executions_of("crashed"),
        0,
        "the last delivery records, it does not run"
    );
    let copy = wait_dlq(&sys.admin, Some(crashed.as_str()), subject::TASKS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
        Some("max_deliveries")
    );
    assert_eq!(
        stream_messages(&sys.admin, subject::TASKS_STREAM).await,
        0,
        "nothing stranded"
    );
    sys.parts.stop().await;
}

/// The backstop, for deliveries nobody could record (every worker crashed,
/// the last one too): the monitor copies each exhausted task to the DLQ,
/// answers its client with `task.failed` and removes it, for many at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backstop_answers_tasks_exhausted_by_crashes() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    sys.monitor();
    let ids: Vec<RequestId> = (0..8).map(|_| RequestId::generate()).collect();
    for id in &ids {
        sys.publish(&echo_task(id, json!({}), None)).await;
    }
    eventually(Duration::from_secs(20), "tasks queued", || {
        let admin = sys.admin.clone();
        async move { stream_messages(&admin, subject::TASKS_STREAM).await == 8 }
    })
    .await;
    // A worker that crashes on every delivery of every task.
    let agent = jetstream::new(sys.server.client(echo_role(&sys.server)).await);
    let c: PullConsumer = agent
        .get_stream_no_info(subject::TASKS_STREAM)
        .await
        .unwrap()
        .get_consumer(&subject::task_consumer(&Capability::new("echo").unwrap()))
        .await
        .unwrap();
    // It keeps pulling (as a restarted worker would): the server announces
    // an exhausted message when it next looks for one to deliver.
    let crasher = tokio::spawn(async move {
        loop {
            let Ok(mut batch) = c
                .fetch()
                .max_messages(16)
                .expires(Duration::from_secs(2))
                .messages()
                .await
            else {
                continue;
            };
            while let Some(Ok(_dropped_without_ack)) = batch.next().await {}
        }
    });
    for id in &ids {
        let js = sys.acme_js.clone();
        let id2 = id.clone();
        eventually(Duration::from_secs(90), "backstop answer", || {
            let js = js.clone();
            let id = id2.clone();
            async move {
                client::fetch_result_as(&js, Some(&acme()), &id)
                    .await
                    .is_some()
            }
        })
        .await;
        let out = sys.stored_result(id).await.unwrap();
        assert_eq!(out.ty, types::TASK_FAILED);
        assert_eq!(error_code(&out), "retries_exhausted");
        let copy = wait_dlq(&sys.admin, Some(id.as_str()), subject::TASKS_STREAM).await;
        assert_eq!(
            copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
            Some("max_deliveries")
        );
    }
    wait_empty(&sys.admin, subject::TASKS_STREAM, "exhausted tasks removed").await;
    crasher.abort();
    sys.parts.stop().await;
}

/// Idempotency over the results' retention: with a 1 s duplicate window, a
/// task and a workflow resubmitted after the window get their stored result
/// (the same event) and run nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmission_after_the_duplicate_window_gets_the_stored_result() {
    let settings = agentry::topology::Settings {
        dedup_window_secs: 1,
        ..test_settings()
    };
    let mut sys = Sys::start(settings).await;
    sys.engine(|_| {});
    sys.echo_agent();
    wait_pulling(&sys.admin).await;
    let id = RequestId::generate();
    let task = echo_task(&id, json!({"counter_key": "once"}), None);
    let first = sys.submit(&task, Duration::from_secs(30)).await;
    assert_eq!(first.ty, types::TASK_COMPLETED);
    assert_eq!(sys.echo.executions_of("once"), 1);
    // Not a readiness wait: the duplicate window (1 s) must pass.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let again = sys.submit(&task, Duration::from_secs(30)).await;
    assert_eq!(again.ty, types::TASK_COMPLETED);
    assert_eq!(
        again.event.id(),
        first.event.id(),
        "the stored result, not a new one"
    );
    assert_eq!(sys.echo.executions_of("once"), 1, "nothing ran again");
    assert_eq!(stream_messages(&sys.admin, subject::TASKS_STREAM).await, 0);
    sys.parts.stop().await;
}

use cloudevents::AttributesReader;

const APPROVAL: &str = r#"
name: approval
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
    input: { doc: steps.draft.output.echo.doc }
"#;

const QUICK: &str = r#"
name: quick
version: 1
steps:
  - id: one
    capability: echo
    input: { n: input.n, sleep_ms: "50" }
"#;

async fn run_state(admin: &jetstream::Context, run: &str) -> Option<RunState> {
    let kv = admin.get_key_value(subject::RUNS_BUCKET).await.unwrap();
    let v = kv.get(format!("acme.{run}")).await.ok()??;
    serde_json::from_slice(&v).ok()
}

/// Counts runs among `ids` whose state satisfies `f`, remembering those
/// that did in `done` (so a long poll only reads the runs still open).
async fn count_runs(
    admin: &jetstream::Context,
    ids: &[String],
    done: &std::sync::Mutex<std::collections::HashSet<String>>,
    f: impl Fn(&RunState) -> bool,
) -> usize {
    let kv = admin.get_key_value(subject::RUNS_BUCKET).await.unwrap();
    let open: Vec<&String> = {
        let d = done.lock().unwrap();
        ids.iter().filter(|id| !d.contains(*id)).collect()
    };
    for id in open {
        // Run keys name their tenant (`acme.<run-id>`).
        if let Ok(Some(v)) = kv.get(format!("acme.{id}")).await
            && let Ok(s) = serde_json::from_slice::<RunState>(&v)
            && f(&s)
        {
            done.lock().unwrap().insert(id.clone());
        }
    }
    done.lock().unwrap().len()
}

/// Liveness: 100 runs parked on an approval signal plus 1,000 queued workflow
/// requests, on an engine with 100 run slots and 64 permits: the parked runs
/// hold no slot and the waiting starts hold no permit, so the approvals go
/// through and all 1,100 runs complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_go_through_behind_a_thousand_queued_workflows() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|c| {
        c.max_runs = 100;
        c.concurrency = 64;
    });
    sys.echo_agent();
    wait_pulling(&sys.admin).await;
    for def in [APPROVAL, QUICK] {
        agentry::workflow::store::put(&sys.admin, def)
            .await
            .unwrap();
    }
    let approvals: Vec<String> = (0..100).map(|i| format!("appr-{i}")).collect();
    for id in &approvals {
        let rid = RequestId::new(id.as_str()).unwrap();
        sys.publish(&client::workflow_request(
            &rid,
            SOURCE,
            "approval",
            None,
            json!({"doc": id}),
        ))
        .await;
    }
    let parked = Arc::new(std::sync::Mutex::new(Default::default()));
    let admin = sys.admin.clone();
    let waiting = approvals.clone();
    eventually(
        Duration::from_secs(120),
        "100 runs waiting for approval",
        || {
            let admin = admin.clone();
            let ids = waiting.clone();
            let parked = parked.clone();
            async move { count_runs(&admin, &ids, &parked, RunState::is_parked).await == 100 }
        },
    )
    .await;
    let quick: Vec<String> = (0..1000).map(|i| format!("quick-{i}")).collect();
    for (i, id) in quick.iter().enumerate() {
        let rid = RequestId::new(id.as_str()).unwrap();
        sys.publish(&client::workflow_request(
            &rid,
            SOURCE,
            "quick",
            None,
            json!({"n": i}),
        ))
        .await;
    }
    for id in &approvals {
        let sid = RequestId::generate();
        let ev = event::new_event(
            sid.as_str(),
            SOURCE,
            types::WORKFLOW_SIGNAL,
            json!({"run_id": id, "signal": "approve", "payload": {"ok": true}}),
        );
        sys.publish(&ev).await;
    }
    // Every run ends with exactly one result: 1,100 results means all ended.
    let admin = sys.admin.clone();
    eventually(Duration::from_secs(400), "1,100 run results", || {
        let admin = admin.clone();
        async move { stream_messages(&admin, subject::RESULTS_STREAM).await >= 1_100 }
    })
    .await;
    let all: Vec<String> = approvals.iter().chain(quick.iter()).cloned().collect();
    let completed = Arc::new(std::sync::Mutex::new(Default::default()));
    let n = count_runs(&sys.admin, &all, &completed, |s| {
        s.status == RunStatus::Completed
    })
    .await;
    assert_eq!(n, all.len(), "every run completed");
    let st = run_state(&sys.admin, "appr-7").await.unwrap();
    assert_eq!(st.status, RunStatus::Completed);
    sys.parts.stop().await;
}
