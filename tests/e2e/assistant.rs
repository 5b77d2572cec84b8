//! The `assistant` agent against the offline LLM fixture
//! (`agentry_tests::llm`), under the production accounts: the assistant
//! connects as `agent_assistant`, the weather and planning agents as their
//! own users, the goal comes from tenant acme. Nothing reaches the internet:
//! the model is scripted and the weather comes from the Open-Meteo fixture.

use std::time::Duration;

use agentry::client::{Outcome, task_request};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry_tests::llm::{self, LlmFixture, Reply, Turn, answer, calls, last_tool_result, with};
use agentry_tests::*;
use serde_json::{Value, json};

/// Engine, monitor, and one agent process with `kinds`; the weather agent
/// (if any) on the Open-Meteo fixture, the assistant (if any) on `llm`.
struct Stack {
    sys: System,
    agents: Observer,
    _weather: agentry_weather_fixture::Server,
}

impl Stack {
    async fn start(kinds: &str, llm_url: Option<String>) -> Self {
        let mut sys = System::builder().engine(|_| {}).monitor().start().await;
        let weather = agentry_weather_fixture::Server::start().await.unwrap();
        let mut cfg = sys.server.agent_config(kinds);
        cfg.builtin.weather_base_url = Some(weather.base_url());
        cfg.builtin.llm_base_url = llm_url;
        cfg.builtin.llm_model = Some("fixture-model".into());
        let agents = Observer::new();
        let obs = agents.clone();
        sys.parts
            .spawn(move |t| agentry_agent::run_with(cfg, obs, t));
        Self {
            sys,
            agents,
            _weather: weather,
        }
    }

    /// The three agents of the goal tests, all registered.
    async fn full(llm: &LlmFixture) -> Self {
        let s = Self::start("weather,planning,assistant", Some(llm.base_url())).await;
        for cap in ["assistant", "weather_forecast", "plan_tasks"] {
            wait_for_agents(&s.sys.admin, cap, 1).await;
        }
        s
    }

    async fn goal(&self, input: Value) -> Outcome {
        let acme = self.sys.tenant("acme").await;
        let id = RequestId::generate();
        let ev = task_request(&id, "/tests/assistant", "assistant", input, None);
        acme.submit(&ev, Duration::from_secs(60))
            .await
            .expect("a result for the goal")
    }
}

/// The value of the agents' series `name` whose labels include `label`
/// (`kind="prompt"`), if it exists.
fn metric(obs: &Observer, name: &str, label: &str) -> Option<f64> {
    obs.metrics_text().lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        labels.contains(label).then(|| value.parse().ok())?
    })
}

/// The plan input a scripted model builds from a forecast.
fn plan_with(forecast: Value) -> Value {
    json!({
        "tasks": [
            {"id": "dig", "duration_h": 3, "outdoor": true},
            {"id": "plant", "duration_h": 2, "depends_on": ["dig"], "outdoor": true}
        ],
        "weather": {"forecast": forecast, "max_precipitation_probability": 60}
    })
}

