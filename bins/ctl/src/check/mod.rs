//! `agentry check`: production readiness checks against a running system.
//! Each row passes, warns or fails with a reason; any failure exits non-zero.
//! Read-only unless `--load`: nothing is pushed into production queues.

mod load;
mod recovery;
mod security;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentry::registry::Registry;
use agentry::subject;
use agentry::topology::{BUILTIN_CAPABILITIES, OPTIONAL_CAPABILITIES};
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Component HTTP endpoints (host:port) whose /health and /ready must pass; default: `.agentry/context`.
    #[arg(long = "http", value_delimiter = ',')]
    pub http: Vec<String>,
    /// Run the performance row: this many concurrent requests through the
    /// engine to the `agentry_check` capability, served by a probe agent
    /// this command runs (production queues are not touched).
    #[arg(long, num_args = 0..=1, default_missing_value = "50", value_name = "REQUESTS")]
    pub load: Option<usize>,
    /// A development server: missing credentials warn instead of failing.
    #[arg(long)]
    pub dev: bool,
    /// Replicas every stream and bucket must have.
    #[arg(long, env = "AGENTRY_TOPOLOGY_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Capabilities that must have a live agent (default: every built-in one
    /// but `assistant`, which runs only with an LLM endpoint configured).
    #[arg(long, value_delimiter = ',')]
    pub capabilities: Vec<String>,
    /// Where the recovery row writes its snapshot of the registry, workflows and runs.
    #[arg(long, default_value = ".agentry/snapshot.json")]
    pub snapshot: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, serde::Serialize)]
struct Row {
    area: &'static str,
    check: String,
    verdict: Verdict,
    detail: String,
}

