//! The README's `nats` CLI inspections, proven with the same JetStream API
//! calls the CLI makes (there is no Go toolchain here to run the CLI itself).
//! Under the production accounts: the operator inspects as `admin`, the
//! requests come from tenant `acme`, components run as their roles.

use std::time::Duration;

use agentry::client::task_request;
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry_tests::*;
use futures::StreamExt;
use serde_json::json;

/// `nats stream ls`, `consumer report AGENTRY_TASKS`, `kv ls/get agentry-agents`, `stream view AGENTRY_DLQ`, `micro ls`, result fetch by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cli_inspections() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    let cfg = nats.engine_config();
    sys.spawn(move |t| agentry_engine::run_with(cfg, Observer::new(), t));
    let cfg = nats.monitor_config();
    sys.spawn(move |t| agentry_monitor::run_with(cfg, Observer::new(), t));
    let cfg = nats.agent_config("echo");
    sys.spawn(move |t| agentry_agent::run_with(cfg, Observer::new(), t));
    let id = RequestId::new("inspect-1").unwrap();
    let out = acme
        .submit(
            &task_request(&id, "/cli", "echo", json!({"x": 1}), None),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(out.is_success());
    let bad = RequestId::new("inspect-2").unwrap();
    let rej = acme
        .submit(
            &task_request(&bad, "/cli", "nope_cap", json!({}), None),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(rej.data["reason"], "unknown_capability");

    // nats stream ls
    let mut names: Vec<String> = js.stream_names().map(|n| n.unwrap()).collect().await;
    names.sort();
    for s in [
        "AGENTRY_DLQ",
        "AGENTRY_EVENTS",
        "AGENTRY_REGISTRY",
        "AGENTRY_REQUESTS",
        "AGENTRY_RESULTS",
        "AGENTRY_STEPS",
        "AGENTRY_TASKS",
        "AGENTRY_TIMERS",
    ] {
        assert!(names.contains(&s.to_owned()), "{names:?}");
    }
    // nats consumer report AGENTRY_TASKS
    let tasks = js.get_stream("AGENTRY_TASKS").await.unwrap();
    let consumers: Vec<_> = tasks.consumers().map(|c| c.unwrap()).collect().await;
    for cap in agentry::topology::BUILTIN_CAPABILITIES {
        assert!(
            consumers.iter().any(|c| c.name == format!("cap-{cap}")),
            "no cap-{cap}"
        );
    }
    // nats kv ls / get agentry-agents
    let kv = js.get_key_value("agentry-agents").await.unwrap();
    eventually(Duration::from_secs(10), "agent record", || {
        let kv = kv.clone();
        async move { kv.keys().await.unwrap().count().await > 0 }
    })
    .await;
    let key = kv.keys().await.unwrap().next().await.unwrap().unwrap();
    let rec: serde_json::Value =
        serde_json::from_slice(&kv.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(rec["status"], "live");
    // nats stream view AGENTRY_DLQ
    let dlq = js.get_stream("AGENTRY_DLQ").await.unwrap();
    let m = dlq
        .get_last_raw_message_by_subject("agentry.dlq.unknown_capability")
        .await
        .unwrap();
    assert_eq!(
        m.headers.get("Agentry-Dlq-Reason").map(|v| v.as_str()),
        Some("unknown_capability")
    );
    // nats stream get AGENTRY_RESULTS --last-for agentry.results.acme.inspect-1
    // (what the tenant itself may send: a direct get on its own subject)
    let r = acme.fetch_result(&id).await.unwrap();
    assert_eq!(r.ty, "io.agentry.task.completed");
    // nats micro ls
    let info = admin.request("$SRV.INFO.echo", "".into()).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(v["name"], "echo");
    assert!(
        v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "echo")
    );
    sys.stop().await;
}
