//! `agentry check` passes on a healthy system run with the production
//! accounts, leaves the production queues alone, and fails with a named row
//! in each area: health, performance, security, scalability, recovery.

use agentry::subject;
use agentry_tests::*;
use async_nats::jetstream;
use serde_json::Value;

/// Runs `agentry --json check <args>` with `env` (a role's connection
/// settings); returns the exit status and the report.
async fn check(env: Vec<(String, String)>, args: Vec<String>) -> (bool, Vec<Value>) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(bin("agentry"))
            .arg("--json")
            .arg("check")
            .args(&args)
            .envs(env)
            .env("AGENTRY_HTTP_ADDR", "off")
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("no JSON report: {}", String::from_utf8_lossy(&out.stderr)));
        (
            out.status.success(),
            v["checks"].as_array().cloned().unwrap_or_default(),
        )
    })
    .await
    .unwrap()
}

fn failing(rows: &[Value]) -> Vec<&Value> {
    rows.iter().filter(|r| r["verdict"] == "fail").collect()
}

/// The failing rows of `area`.
fn failing_in<'a>(rows: &'a [Value], area: &str) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| r["verdict"] == "fail" && r["area"] == area)
        .collect()
}

fn spawn_as(server: &AuthServer, role: &str, bin: &str, args: &[&str]) -> ChildProc {
    let env = server.env(role);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ChildProc::spawn(bin, args, &env)
}

fn agent_role(server: &AuthServer) -> &'static str {
    if server.has_user("agent_echo") {
        "agent_echo"
    } else {
        "agent"
    }
}

/// Engine, monitor and an echo agent, each as its own NATS user.
struct System {
    engine: ChildProc,
    _monitor: ChildProc,
    _agent: ChildProc,
    engine_http: String,
    monitor_http: String,
    agent_http: String,
}

async fn start_system(
    server: &AuthServer,
    js: &jetstream::Context,
    engine_args: &[&str],
) -> System {
    let (ep, mp, ap) = (free_port(), free_port(), free_port());
    let (engine_http, monitor_http, agent_http) = (
        format!("127.0.0.1:{ep}"),
        format!("127.0.0.1:{mp}"),
        format!("127.0.0.1:{ap}"),
    );
    let mut args = vec!["--http-addr", &engine_http];
    args.extend_from_slice(engine_args);
    let engine = spawn_as(server, "engine", "agentry-engine", &args);
    let monitor = spawn_as(
        server,
        "monitor",
        "agentry-monitor",
        &["--http-addr", &monitor_http, "--depth-interval", "1s"],
    );
    let agent = spawn_as(
        server,
        agent_role(server),
        "agentry-agent",
        &["--agents", "echo", "--http-addr", &agent_http],
    );
    wait_for_agents(js, "echo", 1).await;
    for ep in [&engine_http, &monitor_http, &agent_http] {
        eventually(
            std::time::Duration::from_secs(20),
            "component ready",
            || async {
                matches!(
                    agentry_ctl::status::http_get(ep, "/ready").await,
                    Ok((200, _))
                )
            },
        )
        .await;
    }
    System {
        engine,
        _monitor: monitor,
        _agent: agent,
        engine_http,
        monitor_http,
        agent_http,
    }
}

impl System {
    fn http(&self) -> String {
        format!(
            "{},{},{}",
            self.engine_http, self.monitor_http, self.agent_http
        )
    }
}

