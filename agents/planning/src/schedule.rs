//! Serial schedule generation: tasks are placed one at a time, highest
//! priority first among those whose dependencies are placed (priority = least
//! CPM latest start, then id), each at the earliest time that respects its
//! dependencies, its release time, the resource capacities in force and, for
//! an outdoor task, the forecast's wet hours.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::graph::{Cpm, Graph};
use super::weather::Blocked;
use super::{Plan, Task};

/// Where every task went.
#[derive(Debug)]
pub(super) struct Placement {
    pub(super) start: Vec<f64>,
    pub(super) finish: Vec<f64>,
    /// Whether the weather moved the task later than it could otherwise start.
    pub(super) weather_shifted: Vec<bool>,
    pub(super) warnings: Vec<String>,
}

/// Priority key: least latest start first, then least id rank.
#[derive(Debug, Clone, Copy)]
struct Key {
    latest_start: f64,
    id_rank: usize,
    task: usize,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.latest_start
            .total_cmp(&other.latest_start)
            .then(self.id_rank.cmp(&other.id_rank))
    }
}

/// Places all tasks. `capacity[r]` limits resource `r` (`None` = unlimited);
/// with every capacity `None` this is the early-start schedule (plus
/// weather shifts).
pub(super) fn place(plan: &Plan, graph: &Graph, cpm: &Cpm, capacity: &[Option<f64>]) -> Placement {
    let tasks = &plan.tasks;
    let n = tasks.len();
    let tol = plan.tol;
    let levelling = capacity.iter().any(Option::is_some);
    let mut profile = Profile::new(capacity.len());
    let mut waiting: Vec<usize> = tasks.iter().map(|t| t.preds.len()).collect();
    let key = |v: usize| {
        Reverse(Key {
            latest_start: cpm.ls[v],
            id_rank: graph.id_rank[v],
            task: v,
        })
    };
    let mut ready: BinaryHeap<Reverse<Key>> =
        (0..n).filter(|&v| waiting[v] == 0).map(key).collect();
    let mut out = Placement {
        start: vec![0.0; n],
        finish: vec![0.0; n],
        weather_shifted: vec![false; n],
        warnings: Vec::new(),
    };
    while let Some(Reverse(Key { task: v, .. })) = ready.pop() {
        let task = &tasks[v];
        let after_deps = task
            .preds
            .iter()
            .map(|&p| out.finish[p])
            .fold(task.release, f64::max);
        let limits = levelling.then_some((&profile, capacity));
        let plain = earliest(after_deps, task, limits, None, tol);
        let mut start = plain;
        if let (true, Some(weather)) = (task.outdoor, &plan.weather) {
            start = earliest(after_deps, task, limits, Some(weather), tol);
            if start > plain + tol {
                out.weather_shifted[v] = true;
                if start + task.duration > weather.horizon_end + tol {
                    out.warnings.push(format!(
                        "task `{}`: no dry window of {} h within the forecast horizon \
                         (ends at hour {}); placed at hour {}, where the weather is unknown",
                        task.id,
                        round(task.duration),
                        round(weather.horizon_end),
                        round(start)
                    ));
                }
            }
        }
        if levelling {
            profile.add(start, start + task.duration, &task.demand);
        }
        out.start[v] = start;
        out.finish[v] = start + task.duration;
        for &s in &graph.succs[v] {
            waiting[s] -= 1;
            if waiting[s] == 0 {
                ready.push(key(s));
            }
        }
    }
    out
}