fn row(
    area: &'static str,
    check: impl Into<String>,
    verdict: Verdict,
    detail: impl Into<String>,
) -> Row {
    Row {
        area,
        check: check.into(),
        verdict,
        detail: detail.into(),
    }
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    let nats = crate::connect(cli).await?;
    let js = jetstream::new(nats.clone());
    let endpoints = endpoints(args);
    health(args, &endpoints, &js, &mut rows).await;
    let healthy = !rows.iter().any(|r| r.verdict == Verdict::Fail);
    match args.load {
        None => rows.push(row(
            "performance",
            "request throughput and latency",
            Verdict::Warn,
            "not run: read-only by default (--load runs it on its own capability)",
        )),
        Some(_) if !healthy => rows.push(row(
            "performance",
            "request throughput and latency",
            Verdict::Fail,
            "not run: health checks failed",
        )),
        Some(n) => load::performance(&nats, &js, &cli.nats_config(), n.max(1), &mut rows).await,
    }
    security::security(cli, args.dev, &mut rows).await;
    scalability(&js, &endpoints, &mut rows).await;
    recovery::recovery(&js, args.replicas, &args.snapshot, &mut rows).await;
    let failed = rows.iter().any(|r| r.verdict == Verdict::Fail);
    if cli.json {
        println!("{}", json!({"passed": !failed, "checks": rows}));
    } else {
        let mut t = vec![vec![
            "AREA".to_owned(),
            "CHECK".into(),
            "RESULT".into(),
            "DETAIL".into(),
        ]];
        for r in &rows {
            let v = match r.verdict {
                Verdict::Pass => "PASS",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            t.push(vec![
                r.area.to_owned(),
                r.check.clone(),
                v.into(),
                r.detail.clone(),
            ]);
        }
        print!("{}", crate::table::render(&t));
        println!(
            "{}",
            if failed {
                "production readiness: FAILED"
            } else {
                "production readiness: passed"
            }
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--http`, else the endpoint `agentry up` recorded.
fn endpoints(args: &Args) -> Vec<String> {
    let mut endpoints = args.http.clone();
    if endpoints.is_empty()
        && let Some(h) = crate::context::read().and_then(|c| c.http_addr)
    {
        endpoints.push(h);
    }
    endpoints
}

async fn health(args: &Args, endpoints: &[String], js: &jetstream::Context, rows: &mut Vec<Row>) {
    if endpoints.is_empty() {
        rows.push(row(
            "health",
            "http endpoints",
            Verdict::Warn,
            "none given (--http host:port,...)",
        ));
    }
    for ep in endpoints {
        match crate::status::http_get(ep, "/health").await {
            Ok((200, _)) => rows.push(row("health", format!("{ep} /health"), Verdict::Pass, "200")),
            Ok((c, body)) => {
                let stalled = named_details(&body, "stalled", |_| true);
                rows.push(row(
                    "health",
                    format!("{ep} /health"),
                    Verdict::Fail,
                    format!("HTTP {c}; stalled: {}", stalled.join("; ")),
                ))
            }
            Err(e) => rows.push(row(
                "health",
                format!("{ep} /health"),
                Verdict::Fail,
                agentry::error::chain(&e),
            )),
        }
        match crate::status::http_get(ep, "/ready").await {
            Ok((200, _)) => rows.push(row(
                "health",
                format!("{ep} /ready"),
                Verdict::Pass,
                "200, every check passes",
            )),
            Ok((c, body)) => {
                let failing = named_details(&body, "checks", |k| k["ok"] == false);
                rows.push(row(
                    "health",
                    format!("{ep} /ready"),
                    Verdict::Fail,
                    format!("HTTP {c}; failing: {}", failing.join("; ")),
                ));
            }
            Err(e) => rows.push(row(
                "health",
                format!("{ep} /ready"),
                Verdict::Fail,
                agentry::error::chain(&e),
            )),
        }
    }
    // Components seen from NATS: someone pulls from each durable consumer.
    for (stream, consumer, who) in [
        (subject::REQUESTS_STREAM, subject::ENGINE_CONSUMER, "engine"),
        (
            subject::STEPS_STREAM,
            subject::ENGINE_STEPS_CONSUMER,
            "engine",
        ),
        (
            subject::REGISTRY_STREAM,
            subject::REGISTRAR_CONSUMER,
            "monitor",
        ),
    ] {
        let verdict = match js.get_stream_no_info(stream).await {
            Ok(st) => match st.consumer_info(consumer).await {
                Ok(i) if i.num_waiting > 0 => row(
                    "health",
                    format!("{who} consuming {stream}/{consumer}"),
                    Verdict::Pass,
                    format!("{} pull request(s) waiting", i.num_waiting),
                ),
                Ok(_) => row(
                    "health",
                    format!("{who} consuming {stream}/{consumer}"),
                    Verdict::Fail,
                    format!("nobody is pulling: is the {who} running?"),
                ),
                Err(e) => row(
                    "health",
                    format!("{who} consuming {stream}/{consumer}"),
                    Verdict::Fail,
                    e.to_string(),
                ),
            },
            Err(e) => row(
                "health",
                format!("stream {stream}"),
                Verdict::Fail,
                format!("{e} (run `agentry setup`)"),
            ),
        };
        rows.push(verdict);
    }
    let caps: Vec<String> = if args.capabilities.is_empty() {
        BUILTIN_CAPABILITIES
            .iter()
            .filter(|c| !OPTIONAL_CAPABILITIES.contains(c))
            .map(|c| (*c).to_owned())
            .collect()
    } else {
        args.capabilities.clone()
    };
    match Registry::open(js).await {
        Ok(reg) => {
            let mut missing = Vec::new();
            for c in &caps {
                if reg.find(c).await.map(|v| v.is_empty()).unwrap_or(true) {
                    missing.push(c.clone());
                }
            }
            if missing.is_empty() {
                rows.push(row(
                    "health",
                    "live agents per capability",
                    Verdict::Pass,
                    format!("{} capabilities served", caps.len()),
                ));
            } else {
                rows.push(row(
                    "health",
                    "live agents per capability",
                    Verdict::Fail,
                    format!("no live agent for {}", missing.join(", ")),
                ));
            }
        }
        Err(e) => rows.push(row(
            "health",
            "agent registry",
            Verdict::Fail,
            e.to_string(),
        )),
    }
}

/// Read-only: for every task consumer, the monitor's queue gauges (what
/// alerts and dashboards read) must match the consumer state KEDA reads
/// (`num_pending + num_ack_pending`).
async fn scalability(js: &jetstream::Context, endpoints: &[String], rows: &mut Vec<Row>) {
    let check = "queue-depth metric vs consumer state (KEDA lag)";
    let mut consumers = Vec::new();
    match js.get_stream_no_info(subject::TASKS_STREAM).await {
        Ok(st) => {
            let mut list = st.consumers();
            while let Some(c) = list.next().await {
                match c {
                    Ok(info) => consumers.push(info.name),
                    Err(e) => {
                        rows.push(row("scalability", check, Verdict::Fail, e.to_string()));
                        return;
                    }
                }
            }
        }
        Err(e) => {
            rows.push(row("scalability", check, Verdict::Fail, e.to_string()));
            return;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last;
    loop {
        let gauges = gauges(endpoints).await;
        let mut off = Vec::new();
        let mut missing = Vec::new();
        for name in &consumers {
            let lag = match js.get_stream_no_info(subject::TASKS_STREAM).await {
                Ok(st) => match st.consumer_info(name).await {
                    Ok(i) => i.num_pending + i.num_ack_pending as u64,
                    Err(_) => continue, // removed meanwhile
                },
                Err(e) => {
                    rows.push(row("scalability", check, Verdict::Fail, e.to_string()));
                    return;
                }
            };
            match gauges.iter().find(|(c, _)| c == name) {
                None => missing.push(name.clone()),
                Some((_, g)) => {
                    // The monitor samples every few seconds.
                    let tolerance = 25.0f64.max(lag as f64 * 0.25);
                    if (g - lag as f64).abs() > tolerance {
                        off.push(format!("{name}: metric {g}, consumer {lag}"));
                    }
                }
            }
        }
        if gauges.is_empty() {
            last = format!(
                "no agentry_queue_depth gauge on {endpoints:?}: autoscaling alerts and dashboards see nothing (is the monitor running and among --http?)"
            );
        } else if !missing.is_empty() {
            last = format!("no gauge for consumer(s) {}", missing.join(", "));
        } else if !off.is_empty() {
            last = off.join("; ");
        } else {
            rows.push(row(
                "scalability",
                check,
                Verdict::Pass,
                format!("{} task consumer(s) match", consumers.len()),
            ));
            return;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rows.push(row("scalability", check, Verdict::Fail, last));
}

/// `consumer` label and value of every `agentry_queue_depth` +
/// `agentry_queue_ack_pending` sample on the endpoints (summed per consumer).
async fn gauges(endpoints: &[String]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for ep in endpoints {
        let Ok((200, text)) = crate::status::http_get(ep, "/metrics").await else {
            continue;
        };
        for line in text.lines().filter(|l| {
            l.starts_with("agentry_queue_depth{") || l.starts_with("agentry_queue_ack_pending{")
        }) {
            let Some(consumer) = line
                .split("consumer=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            else {
                continue;
            };
            let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            match out.iter_mut().find(|(c, _)| c == consumer) {
                Some((_, sum)) => *sum += v,
                None => out.push((consumer.to_owned(), v)),
            }
        }
    }
    out
}

/// `name: detail` of the entries of array `key` in a health or readiness
/// body that `keep` selects (empty when the body is not that JSON).
fn named_details(body: &str, key: &str, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    v[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|k| keep(k))
                .map(|k| {
                    format!(
                        "{}: {}",
                        k["name"].as_str().unwrap_or("?"),
                        k["detail"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
