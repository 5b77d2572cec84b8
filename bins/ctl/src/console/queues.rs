//! Queues page: per capability, its `cap-<capability>` consumer on
//! AGENTRY_TASKS (pending: stored but not yet delivered; ack-pending:
//! delivered, not yet acknowledged), the live agents serving it (registry
//! KV), and a sparkline of its backlog over the last minutes.
//!
//! One sampler task per console reads everything every [`SAMPLE_EVERY`]
//! (one consumer-list request, one registry read) and keeps the last
//! [`KEEP`] backlogs per capability in a ring; the page and its event
//! stream render the latest [`Snapshot`], so any number of open pages costs
//! NATS nothing extra. The sampler ends when the last handle of its console
//! is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use agentry::error::chain;
use agentry::registry::{Registry, Status};
use agentry::subject;
use async_nats::jetstream;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use tokio::sync::watch;

use super::html::{esc, page as frame};
use super::{Console, ROOT};

/// How often the sampler reads the queues.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept per capability: five minutes at [`SAMPLE_EVERY`].
pub const KEEP: usize = 60;

/// One capability's queue at the latest sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// `None` when no `cap-<capability>` consumer exists (yet): a live
    /// agent serves the capability, its consumer is being created.
    pub pending: Option<u64>,
    pub ack_pending: Option<u64>,
    /// Agents with status `live` that list the capability.
    pub live: u64,
    /// Backlog (pending + ack-pending) per sample, oldest first.
    pub history: VecDeque<u64>,
}

/// What the page shows: the latest sample of every queue.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When the sample was taken; `None` before the first one.
    pub at: Option<DateTime<Utc>>,
    pub rows: BTreeMap<String, Row>,
    /// Reads that failed in this sample, shown above the table.
    pub errors: Vec<String>,
}

/// Starts the sampler; the receiver always holds the latest snapshot.
pub fn sampler(js: jetstream::Context) -> watch::Receiver<Arc<Snapshot>> {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    // Lives as long as some console handle holds a receiver.
    tokio::spawn(async move {
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        loop {
            let snap = sample(&js, &mut rows).await;
            if tx.send(Arc::new(snap)).is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

/// Reads the consumers and the registry once and advances every ring.
async fn sample(js: &jetstream::Context, rows: &mut BTreeMap<String, Row>) -> Snapshot {
    let mut errors = Vec::new();
    let mut depth: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let consumers_read = match js.get_stream_no_info(subject::TASKS_STREAM).await {
        Ok(stream) => {
            let mut list = stream.consumers();
            let mut ok = true;
            while let Some(info) = list.next().await {
                match info {
                    Ok(info) => {
                        if let Some(cap) = subject::capability_of_consumer(&info.name) {
                            depth.insert(
                                cap.to_owned(),
                                (info.num_pending, info.num_ack_pending as u64),
                            );
                        }
                    }
                    Err(e) => {
                        errors.push(format!(
                            "{} consumers: {}",
                            subject::TASKS_STREAM,
                            chain(&e)
                        ));
                        ok = false;
                        break;
                    }
                }
            }
            ok
        }
        Err(e) => {
            errors.push(format!("{}: {}", subject::TASKS_STREAM, chain(&e)));
            false
        }
    };
    let mut live: BTreeMap<String, u64> = BTreeMap::new();
    match Registry::open(js).await {
        Ok(reg) => match reg.list().await {
            Ok(list) => {
                for r in list.iter().filter(|r| r.status == Status::Live) {
                    for cap in &r.capabilities {
                        *live.entry(cap.clone()).or_default() += 1;
                    }
                }
            }
            Err(e) => errors.push(format!("registry: {}", chain(&e))),
        },
        Err(e) => errors.push(format!("registry: {}", chain(&e))),
    }
    if consumers_read {
        // A consumer that is gone and no live agent: the queue is gone.
        rows.retain(|cap, _| depth.contains_key(cap) || live.contains_key(cap));
    }
    for cap in depth.keys().chain(live.keys()) {
        rows.entry(cap.clone()).or_default();
    }
    for (cap, row) in rows.iter_mut() {
        let d = depth.get(cap);
        row.pending = d.map(|d| d.0);
        row.ack_pending = d.map(|d| d.1);
        row.live = live.get(cap).copied().unwrap_or(0);
        if consumers_read {
            row.history.push_back(d.map_or(0, |d| d.0 + d.1));
            while row.history.len() > KEEP {
                row.history.pop_front();
            }
        }
    }
    Snapshot {
        at: Some(Utc::now()),
        rows: rows.clone(),
        errors,
    }
}

const HEAD: &str = "<thead><tr><th>Capability</th><th>Pending</th><th>Ack pending</th>\
<th>Live agents</th><th>Backlog, last 5 min</th></tr></thead>";

pub async fn page(State(c): State<Console>) -> Response {
    let snap = c.queues.borrow().clone();
    frame(
        "Queues",
        &format!(
            "<p class=\"live\" id=\"live-state\">live updates: <span data-live-state>connecting</span> · \
             sampled every {every} s; backlog is pending + ack-pending of <code>cap-&lt;capability&gt;</code> \
             on {stream}</p>\
             <table class=\"queues\">{HEAD}<tbody id=\"queues\" data-sse=\"{ROOT}/queues/events\" \
             data-sse-event=\"rows\">{rows}</tbody></table>",
            every = SAMPLE_EVERY.as_secs(),
            stream = subject::TASKS_STREAM,
            rows = rows(&snap),
        ),
    )
}

/// The table's rows (and a row per failed read), every value escaped.
fn rows(snap: &Snapshot) -> String {
    let mut out = String::new();
    for e in &snap.errors {
        let _ = write!(
            out,
            "<tr><td colspan=\"5\" class=\"error\">unavailable: {}</td></tr>",
            esc(e)
        );
    }
    let n = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), |v| v.to_string());
    for (cap, r) in &snap.rows {
        let _ = write!(
            out,
            "<tr data-capability=\"{cap}\" data-pending=\"{p}\" data-ack-pending=\"{a}\" data-live=\"{live}\">\
             <td>{cap}</td><td>{p}</td><td>{a}</td><td class=\"{lc}\">{live}</td><td>{spark}</td></tr>",
            cap = esc(cap),
            p = n(r.pending),
            a = n(r.ack_pending),
            live = r.live,
            // Red: a backlog no live agent serves.
            lc = match (r.live, r.history.back()) {
                (0, Some(&b)) if b > 0 => "status-dead",
                (0, _) => "",
                _ => "status-live",
            },
            spark = sparkline(&r.history),
        );
    }
    if snap.rows.is_empty() && snap.errors.is_empty() {
        let what = if snap.at.is_some() {
            "no task queues"
        } else {
            "first sample pending"
        };
        let _ = write!(out, "<tr><td colspan=\"5\">{what}</td></tr>");
    }
    out
}

const SPARK_W: u32 = 160;
const SPARK_H: u32 = 28;

/// The backlog history as a small inline SVG line, newest sample at the
/// right edge, scaled to its own maximum (at least 1).
fn sparkline(history: &VecDeque<u64>) -> String {
    let max = history.iter().copied().max().unwrap_or(0);
    let last = history.back().copied().unwrap_or(0);
    let step = f64::from(SPARK_W - 2) / (KEEP - 1) as f64;
    let scale = f64::from(SPARK_H - 4) / max.max(1) as f64;
    let n = history.len();
    let points: Vec<(f64, f64)> = history
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = f64::from(SPARK_W - 1) - (n - 1 - i) as f64 * step;
            let y = f64::from(SPARK_H - 2) - *v as f64 * scale;
            (x, y)
        })
        .collect();
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    // The newest sample as a dot (a single sample draws no line).
    let dot = points
        .last()
        .map(|(x, y)| format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"#3b6fd8\"/>"))
        .unwrap_or_default();
    format!(
        "<svg class=\"spark\" width=\"{SPARK_W}\" height=\"{SPARK_H}\" viewBox=\"0 0 {SPARK_W} {SPARK_H}\" \
         role=\"img\" aria-label=\"backlog, max {max}, now {last}\" data-samples=\"{n}\" data-max=\"{max}\">\
         <title>backlog over {n} samples: max {max}, now {last}</title>\
         <line x1=\"1\" y1=\"{base}\" x2=\"{SPARK_W}\" y2=\"{base}\" stroke=\"#d8dde6\"/>\
         <polyline points=\"{pts}\" fill=\"none\" stroke=\"#3b6fd8\" stroke-width=\"1.5\"/>{dot}</svg>\
         <span class=\"spark-now\">{last}</span>",
        base = SPARK_H - 2,
        pts = pts.join(" "),
    )
}

