//! A run's step graph as inline SVG: one column per depth (longest chain of
//! `needs` from a root), one box per step coloured by its status, with its
//! attempts and duration, and an edge from each dependency.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::html::esc;

/// What the drawing needs of one step.
pub struct Node {
    pub id: String,
    pub needs: Vec<String>,
    pub status: String,
    pub attempts: u32,
    pub duration_ms: Option<u64>,
}

const W: u32 = 170;
const H: u32 = 54;
const GAP_X: u32 = 60;
const GAP_Y: u32 = 18;
const PAD: u32 = 10;

/// Fill colour of a step status.
fn fill(status: &str) -> &'static str {
    match status {
        "completed" => "#d3f3dc",
        "failed" | "cancelled" => "#f9d0d6",
        "running" | "scheduled" | "retrying" | "waiting" => "#fdeeb8",
        "compensated" => "#e6dcf7",
        "skipped" => "#e4e7ec",
        _ => "#ffffff",
    }
}

/// Depth of every step: 0 for roots, else one more than its deepest need.
/// Needs naming unknown steps are ignored; a cycle (never stored, the
/// definition check refuses it) is cut by the step count.
fn depths(nodes: &[Node]) -> BTreeMap<&str, u32> {
    let mut depth: BTreeMap<&str, u32> = nodes.iter().map(|n| (n.id.as_str(), 0)).collect();
    for _ in 0..nodes.len() {
        let mut changed = false;
        for n in nodes {
            let d = n
                .needs
                .iter()
                .filter_map(|p| depth.get(p.as_str()).map(|d| d + 1))
                .max()
                .unwrap_or(0);
            if depth.get(n.id.as_str()).is_some_and(|&cur| d > cur) {
                depth.insert(&n.id, d);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// The SVG for `nodes` (in definition order).
pub fn svg(nodes: &[Node]) -> String {
    let depth = depths(nodes);
    let mut rows_in: BTreeMap<u32, u32> = BTreeMap::new();
    let mut at: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for n in nodes {
        let col = depth.get(n.id.as_str()).copied().unwrap_or(0);
        let row = rows_in.entry(col).or_insert(0);
        at.insert(&n.id, (PAD + col * (W + GAP_X), PAD + *row * (H + GAP_Y)));
        *row += 1;
    }
    let cols = rows_in.keys().max().map_or(1, |c| c + 1);
    let rows = rows_in.values().max().copied().unwrap_or(1);
    let (width, height) = (
        2 * PAD + cols * W + (cols - 1) * GAP_X,
        2 * PAD + rows * H + rows.saturating_sub(1) * GAP_Y,
    );
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dag\" id=\"dag\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"step graph\">"
    );
    for n in nodes {
        let Some(&(x, y)) = at.get(n.id.as_str()) else {
            continue;
        };
        for p in &n.needs {
            if let Some(&(px, py)) = at.get(p.as_str()) {
                let _ = write!(
                    out,
                    "<line class=\"edge\" x1=\"{}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#8a94a6\"/>",
                    px + W,
                    py + H / 2,
                    y + H / 2
                );
            }
        }
    }
    for n in nodes {
        let Some(&(x, y)) = at.get(n.id.as_str()) else {
            continue;
        };
        let timing = n
            .duration_ms
            .map(|ms| format!(" · {:.1}s", ms as f64 / 1000.0))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<g class=\"step\" data-step=\"{id}\" data-status=\"{status}\">\
             <rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\" fill=\"{fill}\" stroke=\"#5a6475\"/>\
             <text x=\"{tx}\" y=\"{ty1}\" font-size=\"13\" font-weight=\"600\">{id}</text>\
             <text x=\"{tx}\" y=\"{ty2}\" font-size=\"11\">{status} · attempt {attempts}{timing}</text></g>",
            id = esc(&n.id),
            status = esc(&n.status),
            fill = fill(&n.status),
            tx = x + 8,
            ty1 = y + 20,
            ty2 = y + 40,
            attempts = n.attempts,
            timing = esc(&timing),
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, needs: &[&str]) -> Node {
        Node {
            id: id.into(),
            needs: needs.iter().map(|s| (*s).to_owned()).collect(),
            status: "completed".into(),
            attempts: 1,
            duration_ms: Some(1500),
        }
    }

    #[test]
    fn diamond_has_four_columns_and_six_boxes() {
        let nodes = vec![
            node("start", &[]),
            node("left", &["start"]),
            node("middle", &["start"]),
            node("right", &["start"]),
            node("join", &["left", "middle", "right"]),
            node("finish", &["join"]),
        ];
        let d = depths(&nodes);
        assert_eq!(d["start"], 0);
        assert_eq!(d["right"], 1);
        assert_eq!(d["join"], 2);
        assert_eq!(d["finish"], 3);
        let s = svg(&nodes);
        assert_eq!(s.matches("<g class=\"step\"").count(), 6);
        assert_eq!(s.matches("<line class=\"edge\"").count(), 7);
        assert!(s.contains("attempt 1 · 1.5s"));
    }

    #[test]
    fn step_names_are_escaped() {
        let s = svg(&[node("<x>", &[])]);
        assert!(s.contains("&lt;x&gt;") && !s.contains("<x>"));
    }
}
