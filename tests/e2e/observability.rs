//! Readiness follows NATS, `agentry status` shows it, and the client's trace
//! id appears in the engine's and the agent's logs for that request. Under
//! the production accounts: components as their roles, tenant `acme` submits,
//! `agentry status` runs as `admin`.

use std::time::Duration;

use agentry::client::task_request;
use agentry::event::ext;
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry_tests::*;
use serde_json::json;

pub(crate) async fn get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        code,
        text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned(),
    )
}

/// /ready goes 503 within seconds of stopping nats-server, back to 200 after its restart; `agentry status` shows both; /metrics carries the catalogue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_nats() {
    let mut nats = AuthServer::start();
    nats.setup().await;
    let acme = nats.tenant("acme").await;
    let obs = Observer::new();
    let mut sys = InProcess::new();
    let addr = obs
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap(), sys.token.clone())
        .await
        .unwrap()
        .to_string();
    let (c, o) = (nats.engine_config(), obs.clone());
    sys.spawn(move |t| agentry_engine::run_with(c, o, t));
    let (c, o) = (nats.monitor_config(), obs.clone());
    sys.spawn(move |t| agentry_monitor::run_with(c, o, t));
    let (c, o) = (nats.agent_config("echo"), obs.clone());
    sys.spawn(move |t| agentry_agent::run_with(c, o, t));
    let a = addr.clone();
    eventually(Duration::from_secs(15), "ready", || {
        let a = a.clone();
        async move { get(&a, "/ready").await.0 == 200 }
    })
    .await;
    assert_eq!(get(&addr, "/health").await.0, 200);
    // Drive a task so task metrics exist, then check the catalogue names.
    let id = RequestId::generate();
    let out = acme
        .submit(
            &task_request(&id, "/obs", "echo", json!({}), None),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(out.is_success());
    let names = [
        "agentry_build_info",
        "agentry_requests_total",
        "agentry_tasks_total",
        "agentry_task_duration_seconds_bucket",
        "agentry_nats_connected",
        "agentry_agents",
        "agentry_queue_depth",
        "agentry_queue_ack_pending",
        "agentry_ready",
        "process_resident_memory_bytes",
    ];
    // Gauges such as queue depth appear with the monitor's next sample.
    let a = addr.clone();
    eventually(
        Duration::from_secs(10),
        "/metrics has the catalogue",
        || {
            let a = a.clone();
            async move {
                let (_, metrics) = get(&a, "/metrics").await;
                names.iter().all(|n| metrics.contains(n))
            }
        },
    )
    .await;
    let (_, metrics) = get(&addr, "/metrics").await;
    assert!(
        metrics.contains("component=\"engine\"")
            && metrics.contains("component=\"agent\"")
            && metrics.contains("component=\"monitor\"")
    );

    let status = |addr: String, env: Vec<(String, String)>| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin("agentry"))
                .envs(env)
                .args(["--json", "status", "--http", &addr])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let started = std::time::Instant::now();
    nats.kill();
    let a = addr.clone();
    eventually(
        Duration::from_secs(10),
        "/ready is 503 without NATS",
        || {
            let a = a.clone();
            async move { get(&a, "/ready").await.0 == 503 }
        },
    )
    .await;
    let went_down = started.elapsed();
    assert!(went_down < Duration::from_secs(10), "took {went_down:?}");
    assert_eq!(
        get(&addr, "/health").await.0,
        200,
        "liveness must not follow NATS"
    );
    nats.restart();
    let a = addr.clone();
    eventually(Duration::from_secs(20), "/ready back to 200", || {
        let a = a.clone();
        async move { get(&a, "/ready").await.0 == 200 }
    })
    .await;
    let out = status(addr.clone(), nats.env("admin")).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["components"][0]["ready"], "ready", "{v}");
    assert!(
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["consumer"] == "cap-echo")
    );
    sys.stop().await;
}

/// A trace id set by the client appears in the engine's and the agent's logs for that request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_id_reaches_engine_and_agent_logs() {
    let nats = AuthServer::start();
    nats.setup().await;
    let acme = nats.tenant("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let log_env = (
        "RUST_LOG".to_owned(),
        "info,agentry=debug,agentry_engine=debug".to_owned(),
    );
    let mut engine_env = nats.env("engine");
    engine_env.push(log_env.clone());
    let mut agent_env = nats.agent_env("echo");
    agent_env.push(log_env);
    let _engine = ChildProc::spawn_logged(
        "agentry-engine",
        ENGINE_ARGS,
        &engine_env,
        &dir.path().join("engine.log"),
    );
    let _agent = ChildProc::spawn_logged(
        "agentry-agent",
        &["--agents", "echo", "--http-addr", "off"],
        &agent_env,
        &dir.path().join("agent.log"),
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let id = RequestId::generate();
    let mut ev = task_request(&id, "/obs", "echo", json!({"message": "traced"}), None);
    ev.set_extension(
        ext::TRACEPARENT,
        format!("00-{trace_id}-00f067aa0ba902b7-01"),
    );
    let out = acme.submit(&ev, Duration::from_secs(30)).await.unwrap();
    assert!(out.is_success());
    assert_eq!(
        agentry::event::ext_str(&out.event, ext::TRACEPARENT).as_deref(),
        Some(format!("00-{trace_id}-00f067aa0ba902b7-01").as_str()),
        "result carries the trace context"
    );
    for log in ["engine.log", "agent.log"] {
        let path = dir.path().join(log);
        let traced = || {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains(trace_id) && l.contains(id.as_str()))
        };
        // Logs are written asynchronously: wait for the line (the assert
        // below names what is missing instead of timing out silently).
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            eventually(Duration::from_secs(11), "traced line", || {
                let found = traced();
                async move { found }
            }),
        )
        .await;
        assert!(
            traced(),
            "{log} has no line with trace {trace_id} and request {id}:\n{}",
            std::fs::read_to_string(&path).unwrap_or_default()
        );
    }
}
