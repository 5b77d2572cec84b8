//! Open-Meteo wire types (what the API sends) and the normalised capability
//! outputs (what the agent returns; `schemas/capabilities/weather_*.output.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::Malformed;
use super::input::Units;
use super::wmo;
use super::{Endpoint, WeatherError};

// ---------------------------------------------------------------- wire types

/// `GET /v1/search`: `results` is absent when nothing matched.
#[derive(Debug, Deserialize)]
pub(crate) struct GeocodingResponse {
    #[serde(default)]
    pub results: Option<Vec<GeocodingResult>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GeocodingResult {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub country_code: Option<String>,
    #[serde(default)]
    pub admin1: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
}

/// `GET /v1/forecast`; blocks not asked for are absent. The grid cell's
/// `latitude`/`longitude` are not used: outputs report the point asked for.
#[derive(Debug, Deserialize)]
pub(crate) struct ForecastResponse {
    pub timezone: String,
    #[serde(default)]
    pub utc_offset_seconds: i64,
    #[serde(default)]
    pub elevation: Option<f64>,
    #[serde(default)]
    pub current_units: BTreeMap<String, String>,
    #[serde(default)]
    pub current: Option<CurrentBlock>,
    #[serde(default)]
    pub hourly_units: BTreeMap<String, String>,
    #[serde(default)]
    pub hourly: Option<HourlyBlock>,
    #[serde(default)]
    pub daily_units: BTreeMap<String, String>,
    #[serde(default)]
    pub daily: Option<DailyBlock>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CurrentBlock {
    pub time: String,
    pub temperature_2m: Option<f64>,
    pub relative_humidity_2m: Option<f64>,
    pub apparent_temperature: Option<f64>,
    pub precipitation: Option<f64>,
    pub weather_code: Option<f64>,
    pub wind_speed_10m: Option<f64>,
    pub wind_direction_10m: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HourlyBlock {
    pub time: Vec<String>,
    pub temperature_2m: Vec<Option<f64>>,
    pub precipitation_probability: Vec<Option<f64>>,
    pub precipitation: Vec<Option<f64>>,
    pub weather_code: Vec<Option<f64>>,
    pub wind_speed_10m: Vec<Option<f64>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DailyBlock {
    pub time: Vec<String>,
    pub weather_code: Vec<Option<f64>>,
    pub temperature_2m_max: Vec<Option<f64>>,
    pub temperature_2m_min: Vec<Option<f64>>,
    pub precipitation_sum: Vec<Option<f64>>,
    pub precipitation_probability_max: Vec<Option<f64>>,
}

/// Variables requested from `/v1/forecast`, in the order sent.
pub(crate) const CURRENT_VARS: &str = "temperature_2m,relative_humidity_2m,apparent_temperature,precipitation,weather_code,wind_speed_10m,wind_direction_10m";
pub(crate) const HOURLY_VARS: &str =
    "temperature_2m,precipitation_probability,precipitation,weather_code,wind_speed_10m";
pub(crate) const DAILY_VARS: &str = "weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum,precipitation_probability_max";

// ---------------------------------------------------------------- outputs

/// Where the weather is for. `name`, `country`, `country_code` and `admin1`
/// are null for a coordinates query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub name: Option<String>,
    pub country: Option<String>,
    pub country_code: Option<String>,
    /// First-level region (state, province), when geocoding knows it.
    pub admin1: Option<String>,
    /// The point asked for (the geocoded city, or the given coordinates).
    pub latitude: f64,
    pub longitude: f64,
    /// IANA zone of the location; every `time` in the output is local to it.
    pub timezone: String,
    /// Offset of those local times from UTC.
    pub utc_offset_seconds: i64,
    /// Metres above sea level of the model cell, when reported.
    pub elevation: Option<f64>,
}

/// Unit labels as Open-Meteo reports them (e.g. `°C`/`°F`, `km/h`/`mp/h`, `mm`/`inch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentUnits {
    pub system: Units,
    pub temperature: String,
    pub apparent_temperature: String,
    pub humidity: String,
    pub precipitation: String,
    pub wind_speed: String,
    pub wind_direction: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Current {
    /// Local time, ISO 8601 without offset (`2026-01-15T13:00`), 15-minute steps.
    pub time: String,
    pub temperature: Option<f64>,
    pub apparent_temperature: Option<f64>,
    /// Relative humidity at 2 m, percent.
    pub humidity: Option<i64>,
    /// Precipitation of the preceding interval.
    pub precipitation: Option<f64>,
    pub wind_speed: Option<f64>,
    /// Degrees the wind comes from (0 = north).
    pub wind_direction: Option<i64>,
    pub weather_code: Option<i64>,
    pub description: Option<String>,
}

/// Output of `weather_current`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentOutput {
    pub location: Location,
    pub units: CurrentUnits,
    pub current: Current,
    /// Host (and port, if not the default) of the forecast API that answered.
    pub source: String,
    /// True when the answer came from the bundled offline fixture.
    pub fixture: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastUnits {
    pub system: Units,
    pub temperature: String,
    pub precipitation: String,
    pub precipitation_probability: String,
    pub wind_speed: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// Local date, `YYYY-MM-DD`.
    pub date: String,
    pub temp_max: Option<f64>,
    pub temp_min: Option<f64>,
    pub precipitation_sum: Option<f64>,
    /// Percent.
    pub precipitation_probability_max: Option<i64>,
    /// Most severe condition of the day.
    pub weather_code: Option<i64>,
    pub description: Option<String>,
}

/// Hourly series, index-aligned with `time` (local, `YYYY-MM-DDTHH:MM`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hourly {
    pub time: Vec<String>,
    pub temperature: Vec<Option<f64>>,
    /// Percent.
    pub precipitation_probability: Vec<Option<i64>>,
    pub precipitation: Vec<Option<f64>>,
    pub weather_code: Vec<Option<i64>>,
    pub wind_speed: Vec<Option<f64>>,
}

/// Output of `weather_forecast`. `hourly` is absent when the input said `hourly: false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastOutput {
    pub location: Location,
    pub units: ForecastUnits,
    pub daily: Vec<Day>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hourly: Option<Hourly>,
    pub source: String,
    pub fixture: bool,
}

// ---------------------------------------------------------------- normalisation

/// What geocoding resolved (or the coordinates given), before the forecast call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Resolved {
    pub name: Option<String>,
    pub country: Option<String>,
    pub country_code: Option<String>,
    pub admin1: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
}

