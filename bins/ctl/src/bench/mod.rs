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
mod suite;
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

#[derive(Debug, Clone, clap::Args)]
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
    /// With --embedded: run every figure of the README's "Measured" table
    /// (task, direct, workflow, task latency at 1 in flight, backlog drains
    /// of 10,000 and 200,000), each against raw on a fresh system, and print
    /// one table with the targets.
    #[arg(long)]
    pub suite: bool,
    /// With --embedded: the components' `RUST_LOG` (their own default is
    /// `info`, which creates a tracing span per request; the bench measures
    /// at `warn` unless told otherwise).
    #[arg(long, default_value = "warn")]
    pub component_log: String,
    /// With --suite: multiply every request count by this (a smoke run of
    /// the suite uses a small fraction).
    #[arg(long, default_value_t = 1.0)]
    pub suite_scale: f64,
    /// With --suite: measure every step this many times (each round on a
    /// fresh system, raw in the same round) and report the round with the
    /// median ratio, with the range of all rounds; on a shared machine whose
    /// speed drifts, one round's ratio can be off by a third.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub suite_rounds: u32,
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

/// CPU one process used during one measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cpu {
    pub process: String,
    pub cpu_seconds: f64,
    pub cpu_us_per_request: f64,
}

impl Cpu {
    fn new(process: &str, seconds: f64, requests: u64) -> Self {
        Self {
            process: process.to_owned(),
            cpu_seconds: seconds,
            cpu_us_per_request: seconds * 1e6 / (requests.max(1) as f64),
        }
    }

    fn print(&self) {
        println!(
            "         cpu {:<18} {:>7.2} s  {:>6.1} µs/request",
            self.process, self.cpu_seconds, self.cpu_us_per_request
        );
    }
}

/// A steady-load run of one or two modes (the second is the baseline).
pub(super) struct LoadOutcome {
    pub(super) reports: Vec<Report>,
    /// CPU per watched process, one list per entry of `reports`.
    pub(super) cpu: Vec<Vec<Cpu>>,
    /// RSS per component process, idle and after the runs.
    pub(super) rss: Vec<Value>,
}

impl LoadOutcome {
    fn ratio(&self) -> Option<Value> {
        let [a, b] = self.reports.as_slice() else {
            return None;
        };
        Some(json!({
            "throughput_ratio": a.throughput / b.throughput.max(1e-9),
            "p50_ratio": a.p50_ms / b.p50_ms.max(1e-9),
        }))
    }
}

/// The system a bench runs against: an embedded one or the configured one.
pub(super) struct Session {
    embedded: Option<embedded::Embedded>,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Component processes: (name, pid).
    procs: Vec<(String, u32)>,
    idle_rss: Vec<Option<f64>>,
}

impl Session {
    pub(super) async fn open(cli: &Cli, args: &Args) -> anyhow::Result<Self> {
        let embedded = if args.embedded {
            Some(start_embedded(args).await?)
        } else {
            None
        };
        let url = match &embedded {
            Some(e) => e.server.url.clone(),
            None => cli.nats_config().resolved_url(),
        };
        let mut cfg = cli.nats_config();
        cfg.url = Some(url);
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
        let idle_rss = procs.iter().map(|(_, p)| rss_mib(*p)).collect();
        Ok(Self {
            embedded,
            client,
            js,
            procs,
            idle_rss,
        })
    }

    /// Drains the bench's connection, then stops the embedded system (so
    /// the client does not report the server going away).
    pub(super) async fn close(self) {
        let _ = self.client.drain().await;
        drop(self.embedded);
    }

    /// `args.mode`, then the `--compare` mode if it differs.
    fn modes(args: &Args) -> Vec<Mode> {
        let mut modes = vec![args.mode];
        if let Some(c) = args.compare
            && c != args.mode
        {
            modes.push(c);
        }
        modes
    }

    /// `--backlog n`: one drain per mode.
    pub(super) async fn backlog(
        &mut self,
        args: &Args,
        n: u64,
    ) -> anyhow::Result<Vec<backlog::Report>> {
        let emb = self.embedded.as_mut().ok_or_else(|| {
            anyhow::anyhow!(
                "--backlog needs --embedded (the bench stops and starts the agents itself)"
            )
        })?;
        let mut reports = Vec::new();
        for mode in Self::modes(args) {
            reports.push(backlog::run(&self.client, &self.js, emb, args, mode, n).await?);
        }
        Ok(reports)
    }

