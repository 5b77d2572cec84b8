//! Vocabulary shared by the pure agent logic modules: the error type, input
//! readers whose errors name the offending field, JSON number helpers and a
//! small RFC 3339 date-time codec.
//!
//! Nothing here does I/O or reads the clock.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Why a capability refused its input.
///
/// Every variant is permanent: the same input fails the same way on every
/// attempt, so the runtime must not retry it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogicError {
    /// The input does not have the documented shape or violates a rule; the
    /// message names the field (`tasks[2].duration_h: must be > 0`).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The task graph has a dependency cycle; the ids are listed in
    /// precedence order and the first id is repeated at the end.
    #[error("invalid input: cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// The input exceeds a size guard (cells, points, tasks).
    #[error("input too large: {0}")]
    TooLarge(String),
}

impl LogicError {
    /// A short machine-readable code for the error payload of a failed task.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Cycle(_) => "cycle",
            Self::TooLarge(_) => "too_large",
        }
    }
}

/// Shorthand for an [`LogicError::InvalidInput`].
pub(crate) fn invalid(message: impl Into<String>) -> LogicError {
    LogicError::InvalidInput(message.into())
}

/// A JSON kind name for error messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the fields of one JSON object, prefixing every error with the
/// object's path so the caller sees `filter[1].op: unknown variant ...`.
pub(crate) struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Checks that `value` is an object with no fields outside `allowed`.
    /// `path` is empty for the input root.
    pub(crate) fn of(value: &'a Value, path: &str, allowed: &[&str]) -> Result<Self, LogicError> {
        let shown = if path.is_empty() { "input" } else { path };
        let map = value.as_object().ok_or_else(|| {
            invalid(format!(
                "{shown}: expected an object, found {}",
                kind_of(value)
            ))
        })?;
        if let Some(unknown) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
            return Err(invalid(format!(
                "{shown}: unknown field `{unknown}` (expected one of: {})",
                allowed.join(", ")
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            map,
        })
    }

    /// The path of a field of this object.
    pub(crate) fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of a field; an explicit `null` counts as absent.
    pub(crate) fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    /// An optional field, deserialized.
    pub(crate) fn opt<T: Deserialize<'a>>(&self, key: &str) -> Result<Option<T>, LogicError> {
        match self.raw(key) {
            None => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|err| invalid(format!("{}: {err}", self.path(key)))),
        }
    }

    /// A required field, deserialized.
    pub(crate) fn req<T: Deserialize<'a>>(&self, key: &str) -> Result<T, LogicError> {
        self.opt(key)?
            .ok_or_else(|| invalid(format!("{}: required field is missing", self.path(key))))
    }

    /// An optional array field, as a slice.
    pub(crate) fn array(&self, key: &str) -> Result<Option<&'a [Value]>, LogicError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(invalid(format!(
                "{}: expected an array, found {}",
                self.path(key),
                kind_of(other)
            ))),
        }
    }
}

/// A finite `f64` as a JSON number; NaN and infinities become `null`.
pub(crate) fn num(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// An optional `f64` as a JSON number or `null`.
pub(crate) fn opt_num(value: Option<f64>) -> Value {
    value.map_or(Value::Null, num)
}

/// A date-time reading: milliseconds of the wall clock since 1970-01-01T00:00
/// (as if it were UTC) and the UTC offset it was written with, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp {
    pub(crate) local_ms: i64,
    pub(crate) offset_s: Option<i32>,
}

impl Timestamp {
    /// Milliseconds since the Unix epoch, reading a missing offset as
    /// `default_offset_s`.
    pub(crate) fn utc_ms(&self, default_offset_s: i32) -> i64 {
        self.local_ms - i64::from(self.offset_s.unwrap_or(default_offset_s)) * 1000
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let shifted_month = if m > 2 { m - 3 } else { m + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both fit: day is 1..=31 and month 1..=12 by construction.
    (year, month as u32, day as u32)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0, |acc, b| acc * 10 + u32::from(b - b'0')),
    )
}

/// What [`parse_datetime`] accepts besides a full RFC 3339 date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leniency {
    /// Exactly RFC 3339 `date-time`: seconds and offset required.
    Rfc3339,
    /// Also a local time without offset, seconds optional
    /// (`2024-06-01T13:00`, as Open-Meteo writes), and a space separator.
    LocalAllowed,
    /// Also a bare date (`2024-06-01`, midnight).
    DateAllowed,
}

