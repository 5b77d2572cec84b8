//! Distributed traces (issue 18): the engine and an agent run as their own
//! processes under the production accounts, exporting spans over
//! OTLP/HTTP to the harness's receiver; one `echo_diamond` run submitted by
//! tenant `acme` with a client `traceparent` must come back as one trace:
//! client -> engine intake -> run -> 6 steps -> agent executions.
//! Children: [`a2a`] (an A2A call as a client/server span pair across
//! agent processes), [`rejected`] (refused requests get an intake span),
//! [`tls`] (export to a collector over TLS; one that cannot be reached or
//! trusted stops nothing).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use agentry::client::{task_request, workflow_request};
use agentry::event::ext;
use agentry::id::RequestId;
use agentry_tests::*;
use serde_json::json;

mod a2a;
mod rejected;
mod tls;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const STEPS: [&str; 6] = ["start", "left", "middle", "right", "join", "finish"];

/// The component's environment as `role`, exporting spans to `otlp`.
pub(super) fn traced_env(
    base: Vec<(String, String)>,
    otlp: &OtlpReceiver,
) -> Vec<(String, String)> {
    traced_env_as(base, &otlp.endpoint, "http/protobuf")
}

/// `traced_env` with the OTLP endpoint and protocol given.
pub(super) fn traced_env_as(
    base: Vec<(String, String)>,
    endpoint: &str,
    protocol: &str,
) -> Vec<(String, String)> {
    let mut env = base;
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        // Export within a tenth of a second instead of five.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    env
}

