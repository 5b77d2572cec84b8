//! `/ready` follows the live state of each component's loops and optional
//! dependencies; `/health` fails while a loop is stuck. Real processes,
//! production accounts and permissions (`AuthServer`).

use std::time::Duration;

use agentry::client;
use agentry::event::Mode;
use agentry::id::RequestId;
use agentry::subject::{self, Tenant};
use agentry::topology;
use agentry_ctl::status::http_get;
use agentry_tests::*;
use async_nats::jetstream;
use serde_json::{Value, json};

/// The NATS user an agent of `kind` connects as (per-kind users when the
/// accounts file has them, else the generic agent user).
fn agent_role(server: &AuthServer, kind: &str) -> String {
    let per_kind = format!("agent_{kind}");
    if server.has_user(&per_kind) {
        per_kind
    } else {
        "agent".to_owned()
    }
}

fn spawn_as(server: &AuthServer, role: &str, bin: &str, args: &[&str]) -> ChildProc {
    let env = server.env(role);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if let Ok(dir) = std::env::var("AGENTRY_TEST_LOGS") {
        let log = std::path::Path::new(&dir).join(format!("{bin}.log"));
        return ChildProc::spawn_logged(bin, args, &env, &log);
    }
    ChildProc::spawn(bin, args, &env)
}

/// The `/ready` body's failing checks, by name.
async fn not_ready(addr: &str) -> Option<Vec<String>> {
    match http_get(addr, "/ready").await {
        Ok((200, _)) => Some(Vec::new()),
        Ok((503, body)) => {
            let v: Value = serde_json::from_str(&body).ok()?;
            let failing: Vec<String> = v["checks"]
                .as_array()?
                .iter()
                .filter(|c| c["ok"] == false)
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect();
            if failing.is_empty() {
                // 503 before any check is registered (still starting).
                Some(vec!["no checks yet".to_owned()])
            } else {
                Some(failing)
            }
        }
        _ => None,
    }
}

async fn wait_failing(addr: &str, what: &str, needle: &str) {
    eventually(Duration::from_secs(20), what, || async {
        not_ready(addr)
            .await
            .is_some_and(|f| f.iter().any(|n| n.contains(needle)))
    })
    .await;
}

async fn wait_ready(addr: &str, what: &str) {
    eventually(Duration::from_secs(30), what, || async {
        not_ready(addr).await.is_some_and(|f| f.is_empty())
    })
    .await;
}

/// Deleting the agent's consumer kills its pull loop's input: /ready names
/// the loop; re-creating the consumer brings it back. Stopping Redis makes
/// the host not ready, restarting Redis ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_agent_pull_loop_and_redis() {
    let server = AuthServer::start();
    let (_admin, js) = server.setup().await;
    let mut redis = Redis::start();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let role = agent_role(&server, "echo");
    let _agent = spawn_as(
        &server,
        &role,
        "agentry-agent",
        &[
            "--agents",
            "echo",
            "--http-addr",
            &addr,
            "--redis-url",
            &redis.url,
        ],
    );
    wait_ready(&addr, "agent ready").await;
    let (code, body) = http_get(&addr, "/ready").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("pull echo") && body.contains("redis") && body.contains("kv agentry-agents"),
        "readiness must list the pull loop, Redis and the registry bucket: {body}"
    );

    let tasks = js.get_stream(subject::TASKS_STREAM).await.unwrap();
    tasks.delete_consumer("cap-echo").await.unwrap();
    wait_failing(
        &addr,
        "pull loop failing after its consumer was deleted",
        "pull echo",
    )
    .await;
    let (code, _) = http_get(&addr, "/health").await.unwrap();
    assert_eq!(code, 200, "a failing pull is not a wedged process");

    topology::ensure_task_consumer(&js, &"echo".parse().unwrap(), &test_settings())
        .await
        .unwrap();
    wait_ready(&addr, "ready again once the consumer is back").await;

    redis.kill();
    wait_failing(&addr, "not ready without Redis", "redis").await;
    redis.restart();
    wait_ready(&addr, "ready again with Redis back").await;
}

/// An agent at capacity 1 busy with one task longer than `--stall-after`:
/// /health is 503 naming the stuck pull loop, and 200 again once it is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_while_a_pull_loop_is_stuck() {
    let server = AuthServer::start();
    let (_admin, _js) = server.setup().await;
    let (ep, ap) = (free_port(), free_port());
    let engine_addr = format!("127.0.0.1:{ep}");
    let addr = format!("127.0.0.1:{ap}");
    let _engine = spawn_as(
        &server,
        "engine",
        "agentry-engine",
        &["--http-addr", &engine_addr],
    );
    let role = agent_role(&server, "echo");
    let _agent = spawn_as(
        &server,
        &role,
        "agentry-agent",
        &[
            "--agents",
            "echo",
            "--capacity",
            "1",
            "--stall-after",
            "1s",
            "--http-addr",
            &addr,
        ],
    );
    wait_ready(&engine_addr, "engine ready").await;
    wait_ready(&addr, "agent ready").await;
    assert_eq!(http_get(&addr, "/health").await.unwrap().0, 200);

    let acme = server.client("client_acme").await;
    let acme_js = jetstream::new(acme.clone());
    let tenant = Tenant::new("acme").unwrap();
    let id = RequestId::generate();
    let ev = client::task_request(&id, "/health-test", "echo", json!({"sleep_ms": 4000}), None);
    let submit = tokio::spawn(async move {
        client::submit_as(
            &acme,
            &acme_js,
            Some(&tenant),
            &ev,
            Mode::Binary,
            Duration::from_secs(30),
        )
        .await
    });
    eventually(
        Duration::from_secs(10),
        "/health 503 while stuck",
        || async {
            match http_get(&addr, "/health").await {
                Ok((503, body)) => {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    v["status"] == "wedged"
                        && v["stalled"].as_array().is_some_and(|s| {
                            s.iter()
                                .any(|l| l["name"].as_str().unwrap().contains("pull echo"))
                        })
                }
                _ => false,
            }
        },
    )
    .await;
    assert!(
        not_ready(&addr)
            .await
            .is_some_and(|f| f.iter().any(|n| n.contains("pull echo"))),
        "a stalled loop is not ready either"
    );
    let outcome = submit.await.unwrap().unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    eventually(
        Duration::from_secs(10),
        "/health 200 once the loop moves again",
        || async { matches!(http_get(&addr, "/health").await, Ok((200, _))) },
    )
    .await;
    assert_eq!(http_get(&engine_addr, "/health").await.unwrap().0, 200);
}

/// The engine's /ready lists its three pull loops and buckets; deleting the
/// runs bucket makes it not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_ready_needs_its_loops_and_buckets() {
    let server = AuthServer::start();
    let (_admin, js) = server.setup().await;
    let ep = free_port();
    let addr = format!("127.0.0.1:{ep}");
    let mut engine = spawn_as(&server, "engine", "agentry-engine", &["--http-addr", &addr]);
    wait_ready(&addr, "engine ready").await;
    let (_, body) = http_get(&addr, "/ready").await.unwrap();
    for name in [
        "loop engine requests",
        "loop engine steps",
        "loop engine timers",
        "kv agentry-runs",
    ] {
        assert!(body.contains(name), "{name} missing from {body}");
    }
    js.delete_key_value(subject::QUARANTINE_BUCKET)
        .await
        .unwrap();
    wait_failing(
        &addr,
        "engine not ready without its quarantine bucket",
        "kv agentry-quarantine",
    )
    .await;
    engine.kill9();
}
