//! A run's events in order, for its run page: the lifecycle facts the
//! engine published on AGENTRY_EVENTS about it (`agentry.events.run.<verb>`
//! and `agentry.events.step.<verb>`, each carrying the run's key in the
//! `runid` extension).
//!
//! Event subjects name the kind of fact, not the run, so the run's events
//! are found by reading both families from the run's creation time on and
//! keeping those whose `runid` is the run's. Each family is read by a
//! short-lived ephemeral push consumer (no acks, in memory, removed by the
//! server [`INACTIVE`] after the read) named so its filter is part of the
//! create subject: that is what lets the `console` NATS user create
//! consumers on these two families only (docs/console.md). A read stops
//! when the consumer has delivered everything the stream held when it was
//! created, after [`SCAN_LIMIT`] messages, or after [`READ_TIMEOUT`]; the
//! page says when the list may be incomplete.

use std::time::Duration;

use agentry::event::{self, Limits, ext};
use agentry::subject;
use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use cloudevents::AttributesReader as _;
use futures::StreamExt;
use serde_json::Value;

use super::html::{esc, json_pre};

/// The event families a run's page shows (filters of the two consumers).
pub const FAMILIES: [&str; 2] = ["agentry.events.run.>", "agentry.events.step.>"];
/// Most messages one family's read looks at.
pub const SCAN_LIMIT: usize = 5_000;
/// Longest one family's read may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server keeps a consumer nobody reads.
const INACTIVE: Duration = Duration::from_secs(5);
/// Events published this long before the run's creation time are read too
/// (clocks of the engine and the server may differ a little).
const SKEW: chrono::Duration = chrono::Duration::seconds(2);

/// One event of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Sequence in AGENTRY_EVENTS (the order).
    pub seq: u64,
    /// When the server stored it.
    pub stored: DateTime<Utc>,
    /// CloudEvents type, e.g. `io.agentry.step.completed`.
    pub ty: String,
    pub data: Value,
}

/// The events found, oldest first, and whether the reads covered
/// everything from the run's start.
#[derive(Debug, Default)]
pub struct Listing {
    pub items: Vec<Item>,
    /// Set when a read hit [`SCAN_LIMIT`] or [`READ_TIMEOUT`].
    pub incomplete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("creating a reader of {filter} on {stream}")]
    Create {
        stream: &'static str,
        filter: &'static str,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    #[error("reading {filter}")]
    Read {
        filter: &'static str,
        #[source]
        source: async_nats::jetstream::consumer::StreamError,
    },
    #[error("run start time {0} cannot be expressed as a stream time")]
    Time(DateTime<Utc>),
}

/// The events of run `run_key` (created at `created`), in stream order.
pub async fn of_run(
    js: &jetstream::Context,
    run_key: &str,
    created: DateTime<Utc>,
) -> Result<Listing, EventsError> {
    let from = created - SKEW;
    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
        from.timestamp_nanos_opt()
            .ok_or(EventsError::Time(created))?,
    ))
    .map_err(|_| EventsError::Time(created))?;
    let mut out = Listing::default();
    for filter in FAMILIES {
        let incomplete = read_family(js, filter, start_time, run_key, &mut out.items).await?;
        out.incomplete |= incomplete;
    }
    out.items.sort_by_key(|i| i.seq);
    Ok(out)
}

/// Reads one family into `items`; returns whether the read was cut short.
async fn read_family(
    js: &jetstream::Context,
    filter: &'static str,
    start_time: time::OffsetDateTime,
    run_key: &str,
    items: &mut Vec<Item>,
) -> Result<bool, EventsError> {
    let config = consumer::push::Config {
        // Naming the consumer puts the filter into the create subject
        // (`$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`).
        name: Some(format!("console_{}", uuid::Uuid::new_v4().simple())),
        deliver_subject: js.client().new_inbox(),
        filter_subject: filter.to_owned(),
        deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time },
        ack_policy: consumer::AckPolicy::None,
        inactive_threshold: INACTIVE,
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    };
    let consumer: consumer::PushConsumer = js
        .create_consumer_on_stream(config, subject::EVENTS_STREAM)
        .await
        .map_err(|source| EventsError::Create {
            stream: subject::EVENTS_STREAM,
            filter,
            source,
        })?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(false);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|source| EventsError::Read { filter, source })?;
    let read = async {
        let mut seen = 0usize;
        while let Some(msg) = messages.next().await {
            let Ok(msg) = msg else {
                return true;
            };
            seen += 1;
            let Ok(info) = msg.info() else {
                continue;
            };
            let (seq, pending) = (info.stream_sequence, info.pending);
            let stored = DateTime::from_timestamp_nanos(
                i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(i64::MAX),
            );
            if let Some(item) = decode(&msg, run_key, seq, stored) {
                items.push(item);
            }
            if pending == 0 {
                return false;
            }
            if seen >= SCAN_LIMIT {
                return true;
            }
        }
        true
    };
    Ok(tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or(true))
}

