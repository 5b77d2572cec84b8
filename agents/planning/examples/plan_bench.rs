//! Times `plan_tasks` on the deterministic benchmark project: CPM, resource
//! levelling with a shared crew pool and a single crane, and weather shifts
//! for the outdoor fifth of the tasks against a two-week hourly forecast.
//!
//! `cargo run --release -p agentry-planning --example plan_bench [n_tasks ...]`
//! (default sizes: 1,000 and 10,000 tasks; best of three runs each).

use std::process::ExitCode;
use std::time::Duration;

use agentry_planning::benchmark_plan;

fn main() -> ExitCode {
    let mut sizes: Vec<usize> = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.replace('_', "").parse() {
            Ok(n) => sizes.push(n),
            Err(_) => {
                eprintln!("plan_bench: {arg:?} is not a task count");
                return ExitCode::FAILURE;
            }
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000];
    }
    for n in sizes {
        let mut best: Option<Duration> = None;
        for _ in 0..3 {
            match benchmark_plan(n) {
                Ok(elapsed) => best = Some(best.map_or(elapsed, |b| b.min(elapsed))),
                Err(err) => {
                    eprintln!("plan_bench: planning {n} tasks failed: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if let Some(best) = best {
            println!(
                "plan_tasks: {n:>6} tasks planned in {:>9.3} ms (best of 3)",
                best.as_secs_f64() * 1e3
            );
        }
    }
    ExitCode::SUCCESS
}
