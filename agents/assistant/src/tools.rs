//! The tools offered to the model: one per live capability in the registry
//! (`agentry-agents`), named after the capability, described and typed by
//! its input schema from `schemas/capabilities` (an open object for a
//! custom capability without one). The assistant's own capability is never
//! offered (no recursion), and the task's `tools` list narrows the choice.

use std::collections::BTreeSet;

use agentry::registry::{AgentRecord, Status};
use agentry::schema;
use agentry_agent_kit::{LogicError, invalid};
use serde_json::{Map, Value, json};

use crate::CAPABILITY;
use crate::llm::{FunctionSpec, ToolSpec};

/// Schema keywords that only make sense inside agentry's schema set (they
/// name its documents); a model does not need them.
const LOCAL_KEYWORDS: [&str; 3] = ["$schema", "$id", "$anchor"];

/// The capabilities live agents serve, without the assistant's own.
pub fn live_capabilities(records: &[AgentRecord]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.status == Status::Live)
        .flat_map(|r| r.capabilities.iter().cloned())
        .filter(|c| c != CAPABILITY)
        .collect()
}

/// The tools for `live` capabilities, narrowed to `wanted` when given. A
/// wanted name that no live agent serves is an input error naming it.
pub fn select(
    live: &BTreeSet<String>,
    wanted: Option<&[String]>,
) -> Result<Vec<ToolSpec>, LogicError> {
    let names: Vec<&String> = match wanted {
        None => live.iter().collect(),
        Some(wanted) => {
            for (i, name) in wanted.iter().enumerate() {
                if name == CAPABILITY {
                    return Err(invalid(format!(
                        "tools[{i}]: the assistant cannot call itself"
                    )));
                }
                if !live.contains(name) {
                    return Err(invalid(format!(
                        "tools[{i}]: no live agent serves `{name}` (live: {})",
                        live.iter().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            let wanted: BTreeSet<&String> = wanted.iter().collect();
            wanted.into_iter().collect()
        }
    };
    Ok(names.into_iter().map(|n| spec(n)).collect())
}

/// The tool for `capability`.
pub fn spec(capability: &str) -> ToolSpec {
    let doc = schema::global().document(&format!("capabilities/{capability}.input.json"));
    let parameters = match doc {
        Some(Value::Object(o)) => Value::Object(for_model(o)),
        _ => json!({"type": "object"}),
    };
    let description = parameters
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Run the agentry capability `{capability}`."));
    ToolSpec {
        kind: "function",
        function: FunctionSpec {
            name: capability.to_owned(),
            description,
            parameters,
        },
    }
}

/// An input schema as the model gets it: agentry's own keywords removed,
/// the rest (including local `#/$defs` references) unchanged.
fn for_model(doc: &Map<String, Value>) -> Map<String, Value> {
    doc.iter()
        .filter(|(k, _)| !LOCAL_KEYWORDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn record(kind: &str, caps: &[&str], status: Status) -> AgentRecord {
        AgentRecord {
            id: format!("{kind}-1"),
            name: kind.into(),
            kind: kind.into(),
            version: "0.1.0".into(),
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            status,
            load: 0.0,
            in_flight: 0,
            capacity: 1,
            processed: 0,
            failed: 0,
            started_at: Utc::now(),
            last_heartbeat: Utc::now(),
            heartbeat_interval_ms: 1000,
            host: None,
        }
    }

    fn names(tools: &[ToolSpec]) -> Vec<&str> {
        tools.iter().map(|t| t.function.name.as_str()).collect()
    }

    #[test]
    fn live_capabilities_but_the_assistant_become_tools() {
        let records = [
            record(
                "weather",
                &["weather_current", "weather_forecast"],
                Status::Live,
            ),
            record("planning", &["plan_tasks"], Status::Live),
            record("echo", &["echo"], Status::Draining),
            record("assistant", &["assistant"], Status::Live),
        ];
        let live = live_capabilities(&records);
        let tools = select(&live, None).unwrap();
        assert_eq!(
            names(&tools),
            ["plan_tasks", "weather_current", "weather_forecast"]
        );
        let plan = &tools[0].function;
        assert!(plan.description.starts_with("Input of `plan_tasks`"));
        assert_eq!(plan.parameters["type"], "object");
        assert!(plan.parameters["$defs"]["task"].is_object());
        for k in LOCAL_KEYWORDS {
            assert!(plan.parameters.get(k).is_none(), "{k} left in");
        }
        let text = serde_json::to_value(&tools[2]).unwrap();
        assert_eq!(text["type"], "function");
        assert_eq!(text["function"]["name"], "weather_forecast");
        assert!(text["function"]["parameters"]["properties"]["city"].is_object());
    }

    #[test]
    fn the_tools_filter_narrows_and_names_what_is_not_live() {
        let live = live_capabilities(&[record(
            "weather",
            &["weather_current", "weather_forecast"],
            Status::Live,
        )]);
        let wanted = vec!["weather_forecast".to_owned(), "weather_forecast".to_owned()];
        assert_eq!(
            names(&select(&live, Some(&wanted)).unwrap()),
            ["weather_forecast"]
        );
        let wanted = vec!["weather_forecast".to_owned(), "plan_tasks".to_owned()];
        let e = select(&live, Some(&wanted)).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid input: tools[1]: no live agent serves `plan_tasks`"),
            "{e}"
        );
        let e = select(&live, Some(&["assistant".to_owned()]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot call itself"), "{e}");
    }

    #[test]
    fn a_capability_without_a_schema_takes_any_object() {
        let t = spec("my_custom_thing");
        assert_eq!(t.function.parameters, json!({"type": "object"}));
        assert_eq!(
            t.function.description,
            "Run the agentry capability `my_custom_thing`."
        );
    }
}
