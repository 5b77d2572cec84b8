//! Capability inputs (`weather_current`, `weather_forecast`), validated once
//! into a [`Query`]. The JSON schemas in `schemas/capabilities/` say the same.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{InputError, WeatherError};

/// Default and bounds for `days` (Open-Meteo serves up to 16 forecast days).
pub(crate) const DEFAULT_DAYS: u8 = 3;
pub(crate) const MAX_DAYS: u8 = 16;

/// Unit system of an output; picks Open-Meteo's unit parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Units {
    /// °C, km/h, mm.
    #[default]
    Metric,
    /// °F, mph, inch.
    Imperial,
}

impl Units {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Imperial => "imperial",
        }
    }

    /// `(temperature_unit, wind_speed_unit, precipitation_unit)` for Open-Meteo.
    pub(crate) fn api_params(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Metric => ("celsius", "kmh", "mm"),
            Self::Imperial => ("fahrenheit", "mph", "inch"),
        }
    }

    /// The unit labels Open-Meteo reports for those parameters
    /// `(temperature, wind speed, precipitation)`.
    pub(crate) fn labels(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Metric => ("°C", "km/h", "mm"),
            Self::Imperial => ("°F", "mp/h", "inch"),
        }
    }
}

/// Where to get weather for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Place {
    City {
        /// Trimmed, as given (geocoding is case-insensitive).
        name: String,
        /// ISO 3166-1 alpha-2, upper case.
        country_code: Option<String>,
    },
    Coordinates {
        latitude: f64,
        longitude: f64,
    },
}

impl Place {
    /// Stable text for cache keys: case and spacing of names do not matter,
    /// coordinates count to 4 decimals (about 11 m).
    pub(crate) fn normalised(&self) -> String {
        match self {
            Self::City { name, country_code } => format!(
                "city={},cc={}",
                name.split_whitespace()
                    .collect::<Vec<_>>()
                    .join("+")
                    .to_lowercase(),
                country_code.as_deref().unwrap_or("-")
            ),
            Self::Coordinates {
                latitude,
                longitude,
            } => format!("lat={latitude:.4},lon={longitude:.4}"),
        }
    }
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub place: Place,
    pub units: Units,
    /// Forecast days (1..=16); 1 for current conditions.
    pub days: u8,
    /// Include hourly series (forecast only).
    pub hourly: bool,
}

impl Query {
    /// Validates a `weather_current` input.
    pub(crate) fn current(input: &Value) -> Result<Self, WeatherError> {
        let raw: CurrentInput = decode(input)?;
        Ok(Self {
            place: place(raw.city, raw.country_code, raw.latitude, raw.longitude)?,
            units: raw.units.unwrap_or_default(),
            days: 1,
            hourly: false,
        })
    }

    /// Validates a `weather_forecast` input.
    pub(crate) fn forecast(input: &Value) -> Result<Self, WeatherError> {
        let raw: ForecastInput = decode(input)?;
        let days = match raw.days {
            None => DEFAULT_DAYS,
            Some(d) => u8::try_from(d)
                .ok()
                .filter(|d| (1..=MAX_DAYS).contains(d))
                .ok_or(WeatherError::InvalidInput(InputError::Days {
                    got: d,
                    max: MAX_DAYS,
                }))?,
        };
        Ok(Self {
            place: place(raw.city, raw.country_code, raw.latitude, raw.longitude)?,
            units: raw.units.unwrap_or_default(),
            days,
            hourly: raw.hourly.unwrap_or(true),
        })
    }

