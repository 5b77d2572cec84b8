//! The task graph: topological order, cycle naming, the critical path
//! method (forward and backward pass) and the critical chain.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::{LogicError, Task};

/// Successor lists, a deterministic topological order and each task's rank
/// in id order (the tie-breaker everywhere).
#[derive(Debug)]
pub(super) struct Graph {
    pub(super) succs: Vec<Vec<usize>>,
    pub(super) order: Vec<usize>,
    pub(super) id_rank: Vec<usize>,
}

/// Result of the critical path method, indexed like the tasks.
#[derive(Debug)]
pub(super) struct Cpm {
    pub(super) es: Vec<f64>,
    pub(super) ef: Vec<f64>,
    pub(super) ls: Vec<f64>,
    pub(super) lf: Vec<f64>,
    pub(super) critical: Vec<bool>,
    /// Project duration without resource or weather constraints.
    pub(super) total: f64,
}

impl Cpm {
    pub(super) fn slack(&self, task: usize) -> f64 {
        (self.ls[task] - self.es[task]).max(0.0)
    }
}

impl Graph {
    /// Orders the tasks topologically (Kahn's algorithm, lowest input index
    /// first among the ready tasks) or names a dependency cycle.
    pub(super) fn new(tasks: &[Task]) -> Result<Self, LogicError> {
        let n = tasks.len();
        let mut succs = vec![Vec::new(); n];
        for (v, task) in tasks.iter().enumerate() {
            for &p in &task.preds {
                succs[p].push(v);
            }
        }
        let mut indegree: Vec<usize> = tasks.iter().map(|t| t.preds.len()).collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&v| indegree[v] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(v)) = ready.pop() {
            order.push(v);
            for &s in &succs[v] {
                indegree[s] -= 1;
                if indegree[s] == 0 {
                    ready.push(Reverse(s));
                }
            }
        }
        if order.len() < n {
            return Err(LogicError::Cycle(name_cycle(tasks, &indegree)));
        }
        let mut by_id: Vec<usize> = (0..n).collect();
        by_id.sort_by(|&a, &b| tasks[a].id.cmp(&tasks[b].id));
        let mut id_rank = vec![0; n];
        for (rank, &v) in by_id.iter().enumerate() {
            id_rank[v] = rank;
        }
        Ok(Self {
            succs,
            order,
            id_rank,
        })
    }

    /// Forward pass (ES = max(release, EF of predecessors)), backward pass
    /// (LF = min LS of successors, or the project duration) and zero-slack
    /// flags (slack within `tol`).
    pub(super) fn cpm(&self, tasks: &[Task], tol: f64) -> Cpm {
        let n = tasks.len();
        let mut es = vec![0.0; n];
        let mut ef = vec![0.0; n];
        for &v in &self.order {
            let start = tasks[v]
                .preds
                .iter()
                .map(|&p| ef[p])
                .fold(tasks[v].release, f64::max);
            es[v] = start;
            ef[v] = start + tasks[v].duration;
        }
        let total = ef.iter().copied().fold(0.0, f64::max);
        let mut ls = vec![0.0; n];
        let mut lf = vec![0.0; n];
        for &v in self.order.iter().rev() {
            let finish = self.succs[v].iter().map(|&s| ls[s]).fold(total, f64::min);
            lf[v] = finish;
            ls[v] = finish - tasks[v].duration;
        }
        let critical = (0..n).map(|v| ls[v] - es[v] <= tol).collect();
        Cpm {
            es,
            ef,
            ls,
            lf,
            critical,
            total,
        }
    }

    /// The critical path: a chain of zero-slack tasks, each starting when its
    /// predecessor in the chain finishes, ending at the project finish. Of
    /// several such chains the longest (by summed duration) wins; equal
    /// lengths are broken by the smaller task id at each step.
    pub(super) fn critical_path(&self, tasks: &[Task], cpm: &Cpm, tol: f64) -> Vec<usize> {
        let n = tasks.len();
        let mut best = vec![0.0; n];
        let mut prev: Vec<Option<usize>> = vec![None; n];
        let better = |a: usize, b: Option<usize>, best: &[f64]| match b {
            None => true,
            Some(b) => match compare(best[a], best[b], tol) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => self.id_rank[a] < self.id_rank[b],
            },
        };
        for &v in &self.order {
            if !cpm.critical[v] {
                continue;
            }
            let mut chosen = None;
            for &p in &tasks[v].preds {
                if cpm.critical[p]
                    && (cpm.ef[p] - cpm.es[v]).abs() <= tol
                    && better(p, chosen, &best)
                {
                    chosen = Some(p);
                }
            }
            best[v] = tasks[v].duration + chosen.map_or(0.0, |p| best[p]);
            prev[v] = chosen;
        }
        let mut end = None;
        for v in 0..n {
            if cpm.critical[v] && (cpm.ef[v] - cpm.total).abs() <= tol && better(v, end, &best) {
                end = Some(v);
            }
        }
        let mut path = Vec::new();
        let mut cursor = end;
        while let Some(v) = cursor {
            path.push(v);
            cursor = prev[v];
        }
        path.reverse();
        path
    }
}

fn compare(a: f64, b: f64, tol: f64) -> Ordering {
    if a > b + tol {
        Ordering::Greater
    } else if a < b - tol {
        Ordering::Less
    } else {
        Ordering::Equal
    }
}

/// Names one cycle among the tasks Kahn's algorithm could not order (those
/// with `indegree > 0`): walks dependencies from the first such task until a
/// task repeats, then lists the cycle in precedence order (each task before
/// the one that depends on it), starting at its smallest id and repeating it
/// at the end: `a -> b -> c -> a`.
fn name_cycle(tasks: &[Task], indegree: &[usize]) -> Vec<String> {
    let stuck = |v: usize| indegree[v] > 0;
    let Some(start) = (0..tasks.len()).find(|&v| stuck(v)) else {
        return Vec::new();
    };
    let mut position = vec![usize::MAX; tasks.len()];
    let mut walk = Vec::new();
    let mut cursor = start;
    let cycle_start = loop {
        if position[cursor] != usize::MAX {
            break position[cursor];
        }
        position[cursor] = walk.len();
        walk.push(cursor);
        // Every stuck task has a stuck predecessor, else it would have been
        // ordered; the fallback only guards against a broken invariant.
        match tasks[cursor].preds.iter().copied().find(|&p| stuck(p)) {
            Some(p) => cursor = p,
            None => break 0,
        }
    };
    // `walk` follows "depends on" edges; precedence order is the reverse.
    let mut cycle: Vec<usize> = walk[cycle_start..].iter().rev().copied().collect();
    if let Some(min_at) =
        (0..cycle.len()).min_by(|&a, &b| tasks[cycle[a]].id.cmp(&tasks[cycle[b]].id))
    {
        cycle.rotate_left(min_at);
    }
    let mut names: Vec<String> = cycle.iter().map(|&v| tasks[v].id.clone()).collect();
    if let Some(first) = names.first().cloned() {
        names.push(first);
    }
    names
}
