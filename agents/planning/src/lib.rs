//! Planning agent logic: the `plan_tasks` capability.
//!
//! A task graph becomes a schedule by the critical path method (forward and
//! backward pass, slack, the zero-slack chain), then a serial schedule
//! generation pass places every task at its earliest feasible start:
//! after its dependencies, within resource capacities (levelling, priority
//! = least latest start, then id) and, for outdoor tasks, outside the
//! forecast hours whose precipitation probability exceeds the threshold.
//!
//! Times are hours from the project start ("hour 0"). When `start` is given
//! (RFC 3339), every hour is also reported as a date-time in the offset of
//! `start`. Nothing reads the clock: the same input always gives the same
//! output.
//!
//! The agent on the runtime is [`PlanningAgent`] (`agent`): it fetches a
//! forecast over A2A when `weather` names a place, then plans on the
//! blocking pool. Module map: `agent`, `graph` (validation, CPM), `schedule`
//! (levelling and weather shifts), `weather` (forecast input), `tests`.

mod agent;
mod graph;
mod schedule;
mod weather;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use agentry_agent_kit::input::decode;
use agentry_agent_kit::time::{self as common, Leniency, Timestamp};
use agentry_agent_kit::{invalid, num};
use serde::Deserialize;

pub use agent::{DEFAULT_FORECAST_DAYS, PlanningAgent};
pub use agentry_agent_kit::LogicError;

/// At most this many tasks per request.
pub const MAX_TASKS: usize = 10_000;
/// At most this many dependency edges per request.
pub const MAX_DEPENDENCIES: usize = 100_000;

/// One task after validation; dependencies are resolved to indices.
#[derive(Debug, Clone)]
struct Task {
    id: String,
    name: Option<String>,
    duration: f64,
    preds: Vec<usize>,
    /// (resource index, units) for every resource the task uses.
    demand: Vec<(usize, f64)>,
    release: f64,
    outdoor: bool,
}

/// A validated planning request.
#[derive(Debug)]
struct Plan {
    tasks: Vec<Task>,
    /// Resource names, indexed like `Task::demand` and `capacity`.
    resources: Vec<String>,
    /// Capacity per resource; `None` = unlimited (not given).
    capacity: Vec<Option<f64>>,
    start: Option<Timestamp>,
    weather: Option<weather::Blocked>,
    warnings: Vec<String>,
    /// Comparison tolerance in hours.
    tol: f64,
}

/// Plans a task graph: CPM, critical path, resource levelling and weather
/// shifts. See the module docs and `schemas/capabilities/plan_tasks.*.json`.
pub fn plan_tasks(input: &Value) -> Result<Value, LogicError> {
    let mut plan = parse(input)?;
    let graph = graph::Graph::new(&plan.tasks)?;
    let cpm = graph.cpm(&plan.tasks, plan.tol);
    let critical_path = graph.critical_path(&plan.tasks, &cpm, plan.tol);

    let unlimited = vec![None; plan.resources.len()];
    let mut placed = schedule::place(&plan, &graph, &cpm, &unlimited);
    let mut peaks =
        schedule::peak_usage(&plan.tasks, &placed.start, plan.resources.len(), plan.tol);
    let exceeded = plan
        .capacity
        .iter()
        .zip(&peaks)
        .any(|(cap, peak)| cap.is_some_and(|cap| *peak > cap + plan.tol));
    if exceeded {
        placed = schedule::place(&plan, &graph, &cpm, &plan.capacity);
        peaks = schedule::peak_usage(&plan.tasks, &placed.start, plan.resources.len(), plan.tol);
    }
    plan.warnings.append(&mut placed.warnings);
    Ok(render(
        &plan,
        &cpm,
        &critical_path,
        &placed,
        &peaks,
        exceeded,
    ))
}