    /// Cache key body: everything that changes the answer.
    pub(crate) fn normalised(&self) -> String {
        format!(
            "{},units={},days={},hourly={}",
            self.place.normalised(),
            self.units.as_str(),
            self.days,
            self.hourly
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CurrentInput {
    city: Option<String>,
    country_code: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    units: Option<Units>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForecastInput {
    city: Option<String>,
    country_code: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    units: Option<Units>,
    days: Option<i64>,
    hourly: Option<bool>,
}

fn decode<T: serde::de::DeserializeOwned>(input: &Value) -> Result<T, WeatherError> {
    if !input.is_object() {
        return Err(WeatherError::InvalidInput(InputError::Rule(
            "input must be a JSON object",
        )));
    }
    T::deserialize(input).map_err(|e| WeatherError::InvalidInput(e.into()))
}

fn place(
    city: Option<String>,
    country_code: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
) -> Result<Place, WeatherError> {
    let invalid = |rule: &'static str| Err(WeatherError::InvalidInput(InputError::Rule(rule)));
    match (city, latitude, longitude) {
        (Some(city), None, None) => {
            let name = city.trim();
            let chars = name.chars().count();
            if !(2..=100).contains(&chars) {
                return invalid("city must be 2 to 100 characters long");
            }
            if name.chars().any(char::is_control) {
                return invalid("city must not contain control characters");
            }
            let country_code = match country_code {
                None => None,
                Some(cc) if cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_alphabetic()) => {
                    Some(cc.to_ascii_uppercase())
                }
                Some(_) => {
                    return invalid("country_code must be a two-letter ISO 3166-1 code");
                }
            };
            Ok(Place::City {
                name: name.to_owned(),
                country_code,
            })
        }
        (None, Some(latitude), Some(longitude)) => {
            if country_code.is_some() {
                return invalid("country_code applies only to a city");
            }
            if !(-90.0..=90.0).contains(&latitude) {
                return invalid("latitude must be between -90 and 90");
            }
            if !(-180.0..=180.0).contains(&longitude) {
                return invalid("longitude must be between -180 and 180");
            }
            Ok(Place::Coordinates {
                latitude,
                longitude,
            })
        }
        (None, None, None) => invalid("give either city or latitude and longitude"),
        (Some(_), _, _) => invalid("give either city or latitude and longitude, not both"),
        (None, _, _) => invalid("latitude and longitude must be given together"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invalid(r: Result<Query, WeatherError>) -> String {
        match r {
            Err(WeatherError::InvalidInput(m)) => m.to_string(),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn forecast_defaults() {
        let q = Query::forecast(&json!({"city": "  San  Francisco "})).expect("valid");
        assert_eq!(
            q,
            Query {
                place: Place::City {
                    name: "San  Francisco".into(),
                    country_code: None
                },
                units: Units::Metric,
                days: 3,
                hourly: true,
            }
        );
        assert_eq!(
            q.normalised(),
            "city=san+francisco,cc=-,units=metric,days=3,hourly=true"
        );
    }

    #[test]
    fn coordinates_and_country_code() {
        let q =
            Query::current(&json!({"latitude": 52.52, "longitude": 13.405, "units": "imperial"}))
                .expect("valid");
        assert_eq!(
            q.normalised(),
            "lat=52.5200,lon=13.4050,units=imperial,days=1,hourly=false"
        );
        let q = Query::current(&json!({"city": "London", "country_code": "ca"})).expect("valid");
        assert_eq!(
            q.place,
            Place::City {
                name: "London".into(),
                country_code: Some("CA".into())
            }
        );
    }

    #[test]
    fn rejects_bad_inputs() {
        let both = json!({"city": "Paris", "latitude": 1.0, "longitude": 2.0});
        assert!(invalid(Query::current(&both)).contains("not both"));
        assert!(invalid(Query::current(&json!({}))).contains("either city"));
        assert!(invalid(Query::current(&json!({"latitude": 1.0}))).contains("together"));
        assert!(
            invalid(Query::current(&json!({"latitude": 91.0, "longitude": 0.0})))
                .contains("latitude")
        );
        assert!(
            invalid(Query::current(
                &json!({"latitude": 0.0, "longitude": -181.0})
            ))
            .contains("longitude")
        );
        assert!(invalid(Query::current(&json!({"city": "B"}))).contains("2 to 100"));
        assert!(
            invalid(Query::current(
                &json!({"city": "Paris", "country_code": "FRA"})
            ))
            .contains("country_code")
        );
        assert!(
            invalid(Query::current(&json!({"city": "Paris", "units": "kelvin"})))
                .contains("kelvin")
        );
        assert!(invalid(Query::current(&json!({"citty": "Paris"}))).contains("citty"));
        assert!(invalid(Query::current(&json!({"city": "Paris", "days": 2}))).contains("days"));
        assert!(invalid(Query::current(&json!("Paris"))).contains("object"));
        assert!(
            invalid(Query::forecast(&json!({"city": "Paris", "days": 0})))
                .contains("between 1 and 16")
        );
        assert!(invalid(Query::forecast(&json!({"city": "Paris", "days": 17}))).contains("got 17"));
        assert!(invalid(Query::forecast(&json!({"city": "Paris", "days": 2.5}))).contains("2.5"));
        let coords_cc = json!({"latitude": 1.0, "longitude": 2.0, "country_code": "DE"});
        assert!(invalid(Query::forecast(&coords_cc)).contains("only to a city"));
    }
}
