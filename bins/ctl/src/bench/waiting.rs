//! `--waiting-runs N`: the engine's memory with N workflow runs parked on a
//! signal.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentry::event::{self, Mode as CeMode, header};
use agentry::id::RequestId;
use agentry::subject;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};

use super::rss_mib;

/// Starts `n` runs of a one-step workflow waiting on a signal, waits until
/// the engine has taken them all, and reports RSS.
pub(super) async fn waiting_runs(
    client: &async_nats::Client,
    js: &jetstream::Context,
    n: u64,
    procs: &[(String, u32)],
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let _ = client;
    let kv = js.get_key_value(subject::WORKFLOWS_BUCKET).await?;
    let def = json!({"name": "bench_wait", "version": 1, "description": "waits for a signal (benchmark)",
        "steps": [{"id": "wait", "wait_for": {"signal": "go", "timeout": "24h"}}]});
    kv.put("bench_wait.1", serde_json::to_vec(&def)?.into())
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut acks = Vec::new();
    for i in 0..n {
        let id = RequestId::new(format!("w{i}"))?;
        let ev = agentry::client::workflow_request(&id, "/bench", "bench_wait", Some(1), json!({}));
        let (mut h, body) = event::encode(&ev, CeMode::Binary)?;
        h.insert(header::MSG_ID, id.as_str());
        acks.push(js.publish_with_headers(subject::REQUESTS, h, body).await?);
        if acks.len() >= 1000 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks.drain(..) {
        a.await?;
    }
    // Wait until the engine consumed every request.
    loop {
        let st = js.get_stream_no_info(subject::REQUESTS_STREAM).await?;
        let info = st.consumer_info(subject::ENGINE_CONSUMER).await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("engine did not take {n} runs within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let runs = js.get_key_value(subject::RUNS_BUCKET).await?;
    let stored = runs.keys().await?.count().await;
    let rss: Vec<Value> = procs
        .iter()
        .map(|(name, pid)| json!({"process": name, "rss_mib": rss_mib(*pid)}))
        .collect();
    if json_out {
        println!(
            "{}",
            json!({"waiting_runs": n, "stored_runs": stored, "seconds": started.elapsed().as_secs_f64(), "processes": rss})
        );
    } else {
        println!(
            "{n} runs waiting on a signal ({stored} stored) after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for p in &rss {
            println!(
                "rss {:<16} {:>7.1} MiB",
                p["process"].as_str().unwrap_or_default(),
                p["rss_mib"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
