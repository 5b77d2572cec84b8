//! Dev mode: the open nats-server without accounts or tenants (`agentry up`,
//! `nats/dev.conf`). Every other end-to-end test runs under the production
//! accounts; these are the ones that keep the no-auth path working, and
//! their names say so (`dev_mode_*`, see `docs/testing.md`).

use std::time::Duration;

use agentry::client::{self, task_request, workflow_request};
use agentry::event::Mode;
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::subject;
use agentry_tests::*;
use serde_json::json;

/// `GET path` on `addr`: the status code (0 when nothing answers yet).
async fn status_of(addr: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// In-process engine, monitor and echo agent on the open server: an
/// untenanted task and an untenanted workflow complete, their results on
/// `agentry.results.<id>` and the run keyed by its bare id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_untenanted_task_and_workflow() {
    let nats = DevNats::start();
    let (client, js) = nats.with_topology().await;
    let url = nats.url();
    let mut sys = InProcess::new();
    let cfg = engine_config(&url);
    sys.spawn(move |t| agentry_engine::run_with(cfg, Observer::new(), t));
    let cfg = monitor_config(&url);
    sys.spawn(move |t| agentry_monitor::run_with(cfg, Observer::new(), t));
    let cfg = agent_config(&url, "echo");
    sys.spawn(move |t| agentry_agent::run_with(cfg, Observer::new(), t));

    let id = RequestId::new("dev-task-1").unwrap();
    let ev = task_request(&id, "/dev", "echo", json!({"message": "open"}), None);
    let out = client::submit(&client, &js, &ev, Mode::Binary, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(out.ty, "io.agentry.task.completed", "{:?}", out.data);
    assert_eq!(out.data["output"]["echo"]["message"], "open");
    let counts = subject_counts(&js, subject::RESULTS_STREAM, &subject::results(&id)).await;
    assert_eq!(counts.get(&subject::results(&id)), Some(&1));

    agentry::workflow::store::put(
        &js,
        &std::fs::read_to_string(repo_root().join("schemas/examples/workflows/echo_diamond.yaml"))
            .unwrap(),
    )
    .await
    .unwrap();
    let run = RequestId::new("dev-run-1").unwrap();
    let ev = workflow_request(&run, "/dev", "echo_diamond", None, json!({"n": 3}));
    let out = client::submit(&client, &js, &ev, Mode::Binary, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(out.ty, "io.agentry.workflow.completed", "{:?}", out.data);
    // n = 3: left 4, middle 6, right 9.
    assert_eq!(out.data["output"]["total"], 19, "{:?}", out.data);
    let kv = js.get_key_value(subject::RUNS_BUCKET).await.unwrap();
    let state: agentry::workflow::state::RunState =
        serde_json::from_slice(&kv.get("dev-run-1").await.unwrap().expect("run state")).unwrap();
    assert_eq!(state.status.as_str(), "completed");
    sys.stop().await;
}

/// `agentry up` starts its own open nats-server and every component; a
/// client without credentials gets an echo result, and SIGTERM stops it
/// cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_agentry_up_serves_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (nats_port, http_port) = (free_port(), free_port());
    let http = format!("127.0.0.1:{http_port}");
    let mut up = ChildProc::spawn(
        "agentry",
        &[
            "up",
            "--dir",
            dir.path().to_str().unwrap(),
            "--nats-port",
            &nats_port.to_string(),
            "--http-addr",
            &http,
            "--agents",
            "echo",
        ],
        &[] as &[(&str, &str)],
    );
    let a = http.clone();
    eventually(Duration::from_secs(60), "agentry up ready", || {
        let a = a.clone();
        async move { status_of(&a, "/ready").await == 200 }
    })
    .await;
    let url = format!("nats://127.0.0.1:{nats_port}");
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let id = RequestId::generate();
    let ev = task_request(&id, "/dev", "echo", json!({"message": "up"}), None);
    let out = client::submit(&client, &js, &ev, Mode::Binary, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(out.ty, "io.agentry.task.completed", "{:?}", out.data);
    assert_eq!(out.data["output"]["echo"]["message"], "up");
    up.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = up.wait_exit(Duration::from_secs(40));
        (s, up)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "agentry up exit");
}
