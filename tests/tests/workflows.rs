//! The durable workflow engine end to end (issue 4): a real nats-server, the
//! engine in-process or as `agentry-engine` child processes, echo agents
//! whose executions are counted, and the built-in agents for the domain
//! examples. Under the production accounts: the engine and each agent kind
//! as their roles, runs started by tenant `acme` (run keys `acme.<id>`,
//! results on `agentry.results.acme.<id>`), definitions, inspection and
//! the CLI as `admin`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed assertion

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use agentry::client::{self, Outcome};
use agentry::event::{self, Limits, Mode};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::subject;
use agentry::workflow::state::{RunState, RunStatus};
use agentry_agent::agents::Echo;
use agentry_tests::*;
use cloudevents::AttributesReader;
use futures::StreamExt;
use serde_json::{Value, json};

const SOURCE: &str = "/tests/workflows";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The tenant every run of these tests belongs to.
const TENANT: &str = "acme";

/// The key of run `run` of [`TENANT`] in `agentry-runs` (and its `run_id`
/// in events): `acme.<id>`. A key passes through unchanged.
fn key(run: &str) -> String {
    if run.starts_with(&format!("{TENANT}.")) {
        return run.to_owned();
    }
    let tenant = agentry::subject::Tenant::new(TENANT).unwrap();
    subject::run_key(Some(&tenant), &agentry::RunId::new(run).unwrap())
}

/// The run id of `run` (a key `acme.<id>` or an id).
fn bare(run: &str) -> &str {
    run.strip_prefix(&format!("{TENANT}.")).unwrap_or(run)
}

/// One test's system: nats-server with the production accounts and the
/// topology, the engine and an echo agent in-process.
struct Sys {
    nats: AuthServer,
    /// The client: tenant `acme`.
    acme: TenantClient,
    /// Admin: definitions and inspection.
    js: async_nats::jetstream::Context,
    parts: InProcess,
    echo: Echo,
}

impl Sys {
    async fn start() -> Self {
        Self::start_with(100, true).await
    }

    async fn start_with(max_runs: usize, engine: bool) -> Self {
        let nats = AuthServer::start();
        let (_admin, js) = nats.setup().await;
        let acme = nats.tenant(TENANT).await;
        let mut parts = InProcess::new();
        if engine {
            start_engine(&mut parts, &nats, max_runs);
        }
        let echo = Echo::default();
        start_echo(&mut parts, &nats, echo.clone(), 32);
        Self {
            nats,
            acme,
            js,
            parts,
            echo,
        }
    }

    async fn put(&self, text: &str) {
        agentry::workflow::store::put(&self.js, text)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `name` and waits for its result.
    async fn run(&self, name: &str, input: Value) -> Outcome {
        let id = RequestId::generate();
        self.run_id(&id, name, input).await
    }

    async fn run_id(&self, id: &RequestId, name: &str, input: Value) -> Outcome {
        let ev = client::workflow_request(id, SOURCE, name, None, input);
        let out = self
            .acme
            .submit(&ev, Duration::from_secs(60))
            .await
            .expect("workflow result");
        // Results match their published schema.
        let schema = agentry::schema::global().event(&out.ty).unwrap();
        if let Err(e) = agentry::schema::check(schema, &out.data) {
            panic!("{} does not match its schema: {e}\n{}", out.ty, out.data);
        }
        out
    }

    /// Publishes a workflow request without waiting.
    async fn start_run(&self, id: &str, name: &str, input: Value) {
        let id = RequestId::new(id).unwrap();
        let ev = client::workflow_request(&id, SOURCE, name, None, input);
        self.acme.publish(&ev, Mode::Binary).await.unwrap();
    }

    async fn state(&self, run: &str) -> RunState {
        run_state(&self.js, run).await.expect("run state")
    }

    /// Waits for a run to reach `status`.
    async fn wait_status(&self, run: &str, status: RunStatus, limit: Duration) -> RunState {
        let js = self.js.clone();
        eventually(limit, &format!("run {run} {}", status.as_str()), || {
            let js = js.clone();
            async move {
                run_state(&js, run)
                    .await
                    .is_some_and(|s| s.status == status)
            }
        })
        .await;
        self.state(run).await
    }
}

fn start_engine(
    parts: &mut InProcess,
    nats: &AuthServer,
    max_runs: usize,
) -> tokio_util::sync::CancellationToken {
    let mut cfg = nats.engine_config();
    cfg.max_runs = max_runs;
    parts.spawn(move |t| agentry_engine::run_with(cfg, Observer::new(), t))
}

fn start_echo(parts: &mut InProcess, nats: &AuthServer, echo: Echo, capacity: usize) {
    let cfg = nats.agent_config("echo");
    parts.spawn(move |t| async move {
        let mut rc = agentry::agent::Config::new(cfg.nats.clone());
        rc.capacity = capacity;
        rc.heartbeat = Duration::from_secs(1);
        rc.topology = test_settings();
        agentry::agent::run(vec![std::sync::Arc::new(echo)], rc, Observer::new(), t).await
    });
}

/// The state of `acme`'s run `run` (an id or a key).
async fn run_state(js: &async_nats::jetstream::Context, run: &str) -> Option<RunState> {
    let kv = js.get_key_value(subject::RUNS_BUCKET).await.ok()?;
    let bytes = kv.get(key(run)).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// A lifecycle event as stored in AGENTRY_EVENTS.
#[derive(Debug, Clone)]
struct Lifecycle {
    ty: String,
    /// Event time, ms since the epoch.
    time: i64,
    data: Value,
    traceparent: Option<String>,
}

/// Every lifecycle event of `run` (or of every run when `None`), in order.
async fn events(js: &async_nats::jetstream::Context, run: Option<&str>) -> Vec<Lifecycle> {
    let stream = js.get_stream(subject::EVENTS_STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "agentry.events.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut msgs = consumer.messages().await.unwrap();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(300), msgs.next()).await;
        let Ok(Some(Ok(msg))) = next else { break };
        let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
        let data = event::data_json(&d.event).unwrap();
        // Every lifecycle event matches its published schema.
        let ty = d.event.ty();
        let schema = agentry::schema::global()
            .event(ty)
            .unwrap_or_else(|| panic!("no schema for {ty}"));
        if let Err(e) = agentry::schema::check(schema, &data) {
            panic!("{ty} does not match its schema: {e}\n{data}");
        }
        // Events name a run by its id (the tenant's request id), not by its
        // key in `agentry-runs`.
        if run.is_some_and(|r| data["run_id"] != bare(r)) {
            continue;
        }
        out.push(Lifecycle {
            ty: d.event.ty().to_owned(),
            time: d
                .event
                .time()
                .map(|t| t.timestamp_millis())
                .unwrap_or_default(),
            traceparent: event::ext_str(&d.event, "traceparent"),
            data,
        });
    }
    out
}

/// Events of `run` of type `ty` for `step`.
fn step_events<'a>(all: &'a [Lifecycle], ty: &str, step: &str) -> Vec<&'a Lifecycle> {
    all.iter()
        .filter(|e| e.ty == ty && e.data["step"] == step && e.data.get("item").is_none())
        .collect()
}

