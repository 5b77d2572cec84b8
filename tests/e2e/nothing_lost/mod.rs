//! Nothing lost, nothing stuck (issue 13): every error path keeps its
//! message until its outcome is recorded, exhausted tasks get a terminal
//! result without the monitor, runs awaiting approval do not block the
//! engine, and a request id resubmitted after the duplicate window is
//! answered from the results stream. Real nats-server with the production
//! accounts (`nats/accounts.conf`): engine as `engine`, monitor as
//! `monitor`, agents as `agent_echo` (or `agent`), clients as `client_acme`.

use std::sync::Arc;
use std::time::Duration;

use agentry::client::{self, Outcome};
use agentry::event::{self, Mode, types};
use agentry::id::{Capability, RequestId};
use agentry::subject::{self, Tenant};
use agentry::workflow::state::{RunState, RunStatus};
use agentry_tests::*;
use async_nats::jetstream::{self, consumer::PullConsumer};
use cloudevents::AttributesReader;
use futures::StreamExt;
use serde_json::{Value, json};

mod approvals;
mod dead_letters;
mod exhausted;

const SOURCE: &str = "/tests/nothing-lost";

/// The NATS user of the echo agent: its own kind's user when accounts.conf has one.
fn echo_role(server: &AuthServer) -> &'static str {
    if server.has_user("agent_echo") {
        "agent_echo"
    } else {
        "agent"
    }
}

fn acme() -> Tenant {
    Tenant::new("acme").unwrap()
}

/// The system under test ([`System`]) plus tenant `acme`'s connection.
struct Sys {
    sys: System,
    acme: async_nats::Client,
    acme_js: jetstream::Context,
}

impl std::ops::Deref for Sys {
    type Target = System;
    fn deref(&self) -> &System {
        &self.sys
    }
}

impl std::ops::DerefMut for Sys {
    fn deref_mut(&mut self) -> &mut System {
        &mut self.sys
    }
}

impl Sys {
    async fn start(settings: agentry::topology::Settings) -> Self {
        let sys = System::builder().settings(settings).start().await;
        let acme = sys.server.client("client_acme").await;
        let acme_js = jetstream::new(acme.clone());
        Self { sys, acme, acme_js }
    }

    /// The echo agent of these tests: 64 tasks at once.
    fn echo_agent(&mut self) -> tokio_util::sync::CancellationToken {
        self.sys.echo_agent(64)
    }

    async fn submit(&self, ev: &cloudevents::Event, limit: Duration) -> Outcome {
        client::submit_as(
            &self.acme,
            &self.acme_js,
            Some(&acme()),
            ev,
            Mode::Binary,
            limit,
        )
        .await
        .expect("a result")
    }

    async fn publish(&self, ev: &cloudevents::Event) {
        client::publish_request_as(&self.acme_js, Some(&acme()), ev, Mode::Binary)
            .await
            .expect("request stored");
    }

    async fn stored_result(&self, id: &RequestId) -> Option<Outcome> {
        client::fetch_result_as(&self.acme_js, Some(&acme()), id).await
    }

    /// Waits until acme's result for `id` is stored and returns it.
    async fn wait_result(&self, id: &RequestId, limit: Duration, what: &str) -> Outcome {
        eventually(limit, what, || async {
            self.stored_result(id).await.is_some()
        })
        .await;
        self.stored_result(id)
            .await
            .unwrap_or_else(|| panic!("{what}: stored, then gone"))
    }
}

fn echo_task(id: &RequestId, input: Value, timeout_ms: Option<u64>) -> cloudevents::Event {
    client::task_request(id, SOURCE, "echo", input, timeout_ms)
}

/// Makes `stream` refuse every publish by moving it to subjects nobody
/// uses (what an operator's mistaken edit or an outage looks like to a
/// publisher); returns its real subjects for [`accept`].
async fn refuse(admin: &jetstream::Context, stream: &str) -> Vec<String> {
    let mut st = admin.get_stream(stream).await.unwrap();
    let mut cfg = st.info().await.unwrap().config.clone();
    let subjects = cfg.subjects.clone();
    cfg.subjects = vec![format!("agentry.refused.{}.>", stream.to_lowercase())];
    admin.update_stream(&cfg).await.unwrap();
    subjects
}