/// Builds the deterministic benchmark project used by [`benchmark_plan`]:
/// `n_tasks` tasks, each depending on up to three of the 40 tasks before it,
/// sharing a crew pool (capacity 6) and a single crane (capacity 1), a fifth
/// of them outdoor, with a two-week hourly forecast.
pub fn benchmark_input(n_tasks: usize) -> Value {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        // 64-bit linear congruential generator (Knuth's MMIX constants).
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut tasks = Vec::with_capacity(n_tasks);
    for i in 0..n_tasks {
        let duration = 1 + next() % 8;
        let mut depends_on = Vec::new();
        if i > 0 {
            for _ in 0..next() % 4 {
                let back = 1 + next() as usize % i.min(40);
                depends_on.push(format!("t{}", i - back));
            }
        }
        let mut resources = Map::new();
        resources.insert("crew".into(), json!(1 + next() % 3));
        if next() % 10 == 0 {
            resources.insert("crane".into(), json!(1));
        }
        tasks.push(json!({
            "id": format!("t{i}"),
            "duration_h": duration,
            "depends_on": depends_on,
            "resources": resources,
            "outdoor": next() % 5 == 0,
        }));
    }
    let hours = 24 * 14;
    let time: Vec<String> = (0..hours)
        .map(|h| format!("2025-03-{:02}T{:02}:00", 3 + h / 24, h % 24))
        .collect();
    let probability: Vec<u64> = (0..hours).map(|h| (h * 37 % 100) as u64).collect();
    json!({
        "tasks": tasks,
        "resources": {"crew": 6, "crane": 1},
        "start": "2025-03-03T00:00:00Z",
        "weather": {
            "forecast": {"hourly": {"time": time, "precipitation_probability": probability}},
            "max_precipitation_probability": 60,
        },
    })
}

/// Plans [`benchmark_input`]`(n_tasks)` and returns how long `plan_tasks`
/// took (input construction excluded).
pub fn benchmark_plan(n_tasks: usize) -> Result<Duration, LogicError> {
    let input = benchmark_input(n_tasks);
    let started = Instant::now();
    plan_tasks(&input)?;
    Ok(started.elapsed())
}

/// The `plan_tasks` input (`schemas/capabilities/plan_tasks.input.json`);
/// an explicit `null` counts as absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    tasks: Option<Vec<TaskInput>>,
    resources: Option<BTreeMap<String, f64>>,
    start: Option<String>,
    /// A forecast (Open-Meteo or `weather_forecast` output, read leniently
    /// by `weather`) and the threshold.
    weather: Option<Value>,
}

/// One task of the input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskInput {
    id: String,
    name: Option<String>,
    duration_h: f64,
    depends_on: Option<Vec<String>>,
    resources: Option<BTreeMap<String, f64>>,
    earliest_start_h: Option<f64>,
    outdoor: Option<bool>,
}

