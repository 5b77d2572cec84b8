//! The weather agent's logic: current conditions and forecasts from the
//! [Open-Meteo](https://open-meteo.com) HTTP API.
//!
//! - [`WeatherClient`] turns a capability input (`weather_current`,
//!   `weather_forecast`) into a normalised output: it geocodes a city name,
//!   calls the forecast endpoint with the units asked for, retries transient
//!   failures with backoff ([`retry`]) and caches results in Redis when a
//!   connection is given ([`cache`]).
//! - [`WeatherError::is_retryable`] tells the agent runtime whether to nak
//!   (retry later) or fail the task for good.
//! - The offline stand-in for both Open-Meteo endpoints is its own crate,
//!   `agentry-weather-fixture` (`agents/weather_fixture`), used by tests and
//!   `agentry up --offline` only; its answers carry [`FIXTURE_HEADER`].
//! - [`WeatherAgent`] hosts the client on the agent runtime (kind `weather`).
//!
//! Module map: `agent` (the runtime adapter), `client` (requests and flow),
//! `input` (capability input validation), `model` (Open-Meteo wire types and
//! the normalised outputs), `wmo` (weather code descriptions), `retry` (the
//! only user of `backon`), `cache` (Redis), `error`, `tests`.

mod agent;
mod cache;
mod client;
mod error;
mod input;
pub mod model;
mod retry;
pub mod wmo;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use agent::WeatherAgent;
pub use client::WeatherClient;
pub use error::{ConfigError, Endpoint, InputError, Malformed, WeatherError};
pub use input::Units;

/// Response header that marks answers of the offline fixture; the client
/// reports such an answer as `"fixture": true`.
pub const FIXTURE_HEADER: &str = "x-agentry-fixture";

/// Public Open-Meteo forecast API.
pub const DEFAULT_FORECAST_BASE_URL: &str = "https://api.open-meteo.com";
/// Public Open-Meteo geocoding API.
pub const DEFAULT_GEOCODING_BASE_URL: &str = "https://geocoding-api.open-meteo.com";

/// Weather client settings. `Default` targets the public Open-Meteo API.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Base URL of the forecast API, without `/v1/forecast`
    /// (`AGENTRY_WEATHER_BASE_URL`; default `https://api.open-meteo.com`).
    pub forecast_base_url: String,
    /// Base URL of the geocoding API, without `/v1/search`
    /// (`AGENTRY_WEATHER_GEOCODING_URL`; default `https://geocoding-api.open-meteo.com`).
    pub geocoding_base_url: String,
    /// Deadline for one HTTP attempt, connect and body included (default 10 s).
    pub timeout: Duration,
    /// Retries after the first attempt for 5xx, 408, 429, timeouts and
    /// connection failures (default 3, so at most 4 attempts per call).
    pub max_retries: u32,
    /// How long a result stays in the Redis cache (default 10 min).
    pub cache_ttl: Duration,
    /// First backoff delay between attempts; it doubles each retry (default 250 ms).
    pub backoff_initial: Duration,
    /// Upper bound for one backoff delay, also for an upstream `Retry-After` (default 5 s).
    pub backoff_max: Duration,
    /// Deadline for one Redis command; past it the cache is skipped (default 500 ms).
    pub cache_op_timeout: Duration,
    /// After a Redis failure, how long to bypass the cache before trying it
    /// again (default 10 s).
    pub cache_cooldown: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            forecast_base_url: DEFAULT_FORECAST_BASE_URL.to_owned(),
            geocoding_base_url: DEFAULT_GEOCODING_BASE_URL.to_owned(),
            timeout: Duration::from_secs(10),
            max_retries: 3,
            cache_ttl: Duration::from_secs(600),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            cache_op_timeout: Duration::from_millis(500),
            cache_cooldown: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Both endpoints on one server, as the offline fixture serves them.
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into();
        Self {
            forecast_base_url: base_url.clone(),
            geocoding_base_url: base_url,
            ..Self::default()
        }
    }
}
