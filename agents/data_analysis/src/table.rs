//! The tabular data model shared by the data-analysis capabilities: typed
//! cells in columns, per-column type inference, and parsing from CSV text,
//! JSON records (`[{...}, ...]`) or JSON columns (`{"col": [...], ...}`).
//!
//! Missing values: JSON `null`, an absent key, and the texts `""`, `NA`,
//! `N/A`, `null`, `NaN` (any case, surrounding blanks ignored).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::LogicError;
use agentry_agent_kit::time::{self as common, Leniency};
use agentry_agent_kit::{invalid, kind_of, num};

/// Size guard: at most this many cells (rows x columns) per input.
pub const MAX_CELLS: usize = 1_000_000;

/// One typed value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    /// A date-time: the instant (a missing offset read as UTC) and the text
    /// as given, which is what the output shows.
    Date {
        utc_ms: i64,
        text: String,
    },
}

/// The inferred type of a column (the type of all its non-missing values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColType {
    Integer,
    Number,
    Boolean,
    String,
    Datetime,
    /// Every value is missing.
    Null,
}

impl ColType {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::String => "string",
            Self::Datetime => "datetime",
            Self::Null => "null",
        }
    }

    pub(super) fn is_numeric(self) -> bool {
        matches!(self, Self::Integer | Self::Number)
    }
}

/// Columns of equal length.
#[derive(Debug, Clone)]
pub(super) struct Table {
    pub(super) names: Vec<String>,
    pub(super) types: Vec<ColType>,
    pub(super) columns: Vec<Vec<Cell>>,
    pub(super) rows: usize,
}

impl Table {
    /// Index of a column by name, or an error naming `path` and the known
    /// columns.
    pub(super) fn column(&self, name: &str, path: &str) -> Result<usize, LogicError> {
        self.names.iter().position(|n| n == name).ok_or_else(|| {
            invalid(format!(
                "{path}: unknown column `{name}` (columns: {})",
                self.names.join(", ")
            ))
        })
    }
}

impl Cell {
    pub(super) fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The value as a number, for numeric cells.
    pub(super) fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Num(x) => Some(*x),
            _ => None,
        }
    }

    pub(super) fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::from(*i),
            Self::Num(x) => num(*x),
            Self::Str(s) => Value::String(s.clone()),
            Self::Date { text, .. } => Value::String(text.clone()),
        }
    }

    /// The value as text (for `contains` and labels).
    pub(super) fn text(&self) -> String {
        match self {
            Self::Null => String::new(),
            Self::Bool(b) => b.to_string(),
            Self::Int(i) => i.to_string(),
            Self::Num(x) => x.to_string(),
            Self::Str(s) => s.clone(),
            Self::Date { text, .. } => text.clone(),
        }
    }

    fn class(&self) -> u8 {
        match self {
            Self::Null => 0,
            Self::Bool(_) => 1,
            Self::Int(_) | Self::Num(_) => 2,
            Self::Date { .. } => 3,
            Self::Str(_) => 4,
        }
    }

    /// A total order: null < booleans < numbers < date-times < strings;
    /// numbers by value, date-times by instant, strings by bytes.
    pub(super) fn total_cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Bool(a), Self::Bool(b)) => a.cmp(b),
            (Self::Int(a), Self::Int(b)) => a.cmp(b),
            (Self::Date { utc_ms: a, .. }, Self::Date { utc_ms: b, .. }) => a.cmp(b),
            (Self::Str(a), Self::Str(b)) => a.cmp(b),
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => a.class().cmp(&b.class()),
            },
        }
    }
}

/// Whether a text is one of the missing-value markers.
pub(super) fn is_missing_text(text: &str) -> bool {
    let t = text.trim();
    t.is_empty()
        || ["na", "n/a", "null", "nan"]
            .iter()
            .any(|m| t.eq_ignore_ascii_case(m))
}

fn looks_numeric(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
}