fn parse(input: &Value) -> Result<Plan, LogicError> {
    let root: Input = decode(input)?;
    let items = root
        .tasks
        .ok_or_else(|| invalid("tasks: required field is missing"))?;
    if items.is_empty() {
        return Err(invalid("tasks: at least one task is required"));
    }
    if items.len() > MAX_TASKS {
        return Err(LogicError::TooLarge(format!(
            "tasks: {} tasks, at most {MAX_TASKS} are allowed",
            items.len()
        )));
    }

    let capacities = root.resources.unwrap_or_default();
    for (name, cap) in &capacities {
        if !cap.is_finite() || *cap < 0.0 {
            return Err(invalid(format!(
                "resources.{name}: capacity must be a number >= 0"
            )));
        }
    }

    let start = match root.start {
        None => None,
        Some(text) => Some(common::parse_datetime(&text, Leniency::Rfc3339).ok_or_else(|| {
            invalid(format!(
                "start: expected an RFC 3339 date-time such as 2025-03-03T08:00:00Z, got `{text}`"
            ))
        })?),
    };

    // First pass: fields of each task, ids unique.
    struct Raw {
        deps: Vec<String>,
        uses: BTreeMap<String, f64>,
    }
    let mut index: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut tasks = Vec::with_capacity(items.len());
    let mut raws = Vec::with_capacity(items.len());
    let mut edges = 0usize;
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("tasks[{i}]");
        let id = item.id;
        if id.trim().is_empty() {
            return Err(invalid(format!("{path}.id: must not be empty")));
        }
        if let Some(first) = index.insert(id.clone(), i) {
            return Err(invalid(format!(
                "{path}.id: duplicate id `{id}` (first used by tasks[{first}])"
            )));
        }
        let duration = item.duration_h;
        if !duration.is_finite() || duration <= 0.0 {
            return Err(invalid(format!(
                "{path}.duration_h: must be a number > 0, got {duration}"
            )));
        }
        let release = item.earliest_start_h.unwrap_or(0.0);
        if !release.is_finite() || release < 0.0 {
            return Err(invalid(format!(
                "{path}.earliest_start_h: must be a number >= 0, got {release}"
            )));
        }
        let deps = item.depends_on.unwrap_or_default();
        edges += deps.len();
        if edges > MAX_DEPENDENCIES {
            return Err(LogicError::TooLarge(format!(
                "tasks: more than {MAX_DEPENDENCIES} dependencies in total"
            )));
        }
        let uses = item.resources.unwrap_or_default();
        for (name, units) in &uses {
            if !units.is_finite() || *units < 0.0 {
                return Err(invalid(format!(
                    "{path}.resources.{name}: must be a number >= 0, got {units}"
                )));
            }
            match capacities.get(name) {
                Some(cap) if units > cap => {
                    return Err(invalid(format!(
                        "{path}.resources.{name}: demand {units} exceeds the capacity {cap} of resource `{name}`"
                    )));
                }
                _ => {}
            }
        }
        tasks.push(Task {
            id,
            name: item.name,
            duration,
            preds: Vec::new(),
            demand: Vec::new(),
            release,
            outdoor: item.outdoor.unwrap_or(false),
        });
        raws.push(Raw { deps, uses });
    }

    // Resource index space: every capacity and every resource used.
    let mut names: Vec<String> = capacities.keys().cloned().collect();
    for raw in &raws {
        names.extend(raw.uses.keys().cloned());
    }
    names.sort();
    names.dedup();
    let resource_index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    let mut warnings = Vec::new();
    if !capacities.is_empty() {
        for name in names.iter().filter(|n| !capacities.contains_key(*n)) {
            warnings.push(format!(
                "resource `{name}` is used by tasks but has no capacity in `resources`; treated as unlimited"
            ));
        }
    }

    // Second pass: resolve dependencies and resources.
    for (i, raw) in raws.into_iter().enumerate() {
        let mut preds = Vec::with_capacity(raw.deps.len());
        for dep in &raw.deps {
            let &p = index.get(dep).ok_or_else(|| {
                invalid(format!("tasks[{i}].depends_on: unknown task id `{dep}`"))
            })?;
            if !preds.contains(&p) {
                preds.push(p);
            }
        }
        tasks[i].preds = preds;
        tasks[i].demand = raw
            .uses
            .iter()
            .filter(|(_, units)| **units > 0.0)
            .filter_map(|(name, units)| resource_index.get(name.as_str()).map(|&r| (r, *units)))
            .collect();
    }

    let capacity = names.iter().map(|n| capacities.get(n).copied()).collect();
    let work: f64 = tasks.iter().map(|t| t.duration).sum();
    let latest_release = tasks.iter().map(|t| t.release).fold(0.0, f64::max);
    let tol = 1e-9 * (1.0 + work + latest_release);

    let weather = match &root.weather {
        None => None,
        Some(value) => Some(weather::Blocked::parse(value, start, tol)?),
    };
    if weather.is_none() && tasks.iter().any(|t| t.outdoor) {
        warnings.push(
            "outdoor tasks present but no weather forecast given; weather not considered".into(),
        );
    }

    Ok(Plan {
        tasks,
        resources: names,
        capacity,
        start,
        weather,
        warnings,
        tol,
    })
}