/// Parses `YYYY-MM-DD[Tt ]HH:MM[:SS[.fff]][Z|z|+HH:MM|-HH:MM]`, as far as
/// `leniency` allows. Fractions finer than a millisecond are truncated.
pub(crate) fn parse_datetime(text: &str, leniency: Leniency) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let date_ms = days_from_civil(year, month, day) * 86_400_000;
    if b.len() == 10 {
        return (leniency == Leniency::DateAllowed).then_some(Timestamp {
            local_ms: date_ms,
            offset_s: None,
        });
    }
    let separator_ok = match b[10] {
        b'T' | b't' => true,
        b' ' => leniency != Leniency::Rfc3339,
        _ => false,
    };
    if !separator_ok || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let mut pos = 16;
    let mut second = 0;
    let mut millis = 0;
    let mut has_seconds = false;
    if b.get(pos) == Some(&b':') {
        second = digits(b.get(pos + 1..pos + 3)?)?;
        pos += 3;
        has_seconds = true;
        if b.get(pos) == Some(&b'.') {
            let start = pos + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return None;
            }
            let kept = &b[start..end.min(start + 3)];
            let scale = 10_u32.pow(3 - u32::try_from(kept.len()).ok()?);
            millis = digits(kept)? * scale;
            pos = end;
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset_s = match b.get(pos) {
        None => None,
        Some(b'Z' | b'z') if pos + 1 == b.len() => Some(0),
        Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let oh = digits(&b[pos + 1..pos + 3])?;
            let om = digits(&b[pos + 4..pos + 6])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let magnitude = i32::try_from(oh * 3600 + om * 60).ok()?;
            Some(if *sign == b'-' { -magnitude } else { magnitude })
        }
        Some(_) => return None,
    };
    if leniency == Leniency::Rfc3339 && (offset_s.is_none() || !has_seconds) {
        return None;
    }
    let local_ms = date_ms
        + i64::from(hour) * 3_600_000
        + i64::from(minute) * 60_000
        + i64::from(second) * 1000
        + i64::from(millis);
    Some(Timestamp { local_ms, offset_s })
}

/// Formats an instant as RFC 3339 in the given UTC offset
/// (`2025-03-03T08:00:00+01:00`, `Z` for offset 0); milliseconds are shown
/// only when not zero.
pub(crate) fn format_rfc3339(utc_ms: i64, offset_s: i32) -> String {
    let local_ms = utc_ms + i64::from(offset_s) * 1000;
    let days = local_ms.div_euclid(86_400_000);
    let ms_of_day = local_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let hour = ms_of_day / 3_600_000;
    let minute = ms_of_day / 60_000 % 60;
    let second = ms_of_day / 1000 % 60;
    let millis = ms_of_day % 1000;
    let mut out = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if millis != 0 {
        out.push_str(&format!(".{millis:03}"));
    }
    if offset_s == 0 {
        out.push('Z');
    } else {
        let sign = if offset_s < 0 { '-' } else { '+' };
        let magnitude = offset_s.unsigned_abs();
        out.push_str(&format!(
            "{sign}{:02}:{:02}",
            magnitude / 3600,
            magnitude / 60 % 60
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn civil_round_trip_and_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for days in [-800_000, -1, 0, 59, 60, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn parses_rfc3339_and_open_meteo_times() {
        let t = parse_datetime("2024-02-29T13:45:10.25+02:00", Leniency::Rfc3339).unwrap();
        assert_eq!(t.offset_s, Some(7200));
        assert_eq!(
            t.utc_ms(0),
            days_from_civil(2024, 2, 29) * 86_400_000 + (11 * 3600 + 45 * 60 + 10) * 1000 + 250
        );
        assert!(parse_datetime("2024-06-01T13:00", Leniency::Rfc3339).is_none());
        let local = parse_datetime("2024-06-01T13:00", Leniency::LocalAllowed).unwrap();
        assert_eq!(local.offset_s, None);
        assert_eq!(local.utc_ms(3600), local.local_ms - 3_600_000);
        assert!(parse_datetime("2023-02-29T00:00:00Z", Leniency::Rfc3339).is_none());
        assert!(parse_datetime("2024-06-01", Leniency::LocalAllowed).is_none());
        assert!(parse_datetime("2024-06-01", Leniency::DateAllowed).is_some());
        assert!(parse_datetime("2024-06-01T24:00:00Z", Leniency::Rfc3339).is_none());
        assert!(parse_datetime("2024-06-01T10:00:00+0100", Leniency::Rfc3339).is_none());
    }

    #[test]
    fn formats_with_offset() {
        let t = parse_datetime("2025-03-03T08:00:00+01:00", Leniency::Rfc3339).unwrap();
        let utc = t.utc_ms(0);
        assert_eq!(format_rfc3339(utc, 3600), "2025-03-03T08:00:00+01:00");
        assert_eq!(format_rfc3339(utc, 0), "2025-03-03T07:00:00Z");
        assert_eq!(
            format_rfc3339(utc + 1500, -5400),
            "2025-03-03T05:30:01.500-01:30"
        );
    }

    #[test]
    fn fields_name_the_offending_path() {
        let value = serde_json::json!({"a": {"b": "x"}});
        let root = Fields::of(&value, "", &["a"]).unwrap();
        let inner = Fields::of(root.raw("a").unwrap(), &root.path("a"), &["b"]).unwrap();
        let err = inner.req::<f64>("b").unwrap_err();
        assert!(matches!(&err, LogicError::InvalidInput(m) if m.starts_with("a.b: invalid type")));
        let err = Fields::of(&value, "", &["z"]).err().unwrap();
        assert!(matches!(&err, LogicError::InvalidInput(m) if m.contains("unknown field `a`")));
        assert_eq!(
            LogicError::Cycle(vec!["a".into(), "b".into(), "a".into()]).to_string(),
            "invalid input: cycle: a -> b -> a"
        );
    }
}
