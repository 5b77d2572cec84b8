//! Tenants end to end under the production accounts (`nats/accounts.conf`):
//! every component connects as its own role, clients as `client_acme` and
//! `client_globex` (globex plays the attacker). The tenant comes only from
//! the subject a request arrived on; see docs/tenancy.md.

use std::collections::HashMap;
use std::time::Duration;

use agentry::client::{self, task_request, workflow_request};
use agentry::event::{self, Mode, ext};
use agentry::id::RequestId;
use agentry::subject::{self, Tenant};
use agentry_tests::*;
use async_nats::jetstream;
use cloudevents::AttributesReader as _;
use futures::StreamExt;
use serde_json::json;

mod flood;
mod requests;
mod workflows;

/// A one-step echo workflow.
const ONE: &str = "name: one\nversion: 1\nsteps:\n  - id: only\n    capability: echo\n    input: { x: input.x }\noutput: steps.only.output.echo.x\n";

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

/// A tenant's connection and JetStream context.
async fn as_tenant(server: &AuthServer, name: &str) -> (async_nats::Client, jetstream::Context) {
    let c = server.client(&format!("client_{name}")).await;
    let js = jetstream::new(c.clone());
    (c, js)
}

/// Publishes `ev` on `tenant`'s request subject with extra `headers`
/// (binary mode), as a client would with `nats pub -H`.
async fn publish_with(
    js: &jetstream::Context,
    t: &Tenant,
    ev: &cloudevents::Event,
    extra: &[(&str, &str)],
) {
    let (mut headers, body) = event::encode(ev, Mode::Binary).unwrap();
    for (k, v) in extra {
        headers.insert(*k, *v);
    }
    let id = RequestId::new(ev.id()).unwrap();
    headers.insert(
        event::header::MSG_ID,
        subject::request_key(Some(t), &id).as_str(),
    );
    js.publish_with_headers(subject::requests_for(Some(t)), headers, body)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Every task waiting in `AGENTRY_TASKS`, decoded, by event id.
async fn queued_tasks(admin: &jetstream::Context) -> HashMap<String, cloudevents::Event> {
    let mut st = admin.get_stream(subject::TASKS_STREAM).await.unwrap();
    let (first, last) = {
        let state = &st.info().await.unwrap().state;
        (state.first_sequence, state.last_sequence)
    };
    let mut out = HashMap::new();
    for seq in first..=last {
        if let Ok(m) = st.get_raw_message(seq).await {
            let limits = event::Limits::default();
            let d = event::decode(Some(&m.headers), &m.payload, &limits).unwrap();
            out.insert(d.event.id().to_owned(), d.event);
        }
    }
    out
}

/// The run state under `key` in `agentry-runs`, read as admin.
async fn run_state(
    admin: &jetstream::Context,
    key: &str,
) -> Option<agentry::workflow::state::RunState> {
    let kv = admin.get_key_value(subject::RUNS_BUCKET).await.unwrap();
    let bytes = kv.get(key).await.unwrap()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}
