//! What can go wrong when answering a weather task, and whether trying again can help.

use std::fmt;
use std::time::Duration;

/// The Open-Meteo endpoint a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v1/search` on the geocoding API.
    Geocoding,
    /// `GET /v1/forecast` on the forecast API.
    Forecast,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Geocoding => "geocoding",
            Self::Forecast => "forecast",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeatherError {
    /// Geocoding found no place with that name (in that country, if one was given).
    #[error("unknown city {city:?}{}", country_code.as_deref().map(|c| format!(" in country {c}")).unwrap_or_default())]
    UnknownCity {
        city: String,
        country_code: Option<String>,
    },
    /// The capability input is malformed or out of range.
    #[error("invalid weather input")]
    InvalidInput(#[source] InputError),
    /// Open-Meteo answered with an error status; `reason` is its `{"reason": ...}`
    /// text, or the start of the body when it sent none.
    #[error("open-meteo {endpoint} API returned HTTP {status}: {reason}")]
    Upstream {
        endpoint: Endpoint,
        status: u16,
        reason: String,
        /// From a `Retry-After: <seconds>` header, if any.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the configured timeout.
    #[error("open-meteo {endpoint} API did not answer within {after:?}")]
    Timeout { endpoint: Endpoint, after: Duration },
    /// Connecting, sending or reading the response failed.
    #[error("cannot reach the open-meteo {endpoint} API")]
    Unreachable {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },
    /// The response is not the JSON Open-Meteo documents.
    #[error("malformed open-meteo {endpoint} response")]
    Decode {
        endpoint: Endpoint,
        #[source]
        source: Malformed,
    },
    /// The client configuration cannot work (bad base URL, TLS setup).
    #[error("invalid weather client configuration")]
    Config(#[source] ConfigError),
}

/// What is wrong with a weather task's input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// An unknown field or a value of the wrong type (serde says which).
    #[error(transparent)]
    Fields(#[from] serde_json::Error),
    /// A value breaks a rule of the capability: the text states the rule.
    #[error("{0}")]
    Rule(&'static str),
    /// `days` out of range.
    #[error("days must be between 1 and {max}, got {got}")]
    Days { got: i64, max: u8 },
}

/// What is wrong with an Open-Meteo response.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("not the documented JSON")]
    Json(#[source] serde_json::Error),
    #[error("`{0}` block missing")]
    Missing(&'static str),
    #[error("{block}.{name} has {got} values for {expected} times")]
    Length {
        block: &'static str,
        name: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("output not representable as JSON")]
    Output(#[source] serde_json::Error),
}

/// Why the weather client configuration cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("base URL {base:?}")]
    Url {
        base: String,
        #[source]
        source: url::ParseError,
    },
    #[error("base URL {0:?} must be http or https")]
    Scheme(String),
    #[error("forecast base URL {0:?} has no host")]
    NoHost(String),
    #[error("timeout must be positive")]
    ZeroTimeout,
    #[error("HTTP client")]
    Http(#[source] reqwest::Error),
}

impl WeatherError {
    /// True when the same request may succeed later: the runtime should nak
    /// (redeliver) rather than fail the task. The client has already retried
    /// these `max_retries` times before returning them.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Upstream { status, .. } => is_retryable_status(*status),
            Self::Timeout { .. } | Self::Unreachable { .. } => true,
            Self::UnknownCity { .. }
            | Self::InvalidInput(_)
            | Self::Decode { .. }
            | Self::Config(_) => false,
        }
    }

    /// Snake-case token for the `code` of the task error object
    /// (`schemas/README.md`: `invalid_input` is a known code, the set is open).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownCity { .. } => "unknown_city",
            Self::InvalidInput(_) => "invalid_input",
            Self::Upstream { .. } => "upstream_status",
            Self::Timeout { .. } => "timeout",
            Self::Unreachable { .. } => "upstream_unreachable",
            Self::Decode { .. } => "upstream_malformed",
            Self::Config(_) => "config",
        }
    }

    /// How long the upstream asked us to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// 5xx, 408 (request timeout) and 429 (rate limited) are worth retrying;
/// any other 4xx means the request itself is wrong.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn unknown_city_names_the_city_and_country() {
        let e = WeatherError::UnknownCity {
            city: "Atlantis".into(),
            country_code: Some("GR".into()),
        };
        assert_eq!(e.to_string(), "unknown city \"Atlantis\" in country GR");
        assert!(!e.is_retryable());
        assert_eq!(e.code(), "unknown_city");
        let e = WeatherError::UnknownCity {
            city: "Atlantis".into(),
            country_code: None,
        };
        assert_eq!(e.to_string(), "unknown city \"Atlantis\"");
    }
}
