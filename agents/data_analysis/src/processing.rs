//! `data_processing`: parse CSV or JSON, infer column types, handle missing
//! values, filter, group and aggregate.
//!
//! Order of operations: parse -> profile the columns (types, missing,
//! distinct; always of the input as given) -> missing-value handling ->
//! filters (all must hold) -> grouping and aggregates -> `limit`.

use std::cmp::Ordering;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::LogicError;
use super::numeric::{self, Moments};
use super::table::{self, Cell, ColType, Table};
use agentry_agent_kit::input::decode;
use agentry_agent_kit::time::{self as common, Leniency};
use agentry_agent_kit::{invalid, kind_of, num, opt_num};

/// Default and maximum of `limit`.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Format {
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Missing {
    Keep,
    Drop,
    FillMean,
    FillZero,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IsNull,
    NotNull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AggFn {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    Median,
    Std,
}

impl AggFn {
    fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Mean => "mean",
            Self::Min => "min",
            Self::Max => "max",
            Self::Median => "median",
            Self::Std => "std",
        }
    }
}

/// A filter operand, typed for its column.
#[derive(Debug, Clone)]
enum Operand {
    None,
    Num(f64),
    Bool(bool),
    Text(String),
    Date(i64),
}

#[derive(Debug)]
struct Predicate {
    column: usize,
    op: Op,
    operand: Operand,
}

#[derive(Debug)]
struct Aggregate {
    column: Option<usize>,
    func: AggFn,
    output: String,
}

/// The `data_processing` input (`schemas/capabilities/data_processing.*.json`);
/// an explicit `null` counts as absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    format: Option<Format>,
    data: Option<Value>,
    delimiter: Option<String>,
    has_header: Option<bool>,
    filter: Option<Vec<FilterInput>>,
    group_by: Option<Vec<String>>,
    aggregates: Option<Vec<AggregateInput>>,
    missing: Option<Missing>,
    limit: Option<usize>,
}

/// One `filter` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterInput {
    column: String,
    op: Op,
    value: Option<Value>,
}

/// One `aggregates` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregateInput {
    column: Option<String>,
    #[serde(rename = "fn")]
    func: AggFn,
    #[serde(rename = "as")]
    output: Option<String>,
}