/// A goal that needs `weather_forecast` then `plan_tasks`: both run as
/// delegations in that order (the plan built from the forecast the model was
/// shown), the answer and the summed usage come back, the fixture was
/// offered both tools with their schemas, and the token metrics moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_runs_weather_then_planning_and_answers() {
    let llm = LlmFixture::start(vec![
        calls(&[("weather_forecast", json!({"city": "Berlin", "days": 2}))]),
        with(|req| match last_tool_result(req) {
            Some(forecast) if forecast.get("hourly").is_some() => {
                Reply::Calls(vec![("plan_tasks".into(), plan_with(forecast))])
            }
            other => Reply::Answer(format!("no forecast was shown: {other:?}")),
        }),
        answer("Dig and plant in Berlin when it is dry; the plan is attached."),
    ])
    .await;
    let stack = Stack::full(&llm).await;
    let out = stack
        .goal(json!({"goal": "Plan digging and planting in Berlin around the rain"}))
        .await;
    assert_eq!(out.ty, "io.agentry.task.completed", "{:#}", out.data);
    let o = &out.data["output"];
    assert_eq!(
        o["answer"],
        "Dig and plant in Berlin when it is dry; the plan is attached."
    );
    assert_eq!(o["model"], "fixture-model");
    let steps = o["steps"].as_array().unwrap();
    let tools: Vec<&str> = steps.iter().filter_map(|s| s["tool"].as_str()).collect();
    assert_eq!(tools, ["weather_forecast", "plan_tasks"], "{o:#}");
    assert_eq!(steps[0]["output"]["fixture"], true, "offline weather");
    assert!(
        steps[0]["output"]["location"]
            .to_string()
            .contains("Berlin"),
        "{:#}",
        steps[0]["output"]["location"]
    );
    let schedule = &steps[1]["output"];
    assert!(schedule["schedule"].is_array(), "a schedule: {schedule:#}");
    assert_eq!(schedule["weather"]["forecast_hours"], 48, "{schedule:#}");
    let calls = (llm::PROMPT_TOKENS + llm::COMPLETION_TOKENS) * 3;
    assert_eq!(o["usage"]["total_tokens"], calls);
    assert_eq!(o["usage"]["prompt_tokens"], llm::PROMPT_TOKENS * 3);

    let sent = llm.requests();
    assert_eq!(sent.len(), 3, "two tool turns and the answer");
    let first = &sent[0];
    assert_eq!(first["model"], "fixture-model");
    let offered = llm::tool_names(first);
    for t in ["weather_forecast", "plan_tasks"] {
        assert!(
            offered.contains(&t.to_owned()),
            "{t} not offered: {offered:?}"
        );
    }
    assert!(!offered.contains(&"assistant".to_owned()), "never itself");
    let tool = |name: &str| {
        first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["function"]["name"] == name)
            .cloned()
            .unwrap()
    };
    let wf = tool("weather_forecast");
    assert_eq!(wf["type"], "function");
    assert!(wf["function"]["parameters"]["properties"]["city"].is_object());
    assert!(
        wf["function"]["description"]
            .as_str()
            .unwrap()
            .starts_with("Input of `weather_forecast`")
    );
    let plan = tool("plan_tasks");
    assert_eq!(plan["function"]["parameters"]["required"], json!(["tasks"]));
    assert!(plan["function"]["parameters"]["$defs"]["task"].is_object());
    assert_eq!(first["messages"][1]["role"], "user");
    // The answer turn saw both tool results after its own calls.
    let last = sent[2]["messages"].as_array().unwrap();
    let roles: Vec<&str> = last.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "tool"]
    );
    assert_eq!(last[3]["tool_call_id"], last[2]["tool_calls"][0]["id"]);

    let obs = &stack.agents;
    let tokens = |kind: &str| {
        metric(
            obs,
            "agentry_assistant_llm_tokens_total",
            &format!("kind=\"{kind}\""),
        )
    };
    assert_eq!(tokens("prompt"), Some(300.0), "{}", obs.metrics_text());
    assert_eq!(tokens("completion"), Some(30.0));
    let llm_ok = metric(
        obs,
        "agentry_assistant_llm_requests_total",
        "outcome=\"ok\"",
    );
    assert_eq!(llm_ok, Some(3.0));
    let tools_ok = metric(obs, "agentry_assistant_tool_calls_total", "outcome=\"ok\"");
    assert_eq!(tools_ok, Some(2.0));
    stack.sys.stop().await;
}

