//! `agentry bench`: drives a system with N requests at C in flight and
//! prints throughput, latency percentiles (HDR histogram), errors and RSS.
//!
//! Modes: `task` (through `agentry.requests`: client -> engine -> agent ->
//! client), `direct` (straight to `agentry.tasks.<capability>`), `workflow`
//! (a 3-step echo workflow), and `raw`: the baseline with no agentry code on
//! the path — the client publishes with PubAck to a work-queue stream, a
//! plain worker pulls, publishes the result with PubAck to a results stream
//! and acks, the client receives the result. Same harness, server, storage.
//!
//! `--backlog N` (with `--embedded`) measures a queue instead of a steady
//! load: the agents are stopped, N requests are queued (for task and
//! workflow modes the engine routes them into AGENTRY_TASKS meanwhile), then
//! the agents start and the drain rate is reported. Run it for a small and a
//! large N: the cost per request should not grow with the queue.
//!
//! Module map: `embedded` (the private server and component processes),
//! `load` (the steady-load driver and request publishing), `raw` (the
//! baseline's stream and worker), `backlog` (`--backlog`), `waiting`
//! (`--waiting-runs`), `procstat` (RSS and CPU from /proc).

use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};

use crate::Cli;

mod backlog;
mod embedded;
mod load;
mod procstat;
mod raw;
mod waiting;