/// SSE: the rendered rows after every sample. Ends when the sampler does;
/// the browser reconnects on its own.
pub async fn events(State(c): State<Console>) -> Response {
    Sse::new(updates(c.queues.clone()))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn updates(rx: watch::Receiver<Arc<Snapshot>>) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            rx.changed().await.ok()?;
        }
        let html = rows(&rx.borrow_and_update());
        Some((Ok(Event::default().event("rows").data(html)), (rx, false)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_puts_the_newest_sample_at_the_right() {
        let h: VecDeque<u64> = [0, 5, 2].into_iter().collect();
        let s = sparkline(&h);
        assert!(s.contains("data-samples=\"3\" data-max=\"5\""), "{s}");
        // Newest (2) at x = 159, the peak (5) at the top (y = 2).
        assert!(s.contains("159.0,"), "{s}");
        assert!(s.contains(",2.0"), "{s}");
        assert!(s.contains(">2</span>"), "{s}");
    }

    #[test]
    fn rows_escape_capabilities_and_say_when_empty() {
        let mut snap = Snapshot::default();
        assert!(rows(&snap).contains("first sample pending"));
        snap.at = Some(Utc::now());
        assert!(rows(&snap).contains("no task queues"));
        snap.rows.insert(
            "<x>".into(),
            Row {
                pending: Some(3),
                ack_pending: Some(1),
                live: 0,
                history: [4].into_iter().collect(),
            },
        );
        snap.errors.push("registry: <down>".into());
        let out = rows(&snap);
        assert!(out.contains("&lt;x&gt;") && !out.contains("<x>"), "{out}");
        assert!(out.contains("data-pending=\"3\" data-ack-pending=\"1\" data-live=\"0\""));
        assert!(out.contains("registry: &lt;down&gt;"));
    }
}
