//! `visualization`: line, bar, scatter and histogram charts as standalone
//! SVG 1.1 documents.
//!
//! Every series is drawn inside one `<g class="series" data-series="NAME">`
//! (so clients and tests can count and find series); axes have "nice" ticks
//! and a light grid; a legend lists the series; all text is XML-escaped.
//! Series come either as `series: [{name, x?, y}]` or as `data` (records or
//! columns) with `columns` (the y columns) and optionally `x` (a column).
//! This file reads the input; `render.rs` draws.

use serde::Deserialize;
use serde_json::{Value, json};

use super::LogicError;
use super::render;
use super::table::{self, Cell};
use agentry_agent_kit::input::decode;
use agentry_agent_kit::{invalid, kind_of, num};

/// Size guards.
pub const MAX_POINTS: usize = 10_000;
pub const MAX_SERIES: usize = 50;
/// Default canvas size in pixels, and the allowed range of either side.
pub const DEFAULT_WIDTH: u32 = 800;
pub const DEFAULT_HEIGHT: u32 = 480;
const MIN_SIDE: u32 = 200;
const MAX_SIDE: u32 = 4000;
const MAX_BINS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Kind {
    Line,
    Bar,
    Scatter,
    Histogram,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Bar => "bar",
            Self::Scatter => "scatter",
            Self::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum XVal {
    Num(f64),
    Cat(String),
    Missing,
}

#[derive(Debug)]
pub(super) struct Series {
    pub(super) name: String,
    pub(super) x: Option<Vec<XVal>>,
    pub(super) y: Vec<Option<f64>>,
}

#[derive(Debug)]
pub(super) struct Chart {
    pub(super) kind: Kind,
    pub(super) title: Option<String>,
    pub(super) x_label: Option<String>,
    pub(super) y_label: Option<String>,
    pub(super) series: Vec<Series>,
    pub(super) bins: Option<usize>,
    pub(super) width: u32,
    pub(super) height: u32,
}

/// Renders a chart. See the module docs and
/// `schemas/capabilities/visualization.*.json`.
pub fn visualization(input: &Value) -> Result<Value, LogicError> {
    let chart = parse(input)?;
    let rendered = render::render(&chart)?;
    let mut out = json!({
        "content_type": "image/svg+xml",
        "series_count": chart.series.len(),
        "width": chart.width,
        "height": chart.height,
        "bytes": rendered.svg.len(),
    });
    if let Some(edges) = rendered.bin_edges {
        out["bin_edges"] = Value::Array(edges.into_iter().map(num).collect());
    }
    out["svg"] = Value::String(rendered.svg);
    Ok(out)
}

/// The `visualization` input (`schemas/capabilities/visualization.*.json`);
/// an explicit `null` counts as absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    chart: Kind,
    title: Option<String>,
    x_label: Option<String>,
    y_label: Option<String>,
    series: Option<Vec<SeriesInput>>,
    data: Option<Value>,
    columns: Option<Vec<String>>,
    x: Option<String>,
    bins: Option<usize>,
    width: Option<u32>,
    height: Option<u32>,
}

/// One `series` entry; its values are checked one by one (numbers, strings
/// or null) so that the error names the offending index.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesInput {
    name: Option<String>,
    x: Option<Vec<Value>>,
    y: Option<Vec<Value>>,
}

fn parse(input: &Value) -> Result<Chart, LogicError> {
    let root: Input = decode(input)?;
    let kind = root.chart;
    let side = |key: &str, value: Option<u32>, default: u32| -> Result<u32, LogicError> {
        let value = value.unwrap_or(default);
        if (MIN_SIDE..=MAX_SIDE).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(format!(
                "{key}: must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {value}"
            )))
        }
    };
    let width = side("width", root.width, DEFAULT_WIDTH)?;
    let height = side("height", root.height, DEFAULT_HEIGHT)?;
    let bins = root.bins;
    if let Some(b) = bins.filter(|b| !(1..=MAX_BINS).contains(b)) {
        return Err(invalid(format!(
            "bins: must be between 1 and {MAX_BINS}, got {b}"
        )));
    }
    let series = match (&root.series, &root.data) {
        (Some(_), Some(_)) => {
            return Err(invalid("series: give either `series` or `data`, not both"));
        }
        (Some(items), None) => parse_series(items)?,
        (None, Some(data)) => series_from_data(&root, data)?,
        (None, None) => {
            return Err(invalid(
                "series: required field is missing (or give `data`)",
            ));
        }
    };
    if series.is_empty() {
        return Err(invalid("series: at least one series is required"));
    }
    if series.len() > MAX_SERIES {
        return Err(LogicError::TooLarge(format!(
            "series: {} series, at most {MAX_SERIES} per chart",
            series.len()
        )));
    }
    let points: usize = series.iter().map(|s| s.y.len()).sum();
    if points > MAX_POINTS {
        return Err(LogicError::TooLarge(format!(
            "series: {points} points, at most {MAX_POINTS} per chart"
        )));
    }
    Ok(Chart {
        kind,
        title: root.title,
        x_label: root.x_label,
        y_label: root.y_label,
        series,
        bins,
        width,
        height,
    })
}

