//! Wet hours from an hourly forecast in the Open-Meteo shape
//! (`hourly.time[]`, `hourly.precipitation_probability[]`), the same shape
//! the `weather_forecast` capability returns.
//!
//! Each entry covers one hour from its time. With a project `start`, hour
//! offsets are the time difference to `start`; a forecast time without an
//! offset is read in the forecast's `utc_offset_seconds` (top level as in an
//! Open-Meteo response, or `location.utc_offset_seconds` as in the
//! `weather_forecast` output) when present, else in the offset of `start`. Without `start`, the first forecast hour is
//! hour 0. Times may also be Unix seconds (Open-Meteo `timeformat=unixtime`).
//! A `null` probability (no data) does not block the hour.

use serde_json::{Value, json};

use agentry_agent_kit::time::{self as common, Leniency, Timestamp};
use agentry_agent_kit::{Fields, LogicError, invalid, kind_of, num};

/// Default `max_precipitation_probability`, in percent.
pub(super) const DEFAULT_THRESHOLD: f64 = 50.0;

/// Hours (from the project start) that outdoor tasks must avoid.
#[derive(Debug)]
pub(super) struct Blocked {
    /// Sorted, disjoint, merged `[from, to)` intervals in project hours.
    pub(super) intervals: Vec<(f64, f64)>,
    /// End of the last forecast hour; beyond it the weather is unknown.
    pub(super) horizon_end: f64,
    horizon_start: f64,
    threshold: f64,
    forecast_hours: usize,
    wet_hours: usize,
}

impl Blocked {
    pub(super) fn parse(
        value: &Value,
        start: Option<Timestamp>,
        tol: f64,
    ) -> Result<Self, LogicError> {
        let f = Fields::of(
            value,
            "weather",
            &["forecast", "max_precipitation_probability"],
        )?;
        let threshold: f64 = f
            .opt("max_precipitation_probability")?
            .unwrap_or(DEFAULT_THRESHOLD);
        if !(0.0..=100.0).contains(&threshold) {
            return Err(invalid(format!(
                "weather.max_precipitation_probability: must be between 0 and 100, got {threshold}"
            )));
        }
        let forecast = f
            .raw("forecast")
            .ok_or_else(|| invalid("weather.forecast: required field is missing"))?;
        let forecast = forecast.as_object().ok_or_else(|| {
            invalid(format!(
                "weather.forecast: expected an object, found {}",
                kind_of(forecast)
            ))
        })?;
        // Open-Meteo puts the offset at the top level, `weather_forecast`
        // under `location`.
        let offset_at = [
            (
                "weather.forecast.utc_offset_seconds",
                forecast.get("utc_offset_seconds"),
            ),
            (
                "weather.forecast.location.utc_offset_seconds",
                forecast
                    .get("location")
                    .and_then(|l| l.get("utc_offset_seconds")),
            ),
        ];
        let mut offset_s = None;
        for (path, value) in offset_at {
            match value {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let seconds = v
                        .as_i64()
                        .and_then(|s| i32::try_from(s).ok())
                        .filter(|s| s.abs() <= 86_400)
                        .ok_or_else(|| invalid(format!("{path}: expected an integer offset")))?;
                    offset_s = offset_s.or(Some(seconds));
                }
            }
        }
        let hourly = forecast
            .get("hourly")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("weather.forecast.hourly: required object is missing"))?;
        let list = |key: &str| {
            hourly.get(key).and_then(Value::as_array).ok_or_else(|| {
                invalid(format!(
                    "weather.forecast.hourly.{key}: required array is missing"
                ))
            })
        };
        let times = list("time")?;
        let probabilities = list("precipitation_probability")?;
        if times.len() != probabilities.len() {
            return Err(invalid(format!(
                "weather.forecast.hourly.precipitation_probability: {} entries but time has {}",
                probabilities.len(),
                times.len()
            )));
        }

        let default_offset = offset_s.or(start.and_then(|s| s.offset_s)).unwrap_or(0);
        let mut instants = Vec::with_capacity(times.len());
        for (i, time) in times.iter().enumerate() {
            let utc_ms = match time {
                Value::String(text) => common::parse_datetime(text, Leniency::LocalAllowed)
                    .map(|t| t.utc_ms(default_offset)),
                Value::Number(n) => n.as_i64().and_then(|s| s.checked_mul(1000)),
                _ => None,
            }
            .ok_or_else(|| {
                invalid(format!(
                    "weather.forecast.hourly.time[{i}]: expected an ISO 8601 date-time \
                     (2025-03-03T08:00) or Unix seconds, got {time}"
                ))
            })?;
            instants.push(utc_ms);
        }
        let origin_ms = match (start, instants.first()) {
            (Some(start), _) => start.utc_ms(0),
            (None, Some(&first)) => first,
            (None, None) => 0,
        };

        let mut wet = Vec::new();
        let mut horizon_start = f64::INFINITY;
        let mut horizon_end = f64::NEG_INFINITY;
        for (i, (&utc_ms, probability)) in instants.iter().zip(probabilities).enumerate() {
            let hour = (utc_ms - origin_ms) as f64 / 3_600_000.0;
            horizon_start = horizon_start.min(hour);
            horizon_end = horizon_end.max(hour + 1.0);
            let p = match probability {
                Value::Null => continue,
                Value::Number(n) => n.as_f64().filter(|p| (0.0..=100.0).contains(p)),
                _ => None,
            }
            .ok_or_else(|| {
                invalid(format!(
                    "weather.forecast.hourly.precipitation_probability[{i}]: expected a number \
                     between 0 and 100 or null, got {probability}"
                ))
            })?;
            if p > threshold {
                wet.push((hour, hour + 1.0));
            }
        }
        let wet_hours = wet.len();
        wet.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut intervals: Vec<(f64, f64)> = Vec::with_capacity(wet.len());
        for (from, to) in wet {
            match intervals.last_mut() {
                Some(last) if from <= last.1 + tol => last.1 = last.1.max(to),
                _ => intervals.push((from, to)),
            }
        }
        if times.is_empty() {
            horizon_start = 0.0;
            horizon_end = 0.0;
        }
        Ok(Self {
            intervals,
            horizon_end,
            horizon_start,
            threshold,
            forecast_hours: times.len(),
            wet_hours,
        })
    }

    /// The end of the first wet interval overlapping `[start, finish)`.
    pub(super) fn first_overlap(&self, start: f64, finish: f64, tol: f64) -> Option<f64> {
        let k = self.intervals.partition_point(|iv| iv.1 <= start + tol);
        self.intervals
            .get(k)
            .filter(|iv| iv.0 < finish - tol)
            .map(|iv| iv.1)
    }

    /// What the output reports about the forecast.
    pub(super) fn summary(&self) -> Value {
        json!({
            "max_precipitation_probability": num(self.threshold),
            "forecast_hours": self.forecast_hours,
            "wet_hours": self.wet_hours,
            "horizon_start_h": num(self.horizon_start),
            "horizon_end_h": num(self.horizon_end),
        })
    }
}
