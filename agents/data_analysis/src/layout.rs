//! Chart geometry: the plot frame, the x axis (numeric or categories),
//! nice y ticks, histogram bins and the legend width, everything
//! [`render`](crate::render) needs to map data to pixels.

use crate::LogicError;
use crate::charts::{Chart, Kind, Series, XVal};
use crate::svg::{self, Ticks};
use agentry_agent_kit::invalid;

/// Rough advance width of one character at font size 12.
pub(crate) const CHAR_WIDTH: f64 = 7.0;

/// Pixel rectangle of the plot area.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) left: f64,
    pub(crate) right: f64,
    pub(crate) top: f64,
    pub(crate) bottom: f64,
}

#[derive(Debug)]
pub(crate) enum XAxis {
    /// Ticks and the domain `[lo, hi]` mapped onto the plot width.
    Numeric { ticks: Ticks, lo: f64, hi: f64 },
    /// One band per category.
    Categories(Vec<String>),
}

#[derive(Debug)]
pub(crate) struct Histogram {
    pub(crate) edges: Vec<f64>,
    /// Per series, per bin.
    pub(crate) counts: Vec<Vec<usize>>,
}

/// Everything needed to map data to pixels.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) frame: Frame,
    pub(crate) x_axis: XAxis,
    pub(crate) y_ticks: Ticks,
    pub(crate) histogram: Option<Histogram>,
    /// Characters of a series name shown in the legend.
    pub(crate) legend_chars: usize,
}

impl Layout {
    pub(crate) fn sy(&self, v: f64) -> f64 {
        let (lo, hi) = (self.y_ticks.lo, self.y_ticks.hi);
        self.frame.bottom - (v - lo) / (hi - lo) * (self.frame.bottom - self.frame.top)
    }

    pub(crate) fn plot_width(&self) -> f64 {
        self.frame.right - self.frame.left
    }

    /// Pixel x of a numeric value (numeric axis only).
    pub(crate) fn sx(&self, v: f64) -> Option<f64> {
        match &self.x_axis {
            XAxis::Numeric { lo, hi, .. } => {
                Some(self.frame.left + (v - lo) / (hi - lo) * self.plot_width())
            }
            XAxis::Categories(_) => None,
        }
    }

    /// Width of one category band (categorical axis).
    pub(crate) fn band(&self) -> f64 {
        match &self.x_axis {
            XAxis::Categories(labels) => self.plot_width() / labels.len().max(1) as f64,
            XAxis::Numeric { .. } => self.plot_width(),
        }
    }

    /// Index of a category label.
    pub(crate) fn category(&self, label: &str) -> Option<usize> {
        match &self.x_axis {
            XAxis::Categories(labels) => labels.iter().position(|l| l == label),
            XAxis::Numeric { .. } => None,
        }
    }
}

/// The x of point `k` of a series: its x value or its 1-based index.
pub(crate) fn x_of(series: &Series, k: usize) -> XVal {
    match &series.x {
        Some(x) => x[k].clone(),
        None => XVal::Num((k + 1) as f64),
    }
}

pub(crate) fn category_label(x: &XVal) -> Option<String> {
    match x {
        XVal::Num(v) => Some(svg::number_label(*v)),
        XVal::Cat(s) => Some(s.clone()),
        XVal::Missing => None,
    }
}

/// Category labels in order of first appearance across the series.
pub(crate) fn categories(chart: &Chart) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in &chart.series {
        for k in 0..s.y.len() {
            if let Some(label) = category_label(&x_of(s, k))
                && seen.insert(label.clone())
            {
                labels.push(label);
            }
        }
    }
    labels
}