use embedded::start_embedded;
use load::drive;
use procstat::{agentry_processes, cpu_seconds, rss_mib};
use waiting::waiting_runs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Task,
    Direct,
    Workflow,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sync {
    Default,
    Always,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Task)]
    pub mode: Mode,
    /// Requests to send (ignored with --duration).
    #[arg(long, short = 'n', default_value_t = 20_000)]
    pub requests: u64,
    /// Requests in flight.
    #[arg(long, short = 'c', default_value_t = 256)]
    pub concurrency: usize,
    /// Run for this long instead of a fixed count (e.g. 30s).
    #[arg(long, value_parser = agentry::config::parse_duration)]
    pub duration: Option<Duration>,
    /// Also run the raw baseline in the same invocation and print the ratio.
    #[arg(long, value_enum)]
    pub compare: Option<Mode>,
    /// Start a private nats-server and the components (as child processes, so RSS is per process).
    #[arg(long)]
    pub embedded: bool,
    /// With --embedded: fsync policy of the private server.
    #[arg(long, value_enum, default_value_t = Sync::Default)]
    pub sync: Sync,
    /// Capability for task/direct modes.
    #[arg(long, default_value = "echo")]
    pub capability: String,
    /// With --embedded: start this many workflow runs that wait on a signal
    /// and report the engine's RSS once they are all waiting (no load run).
    #[arg(long)]
    pub waiting_runs: Option<u64>,
    /// Warm-up requests before measuring.
    #[arg(long, default_value_t = 500)]
    pub warmup: u64,
    /// With --embedded: queue this many requests with the agents stopped,
    /// then start the agents and report the drain rate (no steady load run).
    #[arg(long)]
    pub backlog: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub mode: Mode,
    pub requests: u64,
    pub errors: u64,
    pub concurrency: usize,
    pub seconds: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if args.backlog.is_some() && !args.embedded {
        anyhow::bail!("--backlog needs --embedded (the bench stops and starts the agents itself)");
    }
    let mut embedded = if args.embedded {
        Some(start_embedded(args).await?)
    } else {
        None
    };
    let url = match &embedded {
        Some(e) => e.server.url.clone(),
        None => cli.nats_config().resolved_url(),
    };
    let mut cfg = cli.nats_config();
    cfg.url = Some(url.clone());
    let client = agentry::connect::connect_once(&cfg, "agentry-bench").await?;
    let js = jetstream::new(client.clone());
    let procs: Vec<(String, u32)> = match &embedded {
        Some(e) => e
            .children
            .iter()
            .map(|(n, c)| (n.clone(), c.id()))
            .collect(),
        None => agentry_processes(),
    };
    let idle: Vec<(String, u32, Option<f64>)> = procs
        .iter()
        .map(|(n, p)| (n.clone(), *p, rss_mib(*p)))
        .collect();

    if let Some(n) = args.waiting_runs {
        return waiting_runs(&client, &js, n, &procs, cli.json).await;
    }
    if let (Some(n), Some(emb)) = (args.backlog, embedded.as_mut()) {
        let mut modes = vec![args.mode];
        if let Some(c) = args.compare
            && c != args.mode
        {
            modes.push(c);
        }
        let mut reports = Vec::new();
        for mode in modes {
            let r = backlog::run(&client, &js, emb, args, mode, n).await?;
            if !cli.json {
                r.print();
            }
            reports.push(r);
        }
        if cli.json {
            println!(
                "{}",
                json!({"backlog": reports, "sync": format!("{:?}", args.sync).to_lowercase()})
            );
        } else if reports.len() == 2 {
            println!(
                "ratio {:?}/{:?}: drain {:.2}x",
                reports[0].mode,
                reports[1].mode,
                reports[0].drain_rate / reports[1].drain_rate.max(1e-9)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut reports = Vec::new();
    let mut modes = vec![args.mode];
    if let Some(c) = args.compare
        && c != args.mode
    {
        modes.push(c);
    }
    let mut cpu = Vec::new();
    let server_pid = embedded.as_ref().and_then(|e| e.server.pid());
    for mode in modes {
        let watch: Vec<(String, u32)> = procs
            .iter()
            .cloned()
            .chain(server_pid.map(|p| ("nats-server".to_owned(), p)))
            .chain(std::iter::once((
                "agentry (client)".to_owned(),
                std::process::id(),
            )))
            .collect();
        let before: Vec<Option<f64>> = watch.iter().map(|(_, p)| cpu_seconds(*p)).collect();
        let r = drive(&client, &js, args, mode).await?;
        let per: Vec<Value> = watch
            .iter()
            .zip(before)
            .map(|((n, p), b)| {
                let used = cpu_seconds(*p).zip(b).map(|(a, b)| a - b).unwrap_or(0.0);
                json!({"process": n, "cpu_seconds": used, "cpu_us_per_request": used * 1e6 / (r.requests.max(1) as f64)})
            })
            .collect();
        if !cli.json {
            print_report(&r);
            for p in &per {
                println!(
                    "         cpu {:<18} {:>7.2} s  {:>6.1} µs/request",
                    p["process"].as_str().unwrap_or_default(),
                    p["cpu_seconds"].as_f64().unwrap_or(0.0),
                    p["cpu_us_per_request"].as_f64().unwrap_or(0.0)
                );
            }
        }
        cpu.push(json!({"mode": r.mode, "processes": per}));
        reports.push(r);
    }
    let loaded: Vec<Value> = procs
        .iter()
        .zip(idle.iter())
        .map(|((n, p), (_, _, idle))| json!({"process": n, "pid": p, "idle_rss_mib": idle, "rss_mib_after": rss_mib(*p)}))
        .collect();
    let ratio = (reports.len() == 2).then(|| {
        let (a, b) = (&reports[0], &reports[1]);
        json!({
            "throughput_ratio": a.throughput / b.throughput.max(1e-9),
            "p50_ratio": a.p50_ms / b.p50_ms.max(1e-9),
        })
    });
    if cli.json {
        println!(
            "{}",
            json!({"reports": reports, "ratio": ratio, "processes": loaded, "sync": format!("{:?}", args.sync).to_lowercase(), "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)})
        );
    } else {
        if let Some(r) = &ratio {
            println!(
                "ratio {:?}/{:?}: throughput {:.2}x, p50 {:.2}x",
                reports[0].mode,
                reports[1].mode,
                r["throughput_ratio"].as_f64().unwrap_or(0.0),
                r["p50_ratio"].as_f64().unwrap_or(0.0)
            );
        }
        for p in &loaded {
            println!(
                "rss {:<16} pid {:<7} idle {:>6.1} MiB  after {:>6.1} MiB",
                p["process"].as_str().unwrap_or_default(),
                p["pid"],
                p["idle_rss_mib"].as_f64().unwrap_or(0.0),
                p["rss_mib_after"].as_f64().unwrap_or(0.0)
            );
        }
    }
    drop(embedded);
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &Report) {
    println!(
        "{:<8} {:>8} req  {:>4} in flight  {:>9.0} req/s  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>8.2} ms  errors {}",
        format!("{:?}", r.mode).to_lowercase(),
        r.requests,
        r.concurrency,
        r.throughput,
        r.p50_ms,
        r.p90_ms,
        r.p99_ms,
        r.p999_ms,
        r.max_ms,
        r.errors
    );
}