/// Processes a data set. See the module docs and
/// `schemas/capabilities/data_processing.*.json`.
pub fn data_processing(input: &Value) -> Result<Value, LogicError> {
    let root: Input = decode(input)?;
    let data = root
        .data
        .as_ref()
        .ok_or_else(|| invalid("data: required field is missing"))?;
    let format = root.format.unwrap_or(match data {
        Value::String(_) => Format::Csv,
        _ => Format::Json,
    });
    let mut table = match (format, data) {
        (Format::Csv, Value::String(text)) => {
            let delimiter = delimiter(root.delimiter.clone())?;
            let has_header = root.has_header.unwrap_or(true);
            table::from_csv(text, delimiter, has_header, "data")?
        }
        (Format::Csv, other) => {
            return Err(invalid(format!(
                "data: format `csv` expects CSV text (a string), found {}",
                kind_of(other)
            )));
        }
        (Format::Json, Value::String(text)) => {
            let parsed: Value = serde_json::from_str(text)
                .map_err(|err| invalid(format!("data: not valid JSON: {err}")))?;
            table::from_json(&parsed, "data")?
        }
        (Format::Json, other) => table::from_json(other, "data")?,
    };
    let limit: usize = root.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(invalid(format!("limit: at most {MAX_LIMIT}, got {limit}")));
    }
    let missing = root.missing.unwrap_or(Missing::Keep);
    let predicates = parse_filters(root.filter.unwrap_or_default(), &table)?;
    let group_by = match root.group_by {
        None => Vec::new(),
        Some(names) => names
            .iter()
            .map(|name| table.column(name, "group_by"))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let aggregates = parse_aggregates(root.aggregates.unwrap_or_default(), &table)?;

    let profile = profile(&table);

    // Missing values.
    let mut kept: Vec<usize> = (0..table.rows).collect();
    let mut dropped_rows = 0;
    match missing {
        Missing::Keep => {}
        Missing::Drop => {
            kept.retain(|&row| table.columns.iter().all(|column| !column[row].is_null()));
            dropped_rows = table.rows - kept.len();
        }
        Missing::FillMean | Missing::FillZero => fill(&mut table, missing == Missing::FillMean),
    }

    // Filters.
    let before = kept.len();
    kept.retain(|&row| {
        predicates
            .iter()
            .all(|p| holds(p, &table.columns[p.column][row]))
    });
    let filtered_rows = before - kept.len();

    let mut out = Map::new();
    out.insert("columns".into(), Value::Array(profile));
    out.insert("input_rows".into(), json!(table.rows));
    out.insert("row_count".into(), json!(kept.len()));
    out.insert("dropped_rows".into(), json!(dropped_rows));
    out.insert("filtered_rows".into(), json!(filtered_rows));
    let rows: Vec<Value> = kept
        .iter()
        .take(limit)
        .map(|&row| {
            let object: Map<String, Value> = table
                .names
                .iter()
                .zip(&table.columns)
                .map(|(name, column)| (name.clone(), column[row].to_json()))
                .collect();
            Value::Object(object)
        })
        .collect();
    out.insert("truncated".into(), json!(kept.len() > rows.len()));
    out.insert("rows".into(), Value::Array(rows));
    if !group_by.is_empty() || !aggregates.is_empty() {
        let groups = group(&table, &kept, &group_by, &aggregates);
        out.insert("group_count".into(), json!(groups.len()));
        out.insert(
            "groups".into(),
            Value::Array(groups.into_iter().take(limit).collect()),
        );
    }
    Ok(Value::Object(out))
}

fn delimiter(given: Option<String>) -> Result<u8, LogicError> {
    let Some(text) = given else {
        return Ok(b',');
    };
    if text.eq_ignore_ascii_case("tab") || text == "\\t" {
        return Ok(b'\t');
    }
    match text.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => Ok(*b),
        _ => Err(invalid(format!(
            "delimiter: expected a single ASCII character (or \"tab\"), got `{text}`"
        ))),
    }
}

fn profile(table: &Table) -> Vec<Value> {
    table
        .names
        .iter()
        .zip(&table.types)
        .zip(&table.columns)
        .map(|((name, ty), column)| {
            let mut present: Vec<&Cell> = column.iter().filter(|c| !c.is_null()).collect();
            let missing = column.len() - present.len();
            present.sort_by(|a, b| a.total_cmp(b));
            present.dedup_by(|a, b| a.total_cmp(b) == Ordering::Equal);
            json!({"name": name, "type": ty.name(), "missing": missing, "distinct": present.len()})
        })
        .collect()
}

/// Fills missing cells of numeric columns with the column mean or zero;
/// other columns keep their missing cells.
fn fill(table: &mut Table, with_mean: bool) {
    for (ty, column) in table.types.iter().zip(table.columns.iter_mut()) {
        if !ty.is_numeric() {
            continue;
        }
        let value = if with_mean {
            let present: Vec<f64> = column.iter().filter_map(Cell::as_f64).collect();
            match numeric::mean(&present) {
                // An integral mean of an integer column stays an integer.
                Some(m) if *ty == ColType::Integer && m.fract() == 0.0 && m.abs() < 9e15 => {
                    Cell::Int(m as i64)
                }
                Some(m) => Cell::Num(m),
                None => continue,
            }
        } else if *ty == ColType::Integer {
            Cell::Int(0)
        } else {
            Cell::Num(0.0)
        };
        for cell in column.iter_mut().filter(|c| c.is_null()) {
            *cell = value.clone();
        }
    }
}

