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

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentry::event::{self, Mode as CeMode, ext, header};
use agentry::id::RequestId;
use agentry::subject;
use async_nats::jetstream::{self, consumer::PullConsumer, stream};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::Cli;
use crate::server::{self, NatsServer};

mod backlog;

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
    #[arg(long, value_parser = parse_duration)]
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    agentry::config::parse_duration(s).map_err(|e| e.to_string())
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

/// Processes started by --embedded (killed on drop).
struct Embedded {
    server: NatsServer,
    children: Vec<(String, std::process::Child)>,
    _dir: PathBuf,
}

/// Waits up to `grace` for `child` to exit (after a SIGTERM), then kills it.
fn terminate(child: &mut std::process::Child, grace: Duration) {
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The components `--embedded` starts: binary name and extra flags.
const COMPONENTS: [(&str, &[&str]); 3] = [
    ("agentry-engine", &[]),
    ("agentry-monitor", &[]),
    ("agentry-agent", &["--agents", "echo"]),
];

/// Starts one component of `--embedded` against `url`.
fn spawn_component(
    name: &str,
    extra: &[&str],
    url: &str,
    args: &Args,
) -> anyhow::Result<std::process::Child> {
    let max_runs = args
        .waiting_runs
        .unwrap_or(0)
        .max(args.backlog.unwrap_or(0))
        + 100;
    std::process::Command::new(sibling(name))
        .args(["--nats-url", url, "--http-addr", "off"])
        .args(extra)
        .env("RUST_LOG", "warn")
        // The load comes from one source; per-source rate limiting would cap it at 1,000/min.
        .env("AGENTRY_RATE_LIMIT", "4000000000")
        .env("AGENTRY_MAX_RUNS", max_runs.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {name} (build the workspace first): {e}"))
}

/// Stream limits for the embedded topology: the defaults, raised so that a
/// `--backlog` of N fits in AGENTRY_REQUESTS and AGENTRY_TASKS.
fn embedded_settings(args: &Args) -> agentry::topology::Settings {
    let mut s = agentry::topology::Settings::default();
    if let Some(n) = args.backlog {
        let room = i64::try_from(n)
            .unwrap_or(i64::MAX / 2)
            .saturating_add(1_000);
        s.requests_max_msgs = s.requests_max_msgs.max(room);
        s.tasks_max_per_capability = s.tasks_max_per_capability.max(room);
        s.tasks_max_msgs = s.tasks_max_msgs.max(room.saturating_mul(2));
    }
    s
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // Graceful first (components drain and exit; a profiler wrapping one writes its output).
        for (_, c) in &mut self.children {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for (_, c) in &mut self.children {
            terminate(c, Duration::from_secs(15));
        }
        self.server.kill();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

async fn start_embedded(args: &Args) -> anyhow::Result<Embedded> {
    let dir = std::env::temp_dir().join(format!("agentry-bench-{}", std::process::id()));
    let opts = server::Options {
        dir: dir.clone(),
        sync_always: args.sync == Sync::Always,
        ..Default::default()
    };
    let server = tokio::task::spawn_blocking(move || NatsServer::start(opts)).await??;
    let url = server.url.clone();
    let js = jetstream::new(async_nats::connect(&url).await?);
    agentry::topology::ensure(
        &js,
        &agentry::topology::Topology::new(&embedded_settings(args)),
    )
    .await?;
    let mut children = Vec::new();
    for (name, extra) in COMPONENTS {
        children.push((name.to_owned(), spawn_component(name, extra, &url, args)?));
    }
    wait_agent_ready(&js).await?;
    Ok(Embedded {
        server,
        children,
        _dir: dir,
    })
}

/// Waits until an echo agent is registered and pulling from `cap-echo`.
async fn wait_agent_ready(js: &jetstream::Context) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let st = js.get_stream_no_info(subject::TASKS_STREAM).await?;
        if let Ok(info) = st.consumer_info("cap-echo").await
            && info.num_waiting > 0
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            anyhow::bail!("embedded components did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resident set size of a process in MiB, from /proc.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU seconds (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// agentry processes on this machine: (name, pid).
fn agentry_processes() -> Vec<(String, u32)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
                let comm = comm.trim().to_owned();
                if comm.starts_with("agentry-") {
                    out.push((comm, pid));
                }
            }
        }
    }
    out
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

/// Starts `n` runs of a one-step workflow waiting on a signal, waits until
/// the engine has taken them all, and reports RSS.
async fn waiting_runs(
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

async fn setup_raw(js: &jetstream::Context) -> anyhow::Result<PullConsumer> {
    for (name, subj, retention) in [
        (
            "BENCH_RAW_IN",
            "bench.raw.in",
            stream::RetentionPolicy::WorkQueue,
        ),
        (
            "BENCH_RAW_OUT",
            "bench.raw.out.>",
            stream::RetentionPolicy::Limits,
        ),
    ] {
        let _ = js.delete_stream(name).await;
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subj.into()],
            retention,
            ..Default::default()
        })
        .await?;
    }
    let st = js.get_stream("BENCH_RAW_IN").await?;
    let c = st
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("worker".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await?;
    Ok(c)
}

/// The plain worker of the raw baseline.
fn spawn_raw_worker(
    js: jetstream::Context,
    consumer: PullConsumer,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let Ok(mut msgs) = consumer
            .stream()
            .max_messages_per_batch(512)
            .messages()
            .await
        else {
            return;
        };
        let sem = Arc::new(tokio::sync::Semaphore::new(1024));
        loop {
            let next = tokio::select! { _ = stop.cancelled() => return, m = msgs.next() => m };
            let Some(Ok(msg)) = next else { return };
            let Ok(permit) = sem.clone().acquire_owned().await else {
                return;
            };
            let js = js.clone();
            tokio::spawn(async move {
                let id = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("id"))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                if let Ok(ack) = js
                    .publish(format!("bench.raw.out.{id}"), msg.payload.clone())
                    .await
                {
                    let _ = ack.await;
                }
                let _ = msg.ack().await;
                drop(permit);
            });
        }
    });
}

async fn ensure_bench_workflow(js: &jetstream::Context) -> anyhow::Result<()> {
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

async fn drive(
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
async fn publish(
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