fn args(http: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["--capabilities", "echo", "--http", http]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

/// Healthy system: every row passes (the load included) and no task enters
/// a production queue. Then one failure per area: scalability (the monitor's
/// gauges not reachable), recovery (a bucket deleted), health (engine killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_leaves_production_queues_alone_then_fails_by_area() {
    let server = AuthServer::start();
    let (_admin, js) = server.setup().await;
    let sys = start_system(&server, &js, &[]).await;
    let snapshot = tempfile::tempdir().unwrap();
    let snap = snapshot.path().join("snap.json").display().to_string();

    let (ok, rows) = check(
        server.env("admin"),
        args(&sys.http(), &["--load", "20", "--snapshot", &snap]),
    )
    .await;
    assert!(
        ok && failing(&rows).is_empty(),
        "check failed on a healthy system: {rows:#?}"
    );
    for area in [
        "health",
        "performance",
        "security",
        "scalability",
        "recovery",
    ] {
        assert!(
            rows.iter()
                .any(|r| r["area"] == area && r["verdict"] == "pass"),
            "no passing {area} row: {rows:#?}"
        );
    }
    let tasks = js.get_stream(subject::TASKS_STREAM).await.unwrap();
    let echo = tasks.consumer_info("cap-echo").await.unwrap();
    assert_eq!(
        echo.delivered.stream_sequence, 0,
        "the check pushed work into the echo queue"
    );
    assert!(
        tasks.consumer_info("cap-agentry_check").await.is_err(),
        "the probe's consumer was left behind"
    );
    let exported: Value = serde_json::from_slice(&std::fs::read(&snap).unwrap()).unwrap();
    assert!(
        exported[subject::AGENTS_BUCKET]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "the snapshot holds the live registry"
    );

    // A role that may not delete streams: the probe sees the denial (the
    // request goes unanswered while the account API answers) and passes.
    let (_, rows) = check(
        server.env("monitor"),
        args(&sys.http(), &["--snapshot", &snap]),
    )
    .await;
    let delete = rows
        .iter()
        .find(|r| r["check"] == "forbidden operation (stream delete)")
        .expect("stream delete row");
    assert_eq!(delete["verdict"], "pass", "{delete:#?}");
    let anonymous = rows
        .iter()
        .find(|r| r["check"] == "unauthenticated access")
        .expect("anonymous row");
    assert_eq!(anonymous["verdict"], "pass", "{anonymous:#?}");

    // Read-only by default: no performance run, a warning says so.
    let (ok, rows) = check(
        server.env("admin"),
        args(&sys.http(), &["--snapshot", &snap]),
    )
    .await;
    assert!(ok, "{rows:#?}");
    assert!(
        rows.iter()
            .any(|r| r["area"] == "performance" && r["verdict"] == "warn")
    );

    // Scalability: without the monitor's endpoint no gauge can be compared.
    let no_monitor = format!("{},{}", sys.engine_http, sys.agent_http);
    let (ok, rows) = check(
        server.env("admin"),
        args(&no_monitor, &["--snapshot", &snap]),
    )
    .await;
    assert!(!ok);
    assert_eq!(
        failing(&rows),
        failing_in(&rows, "scalability"),
        "{rows:#?}"
    );
    assert!(!failing_in(&rows, "scalability").is_empty());

    // Recovery: a bucket gone is named.
    js.delete_key_value(subject::RUNS_BUCKET).await.unwrap();
    let (ok, rows) = check(
        server.env("admin"),
        args(&sys.http(), &["--snapshot", &snap]),
    )
    .await;
    assert!(!ok);
    assert!(
        failing_in(&rows, "recovery").iter().any(|r| r["check"]
            .as_str()
            .unwrap()
            .contains("present")
            && r["detail"].as_str().unwrap().contains("KV_agentry-runs")),
        "{rows:#?}"
    );
    // ... and the engine, which needs that bucket, is not ready.
    assert!(
        failing_in(&rows, "health").iter().any(|r| r["check"]
            .as_str()
            .unwrap()
            .contains(&format!("{} /ready", sys.engine_http))
            && r["detail"].as_str().unwrap().contains("kv agentry-runs")),
        "{rows:#?}"
    );

    // Health: the engine killed.
    let mut sys = sys;
    sys.engine.kill9();
    let (ok, rows) = check(
        server.env("admin"),
        args(&sys.http(), &["--snapshot", &snap]),
    )
    .await;
    assert!(!ok);
    let health = failing_in(&rows, "health");
    assert!(
        health.iter().any(|r| r["check"]
            .as_str()
            .unwrap()
            .contains(&format!("{} /health", sys.engine_http))),
        "{rows:#?}"
    );
    assert!(
        health.iter().any(|r| r["check"]
            .as_str()
            .unwrap()
            .contains("engine consuming AGENTRY_REQUESTS/engine")),
        "{rows:#?}"
    );
}

/// Performance fails when most requests are refused (an engine limiting
/// each principal to 5 requests a minute), and the row says how many passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_performance_fails_when_requests_are_refused() {
    let server = AuthServer::start();
    let (_admin, js) = server.setup().await;
    let sys = start_system(&server, &js, &["--rate-limit", "5"]).await;
    let snapshot = tempfile::tempdir().unwrap();
    let snap = snapshot.path().join("snap.json").display().to_string();
    let (ok, rows) = check(
        server.env("admin"),
        args(&sys.http(), &["--load", "20", "--snapshot", &snap]),
    )
    .await;
    assert!(!ok);
    let perf = failing_in(&rows, "performance");
    assert_eq!(perf.len(), 1, "{rows:#?}");
    let ok_count: usize = perf[0]["detail"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ok_count < 19, "{perf:#?}");
    assert_eq!(failing(&rows).len(), 1, "only performance fails: {rows:#?}");
}

/// Dev mode (a server without accounts): security fails without
/// credentials, and only warns with `--dev`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_check_security_fails_without_credentials_unless_dev() {
    let nats = DevNats::start();
    let (_client, _js) = nats.with_topology().await;
    let env = vec![("AGENTRY_NATS_URL".to_owned(), nats.url())];
    let http = "127.0.0.1:1".to_owned();
    let (ok, rows) = check(env.clone(), args(&http, &[])).await;
    assert!(!ok);
    let sec = failing_in(&rows, "security");
    assert!(
        sec.iter().any(|r| r["check"] == "authentication"),
        "{rows:#?}"
    );
    let (_, rows) = check(env, args(&http, &["--dev"])).await;
    assert!(failing_in(&rows, "security").is_empty(), "{rows:#?}");
    assert!(
        rows.iter()
            .any(|r| r["area"] == "security" && r["verdict"] == "warn")
    );
}