fn parse_number(text: &str) -> Option<f64> {
    if !looks_numeric(text) {
        return None;
    }
    text.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn parse_date(text: &str) -> Option<Cell> {
    common::parse_datetime(text, Leniency::DateAllowed).map(|t| Cell::Date {
        utc_ms: t.utc_ms(0),
        text: text.to_owned(),
    })
}

/// Infers the type of a column of texts (missing values already removed).
fn infer_texts<'a>(values: impl Iterator<Item = &'a str>) -> ColType {
    let (mut int, mut number, mut boolean, mut date, mut any) = (true, true, true, true, false);
    for v in values {
        any = true;
        int = int && v.parse::<i64>().is_ok();
        number = number && parse_number(v).is_some();
        boolean = boolean && parse_bool(v).is_some();
        date = date && common::parse_datetime(v, Leniency::DateAllowed).is_some();
        if !(int || number || boolean || date) {
            break;
        }
    }
    if !any {
        ColType::Null
    } else if int {
        ColType::Integer
    } else if number {
        ColType::Number
    } else if boolean {
        ColType::Boolean
    } else if date {
        ColType::Datetime
    } else {
        ColType::String
    }
}

fn text_cell(text: Option<&str>, ty: ColType) -> Cell {
    let Some(t) = text else {
        return Cell::Null;
    };
    let cell = match ty {
        ColType::Integer => t.parse().ok().map(Cell::Int),
        ColType::Number => parse_number(t).map(Cell::Num),
        ColType::Boolean => parse_bool(t).map(Cell::Bool),
        ColType::Datetime => parse_date(t),
        ColType::String | ColType::Null => None,
    };
    cell.unwrap_or_else(|| Cell::Str(t.to_owned()))
}

fn too_many_cells(path: &str) -> LogicError {
    LogicError::TooLarge(format!("{path}: more than {MAX_CELLS} cells"))
}

/// Parses CSV text. Fields are trimmed; every record must have as many
/// fields as the first one (the header when `has_header`).
pub(super) fn from_csv(
    text: &str,
    delimiter: u8,
    has_header: bool,
    path: &str,
) -> Result<Table, LogicError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut names: Option<Vec<String>> = None;
    let mut texts: Vec<Vec<Option<String>>> = Vec::new();
    let mut rows = 0usize;
    for record in reader.records() {
        let record = record.map_err(|err| invalid(format!("{path}: CSV error: {err}")))?;
        let line = record.position().map_or(0, |p| p.line());
        let expected = if let Some(width) = names.as_ref().map(Vec::len) {
            width
        } else {
            let header: Vec<String> = if has_header {
                record
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        if name.is_empty() {
                            format!("column_{}", i + 1)
                        } else {
                            name.to_owned()
                        }
                    })
                    .collect()
            } else {
                (1..=record.len()).map(|i| format!("column_{i}")).collect()
            };
            for (i, name) in header.iter().enumerate() {
                if let Some(j) = header[..i].iter().position(|n| n == name) {
                    return Err(invalid(format!(
                        "{path}: duplicate column name `{name}` in the CSV header (columns {} and {})",
                        j + 1,
                        i + 1
                    )));
                }
            }
            texts = vec![Vec::new(); header.len()];
            names = Some(header);
            if has_header {
                continue;
            }
            record.len()
        };
        if record.len() != expected {
            return Err(invalid(format!(
                "{path}: CSV line {line} has {} fields, expected {expected}",
                record.len()
            )));
        }
        rows += 1;
        if rows.saturating_mul(expected) > MAX_CELLS {
            return Err(too_many_cells(path));
        }
        for (column, field) in texts.iter_mut().zip(record.iter()) {
            column.push((!is_missing_text(field)).then(|| field.to_owned()));
        }
    }
    let names = names.ok_or_else(|| invalid(format!("{path}: the CSV text is empty")))?;
    let mut types = Vec::with_capacity(names.len());
    let mut columns = Vec::with_capacity(names.len());
    for column in &texts {
        let ty = infer_texts(column.iter().flatten().map(String::as_str));
        columns.push(column.iter().map(|t| text_cell(t.as_deref(), ty)).collect());
        types.push(ty);
    }
    Ok(Table {
        names,
        types,
        columns,
        rows,
    })
}