/// The event in `msg` if it is about run `run_key`; other runs' events and
/// undecodable messages are skipped.
fn decode(
    msg: &jetstream::Message,
    run_key: &str,
    seq: u64,
    stored: DateTime<Utc>,
) -> Option<Item> {
    let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).ok()?;
    if event::ext_str(&d.event, ext::RUNID).as_deref() != Some(run_key) {
        return None;
    }
    Some(Item {
        seq,
        stored,
        ty: d.event.ty().to_owned(),
        data: event::data_json(&d.event).unwrap_or(Value::Null),
    })
}

/// The run page's Events section: a table of `listing`, or why it is
/// missing.
pub fn section(listing: Result<Listing, EventsError>) -> String {
    let listing = match listing {
        Ok(l) => l,
        Err(e) => {
            return format!(
                "<h2>Events</h2>{}",
                super::unavailable("events", &agentry::error::chain(&e))
            );
        }
    };
    let mut rows = String::new();
    for i in &listing.items {
        let short = i.ty.strip_prefix(event::TYPE_PREFIX).unwrap_or(&i.ty);
        let field = |k: &str| i.data.get(k).and_then(Value::as_str).unwrap_or("");
        let attempt = i.data.get("attempt").and_then(Value::as_u64);
        rows.push_str(&format!(
            "<tr data-type=\"{ty}\" data-seq=\"{seq}\"><td>{seq}</td><td>{at}</td><td>{short}</td>\
             <td>{step}</td><td>{status}</td><td>{attempt}</td><td><details><summary>data</summary>{data}</details></td></tr>",
            ty = esc(&i.ty),
            seq = i.seq,
            at = i.stored.format("%H:%M:%S%.3f"),
            short = esc(short),
            step = esc(field("step")),
            status = esc(field("status")),
            attempt = attempt.map(|a| a.to_string()).unwrap_or_default(),
            data = json_pre(&i.data),
        ));
    }
    if listing.items.is_empty() {
        rows.push_str("<tr><td colspan=\"7\">no events found</td></tr>");
    }
    let note = if listing.incomplete {
        format!(
            "<p class=\"error\" id=\"events-incomplete\">only part of the events since the run started was read \
             (at most {SCAN_LIMIT} per family, {}s)</p>",
            READ_TIMEOUT.as_secs()
        )
    } else {
        String::new()
    };
    format!(
        "<h2>Events</h2>{note}<table class=\"events\" id=\"run-events\"><thead><tr><th>Seq</th><th>Stored</th>\
         <th>Type</th><th>Step</th><th>Status</th><th>Attempt</th><th>Data</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, ty: &str, data: Value) -> Item {
        Item {
            seq,
            stored: Utc::now(),
            ty: ty.into(),
            data,
        }
    }

    #[test]
    fn section_lists_events_escaped_and_says_when_incomplete() {
        let listing = Listing {
            items: vec![
                item(
                    3,
                    "io.agentry.run.started",
                    serde_json::json!({"status": "running"}),
                ),
                item(
                    7,
                    "io.agentry.step.failed",
                    serde_json::json!({"step": "<b>x</b>", "status": "failed", "attempt": 2,
                                       "error": {"message": "<script>alert(1)</script>"}}),
                ),
            ],
            incomplete: true,
        };
        let out = section(Ok(listing));
        assert!(
            out.contains("data-type=\"io.agentry.step.failed\" data-seq=\"7\""),
            "{out}"
        );
        assert!(
            out.contains(
                "<td>step.failed</td><td>&lt;b&gt;x&lt;/b&gt;</td><td>failed</td><td>2</td>"
            ),
            "{out}"
        );
        assert!(!out.contains("<script>") && !out.contains("<b>x"), "{out}");
        assert!(out.contains("id=\"events-incomplete\""));
        let empty = section(Ok(Listing::default()));
        assert!(empty.contains("no events found") && !empty.contains("events-incomplete"));
    }

    #[test]
    fn section_names_why_events_are_missing() {
        let out = section(Err(EventsError::Time(Utc::now())));
        assert!(out.contains("events unavailable"), "{out}");
    }
}
