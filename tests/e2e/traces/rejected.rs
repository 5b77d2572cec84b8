//! Refused requests are spans too: the engine (its own process, production
//! accounts, exporting over OTLP/HTTP) gives every request it rejects an
//! intake span in the client's trace, with status error and the reason.

use std::time::Duration;

use agentry::client::task_request;
use agentry::event::ext;
use agentry::id::RequestId;
use agentry_tests::*;
use serde_json::json;

use super::{dump, traced_env};

/// Three refusals, each with its client traceparent: an unknown capability
/// (refused while routing), a capability name that is not one (bad input,
/// refused at decode) and a message that is no CloudEvent at all (its
/// `ce-traceparent` header read as a hint). Each yields one failed intake
/// span, child of the client's span, carrying the reason and request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_get_a_failed_intake_span() {
    let otlp = OtlpReceiver::start().await;
    let nats = AuthServer::start();
    nats.setup().await;
    let _engine = ChildProc::spawn(
        "agentry-engine",
        &["--http-addr", "off", "--rate-limit-tenant", "0"],
        &traced_env(nats.env("engine"), &otlp),
    );
    let acme = nats.tenant("acme").await;
    let traceparent = |trace: &str| format!("00-{trace}-00f067aa0ba902b7-01");

    // Unknown capability and bad input: answered with request.rejected.
    let cases = [
        (
            "11111111111111111111111111111111",
            "no_such_capability",
            "unknown_capability",
        ),
        (
            "22222222222222222222222222222222",
            "Not A Capability!",
            "schema_invalid",
        ),
    ];
    let mut expected = Vec::new();
    for (trace, capability, reason) in cases {
        let id = RequestId::generate();
        let mut ev = task_request(&id, "/tests/traces", capability, json!({}), None);
        ev.set_extension(ext::TRACEPARENT, traceparent(trace));
        let out = acme.submit(&ev, Duration::from_secs(30)).await.unwrap();
        assert_eq!(out.ty, "io.agentry.request.rejected", "{:#}", out.data);
        assert_eq!(out.data["reason"], reason, "{:#}", out.data);
        expected.push((trace, id.to_string(), reason));
    }
    // Not a CloudEvent (no specversion): refused before anything decodes.
    let (trace, id) = ("33333333333333333333333333333333", RequestId::generate());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-id", id.as_str());
    headers.insert("ce-traceparent", traceparent(trace).as_str());
    acme.js
        .publish_with_headers(acme.requests_subject(), headers, "garbage".into())
        .await
        .unwrap()
        .await
        .unwrap();
    expected.push((trace, id.to_string(), "missing_attribute"));

    for (trace, id, reason) in expected {
        let o = &otlp;
        eventually(
            Duration::from_secs(30),
            &format!("the {reason} intake span"),
            || {
                let n = o.trace(trace).len();
                async move { n >= 1 }
            },
        )
        .await;
        let spans = otlp.trace(trace);
        assert_eq!(
            spans.len(),
            1,
            "{reason}: only the intake:\n{}",
            dump(&spans)
        );
        let s = &spans[0];
        assert_eq!(s.name, "process agentry.requests", "{reason}");
        assert_eq!(s.service, "agentry-engine");
        assert_eq!(s.parent_span_id, "00f067aa0ba902b7", "{reason}");
        assert_eq!(s.kind, 5, "consumer");
        assert_eq!(s.status_code, 2, "{reason}: status error");
        assert_eq!(s.attr("agentry.rejection.reason"), reason);
        assert_eq!(s.attr("error.type"), reason);
        assert_eq!(s.attr("messaging.system"), "nats");
        assert_eq!(
            s.attr("messaging.destination.name"),
            "agentry.requests.acme"
        );
        assert_eq!(s.attr("messaging.message.id"), id, "{reason}");
    }
}
