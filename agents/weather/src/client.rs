//! The Open-Meteo client: input -> (cache) -> geocoding -> forecast -> output.

use std::time::Duration;

use redis::aio::ConnectionManager;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{debug, instrument};

use super::cache::{self, Cache};
use super::error::{ConfigError, Malformed};
use super::input::{Place, Query};
use super::model::{
    self, CURRENT_VARS, DAILY_VARS, ForecastResponse, GeocodingResponse, HOURLY_VARS, Resolved,
};
use super::retry::{self, Policy};
use super::{Config, Endpoint, FIXTURE_HEADER, WeatherError};

/// Longest upstream error text kept in an error.
const MAX_REASON_CHARS: usize = 300;

/// Answers `weather_current` and `weather_forecast` tasks. Cheap to share
/// (`Arc` it); all methods take `&self`.
pub struct WeatherClient {
    http: reqwest::Client,
    forecast_url: Url,
    geocoding_url: Url,
    source: String,
    timeout: Duration,
    policy: Policy,
    cache: Cache,
}

#[derive(Clone, Copy)]
enum Kind {
    Current,
    Forecast,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Forecast => "forecast",
        }
    }
}

/// A decoded body and whether the fixture served it.
struct Fetched<T> {
    body: T,
    fixture: bool,
}

impl WeatherClient {
    /// Checks the base URLs and builds the HTTP client. `cache` is optional:
    /// without it every call goes to Open-Meteo.
    pub fn new(config: Config, cache: Option<ConnectionManager>) -> Result<Self, WeatherError> {
        let forecast_url = endpoint_url(&config.forecast_base_url, "/v1/forecast")?;
        let geocoding_url = endpoint_url(&config.geocoding_base_url, "/v1/search")?;
        let source = match (forecast_url.host_str(), forecast_url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => {
                return Err(WeatherError::Config(ConfigError::NoHost(
                    config.forecast_base_url.clone(),
                )));
            }
        };
        if config.timeout.is_zero() {
            return Err(WeatherError::Config(ConfigError::ZeroTimeout));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("agentry-weather/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WeatherError::Config(ConfigError::Http(e)))?;
        Ok(Self {
            http,
            forecast_url,
            geocoding_url,
            source,
            timeout: config.timeout,
            policy: Policy {
                max_retries: config.max_retries,
                initial: config.backoff_initial,
                max: config.backoff_max,
            },
            cache: Cache::new(
                cache,
                config.cache_ttl,
                cache::Timing {
                    op_timeout: config.cache_op_timeout,
                    cooldown: config.cache_cooldown,
                },
            ),
        })
    }

    /// Host (and explicit port) of the forecast API, as reported in `source`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `weather_current`: input `{city, country_code?} | {latitude, longitude}`,
    /// `units?`; output [`model::CurrentOutput`] as JSON.
    #[instrument(skip_all, fields(agentry.capability = "weather_current"))]
    pub async fn current(&self, input: &Value) -> Result<Value, WeatherError> {
        let query = Query::current(input)?;
        self.answer(Kind::Current, &query).await
    }

    /// `weather_forecast`: as `current`, plus `days?` (1..=16, default 3) and
    /// `hourly?` (default true); output [`model::ForecastOutput`] as JSON.
    #[instrument(skip_all, fields(agentry.capability = "weather_forecast"))]
    pub async fn forecast(&self, input: &Value) -> Result<Value, WeatherError> {
        let query = Query::forecast(input)?;
        self.answer(Kind::Forecast, &query).await
    }

    async fn answer(&self, kind: Kind, query: &Query) -> Result<Value, WeatherError> {
        let key = cache::key(kind.as_str(), &query.normalised());
        if let Some(hit) = self.cache.get::<Value>(&key).await {
            return Ok(hit);
        }
        let place = self.resolve(&query.place).await?;
        let fetched = self.fetch_forecast(kind, query, &place).await?;
        let source = self.source.clone();
        let value = match kind {
            Kind::Current => serde_json::to_value(model::current_output(
                place,
                fetched.body,
                query.units,
                source,
                fetched.fixture,
            )?),
            Kind::Forecast => serde_json::to_value(model::forecast_output(
                place,
                fetched.body,
                query.units,
                query.hourly,
                source,
                fetched.fixture,
            )?),
        }
        .map_err(|e| WeatherError::Decode {
            endpoint: Endpoint::Forecast,
            source: Malformed::Output(e),
        })?;
        self.cache.put(&key, &value).await;
        Ok(value)
    }

    /// A city through geocoding (cached on its own: places do not move), or
    /// the coordinates as given.
    async fn resolve(&self, place: &Place) -> Result<Resolved, WeatherError> {
        let (name, country_code) = match place {
            Place::Coordinates {
                latitude,
                longitude,
            } => {
                return Ok(Resolved {
                    name: None,
                    country: None,
                    country_code: None,
                    admin1: None,
                    latitude: *latitude,
                    longitude: *longitude,
                });
            }
            Place::City { name, country_code } => (name, country_code),
        };
        let key = cache::key("geocode", &place.normalised());
        if let Some(hit) = self.cache.get::<Resolved>(&key).await {
            return Ok(hit);
        }
        let mut params = vec![
            ("name", name.clone()),
            ("count", "1".to_owned()),
            ("language", "en".to_owned()),
            ("format", "json".to_owned()),
        ];
        if let Some(cc) = country_code {
            params.push(("countryCode", cc.clone()));
        }
        let found: Fetched<GeocodingResponse> = self
            .get_json(Endpoint::Geocoding, &self.geocoding_url, &params)
            .await?;
        let first = found
            .body
            .results
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| WeatherError::UnknownCity {
                city: name.clone(),
                country_code: country_code.clone(),
            })?;
        debug!(city = %name, resolved = %first.name, timezone = ?first.timezone, "city geocoded");
        let resolved = Resolved::from(first);
        self.cache.put(&key, &resolved).await;
        Ok(resolved)
    }

    async fn fetch_forecast(
        &self,
        kind: Kind,
        query: &Query,
        place: &Resolved,
    ) -> Result<Fetched<ForecastResponse>, WeatherError> {
        let (temperature, wind, precipitation) = query.units.api_params();
        let mut params = vec![
            ("latitude", place.latitude.to_string()),
            ("longitude", place.longitude.to_string()),
        ];
        match kind {
            Kind::Current => params.push(("current", CURRENT_VARS.to_owned())),
            Kind::Forecast => {
                if query.hourly {
                    params.push(("hourly", HOURLY_VARS.to_owned()));
                }
                params.push(("daily", DAILY_VARS.to_owned()));
            }
        }
        params.extend([
            ("timezone", "auto".to_owned()),
            ("forecast_days", query.days.to_string()),
            ("temperature_unit", temperature.to_owned()),
            ("wind_speed_unit", wind.to_owned()),
            ("precipitation_unit", precipitation.to_owned()),
        ]);
        self.get_json(Endpoint::Forecast, &self.forecast_url, &params)
            .await
    }

    /// GET with retries for transient failures.
    async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        url: &Url,
        params: &[(&str, String)],
    ) -> Result<Fetched<T>, WeatherError> {
        let what = match endpoint {
            Endpoint::Geocoding => "open-meteo geocoding request",
            Endpoint::Forecast => "open-meteo forecast request",
        };
        retry::run(self.policy, what, || {
            self.get_json_once(endpoint, url, params)
        })
        .await
    }