pub(crate) fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Bin edges over all series (Sturges' rule by default: ceil(log2 n) + 1
/// bins; the last bin is closed on the right) and the counts.
pub(crate) fn histogram(chart: &Chart) -> Histogram {
    let values = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.y.iter().flatten().copied())
    };
    let n = values().filter(|v| v.is_finite()).count();
    let bins = chart.bins.unwrap_or_else(|| {
        if n <= 1 {
            1
        } else {
            (n as f64).log2().ceil() as usize + 1
        }
    });
    let (lo, hi) = match finite_range(values()) {
        None => (0.0, 1.0),
        Some((lo, hi)) if lo == hi => (lo - 0.5, hi + 0.5),
        Some(range) => range,
    };
    let width = (hi - lo) / bins as f64;
    let edges: Vec<f64> = (0..=bins)
        .map(|k| if k == bins { hi } else { lo + k as f64 * width })
        .collect();
    let counts = chart
        .series
        .iter()
        .map(|s| {
            let mut counts = vec![0usize; bins];
            for v in s.y.iter().flatten().filter(|v| v.is_finite()) {
                let k = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
                counts[k] += 1;
            }
            counts
        })
        .collect();
    Histogram { edges, counts }
}

pub(crate) fn layout(chart: &Chart) -> Result<Layout, LogicError> {
    let width = f64::from(chart.width);
    let height = f64::from(chart.height);
    let longest = chart
        .series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let legend_width = (36.0 + CHAR_WIDTH * longest.min(24) as f64).min(width * 0.3);
    let legend_chars = (((legend_width - 36.0) / CHAR_WIDTH).floor() as usize).max(3);
    let frame = Frame {
        left: if chart.y_label.is_some() { 84.0 } else { 64.0 },
        right: width - 16.0 - legend_width,
        top: if chart.title.is_some() { 48.0 } else { 20.0 },
        bottom: height - if chart.x_label.is_some() { 58.0 } else { 40.0 },
    };

    if chart.kind == Kind::Histogram {
        let hist = histogram(chart);
        let max_count = hist.counts.iter().flatten().copied().max().unwrap_or(0);
        let lo = hist.edges[0];
        let hi = hist.edges[hist.edges.len() - 1];
        return Ok(Layout {
            frame,
            x_axis: XAxis::Numeric {
                ticks: svg::nice_ticks(lo, hi, 6),
                lo,
                hi,
            },
            y_ticks: svg::nice_ticks(0.0, max_count.max(1) as f64, 6),
            histogram: Some(hist),
            legend_chars,
        });
    }

    let y = finite_range(
        chart
            .series
            .iter()
            .flat_map(|s| s.y.iter().flatten().copied()),
    );
    let (y_lo, y_hi) = match (chart.kind, y) {
        (Kind::Bar, Some((lo, hi))) => (lo.min(0.0), hi.max(0.0)),
        (_, Some(range)) => range,
        (_, None) => (0.0, 1.0),
    };
    let has_text_x = |s: &Series| s.x.iter().flatten().any(|x| matches!(x, XVal::Cat(_)));
    if chart.kind == Kind::Scatter
        && let Some(i) = chart.series.iter().position(has_text_x)
    {
        return Err(invalid(format!(
            "series[{i}].x: a scatter chart needs numeric x values"
        )));
    }
    let x_axis = if chart.kind == Kind::Bar || chart.series.iter().any(has_text_x) {
        XAxis::Categories(categories(chart))
    } else {
        let xs = chart.series.iter().flat_map(|s| {
            (0..s.y.len()).filter_map(move |k| match x_of(s, k) {
                XVal::Num(v) => Some(v),
                _ => None,
            })
        });
        let (lo, hi) = finite_range(xs).unwrap_or((0.0, 1.0));
        let ticks = svg::nice_ticks(lo, hi, 8);
        XAxis::Numeric {
            lo: ticks.lo,
            hi: ticks.hi,
            ticks,
        }
    };
    Ok(Layout {
        frame,
        x_axis,
        y_ticks: svg::nice_ticks(y_lo, y_hi, 6),
        histogram: None,
        legend_chars,
    })
}
