//! `agentry bench --embedded --backlog N`: queue N requests with the
//! consumers stopped, start them, and measure how fast the queue drains.
//!
//! Agentry modes stop the echo agent (the engine keeps running, so task and
//! workflow requests are routed into AGENTRY_TASKS while it is down); `raw`
//! queues into its work-queue stream before its worker starts. Results are
//! counted by request id on the client's subscription, so a duplicate or a
//! missing result shows in the report.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentry::subject;
use async_nats::jetstream;
use futures::StreamExt;

use super::embedded::{COMPONENTS, Embedded, spawn_component, terminate};
use super::load::{ensure_bench_workflow, publish};
use super::raw::{setup_raw, spawn_raw_worker};
use super::{Args, Cpu, Mode, cpu_seconds};

/// Publishes in flight while queueing (PubAcks awaited in batches).
const QUEUE_WINDOW: usize = 2048;
/// A drain that makes no progress for this long is reported as an error.
const STALL_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub mode: Mode,
    pub queued: u64,
    /// Seconds to queue N (publish with PubAck, and for task and workflow
    /// modes until the engine has routed every request).
    pub queue_seconds: f64,
    pub queue_rate: f64,
    /// Seconds from starting the consumer to the last result.
    pub drain_seconds: f64,
    /// Results per second between the first and the last result.
    pub drain_rate: f64,
    /// Seconds from starting the consumer to the first result.
    pub first_result_seconds: f64,
    pub results: u64,
    pub failed: u64,
    pub duplicates: u64,
    pub processes: Vec<Cpu>,
}

impl Report {
    pub fn print(&self) {
        println!(
            "backlog {:<8} {:>8} queued in {:>6.2} s ({:>7.0}/s)  drained in {:>6.2} s  drain {:>7.0} req/s  first result after {:.2} s  results {}  failed {}  duplicates {}",
            format!("{:?}", self.mode).to_lowercase(),
            self.queued,
            self.queue_seconds,
            self.queue_rate,
            self.drain_seconds,
            self.drain_rate,
            self.first_result_seconds,
            self.results,
            self.failed,
            self.duplicates,
        );
        self.processes.iter().for_each(Cpu::print);
    }
}

/// Results seen on the client's subscription, by request id.
#[derive(Default)]
struct Tally {
    seen: HashSet<String>,
    failed: u64,
    duplicates: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Counts the results of this run (ids starting with `prefix`).
async fn count_results(
    client: &async_nats::Client,
    subject_all: &str,
    strip: &'static str,
    prefix: String,
) -> anyhow::Result<(Arc<Mutex<Tally>>, Arc<AtomicU64>)> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let count = Arc::new(AtomicU64::new(0));
    let mut sub = client.subscribe(subject_all.to_owned()).await?;
    let (t, c) = (tally.clone(), count.clone());
    // Ends when the client closes at the end of the bench; a poisoned lock ends it early
    // (the drain then stalls and is reported).
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let Some(key) = msg.subject.as_str().strip_prefix(strip) else {
                continue;
            };
            if !key.starts_with(&prefix) {
                continue;
            }
            let ok = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("ce-type"))
                .map(|t| t.as_str().ends_with(".completed"))
                .unwrap_or(true);
            let Ok(mut t) = t.lock() else { return };
            let now = Instant::now();
            t.first.get_or_insert(now);
            t.last = Some(now);
            if !t.seen.insert(key.to_owned()) {
                t.duplicates += 1;
                continue;
            }
            if !ok {
                t.failed += 1;
            }
            c.fetch_add(1, Ordering::Relaxed);
        }
    });
    client.flush().await?;
    Ok((tally, count))
}

fn agent_index(emb: &Embedded) -> anyhow::Result<usize> {
    emb.children
        .iter()
        .position(|(n, _)| n == "agentry-agent")
        .ok_or_else(|| anyhow::anyhow!("the embedded agent is not running"))
}

/// Stops the embedded agent gracefully (SIGTERM, so it acks what it holds).
fn stop_agent(emb: &mut Embedded) -> anyhow::Result<()> {
    let i = agent_index(emb)?;
    let child = &mut emb.children[i].1;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    terminate(child, Duration::from_secs(15));
    Ok(())
}