async fn accept(admin: &jetstream::Context, stream: &str, subjects: Vec<String>) {
    let mut st = admin.get_stream(stream).await.unwrap();
    let mut cfg = st.info().await.unwrap().config.clone();
    cfg.subjects = subjects;
    admin.update_stream(&cfg).await.unwrap();
}

async fn consumer(admin: &jetstream::Context, stream: &str, name: &str) -> PullConsumer {
    admin
        .get_stream(stream)
        .await
        .unwrap()
        .get_consumer(name)
        .await
        .unwrap()
}

/// Waits until `consumer` has redelivered at least one message (the
/// message was kept, not acked or terminated).
async fn wait_redelivered(admin: &jetstream::Context, stream: &str, name: &str) {
    let admin = admin.clone();
    eventually(
        Duration::from_secs(30),
        &format!("{stream}/{name} redelivers"),
        || {
            let admin = admin.clone();
            async move {
                let mut c = consumer(&admin, stream, name).await;
                c.info().await.unwrap().num_redelivered >= 1
            }
        },
    )
    .await;
}

/// Waits until an echo worker is pulling (works without the monitor, which
/// the registry needs).
async fn wait_pulling(admin: &jetstream::Context) {
    let admin = admin.clone();
    eventually(Duration::from_secs(30), "an echo worker pulls", || {
        let admin = admin.clone();
        async move {
            let mut c = consumer(&admin, subject::TASKS_STREAM, "cap-echo").await;
            c.info().await.unwrap().num_waiting >= 1
        }
    })
    .await;
}

async fn stream_messages(admin: &jetstream::Context, stream: &str) -> u64 {
    let mut st = admin.get_stream(stream).await.unwrap();
    st.info().await.unwrap().state.messages
}

/// Waits until `stream` holds no message (everything in it was settled).
async fn wait_empty(admin: &jetstream::Context, stream: &str, what: &str) {
    eventually(Duration::from_secs(10), what, || async {
        stream_messages(admin, stream).await == 0
    })
    .await;
}

/// The DLQ copies whose `Agentry-Dlq-Request-Id` (or, without one, whose
/// `Agentry-Dlq-Stream`) matches.
async fn dlq_copies(
    admin: &jetstream::Context,
    request_id: Option<&str>,
    stream: &str,
) -> Vec<async_nats::HeaderMap> {
    let st = admin.get_stream(subject::DLQ_STREAM).await.unwrap();
    let c = st
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: subject::DLQ_ALL.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut st2 = admin.get_stream(subject::DLQ_STREAM).await.unwrap();
    let total = st2.info().await.unwrap().state.messages as usize;
    let mut out = Vec::new();
    if total == 0 {
        return out;
    }
    let mut batch = c
        .fetch()
        .max_messages(total)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(m)) = batch.next().await {
        let Some(h) = m.headers.clone() else { continue };
        let by_id = request_id
            .is_some_and(|id| h.get(event::header::DLQ_REQUEST_ID).map(|v| v.as_str()) == Some(id));
        let by_stream = request_id.is_none()
            && h.get(event::header::DLQ_STREAM).map(|v| v.as_str()) == Some(stream);
        if by_id || by_stream {
            out.push(h);
        }
    }
    out
}

async fn wait_dlq(
    admin: &jetstream::Context,
    request_id: Option<&str>,
    stream: &str,
) -> async_nats::HeaderMap {
    let admin2 = admin.clone();
    eventually(Duration::from_secs(30), "the DLQ copy", || {
        let admin = admin2.clone();
        async move { !dlq_copies(&admin, request_id, stream).await.is_empty() }
    })
    .await;
    let copies = dlq_copies(admin, request_id, stream).await;
    assert_eq!(copies.len(), 1, "exactly one DLQ copy");
    copies.into_iter().next().unwrap()
}

fn error_code(out: &Outcome) -> String {
    out.data["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