/// Parses JSON records: an array of objects; the columns are the keys in
/// order of first appearance (keys of one object in sorted order).
pub(super) fn from_records(items: &[Value], path: &str) -> Result<Table, LogicError> {
    let mut names: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let object = item.as_object().ok_or_else(|| {
            invalid(format!(
                "{path}[{i}]: expected an object, found {}",
                kind_of(item)
            ))
        })?;
        for key in object.keys() {
            if seen.insert(key.as_str()) {
                names.push(key.clone());
            }
        }
        if (i + 1).saturating_mul(names.len()) > MAX_CELLS {
            return Err(too_many_cells(path));
        }
    }
    let raw: Vec<Vec<Option<&Value>>> = names
        .iter()
        .map(|name| items.iter().map(|item| item.get(name)).collect())
        .collect();
    Ok(from_json_columns(names, &raw, items.len()))
}

/// Parses JSON columns: an object of equally long arrays.
pub(super) fn from_columns(object: &Map<String, Value>, path: &str) -> Result<Table, LogicError> {
    let mut names = Vec::with_capacity(object.len());
    let mut raw = Vec::with_capacity(object.len());
    let mut rows = None;
    let mut cells = 0usize;
    for (name, values) in object {
        let values = values.as_array().ok_or_else(|| {
            invalid(format!(
                "{path}.{name}: expected an array of values, found {}",
                kind_of(values)
            ))
        })?;
        match rows {
            None => rows = Some(values.len()),
            Some(n) if n != values.len() => {
                return Err(invalid(format!(
                    "{path}.{name}: has {} values but column `{}` has {n}",
                    values.len(),
                    names.first().map_or("", |s: &String| s.as_str())
                )));
            }
            Some(_) => {}
        }
        cells = cells.saturating_add(values.len());
        if cells > MAX_CELLS {
            return Err(too_many_cells(path));
        }
        names.push(name.clone());
        raw.push(values.iter().map(Some).collect::<Vec<_>>());
    }
    Ok(from_json_columns(names, &raw, rows.unwrap_or(0)))
}

/// Reads `data` given either as records or as columns.
pub(super) fn from_json(data: &Value, path: &str) -> Result<Table, LogicError> {
    match data {
        Value::Array(items) => from_records(items, path),
        Value::Object(object) => from_columns(object, path),
        other => Err(invalid(format!(
            "{path}: expected an array of records or an object of columns, found {}",
            kind_of(other)
        ))),
    }
}

fn json_missing(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => is_missing_text(s),
        Some(_) => false,
    }
}

fn infer_json(values: &[Option<&Value>]) -> ColType {
    let present = values.iter().filter(|v| !json_missing(**v)).flatten();
    let (mut int, mut number, mut boolean, mut date, mut any) = (true, true, true, true, false);
    for v in present {
        any = true;
        int = int && v.is_i64();
        number = number && v.is_number();
        boolean = boolean && v.is_boolean();
        date = date
            && v.as_str()
                .is_some_and(|s| common::parse_datetime(s, Leniency::DateAllowed).is_some());
    }
    if !any {
        ColType::Null
    } else if int {
        ColType::Integer
    } else if number {
        ColType::Number
    } else if boolean {
        ColType::Boolean
    } else if date {
        ColType::Datetime
    } else {
        ColType::String
    }
}

fn json_cell(value: Option<&Value>, ty: ColType) -> Cell {
    if json_missing(value) {
        return Cell::Null;
    }
    let Some(v) = value else {
        return Cell::Null;
    };
    let cell = match ty {
        ColType::Integer => v.as_i64().map(Cell::Int),
        ColType::Number => v.as_f64().map(Cell::Num),
        ColType::Boolean => v.as_bool().map(Cell::Bool),
        ColType::Datetime => v.as_str().and_then(parse_date),
        ColType::String | ColType::Null => None,
    };
    cell.unwrap_or_else(|| match v {
        Value::String(s) => Cell::Str(s.clone()),
        other => Cell::Str(other.to_string()),
    })
}

fn from_json_columns(names: Vec<String>, raw: &[Vec<Option<&Value>>], rows: usize) -> Table {
    let mut types = Vec::with_capacity(names.len());
    let mut columns = Vec::with_capacity(names.len());
    for values in raw {
        let ty = infer_json(values);
        columns.push(values.iter().map(|v| json_cell(*v, ty)).collect());
        types.push(ty);
    }
    Table {
        names,
        types,
        columns,
        rows,
    }
}