fn round(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// The earliest start at or after `from` such that `[start, start +
/// duration)` fits the resource profile and avoids the wet hours. Each step
/// jumps to the end of the first conflicting segment or wet interval, so the
/// loop ends after at most one step per segment and interval.
fn earliest(
    from: f64,
    task: &Task,
    limits: Option<(&Profile, &[Option<f64>])>,
    weather: Option<&Blocked>,
    tol: f64,
) -> f64 {
    let mut start = from;
    let bound =
        limits.map_or(0, |(p, _)| p.times.len()) + weather.map_or(0, |w| w.intervals.len()) + 2;
    for _ in 0..bound {
        let finish = start + task.duration;
        if let Some(end) = weather.and_then(|w| w.first_overlap(start, finish, tol)) {
            start = end;
            continue;
        }
        if let Some(end) =
            limits.and_then(|(p, caps)| p.first_conflict(start, finish, &task.demand, caps, tol))
        {
            start = end;
            continue;
        }
        break;
    }
    start
}

/// Resource usage as a step function: `usage[k]` holds on
/// `[times[k], times[k + 1])`, the last step to infinity.
#[derive(Debug)]
struct Profile {
    times: Vec<f64>,
    usage: Vec<Vec<f64>>,
}

impl Profile {
    fn new(resources: usize) -> Self {
        Self {
            times: vec![0.0],
            usage: vec![vec![0.0; resources]],
        }
    }

    /// Index of the step containing `t` (times are >= 0).
    fn step_at(&self, t: f64) -> usize {
        self.times.partition_point(|&x| x <= t).saturating_sub(1)
    }

    fn end_of(&self, k: usize) -> f64 {
        self.times.get(k + 1).copied().unwrap_or(f64::INFINITY)
    }

    /// Makes `t` a step boundary and returns the index of the step starting there.
    fn split(&mut self, t: f64) -> usize {
        let k = self.step_at(t);
        if self.times[k] == t {
            return k;
        }
        let copy = self.usage[k].clone();
        self.times.insert(k + 1, t);
        self.usage.insert(k + 1, copy);
        k + 1
    }

    fn add(&mut self, start: f64, finish: f64, demand: &[(usize, f64)]) {
        if demand.is_empty() {
            return;
        }
        let first = self.split(start);
        let last = self.split(finish);
        for step in &mut self.usage[first..last] {
            for &(r, units) in demand {
                step[r] += units;
            }
        }
    }

    /// The end of the first step overlapping `[start, finish)` where adding
    /// `demand` would exceed a capacity.
    fn first_conflict(
        &self,
        start: f64,
        finish: f64,
        demand: &[(usize, f64)],
        capacity: &[Option<f64>],
        tol: f64,
    ) -> Option<f64> {
        let mut k = self.step_at(start);
        while k < self.times.len() && self.times[k] < finish - tol {
            let end = self.end_of(k);
            if end > start + tol {
                let over = demand.iter().any(|&(r, units)| {
                    capacity[r].is_some_and(|cap| self.usage[k][r] + units > cap + tol)
                });
                if over {
                    // The last step is empty after every task, so `end` is finite
                    // whenever each demand fits its capacity (checked on input).
                    return end.is_finite().then_some(end);
                }
            }
            k += 1;
        }
        None
    }
}

/// Highest simultaneous use of each resource in a placement (a sweep over
/// start and finish events; a finish frees units before a start at the same
/// time takes them, times equal within `tol` counting as the same).
pub(super) fn peak_usage(tasks: &[Task], start: &[f64], resources: usize, tol: f64) -> Vec<f64> {
    let mut peaks = vec![0.0; resources];
    // Times snapped to a grid of `tol` hours; bounded by the size guards.
    let tick = |t: f64| (t / tol).round() as i64;
    let mut events: Vec<(i64, usize, f64)> = Vec::new();
    for (v, task) in tasks.iter().enumerate() {
        for &(r, units) in &task.demand {
            events.push((tick(start[v]), r, units));
            events.push((tick(start[v] + task.duration), r, -units));
        }
    }
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.total_cmp(&b.2)));
    let mut level = vec![0.0; resources];
    for (_, r, delta) in events {
        level[r] += delta;
        if level[r] > peaks[r] {
            peaks[r] = level[r];
        }
    }
    peaks
}