impl From<GeocodingResult> for Resolved {
    fn from(r: GeocodingResult) -> Self {
        Self {
            name: Some(r.name),
            country: r.country,
            country_code: r.country_code,
            admin1: r.admin1,
            latitude: r.latitude,
            longitude: r.longitude,
        }
    }
}

fn location(place: Resolved, raw: &ForecastResponse) -> Location {
    Location {
        name: place.name,
        country: place.country,
        country_code: place.country_code,
        admin1: place.admin1,
        latitude: place.latitude,
        longitude: place.longitude,
        timezone: raw.timezone.clone(),
        utc_offset_seconds: raw.utc_offset_seconds,
        elevation: raw.elevation,
    }
}

fn label(units: &BTreeMap<String, String>, key: &str, fallback: &str) -> String {
    units
        .get(key)
        .cloned()
        .unwrap_or_else(|| fallback.to_owned())
}

/// WMO codes, humidity, directions and probabilities are integers on the wire.
fn int(v: Option<f64>) -> Option<i64> {
    v.filter(|x| x.is_finite()).map(|x| x.round() as i64)
}

fn describe(code: Option<i64>) -> Option<String> {
    code.map(|c| wmo::describe(c).to_owned())
}

fn missing(block: &'static str) -> WeatherError {
    WeatherError::Decode {
        endpoint: Endpoint::Forecast,
        source: Malformed::Missing(block),
    }
}

