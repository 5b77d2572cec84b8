//! Draws a parsed [`Chart`] as an SVG 1.1 document on the geometry of
//! [`layout`](crate::layout) (plot area,
//! axes with nice ticks), grid, one `<g class="series">` per series, legend
//! and axis labels.

use std::fmt::Write as _;

use super::LogicError;
use super::charts::{Chart, Kind, Series, XVal};
use super::layout::{Layout, XAxis, category_label, layout, x_of};
use super::svg::{coord, escape, truncate};

const PALETTE: [&str; 10] = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#475569", "#ea580c",
];
const AXIS_COLOUR: &str = "#374151";
const GRID_COLOUR: &str = "#e5e7eb";

/// The SVG text and, for a histogram, its bin edges.
pub(super) struct Rendered {
    pub(super) svg: String,
    pub(super) bin_edges: Option<Vec<f64>>,
}

fn push(out: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = out.write_fmt(args);
}

pub(super) fn render(chart: &Chart) -> Result<Rendered, LogicError> {
    let layout = layout(chart)?;
    let mut out = String::with_capacity(8192);
    header(&mut out, chart);
    grid_and_y_axis(&mut out, &layout);
    x_axis(&mut out, &layout);
    series(&mut out, chart, &layout);
    legend(&mut out, chart, &layout);
    axis_labels(&mut out, chart, &layout);
    push(&mut out, format_args!("</svg>\n"));
    Ok(Rendered {
        svg: out,
        bin_edges: layout.histogram.map(|h| h.edges),
    })
}

fn header(out: &mut String, chart: &Chart) {
    push(
        out,
        format_args!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
             version=\"1.1\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             font-family=\"sans-serif\" font-size=\"12\" class=\"chart {kind}\">\n",
            w = chart.width,
            h = chart.height,
            kind = chart.kind.name()
        ),
    );
    let title = chart
        .title
        .clone()
        .unwrap_or_else(|| format!("{} chart", chart.kind.name()));
    push(out, format_args!("<title>{}</title>\n", escape(&title)));
    push(
        out,
        format_args!(
            "<rect class=\"background\" x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n",
            chart.width, chart.height
        ),
    );
    if let Some(title) = &chart.title {
        push(
            out,
            format_args!(
                "<text class=\"title\" x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" \
                 font-weight=\"bold\">{}</text>\n",
                coord(f64::from(chart.width) / 2.0),
                escape(title)
            ),
        );
    }
}

fn grid_and_y_axis(out: &mut String, layout: &Layout) {
    let frame = layout.frame;
    push(
        out,
        format_args!("<g class=\"grid\" stroke=\"{GRID_COLOUR}\" stroke-width=\"1\">\n"),
    );
    for &v in &layout.y_ticks.values {
        push(
            out,
            format_args!(
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>\n",
                coord(frame.left),
                coord(frame.right),
                y = coord(layout.sy(v))
            ),
        );
    }
    push(out, format_args!("</g>\n"));
    push(
        out,
        format_args!(
            "<g class=\"axis y-axis\" stroke=\"{AXIS_COLOUR}\">\n\
             <line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>\n",
            coord(frame.top),
            coord(frame.bottom),
            x = coord(frame.left)
        ),
    );
    for &v in &layout.y_ticks.values {
        push(
            out,
            format_args!(
                "<line class=\"tick\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>\
                 <text x=\"{}\" y=\"{y}\" dy=\"4\" text-anchor=\"end\" stroke=\"none\" \
                 fill=\"{AXIS_COLOUR}\">{}</text>\n",
                coord(frame.left - 5.0),
                coord(frame.left),
                coord(frame.left - 8.0),
                escape(&layout.y_ticks.label(v)),
                y = coord(layout.sy(v))
            ),
        );
    }
    push(out, format_args!("</g>\n"));
}

