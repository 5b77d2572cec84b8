//! `agentry check`: production readiness checks against a running system.
//! Each row passes, warns or fails with a reason; any failure exits non-zero.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentry::client;
use agentry::event::Mode;
use agentry::id::RequestId;
use agentry::registry::Registry;
use agentry::subject;
use agentry::topology::{BUILTIN_CAPABILITIES, Settings, Topology};
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Component HTTP endpoints (host:port) whose /health and /ready must pass; default: `.agentry/context`.
    #[arg(long = "http", value_delimiter = ',')]
    pub http: Vec<String>,
    /// Workflow the performance check runs 10 times concurrently.
    #[arg(long, default_value = "echo_diamond")]
    pub workflow: String,
    /// Input of that workflow.
    #[arg(long, default_value = "{\"n\": 3}")]
    pub input: String,
    /// Replicas every stream and bucket must have.
    #[arg(long, env = "AGENTRY_TOPOLOGY_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Capabilities that must have a live agent (default: every built-in one).
    #[arg(long, value_delimiter = ',')]
    pub capabilities: Vec<String>,
    /// Where the disaster-recovery check writes its snapshot.
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
    health(cli, args, &js, &mut rows).await;
    let healthy = !rows.iter().any(|r| r.verdict == Verdict::Fail);
    if healthy {
        performance(&nats, &js, args, &mut rows).await;
    } else {
        rows.push(row(
            "performance",
            "10 concurrent workflow runs",
            Verdict::Fail,
            "not run: health checks failed",
        ));
    }
    security(cli, &mut rows).await;
    if healthy {
        scalability(&nats, &js, args, &mut rows).await;
    } else {
        rows.push(row(
            "scalability",
            "queue-depth metric vs consumer state (KEDA lag)",
            Verdict::Fail,
            "not run: health checks failed",
        ));
    }
    recovery(&js, args, &mut rows).await;
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

