//! `agentry status`: one view of health, readiness, agents, queues, runs and
//! recent failures (the live "System Status" and "Deployed Agents" tables).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use agentry::registry::{Registry, Status};
use agentry::subject;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Component HTTP endpoints (host:port) to probe; default: the one in `.agentry/context`.
    #[arg(long = "http", value_delimiter = ',')]
    pub http: Vec<String>,
}

/// Why an HTTP probe got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpGetError {
    #[error("request failed")]
    Io(#[from] std::io::Error),
    #[error("bad HTTP response")]
    BadResponse,
    #[error("timed out")]
    TimedOut,
}

/// GET http://addr/path with a short timeout: (status code, body).
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String), HttpGetError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or(HttpGetError::BadResponse)?;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        Ok::<_, HttpGetError>((code, body))
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .map_err(|_| HttpGetError::TimedOut)?
}

pub async fn collect(cli: &Cli, args: &Args) -> anyhow::Result<Value> {
    let mut endpoints = args.http.clone();
    if endpoints.is_empty()
        && let Some(ctx) = crate::context::read()
        && let Some(h) = ctx.http_addr
    {
        endpoints.push(h);
    }
    let mut components = Vec::new();
    for ep in &endpoints {
        let health = http_get(ep, "/health").await;
        let ready = http_get(ep, "/ready").await;
        let checks: Value = ready
            .as_ref()
            .ok()
            .and_then(|(_, b)| serde_json::from_str::<Value>(b).ok())
            .map(|v| v["checks"].clone())
            .unwrap_or(Value::Null);
        components.push(json!({
            "endpoint": ep,
            "health": match &health { Ok((200, _)) => "ok", Ok(_) => "failing", Err(_) => "unreachable" },
            "ready": match &ready { Ok((200, _)) => "ready", Ok((503, _)) => "not ready", Ok(_) => "failing", Err(_) => "unreachable" },
            "checks": checks,
        }));
    }
    let client = crate::connect(cli).await?;
    let js = jetstream::new(client);
    let mut agents: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    if let Ok(reg) = Registry::open(&js).await {
        for r in reg.list().await.unwrap_or_default() {
            for c in &r.capabilities {
                *agents
                    .entry(c.clone())
                    .or_default()
                    .entry(r.status.as_str())
                    .or_default() += 1;
            }
        }
    }
    let mut queues = Vec::new();
    for stream_name in [
        subject::REQUESTS_STREAM,
        subject::TASKS_STREAM,
        subject::STEPS_STREAM,
    ] {
        let Ok(stream) = js.get_stream_no_info(stream_name).await else {
            continue;
        };
        let mut consumers = stream.consumers();
        while let Some(Ok(info)) = consumers.next().await {
            let cap = subject::capability_of_consumer(&info.name).map(str::to_owned);
            let live = cap.as_ref().map(|c| {
                agents
                    .get(c)
                    .and_then(|m| m.get(Status::Live.as_str()).copied())
                    .unwrap_or(0)
            });
            queues.push(json!({
                "stream": stream_name, "consumer": info.name, "pending": info.num_pending,
                "ack_pending": info.num_ack_pending, "redelivered": info.num_redelivered, "live_agents": live,
            }));
        }
    }
    let mut runs: BTreeMap<String, u64> = BTreeMap::new();
    if let Ok(kv) = js.get_key_value(subject::RUNS_BUCKET).await
        && let Ok(mut keys) = kv.keys().await
    {
        let mut n = 0;
        while let Some(Ok(k)) = keys.next().await {
            n += 1;
            if n > 20_000 {
                break;
            }
            if let Ok(Some(v)) = kv.get(&k).await {
                let status = serde_json::from_slice::<Value>(&v)
                    .ok()
                    .and_then(|v| v["status"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into());
                *runs.entry(status).or_default() += 1;
            }
        }
    }
    let mut dlq = json!({"messages": 0, "recent": []});
    if let Ok(mut st) = js.get_stream(subject::DLQ_STREAM).await
        && let Ok(info) = st.info().await
    {
        let (first, last, total) = (
            info.state.first_sequence,
            info.state.last_sequence,
            info.state.messages,
        );
        let mut recent = Vec::new();
        let mut seq = last;
        while seq >= first && seq > 0 && recent.len() < 5 {
            if let Ok(m) = st.get_raw_message(seq).await {
                let h = |n: &str| {
                    m.headers
                        .get(n)
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default()
                };
                recent.push(json!({"seq": seq, "reason": h("Agentry-Dlq-Reason"), "subject": h("Agentry-Dlq-Subject"), "request_id": h("Agentry-Dlq-Request-Id"), "detail": h("Agentry-Dlq-Detail")}));
            }
            seq -= 1;
        }
        dlq = json!({"messages": total, "recent": recent});
    }
    Ok(
        json!({"components": components, "agents": agents, "queues": queues, "runs": runs, "dlq": dlq}),
    )
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let v = collect(cli, args).await?;
    let healthy = v["components"]
        .as_array()
        .map(|c| c.iter().all(|c| c["ready"] == "ready"))
        .unwrap_or(true);
    if cli.json {
        println!("{v}");
    } else {
        print!("{}", render(&v));
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn s(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| {
        if v.is_null() {
            "-".into()
        } else {
            v.to_string()
        }
    })
}

pub fn render(v: &Value) -> String {
    let mut out = String::new();
    out.push_str("SYSTEM STATUS\n");
    let mut rows = vec![vec![
        "ENDPOINT".to_owned(),
        "HEALTH".into(),
        "READY".into(),
        "FAILING CHECKS".into(),
    ]];
    for c in v["components"].as_array().cloned().unwrap_or_default() {
        let failing: Vec<String> = c["checks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|k| k["ok"] == false)
            .map(|k| format!("{} ({})", s(&k["name"]), s(&k["detail"])))
            .collect();
        rows.push(vec![
            s(&c["endpoint"]),
            s(&c["health"]),
            s(&c["ready"]),
            if failing.is_empty() {
                "-".into()
            } else {
                failing.join("; ")
            },
        ]);
    }
    out.push_str(&crate::table::render(&rows));
    out.push_str("\nAGENTS BY CAPABILITY\n");
    let mut rows = vec![vec![
        "CAPABILITY".to_owned(),
        "LIVE".into(),
        "DRAINING".into(),
        "EXPIRED".into(),
        "DEREGISTERED".into(),
    ]];
    for (cap, m) in v["agents"].as_object().cloned().unwrap_or_default() {
        rows.push(vec![
            cap,
            s(&m["live"]).replace('-', "0"),
            s(&m["draining"]).replace('-', "0"),
            s(&m["expired"]).replace('-', "0"),
            s(&m["deregistered"]).replace('-', "0"),
        ]);
    }
    out.push_str(&crate::table::render(&rows));
    out.push_str("\nQUEUES\n");
    let mut rows = vec![vec![
        "STREAM".to_owned(),
        "CONSUMER".into(),
        "PENDING".into(),
        "ACK-PENDING".into(),
        "REDELIVERED".into(),
        "LIVE AGENTS".into(),
    ]];
    for q in v["queues"].as_array().cloned().unwrap_or_default() {
        rows.push(vec![
            s(&q["stream"]),
            s(&q["consumer"]),
            s(&q["pending"]),
            s(&q["ack_pending"]),
            s(&q["redelivered"]),
            s(&q["live_agents"]),
        ]);
    }
    out.push_str(&crate::table::render(&rows));
    let runs: Vec<String> = v["runs"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    out.push_str(&format!(
        "\nWORKFLOW RUNS  {}\n",
        if runs.is_empty() {
            "none".into()
        } else {
            runs.join(", ")
        }
    ));
    out.push_str(&format!(
        "DLQ            {} message(s)\n",
        s(&v["dlq"]["messages"])
    ));
    for r in v["dlq"]["recent"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "  #{} {} {} {} {}\n",
            s(&r["seq"]),
            s(&r["reason"]),
            s(&r["subject"]),
            s(&r["request_id"]),
            s(&r["detail"]).chars().take(80).collect::<String>()
        ));
    }
    out
}
