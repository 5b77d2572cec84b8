//! Interop with the official Python CloudEvents SDK over NATS, both directions, both modes.
//! Under the production accounts: the Python side is tenant `acme`'s client
//! (it publishes requests on `agentry.requests.acme` and reads results on
//! `agentry.results.acme.>`); the Rust side is `admin` (reading) and
//! `engine` (publishing results).

use std::process::Stdio;
use std::time::Duration;

use agentry::event::{self, Limits, Mode};
use agentry_tests::{AuthServer, repo_root};
use cloudevents::AttributesReader;
use futures::StreamExt;
use tokio::io::AsyncBufReadExt;

/// How long a Python peer may take for one step (it is a cold interpreter
/// on a loaded machine; nothing waits this long when things work).
const PYTHON_WAIT: Duration = Duration::from_secs(60);

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn script() -> String {
    repo_root()
        .join("tests/interop/ce_interop.py")
        .display()
        .to_string()
}

/// The server URL with `role`'s credentials in it (how nats-py takes them).
fn url_as(nats: &AuthServer, role: &str) -> String {
    nats.url.replacen(
        "nats://",
        &format!("nats://{role}:{}@", nats.password(role)),
        1,
    )
}

/// Events published by the Python SDK in both modes decode in agentry.
#[tokio::test]
async fn python_sdk_to_agentry() {
    let nats = AuthServer::start();
    let client = nats.client("admin").await;
    let acme_url = url_as(&nats, "client_acme");
    for mode in ["binary", "structured"] {
        // Only the tenant's request subject is the Python client's to publish on.
        let subject = "agentry.requests.acme".to_owned();
        let mut sub = client.subscribe(subject.clone()).await.unwrap();
        client.flush().await.unwrap();
        let out = tokio::process::Command::new(python())
            .args([&script(), "publish", &acme_url, &subject, mode])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "python publish failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let a = sub.next().await.unwrap();
        let b = sub.next().await.unwrap();
        let da = event::decode(a.headers.as_ref(), &a.payload, &Limits::default()).unwrap();
        let expected_mode = if mode == "binary" {
            Mode::Binary
        } else {
            Mode::Structured
        };
        assert_eq!(da.mode, expected_mode);
        assert_eq!(da.event.id(), "py-evt-1");
        assert_eq!(da.event.ty(), "io.agentry.task.requested");
        assert_eq!(da.event.subject(), Some("größe 100% \"ok\""));
        assert_eq!(
            event::ext_str(&da.event, "traceparent").as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let data = event::data_json(&da.event).unwrap();
        assert_eq!(data["input"]["text"], "héllo wörld");
        assert_eq!(data["input"]["n"], 42);
        let db = event::decode(b.headers.as_ref(), &b.payload, &Limits::default()).unwrap();
        assert_eq!(db.event.id(), "py-evt-2");
        assert_eq!(
            db.event.data(),
            Some(&cloudevents::Data::Binary(vec![0, 1, 2, 250, 255])),
            "{mode}"
        );
    }
}

/// Events encoded by agentry in both modes decode with the Python SDK.
///
/// The Python child is read asynchronously: a blocking read here would stall
/// this test's runtime, and with it the connection that publishes. A Rust
/// subscriber with the same tenant credentials watches the same subject, so a
/// failure says whether the events reached the tenant at all.
#[tokio::test]
async fn agentry_to_python_sdk() {
    let nats = AuthServer::start();
    let client = nats.client("engine").await;
    let witness = nats.client("client_acme").await;
    let acme_url = url_as(&nats, "client_acme");
    for mode in [Mode::Binary, Mode::Structured] {
        let subject = format!("agentry.results.acme.interop-{mode:?}").to_lowercase();
        let mut seen = witness.subscribe(subject.clone()).await.unwrap();
        witness.flush().await.unwrap();
        let mut child = tokio::process::Command::new(python())
            .args([&script(), "receive", &acme_url, &subject, "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next_line = async || {
            tokio::time::timeout(PYTHON_WAIT, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: no line from the Python receiver"))
                .unwrap()
        };
        assert_eq!(next_line().await.as_deref(), Some("READY"), "{mode:?}");
        let mut json_event = event::new_event(
            "rs-1",
            "/interop/rust",
            "io.agentry.task.completed",
            serde_json::json!({"request_id": "r", "output": {"ok": "ünïcode ✓"}}),
        );
        json_event.set_extension(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        let mut bin_event = cloudevents::Event::default();
        {
            use cloudevents::AttributesWriter;
            bin_event.set_id("rs-2");
            bin_event.set_source("/interop/rust");
            bin_event.set_type("io.agentry.test.bytes");
        }
        bin_event.set_data("application/octet-stream", vec![9u8, 8, 255]);
        for e in [&json_event, &bin_event] {
            let (h, body) = event::encode(e, mode).unwrap();
            client
                .publish_with_headers(subject.clone(), h, body)
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        for n in 1..=2 {
            let got = tokio::time::timeout(PYTHON_WAIT, seen.next()).await;
            assert!(
                matches!(got, Ok(Some(_))),
                "{mode:?}: event {n} never reached tenant acme's subject"
            );
        }
        let (Some(first), Some(second)) = (next_line().await, next_line().await) else {
            panic!("{mode:?}: the Python receiver ended early (its stderr is above)");
        };
        let first: serde_json::Value = serde_json::from_str(&first).unwrap();
        let second: serde_json::Value = serde_json::from_str(&second).unwrap();
        let status = tokio::time::timeout(PYTHON_WAIT, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{mode:?}: {status}");
        assert_eq!(first["attributes"]["id"], "rs-1", "{mode:?}");
        assert_eq!(
            first["attributes"]["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(first["data"]["output"]["ok"], "ünïcode ✓");
        assert_eq!(second["attributes"]["id"], "rs-2");
        assert_eq!(
            second["data"]["bytes"],
            serde_json::json!([9, 8, 255]),
            "{mode:?}"
        );
    }
}