const FAN_OUT: &str = r#"
name: fan_out
version: 1
steps:
  - id: start
    capability: echo
    input: { n: input.n }
  - id: a
    capability: echo
    needs: [start]
    input: { n: "steps.start.output.echo.n + 1", sleep_ms: "700" }
  - id: b
    capability: echo
    needs: [start]
    input: { n: "steps.start.output.echo.n * 10", sleep_ms: "700" }
  - id: c
    capability: echo
    needs: [start]
    input: { n: "steps.start.output.echo.n * 100", sleep_ms: "700" }
  - id: join
    capability: echo
    needs: [a, b, c]
    input: { sum: "steps.a.output.echo.n + steps.b.output.echo.n + steps.c.output.echo.n" }
  - id: finish
    capability: echo
    needs: [join]
    input: { total: "steps.join.output.echo.sum * 2" }
output: "{'total': steps.finish.output.echo.total, 'parts': [steps.a.output.echo.n, steps.b.output.echo.n, steps.c.output.echo.n]}"
"#;

/// A 6-step DAG with a fan-out of 3: the three parallel steps' execution windows overlap, and the output is what CEL computes (n = 2: 3 + 20 + 200 = 223, doubled 446).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_fan_out_runs_in_parallel() {
    let sys = Sys::start().await;
    sys.put(FAN_OUT).await;
    let id = RequestId::generate();
    let mut ev = client::workflow_request(&id, SOURCE, "fan_out", None, json!({"n": 2}));
    ev.set_extension("traceparent", TRACEPARENT);
    let out = sys.acme.submit(&ev, Duration::from_secs(60)).await.unwrap();
    assert_eq!(out.ty, "io.agentry.workflow.completed", "{:?}", out.data);
    assert_eq!(
        out.data["output"],
        json!({"total": 446, "parts": [3, 20, 200]})
    );
    let run = sys.state(&out.request_id).await;
    assert_eq!(run.status, RunStatus::Completed);
    // Execution window of each parallel step: [end - agent duration, end].
    let windows: Vec<(i64, i64)> = ["a", "b", "c"]
        .iter()
        .map(|s| {
            let u = &run.steps[*s].unit;
            let end = u.ended_at.unwrap().timestamp_millis();
            let dur = u.duration_ms.unwrap() as i64;
            assert!(dur >= 700, "{s} ran {dur} ms");
            (end - dur, end)
        })
        .collect();
    for i in 0..3 {
        for j in (i + 1)..3 {
            let (a, b) = (windows[i], windows[j]);
            assert!(
                a.0 < b.1 && b.0 < a.1,
                "windows {i} and {j} do not overlap: {windows:?}"
            );
        }
    }
    // Every lifecycle event of the run carries its trace context.
    let evs = events(&sys.js, Some(&out.request_id)).await;
    assert!(evs.len() >= 14, "{} events", evs.len());
    assert!(
        evs.iter()
            .all(|e| e.traceparent.as_deref() == Some(TRACEPARENT))
    );
    // The diamond example from the repository gives its hand-computed output.
    let diamond =
        std::fs::read_to_string(repo_root().join("schemas/examples/workflows/echo_diamond.yaml"))
            .unwrap();
    sys.put(&diamond).await;
    let out = sys.run("echo_diamond", json!({"n": 3})).await;
    assert_eq!(
        out.data["output"],
        json!({"n": 3, "total": 19, "parts": 3, "right": "completed"})
    );
    // Lifecycle events carry the run id; scheduled and completed per step.
    let evs = events(&sys.js, Some(&out.request_id)).await;
    for step in ["start", "left", "middle", "right", "join", "finish"] {
        assert_eq!(
            step_events(&evs, "io.agentry.step.scheduled", step).len(),
            1,
            "{step}"
        );
        assert_eq!(
            step_events(&evs, "io.agentry.step.completed", step).len(),
            1,
            "{step}"
        );
    }
    assert_eq!(
        evs.first().map(|e| e.ty.as_str()),
        Some("io.agentry.run.started")
    );
    assert_eq!(
        evs.last().map(|e| e.ty.as_str()),
        Some("io.agentry.run.completed")
    );
    sys.parts.stop().await;
}

/// Runs the `agentry` CLI as `admin` (off the async runtime); (exit code, stdout, stderr).
async fn cli(nats: &AuthServer, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(bin("agentry"));
    cmd.envs(nats.env("admin")).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (cargo build -p agentry-ctl): {e}",
                bin("agentry").display()
            )
        });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `expect:` text of an invalid example (its `$comment`).
fn expectation(text: &str) -> String {
    let start = text.find("expect:").expect("an expect: comment") + "expect:".len();
    let rest = &text[start..];
    let end = rest.find('"').unwrap_or(rest.len());
    rest[..end].trim().to_owned()
}

/// `when: false` skips a step and its dependants still run (seeing it `skipped`); every `*.invalid.*` example is refused by `agentry workflow put` with the path and kind of its error, over at least 10 kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_skips_and_invalid_definitions_are_refused() {
    let sys = Sys::start().await;
    let nats = &sys.nats;
    let diamond = repo_root().join("schemas/examples/workflows/echo_diamond.yaml");
    let (code, out, err) = cli(nats, &["workflow", "put", diamond.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created echo_diamond.1"), "{out}");
    let (code, out, _) = cli(nats, &["workflow", "put", diamond.to_str().unwrap()]).await;
    assert_eq!(code, 0);
    assert!(out.contains("unchanged echo_diamond.1"), "{out}");
    let out = sys.run("echo_diamond", json!({"n": 0})).await;
    assert_eq!(
        out.data["output"],
        json!({"n": 0, "total": 1, "parts": 2, "right": "skipped"})
    );
    let run = sys.state(&out.request_id).await;
    assert_eq!(run.steps["right"].unit.status.as_str(), "skipped");
    assert_eq!(run.steps["join"].unit.status.as_str(), "completed");
    let evs = events(&sys.js, Some(&out.request_id)).await;
    let skipped = step_events(&evs, "io.agentry.step.skipped", "right");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].data["attempt"], 0);
    assert!(step_events(&evs, "io.agentry.step.scheduled", "right").is_empty());

    let dir = repo_root().join("schemas/examples/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".invalid."))
        .collect();
    files.sort();
    let mut kinds = HashSet::new();
    for path in &files {
        let expected = expectation(&std::fs::read_to_string(path).unwrap());
        let (code, out, err) =
            cli(nats, &["--json", "workflow", "put", path.to_str().unwrap()]).await;
        assert_eq!(code, 1, "{}: {out}{err}", path.display());
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{}: {e}: {out}", path.display()));
        assert_eq!(v["valid"], false);
        let errors = v["errors"].as_array().unwrap();
        if let Some(rest) = expected.strip_prefix('[') {
            let (kind, rest) = rest.split_once("] ").unwrap();
            let (at, fragment) = rest
                .split_once(": ")
                .unwrap_or((rest.trim_end_matches(':'), ""));
            assert!(
                errors.iter().any(|e| e["kind"] == kind
                    && e["path"] == at
                    && e["message"].as_str().unwrap().contains(fragment)),
                "{}: expected [{kind}] {at}: {fragment}, got {errors:?}",
                path.display()
            );
            kinds.insert(kind.to_owned());
        } else {
            let norm = |s: &str| s.replace(['\'', '"'], "");
            assert!(
                errors.iter().any(|e| e["kind"] == "schema"
                    && norm(e["message"].as_str().unwrap()).contains(&norm(&expected))),
                "{}: expected a schema error with {expected:?}, got {errors:?}",
                path.display()
            );
            kinds.insert("schema".to_owned());
        }
    }
    assert!(
        files.len() >= 20 && kinds.len() >= 10,
        "{} files, kinds {kinds:?}",
        files.len()
    );
    // Humans get one line per error: path, message, kind.
    let (code, out, _) = cli(
        nats,
        &[
            "workflow",
            "put",
            dir.join("unknown_need.invalid.json").to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        out.contains("steps[1].needs[0]: no step `forcast`") && out.contains("[unknown_need]"),
        "{out}"
    );
    // Nothing invalid was stored.
    let kv = agentry::workflow::store::open(&sys.js).await.unwrap();
    let stored = agentry::workflow::store::versions(&kv).await.unwrap();
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["echo_diamond"]);
    sys.parts.stop().await;
}

