//! Readiness follows NATS, `agentry status` shows it, and the client's trace
//! id appears in the engine's and the agent's logs for that request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed assertion

use std::time::Duration;

use agentry::client::{self, task_request};
use agentry::event::{Mode, ext};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry_tests::*;
use serde_json::json;

async fn get(addr: &str, path: &str) -> (u16, String) {
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
    let mut nats = Nats::start();
    let (client, js) = nats.with_topology().await;
    let url = nats.url();
    let obs = Observer::new();
    let mut sys = InProcess::new();
    let addr = obs
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap(), sys.token.clone())
        .await
        .unwrap()
        .to_string();
    let (u, o) = (url.clone(), obs.clone());
    sys.spawn(move |t| agentry_engine::run_with(engine_config(&u), o, t));
    let (u, o) = (url.clone(), obs.clone());
    sys.spawn(move |t| agentry_monitor::run_with(monitor_config(&u), o, t));
    let (u, o) = (url.clone(), obs.clone());
    sys.spawn(move |t| agentry_agent::run_with(agent_config(&u, "echo"), o, t));
    let a = addr.clone();
    eventually(Duration::from_secs(15), "ready", || {
        let a = a.clone();
        async move { get(&a, "/ready").await.0 == 200 }
    })
    .await;
    assert_eq!(get(&addr, "/health").await.0, 200);
    // Drive a task so task metrics exist, then check the catalogue names.
    let id = RequestId::generate();
    let out = client::submit(
        &client,
        &js,
        &task_request(&id, "/obs", "echo", json!({}), None),
        Mode::Binary,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert!(out.is_success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, metrics) = get(&addr, "/metrics").await;
    for name in [
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
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    assert!(
        metrics.contains("component=\"engine\"")
            && metrics.contains("component=\"agent\"")
            && metrics.contains("component=\"monitor\"")
    );

    let status = |addr: String, url: String| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin("agentry"))
                .args(["--nats-url", &url, "--json", "status", "--http", &addr])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let started = std::time::Instant::now();
    nats.server.kill();
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
    nats.server.restart().unwrap();
    let a = addr.clone();
    eventually(Duration::from_secs(20), "/ready back to 200", || {
        let a = a.clone();
        async move { get(&a, "/ready").await.0 == 200 }
    })
    .await;
    let out = status(addr.clone(), url.clone()).await;
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
    let nats = Nats::start();
    let (client, js) = nats.with_topology().await;
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let env = [("RUST_LOG", "info,agentry=debug,agentry_engine=debug")];
    let _engine = ChildProc::spawn_logged(
        "agentry-engine",
        &[
            "--nats-url",
            &url,
            "--http-addr",
            "off",
            "--rate-limit",
            "4000000000",
        ],
        &env,
        &dir.path().join("engine.log"),
    );
    let _agent = ChildProc::spawn_logged(
        "agentry-agent",
        &["--nats-url", &url, "--agents", "echo", "--http-addr", "off"],
        &env,
        &dir.path().join("agent.log"),
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let id = RequestId::generate();
    let mut ev = task_request(&id, "/obs", "echo", json!({"message": "traced"}), None);
    ev.set_extension(
        ext::TRACEPARENT,
        format!("00-{trace_id}-00f067aa0ba902b7-01"),
    );
    let out = client::submit(&client, &js, &ev, Mode::Binary, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(out.is_success());
    assert_eq!(
        agentry::event::ext_str(&out.event, ext::TRACEPARENT).as_deref(),
        Some(format!("00-{trace_id}-00f067aa0ba902b7-01").as_str()),
        "result carries the trace context"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for log in ["engine.log", "agent.log"] {
        let text = std::fs::read_to_string(dir.path().join(log)).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains(trace_id) && l.contains(id.as_str()));
        assert!(
            line.is_some(),
            "{log} has no line with trace {trace_id} and request {id}:\n{text}"
        );
    }
}