/// The spans of a trace, one per line, for assertion messages.
pub(super) fn dump(spans: &[ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} <- {} [{}] {:?}",
                s.service, s.span_id, s.parent_span_id, s.name, s.attributes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One echo_diamond run with a client traceparent is one trace across the engine and agent processes: intake (child of the client's span) -> run -> 6 steps -> one agent execution per step, each with messaging attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_run_is_one_trace_across_processes() {
    let otlp = OtlpReceiver::start().await;
    let nats = AuthServer::start();
    let (_, js) = nats.setup().await;
    let diamond =
        std::fs::read_to_string(repo_root().join("schemas/examples/workflows/echo_diamond.yaml"))
            .unwrap();
    agentry::workflow::store::put(&js, &diamond).await.unwrap();
    let _engine = ChildProc::engine(&traced_env(nats.env("engine"), &otlp));
    let _agent = ChildProc::spawn(
        "agentry-agent",
        &["--agents", "echo", "--http-addr", "off"],
        &traced_env(nats.agent_env("echo"), &otlp),
    );
    // No monitor: the run's step tasks wait in their queue until the agent pulls.

    let acme = nats.tenant("acme").await;
    let id = RequestId::generate();
    let mut ev = workflow_request(&id, "/tests/traces", "echo_diamond", None, json!({"n": 3}));
    ev.set_extension(ext::TRACEPARENT, format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"));
    let out = acme.submit(&ev, Duration::from_secs(60)).await.unwrap();
    assert!(out.is_success(), "{:?}", out.data);
    assert_eq!(out.data["output"]["total"], 19);

    // The run span is recorded when the run ends; agent spans a moment
    // after each task. Wait until the whole tree has arrived.
    let o = &otlp;
    eventually(
        Duration::from_secs(30),
        "run, 6 steps and 6 agent executions exported",
        || {
            let spans = o.trace(TRACE_ID);
            let done = spans.iter().any(|s| s.name == "workflow echo_diamond")
                && spans
                    .iter()
                    .filter(|s| s.name == "process agentry.tasks.echo")
                    .count()
                    >= 6;
            async move { done }
        },
    )
    .await;
    let spans = otlp.trace(TRACE_ID);
    let dump = || tree(&spans);
    let one = |pred: &dyn Fn(&ReceivedSpan) -> bool, what: &str| {
        let found: Vec<_> = spans.iter().filter(|s| pred(s)).collect();
        assert_eq!(found.len(), 1, "exactly one {what}:\n{}", dump());
        found[0].clone()
    };

    // Engine intake: a consumer span, child of the client's span.
    let intake = one(&|s| s.name == "process agentry.requests", "intake span");
    assert_eq!(intake.service, "agentry-engine");
    assert_eq!(intake.parent_span_id, CLIENT_SPAN, "{}", dump());
    assert_eq!(intake.kind, 5, "consumer");
    assert_eq!(intake.attr("messaging.system"), "nats");
    assert_eq!(
        intake.attr("messaging.destination.name"),
        "agentry.requests.acme"
    );
    assert_eq!(intake.attr("messaging.message.id"), id.as_str());

    // The run as a whole, under the intake span.
    let run = one(&|s| s.name == "workflow echo_diamond", "run span");
    assert_eq!(run.service, "agentry-engine");
    assert_eq!(run.parent_span_id, intake.span_id, "{}", dump());
    assert_eq!(run.attr("agentry.run_id"), format!("acme.{id}"));
    assert_eq!(run.attr("agentry.status"), "completed");

    // Six steps under the run, each covered by it.
    let mut step_spans = HashMap::new();
    for step in STEPS {
        let s = one(
            &|s| s.name == format!("step {step}"),
            &format!("step span {step}"),
        );
        assert_eq!(s.service, "agentry-engine");
        assert_eq!(s.parent_span_id, run.span_id, "step {step}:\n{}", dump());
        assert_eq!(s.attr("agentry.step_id"), step);
        assert!(
            run.start_unix_nano <= s.start_unix_nano && s.end_unix_nano <= run.end_unix_nano,
            "step {step} outside the run span"
        );
        step_spans.insert(s.span_id.clone(), step);
    }

    // One agent execution per step, in the agent process, under its step.
    let executions: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "process agentry.tasks.echo")
        .collect();
    assert_eq!(executions.len(), 6, "{}", dump());
    let mut seen = HashSet::new();
    for e in &executions {
        assert_eq!(e.service, "agentry-agent");
        assert_eq!(e.kind, 5, "consumer");
        let step = step_spans
            .get(&e.parent_span_id)
            .unwrap_or_else(|| panic!("execution {} has no step parent:\n{}", e.span_id, dump()));
        assert_eq!(e.attr("agentry.step_id"), *step);
        assert_eq!(e.attr("messaging.system"), "nats");
        assert_eq!(e.attr("messaging.destination.name"), "agentry.tasks.echo");
        assert!(!e.attr("messaging.message.id").is_empty());
        assert!(seen.insert(*step), "two executions for step {step}");
    }

    // The queue wait of each task is recorded beside its execution.
    let waits = spans
        .iter()
        .filter(|s| {
            s.name == "wait agentry.tasks.echo" && step_spans.contains_key(&s.parent_span_id)
        })
        .count();
    assert_eq!(waits, 6, "{}", dump());

    // One tree: every parent is a span of the trace or the client's span.
    let ids: HashSet<_> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for s in &spans {
        assert!(
            s.parent_span_id == CLIENT_SPAN || ids.contains(s.parent_span_id.as_str()),
            "span {} ({}) hangs off unknown parent {}:\n{}",
            s.span_id,
            s.name,
            s.parent_span_id,
            dump()
        );
    }
}

/// A single task with a client traceparent, exported over OTLP/gRPC: intake (child of the client's span) -> send to agentry.tasks.echo -> the agent's queue wait and execution, and the result carries the same trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_is_one_trace_over_grpc() {
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const CLIENT: &str = "b7ad6b7169203331";
    let otlp = OtlpReceiver::start().await;
    let nats = AuthServer::start();
    nats.setup().await;
    let grpc = |env| traced_env_as(env, &otlp.grpc_endpoint, "grpc");
    let _engine = ChildProc::spawn(
        "agentry-engine",
        &["--http-addr", "off", "--rate-limit-tenant", "0"],
        &grpc(nats.env("engine")),
    );
    let _agent = ChildProc::spawn(
        "agentry-agent",
        &["--agents", "echo", "--http-addr", "off"],
        &grpc(nats.agent_env("echo")),
    );
    let acme = nats.tenant("acme").await;
    let id = RequestId::generate();
    let mut ev = task_request(
        &id,
        "/tests/traces",
        "echo",
        json!({"message": "traced"}),
        None,
    );
    ev.set_extension(ext::TRACEPARENT, format!("00-{TRACE}-{CLIENT}-01"));
    let out = acme.submit(&ev, Duration::from_secs(60)).await.unwrap();
    assert!(out.is_success(), "{:?}", out.data);
    let tp = agentry::event::ext_str(&out.event, ext::TRACEPARENT).unwrap_or_default();
    assert!(tp.contains(TRACE), "the result carries the trace: {tp}");

    let o = &otlp;
    eventually(
        Duration::from_secs(30),
        "intake, send, wait and execution exported",
        || {
            let n = o.trace(TRACE).len();
            async move { n >= 4 }
        },
    )
    .await;
    let spans = otlp.trace(TRACE);
    let dump = tree(&spans);
    let named = |name: &str| {
        let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "exactly one {name}:\n{dump}");
        found[0].clone()
    };
    let intake = named("process agentry.requests");
    assert_eq!(intake.parent_span_id, CLIENT);
    let send = named("send agentry.tasks.echo");
    assert_eq!(send.service, "agentry-engine");
    assert_eq!(send.parent_span_id, intake.span_id, "{dump}");
    assert_eq!(send.kind, 4, "producer");
    assert_eq!(
        send.attr("messaging.destination.name"),
        "agentry.tasks.echo"
    );
    assert_eq!(send.attr("messaging.message.id"), id.as_str());
    let wait = named("wait agentry.tasks.echo");
    let exec = named("process agentry.tasks.echo");
    for s in [&wait, &exec] {
        assert_eq!(s.service, "agentry-agent");
        assert_eq!(s.parent_span_id, send.span_id, "{dump}");
        assert_eq!(s.attr("messaging.message.id"), id.as_str());
    }
    assert_eq!(exec.attr("messaging.consumer.group.name"), "cap-echo");
    assert!(wait.end_unix_nano <= exec.end_unix_nano);
    // Parent remoteness: the client's span and the engine's send span are
    // in other processes; the intake span is in the engine's own.
    for (s, remote) in [
        (&intake, true),
        (&send, false),
        (&wait, true),
        (&exec, true),
    ] {
        assert_eq!(s.remote_parent(), Some(remote), "{}:\n{dump}", s.name);
    }
}

/// One line per span (service, id, parent, name): what a failed tree
/// assertion prints.
fn tree(spans: &[ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} <- {} [{}]",
                s.service, s.span_id, s.parent_span_id, s.name
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