fn check_len<T>(
    block: &'static str,
    name: &'static str,
    v: &[T],
    expected: usize,
) -> Result<(), WeatherError> {
    if v.len() == expected {
        Ok(())
    } else {
        Err(WeatherError::Decode {
            endpoint: Endpoint::Forecast,
            source: Malformed::Length {
                block,
                name,
                got: v.len(),
                expected,
            },
        })
    }
}

pub(crate) fn current_output(
    place: Resolved,
    raw: ForecastResponse,
    units: Units,
    source: String,
    fixture: bool,
) -> Result<CurrentOutput, WeatherError> {
    let (t, w, p) = units.labels();
    let u = &raw.current_units;
    let units = CurrentUnits {
        system: units,
        temperature: label(u, "temperature_2m", t),
        apparent_temperature: label(u, "apparent_temperature", t),
        humidity: label(u, "relative_humidity_2m", "%"),
        precipitation: label(u, "precipitation", p),
        wind_speed: label(u, "wind_speed_10m", w),
        wind_direction: label(u, "wind_direction_10m", "°"),
    };
    let location = location(place, &raw);
    let c = raw.current.ok_or_else(|| missing("current"))?;
    let weather_code = int(c.weather_code);
    Ok(CurrentOutput {
        location,
        units,
        current: Current {
            time: c.time,
            temperature: c.temperature_2m,
            apparent_temperature: c.apparent_temperature,
            humidity: int(c.relative_humidity_2m),
            precipitation: c.precipitation,
            wind_speed: c.wind_speed_10m,
            wind_direction: int(c.wind_direction_10m),
            weather_code,
            description: describe(weather_code),
        },
        source,
        fixture,
    })
}

