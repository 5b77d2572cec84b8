//! Agents page: the registry (KV `agentry-agents`) as a table, kept live
//! by a KV watch pushed to the browser as server-sent events.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use agentry::registry::{AgentRecord, Registry};
use async_nats::jetstream::kv::Operation;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::{Stream, StreamExt};

use super::html::{esc, page as frame};
use super::{Console, ROOT, unavailable};

/// Header of the agents table.
const HEAD: &str = "<thead><tr><th>ID</th><th>Kind</th><th>Capabilities</th><th>Status</th>\
<th>Load</th><th>In flight</th><th>Processed</th><th>Failed</th><th>Last heartbeat</th></tr></thead>";

pub async fn page(State(c): State<Console>) -> Response {
    let body = match Registry::open(&c.js).await {
        Ok(reg) => match reg.list().await {
            Ok(list) => table(list.iter()),
            Err(e) => unavailable("registry", &e),
        },
        Err(e) => unavailable("registry", &e),
    };
    frame("Agents", &body)
}

/// The table; its body is replaced by each `rows` event of the stream.
fn table<'a>(list: impl Iterator<Item = &'a AgentRecord>) -> String {
    format!(
        "<p class=\"live\" id=\"live-state\">live updates: <span data-live-state>connecting</span></p>\
         <table class=\"agents\">{HEAD}<tbody id=\"agents\" data-sse=\"{ROOT}/agents/events\" data-sse-event=\"rows\">{}</tbody></table>",
        rows(list)
    )
}

/// One `<tr>` per agent, every value escaped.
fn rows<'a>(list: impl Iterator<Item = &'a AgentRecord>) -> String {
    let now = Utc::now();
    let mut out = String::new();
    for r in list {
        let age = (now - r.last_heartbeat).num_milliseconds().max(0) as f64 / 1000.0;
        out.push_str(&format!(
            "<tr data-agent=\"{id}\"><td>{id}</td><td>{kind}</td><td>{caps}</td>\
             <td class=\"status-{status}\">{status}</td><td>{load:.2}</td><td>{inf}/{cap}</td>\
             <td>{proc}</td><td>{failed}</td><td>{age:.1}s ago</td></tr>",
            id = esc(&r.id),
            kind = esc(&r.kind),
            caps = esc(&r.capabilities.join(", ")),
            status = esc(r.status.as_str()),
            load = r.load,
            inf = r.in_flight,
            cap = r.capacity,
            proc = r.processed,
            failed = r.failed,
        ));
    }
    if out.is_empty() {
        out.push_str("<tr><td colspan=\"9\">no agents registered</td></tr>");
    }
    out
}

/// SSE: the rendered rows after every change of the registry (and every
/// 5 s, so heartbeat ages move). Ends when the watch fails; the browser
/// reconnects on its own.
pub async fn events(State(c): State<Console>) -> Response {
    let watch = match Registry::open(&c.js).await {
        Ok(reg) => reg
            .store()
            .watch_with_history(">")
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let watch = match watch {
        Ok(w) => w,
        Err(e) => {
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("registry watch unavailable: {e}\n"),
            )
                .into_response();
        }
    };
    Sse::new(updates(watch))
        .keep_alive(KeepAlive::default())
        .into_response()
}

enum Tick {
    Entry(Result<async_nats::jetstream::kv::Entry, async_nats::jetstream::kv::WatcherError>),
    Timer,
}

fn updates(
    watch: async_nats::jetstream::kv::Watch,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let entries = watch.map(Tick::Entry);
    let timer = tokio_stream_interval(Duration::from_secs(5)).map(|_| Tick::Timer);
    let merged = Box::pin(futures::stream::select(entries, timer));
    futures::stream::unfold(
        (merged, BTreeMap::<String, AgentRecord>::new(), false),
        |(mut merged, mut agents, done)| async move {
            if done {
                return None;
            }
            let tick = merged.next().await?;
            let (event, done) = match tick {
                Tick::Entry(Ok(entry)) => {
                    match entry.operation {
                        Operation::Put => {
                            if let Ok(r) = serde_json::from_slice::<AgentRecord>(&entry.value) {
                                agents.insert(entry.key.clone(), r);
                            }
                        }
                        Operation::Delete | Operation::Purge => {
                            agents.remove(&entry.key);
                        }
                    }
                    (
                        Event::default().event("rows").data(rows(agents.values())),
                        false,
                    )
                }
                Tick::Timer => (
                    Event::default().event("rows").data(rows(agents.values())),
                    false,
                ),
                Tick::Entry(Err(e)) => (
                    Event::default()
                        .event("failed")
                        .data(format!("registry watch failed: {e}")),
                    true,
                ),
            };
            Some((Ok(event), (merged, agents, done)))
        },
    )
}

/// A stream that yields every `period` (first after one period).
fn tokio_stream_interval(period: Duration) -> impl Stream<Item = ()> {
    futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(period).await;
        Some(((), ()))
    })
}
