//! `agentry mcp` with the official MCP Python SDK as the client
//! (tests/interop/mcp_client.py), under the production accounts: the MCP
//! server connects as its own user `mcp` (tenant `mcp`), the engine, monitor
//! and agents as theirs. Over stdio (the SDK spawns `agentry mcp`): the tool
//! list shows the live capabilities with their schemas, `plan_tasks` returns
//! its schedule, a workflow tool runs `echo_diamond` with progress, and
//! stopping the planning agent removes its tool with a list_changed
//! notification, and abandoning a workflow call cancels its run; after a
//! nats-server restart the list still follows the registry. Over
//! Streamable HTTP: the same calls.

use std::process::Stdio;
use std::time::Duration;

use agentry::http::Observer;
use agentry_tests::{System, bin, free_port, repo_root, wait_for_agents};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A run that waits for a signal nobody sends: only a cancel ends it.
const WAIT_WORKFLOW: &str = "name: mcp_wait
version: 1
description: Waits for the signal go (the MCP cancellation test).
steps:
  - id: hold
    wait_for: { signal: go, timeout: 1h }
";

/// How long one step of the Python scenario may take.
const STEP: Duration = Duration::from_secs(90);

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The Python client, its stdout as JSON lines and its stdin for answers.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Client {
    fn spawn(args: &[String], env: &[(String, String)]) -> Self {
        let script = repo_root().join("tests/interop/mcp_client.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start python3 tests/interop/mcp_client.py (pip install mcp)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The next JSON line, which must be the event `name`.
    async fn expect(&mut self, name: &str) -> Value {
        let line = tokio::time::timeout(STEP, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no `{name}` from the MCP client within {STEP:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the MCP client ended before `{name}` (see its stderr)"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["event"], name, "unexpected client output: {line}");
        v
    }

    async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn finish(mut self) {
        self.expect("done").await;
        let status = tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("MCP client did not exit")
            .unwrap();
        assert!(status.success(), "MCP client failed: {status}");
    }
}

/// A system with engine, monitor, echo and a planning agent (stopped by the
/// returned token), and `echo_diamond` stored.
async fn start() -> (System, tokio_util::sync::CancellationToken) {
    let mut sys = System::builder()
        .engine(|_| {})
        .monitor()
        .echo(8)
        .start()
        .await;
    let cfg = sys.server.agent_config("planning");
    let planning = sys
        .parts
        .spawn(move |t| agentry_agent::run_with(cfg, Observer::new(), t));
    let yaml =
        std::fs::read_to_string(repo_root().join("schemas/examples/workflows/echo_diamond.yaml"))
            .unwrap();
    agentry::workflow::store::put(&sys.admin, &yaml)
        .await
        .expect("store echo_diamond");
    agentry::workflow::store::put(&sys.admin, WAIT_WORKFLOW)
        .await
        .expect("store mcp_wait");
    wait_for_agents(&sys.admin, "plan_tasks", 1).await;
    wait_for_agents(&sys.admin, "echo", 1).await;
    (sys, planning)
}

/// The checks common to both transports, up to the `missing` event.
async fn common_checks(client: &mut Client) {
    let init = client.expect("initialized").await;
    assert_eq!(init["list_changed"], true, "{init}");

    let report = client.expect("tools").await;
    let names = tool_names(&report);
    let tools = report["tools"].as_array().unwrap();
    for want in ["echo", "plan_tasks", "workflow_echo_diamond"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // The planning agent is the only planning kind: none of weather's tools.
    assert!(!names.contains(&"weather_forecast"), "{names:?}");
    let plan = tools.iter().find(|t| t["name"] == "plan_tasks").unwrap();
    let schema = &plan["inputSchema"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], serde_json::json!(["tasks"]), "{schema}");
    assert!(
        plan["description"]
            .as_str()
            .unwrap()
            .contains("critical path"),
        "{plan}"
    );
    let wf = tools
        .iter()
        .find(|t| t["name"] == "workflow_echo_diamond")
        .unwrap();
    assert!(
        wf["description"]
            .as_str()
            .unwrap()
            .contains("Six echo steps"),
        "{wf}"
    );

    let plan = client.expect("plan_tasks").await;
    let r = &plan["result"];
    assert_eq!(r["is_error"], false, "{plan}");
    let out = &r["structured"]["output"];
    assert_eq!(out["total_duration_h"], 6.0, "{plan}");
    assert_eq!(
        out["critical_path"],
        serde_json::json!(["dig", "pour", "paint"]),
        "{plan}"
    );
    let schedule = out["schedule"].as_array().expect("a schedule");
    assert_eq!(schedule.len(), 3, "{plan}");
    assert!(
        !plan["progress"].as_array().unwrap().is_empty(),
        "no progress: {plan}"
    );

    let wf = client.expect("echo_diamond").await;
    let r = &wf["result"];
    assert_eq!(r["is_error"], false, "{wf}");
    let out = &r["structured"]["output"];
    assert_eq!(out["total"], 19, "{wf}");
    assert_eq!(out["right"], "completed", "{wf}");
    // Progress: 0 at submission, one per finished step as its event
    // arrives (the last step's event may come after the result: events and
    // results travel on different streams), and `total` when done.
    let progress = wf["progress"].as_array().unwrap();
    let values: Vec<f64> = progress
        .iter()
        .filter_map(|p| p["progress"].as_f64())
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "not increasing: {wf}"
    );
    assert_eq!(values.first(), Some(&0.0), "{wf}");
    assert_eq!(values.last(), Some(&6.0), "{wf}");
    assert!(progress.iter().all(|p| p["total"] == 6.0), "{wf}");
    let steps = progress
        .iter()
        .filter(|p| {
            p["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("step "))
        })
        .count();
    assert!((1..=6).contains(&steps), "{wf}");

    let missing = client.expect("missing").await;
    assert_eq!(missing["result"]["is_error"], true, "{missing}");
}

/// stdio: tools, plan_tasks, echo_diamond with progress, and the planning
/// tool removed (list_changed) when its agent stops.
#[tokio::test]
async fn mcp_stdio_tools_follow_the_registry() {
    let (sys, planning) = start().await;
    let agentry = bin("agentry").display().to_string();
    let mut env = sys.server.env("mcp");
    env.push(("RUST_LOG".into(), "agentry_ctl=info,warn".into()));
    let mut client = Client::spawn(&["stdio".into(), agentry], &env);
    common_checks(&mut client).await;

    // The client abandoned a workflow_mcp_wait call: its run (tenant mcp)
    // is cancelled, not left waiting.
    let sent = client.expect("cancel_sent").await;
    assert_eq!(sent["raised"], true, "{sent}");
    let runs = sys.admin.get_key_value("agentry-runs").await.unwrap();
    agentry_tests::eventually(Duration::from_secs(30), "mcp_wait run cancelled", || {
        let runs = runs.clone();
        async move {
            let mut keys = match runs.keys().await {
                Ok(k) => k,
                Err(_) => return false,
            };
            while let Some(Ok(key)) = futures::StreamExt::next(&mut keys).await {
                if !key.starts_with("mcp.") {
                    continue;
                }
                if let Ok(Some(b)) = runs.get(&key).await
                    && let Ok(v) = serde_json::from_slice::<Value>(&b)
                    && v["workflow"] == "mcp_wait"
                    && v["status"] == "cancelled"
                {
                    return true;
                }
            }
            false
        }
    })
    .await;

    client.expect("stop_planning").await;
    planning.cancel();
    client.say("stopped").await;
    let after = client.expect("after_stop").await;
    let names = tool_names(&after);
    assert!(!names.contains(&"plan_tasks"), "{after}");
    assert!(names.contains(&"echo"), "{after}");
    client.finish().await;
    sys.stop().await;
}

/// A nats-server restart breaks the catalog's KV watches: they are
/// reopened, and an agent started afterwards shows up in the tool list
/// (with list_changed).
#[tokio::test]
async fn mcp_tools_follow_the_registry_across_a_nats_restart() {
    let mut sys = System::builder().monitor().echo(1).start().await;
    wait_for_agents(&sys.admin, "echo", 1).await;
    let agentry = bin("agentry").display().to_string();
    let mut env = sys.server.env("mcp");
    env.push((
        "RUST_LOG".into(),
        "agentry_ctl=info,agentry=warn,warn".into(),
    ));
    let mut client = Client::spawn(&["stdio-restart".into(), agentry], &env);
    let tools = client.expect("tools").await;
    let names = tool_names(&tools);
    assert!(names.contains(&"echo"), "{tools}");
    assert!(!names.contains(&"plan_tasks"), "{tools}");

    client.expect("restart_nats").await;
    sys.server.restart();
    let cfg = sys.server.agent_config("planning");
    sys.parts
        .spawn(move |t| agentry_agent::run_with(cfg, Observer::new(), t));
    client.say("restarted").await;
    let after = client.expect("after_restart").await;
    let names = tool_names(&after);
    assert!(names.contains(&"plan_tasks"), "{after}");
    assert!(names.contains(&"echo"), "{after}");
    client.finish().await;
    sys.stop().await;
}

/// Streamable HTTP: the same tools and calls over `--transport http`.
#[tokio::test]
async fn mcp_streamable_http() {
    let (sys, _planning) = start().await;
    let port = free_port();
    let mut env = sys.server.env("mcp");
    env.push(("AGENTRY_MCP_TRANSPORT".into(), "http".into()));
    env.push(("AGENTRY_MCP_LISTEN".into(), format!("127.0.0.1:{port}")));
    let mut server = Command::new(bin("agentry"))
        .arg("mcp")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start agentry mcp");
    agentry_tests::eventually(Duration::from_secs(20), "MCP HTTP endpoint up", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut client = Client::spawn(&["http".into(), url], &[]);
    common_checks(&mut client).await;
    client.finish().await;
    server.kill().await.unwrap();
    sys.stop().await;
}

/// The tool names in a report of the MCP client script: its `tools` is a
/// list of tool objects (`name`) or of bare names.
fn tool_names(report: &Value) -> Vec<&str> {
    report["tools"]
        .as_array()
        .expect("a tools list")
        .iter()
        .filter_map(|t| t.as_str().or_else(|| t["name"].as_str()))
        .collect()
}