    /// A steady load per mode, with CPU per process around each.
    pub(super) async fn load(&self, args: &Args) -> anyhow::Result<LoadOutcome> {
        let server_pid = self.embedded.as_ref().and_then(|e| e.server.pid());
        let watch: Vec<(String, u32)> = self
            .procs
            .iter()
            .cloned()
            .chain(server_pid.map(|p| ("nats-server".to_owned(), p)))
            .chain(std::iter::once((
                "agentry (client)".to_owned(),
                std::process::id(),
            )))
            .collect();
        let mut reports = Vec::new();
        let mut cpu = Vec::new();
        for mode in Self::modes(args) {
            let before: Vec<Option<f64>> = watch.iter().map(|(_, p)| cpu_seconds(*p)).collect();
            let r = drive(&self.client, &self.js, args, mode).await?;
            let per: Vec<Cpu> = watch
                .iter()
                .zip(before)
                .map(|((n, p), b)| {
                    let used = cpu_seconds(*p).zip(b).map(|(a, b)| a - b).unwrap_or(0.0);
                    Cpu::new(n, used, r.requests)
                })
                .collect();
            cpu.push(per);
            reports.push(r);
        }
        let rss = self
            .procs
            .iter()
            .zip(self.idle_rss.iter())
            .map(|((n, p), idle)| json!({"process": n, "pid": p, "idle_rss_mib": idle, "rss_mib_after": rss_mib(*p)}))
            .collect();
        Ok(LoadOutcome { reports, cpu, rss })
    }
}

fn sync_name(args: &Args) -> String {
    format!("{:?}", args.sync).to_lowercase()
}

/// Runs the bench; on SIGTERM or SIGINT it stops what it started (the
/// embedded server and components are killed and their store removed when
/// the session is dropped) instead of leaving them running.
pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let stop = agentry::shutdown::on_signals();
    tokio::select! {
        out = run_until_done(cli, args) => out,
        () = stop.cancelled() => {
            eprintln!("agentry bench: interrupted, its embedded system is stopped");
            Ok(ExitCode::from(130))
        }
    }
}

async fn run_until_done(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if (args.backlog.is_some() || args.suite) && !args.embedded {
        anyhow::bail!(
            "--backlog and --suite need --embedded (the bench stops and starts the agents itself)"
        );
    }
    if args.suite {
        return suite::run(cli, args).await;
    }
    let mut session = Session::open(cli, args).await?;
    if let Some(n) = args.waiting_runs {
        return waiting_runs(&session.client, &session.js, n, &session.procs, cli.json).await;
    }
    if let Some(n) = args.backlog {
        let reports = session.backlog(args, n).await?;
        if cli.json {
            println!("{}", json!({"backlog": reports, "sync": sync_name(args)}));
            return Ok(ExitCode::SUCCESS);
        }
        for r in &reports {
            r.print();
        }
        if let [a, b] = reports.as_slice() {
            println!(
                "ratio {:?}/{:?}: drain {:.2}x",
                a.mode,
                b.mode,
                a.drain_rate / b.drain_rate.max(1e-9)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let out = session.load(args).await?;
    let ratio = out.ratio();
    if cli.json {
        let cpu: Vec<Value> = out
            .reports
            .iter()
            .zip(&out.cpu)
            .map(|(r, per)| json!({"mode": r.mode, "processes": per}))
            .collect();
        println!(
            "{}",
            json!({"reports": out.reports, "ratio": ratio, "cpu": cpu, "processes": out.rss, "sync": sync_name(args), "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)})
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (r, per) in out.reports.iter().zip(&out.cpu) {
        print_report(r);
        per.iter().for_each(Cpu::print);
    }
    if let (Some(r), [a, b]) = (&ratio, out.reports.as_slice()) {
        println!(
            "ratio {:?}/{:?}: throughput {:.2}x, p50 {:.2}x",
            a.mode,
            b.mode,
            r["throughput_ratio"].as_f64().unwrap_or(0.0),
            r["p50_ratio"].as_f64().unwrap_or(0.0)
        );
    }
    for p in &out.rss {
        println!(
            "rss {:<16} pid {:<7} idle {:>6.1} MiB  after {:>6.1} MiB",
            p["process"].as_str().unwrap_or_default(),
            p["pid"],
            p["idle_rss_mib"].as_f64().unwrap_or(0.0),
            p["rss_mib_after"].as_f64().unwrap_or(0.0)
        );
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
