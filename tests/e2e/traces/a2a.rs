//! An A2A call as one client/server span pair across agent processes: an
//! echo agent (its own process, user `agent_echo`) asks the planning agent
//! (another process, user `agent_planning`) for `plan_tasks` while it runs
//! a task; the call's `a2a call` client span hangs off the echo execution,
//! the `a2a handle` server span off the call, in the planning process.

use std::time::Duration;

use agentry::client::task_request;
use agentry::event::ext;
use agentry::id::RequestId;
use agentry_tests::*;
use serde_json::json;

use super::{dump, traced_env};

/// echo -> A2A -> planning with a client traceparent: intake -> send ->
/// echo execution -> `a2a call` (client, echo's process) -> `a2a handle`
/// (server, planning's process), both with the messaging attributes and the
/// same message id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_call_and_handle_nest_across_agents() {
    const TRACE: &str = "5d4c3b2a19087f6e5d4c3b2a19087f6e";
    const CLIENT: &str = "1a2b3c4d5e6f7a8b";
    let otlp = OtlpReceiver::start().await;
    let nats = AuthServer::start();
    let (_, admin_js) = nats.setup().await;
    let _engine = ChildProc::spawn(
        "agentry-engine",
        &["--http-addr", "off", "--rate-limit-tenant", "0"],
        &traced_env(nats.env("engine"), &otlp),
    );
    let _echo = ChildProc::echo_agent(&traced_env(nats.agent_env("echo"), &otlp));
    let mut planning_env = traced_env(nats.agent_env("planning"), &otlp);
    planning_env.push(("OTEL_SERVICE_NAME".into(), "agentry-planning".into()));
    let _planning = ChildProc::spawn(
        "agentry-agent",
        &[
            "--agents",
            "planning",
            "--http-addr",
            "off",
            "--heartbeat",
            "1s",
        ],
        &planning_env,
    );
    // The monitor keeps the registry the planner's id is looked up in.
    let _monitor = ChildProc::spawn(
        "agentry-monitor",
        &["--http-addr", "off"],
        &nats.env("monitor"),
    );
    let reg = wait_for_agents(&admin_js, "plan_tasks", 1).await;
    let planner = reg.find("plan_tasks").await.unwrap().remove(0).id;
    wait_for_agents(&admin_js, "echo", 1).await;

    let acme = nats.tenant("acme").await;
    let id = RequestId::generate();
    let input = json!({"call": {
        "ask": planner.as_str(),
        "capability": "plan_tasks",
        "input": {"tasks": [{"id": "dig", "duration_h": 2}, {"id": "pour", "duration_h": 1, "depends_on": ["dig"]}]},
    }});
    let mut ev = task_request(&id, "/tests/traces", "echo", input, None);
    ev.set_extension(ext::TRACEPARENT, format!("00-{TRACE}-{CLIENT}-01"));
    let out = acme.submit(&ev, Duration::from_secs(60)).await.unwrap();
    assert!(out.is_success(), "{:?}", out.data);
    let asker = out.data["output"]["agent_id"].as_str().unwrap().to_owned();
    assert!(
        out.data["output"]["called"]["schedule"].is_array(),
        "{:#}",
        out.data
    );

    let o = &otlp;
    eventually(
        Duration::from_secs(30),
        "intake, send, execution, a2a call and a2a handle exported",
        || {
            let spans = o.trace(TRACE);
            let done = ["process agentry.tasks.echo", "a2a call", "a2a handle"]
                .iter()
                .all(|n| spans.iter().any(|s| s.name == *n));
            async move { done }
        },
    )
    .await;
    let spans = otlp.trace(TRACE);
    let named = |name: &str| {
        let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "exactly one {name}:\n{}", dump(&spans));
        found[0].clone()
    };
    let exec = named("process agentry.tasks.echo");
    let call = named("a2a call");
    let handle = named("a2a handle");
    let subject = format!("agentry.a2a.{planner}");

    // The client span: in the asking agent's execution, in its process.
    assert_eq!(call.service, "agentry-agent");
    assert_eq!(call.parent_span_id, exec.span_id, "{}", dump(&spans));
    assert_eq!(call.kind, 3, "client");
    assert_eq!(call.attr("agentry.agent_id"), asker);
    // The server span: a child of the call, in the planning process.
    assert_eq!(handle.service, "agentry-planning");
    assert_eq!(handle.parent_span_id, call.span_id, "{}", dump(&spans));
    assert_eq!(handle.kind, 2, "server");
    assert_eq!(handle.attr("agentry.agent_id"), planner.as_str());
    for s in [&call, &handle] {
        assert_eq!(s.trace_id, TRACE);
        assert_eq!(s.attr("messaging.system"), "nats", "{}", s.name);
        assert_eq!(s.attr("messaging.destination.name"), subject, "{}", s.name);
        assert_eq!(s.status_code, 0, "{} not failed", s.name);
    }
    let message_id = call.attr("messaging.message.id");
    assert!(RequestId::new(message_id).is_ok(), "{message_id:?}");
    assert_eq!(handle.attr("messaging.message.id"), message_id);
    assert_eq!(call.attr("messaging.operation.type"), "send");
    assert_eq!(handle.attr("messaging.operation.type"), "process");
    // The server's work lies inside the client's wait.
    assert!(call.start_unix_nano <= handle.start_unix_nano);
    assert!(handle.end_unix_nano <= call.end_unix_nano);
}