fn parse_filters(items: Vec<FilterInput>, table: &Table) -> Result<Vec<Predicate>, LogicError> {
    let mut predicates = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("filter[{i}]");
        let column = table.column(&item.column, &format!("{path}.column"))?;
        let op = item.op;
        let ty = table.types[column];
        let value = item.value.as_ref();
        let value_path = format!("{path}.value");
        let operand = match op {
            Op::IsNull | Op::NotNull => Operand::None,
            Op::Contains => match value {
                Some(Value::String(s)) => Operand::Text(s.clone()),
                _ => {
                    return Err(invalid(format!(
                        "{value_path}: `contains` needs a string value"
                    )));
                }
            },
            _ => {
                let value = value.ok_or_else(|| {
                    invalid(format!("{value_path}: required for op `{}`", op_name(op)))
                })?;
                operand_for(value, ty, &item.column, &value_path)?
            }
        };
        predicates.push(Predicate {
            column,
            op,
            operand,
        });
    }
    Ok(predicates)
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "eq",
        Op::Ne => "ne",
        Op::Lt => "lt",
        Op::Le => "le",
        Op::Gt => "gt",
        Op::Ge => "ge",
        Op::Contains => "contains",
        Op::IsNull => "is_null",
        Op::NotNull => "not_null",
    }
}

fn operand_for(
    value: &Value,
    ty: ColType,
    column: &str,
    path: &str,
) -> Result<Operand, LogicError> {
    let mismatch = |expected: &str| {
        invalid(format!(
            "{path}: column `{column}` is {}; expected {expected}, got {value}",
            ty.name()
        ))
    };
    Ok(match ty {
        ColType::Integer | ColType::Number => match value {
            Value::Number(n) => Operand::Num(n.as_f64().ok_or_else(|| mismatch("a number"))?),
            Value::String(s) => Operand::Num(
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| mismatch("a number"))?,
            ),
            _ => return Err(mismatch("a number")),
        },
        ColType::Boolean => match value {
            Value::Bool(b) => Operand::Bool(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Operand::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Operand::Bool(false),
            _ => return Err(mismatch("true or false")),
        },
        ColType::Datetime => match value {
            Value::String(s) => Operand::Date(
                common::parse_datetime(s, Leniency::DateAllowed)
                    .ok_or_else(|| mismatch("a date or date-time"))?
                    .utc_ms(0),
            ),
            _ => return Err(mismatch("a date or date-time")),
        },
        ColType::String | ColType::Null => match value {
            Value::String(s) => Operand::Text(s.clone()),
            Value::Number(_) | Value::Bool(_) => Operand::Text(value.to_string()),
            _ => return Err(mismatch("a string")),
        },
    })
}

fn compare(cell: &Cell, operand: &Operand) -> Option<Ordering> {
    match operand {
        Operand::Num(x) => cell.as_f64().and_then(|v| v.partial_cmp(x)),
        Operand::Bool(b) => match cell {
            Cell::Bool(v) => Some(v.cmp(b)),
            _ => None,
        },
        Operand::Date(ms) => match cell {
            Cell::Date { utc_ms, .. } => Some(utc_ms.cmp(ms)),
            _ => None,
        },
        Operand::Text(t) => match cell {
            Cell::Null => None,
            other => Some(other.text().as_str().cmp(t.as_str())),
        },
        Operand::None => None,
    }
}

/// Whether a cell passes a predicate; a missing cell passes only `is_null`.
fn holds(p: &Predicate, cell: &Cell) -> bool {
    match p.op {
        Op::IsNull => cell.is_null(),
        Op::NotNull => !cell.is_null(),
        Op::Contains => match (&p.operand, cell) {
            (_, Cell::Null) => false,
            (Operand::Text(t), c) => c.text().contains(t.as_str()),
            _ => false,
        },
        op => compare(cell, &p.operand).is_some_and(|ord| match op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            _ => false,
        }),
    }
}

