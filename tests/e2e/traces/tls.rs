//! Span export over TLS: the harness's receiver serves OTLP/HTTP and
//! OTLP/gRPC with a certificate of a generated CA and asks for client
//! certificates of it (mutual TLS); the components are pointed at it with
//! the standard certificate variables. And a collector they cannot reach or
//! trust never stops them: spans are dropped and counted.

use std::time::Duration;

use agentry::client::task_request;
use agentry::event::ext;
use agentry::id::RequestId;
use agentry_tests::*;
use serde_json::json;

use super::{dump, traced_env_as};
use crate::observability::get;

/// The TLS variables for client certificate `role` of the CA in `dir`.
fn tls_env(
    mut env: Vec<(String, String)>,
    ca: &std::path::Path,
    dir: &std::path::Path,
    role: &str,
) -> Vec<(String, String)> {
    let (cert, key) = Certs::pair(dir, role);
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert.as_path()),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.as_path()),
    ] {
        env.push((k.to_owned(), v.display().to_string()));
    }
    env
}

/// Submits one echo task as acme with a client traceparent in `trace`.
async fn traced_task(nats: &AuthServer, trace: &str) {
    let acme = nats.tenant("acme").await;
    let id = RequestId::generate();
    let mut ev = task_request(&id, "/tests/traces", "echo", json!({"tls": true}), None);
    ev.set_extension(ext::TRACEPARENT, format!("00-{trace}-00f067aa0ba902b7-01"));
    let out = acme.submit(&ev, Duration::from_secs(60)).await.unwrap();
    assert!(out.is_success(), "{:?}", out.data);
}

/// The engine exports over OTLP/HTTP to an `https://` endpoint and the
/// agent over OTLP/gRPC to a `grpcs://` one, each trusting the CA of
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` and presenting its client certificate:
/// one task's spans of both processes arrive at the TLS receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_tls_collector_over_http_and_grpc() {
    const TRACE: &str = "7c6b5a4938271605f4e3d2c1b0a99887";
    let certs = Certs::generate();
    let otlp = OtlpReceiver::start_tls(&certs.good).await;
    assert!(otlp.endpoint.starts_with("https://"));
    let nats = AuthServer::start();
    nats.setup().await;
    let engine_env = traced_env_as(nats.env("engine"), &otlp.endpoint, "http/protobuf");
    let _engine = ChildProc::spawn(
        "agentry-engine",
        &["--http-addr", "off", "--rate-limit-tenant", "0"],
        &tls_env(engine_env, &certs.ca(), &certs.good, "engine"),
    );
    let grpcs = otlp.grpc_endpoint.replace("https://", "grpcs://");
    let agent_env = traced_env_as(nats.agent_env("echo"), &grpcs, "grpc");
    let _agent = ChildProc::spawn(
        "agentry-agent",
        &["--agents", "echo", "--http-addr", "off"],
        &tls_env(agent_env, &certs.ca(), &certs.good, "agent"),
    );
    traced_task(&nats, TRACE).await;
    let o = &otlp;
    eventually(
        Duration::from_secs(30),
        "the engine's and the agent's spans over TLS",
        || {
            let spans = o.trace(TRACE);
            let done = spans.iter().any(|s| s.service == "agentry-engine")
                && spans.iter().any(|s| {
                    s.name == "process agentry.tasks.echo" && s.service == "agentry-agent"
                });
            async move { done }
        },
    )
    .await;
    let spans = otlp.trace(TRACE);
    assert!(
        spans.iter().any(|s| s.name == "process agentry.requests"),
        "{}",
        dump(&spans)
    );
}

/// A collector the components cannot trust (the engine is given a foreign
/// CA) or whose settings are broken (the agent's CA file does not exist)
/// stops nothing: both start, the task completes, no span arrives, and
/// each process counts the spans it dropped on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_or_misconfigured_collector_drops_and_counts_spans() {
    const TRACE: &str = "0123456789abcdef0123456789abcdef";
    let certs = Certs::generate();
    let otlp = OtlpReceiver::start_tls(&certs.good).await;
    let nats = AuthServer::start();
    nats.setup().await;
    let (engine_http, agent_http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let engine_env = traced_env_as(nats.env("engine"), &otlp.endpoint, "http/protobuf");
    let foreign_ca = certs.foreign.join("ca.pem");
    let _engine = ChildProc::spawn(
        "agentry-engine",
        &["--http-addr", &engine_http, "--rate-limit-tenant", "0"],
        &tls_env(engine_env, &foreign_ca, &certs.foreign, "engine"),
    );
    let mut agent_env = traced_env_as(nats.agent_env("echo"), &otlp.grpc_endpoint, "grpc");
    agent_env.push((
        "OTEL_EXPORTER_OTLP_CERTIFICATE".into(),
        "/nonexistent/ca.pem".into(),
    ));
    let _agent = ChildProc::spawn(
        "agentry-agent",
        &["--agents", "echo", "--http-addr", &agent_http],
        &agent_env,
    );
    traced_task(&nats, TRACE).await;
    for addr in [&engine_http, &agent_http] {
        eventually(
            Duration::from_secs(30),
            &format!("dropped spans counted on {addr}/metrics"),
            || async move {
                let (code, body) = get(addr, "/metrics").await;
                code == 200
                    && body.lines().any(|l| {
                        l.starts_with("agentry_trace_spans_dropped_total")
                            && l.split_whitespace()
                                .last()
                                .and_then(|v| v.parse::<f64>().ok())
                                > Some(0.0)
                    })
            },
        )
        .await;
    }
    assert!(otlp.spans().is_empty(), "{}", dump(&otlp.spans()));
}