/// Rounds hours to 1e-6 h (3.6 ms) for output, so that sums such as
/// 0.1 + 0.2 read as 0.3.
fn hours(value: f64) -> Value {
    num((value * 1e6).round() / 1e6 + 0.0)
}

fn render(
    plan: &Plan,
    cpm: &graph::Cpm,
    critical_path: &[usize],
    placed: &schedule::Placement,
    peaks: &[f64],
    levelled: bool,
) -> Value {
    let total = placed.finish.iter().copied().fold(0.0, f64::max);
    let at = |h: f64| {
        plan.start.map(|start| {
            let offset = start.offset_s.unwrap_or(0);
            // Hours are bounded by the size guards, far from i64 limits.
            let ms = (h * 3_600_000.0).round() as i64;
            Value::String(common::format_rfc3339(start.utc_ms(0) + ms, offset))
        })
    };
    let schedule: Vec<Value> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            let mut entry = Map::new();
            entry.insert("id".into(), json!(task.id));
            if let Some(name) = &task.name {
                entry.insert("name".into(), json!(name));
            }
            entry.insert("duration_h".into(), hours(task.duration));
            entry.insert("earliest_start_h".into(), hours(cpm.es[i]));
            entry.insert("earliest_finish_h".into(), hours(cpm.ef[i]));
            entry.insert("latest_start_h".into(), hours(cpm.ls[i]));
            entry.insert("latest_finish_h".into(), hours(cpm.lf[i]));
            entry.insert("slack_h".into(), hours(cpm.slack(i)));
            entry.insert("critical".into(), json!(cpm.critical[i]));
            entry.insert("start_h".into(), hours(placed.start[i]));
            entry.insert("finish_h".into(), hours(placed.finish[i]));
            if let Some(start) = at(placed.start[i]) {
                entry.insert("start".into(), start);
            }
            if let Some(finish) = at(placed.finish[i]) {
                entry.insert("finish".into(), finish);
            }
            Value::Object(entry)
        })
        .collect();

    let mut out = Map::new();
    out.insert("total_duration_h".into(), hours(total));
    out.insert("cpm_duration_h".into(), hours(cpm.total));
    out.insert(
        "critical_path".into(),
        json!(
            critical_path
                .iter()
                .map(|&i| &plan.tasks[i].id)
                .collect::<Vec<_>>()
        ),
    );
    out.insert("schedule".into(), Value::Array(schedule));
    out.insert("levelled".into(), json!(levelled));
    let shifted: Vec<&str> = plan
        .tasks
        .iter()
        .zip(&placed.weather_shifted)
        .filter(|(_, shifted)| **shifted)
        .map(|(task, _)| task.id.as_str())
        .collect();
    out.insert("weather_adjusted".into(), json!(shifted));
    if let Some(start) = plan.start {
        let offset = start.offset_s.unwrap_or(0);
        out.insert(
            "start".into(),
            json!(common::format_rfc3339(start.utc_ms(0), offset)),
        );
        if let Some(finish) = at(total) {
            out.insert("finish".into(), finish);
        }
    }
    if !plan.resources.is_empty() {
        let usage: Map<String, Value> = plan
            .resources
            .iter()
            .enumerate()
            .map(|(r, name)| {
                let capacity = plan.capacity[r].map_or(Value::Null, num);
                (
                    name.clone(),
                    json!({"capacity": capacity, "peak": num(peaks[r])}),
                )
            })
            .collect();
        out.insert("resources".into(), Value::Object(usage));
    }
    if let Some(weather) = &plan.weather {
        out.insert("weather".into(), weather.summary());
    }
    out.insert("warnings".into(), json!(plan.warnings));
    Value::Object(out)
}

#[cfg(test)]
mod tests;
