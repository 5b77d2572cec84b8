//! The built-in weather, planning and data_analysis agents end to end: a
//! real nats-server, the engine and the agents in-process, the weather agent
//! pointed at the in-process Open-Meteo fixture. Under the production
//! accounts: each agent kind runs as its own role's user (one agent process
//! per kind, as deployed), every request comes from tenant `acme` on
//! `agentry.requests.acme`, inspection is done as `admin`.

use std::path::PathBuf;
use std::time::Duration;

use agentry::client::{self, Outcome};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry_tests::{AuthServer, Redis, TenantClient, eventually, repo_root, test_settings};
use agentry_weather_fixture::{FixtureControl, Server};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod weather;

const SOURCE: &str = "/tests/builtin-agents";
const COMPLETED: &str = "io.agentry.task.completed";
const FAILED: &str = "io.agentry.task.failed";
/// The capabilities of the agents under test.
const CAPABILITIES: [&str; 6] = [
    "weather_current",
    "weather_forecast",
    "plan_tasks",
    "data_processing",
    "statistical_analysis",
    "visualization",
];
/// A fixed fixture clock: 13:07 in Berlin.
const FROZEN: &str = "2026-01-15T12:07:00Z";

/// The agent kinds under test, one process (and NATS user) each.
const KINDS: [&str; 4] = ["weather", "planning", "data_analysis", "echo"];

/// nats-server with the production accounts and the topology, the weather
/// fixture, the engine and the agents of [`KINDS`], all stopped by `stop`.
struct Stack {
    _nats: AuthServer,
    /// Tenant `acme`, the client.
    acme: TenantClient,
    /// Admin, for inspection.
    js: async_nats::jetstream::Context,
    fixture: Server,
    token: CancellationToken,
    handles: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    async fn start() -> Self {
        Self::start_with(test_settings(), |_| {}).await
    }

    /// `topology` sets the JetStream topology; `tweak` adjusts the agent
    /// config (weather settings, Redis).
    async fn start_with(
        topology: agentry::topology::Settings,
        tweak: impl FnOnce(&mut agentry_agent::Config),
    ) -> Self {
        let nats = AuthServer::start();
        let (_admin, js) = nats.admin().await;
        agentry::topology::ensure(&js, &agentry::topology::Topology::new(&topology))
            .await
            .unwrap();
        let control = FixtureControl::new();
        control.freeze_clock(FROZEN.parse().unwrap());
        let fixture = Server::start_with(control).await.unwrap();

        let mut agents = agentry_agent::Config::for_url(&nats.url, "");
        agents.topology = topology;
        agents.heartbeat = Duration::from_secs(1);
        agents.builtin.weather_base_url = Some(fixture.base_url());
        tweak(&mut agents);

        let token = CancellationToken::new();
        let mut engine = agentry_engine::Config::for_url(&nats.url);
        engine.nats = nats.nats("engine");
        let mut observers = vec![Observer::new()];
        let mut handles = vec![tokio::spawn(agentry_engine::run_with(
            engine,
            observers[0].clone(),
            token.child_token(),
        ))];
        for kind in KINDS {
            let mut cfg = agents.clone();
            cfg.agents = kind.into();
            cfg.nats = nats.agent_nats(kind);
            let obs = Observer::new();
            observers.push(obs.clone());
            handles.push(tokio::spawn(agentry_agent::run_with(
                cfg,
                obs,
                token.child_token(),
            )));
        }
        eventually(Duration::from_secs(30), "engine and agents ready", || {
            let observers = observers.clone();
            async move {
                for o in &observers {
                    if !o.readiness().await.ready {
                        return false;
                    }
                }
                true
            }
        })
        .await;
        let acme = nats.tenant("acme").await;
        Self {
            _nats: nats,
            acme,
            js,
            fixture,
            token,
            handles,
        }
    }

    fn control(&self) -> &FixtureControl {
        self.fixture.control()
    }

    /// Submits a task as tenant `acme` and waits for its result.
    async fn submit(&self, capability: &str, input: Value, timeout_ms: Option<u64>) -> Outcome {
        let id = RequestId::generate();
        let event = client::task_request(&id, SOURCE, capability, input, timeout_ms);
        self.acme
            .submit(&event, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{capability}: {e}"))
    }

    async fn stop(self) {
        self.token.cancel();
        for h in self.handles {
            match tokio::time::timeout(Duration::from_secs(40), h).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("component failed: {e:#}"),
                Ok(Err(e)) => panic!("component panicked: {e}"),
                Err(_) => panic!("component did not stop within 40s"),
            }
        }
    }
}