    async fn get_json_once<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        url: &Url,
        params: &[(&str, String)],
    ) -> Result<Fetched<T>, WeatherError> {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                WeatherError::Timeout {
                    endpoint,
                    after: self.timeout,
                }
            } else {
                WeatherError::Unreachable {
                    endpoint,
                    source: e,
                }
            }
        };
        let response = self
            .http
            .get(url.clone())
            .query(params)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let fixture = response.headers().contains_key(FIXTURE_HEADER);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(WeatherError::Upstream {
                endpoint,
                status: status.as_u16(),
                reason: reason(status, &bytes),
                retry_after,
            });
        }
        let body = serde_json::from_slice(&bytes).map_err(|e| WeatherError::Decode {
            endpoint,
            source: Malformed::Json(e),
        })?;
        Ok(Fetched { body, fixture })
    }
}

/// Open-Meteo's `{"error": true, "reason": "..."}`, else the start of the body.
fn reason(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        reason: String,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.reason,
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned();
    }
    text.chars().take(MAX_REASON_CHARS).collect()
}

/// `base` plus a fixed path; a path prefix in `base` is kept.
fn endpoint_url(base: &str, path: &str) -> Result<Url, WeatherError> {
    let joined = format!("{}{path}", base.trim_end_matches('/'));
    let url = Url::parse(&joined).map_err(|source| {
        WeatherError::Config(ConfigError::Url {
            base: base.to_owned(),
            source,
        })
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WeatherError::Config(ConfigError::Scheme(base.to_owned())));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_endpoint_urls_and_source() {
        let url = endpoint_url("https://api.open-meteo.com/", "/v1/forecast").expect("url");
        assert_eq!(url.as_str(), "https://api.open-meteo.com/v1/forecast");
        let url = endpoint_url("http://proxy:8080/om", "/v1/search").expect("url");
        assert_eq!(url.as_str(), "http://proxy:8080/om/v1/search");
        assert!(matches!(
            endpoint_url("ftp://x", "/v1/search"),
            Err(WeatherError::Config(_))
        ));
        assert!(matches!(
            endpoint_url("not a url", "/v1/search"),
            Err(WeatherError::Config(_))
        ));

        let c = WeatherClient::new(Config::default(), None).expect("client");
        assert_eq!(c.source(), "api.open-meteo.com");
        let c = WeatherClient::new(Config::with_base_url("http://127.0.0.1:4321"), None)
            .expect("client");
        assert_eq!(c.source(), "127.0.0.1:4321");
    }

    #[test]
    fn error_reason_prefers_open_meteo_json() {
        let r = reason(
            StatusCode::BAD_REQUEST,
            br#"{"error":true,"reason":"Latitude must be in range of -90 to 90"}"#,
        );
        assert_eq!(r, "Latitude must be in range of -90 to 90");
        assert_eq!(
            reason(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(
            reason(StatusCode::SERVICE_UNAVAILABLE, b""),
            "Service Unavailable"
        );
    }
}
