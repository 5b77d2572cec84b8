//! `agentry watch`: a live tail of lifecycle events.

use std::process::ExitCode;

use agentry::event::{self, Limits};
use agentry::subject;
use cloudevents::AttributesReader;
use futures::StreamExt;

use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only event types starting with this (e.g. `io.agentry.step`, `run.`).
    #[arg(long = "type")]
    pub ty: Option<String>,
    /// Only events of this workflow run.
    #[arg(long)]
    pub run: Option<String>,
    /// Include registry heartbeats and results.
    #[arg(long)]
    pub all: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<usize>,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let client = crate::connect(cli).await?;
    let mut subs = vec![client.subscribe(subject::EVENTS_ALL).await?];
    if args.all {
        subs.push(client.subscribe(subject::REGISTRY_ALL).await?);
        subs.push(client.subscribe(subject::RESULTS_ALL).await?);
    }
    let mut merged = futures::stream::select_all(subs);
    let mut seen = 0usize;
    tracing::info!("watching agentry events (Ctrl-C stops)");
    loop {
        let msg = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            m = merged.next() => match m { Some(m) => m, None => return Ok(ExitCode::SUCCESS) },
        };
        let Ok(d) = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()) else {
            continue;
        };
        let ty = d.event.ty().to_owned();
        if let Some(prefix) = &args.ty {
            let short = ty.trim_start_matches(event::TYPE_PREFIX);
            if !ty.starts_with(prefix.as_str()) && !short.starts_with(prefix.as_str()) {
                continue;
            }
        }
        let data = event::data_json(&d.event).unwrap_or_default();
        if let Some(run) = &args.run
            && data["run_id"].as_str() != Some(run.as_str())
        {
            continue;
        }
        if cli.json {
            println!(
                "{}",
                serde_json::json!({"type": ty, "subject": msg.subject.as_str(), "time": d.event.time(), "data": data})
            );
        } else {
            let time = d
                .event
                .time()
                .map(|t| t.format("%H:%M:%S%.3f").to_string())
                .unwrap_or_default();
            let mut summary = String::new();
            for key in [
                "run_id",
                "step",
                "status",
                "attempt",
                "request_id",
                "reason",
                "severity",
                "source",
                "summary",
                "error",
            ] {
                if let Some(v) = data.get(key).filter(|v| !v.is_null()) {
                    let text = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    summary.push_str(&format!(
                        " {key}={}",
                        text.chars().take(80).collect::<String>()
                    ));
                }
            }
            println!("{time} {ty}{summary}");
        }
        seen += 1;
        if args.count.is_some_and(|c| seen >= c) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
