//! The performance row under `--load`: requests go through the engine to a
//! capability of their own (`agentry_check`), served for the duration of the
//! row by a probe agent this command runs on the agent runtime, so no work
//! enters a production queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentry::agent::{self, Agent, Context, Descriptor, Task, TaskError};
use agentry::client;
use agentry::event::Mode;
use agentry::http::Observer;
use agentry::id::{Capability, RequestId};
use agentry::registry::Registry;
use agentry::subject;
use async_nats::jetstream;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Row, Verdict, row};

/// The capability the load goes to.
pub const CAPABILITY: &str = "agentry_check";

/// Answers every task with its input: the cheapest real handler.
struct Probe {
    capability: Capability,
}

#[async_trait::async_trait]
impl Agent for Probe {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: "check-probe".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "answers `agentry check --load` requests with their input".to_owned(),
            capabilities: vec![self.capability.clone()],
        }
    }

    async fn handle(&self, task: Task, _ctx: Context) -> Result<Value, TaskError> {
        Ok(json!({ "echo": task.input }))
    }
}

/// Runs `requests` concurrent requests through the engine and reports the
/// share that succeeded and the latencies.
pub async fn performance(
    nats: &async_nats::Client,
    js: &jetstream::Context,
    cfg: &agentry::config::Nats,
    requests: usize,
    rows: &mut Vec<Row>,
) {
    let check = format!("{requests} concurrent requests to {CAPABILITY} through the engine");
    let capability: Capability = match CAPABILITY.parse() {
        Ok(c) => c,
        Err(e) => {
            rows.push(row("performance", check, Verdict::Fail, e.to_string()));
            return;
        }
    };
    let stop = CancellationToken::new();
    let mut agent_cfg = agent::Config::new(cfg.clone());
    agent_cfg.capacity = requests.clamp(1, 256);
    let probe: Arc<dyn Agent> = Arc::new(Probe {
        capability: capability.clone(),
    });
    let runtime = tokio::spawn(agent::run(
        vec![probe],
        agent_cfg,
        Observer::new(),
        stop.clone(),
    ));
    let served = async {
        let reg = Registry::open(js).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !reg.find(CAPABILITY).await?.is_empty() {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, anyhow::Error>(false)
    }
    .await;
    let (verdict, detail) = match served {
        Ok(true) => measure(nats, js, requests).await,
        Ok(false) => (
            Verdict::Fail,
            "the probe agent did not register within 10 s".to_owned(),
        ),
        Err(e) => (Verdict::Fail, format!("registry: {e}")),
    };
    rows.push(row("performance", check, verdict, detail));
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(40), runtime).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "probe agent failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "probe agent panicked"),
        Err(_) => tracing::warn!("probe agent did not stop within 40 s"),
    }
    // The probe's consumer is scratch: remove it so it is not mistaken for a service.
    if let Ok(st) = js.get_stream_no_info(subject::TASKS_STREAM).await
        && let Err(e) = st
            .delete_consumer(&subject::task_consumer(&capability))
            .await
    {
        tracing::warn!(error = %e, "probe consumer not removed");
    }
}

async fn measure(
    nats: &async_nats::Client,
    js: &jetstream::Context,
    requests: usize,
) -> (Verdict, String) {
    let started = Instant::now();
    let mut runs = Vec::with_capacity(requests);
    for i in 0..requests {
        let (nats, js) = (nats.clone(), js.clone());
        runs.push(tokio::spawn(async move {
            let id = RequestId::generate();
            let ev = client::task_request(&id, "/check", CAPABILITY, json!({ "i": i }), None);
            let t = Instant::now();
            let res = client::submit(&nats, &js, &ev, Mode::Binary, Duration::from_secs(30)).await;
            (res, t.elapsed())
        }));
    }
    let mut ok = 0usize;
    let mut latencies = Vec::with_capacity(requests);
    let mut first_error = None;
    for r in runs {
        match r.await {
            Ok((Ok(o), took)) if o.is_success() => {
                ok += 1;
                latencies.push(took);
            }
            Ok((Ok(o), _)) => {
                first_error.get_or_insert_with(|| format!("{}: {}", o.ty, o.data));
            }
            Ok((Err(e), _)) => {
                first_error.get_or_insert_with(|| agentry::error::chain(&e));
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_millis())
            .unwrap_or_default()
    };
    let pass = ok * 100 >= requests * 95 && secs < 30.0;
    let mut detail = format!(
        "{ok}/{requests} succeeded in {secs:.1} s, p50 {} ms, p95 {} ms (needs >= 95% under 30 s)",
        pct(50),
        pct(95)
    );
    if let Some(e) = first_error {
        detail.push_str("; first error: ");
        detail.extend(e.chars().take(160));
    }
    (if pass { Verdict::Pass } else { Verdict::Fail }, detail)
}
