//! `agentry bench --embedded --suite`: every figure of the README's
//! "Measured" table in one run, each step on a fresh embedded system with the
//! raw baseline measured in the same step, printed as one markdown table with
//! the targets (or one JSON object with `--json`).
//!
//! Steps: task and direct at 256 in flight, the 3-step echo workflow, task
//! latency at 1 in flight, and backlog drains of 10,000 and 200,000 queued
//! task requests. `--suite-scale` multiplies every count (the e2e test runs
//! the suite at a small fraction); `--suite-rounds N` measures every step N
//! times and reports the round with the median ratio.

use std::process::ExitCode;

use serde_json::json;

use super::{Args, Cpu, Mode, Session};
use crate::Cli;

/// What a step's ratio is held against.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Target {
    /// agentry throughput / raw throughput at least this.
    ThroughputAtLeast(f64),
    /// agentry p50 / raw p50 at most this.
    P50AtMost(f64),
    /// Reported, no target.
    None,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Load {
        mode: Mode,
        requests: u64,
        concurrency: usize,
        warmup: u64,
    },
    Backlog {
        queued: u64,
    },
}

struct Step {
    figure: &'static str,
    kind: Kind,
    target: Target,
}

const STEPS: [Step; 6] = [
    Step {
        figure: "task, 256 in flight",
        kind: Kind::Load {
            mode: Mode::Task,
            requests: 20_000,
            concurrency: 256,
            warmup: 500,
        },
        target: Target::ThroughputAtLeast(0.5),
    },
    Step {
        figure: "direct, 256 in flight",
        kind: Kind::Load {
            mode: Mode::Direct,
            requests: 20_000,
            concurrency: 256,
            warmup: 500,
        },
        target: Target::ThroughputAtLeast(0.8),
    },
    Step {
        figure: "workflow (3 echo steps)",
        kind: Kind::Load {
            mode: Mode::Workflow,
            requests: 4_000,
            concurrency: 256,
            warmup: 500,
        },
        target: Target::ThroughputAtLeast(0.1),
    },
    Step {
        figure: "task p50, 1 in flight",
        kind: Kind::Load {
            mode: Mode::Task,
            requests: 3_000,
            concurrency: 1,
            warmup: 200,
        },
        target: Target::P50AtMost(2.0),
    },
    Step {
        figure: "task backlog 10,000",
        kind: Kind::Backlog { queued: 10_000 },
        target: Target::None,
    },
    Step {
        figure: "task backlog 200,000",
        kind: Kind::Backlog { queued: 200_000 },
        target: Target::None,
    },
];

/// One row of the table.
#[derive(Debug, serde::Serialize)]
struct Row {
    figure: String,
    /// "req/s", "ms" (p50) or "drained/s".
    unit: &'static str,
    requests: u64,
    concurrency: usize,
    agentry: f64,
    raw: f64,
    ratio: f64,
    target: Target,
    met: Option<bool>,
    errors: u64,
    cpu: Vec<Cpu>,
    raw_cpu: Vec<Cpu>,
    /// The ratio of every round, lowest first (one entry without
    /// `--suite-rounds`); the row's figures are those of the median round.
    round_ratios: Vec<f64>,
}

impl Row {
    fn judge(&mut self) {
        self.met = match self.target {
            Target::ThroughputAtLeast(t) => Some(self.ratio >= t),
            Target::P50AtMost(t) => Some(self.ratio <= t),
            Target::None => None,
        };
    }

    fn markdown(&self) -> String {
        let num = |v: f64| match self.unit {
            "ms" => format!("{v:.2} ms"),
            _ if v >= 1000.0 => format!("{:.1}k/s", v / 1000.0),
            _ => format!("{v:.0}/s"),
        };
        let target = match self.target {
            Target::ThroughputAtLeast(t) => format!("≥ {t}x"),
            Target::P50AtMost(t) => format!("≤ {t}x"),
            Target::None => "–".to_owned(),
        };
        let met = match self.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "–",
        };
        let ratio = match (self.round_ratios.first(), self.round_ratios.last()) {
            (Some(lo), Some(hi)) if self.round_ratios.len() > 1 => {
                format!("{:.2}x ({lo:.2}–{hi:.2})", self.ratio)
            }
            _ => format!("{:.2}x", self.ratio),
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            self.figure,
            num(self.agentry),
            num(self.raw),
            ratio,
            cpu_cell(
                &self.cpu,
                &["agentry-engine", "agentry-agent", "nats-server"]
            ),
            cpu_cell(&self.raw_cpu, &["nats-server"]),
            target,
            met
        )
    }
}