/// A tool call the tool refuses (an empty task list for `plan_tasks`) is
/// fed back as a `tool` message carrying the error, and the model's next
/// call, corrected, succeeds; the output keeps both steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_error_is_fed_back_and_the_model_recovers() {
    let fixed = json!({"tasks": [{"id": "a", "duration_h": 2}, {"id": "b", "duration_h": 1, "depends_on": ["a"]}]});
    let retry = fixed.clone();
    let llm = LlmFixture::start(vec![
        calls(&[("plan_tasks", json!({"tasks": []}))]),
        with(move |req| match last_tool_result(req) {
            Some(r) if r.get("error").is_some() => {
                Reply::Calls(vec![("plan_tasks".into(), retry.clone())])
            }
            other => Reply::Answer(format!("expected an error, was shown {other:?}")),
        }),
        answer("Planned after fixing the input."),
    ])
    .await;
    let stack = Stack::full(&llm).await;
    let out = stack
        .goal(json!({"goal": "Plan a then b", "tools": ["plan_tasks"]}))
        .await;
    assert_eq!(out.ty, "io.agentry.task.completed", "{:#}", out.data);
    let o = &out.data["output"];
    assert_eq!(o["answer"], "Planned after fixing the input.");
    let steps = o["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{o:#}");
    assert_eq!(steps[0]["input"], json!({"tasks": []}));
    assert!(steps[0].get("output").is_none(), "{:#}", steps[0]);
    assert_eq!(steps[0]["error"]["code"], "invalid_input", "{:#}", steps[0]);
    assert!(
        steps[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tasks"),
        "the message names the field: {:#}",
        steps[0]
    );
    assert_eq!(steps[1]["input"], fixed);
    assert!(steps[1]["output"]["schedule"].is_array(), "{:#}", steps[1]);

    let sent = llm.requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(llm::tool_names(&sent[0]), ["plan_tasks"], "the filter held");
    let shown = last_tool_result(&sent[1]).unwrap();
    assert_eq!(shown["error"]["code"], "invalid_input", "{shown:#}");
    stack.sys.stop().await;
}

/// A model that calls a tool forever is stopped by the step budget: the
/// goal fails for good with `step_budget_exhausted` after exactly
/// `max_steps` tool calls and `max_steps + 1` model calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_step_budget_stops_a_looping_model() {
    let forever: Turn = calls(&[("weather_forecast", json!({"city": "Paris", "days": 1}))]);
    let llm = LlmFixture::start(vec![forever]).await;
    let stack = Stack::full(&llm).await;
    let out = stack
        .goal(json!({"goal": "Is it raining in Paris? Keep checking.", "max_steps": 3}))
        .await;
    assert_eq!(out.ty, "io.agentry.task.failed", "{:#}", out.data);
    assert_eq!(
        out.data["error"]["code"], "step_budget_exhausted",
        "{:#}",
        out.data
    );
    let message = out.data["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 3"), "{message}");
    assert_eq!(out.data["attempts"], 1, "a spent budget is not retried");
    assert_eq!(
        llm.requests().len(),
        4,
        "3 tool turns, then the refused 4th"
    );
    let spent = metric(
        &stack.agents,
        "agentry_assistant_goals_total",
        "outcome=\"step_budget\"",
    );
    assert_eq!(spent, Some(1.0), "{}", stack.agents.metrics_text());
    stack.sys.stop().await;
}

/// Without `AGENTRY_LLM_BASE_URL` the assistant kind is off: the other kinds
/// of the same process register, the assistant never does, and a process
/// asked to run only the assistant refuses to start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_llm_endpoint_the_assistant_does_not_register() {
    let stack = Stack::start("planning,assistant", None).await;
    let reg = wait_for_agents(&stack.sys.admin, "plan_tasks", 1).await;
    let kinds: Vec<String> = reg
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert!(kinds.contains(&"planning".to_owned()), "{kinds:?}");
    assert!(!kinds.contains(&"assistant".to_owned()), "{kinds:?}");
    assert!(reg.find("assistant").await.unwrap().is_empty());

    let cfg = stack.sys.server.agent_config("assistant");
    let err = agentry_agent::run_with(cfg, Observer::new(), Default::default())
        .await
        .expect_err("nothing to run");
    let shown = format!("{err:#}");
    assert!(shown.contains("AGENTRY_LLM_BASE_URL"), "{shown}");
    assert!(matches!(
        err.downcast_ref::<agentry_agent::AgentsError>(),
        Some(agentry_agent::AgentsError::AllOff(_))
    ));
    stack.sys.stop().await;
}