const RETRY: &str = r#"
name: retry
version: 1
steps:
  - id: flaky
    capability: echo
    input: { fail: "'until_attempt'", fail_until_attempt: "3", counter_key: "run.id + '-flaky'" }
    retry: { max_attempts: 4, initial: 1s, multiplier: 3, max: 10s }
output: "steps.flaky.output.attempt"
"#;

const TIMEOUTS: &str = r#"
name: timeouts
version: 1
timeout: 1m
steps:
  - id: slow
    capability: echo
    input: { sleep_ms: "input.sleep" }
    timeout: 1s
    on_error: "fail"
  - id: after
    capability: echo
    needs: [slow]
    input: { saw: steps.slow.status }
output: "steps.after.output.echo.saw"
"#;

/// A step failing twice then succeeding is retried after the configured backoff (gaps from events: 1 s, then 3 s) and the run completes; a step over its timeout fails the run (`on_error: fail`) or lets it go on (`continue`); a run over the workflow timeout ends `timed_out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_timeouts_and_run_deadline() {
    let sys = Sys::start().await;
    sys.put(RETRY).await;
    sys.put(TIMEOUTS).await;
    sys.put(
        &TIMEOUTS
            .replace("name: timeouts", "name: timeouts_continue")
            .replace("on_error: \"fail\"", "on_error: continue"),
    )
    .await;
    sys.put(
        &TIMEOUTS
            .replace("name: timeouts", "name: deadline")
            .replace("timeout: 1m", "timeout: 2s")
            .replace("timeout: 1s", "timeout: 30s"),
    )
    .await;
    let (retry, fail, cont, deadline) = tokio::join!(
        sys.run("retry", json!({})),
        sys.run("timeouts", json!({"sleep": 4000})),
        sys.run("timeouts_continue", json!({"sleep": 4000})),
        sys.run("deadline", json!({"sleep": 8000})),
    );
    // Retries.
    assert_eq!(
        retry.ty, "io.agentry.workflow.completed",
        "{:?}",
        retry.data
    );
    assert_eq!(retry.data["output"], 3);
    assert_eq!(
        sys.echo
            .executions_of(&format!("{}-flaky", retry.request_id)),
        1,
        "only the successful attempt counts"
    );
    let evs = events(&sys.js, Some(&retry.request_id)).await;
    let retrying = step_events(&evs, "io.agentry.step.retrying", "flaky");
    let scheduled = step_events(&evs, "io.agentry.step.scheduled", "flaky");
    assert_eq!(retrying.len(), 2);
    assert_eq!(scheduled.len(), 3);
    assert_eq!(retrying[0].data["delay_ms"], 1000);
    assert_eq!(retrying[1].data["delay_ms"], 3000);
    assert_eq!(retrying[0].data["error"]["retryable"], true);
    let gap1 = scheduled[1].time - retrying[0].time;
    let gap2 = scheduled[2].time - retrying[1].time;
    // Durable timers have one-second resolution and never fire early.
    assert!((1000..2600).contains(&gap1), "first backoff {gap1} ms");
    assert!((3000..4600).contains(&gap2), "second backoff {gap2} ms");
    assert_eq!(
        sys.state(&retry.request_id).await.steps["flaky"]
            .unit
            .attempt,
        3
    );
    // Step timeout, on_error: fail.
    assert_eq!(fail.ty, "io.agentry.workflow.failed", "{:?}", fail.data);
    assert_eq!(fail.data["error"]["code"], "step_failed");
    assert_eq!(fail.data["error"]["details"]["error"]["code"], "timeout");
    let run = sys.state(&fail.request_id).await;
    assert_eq!(run.steps["slow"].unit.status.as_str(), "failed");
    assert!(
        !run.steps.contains_key("after") || run.steps["after"].unit.status.as_str() == "pending"
    );
    // Step timeout, on_error: continue: the dependant runs and sees the failure.
    assert_eq!(cont.ty, "io.agentry.workflow.completed", "{:?}", cont.data);
    assert_eq!(cont.data["output"], "failed");
    // Workflow timeout.
    assert_eq!(
        deadline.ty, "io.agentry.workflow.timed_out",
        "{:?}",
        deadline.data
    );
    assert_eq!(deadline.data["error"]["code"], "timeout");
    let run = sys.state(&deadline.request_id).await;
    assert_eq!(run.status, RunStatus::TimedOut);
    let ms = run.duration_ms(run.ended_at.unwrap());
    assert!((2000..4000).contains(&ms), "timed out after {ms} ms");
    let evs = events(&sys.js, Some(&deadline.request_id)).await;
    assert_eq!(evs.last().unwrap().ty, "io.agentry.run.timed_out");
    sys.parts.stop().await;
}

