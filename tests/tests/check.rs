//! `agentry check` passes on a healthy system and fails with a clear row
//! when a component is stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed assertion

use std::time::Duration;

use agentry_tests::*;

fn check(url: &str, http: &str) -> (bool, serde_json::Value) {
    let out = std::process::Command::new(bin("agentry"))
        .args([
            "--nats-url",
            url,
            "--json",
            "check",
            "--capabilities",
            "echo",
            "--http",
            http,
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

/// Every check passes with engine, monitor and an agent running; killing the engine fails the health rows by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_then_names_the_stopped_component() {
    let nats = Nats::start();
    let (client, js) = nats.with_topology().await;
    let url = nats.url();
    // The performance check runs echo_diamond; store it like `agentry up` does.
    let put = std::process::Command::new(bin("agentry"))
        .args([
            "--nats-url",
            &url,
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
            "--nats-url",
            &url,
            "--http-addr",
            &format!("127.0.0.1:{ep}"),
            "--rate-limit",
            "4000000000",
        ],
        &[],
    );
    let _monitor = ChildProc::spawn(
        "agentry-monitor",
        &[
            "--nats-url",
            &url,
            "--http-addr",
            &format!("127.0.0.1:{mp}"),
            "--depth-interval",
            "1s",
        ],
        &[],
    );
    let _agent = ChildProc::spawn(
        "agentry-agent",
        &[
            "--nats-url",
            &url,
            "--agents",
            "echo",
            "--http-addr",
            &format!("127.0.0.1:{ap}"),
            "--capacity",
            "64",
        ],
        &[],
    );
    wait_for_agents(&js, "echo", 1).await;
    let _ = client;
    let http = format!("127.0.0.1:{ep},127.0.0.1:{mp},127.0.0.1:{ap}");
    let (u, h) = (url.clone(), http.clone());
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
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (u, h) = (url.clone(), http.clone());
    let (ok, report) = tokio::task::spawn_blocking(move || check(&u, &h))
        .await
        .unwrap();
    assert!(!ok, "check passed with the engine stopped");
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
