//! Guided resolution: per-intent steps from the bundled `resolutions.json`
//! and the ticket that tracks them.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::LogicError;
use super::intent::{self, Intent};
use super::memory;
use super::ticket::{HistoryEntry, Status, Ticket};
use agentry_agent_kit::{bad_data, missing_data};

const RESOLUTIONS_JSON: &str = agentry_agent_kit::data_file!("resolutions.json");

/// The playbook of one intent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Plan {
    pub title: String,
    /// Whether following the steps resolves the issue without an agent.
    pub self_service: bool,
    /// Entities the steps need (`order_number`, `email`).
    pub requires: Vec<String>,
    /// The question to ask when the request is too vague.
    pub clarify: String,
    pub steps: Vec<String>,
}

static PLANS: OnceLock<Result<HashMap<Intent, Plan>, LogicError>> = OnceLock::new();

/// The plan of an intent.
pub fn plan(intent: Intent) -> Result<&'static Plan, LogicError> {
    let plans = PLANS
        .get_or_init(|| {
            serde_json::from_str(RESOLUTIONS_JSON).map_err(|e| bad_data("resolutions.json", e))
        })
        .as_ref()
        .map_err(Clone::clone)?;
    plans
        .get(&intent)
        .ok_or_else(|| missing_data(format!("resolutions.json has no plan for {intent}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    intent: Option<Intent>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    details: Option<Map<String, Value>>,
}

fn detail_str<'a>(details: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    details
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// The `issue_resolution` capability.
///
/// The intent comes from `input.intent` or, failing that, from classifying
/// `input.message`. Required details (`order_number`, `email`) are looked up
/// in `input.details` and the message. The ticket is `resolved` when the
/// intent's plan is self-service and nothing required is missing, `open`
/// otherwise. `ticket_id` and `created_at` are chosen by the caller.
pub fn issue_resolution(
    input: &Value,
    ticket_id: &str,
    created_at: DateTime<Utc>,
) -> Result<(Value, Ticket), LogicError> {
    let input: Input = agentry_agent_kit::input::decode(input)?;
    if ticket_id.trim().is_empty() {
        return Err(LogicError::InvalidInput("ticket_id is empty".into()));
    }
    let message = input
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let (intent, source, confidence) = match (input.intent, message) {
        (Some(i), _) => (i, "input", None),
        (None, Some(m)) => {
            let p = intent::classify(m)?;
            (p.intent, "classified", Some(p.confidence))
        }
        (None, None) => {
            return Err(LogicError::InvalidInput(
                "one of intent or message is required".into(),
            ));
        }
    };
    let plan = plan(intent)?;
    let details = input.details.as_ref();
    let found = memory::extract(message.unwrap_or_default());
    let order_number = detail_str(details, "order_number")
        .map(|s| s.trim_start_matches('#').to_string())
        .or(found.order_number);
    let email = detail_str(details, "email")
        .map(str::to_string)
        .or(found.email);
    let missing: Vec<&str> = plan
        .requires
        .iter()
        .map(String::as_str)
        .filter(|r| match *r {
            "order_number" => order_number.is_none(),
            "email" => email.is_none(),
            _ => detail_str(details, r).is_none(),
        })
        .collect();
    let status = if plan.self_service && missing.is_empty() {
        Status::Resolved
    } else {
        Status::Open
    };
    let mut ticket_details = details.cloned().unwrap_or_default();
    if let Some(o) = &order_number {
        ticket_details.insert("order_number".into(), json!(o));
    }
    if let Some(e) = &email {
        ticket_details.insert("email".into(), json!(e));
    }
    let note = match status {
        Status::Resolved => format!("{}: guided steps given to the customer", plan.title),
        _ if !missing.is_empty() => format!("{}: waiting for {}", plan.title, missing.join(", ")),
        _ => format!("{}: assigned to an agent", plan.title),
    };
    let ticket = Ticket {
        ticket_id: ticket_id.to_string(),
        customer_id: input.customer_id.clone(),
        intent,
        status,
        steps: plan.steps.clone(),
        created_at,
        updated_at: created_at,
        priority: None,
        queue: None,
        sla_hours: None,
        details: (!ticket_details.is_empty()).then_some(Value::Object(ticket_details)),
        history: vec![HistoryEntry {
            at: created_at,
            status,
            note,
            request_id: None,
        }],
    };
    let output = json!({
        "ticket_id": ticket.ticket_id,
        "status": ticket.status,
        "intent": intent,
        "intent_source": source,
        "intent_confidence": confidence,
        "title": plan.title,
        "steps": plan.steps,
        "missing_details": missing,
        "next_question": (!missing.is_empty()).then_some(&plan.clarify),
        "created_at": created_at,
        "ticket": ticket,
    });
    Ok((output, ticket))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 5, 2, 9, 30, 0).unwrap()
    }

    /// Every intent has a plan with steps and a clarifying question.
    #[test]
    fn every_intent_has_a_plan() {
        for i in Intent::ALL {
            let p = plan(i).unwrap();
            assert!(!p.steps.is_empty() && !p.clarify.is_empty(), "{i}");
        }
    }

    /// A refund request without an order number stays open and asks for it.
    #[test]
    fn refund_without_order_asks_for_it() {
        let (out, ticket) = issue_resolution(
            &json!({"message": "I want my money back for the broken blender"}),
            "tk-1",
            at(),
        )
        .unwrap();
        assert_eq!(out["intent"], "refund");
        assert_eq!(out["intent_source"], "classified");
        assert_eq!(out["status"], "open");
        assert_eq!(out["missing_details"], json!(["order_number"]));
        assert_eq!(
            out["next_question"],
            "Which order would you like refunded? Please share the order number."
        );
        assert_eq!(ticket.steps, plan(Intent::Refund).unwrap().steps);
        assert_eq!(out["created_at"], "2025-05-02T09:30:00Z");
    }

    /// A self-service intent with its details present is resolved.
    #[test]
    fn shipping_with_order_is_resolved() {
        let (out, ticket) = issue_resolution(
            &json!({"intent": "shipping_status", "customer_id": "c-1", "details": {"order_number": "#5520193"}}),
            "tk-2",
            at(),
        )
        .unwrap();
        assert_eq!(out["status"], "resolved");
        assert_eq!(out["intent_source"], "input");
        assert_eq!(out["missing_details"], json!([]));
        assert_eq!(ticket.status, Status::Resolved);
        assert_eq!(ticket.details, Some(json!({"order_number": "5520193"})));
        assert_eq!(ticket.customer_id.as_deref(), Some("c-1"));
    }

    /// Neither intent nor message, or an unknown intent, is invalid input.
    #[test]
    fn rejects_bad_input() {
        for bad in [
            json!({}),
            json!({"intent": "weather"}),
            json!({"message": "  "}),
        ] {
            assert!(matches!(
                issue_resolution(&bad, "tk", at()),
                Err(LogicError::InvalidInput(_))
            ));
        }
    }
}