const SAGA: &str = r#"
name: saga
version: 1
steps:
  - id: reserve
    capability: echo
    input: { what: "'reserve'" }
    compensate: { capability: echo, input: { undo: "'reserve'", counter_key: "run.id + '-undo-reserve'" } }
  - id: charge
    capability: echo
    needs: [reserve]
    input: { what: "'charge'", fail: "has(input.fail) ? input.fail : 'none'" }
    compensate: { capability: echo, input: { undo: "'charge'", counter_key: "run.id + '-undo-charge'" } }
  - id: ship
    capability: echo
    needs: [charge]
    input: { what: "'ship'", sleep_ms: "input.ship_ms", counter_key: "run.id + '-ship'" }
    compensate: { capability: echo, input: { undo: "'ship'", counter_key: "run.id + '-undo-ship'" } }
"#;

/// Cancel mid-run: the running step stops being waited on, completed steps are compensated in reverse completion order, the run ends `cancelled`; a failing step compensates what completed and the run ends `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_failure_compensate_in_reverse() {
    let sys = Sys::start().await;
    sys.put(SAGA).await;
    let nats = &sys.nats;
    sys.start_run("saga-cancel", "saga", json!({"ship_ms": 3000}))
        .await;
    let js = sys.js.clone();
    eventually(Duration::from_secs(20), "ship running", || {
        let js = js.clone();
        async move {
            run_state(&js, "saga-cancel").await.is_some_and(|r| {
                r.steps
                    .get("ship")
                    .is_some_and(|s| s.unit.status.as_str() == "scheduled")
            })
        }
    })
    .await;
    let (code, out, err) = cli(
        nats,
        &[
            "workflow",
            "cancel",
            "--tenant",
            "acme",
            "saga-cancel",
            "--reason",
            "customer changed their mind",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let run = sys
        .wait_status("saga-cancel", RunStatus::Cancelled, Duration::from_secs(20))
        .await;
    let result = sys
        .acme
        .fetch_result(&RequestId::new("saga-cancel").unwrap())
        .await
        .unwrap();
    assert_eq!(result.ty, "io.agentry.workflow.cancelled");
    assert_eq!(
        result.data["error"]["message"],
        "customer changed their mind"
    );
    assert_eq!(run.steps["ship"].unit.status.as_str(), "cancelled");
    assert_eq!(run.steps["charge"].unit.status.as_str(), "compensated");
    assert_eq!(run.steps["reserve"].unit.status.as_str(), "compensated");
    let evs = events(&sys.js, Some("saga-cancel")).await;
    let order: Vec<&str> = evs
        .iter()
        .filter(|e| e.ty == "io.agentry.step.compensated")
        .map(|e| e.data["step"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["charge", "reserve"]);
    assert_eq!(sys.echo.executions_of("saga-cancel-undo-charge"), 1);
    assert_eq!(sys.echo.executions_of("saga-cancel-undo-reserve"), 1);
    assert_eq!(sys.echo.executions_of("saga-cancel-undo-ship"), 0);
    // The abandoned step's late result changes nothing.
    eventually(
        Duration::from_secs(10),
        "ship finished in the agent",
        || async { sys.echo.executions_of("saga-cancel-ship") == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sys.state("saga-cancel").await.steps["ship"]
            .unit
            .status
            .as_str(),
        "cancelled"
    );
    // Failure: charge fails for good; reserve is compensated; ship never runs.
    let out = sys
        .run_id(
            &RequestId::new("saga-fail").unwrap(),
            "saga",
            json!({"ship_ms": 0, "fail": "permanent"}),
        )
        .await;
    assert_eq!(out.ty, "io.agentry.workflow.failed", "{:?}", out.data);
    assert_eq!(out.data["error"]["details"]["step"], "charge");
    let run = sys.state("saga-fail").await;
    assert_eq!(run.steps["reserve"].unit.status.as_str(), "compensated");
    assert_eq!(run.steps["charge"].unit.status.as_str(), "failed");
    assert!(!run.steps.contains_key("ship"));
    assert_eq!(sys.echo.executions_of("saga-fail-undo-reserve"), 1);
    assert_eq!(sys.echo.executions_of("saga-fail-undo-charge"), 0);
    sys.parts.stop().await;
}

/// An `agentry-engine` child process (killable with SIGKILL).
fn engine_process(nats: &AuthServer) -> ChildProc {
    ChildProc::spawn(
        "agentry-engine",
        &["--http-addr", "off"],
        &nats.env("engine"),
    )
}

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
    when: "steps.approve.output.approved == true"
    input: { doc: steps.draft.output.echo.doc, by: steps.approve.output.by }
output: "{'published': steps.publish.status == 'completed', 'by': steps.approve.output.by, 'doc': steps.publish.output.echo.doc}"
"#;

/// A run waiting on a signal survives a SIGKILL of the engine and resumes when `agentry workflow signal` is sent to the restarted one, on the definition version it started with; a signal timeout fails the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_survives_engine_restart_and_times_out() {
    let sys = Sys::start_with(100, false).await;
    let nats = &sys.nats;
    sys.put(APPROVAL).await;
    sys.put(
        &APPROVAL
            .replace("name: approval", "name: approval_short")
            .replace("timeout: 10m", "timeout: 1s"),
    )
    .await;
    let mut engine = engine_process(nats);
    sys.start_run("sig-wait", "approval", json!({"doc": "q3-report"}))
        .await;
    sys.start_run("sig-late", "approval_short", json!({"doc": "memo"}))
        .await;
    let js = sys.js.clone();
    eventually(Duration::from_secs(20), "waiting for approval", || {
        let js = js.clone();
        async move {
            run_state(&js, "sig-wait").await.is_some_and(|r| {
                r.steps
                    .get("approve")
                    .is_some_and(|s| s.unit.status.as_str() == "waiting")
            })
        }
    })
    .await;
    // A new version does not change the run in flight.
    sys.put(
        &APPROVAL
            .replace("version: 1", "version: 2")
            .replace("'published'", "'v2'"),
    )
    .await;
    engine.kill9();
    let (code, _, err) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "no-such-run",
            "approve",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no workflow run no-such-run"), "{err}");
    let _engine = engine_process(nats);
    let (code, out, err) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "sig-wait",
            "approve",
            "--payload",
            r#"{"approved": true, "by": "ana"}"#,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let run = sys
        .wait_status("sig-wait", RunStatus::Completed, Duration::from_secs(40))
        .await;
    assert_eq!(
        run.output,
        Some(json!({"published": true, "by": "ana", "doc": "q3-report"}))
    );
    assert_eq!(run.definition, "approval.1");
    let result = sys
        .acme
        .fetch_result(&RequestId::new("sig-wait").unwrap())
        .await
        .unwrap();
    assert_eq!(result.ty, "io.agentry.workflow.completed");
    // Nobody signalled the short one: its wait timed out and the run failed.
    let run = sys
        .wait_status("sig-late", RunStatus::Failed, Duration::from_secs(40))
        .await;
    assert_eq!(
        run.steps["approve"].unit.error.as_ref().unwrap().code,
        "timeout"
    );
    assert_eq!(run.error.as_ref().unwrap().code, "step_failed");
    sys.parts.stop().await;
}

const CHAIN: &str = r#"
name: chain
version: 1
steps:
  - id: a
    capability: echo
    input: { n: input.n, sleep_ms: "150", counter_key: "run.id + '-a'" }
  - id: b
    capability: echo
    needs: [a]
    input: { n: "steps.a.output.echo.n + 1", sleep_ms: "150", counter_key: "run.id + '-b'" }
  - id: c
    capability: echo
    needs: [b]
    input: { n: "steps.b.output.echo.n + 1", sleep_ms: "150", counter_key: "run.id + '-c'" }
output: "steps.c.output.echo.n"
"#;

/// Waits for a completed result of every id; panics on any other outcome.
async fn all_completed(acme: &TenantClient, ids: &[String], limit: Duration) {
    eventually(limit, "every run completed", || async {
        let mut done = 0;
        for id in ids {
            if let Some(o) = acme
                .fetch_result(&RequestId::new(id.as_str()).unwrap())
                .await
            {
                assert_eq!(o.ty, "io.agentry.workflow.completed", "{id}: {:?}", o.data);
                done += 1;
            }
        }
        done == ids.len()
    })
    .await;
}

/// SIGKILL of the engine with 50 runs in flight, then a restart: all 50 complete with the right output, and no step runs to completion twice (side effects counted in the agent), one result each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_engine_with_50_runs_in_flight() {
    let sys = Sys::start_with(100, false).await;
    let nats = &sys.nats;
    sys.put(CHAIN).await;
    let mut engine = engine_process(nats);
    let ids: Vec<String> = (0..50).map(|i| format!("k9-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        sys.start_run(id, "chain", json!({"n": i})).await;
    }
    // Kill while runs are mid-way: some steps done, most not.
    eventually(Duration::from_secs(30), "runs under way", || async {
        sys.echo.executions.lock().map(|m| m.len()).unwrap_or(0) >= 30
    })
    .await;
    engine.kill9();
    let done_at_kill = sys.echo.executions.lock().map(|m| m.len()).unwrap();
    assert!(done_at_kill < 150, "everything finished before the kill");
    let _engine = engine_process(nats);
    all_completed(&sys.acme, &ids, Duration::from_secs(120)).await;
    for (i, id) in ids.iter().enumerate() {
        let o = sys
            .acme
            .fetch_result(&RequestId::new(id.as_str()).unwrap())
            .await
            .unwrap();
        assert_eq!(o.data["output"], json!(i + 2));
        for step in ["a", "b", "c"] {
            assert_eq!(
                sys.echo.executions_of(&format!("{id}-{step}")),
                1,
                "{id} step {step}"
            );
        }
    }
    let counts: HashMap<String, usize> =
        subject_counts(&sys.js, subject::RESULTS_STREAM, &sys.acme.results_all())
            .await
            .into_iter()
            .filter(|(s, _)| s.starts_with("agentry.results.acme.k9-"))
            .collect();
    assert_eq!(counts.len(), 50);
    assert!(counts.values().all(|n| *n == 1));
    sys.parts.stop().await;
}

/// Sum of the samples of `metric` in Prometheus text whose labels contain every `labels` fragment.
fn metric_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two engine replicas process 200 runs together: both start a share of them, every run completes exactly once (one result, one run.completed event, each step executed once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_200_runs() {
    let mut sys = Sys::start_with(100, false).await;
    let nats = &sys.nats;
    sys.put(&CHAIN.replace("sleep_ms: \"150\"", "sleep_ms: \"5\""))
        .await;
    let observers = [Observer::new(), Observer::new()];
    for obs in &observers {
        let (cfg, obs) = (nats.engine_config(), obs.clone());
        sys.parts
            .spawn(move |t| agentry_engine::run_with(cfg, obs, t));
    }
    eventually(Duration::from_secs(20), "both replicas ready", || {
        let obs = observers.clone();
        async move { obs[0].readiness().await.ready && obs[1].readiness().await.ready }
    })
    .await;
    let ids: Vec<String> = (0..200).map(|i| format!("two-{i}")).collect();
    let mut acks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let ev = client::workflow_request(
            &RequestId::new(id.as_str()).unwrap(),
            SOURCE,
            "chain",
            None,
            json!({"n": i}),
        );
        let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
        h.insert(
            event::header::MSG_ID,
            subject::request_key(
                Some(&sys.acme.tenant),
                &RequestId::new(id.as_str()).unwrap(),
            )
            .as_str(),
        );
        acks.push(
            sys.acme
                .js
                .publish_with_headers(sys.acme.requests_subject(), h, body)
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    all_completed(&sys.acme, &ids, Duration::from_secs(120)).await;
    let started: Vec<f64> = observers
        .iter()
        .map(|o| {
            metric_sum(
                &o.metrics_text(),
                "agentry_requests_total",
                &["workflow.requested", "accepted"],
            )
        })
        .collect();
    assert_eq!(started.iter().sum::<f64>(), 200.0, "{started:?}");
    eprintln!("runs started per replica: {started:?}");
    assert!(
        started.iter().all(|n| *n >= 20.0),
        "both replicas start runs: {started:?}"
    );
    let finished: f64 = observers
        .iter()
        .map(|o| {
            metric_sum(
                &o.metrics_text(),
                "agentry_workflow_runs_total",
                &["completed"],
            )
        })
        .sum();
    assert_eq!(finished, 200.0);
    let counts: HashMap<String, usize> =
        subject_counts(&sys.js, subject::RESULTS_STREAM, &sys.acme.results_all())
            .await
            .into_iter()
            .filter(|(s, _)| s.starts_with("agentry.results.acme.two-"))
            .collect();
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|n| *n == 1));
    let evs = events(&sys.js, None).await;
    let mut completed: HashMap<String, usize> = HashMap::new();
    for e in evs.iter().filter(|e| e.ty == "io.agentry.run.completed") {
        *completed
            .entry(e.data["run_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(completed.len(), 200);
    assert!(completed.values().all(|n| *n == 1), "a run completed twice");
    for id in &ids {
        for step in ["a", "b", "c"] {
            assert_eq!(
                sys.echo.executions_of(&format!("{id}-{step}")),
                1,
                "{id} {step}"
            );
        }
    }
    sys.parts.stop().await;
}

/// Largest number of half-open intervals `[start, end)` open at once.
fn max_overlap(intervals: &[(i64, i64)]) -> usize {
    let mut points: Vec<(i64, i32)> = intervals
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    points.sort();
    let (mut open, mut max) = (0i32, 0i32);
    for (_, d) in points {
        open += d;
        max = max.max(open);
    }
    max as usize
}

/// With at most 5 active runs per replica and 50 submitted, never more than 5 run at once (from the runs' start and end times), the limit is used, and all 50 complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runs_bounds_concurrency() {
    let sys = Sys::start_with(5, true).await;
    sys.put(
        &CHAIN
            .replace("name: chain", "name: short")
            .replace("sleep_ms: \"150\"", "sleep_ms: \"100\""),
    )
    .await;
    let ids: Vec<String> = (0..50).map(|i| format!("lim-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        sys.start_run(id, "short", json!({"n": i})).await;
    }
    all_completed(&sys.acme, &ids, Duration::from_secs(90)).await;
    let mut intervals = Vec::new();
    for id in &ids {
        let run = sys.state(id).await;
        intervals.push((
            run.created_at.timestamp_millis(),
            run.ended_at.unwrap().timestamp_millis(),
        ));
    }
    let max = max_overlap(&intervals);
    assert!(max <= 5, "{max} runs were active at once");
    assert!(max >= 4, "the limit was not used: at most {max} at once");
    sys.parts.stop().await;
}

/// A single task gets a one-step workflow's guarantees without run state: the agent's retries (fails twice, completes on attempt 3), a deadline (timeout result), exactly one result; no key in `agentry-runs`; and a lower median latency than a one-step workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_task_has_workflow_guarantees_without_run_state() {
    let sys = Sys::start().await;
    let submit = |input: Value, timeout_ms: Option<u64>| {
        let acme = sys.acme.clone();
        async move {
            let id = RequestId::generate();
            let ev = client::task_request(&id, SOURCE, "echo", input, timeout_ms);
            acme.submit(&ev, Duration::from_secs(30)).await.unwrap()
        }
    };
    let retried = submit(
        json!({"fail": "until_attempt", "fail_until_attempt": 3, "counter_key": "task-retry"}),
        None,
    )
    .await;
    assert_eq!(
        retried.ty, "io.agentry.task.completed",
        "{:?}",
        retried.data
    );
    assert_eq!(retried.data["attempts"], 3);
    let late = submit(
        json!({"sleep_ms": 4000, "counter_key": "task-late"}),
        Some(1000),
    )
    .await;
    assert_eq!(late.ty, "io.agentry.task.failed");
    assert_eq!(late.data["error"]["code"], "timeout");
    // The agent gives up at the deadline too; whatever it does, the first result stands alone.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for o in [&retried, &late] {
        let counts = subject_counts(
            &sys.js,
            subject::RESULTS_STREAM,
            &sys.acme
                .results_subject(&RequestId::new(o.request_id.as_str()).unwrap()),
        )
        .await;
        assert_eq!(counts.values().sum::<usize>(), 1, "{}", o.request_id);
    }
    sys.put("name: one\nversion: 1\nsteps:\n  - id: only\n    capability: echo\n    input: { x: input.x }\noutput: steps.only.output.echo.x\n").await;
    let (mut task_ms, mut wf_ms) = (Vec::new(), Vec::new());
    for i in 0..15 {
        let t = std::time::Instant::now();
        let o = submit(json!({"x": i}), None).await;
        task_ms.push(t.elapsed().as_micros());
        assert!(o.is_success());
        let t = std::time::Instant::now();
        let o = sys.run("one", json!({"x": i})).await;
        wf_ms.push(t.elapsed().as_micros());
        assert_eq!(o.data["output"], i);
    }
    task_ms.sort();
    wf_ms.sort();
    assert!(
        task_ms[7] < wf_ms[7],
        "median task {} µs, one-step workflow {} µs",
        task_ms[7],
        wf_ms[7]
    );
    // Tasks leave no run state: only the 15 workflow runs are in agentry-runs.
    let kv = sys.js.get_key_value(subject::RUNS_BUCKET).await.unwrap();
    let keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    assert_eq!(keys.len(), 15);
    assert!(!keys.contains(&key(&retried.request_id)) && !keys.contains(&key(&late.request_id)));
    sys.parts.stop().await;
}

const LEAF: &str = r#"
name: leaf
version: 1
steps:
  - id: double
    capability: echo
    input: { x: "input.x * 2" }
output: "steps.double.output.echo.x"
"#;

const PARENT: &str = r#"
name: parent
version: 1
steps:
  - id: each
    capability: echo
    foreach: input.xs
    max_parallel: 2
    input: { x: "item * 10", i: index, sleep_ms: "250" }
  - id: child
    workflow: { name: leaf }
    needs: [each]
    input: "{'x': size(steps.each.output)}"
  - id: children
    workflow: { name: leaf, version: 1 }
    foreach: "[1, 2, 3]"
    input: "{'x': item}"
output: "{'xs': steps.each.output.map(o, o.echo.x), 'child': steps.child.output, 'children': steps.children.output}"
"#;

/// `foreach` fans out with at most `max_parallel` elements in flight and gathers outputs in order; a child workflow step completes with the child run's output, also per element of a foreach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreach_and_child_workflows() {
    let sys = Sys::start().await;
    sys.put(LEAF).await;
    sys.put(PARENT).await;
    let out = sys.run("parent", json!({"xs": [1, 2, 3, 4, 5, 6]})).await;
    assert_eq!(out.ty, "io.agentry.workflow.completed", "{:?}", out.data);
    assert_eq!(
        out.data["output"],
        json!({"xs": [10, 20, 30, 40, 50, 60], "child": 12, "children": [2, 4, 6]})
    );
    let run = sys.state(&out.request_id).await;
    let items = &run.steps["each"].items;
    assert_eq!(items.len(), 6);
    let windows: Vec<(i64, i64)> = items
        .iter()
        .map(|u| {
            (
                u.attempt_started_at.unwrap().timestamp_millis(),
                u.ended_at.unwrap().timestamp_millis(),
            )
        })
        .collect();
    assert_eq!(max_overlap(&windows), 2, "{windows:?}");
    // The child is a run of its own, pointing back at its parent step.
    let child_id = run.steps["child"].unit.child_run.clone().unwrap();
    assert_eq!(child_id, key(&format!("{}-child-1", out.request_id)));
    let child = sys.state(&child_id).await;
    assert_eq!(child.status, RunStatus::Completed);
    assert_eq!(child.parent.as_ref().unwrap().run_id, key(&out.request_id));
    assert_eq!(child.depth, 1);
    let evs = events(&sys.js, Some(&child_id)).await;
    assert_eq!(
        evs.last().unwrap().data["parent_run_id"],
        out.request_id.as_str()
    );
    // A parent whose child fails fails too.
    sys.put("name: bad_leaf\nversion: 1\nsteps:\n  - id: x\n    capability: echo\n    input: { fail: \"'permanent'\" }\n").await;
    sys.put("name: bad_parent\nversion: 1\nsteps:\n  - id: c\n    workflow: { name: bad_leaf }\n")
        .await;
    let out = sys.run("bad_parent", json!({})).await;
    assert_eq!(out.ty, "io.agentry.workflow.failed", "{:?}", out.data);
    assert!(
        out.data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("child run"),
        "{:?}",
        out.data
    );
    sys.parts.stop().await;
}

/// A workflow request delivered twice (past JetStream's dedup) starts one run with one result; an unknown workflow or run is rejected with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_requests_and_rejections() {
    let sys = Sys::start().await;
    sys.put(CHAIN).await;
    let id = RequestId::new("dup-1").unwrap();
    let ev = client::workflow_request(&id, SOURCE, "chain", None, json!({"n": 1}));
    for msg_id in ["dup-1", "dup-1-again"] {
        let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
        h.insert(event::header::MSG_ID, msg_id);
        sys.acme
            .js
            .publish_with_headers(sys.acme.requests_subject(), h, body)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    sys.wait_status("dup-1", RunStatus::Completed, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sys.echo.executions_of("dup-1-a"), 1);
    let evs = events(&sys.js, Some("dup-1")).await;
    assert_eq!(
        evs.iter()
            .filter(|e| e.ty == "io.agentry.run.started")
            .count(),
        1
    );
    let results = sys.acme.results_subject(&id);
    let counts = subject_counts(&sys.js, subject::RESULTS_STREAM, &results).await;
    assert_eq!(counts.get(&results), Some(&1));
    let out = sys.run("no_such_workflow", json!({})).await;
    assert_eq!(out.ty, "io.agentry.request.rejected");
    assert_eq!(out.data["reason"], "unknown_workflow");
    let id = RequestId::generate();
    let ev = event::new_event(
        id.as_str(),
        SOURCE,
        "io.agentry.workflow.cancel",
        json!({"run_id": "nope"}),
    );
    let out = sys.acme.submit(&ev, Duration::from_secs(20)).await.unwrap();
    assert_eq!(out.data["reason"], "unknown_run");
    sys.put("name: typed\nversion: 1\ninput_schema: { type: object, required: [n] }\nsteps:\n  - id: a\n    capability: echo\n").await;
    let out = sys.run("typed", json!({"m": 1})).await;
    assert_eq!(out.data["reason"], "schema_invalid", "{:?}", out.data);
    sys.parts.stop().await;
}

/// A step output above 256 KiB is kept in the object store `agentry-artifacts` and the run state holds a reference; later steps and the output still see the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outputs_live_in_the_object_store() {
    let sys = Sys::start().await;
    sys.put("name: big\nversion: 1\nsteps:\n  - id: make\n    capability: echo\n    input: { message: input.text }\n  - id: measure\n    capability: echo\n    needs: [make]\n    input: { len: size(steps.make.output.echo.message) }\noutput: steps.measure.output.echo.len\n").await;
    let text = "x".repeat(300 * 1024);
    let out = sys.run("big", json!({"text": text})).await;
    assert_eq!(out.ty, "io.agentry.workflow.completed", "{:?}", out.data);
    assert_eq!(out.data["output"], 300 * 1024);
    let run = sys.state(&out.request_id).await;
    let unit = &run.steps["make"].unit;
    assert!(unit.output.is_none());
    let r = unit.output_ref.as_ref().expect("artifact reference");
    assert_eq!(r.bucket, "agentry-artifacts");
    let store = sys.js.get_object_store("agentry-artifacts").await.unwrap();
    let info = store.info(&r.name).await.unwrap();
    assert_eq!(info.size as u64, r.bytes);
    assert!(r.bytes > 300 * 1024);
    sys.parts.stop().await;
}

/// `agentry workflow list|get|run --wait|runs|show` print definitions, results and a run's step table (also as JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_shows() {
    let sys = Sys::start().await;
    let nats = &sys.nats;
    sys.put(CHAIN).await;
    sys.put(&CHAIN.replace("version: 1", "version: 2")).await;
    let (code, out, _) = cli(nats, &["--json", "workflow", "list"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "chain");
    assert_eq!(v[0]["versions"], json!([1, 2]));
    let (code, out, _) = cli(
        nats,
        &["--json", "workflow", "get", "chain", "--version", "1"],
    )
    .await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["steps"].as_array().unwrap().len(), 3);
    let (code, out, err) = cli(
        nats,
        &[
            "--json",
            "workflow",
            "run",
            "--tenant",
            "acme",
            "chain",
            "--input",
            r#"{"n": 40}"#,
            "--wait",
            "--id",
            "cli-run",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["output"], 42);
    assert_eq!(v["data"]["version"], 2);
    let (code, out, _) = cli(
        nats,
        &[
            "--json",
            "workflow",
            "runs",
            "--tenant",
            "acme",
            "--status",
            "completed",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["run_id"], "cli-run");
    let (code, out, _) = cli(nats, &["workflow", "show", "--tenant", "acme", "cli-run"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("status    completed"), "{out}");
    let table: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("STEP")).collect();
    assert!(
        table[0].contains("STATUS")
            && table[0].contains("ATTEMPTS")
            && table[0].contains("DURATION")
            && table[0].contains("ERROR"),
        "{out}"
    );
    assert_eq!(table.len(), 4, "{out}");
    assert!(
        table[1].starts_with("a ") && table[1].contains("completed"),
        "{out}"
    );
    let (code, _, err) = cli(nats, &["workflow", "show", "--tenant", "acme", "missing"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no workflow run missing"));
    sys.parts.stop().await;
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Waits for a run's step to be waiting for its signal.
async fn wait_for_signal_step(js: &async_nats::jetstream::Context, run: &str, step: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{run} waiting at {step}"),
        || {
            let js = js.clone();
            async move {
                let state = run_state(&js, run).await;
                if let Some(s) = &state
                    && s.status.is_terminal()
                {
                    panic!(
                        "run {run} ended {} ({:?}) before waiting at {step}",
                        s.status.as_str(),
                        s.error
                    );
                }
                state.is_some_and(|r| {
                    r.steps
                        .get(step)
                        .is_some_and(|s| s.unit.status.as_str() == "waiting")
                })
            }
        },
    )
    .await;
}

/// The example workflows load as `agentry up` loads them, and the four domain examples run end to end on the real agents: trip planning (weather -> planning, also as a child run awaiting approval), customer escalation (direct, and escalated with an approval signal), incident response (contained, resolved by signal; and a cancelled run whose quarantine is released by compensation), data report (processing -> statistics and a foreach of charts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_examples_run_on_the_real_agents() {
    let sys = Sys::start().await;
    let nats = &sys.nats;
    let fixture = agentry_agent::agents::weather::fixture::Server::start()
        .await
        .unwrap();
    let mut parts = InProcess::new();
    // One agent process per kind, each as its own user (as deployed).
    for kind in [
        "weather",
        "planning",
        "customer_service",
        "data_analysis",
        "security_monitor",
    ] {
        let mut cfg = nats.agent_config(kind);
        cfg.builtin.weather_base_url = Some(fixture.base_url());
        parts.spawn(move |t| agentry_agent::run_with(cfg, Observer::new(), t));
    }
    let loaded = agentry_ctl::workflow::load_examples(&sys.js).await.unwrap();
    for key in [
        "trip_planning.1",
        "trip_with_approval.1",
        "customer_escalation.1",
        "incident_response.1",
        "data_report.1",
        "multi_city_forecast.1",
        "echo_diamond.1",
    ] {
        assert_eq!(
            loaded.get(key).map(String::as_str),
            Some("created"),
            "{key}: {loaded:?}"
        );
    }
    let tasks = json!([
        {"id": "pack", "duration_h": 1},
        {"id": "hike", "duration_h": 3, "depends_on": ["pack"], "outdoor": true},
        {"id": "museum", "duration_h": 2, "depends_on": ["pack"]}
    ]);
    let (trip, report, direct) = tokio::join!(
        sys.run("trip_planning", json!({"city": "Berlin", "tasks": tasks})),
        sys.run("data_report", json!({
            "csv": "month,sales,visits\nJan,10,100\nFeb,12,130\nMar,15,150\nApr,11,120\n",
            "x": "month", "y": ["sales", "visits"], "title": "Q1"
        })),
        sys.run("customer_escalation", json!({"message": "How do I reset my password? The login page says my email is unknown.", "customer_id": "cust-42", "tier": "standard"})),
    );
    // Trip planning.
    assert_eq!(trip.ty, "io.agentry.workflow.completed", "{:?}", trip.data);
    let plan = &trip.data["output"]["plan"];
    assert_eq!(trip.data["output"]["city"], "Berlin");
    assert_eq!(plan["schedule"].as_array().unwrap().len(), 3, "{plan}");
    assert!(plan["total_duration_h"].as_f64().unwrap() >= 4.0, "{plan}");
    assert!(
        !trip.data["output"]["forecast"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Data report: 4 rows, statistics of both columns, a bar and a line chart.
    assert_eq!(
        report.ty, "io.agentry.workflow.completed",
        "{:?}",
        report.data
    );
    let out = &report.data["output"];
    assert_eq!(out["rows"], 4);
    assert_eq!(out["columns"], json!(["month", "sales", "visits"]));
    assert!(
        out["statistics"]["correlation"]["pearson"].is_array(),
        "{out}"
    );
    assert_eq!(out["charts"].as_array().unwrap().len(), 2);
    assert!(out["charts"][0]["bytes"].as_u64().unwrap() > 0);
    // Customer service, direct path.
    assert_eq!(
        direct.ty, "io.agentry.workflow.completed",
        "{:?}",
        direct.data
    );
    assert_eq!(direct.data["output"]["path"], "direct", "{:?}", direct.data);
    assert!(direct.data["output"]["resolution"]["ticket_id"].is_string());
    let run = sys.state(&direct.request_id).await;
    assert_eq!(run.steps["escalate"].unit.status.as_str(), "skipped");
    // Customer service, escalated: waits for a human's approval.
    sys.start_run("cs-escalated", "customer_escalation", json!({
        "message": "This is UNACCEPTABLE!!! Order #5583021 is three weeks late, nobody answers and I want to complain to a manager.",
        "customer_id": "acme-corp", "tier": "enterprise"
    })).await;
    wait_for_signal_step(&sys.js, "cs-escalated", "approval").await;
    let (code, out, err) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "cs-escalated",
            "approve",
            "--payload",
            r#"{"approved": true, "approver": "lee", "note": "refund the shipping"}"#,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let run = sys
        .wait_status(
            "cs-escalated",
            RunStatus::Completed,
            Duration::from_secs(30),
        )
        .await;
    let out = run.output.unwrap();
    assert_eq!(out["path"], "escalated", "{out}");
    assert_eq!(out["approved"], true);
    assert!(
        ["p1", "p2"].contains(&out["priority"].as_str().unwrap()),
        "{out}"
    );
    assert!(out["ticket_id"].is_string());
    // Incident response: a brute force that succeeded, from one source, just now.
    let t0 = now_ms() - 60_000;
    let mut events: Vec<Value> = (0..8)
        .map(|i| json!({"ts": t0 + i * 2_000, "source": "198.51.100.23", "kind": "auth_failure", "user": "root"}))
        .collect();
    events.push(json!({"ts": t0 + 20_000, "source": "198.51.100.23", "kind": "auth_success", "user": "root"}));
    sys.start_run(
        "ir-resolved",
        "incident_response",
        json!({"events": events}),
    )
    .await;
    sys.start_run(
        "ir-cancelled",
        "incident_response",
        json!({"events": events}),
    )
    .await;
    wait_for_signal_step(&sys.js, "ir-resolved", "resolve").await;
    wait_for_signal_step(&sys.js, "ir-cancelled", "resolve").await;
    let (code, _, _) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "ir-resolved",
            "resolve",
            "--payload",
            r#"{"note": "password rotated"}"#,
        ],
    )
    .await;
    assert_eq!(code, 0);
    let (code, _, _) = cli(
        nats,
        &[
            "workflow",
            "cancel",
            "--tenant",
            "acme",
            "ir-cancelled",
            "--reason",
            "false positive",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let run = sys
        .wait_status("ir-resolved", RunStatus::Completed, Duration::from_secs(30))
        .await;
    let out = run.output.unwrap();
    assert_eq!(out["source"], "198.51.100.23", "{out}");
    assert!(
        ["high", "critical"].contains(&out["level"].as_str().unwrap()),
        "{out}"
    );
    assert_eq!(out["contained"], true);
    assert_eq!(out["notified"], true);
    assert_eq!(out["status"], "closed");
    let run = sys
        .wait_status(
            "ir-cancelled",
            RunStatus::Cancelled,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(run.steps["contain"].unit.status.as_str(), "compensated");
    let evs = events_of(&sys.js, "ir-cancelled").await;
    let released = evs
        .iter()
        .find(|e| e.ty == "io.agentry.step.compensated")
        .expect("compensation event");
    assert_eq!(released.data["step"], "contain");
    assert_eq!(released.data["capability"], "incident_response");
    // The child-run variant of trip planning, approved by the traveller.
    sys.start_run(
        "trip-child",
        "trip_with_approval",
        json!({"city": "Berlin", "tasks": tasks}),
    )
    .await;
    wait_for_signal_step(&sys.js, "trip-child", "approval").await;
    let (code, _, _) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "trip-child",
            "approve",
            "--payload",
            r#"{"approved": true}"#,
        ],
    )
    .await;
    assert_eq!(code, 0);
    let run = sys
        .wait_status("trip-child", RunStatus::Completed, Duration::from_secs(30))
        .await;
    let out = run.output.unwrap();
    assert_eq!(out["approved"], true);
    assert_eq!(out["plan"]["schedule"].as_array().unwrap().len(), 3);
    parts.stop().await;
    fixture.stop().await.ok();
    sys.parts.stop().await;
}

async fn events_of(js: &async_nats::jetstream::Context, run: &str) -> Vec<Lifecycle> {
    events(js, Some(run)).await
}
