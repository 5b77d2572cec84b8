//! The step graph: `needs` edges between step indices, cycle detection,
//! topological order and ancestor sets (what a step's expressions may see).
//!
//! Edges point from a step to the steps it needs. Indices are positions in
//! `Definition::steps`; every ordering here breaks ties by that position, so
//! results are deterministic.

use std::collections::VecDeque;

/// A checked, acyclic step graph.
#[derive(Clone, Debug)]
pub(crate) struct Dag {
    needs: Vec<Vec<usize>>,
    dependants: Vec<Vec<usize>>,
    order: Vec<usize>,
    /// `ancestors[i][j]`: step `j` is reachable from `i` through `needs`.
    ancestors: Vec<Vec<bool>>,
}

impl Dag {
    /// Builds the graph, or returns every cycle (each as `[a, b, .., a]`
    /// following `needs`) if there is one. `needs` must hold valid indices,
    /// no self-edges and no duplicates.
    pub(crate) fn new(needs: Vec<Vec<usize>>) -> Result<Self, Vec<Vec<usize>>> {
        let cycles = find_cycles(&needs);
        if !cycles.is_empty() {
            return Err(cycles);
        }
        let n = needs.len();
        let mut dependants = vec![Vec::new(); n];
        for (i, ns) in needs.iter().enumerate() {
            for &j in ns {
                dependants[j].push(i);
            }
        }
        let order = topological_order(&needs, &dependants);
        let mut ancestors = vec![vec![false; n]; n];
        for &i in &order {
            // Every need comes earlier in `order`, so its row is complete.
            let mut row = vec![false; n];
            for &j in &needs[i] {
                row[j] = true;
                for (k, seen) in ancestors[j].iter().enumerate() {
                    if *seen {
                        row[k] = true;
                    }
                }
            }
            ancestors[i] = row;
        }
        Ok(Self {
            needs,
            dependants,
            order,
            ancestors,
        })
    }

    pub(crate) fn order(&self) -> &[usize] {
        &self.order
    }

    pub(crate) fn needs(&self, i: usize) -> &[usize] {
        &self.needs[i]
    }

    pub(crate) fn dependants(&self, i: usize) -> &[usize] {
        &self.dependants[i]
    }

    /// Whether `ancestor` is reachable from `step` through `needs`.
    pub(crate) fn is_ancestor(&self, ancestor: usize, step: usize) -> bool {
        self.ancestors
            .get(step)
            .and_then(|row| row.get(ancestor))
            .copied()
            .unwrap_or(false)
    }
}

/// Kahn's algorithm, always taking the lowest ready index.
fn topological_order(needs: &[Vec<usize>], dependants: &[Vec<usize>]) -> Vec<usize> {
    let mut missing: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut ready: std::collections::BTreeSet<usize> =
        (0..needs.len()).filter(|&i| missing[i] == 0).collect();
    let mut order = Vec::with_capacity(needs.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependants[i] {
            missing[d] -= 1;
            if missing[d] == 0 {
                ready.insert(d);
            }
        }
    }
    order
}

/// One cycle per strongly connected component of more than one step, each
/// starting and ending at the component's lowest index, following `needs`
/// along a shortest path.
pub(crate) fn find_cycles(needs: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut cycles = Vec::new();
    for component in strongly_connected(needs) {
        if component.len() < 2 {
            continue;
        }
        let Some(&start) = component.iter().min() else {
            continue;
        };
        let inside = |i: usize| component.contains(&i);
        // Breadth-first from `start` back to `start`, staying inside the component.
        let mut previous = vec![usize::MAX; needs.len()];
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'search: while let Some(i) = queue.pop_front() {
            for &j in &needs[i] {
                if j == start {
                    closing = Some(i);
                    break 'search;
                }
                if inside(j) && previous[j] == usize::MAX {
                    previous[j] = i;
                    queue.push_back(j);
                }
            }
        }
        let Some(mut last) = closing else { continue };
        let mut path = vec![start];
        while last != start {
            path.push(last);
            last = previous[last];
        }
        path.push(start);
        // `path` runs start <- .. <- start; flip it to follow `needs`.
        path.reverse();
        cycles.push(path);
    }
    cycles.sort();
    cycles
}

/// Tarjan's algorithm; recursion depth is bounded by the step limit.
fn strongly_connected(needs: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        needs: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for k in 0..s.needs[v].len() {
            let w = s.needs[v][k];
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let n = needs.len();
    let mut s = State {
        needs,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diamond orders a before b, c before d, and knows who sees whom.
    #[test]
    fn diamond_order_and_ancestors() {
        // 0=a, 1=b needs a, 2=c needs a, 3=d needs b,c
        let dag = Dag::new(vec![vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        assert_eq!(dag.order(), [0, 1, 2, 3]);
        assert!(dag.is_ancestor(0, 3));
        assert!(dag.is_ancestor(1, 3));
        assert!(!dag.is_ancestor(1, 2));
        assert!(!dag.is_ancestor(3, 0));
        assert!(!dag.is_ancestor(0, 0));
        assert_eq!(dag.dependants(0), [1, 2]);
        assert_eq!(dag.needs(3), [1, 2]);
    }

    /// Declaration order does not have to be topological.
    #[test]
    fn order_follows_edges_not_declaration() {
        // 0 needs 2, 1 needs 0, 2 has none
        let dag = Dag::new(vec![vec![2], vec![0], vec![]]).unwrap();
        assert_eq!(dag.order(), [2, 0, 1]);
        assert!(dag.is_ancestor(2, 1));
    }

    /// Cycles are reported once each, starting at their lowest index and following needs.
    #[test]
    fn cycles_are_named() {
        // 0 -> 1 -> 2 -> 0, and 3 -> 4 -> 3, 5 alone needing 0
        let needs = vec![vec![1], vec![2], vec![0], vec![4], vec![3], vec![0]];
        let cycles = Dag::new(needs).unwrap_err();
        assert_eq!(cycles, vec![vec![0, 1, 2, 0], vec![3, 4, 3]]);
    }

    /// The shortest way round is chosen when a component has several cycles.
    #[test]
    fn shortest_cycle_in_component() {
        // 0 -> 1 -> 2 -> 0 and 0 -> 2 directly
        let cycles = find_cycles(&[vec![1, 2], vec![2], vec![0]]);
        assert_eq!(cycles, vec![vec![0, 2, 0]]);
    }
}
