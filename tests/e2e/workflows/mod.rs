//! The durable workflow engine end to end (issue 4): a real nats-server, the
//! engine in-process or as `agentry-engine` child processes, echo agents
//! whose executions are counted, and the built-in agents for the domain
//! examples. Under the production accounts: the engine and each agent kind
//! as their roles, runs started by tenant `acme` (run keys `acme.<id>`,
//! results on `agentry.results.acme.<id>`), definitions, inspection and
//! the CLI as `admin`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use agentry::client::{self, Outcome};
use agentry::event::{self, Limits, Mode};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::subject;
use agentry::workflow::state::{RunState, RunStatus};
use agentry_echo::Echo;
use agentry_tests::*;
use cloudevents::AttributesReader;
use futures::StreamExt;
use serde_json::{Value, json};

mod dag;
mod examples;
mod features;
mod restarts;
mod retries;

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

    /// [`System::builder`] with an echo agent (32 at once) and, when
    /// `engine`, an engine running at most `max_runs` runs.
    async fn start_with(max_runs: usize, engine: bool) -> Self {
        let mut builder = System::builder().echo(32);
        if engine {
            builder = builder.engine(move |c| c.max_runs = max_runs);
        }
        let System {
            server: nats,
            admin: js,
            parts,
            echo,
        } = builder.start().await;
        let acme = nats.tenant(TENANT).await;
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
