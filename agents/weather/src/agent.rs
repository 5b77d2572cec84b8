//! The `weather` agent: serves `weather_current` and `weather_forecast` with
//! one shared [`WeatherClient`].

use std::error::Error as _;
use std::time::Duration;

use agentry::agent::{Agent, Context, Descriptor, Task, TaskError};
use agentry::id::Capability;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::{Config, WeatherClient, WeatherError};

/// Capabilities of the `weather` kind.
pub const CAPABILITIES: [&str; 2] = ["weather_current", "weather_forecast"];

/// The weather agent. The client is built on the first task, because the
/// Redis connection for its cache comes with the task [`Context`].
pub struct WeatherAgent {
    config: Config,
    client: OnceCell<WeatherClient>,
}

impl WeatherAgent {
    /// Checks `config` (base URLs, timeout) now, so that bad settings stop
    /// the process at start-up rather than failing every task.
    pub fn new(config: Config) -> Result<Self, WeatherError> {
        WeatherClient::new(config.clone(), None)?;
        Ok(Self {
            config,
            client: OnceCell::new(),
        })
    }

    async fn client(&self, ctx: &Context) -> Result<&WeatherClient, TaskError> {
        self.client
            .get_or_try_init(|| async { WeatherClient::new(self.config.clone(), ctx.redis()) })
            .await
            .map_err(|e| task_error(&e))
    }
}

#[async_trait::async_trait]
impl Agent for WeatherAgent {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: "weather".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Current conditions and forecasts from Open-Meteo (geocoded cities or coordinates)"
                    .into(),
            capabilities: CAPABILITIES
                .iter()
                .filter_map(|c| Capability::new(*c).ok())
                .collect(),
        }
    }

    async fn handle(&self, task: Task, ctx: Context) -> Result<Value, TaskError> {
        let client = self.client(&ctx).await?;
        let answer = match task.capability.as_str() {
            "weather_current" => client.current(&task.input).await,
            "weather_forecast" => client.forecast(&task.input).await,
            other => {
                return Err(TaskError::permanent(format!(
                    "the weather agent does not serve {other}"
                )));
            }
        };
        answer.map_err(|e| task_error(&e))
    }

    /// Up to four attempts of two HTTP calls each, with backoff, fit well within a minute.
    fn default_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// Transient failures are retried by the runtime; the rest fail the task
/// with the error's own code (`unknown_city`, `upstream_status`, ...).
fn task_error(e: &WeatherError) -> TaskError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_retryable() {
        TaskError::Retryable(message)
    } else {
        TaskError::Permanent {
            code: e.code(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_retryable_or_permanent_with_their_code() {
        let e = WeatherError::UnknownCity {
            city: "Atlantis".into(),
            country_code: None,
        };
        match task_error(&e) {
            TaskError::Permanent { code, message } => {
                assert_eq!(code, "unknown_city");
                assert_eq!(message, "unknown city \"Atlantis\"");
            }
            other => panic!("expected permanent, got {other:?}"),
        }
        let e = WeatherError::Timeout {
            endpoint: super::super::Endpoint::Forecast,
            after: Duration::from_millis(300),
        };
        assert!(matches!(task_error(&e), TaskError::Retryable(m) if m.contains("within 300ms")));
    }

    #[test]
    fn bad_base_url_is_refused_at_construction() {
        let cfg = Config::with_base_url("ftp://nowhere");
        assert!(matches!(
            WeatherAgent::new(cfg),
            Err(WeatherError::Config(_))
        ));
    }
}