fn parse_series(items: &[SeriesInput]) -> Result<Vec<Series>, LogicError> {
    if items.len() > MAX_SERIES {
        return Err(LogicError::TooLarge(format!(
            "series: {} series, at most {MAX_SERIES} per chart",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut points = 0usize;
    for (i, item) in items.iter().enumerate() {
        let (x_path, y_path) = (format!("series[{i}].x"), format!("series[{i}].y"));
        let name = item
            .name
            .clone()
            .unwrap_or_else(|| format!("series {}", i + 1));
        let y_items = item
            .y
            .as_ref()
            .ok_or_else(|| invalid(format!("{y_path}: required field is missing")))?;
        points += y_items.len();
        if points > MAX_POINTS {
            return Err(LogicError::TooLarge(format!(
                "series: more than {MAX_POINTS} points per chart"
            )));
        }
        let y = y_items
            .iter()
            .enumerate()
            .map(|(k, v)| match v {
                Value::Null => Ok(None),
                Value::Number(n) => Ok(n.as_f64()),
                other => Err(invalid(format!(
                    "{y_path}[{k}]: expected a number or null, found {}",
                    kind_of(other)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let x = match &item.x {
            None => None,
            Some(x_items) => {
                if x_items.len() != y.len() {
                    return Err(invalid(format!(
                        "{x_path}: {} values but y has {}",
                        x_items.len(),
                        y.len()
                    )));
                }
                Some(
                    x_items
                        .iter()
                        .enumerate()
                        .map(|(k, v)| match v {
                            Value::Null => Ok(XVal::Missing),
                            Value::Number(n) => Ok(n.as_f64().map_or(XVal::Missing, XVal::Num)),
                            Value::String(s) => Ok(XVal::Cat(s.clone())),
                            other => Err(invalid(format!(
                                "{x_path}[{k}]: expected a number, a string or null, found {}",
                                kind_of(other)
                            ))),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                )
            }
        };
        out.push(Series { name, x, y });
    }
    Ok(out)
}

fn series_from_data(root: &Input, data: &Value) -> Result<Vec<Series>, LogicError> {
    let table = table::from_json(data, "data")?;
    let x_col = match &root.x {
        None => None,
        Some(name) => Some(table.column(name, "x")?),
    };
    let columns: Vec<usize> = match &root.columns {
        Some(names) => names
            .iter()
            .map(|name| {
                let c = table.column(name, "columns")?;
                if table.types[c].is_numeric() {
                    Ok(c)
                } else {
                    Err(invalid(format!(
                        "columns: column `{name}` is {}, not numeric",
                        table.types[c].name()
                    )))
                }
            })
            .collect::<Result<_, _>>()?,
        None => (0..table.names.len())
            .filter(|&c| Some(c) != x_col && table.types[c].is_numeric())
            .collect(),
    };
    if columns.is_empty() {
        return Err(invalid("columns: no numeric column to plot"));
    }
    let x = x_col.map(|c| {
        table.columns[c]
            .iter()
            .map(|cell| match cell {
                Cell::Null => XVal::Missing,
                Cell::Int(_) | Cell::Num(_) => cell.as_f64().map_or(XVal::Missing, XVal::Num),
                other => XVal::Cat(other.text()),
            })
            .collect::<Vec<_>>()
    });
    Ok(columns
        .into_iter()
        .map(|c| Series {
            name: table.names[c].clone(),
            x: x.clone(),
            y: table.columns[c].iter().map(Cell::as_f64).collect(),
        })
        .collect())
}