pub(crate) fn forecast_output(
    place: Resolved,
    raw: ForecastResponse,
    units: Units,
    want_hourly: bool,
    source: String,
    fixture: bool,
) -> Result<ForecastOutput, WeatherError> {
    let (t, w, p) = units.labels();
    let units = ForecastUnits {
        system: units,
        temperature: label(&raw.daily_units, "temperature_2m_max", t),
        precipitation: label(&raw.daily_units, "precipitation_sum", p),
        precipitation_probability: label(&raw.daily_units, "precipitation_probability_max", "%"),
        wind_speed: label(&raw.hourly_units, "wind_speed_10m", w),
    };
    let location = location(place, &raw);

    let d = raw.daily.ok_or_else(|| missing("daily"))?;
    let n = d.time.len();
    check_len("daily", "weather_code", &d.weather_code, n)?;
    check_len("daily", "temperature_2m_max", &d.temperature_2m_max, n)?;
    check_len("daily", "temperature_2m_min", &d.temperature_2m_min, n)?;
    check_len("daily", "precipitation_sum", &d.precipitation_sum, n)?;
    check_len(
        "daily",
        "precipitation_probability_max",
        &d.precipitation_probability_max,
        n,
    )?;
    let daily = d
        .time
        .into_iter()
        .enumerate()
        .map(|(i, date)| {
            let weather_code = int(d.weather_code[i]);
            Day {
                date,
                temp_max: d.temperature_2m_max[i],
                temp_min: d.temperature_2m_min[i],
                precipitation_sum: d.precipitation_sum[i],
                precipitation_probability_max: int(d.precipitation_probability_max[i]),
                weather_code,
                description: describe(weather_code),
            }
        })
        .collect();

    let hourly = if want_hourly {
        let h = raw.hourly.ok_or_else(|| missing("hourly"))?;
        let n = h.time.len();
        check_len("hourly", "temperature_2m", &h.temperature_2m, n)?;
        check_len(
            "hourly",
            "precipitation_probability",
            &h.precipitation_probability,
            n,
        )?;
        check_len("hourly", "precipitation", &h.precipitation, n)?;
        check_len("hourly", "weather_code", &h.weather_code, n)?;
        check_len("hourly", "wind_speed_10m", &h.wind_speed_10m, n)?;
        Some(Hourly {
            time: h.time,
            temperature: h.temperature_2m,
            precipitation_probability: h.precipitation_probability.into_iter().map(int).collect(),
            precipitation: h.precipitation,
            weather_code: h.weather_code.into_iter().map(int).collect(),
            wind_speed: h.wind_speed_10m,
        })
    } else {
        None
    };

    Ok(ForecastOutput {
        location,
        units,
        daily,
        hourly,
        source,
        fixture,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn place() -> Resolved {
        Resolved {
            name: Some("Berlin".into()),
            country: Some("Germany".into()),
            country_code: Some("DE".into()),
            admin1: Some("Berlin".into()),
            latitude: 52.52437,
            longitude: 13.41053,
        }
    }

    /// Shape taken from Open-Meteo's documented response, values by hand.
    #[test]
    fn normalises_a_forecast_response() {
        let raw: ForecastResponse = serde_json::from_value(json!({
            "latitude": 52.52, "longitude": 13.419998, "generationtime_ms": 0.1,
            "utc_offset_seconds": 3600, "timezone": "Europe/Berlin",
            "timezone_abbreviation": "GMT+1", "elevation": 38.0,
            "hourly_units": {"time": "iso8601", "temperature_2m": "°C", "precipitation_probability": "%",
                             "precipitation": "mm", "weather_code": "wmo code", "wind_speed_10m": "km/h"},
            "hourly": {"time": ["2026-01-15T00:00", "2026-01-15T01:00"],
                       "temperature_2m": [1.5, null], "precipitation_probability": [10, 20],
                       "precipitation": [0.0, 0.3], "weather_code": [3, 61], "wind_speed_10m": [12.0, 14.2]},
            "daily_units": {"time": "iso8601", "weather_code": "wmo code", "temperature_2m_max": "°C",
                            "temperature_2m_min": "°C", "precipitation_sum": "mm", "precipitation_probability_max": "%"},
            "daily": {"time": ["2026-01-15"], "weather_code": [61], "temperature_2m_max": [4.2],
                      "temperature_2m_min": [-1.0], "precipitation_sum": [0.3], "precipitation_probability_max": [20]}
        }))
        .expect("decodes");
        let out = forecast_output(place(), raw, Units::Metric, true, "example".into(), false)
            .expect("normalises");
        assert_eq!(out.location.timezone, "Europe/Berlin");
        assert_eq!(out.location.utc_offset_seconds, 3600);
        assert_eq!(out.units.temperature, "°C");
        assert_eq!(
            out.daily,
            vec![Day {
                date: "2026-01-15".into(),
                temp_max: Some(4.2),
                temp_min: Some(-1.0),
                precipitation_sum: Some(0.3),
                precipitation_probability_max: Some(20),
                weather_code: Some(61),
                description: Some("Slight rain".into()),
            }]
        );
        let h = out.hourly.expect("hourly");
        assert_eq!(h.temperature, vec![Some(1.5), None]);
        assert_eq!(h.precipitation_probability, vec![Some(10), Some(20)]);
    }

    #[test]
    fn ragged_arrays_are_a_decode_error() {
        let raw: ForecastResponse = serde_json::from_value(json!({
            "latitude": 1.0, "longitude": 2.0, "timezone": "GMT",
            "daily": {"time": ["2026-01-15", "2026-01-16"], "weather_code": [1],
                      "temperature_2m_max": [1.0, 2.0], "temperature_2m_min": [0.0, 1.0],
                      "precipitation_sum": [0.0, 0.0], "precipitation_probability_max": [0, 0]}
        }))
        .expect("decodes");
        let err = forecast_output(place(), raw, Units::Metric, false, "x".into(), false)
            .expect_err("ragged");
        assert!(matches!(err, WeatherError::Decode { .. }), "{err:?}");
        assert!(!err.is_retryable());
    }
}