/// Waits until the server has no pull request of the stopped agent left:
/// a task queued into one would wait out the ack wait and skew the drain.
async fn wait_no_pullers(js: &jetstream::Context) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let st = js.get_stream_no_info(subject::TASKS_STREAM).await?;
        let info = st.consumer_info("cap-echo").await?;
        if info.num_waiting == 0 {
            return Ok(());
        }
        if start.elapsed() > STALL_LIMIT {
            anyhow::bail!("the stopped agent's pull requests did not expire");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the engine has taken every queued request off AGENTRY_REQUESTS.
async fn wait_routed(js: &jetstream::Context) -> anyhow::Result<()> {
    let mut last = (u64::MAX, Instant::now());
    loop {
        let st = js.get_stream_no_info(subject::REQUESTS_STREAM).await?;
        let info = st.consumer_info(subject::ENGINE_CONSUMER).await?;
        let left = info.num_pending + info.num_ack_pending as u64;
        if left == 0 {
            return Ok(());
        }
        if left < last.0 {
            last = (left, Instant::now());
        } else if last.1.elapsed() > STALL_LIMIT {
            anyhow::bail!("the engine stopped routing with {left} requests left");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn run(
    client: &async_nats::Client,
    js: &jetstream::Context,
    emb: &mut Embedded,
    args: &Args,
    mode: Mode,
    n: u64,
) -> anyhow::Result<Report> {
    let tag = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let prefix = format!("q{tag}-");
    let (subject_all, strip) = match mode {
        Mode::Raw => ("bench.raw.out.>", "bench.raw.out."),
        _ => (subject::RESULTS_ALL, "agentry.results."),
    };
    let (tally, count) = count_results(client, subject_all, strip, prefix.clone()).await?;
    // Stop the consumer side.
    let raw = match mode {
        Mode::Raw => Some(setup_raw(js).await?),
        _ => {
            stop_agent(emb)?;
            wait_no_pullers(js).await?;
            None
        }
    };
    if mode == Mode::Workflow {
        ensure_bench_workflow(js).await?;
    }
    let queue_start = Instant::now();
    let mut acks = Vec::with_capacity(QUEUE_WINDOW);
    for i in 0..n {
        let key = format!("{prefix}{i}");
        acks.push(publish(js, mode, &args.capability, &key, i).await?);
        if acks.len() >= QUEUE_WINDOW {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks.drain(..) {
        a.await?;
    }
    if matches!(mode, Mode::Task | Mode::Workflow) {
        wait_routed(js).await?;
    }
    let queue_seconds = queue_start.elapsed().as_secs_f64();

    // Start the consumer side and time the drain.
    let mut watch: Vec<(String, u32, f64)> = emb
        .children
        .iter()
        .filter(|(name, _)| name != "agentry-agent")
        .map(|(name, c)| (name.clone(), c.id()))
        .chain(emb.server.pid().map(|p| ("nats-server".to_owned(), p)))
        .chain(std::iter::once((
            "agentry (client)".to_owned(),
            std::process::id(),
        )))
        .map(|(name, pid)| {
            let before = cpu_seconds(pid).unwrap_or(0.0);
            (name, pid, before)
        })
        .collect();
    let stop = tokio_util::sync::CancellationToken::new();
    let drain_start = Instant::now();
    match raw {
        Some(consumer) => spawn_raw_worker(js.clone(), consumer, stop.clone()),
        None => {
            let i = agent_index(emb)?;
            let (name, extra) = COMPONENTS[2];
            let child = spawn_component(name, extra, &emb.server.url, args)?;
            watch.push((name.to_owned(), child.id(), 0.0));
            emb.children[i].1 = child;
        }
    }
    let mut last = (0, Instant::now());
    loop {
        let got = count.load(Ordering::Relaxed);
        if got >= n {
            break;
        }
        if got > last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > STALL_LIMIT {
            stop.cancel();
            anyhow::bail!("backlog drain stalled at {got} of {n} results");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let t = tally
        .lock()
        .map_err(|_| anyhow::anyhow!("result tally lock poisoned"))?;
    let (first, last) = match (t.first, t.last) {
        (Some(f), Some(l)) => (f, l),
        _ => (drain_start, drain_start),
    };
    let steady = last.duration_since(first).as_secs_f64();
    let processes = watch
        .iter()
        .map(|(name, pid, before)| {
            let used = cpu_seconds(*pid).map(|a| a - before).unwrap_or(0.0);
            Cpu::new(name, used, n)
        })
        .collect();
    Ok(Report {
        mode,
        queued: n,
        queue_seconds,
        queue_rate: n as f64 / queue_seconds.max(1e-9),
        drain_seconds: last.duration_since(drain_start).as_secs_f64(),
        drain_rate: if steady > 0.0 {
            (n.saturating_sub(1)) as f64 / steady
        } else {
            0.0
        },
        first_result_seconds: first.duration_since(drain_start).as_secs_f64(),
        results: t.seen.len() as u64,
        failed: t.failed,
        duplicates: t.duplicates,
        processes,
    })
}
