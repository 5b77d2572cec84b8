//! The steady-load driver: N requests at C in flight, results routed back by
//! subject, latency into an HDR histogram; and publishing one request of
//! each mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentry::event::{self, Mode as CeMode, ext, header};
use agentry::id::RequestId;
use agentry::subject;
use async_nats::jetstream;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::oneshot;

use super::raw::{setup_raw, spawn_raw_worker};
use super::{Args, Mode, Report};

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>;

/// Routes results (by subject) to the request waiting for them.
async fn result_router(
    client: &async_nats::Client,
    subject_all: &str,
    prefix: &'static str,
) -> anyhow::Result<Waiters> {
    let waiters: Waiters = Arc::new(Mutex::new(HashMap::new()));
    let mut sub = client.subscribe(subject_all.to_owned()).await?;
    let w = waiters.clone();
    // Ends when the client closes at the end of the run.
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let key = msg
                .subject
                .as_str()
                .strip_prefix(prefix)
                .unwrap_or_default()
                .to_owned();
            let ok = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("ce-type"))
                .map(|t| t.as_str().ends_with(".completed"))
                .unwrap_or(true);
            if let Some(tx) = w.lock().ok().and_then(|mut m| m.remove(&key)) {
                let _ = tx.send(ok);
            }
        }
    });
    client.flush().await?;
    Ok(waiters)
}

pub(super) async fn ensure_bench_workflow(js: &jetstream::Context) -> anyhow::Result<()> {
    let kv = js.get_key_value(subject::WORKFLOWS_BUCKET).await?;
    let def = json!({
        "name": "bench_chain", "version": 1,
        "description": "3 echo steps in a chain (benchmark)",
        "steps": [
            {"id": "a", "capability": "echo", "input": {"n": "input.n"}},
            {"id": "b", "capability": "echo", "needs": ["a"], "input": {"n": "steps.a.output.echo.n + 1"}},
            {"id": "c", "capability": "echo", "needs": ["b"], "input": {"n": "steps.b.output.echo.n + 1"}}
        ],
        "output": "steps.c.output.echo.n"
    });
    kv.put("bench_chain.1", serde_json::to_vec(&def)?.into())
        .await?;
    Ok(())
}

pub(super) async fn drive(
    client: &async_nats::Client,
    js: &jetstream::Context,
    args: &Args,
    mode: Mode,
) -> anyhow::Result<Report> {
    let stop = tokio_util::sync::CancellationToken::new();
    let (waiters, prefix) = match mode {
        Mode::Raw => {
            let c = setup_raw(js).await?;
            spawn_raw_worker(js.clone(), c, stop.clone());
            (
                result_router(client, "bench.raw.out.>", "bench.raw.out.").await?,
                "bench.raw.out.",
            )
        }
        _ => (
            result_router(client, subject::RESULTS_ALL, "agentry.results.").await?,
            "agentry.results.",
        ),
    };
    let _ = prefix;
    if mode == Mode::Workflow {
        ensure_bench_workflow(js).await?;
    }
    let run_tag = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        120_000_000,
        3,
    )?));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = if args.duration.is_some() {
        u64::MAX
    } else {
        args.requests + args.warmup
    };
    let pb = indicatif::ProgressBar::new(if args.duration.is_some() { 0 } else { total });
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:<8} [{bar:30}] {pos}/{len} {per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_message(format!("{mode:?}").to_lowercase());
    let deadline = args.duration.map(|d| Instant::now() + d);
    let started = Arc::new(Mutex::new(None::<Instant>));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (js, waiters, hist, errors, next, pb, started) = (
            js.clone(),
            waiters.clone(),
            hist.clone(),
            errors.clone(),
            next.clone(),
            pb.clone(),
            started.clone(),
        );
        let cap = args.capability.clone();
        let warmup = args.warmup;
        let tag = run_tag.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total || deadline.is_some_and(|d| Instant::now() > d) {
                    return;
                }
                if i == warmup
                    && let Ok(mut s) = started.lock()
                {
                    *s = Some(Instant::now());
                }
                let key = format!("b{tag}-{i}");
                let (tx, rx) = oneshot::channel();
                if let Ok(mut m) = waiters.lock() {
                    m.insert(key.clone(), tx);
                }
                let t0 = Instant::now();
                let sent = send(&js, mode, &cap, &key, i).await;
                let ok = match sent {
                    Ok(()) => matches!(
                        tokio::time::timeout(Duration::from_secs(60), rx).await,
                        Ok(Ok(true))
                    ),
                    Err(_) => false,
                };
                if i >= warmup {
                    if ok {
                        if let Ok(mut h) = hist.lock() {
                            let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
                        }
                    } else {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Ok(mut m) = waiters.lock() {
                            m.remove(&key);
                        }
                    }
                }
                pb.inc(1);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    pb.finish_and_clear();
    stop.cancel();
    let elapsed = started
        .lock()
        .ok()
        .and_then(|s| s.map(|t| t.elapsed()))
        .unwrap_or_default();
    let h = hist
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock poisoned"))?;
    let n = h.len();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Report {
        mode,
        requests: n,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        concurrency: args.concurrency,
        seconds: elapsed.as_secs_f64(),
        throughput: n as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1000.0,
    })
}

async fn send(
    js: &jetstream::Context,
    mode: Mode,
    cap: &str,
    key: &str,
    i: u64,
) -> anyhow::Result<()> {
    publish(js, mode, cap, key, i).await?.await?;
    Ok(())
}

/// Publishes request `i` of `mode` with id `key`; the PubAck is the caller's to await.
pub(super) async fn publish(
    js: &jetstream::Context,
    mode: Mode,
    cap: &str,
    key: &str,
    i: u64,
) -> anyhow::Result<jetstream::context::PublishAckFuture> {
    let id = RequestId::new(key)?;
    let (to, headers, body) = match mode {
        Mode::Raw => {
            let mut h = async_nats::HeaderMap::new();
            h.insert("id", key);
            h.insert(header::MSG_ID, key);
            (
                "bench.raw.in".to_owned(),
                h,
                json!({"n": i}).to_string().into(),
            )
        }
        Mode::Task | Mode::Workflow => {
            let ev = if mode == Mode::Task {
                agentry::client::task_request(&id, "/bench", cap, json!({"n": i}), None)
            } else {
                agentry::client::workflow_request(
                    &id,
                    "/bench",
                    "bench_chain",
                    Some(1),
                    json!({"n": i}),
                )
            };
            let (mut h, body) = event::encode(&ev, CeMode::Binary)?;
            h.insert(header::MSG_ID, subject::request_key(None, &id).as_str());
            (subject::REQUESTS.to_owned(), h, body)
        }
        Mode::Direct => {
            let mut ev = agentry::client::task_request(&id, "/bench", cap, json!({"n": i}), None);
            ev.set_extension(ext::REPLYTO, subject::results(&id));
            let (mut h, body) = event::encode(&ev, CeMode::Binary)?;
            h.insert(header::MSG_ID, key);
            let cap = agentry::id::Capability::new(cap)?;
            (subject::tasks(&cap), h, body)
        }
    };
    Ok(js.publish_with_headers(to, headers, body).await?)
}