/// The output of a completed result, after checking it against the capability's output schema.
#[track_caller]
fn output_of(capability: &str, outcome: &Outcome) -> Value {
    assert_eq!(outcome.ty, COMPLETED, "{capability}: {}", outcome.data);
    let output = outcome.data["output"].clone();
    let validator = agentry::schema::global()
        .capability_output(capability)
        .unwrap_or_else(|| panic!("no output schema for {capability}"));
    if let Err(e) = agentry::schema::check(validator, &output) {
        panic!("{capability} output does not match its schema: {e}\n{output}");
    }
    output
}

/// The error object of a failed result.
#[track_caller]
fn error_of(outcome: &Outcome) -> Value {
    assert_eq!(outcome.ty, FAILED, "{}", outcome.data);
    outcome.data["error"].clone()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[track_caller]
fn close(actual: &Value, expected: f64, tol: f64) {
    let a = f(actual);
    assert!((a - expected).abs() <= tol, "{a} is not {expected} ± {tol}");
}

/// Task examples of the integrated capabilities, sorted: (file name, capability, data).
fn examples(invalid: bool) -> Vec<(String, String, Value)> {
    let dir: PathBuf = repo_root().join("schemas/examples/tasks");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.ends_with(".invalid.json") != invalid {
            continue;
        }
        let data: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cap = data["capability"].as_str().unwrap().to_owned();
        if CAPABILITIES.contains(&cap.as_str()) {
            out.push((name, cap, data));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Values an example's output must have, worked out by hand from its input
/// (or from the published figures of Anscombe's quartet).
fn check_example(name: &str, out: &Value) {
    let stem = name.trim_end_matches(".json");
    match stem {
        "weather_current.berlin" => {
            assert_eq!(out["location"]["name"], "Berlin");
            assert_eq!(out["location"]["country_code"], "DE");
            assert_eq!(out["units"]["temperature"], "°C");
            assert_eq!(out["fixture"], true, "fixture answers say so");
        }
        "weather_current.london-ontario" => {
            assert_eq!(out["location"]["name"], "London");
            assert_eq!(out["location"]["country_code"], "CA");
        }
        "weather_current.tokyo-coordinates-imperial" => {
            assert_eq!(out["location"]["name"], Value::Null);
            close(&out["location"]["latitude"], 35.6895, 1e-9);
            assert_eq!(out["units"]["temperature"], "°F");
        }
        "weather_forecast.new-york-coordinates-daily" => {
            assert_eq!(out["daily"].as_array().unwrap().len(), 5);
            assert!(out.get("hourly").is_none(), "hourly: false");
            assert_eq!(out["location"]["timezone"], "America/New_York");
        }
        "weather_forecast.paris-2-days-imperial" => {
            assert_eq!(out["location"]["name"], "Paris");
            assert_eq!(out["location"]["country_code"], "FR");
            assert_eq!(out["daily"].as_array().unwrap().len(), 2);
            assert_eq!(out["hourly"]["time"].as_array().unwrap().len(), 48);
            assert_eq!(out["daily"][0]["date"], "2026-01-15");
            assert_eq!(out["units"]["temperature"], "°F");
        }
        "weather_forecast.san-francisco" => {
            assert_eq!(out["location"]["name"], "San Francisco");
            assert_eq!(out["daily"].as_array().unwrap().len(), 3, "default days");
        }
        "plan_tasks.house" => {
            // permit 16 + foundation 24 + frame 40 + electrical 16 + drywall 24 + inspection 4.
            close(&out["cpm_duration_h"], 124.0, 1e-9);
            assert_eq!(
                out["critical_path"],
                json!([
                    "permit",
                    "foundation",
                    "frame",
                    "electrical",
                    "drywall",
                    "inspection"
                ])
            );
            // Landscaping (2 crew from hour 24) beside the foundation (3) exceeds 4 crew.
            assert_eq!(out["levelled"], true);
            close(&out["total_duration_h"], 156.0, 1e-9);
            assert_eq!(out["start"], "2025-03-03T08:00:00+01:00");
        }
        "plan_tasks.outdoor-weather" => {
            // Wet hours (> 40 %) are 3..6; the trench (3 h from hour 2) moves to hour 6.
            assert_eq!(out["weather_adjusted"], json!(["dig"]));
            let dig = out["schedule"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["id"] == "dig")
                .unwrap();
            close(&dig["start_h"], 6.0, 1e-9);
            close(&out["total_duration_h"], 11.0, 1e-9);
            assert_eq!(out["weather"]["wet_hours"], 3);
        }
        "plan_tasks.single-crane" => {
            assert_eq!(out["critical_path"], json!(["B", "D"]));
            close(&out["cpm_duration_h"], 5.0, 1e-9);
            // One crane: B 0-3, then A 3-5, then C 5-6.
            close(&out["total_duration_h"], 6.0, 1e-9);
            assert_eq!(out["levelled"], true);
        }
        "data_processing.records" => {
            // Resolved with minutes: tickets 101 and 104.
            assert_eq!(out["row_count"], 2);
            assert_eq!(out["rows"][0]["ticket"], 101);
            assert_eq!(out["rows"][1]["ticket"], 104);
        }
        "data_processing.sales-csv" => {
            // Before March: north has 10 + 7 units at prices 1.5 and 2.0.
            let north = out["groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["key"]["region"] == "north")
                .unwrap();
            assert_eq!(north["count"], 2);
            close(&north["values"]["sum_units"], 17.0, 1e-9);
            close(&north["values"]["avg_price"], 1.75, 1e-9);
        }
        "data_processing.tab-separated-no-header" => {
            assert_eq!(out["row_count"], 2);
            assert_eq!(out["dropped_rows"], 1);
        }
        "statistical_analysis.anscombe" => {
            // Anscombe (1973), set I: mean x 9, mean y 7.50, r 0.816, y = 3.00 + 0.500 x.
            close(&out["descriptive"]["x"]["mean"], 9.0, 1e-12);
            close(&out["descriptive"]["y"]["mean"], 7.5009, 1e-4);
            close(&out["correlation"]["pearson"][0][1], 0.8164, 1e-4);
            close(
                &out["regression"]["coefficients"][0]["estimate"],
                0.5001,
                1e-4,
            );
            close(&out["regression"]["intercept"]["estimate"], 3.0001, 1e-4);
        }
        "statistical_analysis.multiple-regression" => {
            assert_eq!(out["regression"]["n"], 10);
            assert_eq!(
                out["regression"]["coefficients"].as_array().unwrap().len(),
                2
            );
        }
        "statistical_analysis.records-outliers" => {
            // Host d's 95 ms is far above Q3 + 1.5 IQR.
            let lat = &out["outliers"]["columns"]["latency_ms"];
            assert_eq!(lat["values"], json!([95.0]));
            assert_eq!(lat["rows"], json!([3]));
            close(&out["descriptive"]["latency_ms"]["mean"], 156.4 / 6.0, 1e-9);
        }
        "visualization.bar-from-data" => {
            assert_eq!(out["series_count"], 2);
            let svg = out["svg"].as_str().unwrap();
            assert_eq!(svg.matches("class=\"series\"").count(), 2);
            assert_eq!(out["bytes"], svg.len());
        }
        "visualization.histogram" => {
            assert_eq!(out["series_count"], 1);
            assert_eq!(
                (out["width"].clone(), out["height"].clone()),
                (json!(640), json!(400))
            );
            let edges = out["bin_edges"].as_array().unwrap();
            close(&edges[0], 11.0, 1e-9);
            close(edges.last().unwrap(), 60.0, 1e-9);
        }
        "visualization.line-two-series" => {
            assert_eq!(out["series_count"], 2);
            let svg = out["svg"].as_str().unwrap();
            assert!(
                svg.contains("Weekly signups &lt;beta&gt; &amp; trials"),
                "title escaped"
            );
        }
        other => panic!("no expectations for example {other}: add them here"),
    }
}

/// Every valid task example of weather_*, plan_tasks and the data_analysis
/// capabilities completes with a schema-valid output holding the right values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_valid_example_completes_with_correct_output() {
    let stack = Stack::start().await;
    let list = examples(false);
    let caps: std::collections::BTreeSet<&str> = list.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        caps.len(),
        CAPABILITIES.len(),
        "an example per capability: {caps:?}"
    );
    for (name, cap, data) in &list {
        let outcome = stack
            .submit(cap, data["input"].clone(), data["timeout_ms"].as_u64())
            .await;
        let out = output_of(cap, &outcome);
        check_example(name, &out);
    }
    stack.stop().await;
}

/// Every invalid task example of those capabilities fails with `invalid_input`
/// (the runtime checks the input schema before the handler runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_example_fails_with_invalid_input() {
    let stack = Stack::start().await;
    let list = examples(true);
    assert!(list.len() >= 5, "invalid examples: {}", list.len());
    let before = stack.control().request_count();
    for (name, cap, data) in &list {
        let outcome = stack.submit(cap, data["input"].clone(), None).await;
        let error = error_of(&outcome);
        assert_eq!(error["code"], "invalid_input", "{name}: {error}");
        assert_eq!(error["retryable"], false, "{name}");
    }
    assert_eq!(
        stack.control().request_count(),
        before,
        "invalid weather input never reaches Open-Meteo"
    );
    stack.stop().await;
}