async fn health(cli: &Cli, args: &Args, js: &jetstream::Context, rows: &mut Vec<Row>) {
    let _ = cli;
    let mut endpoints = args.http.clone();
    if endpoints.is_empty()
        && let Some(h) = crate::context::read().and_then(|c| c.http_addr)
    {
        endpoints.push(h);
    }
    if endpoints.is_empty() {
        rows.push(row(
            "health",
            "http endpoints",
            Verdict::Warn,
            "none given (--http host:port,...)",
        ));
    }
    for ep in &endpoints {
        match crate::status::http_get(ep, "/health").await {
            Ok((200, _)) => rows.push(row("health", format!("{ep} /health"), Verdict::Pass, "200")),
            Ok((c, _)) => rows.push(row(
                "health",
                format!("{ep} /health"),
                Verdict::Fail,
                format!("HTTP {c}"),
            )),
            Err(e) => rows.push(row("health", format!("{ep} /health"), Verdict::Fail, e)),
        }
        match crate::status::http_get(ep, "/ready").await {
            Ok((200, _)) => rows.push(row(
                "health",
                format!("{ep} /ready"),
                Verdict::Pass,
                "200, every check passes",
            )),
            Ok((c, body)) => {
                let failing: Vec<String> = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["checks"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter(|k| k["ok"] == false)
                    .map(|k| {
                        format!(
                            "{}: {}",
                            k["name"].as_str().unwrap_or("?"),
                            k["detail"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                rows.push(row(
                    "health",
                    format!("{ep} /ready"),
                    Verdict::Fail,
                    format!("HTTP {c}; failing: {}", failing.join("; ")),
                ));
            }
            Err(e) => rows.push(row("health", format!("{ep} /ready"), Verdict::Fail, e)),
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

async fn performance(
    nats: &async_nats::Client,
    js: &jetstream::Context,
    args: &Args,
    rows: &mut Vec<Row>,
) {
    let input: Value = match serde_json::from_str(&args.input) {
        Ok(v) => v,
        Err(e) => {
            rows.push(row(
                "performance",
                "workflow input",
                Verdict::Fail,
                format!("--input: {e}"),
            ));
            return;
        }
    };
    let started = Instant::now();
    let mut runs = Vec::new();
    for _ in 0..10 {
        let (nats, js, wf, input) = (
            nats.clone(),
            js.clone(),
            args.workflow.clone(),
            input.clone(),
        );
        runs.push(tokio::spawn(async move {
            let id = RequestId::generate();
            let ev = client::workflow_request(&id, "/check", &wf, None, input);
            client::submit(&nats, &js, &ev, Mode::Binary, Duration::from_secs(30)).await
        }));
    }
    let mut ok = 0;
    let mut errors = Vec::new();
    for r in runs {
        match r.await {
            Ok(Ok(o)) if o.is_success() => ok += 1,
            Ok(Ok(o)) => errors.push(format!(
                "{}: {}",
                o.ty,
                o.data
                    .get("error")
                    .or(o.data.get("detail"))
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            )),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let pass = ok >= 10 * 95 / 100 && secs < 30.0;
    let mut detail = format!("{ok}/10 succeeded in {secs:.1} s (needs >= 95% under 30 s)");
    if let Some(e) = errors.first() {
        detail.push_str(&format!(
            "; first error: {}",
            e.chars().take(160).collect::<String>()
        ));
    }
    rows.push(row(
        "performance",
        format!("10 concurrent {} runs", args.workflow),
        if pass { Verdict::Pass } else { Verdict::Fail },
        detail,
    ));
}

async fn security(cli: &Cli, rows: &mut Vec<Row>) {
    let cfg = cli.nats_config();
    let auth = cfg.creds.is_some()
        || cfg.user.is_some()
        || cfg.token.is_some()
        || cfg.nkey.is_some()
        || cfg.tls_cert.is_some();
    if !auth {
        rows.push(row("security", "authentication", Verdict::Warn, "no NATS credentials configured: a production system must require them (see nats/README.md)"));
        return;
    }
    let anon = agentry::config::Nats {
        creds: None,
        user: None,
        password: None,
        token: None,
        nkey: None,
        tls_cert: None,
        tls_key: None,
        ..cfg.clone()
    };
    match agentry::connect::connect_once(&anon, "agentry-check-anonymous").await {
        Ok(c) => {
            // Connected anonymously: can it do anything?
            let denied =
                tokio::time::timeout(Duration::from_secs(2), c.request("$JS.API.INFO", "".into()))
                    .await;
            let verdict = if matches!(denied, Ok(Ok(_))) {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            rows.push(row(
                "security",
                "unauthenticated access",
                verdict,
                "anonymous connection accepted; JetStream API must stay closed to it",
            ));
        }
        Err(e) => rows.push(row(
            "security",
            "unauthenticated access",
            Verdict::Pass,
            format!("refused: {e}"),
        )),
    }
    let me = match agentry::connect::connect_once(&cfg, "agentry-check-security").await {
        Ok(c) => c,
        Err(e) => {
            rows.push(row(
                "security",
                "configured credentials",
                Verdict::Fail,
                e.to_string(),
            ));
            return;
        }
    };
    let js = jetstream::new(me);
    let delete = js.delete_stream("AGENTRY_CHECK_NO_SUCH_STREAM").await;
    let text = delete.err().map(|e| e.to_string()).unwrap_or_default();
    let verdict = if text.contains("not found") {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    rows.push(row(
        "security",
        "forbidden operation (stream delete)",
        verdict,
        if verdict == Verdict::Pass {
            "refused".to_owned()
        } else {
            "these credentials may delete streams (admin?)".to_owned()
        },
    ));
}

async fn scalability(
    nats: &async_nats::Client,
    js: &jetstream::Context,
    args: &Args,
    rows: &mut Vec<Row>,
) {
    let _ = nats;
    // A burst of slow echo tasks; while it drains, the monitor's gauges must
    // track the consumer state KEDA reads (num_pending + num_ack_pending).
    let n = 400;
    for i in 0..n {
        let id = RequestId::generate();
        let ev = client::task_request(
            &id,
            "/check",
            "echo",
            json!({"sleep_ms": 2000, "i": i}),
            None,
        );
        if let Err(e) = client::publish_request(js, &ev, Mode::Binary).await {
            rows.push(row(
                "scalability",
                "load burst",
                Verdict::Fail,
                e.to_string(),
            ));
            return;
        }
    }
    let mut endpoints = args.http.clone();
    if endpoints.is_empty()
        && let Some(h) = crate::context::read().and_then(|c| c.http_addr)
    {
        endpoints.push(h);
    }
    let started = Instant::now();
    let mut last = String::from("no sample");
    let mut verdict = Verdict::Fail;
    while started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let info = match js.get_stream_no_info(subject::TASKS_STREAM).await {
            Ok(st) => st.consumer_info("cap-echo").await.ok(),
            Err(_) => None,
        };
        let Some(info) = info else { continue };
        let lag = info.num_pending + info.num_ack_pending as u64;
        let mut gauge: Option<f64> = None;
        for ep in &endpoints {
            if let Ok((200, text)) = crate::status::http_get(ep, "/metrics").await {
                let mut sum = None;
                for line in text.lines().filter(|l| {
                    l.contains("consumer=\"cap-echo\"")
                        && (l.starts_with("agentry_queue_depth")
                            || l.starts_with("agentry_queue_ack_pending"))
                }) {
                    if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                        sum = Some(sum.unwrap_or(0.0) + v);
                    }
                }
                if sum.is_some() {
                    gauge = sum;
                }
            }
        }
        let Some(g) = gauge else {
            last = format!(
                "consumer lag {lag}; no agentry_queue_depth gauge on {endpoints:?} (is the monitor's /metrics among --http?)"
            );
            verdict = Verdict::Warn;
            continue;
        };
        let tolerance = 25.0f64.max(lag as f64 * 0.25);
        last = format!(
            "metric {g}, consumer pending+ack_pending {lag} (tolerance {tolerance:.0}: the monitor samples every few seconds)"
        );
        if lag > 0 && (g - lag as f64).abs() <= tolerance && g > 0.0 {
            verdict = Verdict::Pass;
            break;
        }
        verdict = Verdict::Fail;
    }
    rows.push(row(
        "scalability",
        "queue-depth metric vs consumer state (KEDA lag)",
        verdict,
        last,
    ));
}

async fn recovery(js: &jetstream::Context, args: &Args, rows: &mut Vec<Row>) {
    let topo = Topology::new(&Settings::default());
    let mut names: Vec<String> = topo.streams.iter().map(|s| s.name.clone()).collect();
    names.extend(topo.buckets.iter().map(|b| format!("KV_{}", b.bucket)));
    let mut bad = Vec::new();
    let mut leaderless = Vec::new();
    for name in &names {
        match js.get_stream(name).await {
            Ok(mut st) => match st.info().await {
                Ok(info) => {
                    if info.config.num_replicas != args.replicas {
                        bad.push(format!(
                            "{name} has {} replica(s)",
                            info.config.num_replicas
                        ));
                    }
                    if let Some(c) = &info.cluster
                        && c.leader.as_deref().unwrap_or_default().is_empty()
                        && args.replicas > 1
                    {
                        leaderless.push(name.clone());
                    }
                }
                Err(e) => bad.push(format!("{name}: {e}")),
            },
            Err(e) => bad.push(format!("{name}: {e}")),
        }
    }
    rows.push(row(
        "recovery",
        format!(
            "replicas = {} on {} streams and buckets",
            args.replicas,
            names.len()
        ),
        if bad.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        if bad.is_empty() {
            "all as configured".to_owned()
        } else {
            bad.join("; ")
        },
    ));
    rows.push(row(
        "recovery",
        "stream leaders",
        if leaderless.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        if leaderless.is_empty() {
            "every stream has a current leader (or runs on one node)".to_owned()
        } else {
            format!("no leader: {}", leaderless.join(", "))
        },
    ));
    match snapshot_roundtrip(js, &args.snapshot).await {
        Ok(detail) => rows.push(row(
            "recovery",
            "registry/run snapshot export and restore",
            Verdict::Pass,
            detail,
        )),
        Err(e) => rows.push(row(
            "recovery",
            "registry/run snapshot export and restore",
            Verdict::Fail,
            e.to_string(),
        )),
    }
}

/// Exports `agentry-agents` and `agentry-runs` to a file, restores them into
/// scratch buckets, compares, and removes the scratch buckets.
async fn snapshot_roundtrip(
    js: &jetstream::Context,
    path: &std::path::Path,
) -> anyhow::Result<String> {
    let mut snapshot = serde_json::Map::new();
    for bucket in [subject::AGENTS_BUCKET, subject::RUNS_BUCKET] {
        let kv = js.get_key_value(bucket).await?;
        let mut keys = kv.keys().await?;
        let mut entries = serde_json::Map::new();
        while let Some(k) = keys.next().await {
            let k = k?;
            if let Some(v) = kv.get(&k).await? {
                entries.insert(k, Value::String(base64_encode(&v)));
            }
        }
        snapshot.insert(bucket.to_owned(), Value::Object(entries));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(&snapshot)?)?;
    let restored: serde_json::Map<String, Value> = serde_json::from_slice(&std::fs::read(path)?)?;
    let mut total = 0;
    for (bucket, entries) in &restored {
        let scratch = format!("agentry-check-{}", bucket.trim_start_matches("agentry-"));
        let _ = js.delete_key_value(&scratch).await;
        let kv = js
            .create_key_value(jetstream::kv::Config {
                bucket: scratch.clone(),
                history: 1,
                ..Default::default()
            })
            .await?;
        for (k, v) in entries.as_object().cloned().unwrap_or_default() {
            kv.put(&k, base64_decode(v.as_str().unwrap_or_default())?.into())
                .await?;
            total += 1;
        }
        for (k, v) in entries.as_object().cloned().unwrap_or_default() {
            let back = kv.get(&k).await?.map(|b| base64_encode(&b));
            anyhow::ensure!(
                back.as_deref() == v.as_str(),
                "restored {bucket}/{k} differs"
            );
        }
        js.delete_key_value(&scratch).await?;
    }
    Ok(format!(
        "{total} entries exported to {} and restored identically",
        path.display()
    ))
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn base64_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(s)?)
}