fn x_axis(out: &mut String, layout: &Layout) {
    let frame = layout.frame;
    push(
        out,
        format_args!(
            "<g class=\"axis x-axis\" stroke=\"{AXIS_COLOUR}\">\n\
             <line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>\n",
            coord(frame.left),
            coord(frame.right),
            y = coord(frame.bottom)
        ),
    );
    let mut tick = |x: f64, label: &str| {
        push(
            out,
            format_args!(
                "<line class=\"tick\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>\
                 <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" stroke=\"none\" \
                 fill=\"{AXIS_COLOUR}\">{}</text>\n",
                coord(frame.bottom),
                coord(frame.bottom + 5.0),
                coord(frame.bottom + 18.0),
                escape(label),
                x = coord(x)
            ),
        );
    };
    match &layout.x_axis {
        XAxis::Numeric { ticks, lo, hi } => {
            let slack = (hi - lo) * 1e-9;
            for &v in ticks
                .values
                .iter()
                .filter(|v| **v >= lo - slack && **v <= hi + slack)
            {
                if let Some(x) = layout.sx(v) {
                    tick(x, &ticks.label(v));
                }
            }
        }
        XAxis::Categories(labels) => {
            // Label every k-th band so that labels get about 60 px each.
            let room = ((layout.plot_width() / 60.0).floor() as usize).max(1);
            let every = labels.len().div_ceil(room).max(1);
            let band = layout.band();
            for (k, label) in labels.iter().enumerate().filter(|(k, _)| k % every == 0) {
                tick(frame.left + band * (k as f64 + 0.5), &truncate(label, 12));
            }
        }
    }
    push(out, format_args!("</g>\n"));
}

fn series(out: &mut String, chart: &Chart, layout: &Layout) {
    let frame = layout.frame;
    push(
        out,
        format_args!(
            "<defs><clipPath id=\"plot-area\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\
             </clipPath></defs>\n<g class=\"plot\" clip-path=\"url(#plot-area)\">\n",
            // A few pixels of slack so markers on the domain edge stay whole.
            coord(frame.left - 5.0),
            coord(frame.top - 5.0),
            coord(layout.plot_width() + 10.0),
            coord(frame.bottom - frame.top + 10.0)
        ),
    );
    for (i, s) in chart.series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        push(
            out,
            format_args!(
                "<g class=\"series\" data-series=\"{}\" fill=\"{colour}\" stroke=\"{colour}\">\n",
                escape(&s.name)
            ),
        );
        match chart.kind {
            Kind::Histogram => histogram_bars(out, chart, layout, i),
            Kind::Bar => bars(out, chart, layout, i),
            Kind::Line | Kind::Scatter => line_or_points(out, chart.kind, layout, s),
        }
        push(out, format_args!("</g>\n"));
    }
    push(out, format_args!("</g>\n"));
}

fn histogram_bars(out: &mut String, chart: &Chart, layout: &Layout, i: usize) {
    let Some(hist) = &layout.histogram else {
        return;
    };
    let Some(counts) = hist.counts.get(i) else {
        return;
    };
    let opacity = if chart.series.len() > 1 {
        "0.55"
    } else {
        "0.85"
    };
    for (k, &count) in counts.iter().enumerate() {
        let (Some(x_a), Some(x_b)) = (layout.sx(hist.edges[k]), layout.sx(hist.edges[k + 1]))
        else {
            continue;
        };
        if count == 0 {
            continue;
        }
        let top = layout.sy(count as f64);
        push(
            out,
            format_args!(
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill-opacity=\"{opacity}\" \
                 stroke=\"#ffffff\" stroke-width=\"0.5\"/>\n",
                coord(x_a),
                coord(top),
                coord((x_b - x_a).max(0.0)),
                coord((layout.sy(0.0) - top).max(0.0))
            ),
        );
    }
}

/// Grouped bars: each category band holds one bar per series.
fn bars(out: &mut String, chart: &Chart, layout: &Layout, i: usize) {
    let s = &chart.series[i];
    let band = layout.band();
    let bar = band * 0.8 / chart.series.len() as f64;
    let base = layout.sy(0.0);
    let mut drawn = std::collections::HashSet::new();
    for k in 0..s.y.len() {
        let (Some(label), Some(v)) = (category_label(&x_of(s, k)), s.y[k]) else {
            continue;
        };
        let Some(c) = layout.category(&label) else {
            continue;
        };
        // The first value of a category wins.
        if !v.is_finite() || !drawn.insert(c) {
            continue;
        }
        let x = layout.frame.left + band * c as f64 + band * 0.1 + bar * i as f64;
        let y = layout.sy(v);
        push(
            out,
            format_args!(
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" stroke=\"none\"/>\n",
                coord(x),
                coord(y.min(base)),
                coord(bar),
                coord((base - y).abs())
            ),
        );
    }
}

