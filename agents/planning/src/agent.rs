//! The `planning` agent on the runtime: `plan_tasks` (critical path,
//! resource levelling, weather-aware scheduling; the algorithms are in the
//! crate's other modules).
//!
//! Weather awareness over A2A: when `weather` names a place (`city`, or
//! `latitude` + `longitude`) instead of carrying a `forecast`, the agent
//! delegates `weather_forecast` for it through `agentry.requests` and plans
//! against the answer. The output's `weather` then also says where the
//! forecast is for and where it came from (`source`, `fixture`).

use std::time::Duration;

use agentry::agent::{A2aError, Agent, Context, Descriptor, Task, TaskError};
use agentry::id::Capability;
use chrono::Utc;
use serde_json::{Map, Value, json};

use agentry_agent_kit::run_blocking;

/// Forecast days fetched when `weather.days` is not given.
pub const DEFAULT_FORECAST_DAYS: u64 = 7;
/// Place fields of `weather` that ask the agent to fetch the forecast.
const PLACE_FIELDS: [&str; 5] = ["city", "country_code", "latitude", "longitude", "days"];

/// The planning agent.
pub struct PlanningAgent {
    /// Upper bound for the delegated `weather_forecast` request.
    pub forecast_timeout: Duration,
}

impl Default for PlanningAgent {
    fn default() -> Self {
        Self {
            forecast_timeout: Duration::from_secs(30),
        }
    }
}

#[async_trait::async_trait]
impl Agent for PlanningAgent {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: "planning".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Task graph to schedule: critical path, resource levelling, outdoor tasks moved out of wet hours".into(),
            capabilities: Capability::new("plan_tasks").into_iter().collect(),
        }
    }

    async fn handle(&self, task: Task, ctx: Context) -> Result<Value, TaskError> {
        if task.capability.as_str() != "plan_tasks" {
            return Err(TaskError::permanent(format!(
                "the planning agent does not serve {}",
                task.capability
            )));
        }
        let mut input = task.input;
        let mut origin = None;
        if let Some(query) = forecast_query(&mut input) {
            let timeout = match task.deadline {
                Some(d) => (d - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(self.forecast_timeout),
                None => self.forecast_timeout,
            };
            let forecast = ctx
                .delegate("weather_forecast", query, timeout)
                .await
                .map_err(forecast_error)?;
            origin = Some(json!({
                "location": forecast.get("location").cloned().unwrap_or(Value::Null),
                "source": forecast.get("source").cloned().unwrap_or(Value::Null),
                "fixture": forecast.get("fixture").cloned().unwrap_or(Value::Bool(false)),
            }));
            if let Some(weather) = input.get_mut("weather").and_then(Value::as_object_mut) {
                weather.insert("forecast".into(), forecast);
            }
        }
        let mut out = run_blocking(move || crate::plan_tasks(&input)).await?;
        if let (Some(Value::Object(origin)), Some(Value::Object(summary))) =
            (origin, out.get_mut("weather"))
        {
            summary.extend(origin.into_iter().filter(|(_, v)| !v.is_null()));
        }
        Ok(out)
    }
}

/// Takes the place fields out of `input.weather` and returns the
/// `weather_forecast` input for them, unless a `forecast` is given (then it
/// wins and the place fields are dropped) or there is no place.
fn forecast_query(input: &mut Value) -> Option<Value> {
    let weather = input.get_mut("weather")?.as_object_mut()?;
    let mut query: Map<String, Value> = PLACE_FIELDS
        .iter()
        .filter_map(|k| weather.remove(*k).map(|v| ((*k).to_owned(), v)))
        .collect();
    if weather.contains_key("forecast")
        || !(query.contains_key("city") || query.contains_key("latitude"))
    {
        return None;
    }
    query
        .entry("days")
        .or_insert_with(|| json!(DEFAULT_FORECAST_DAYS));
    query.insert("hourly".into(), Value::Bool(true));
    Some(Value::Object(query))
}

/// The weather agent's own failure (unknown city, bad input, retries used
/// up) is final for this plan: retrying would repeat the whole delegated
/// request. Not getting an answer at all (no agent, transport, timeout) may pass.
fn forecast_error(e: A2aError) -> TaskError {
    match e {
        A2aError::Remote { code, message, .. } => TaskError::Permanent {
            code: "weather_unavailable",
            message: format!("the weather forecast for the plan failed ({code}): {message}"),
        },
        other => TaskError::retryable(format!(
            "no weather forecast for the plan: {}",
            agentry::error::chain(&other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_fields_become_a_forecast_query() {
        let mut input = json!({
            "tasks": [{"id": "a", "duration_h": 1, "outdoor": true}],
            "weather": {"city": "Berlin", "country_code": "DE", "max_precipitation_probability": 30},
        });
        let query = forecast_query(&mut input).expect("a query");
        assert_eq!(
            query,
            json!({"city": "Berlin", "country_code": "DE", "days": 7, "hourly": true})
        );
        assert_eq!(
            input["weather"],
            json!({"max_precipitation_probability": 30})
        );

        let mut input =
            json!({"tasks": [], "weather": {"latitude": 1.5, "longitude": 2.5, "days": 2}});
        assert_eq!(
            forecast_query(&mut input),
            Some(json!({"latitude": 1.5, "longitude": 2.5, "days": 2, "hourly": true}))
        );
    }

    #[test]
    fn a_given_forecast_wins_and_no_weather_asks_nothing() {
        let mut input =
            json!({"tasks": [], "weather": {"city": "Berlin", "forecast": {"hourly": {}}}});
        assert_eq!(forecast_query(&mut input), None);
        assert_eq!(input["weather"], json!({"forecast": {"hourly": {}}}));
        let mut input = json!({"tasks": []});
        assert_eq!(forecast_query(&mut input), None);
        let mut input = json!({"tasks": [], "weather": {"max_precipitation_probability": 10}});
        assert_eq!(forecast_query(&mut input), None);
    }

    #[test]
    fn remote_failures_are_final_transport_failures_retry() {
        let e = forecast_error(A2aError::Remote {
            target: "weather_forecast".into(),
            code: "unknown_city".into(),
            message: "unknown city \"Atlantis\"".into(),
        });
        assert!(
            matches!(e, TaskError::Permanent { code: "weather_unavailable", ref message } if message.contains("Atlantis"))
        );
        assert!(forecast_error(A2aError::NoAgent("weather_forecast".into())).is_retryable());
    }
}
