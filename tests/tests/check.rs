//! `agentry check` passes on a healthy system and fails with a clear row
//! when a component is stopped. Under the production accounts: each
//! component as its role, `agentry check` as the operator (`admin`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed assertion

use std::time::Duration;

use agentry_tests::*;

/// `agentry check` with `env` (the admin's connection settings).
fn check(env: &[(String, String)], http: &str) -> (bool, serde_json::Value) {
    let out = std::process::Command::new(bin("agentry"))
        .envs(env.iter().cloned())
        .args(["--json", "check", "--capabilities", "echo", "--http", http])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

/// Every check passes with engine, monitor and an agent running; killing the engine fails the health rows by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_then_names_the_stopped_component() {
    let nats = AuthServer::start();
    let (_admin, js) = nats.setup().await;
    let admin_env = nats.env("admin");
    // The performance check runs echo_diamond; store it like `agentry up` does.
    let put = std::process::Command::new(bin("agentry"))
        .envs(admin_env.iter().cloned())
        .args([
            "workflow",
            "put",
            &repo_root()
                .join("schemas/examples/workflows/echo_diamond.yaml")
                .display()
                .to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let (ep, mp, ap) = (free_port(), free_port(), free_port());
    let mut engine = ChildProc::spawn(
        "agentry-engine",
        &[
            "--http-addr",
            &format!("127.0.0.1:{ep}"),
            "--rate-limit",
            "4000000000",
            "--rate-limit-tenant",
            "0",
        ],
        &nats.env("engine"),
    );
    let _monitor = ChildProc::spawn(
        "agentry-monitor",
        &[
            "--http-addr",
            &format!("127.0.0.1:{mp}"),
            "--depth-interval",
            "1s",
        ],
        &nats.env("monitor"),
    );
    let _agent = ChildProc::spawn(
        "agentry-agent",
        &[
            "--agents",
            "echo",
            "--http-addr",
            &format!("127.0.0.1:{ap}"),
            "--capacity",
            "64",
        ],
        &nats.agent_env("echo"),
    );
    wait_for_agents(&js, "echo", 1).await;
    let http = format!("127.0.0.1:{ep},127.0.0.1:{mp},127.0.0.1:{ap}");
    let (u, h) = (admin_env.clone(), http.clone());
    let (ok, report) = tokio::task::spawn_blocking(move || check(&u, &h))
        .await
        .unwrap();
    let failing: Vec<_> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == "fail")
        .collect();
    assert!(
        ok && failing.is_empty(),
        "check failed on a healthy system: {failing:#?}"
    );
    for area in [
        "health",
        "performance",
        "security",
        "scalability",
        "recovery",
    ] {
        assert!(
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["area"] == area),
            "no {area} row"
        );
    }

    engine.kill9();
    // The engine's consumer goes idle once the process is gone.
    let last = std::sync::Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
    eventually(Duration::from_secs(20), "check fails on the engine", || {
        let (u, h, last) = (admin_env.clone(), http.clone(), last.clone());
        async move {
            let (ok, report) = tokio::task::spawn_blocking(move || check(&u, &h))
                .await
                .unwrap();
            *last.lock().unwrap() = report;
            !ok
        }
    })
    .await;
    let report = last.lock().unwrap().clone();
    let rows = report["checks"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["verdict"] == "fail"
            && r["check"]
                .as_str()
                .unwrap_or_default()
                .contains("engine consuming AGENTRY_REQUESTS/engine")),
        "{rows:#?}"
    );
    assert!(rows.iter().any(|r| {
        r["verdict"] == "fail"
            && r["check"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("127.0.0.1:{ep} /health"))
    }));
}