fn line_or_points(out: &mut String, kind: Kind, layout: &Layout, s: &Series) {
    let position = |k: usize| -> Option<(f64, f64)> {
        let v = s.y[k].filter(|v| v.is_finite())?;
        let x = match (&layout.x_axis, x_of(s, k)) {
            (XAxis::Numeric { .. }, XVal::Num(x)) if x.is_finite() => layout.sx(x)?,
            (XAxis::Categories(_), xv) => {
                let c = layout.category(&category_label(&xv)?)?;
                layout.frame.left + layout.band() * (c as f64 + 0.5)
            }
            _ => return None,
        };
        Some((x, layout.sy(v)))
    };
    let points: Vec<Option<(f64, f64)>> = (0..s.y.len()).map(position).collect();
    if kind == Kind::Line {
        // One path; a missing point lifts the pen (a new `M` subpath).
        let mut d = String::new();
        let mut pen_down = false;
        for point in &points {
            match point {
                Some((x, y)) => {
                    let verb = if pen_down { "L" } else { "M" };
                    push(&mut d, format_args!("{verb}{} {} ", coord(*x), coord(*y)));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        push(
            out,
            format_args!(
                "<path d=\"{}\" fill=\"none\" stroke-width=\"2\" stroke-linejoin=\"round\"/>\n",
                d.trim_end()
            ),
        );
    }
    // Lines get markers only while they stay readable.
    let marker_limit = if kind == Kind::Line { 60 } else { usize::MAX };
    if points.iter().flatten().count() <= marker_limit {
        let r = if kind == Kind::Line { "3" } else { "3.5" };
        for (x, y) in points.iter().flatten() {
            push(
                out,
                format_args!(
                    "<circle cx=\"{}\" cy=\"{}\" r=\"{r}\" stroke=\"none\" fill-opacity=\"0.85\"/>\n",
                    coord(*x),
                    coord(*y)
                ),
            );
        }
    }
}

fn legend(out: &mut String, chart: &Chart, layout: &Layout) {
    push(out, format_args!("<g class=\"legend\">\n"));
    let x = layout.frame.right + 16.0;
    for (i, s) in chart.series.iter().enumerate() {
        let y = layout.frame.top + 4.0 + 20.0 * i as f64;
        push(
            out,
            format_args!(
                "<g class=\"legend-item\"><rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" \
                 fill=\"{}\"/><text x=\"{}\" y=\"{}\" fill=\"{AXIS_COLOUR}\">{}</text></g>\n",
                coord(x),
                coord(y),
                PALETTE[i % PALETTE.len()],
                coord(x + 18.0),
                coord(y + 10.5),
                escape(&truncate(&s.name, layout.legend_chars))
            ),
        );
    }
    push(out, format_args!("</g>\n"));
}

fn axis_labels(out: &mut String, chart: &Chart, layout: &Layout) {
    let frame = layout.frame;
    if let Some(label) = &chart.x_label {
        push(
            out,
            format_args!(
                "<text class=\"x-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" \
                 fill=\"{AXIS_COLOUR}\">{}</text>\n",
                coord((frame.left + frame.right) / 2.0),
                coord(f64::from(chart.height) - 14.0),
                escape(label)
            ),
        );
    }
    if let Some(label) = &chart.y_label {
        let (x, y) = (coord(20.0), coord((frame.top + frame.bottom) / 2.0));
        push(
            out,
            format_args!(
                "<text class=\"y-label\" x=\"{x}\" y=\"{y}\" transform=\"rotate(-90 {x} {y})\" \
                 text-anchor=\"middle\" fill=\"{AXIS_COLOUR}\">{}</text>\n",
                escape(label)
            ),
        );
    }
}