fn parse_aggregates(
    items: Vec<AggregateInput>,
    table: &Table,
) -> Result<Vec<Aggregate>, LogicError> {
    let mut aggregates: Vec<Aggregate> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("aggregates[{i}]");
        let column_path = format!("{path}.column");
        let func = item.func;
        let name = item.column;
        let column = match &name {
            None if func == AggFn::Count => None,
            None => {
                return Err(invalid(format!(
                    "{column_path}: required for `{}`",
                    func.name()
                )));
            }
            Some(name) => Some(table.column(name, &column_path)?),
        };
        if let Some(c) = column {
            let ty = table.types[c];
            let numeric_only =
                matches!(func, AggFn::Sum | AggFn::Mean | AggFn::Median | AggFn::Std);
            if numeric_only && !(ty.is_numeric() || ty == ColType::Null) {
                return Err(invalid(format!(
                    "{column_path}: column `{}` is {}; `{}` needs a numeric column",
                    table.names[c],
                    ty.name(),
                    func.name()
                )));
            }
        }
        let output = match (item.output, &name) {
            (Some(alias), _) => alias,
            (None, Some(column)) => format!("{}_{column}", func.name()),
            (None, None) => "count".to_owned(),
        };
        if aggregates.iter().any(|a| a.output == output) {
            return Err(invalid(format!(
                "{path}: duplicate output name `{output}` (set `as`)"
            )));
        }
        aggregates.push(Aggregate {
            column,
            func,
            output,
        });
    }
    Ok(aggregates)
}

fn group(table: &Table, kept: &[usize], keys: &[usize], aggregates: &[Aggregate]) -> Vec<Value> {
    let mut rows = kept.to_vec();
    let key_cmp = |a: usize, b: usize| {
        keys.iter()
            .map(|&c| table.columns[c][a].total_cmp(&table.columns[c][b]))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    };
    rows.sort_by(|&a, &b| key_cmp(a, b));
    let mut groups = Vec::new();
    for members in rows.chunk_by(|&a, &b| key_cmp(a, b) == Ordering::Equal) {
        let Some(&first) = members.first() else {
            continue;
        };
        let key: Map<String, Value> = keys
            .iter()
            .map(|&c| (table.names[c].clone(), table.columns[c][first].to_json()))
            .collect();
        let values: Map<String, Value> = aggregates
            .iter()
            .map(|a| (a.output.clone(), aggregate(table, members, a)))
            .collect();
        groups.push(json!({"key": key, "count": members.len(), "values": values}));
    }
    groups
}

fn aggregate(table: &Table, members: &[usize], a: &Aggregate) -> Value {
    let Some(c) = a.column else {
        return json!(members.len());
    };
    let cells = || {
        members
            .iter()
            .map(move |&row| &table.columns[c][row])
            .filter(|cell| !cell.is_null())
    };
    let numbers = || cells().filter_map(Cell::as_f64).collect::<Vec<f64>>();
    match a.func {
        AggFn::Count => json!(cells().count()),
        AggFn::Sum => {
            let exact: Option<i128> = cells().try_fold(0_i128, |acc, cell| match cell {
                Cell::Int(i) => Some(acc + i128::from(*i)),
                _ => None,
            });
            match exact.and_then(|s| i64::try_from(s).ok()) {
                Some(total) => json!(total),
                None => num(numeric::sum(numbers())),
            }
        }
        AggFn::Mean => opt_num(numeric::mean(&numbers())),
        AggFn::Min => cells()
            .min_by(|x, y| x.total_cmp(y))
            .map_or(Value::Null, Cell::to_json),
        AggFn::Max => cells()
            .max_by(|x, y| x.total_cmp(y))
            .map_or(Value::Null, Cell::to_json),
        AggFn::Median => opt_num(numeric::quantile_sorted(&numeric::sorted(&numbers()), 0.5)),
        AggFn::Std => opt_num(Moments::of(&numbers()).and_then(|m| m.std())),
    }
}