/// "e / a / n / c": µs/request of the named processes, then the client.
fn cpu_cell(cpu: &[Cpu], names: &[&str]) -> String {
    names
        .iter()
        .chain(std::iter::once(&"agentry (client)"))
        .map(|n| {
            cpu.iter()
                .find(|c| c.process == *n)
                .map_or("–".to_owned(), |c| format!("{:.1}", c.cpu_us_per_request))
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

fn scaled(n: u64, scale: f64) -> u64 {
    ((n as f64) * scale).round().max(1.0) as u64
}

async fn measure(cli: &Cli, base: &Args, step: &Step) -> anyhow::Result<Row> {
    let mut args = Args {
        suite: false,
        compare: Some(Mode::Raw),
        waiting_runs: None,
        backlog: None,
        duration: None,
        ..base.clone()
    };
    let scale = base.suite_scale;
    let mut row = match step.kind {
        Kind::Load {
            mode,
            requests,
            concurrency,
            warmup,
        } => {
            args.mode = mode;
            args.requests = scaled(requests, scale);
            args.concurrency = concurrency;
            args.warmup = scaled(warmup, scale);
            let session = Session::open(cli, &args).await?;
            let out = session.load(&args).await?;
            session.close().await;
            let ([a, r], [ac, rc]) = (out.reports.as_slice(), out.cpu.as_slice()) else {
                anyhow::bail!("{}: expected an agentry and a raw run", step.figure);
            };
            let latency = matches!(step.target, Target::P50AtMost(_));
            let (av, rv) = if latency {
                (a.p50_ms, r.p50_ms)
            } else {
                (a.throughput, r.throughput)
            };
            Row {
                figure: step.figure.to_owned(),
                unit: if latency { "ms" } else { "req/s" },
                requests: a.requests,
                concurrency,
                agentry: av,
                raw: rv,
                ratio: av / rv.max(1e-9),
                target: step.target,
                met: None,
                errors: a.errors + r.errors,
                cpu: ac.clone(),
                raw_cpu: rc.clone(),
                round_ratios: Vec::new(),
            }
        }
        Kind::Backlog { queued } => {
            let n = scaled(queued, scale);
            args.mode = Mode::Task;
            args.backlog = Some(n);
            let mut session = Session::open(cli, &args).await?;
            let reports = session.backlog(&args, n).await?;
            session.close().await;
            let [a, r] = reports.as_slice() else {
                anyhow::bail!("{}: expected an agentry and a raw drain", step.figure);
            };
            Row {
                figure: step.figure.to_owned(),
                unit: "drained/s",
                requests: n,
                concurrency: 0,
                agentry: a.drain_rate,
                raw: r.drain_rate,
                ratio: a.drain_rate / r.drain_rate.max(1e-9),
                target: step.target,
                met: None,
                errors: a.failed + a.duplicates + r.failed + r.duplicates,
                cpu: a.processes.clone(),
                raw_cpu: r.processes.clone(),
                round_ratios: Vec::new(),
            }
        }
    };
    row.round_ratios = vec![row.ratio];
    Ok(row)
}

/// The round with the median ratio, carrying every round's ratio and the
/// errors of all rounds.
fn median(mut rounds: Vec<Row>) -> Option<Row> {
    rounds.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
    let ratios: Vec<f64> = rounds.iter().map(|r| r.ratio).collect();
    let errors = rounds.iter().map(|r| r.errors).sum();
    let mut row = rounds.into_iter().nth(ratios.len() / 2)?;
    row.round_ratios = ratios;
    row.errors = errors;
    row.judge();
    Some(row)
}

pub(super) async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    let n = args.suite_rounds.max(1);
    for step in &STEPS {
        let mut rounds = Vec::new();
        for round in 1..=n {
            eprintln!("bench suite: {} (round {round} of {n}) ...", step.figure);
            rounds.push(measure(cli, args, step).await?);
        }
        let row =
            median(rounds).ok_or_else(|| anyhow::anyhow!("{}: no round measured", step.figure))?;
        if !cli.json {
            eprintln!("{}", row.markdown());
        }
        rows.push(row);
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    if cli.json {
        println!(
            "{}",
            json!({"suite": rows, "scale": args.suite_scale, "rounds": n, "sync": super::sync_name(args), "cpus": cpus})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "agentry bench --suite: {} build, {cpus} CPUs, sync {}; each step on a fresh embedded system, raw in the same step{}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        super::sync_name(args),
        if n > 1 {
            format!(
                "; {n} rounds a step, the median round shown (range of the rounds' ratios in brackets)"
            )
        } else {
            String::new()
        }
    );
    println!();
    println!(
        "| figure | agentry | raw, same run | ratio | CPU µs/request: engine / agent / nats-server / client | raw: nats-server / client | target | |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", r.markdown());
    }
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        println!();
        println!("errors, failed or duplicated results across the suite: {errors}");
    }
    Ok(ExitCode::SUCCESS)
}
