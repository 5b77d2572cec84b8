//! Escalation scoring.
//!
//! The score (0..100) is a sum of documented parts:
//!
//! | part | points |
//! |---|---|
//! | negative sentiment | `40 * max(0, -sentiment)` (0..40) |
//! | intent | complaint 20, cancellation 18, refund 12, billing 10, account_access 10, technical_issue 8, shipping_status 6, product_info 0, greeting 0 |
//! | customer tier | free 0, standard 6, premium 14, enterprise 22 |
//! | legal or financial risk words (lawyer, sue, chargeback, fraud, regulator, ...) | 15 |
//! | an explicit escalation `reason` from the caller | 5 |
//! | the ticket was escalated before | 10 |
//!
//! Priority: score >= 70 `p1`, >= 50 `p2`, >= 30 `p3`, else `p4`. A `p4`
//! is assessed but not escalated. Queue: `p1` management, `p2` tier3, `p3`
//! and `p4` tier2. SLA hours: p1 1, p2 4, p3 24, p4 72; enterprise
//! customers get p2 2, p3 8, p4 24. A re-escalation never lowers the
//! priority a ticket already has.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::LogicError;
use super::intent::{self, Intent};
use super::resolution;
use super::sentiment::{self, Label, Sentiment};
use super::text;
use super::ticket::{HistoryEntry, Priority, Queue, Status, Ticket, Tier};

/// Points for a sentiment of -1.
pub const SENTIMENT_WEIGHT: f64 = 40.0;
/// Points for mentioning legal or financial risk.
pub const RISK_WORDS_POINTS: f64 = 15.0;
/// Points for an explicit escalation reason.
pub const REASON_POINTS: f64 = 5.0;
/// Points when the ticket was escalated before.
pub const REPEAT_POINTS: f64 = 10.0;

/// Words and phrases that signal legal or financial risk.
const RISK_TERMS: &[&str] = &[
    "lawyer",
    "lawyers",
    "attorney",
    "legal",
    "sue",
    "suing",
    "lawsuit",
    "court",
    "chargeback",
    "fraud",
    "fraudulent",
    "ombudsman",
    "regulator",
    "trading standards",
    "consumer protection",
    "journalist",
    "press",
];

/// Points for an intent.
pub fn intent_points(intent: Intent) -> f64 {
    match intent {
        Intent::Complaint => 20.0,
        Intent::Cancellation => 18.0,
        Intent::Refund => 12.0,
        Intent::Billing | Intent::AccountAccess => 10.0,
        Intent::TechnicalIssue => 8.0,
        Intent::ShippingStatus => 6.0,
        Intent::ProductInfo | Intent::Greeting => 0.0,
    }
}

/// Points for a customer tier.
pub fn tier_points(tier: Tier) -> f64 {
    match tier {
        Tier::Free => 0.0,
        Tier::Standard => 6.0,
        Tier::Premium => 14.0,
        Tier::Enterprise => 22.0,
    }
}

/// Priority of a score.
pub fn priority_for(score: f64) -> Priority {
    if score >= 70.0 {
        Priority::P1
    } else if score >= 50.0 {
        Priority::P2
    } else if score >= 30.0 {
        Priority::P3
    } else {
        Priority::P4
    }
}

/// Queue of a priority.
pub fn queue_for(priority: Priority) -> Queue {
    match priority {
        Priority::P1 => Queue::Management,
        Priority::P2 => Queue::Tier3,
        Priority::P3 | Priority::P4 => Queue::Tier2,
    }
}

/// Response time of a priority for a tier.
pub fn sla_hours(priority: Priority, tier: Tier) -> u32 {
    match (priority, tier == Tier::Enterprise) {
        (Priority::P1, _) => 1,
        (Priority::P2, false) => 4,
        (Priority::P2, true) => 2,
        (Priority::P3, false) => 24,
        (Priority::P3, true) => 8,
        (Priority::P4, false) => 72,
        (Priority::P4, true) => 24,
    }
}

/// What the score is computed from.
#[derive(Debug, Clone, Default)]
pub struct Factors<'a> {
    pub intent: Option<Intent>,
    /// Sentiment score in [-1, 1].
    pub sentiment: Option<f64>,
    pub tier: Tier,
    /// Message and reason text searched for risk words.
    pub text: &'a str,
    pub reason_given: bool,
    pub previously_escalated: bool,
}

/// The outcome of scoring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// 0..100, rounded to one decimal.
    pub score: f64,
    pub priority: Priority,
    pub queue: Queue,
    pub sla_hours: u32,
    pub reasons: Vec<String>,
    /// Whether the priority warrants escalation (p1..p3).
    pub escalate: bool,
}

fn mentions_risk(text_: &str) -> Option<&'static str> {
    let words = text::words(text_);
    RISK_TERMS.iter().copied().find(|term| {
        let parts: Vec<&str> = term.split(' ').collect();
        words
            .windows(parts.len())
            .any(|w| w.iter().zip(&parts).all(|(a, b)| a == b))
    })
}

/// Scores an escalation.
pub fn assess(f: &Factors<'_>) -> Assessment {
    let mut score = 0.0;
    let mut reasons = Vec::new();
    if let Some(s) = f.sentiment {
        let points = SENTIMENT_WEIGHT * (-s.clamp(-1.0, 1.0)).max(0.0);
        if points > 0.0 {
            score += points;
            let kind = if s <= -0.6 {
                "very negative"
            } else {
                "negative"
            };
            reasons.push(format!("{kind} sentiment ({s:.2}): +{points:.1}"));
        }
    }
    if let Some(i) = f.intent {
        let points = intent_points(i);
        if points > 0.0 {
            score += points;
            reasons.push(format!("intent {i}: +{points:.0}"));
        }
    }
    let points = tier_points(f.tier);
    if points > 0.0 {
        score += points;
        reasons.push(format!("{} customer: +{points:.0}", f.tier.as_str()));
    }
    if let Some(term) = mentions_risk(f.text) {
        score += RISK_WORDS_POINTS;
        reasons.push(format!(
            "legal or financial risk mentioned (\"{term}\"): +{RISK_WORDS_POINTS:.0}"
        ));
    }
    if f.reason_given {
        score += REASON_POINTS;
        reasons.push(format!(
            "escalation requested with a reason: +{REASON_POINTS:.0}"
        ));
    }
    if f.previously_escalated {
        score += REPEAT_POINTS;
        reasons.push(format!("ticket escalated before: +{REPEAT_POINTS:.0}"));
    }
    let score = (score.clamp(0.0, 100.0) * 10.0).round() / 10.0;
    let priority = priority_for(score);
    Assessment {
        score,
        priority,
        queue: queue_for(priority),
        sla_hours: sla_hours(priority, f.tier),
        reasons,
        escalate: priority != Priority::P4,
    }
}

/// A sentiment given by the caller: a bare score or `{score, label}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SentimentInput {
    Score(f64),
    Full {
        score: f64,
        #[serde(default)]
        #[allow(dead_code)]
        label: Option<Label>,
    },
}

impl SentimentInput {
    fn score(&self) -> f64 {
        match self {
            SentimentInput::Score(s) | SentimentInput::Full { score: s, .. } => *s,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    intent: Option<Intent>,
    #[serde(default)]
    sentiment: Option<SentimentInput>,
    tier: Tier,
    customer_id: String,
    #[serde(default)]
    ticket_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// The `escalation` capability.
///
/// `existing` is the stored ticket named by `input.ticket_id` (if the caller
/// found one); otherwise a ticket is created with `input.ticket_id` or, when
/// absent, `new_ticket_id`. `now` stamps the history. Returns the output and
/// the ticket to store. The caller emits the escalation event when
/// `output.escalated` is true.
pub fn escalation(
    input: &Value,
    existing: Option<&Ticket>,
    new_ticket_id: &str,
    now: DateTime<Utc>,
) -> Result<(Value, Ticket), LogicError> {
    let input: Input = agentry_agent_kit::input::decode(input)?;
    if input.customer_id.trim().is_empty() {
        return Err(LogicError::InvalidInput("customer_id is empty".into()));
    }
    if let (Some(t), Some(id)) = (existing, input.ticket_id.as_deref())
        && t.ticket_id != id
    {
        return Err(LogicError::InvalidInput(format!(
            "ticket_id `{id}` does not match the stored ticket `{}`",
            t.ticket_id
        )));
    }
    let message = input
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let intent = match (input.intent, message, existing) {
        (Some(i), _, _) => i,
        (None, Some(m), _) => intent::classify(m)?.intent,
        (None, None, Some(t)) => t.intent,
        (None, None, None) => {
            return Err(LogicError::InvalidInput(
                "one of intent, message or an existing ticket is required".into(),
            ));
        }
    };
    let sentiment = match (&input.sentiment, message) {
        (Some(s), _) => {
            let s = s.score();
            if !(-1.0..=1.0).contains(&s) {
                return Err(LogicError::InvalidInput(format!(
                    "sentiment {s} is outside [-1, 1]"
                )));
            }
            Some(Sentiment::from_score(s))
        }
        (None, Some(m)) => {
            let s = sentiment::score(m)?;
            Some(Sentiment::from_score(
                (s.score * 10_000.0).round() / 10_000.0,
            ))
        }
        (None, None) => None,
    };
    let searched = format!(
        "{} {}",
        message.unwrap_or_default(),
        input.reason.as_deref().unwrap_or_default()
    );
    let previously_escalated = existing.is_some_and(|t| {
        t.status == Status::Escalated || t.history.iter().any(|h| h.status == Status::Escalated)
    });
    let mut assessment = assess(&Factors {
        intent: Some(intent),
        sentiment: sentiment.map(|s| s.score),
        tier: input.tier,
        text: &searched,
        reason_given: input
            .reason
            .as_deref()
            .is_some_and(|r| !r.trim().is_empty()),
        previously_escalated,
    });
    // Never lower the priority of an already escalated ticket.
    if let Some(prev) = existing.and_then(|t| t.priority)
        && previously_escalated
        && prev < assessment.priority
    {
        assessment.priority = prev;
        assessment.queue = queue_for(prev);
        assessment.sla_hours = sla_hours(prev, input.tier);
        assessment.escalate = true;
        assessment
            .reasons
            .push(format!("kept the earlier priority {prev:?}").to_lowercase());
    }

    let mut ticket = match existing {
        Some(t) => t.clone(),
        None => Ticket {
            ticket_id: input
                .ticket_id
                .clone()
                .unwrap_or_else(|| new_ticket_id.to_string()),
            customer_id: Some(input.customer_id.clone()),
            intent,
            status: Status::Open,
            steps: resolution::plan(intent)?.steps.clone(),
            created_at: now,
            updated_at: now,
            priority: None,
            queue: None,
            sla_hours: None,
            details: None,
            history: vec![HistoryEntry {
                at: now,
                status: Status::Open,
                note: "ticket opened for escalation review".into(),
                request_id: None,
            }],
        },
    };
    ticket.updated_at = now;
    ticket.priority = Some(assessment.priority);
    ticket.queue = Some(assessment.queue);
    ticket.sla_hours = Some(assessment.sla_hours);
    let priority_name = priority_name(assessment.priority);
    let note = if assessment.escalate {
        ticket.status = Status::Escalated;
        format!(
            "escalated to {} as {priority_name} (score {}){}",
            queue_name(assessment.queue),
            assessment.score,
            input
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )
    } else {
        format!(
            "assessed {priority_name} (score {}), not escalated",
            assessment.score
        )
    };
    ticket.history.push(HistoryEntry {
        at: now,
        status: ticket.status,
        note,
        request_id: None,
    });

    let due_at = now + Duration::hours(i64::from(assessment.sla_hours));
    let output = json!({
        "escalated": assessment.escalate,
        "priority": assessment.priority,
        "score": assessment.score,
        "reasons": assessment.reasons,
        "queue": assessment.queue,
        "sla_hours": assessment.sla_hours,
        "due_at": due_at,
        "intent": intent,
        "sentiment": sentiment,
        "ticket": ticket,
    });
    Ok((output, ticket))
}

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::P1 => "p1",
        Priority::P2 => "p2",
        Priority::P3 => "p3",
        Priority::P4 => "p4",
    }
}

fn queue_name(q: Queue) -> &'static str {
    match q {
        Queue::Tier2 => "tier2",
        Queue::Tier3 => "tier3",
        Queue::Management => "management",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    /// An angry enterprise complaint is p1 for management with a 1 h SLA.
    #[test]
    fn angry_enterprise_complaint_is_p1() {
        let input = json!({
            "message": "This is UNACCEPTABLE!!! Your support has ignored us for three weeks, worst service ever. I want to complain to a manager.",
            "tier": "enterprise",
            "customer_id": "acme-corp",
        });
        let (out, ticket) = escalation(&input, None, "t-1", now()).unwrap();
        assert_eq!(out["priority"], "p1", "{out:#}");
        assert_eq!(out["queue"], "management");
        assert_eq!(out["sla_hours"], 1);
        assert_eq!(out["escalated"], true);
        assert_eq!(out["due_at"], "2025-03-01T13:00:00Z");
        assert_eq!(ticket.status, Status::Escalated);
        assert_eq!(ticket.ticket_id, "t-1");
        assert_eq!(ticket.intent, Intent::Complaint);
        assert!(out["score"].as_f64().unwrap() >= 70.0);
    }

    /// A polite free-tier question is p4 and not escalated.
    #[test]
    fn polite_free_tier_is_not_escalated() {
        let input = json!({
            "message": "Hi, could you tell me if the blender is dishwasher safe? Thanks!",
            "tier": "free",
            "customer_id": "c-42",
        });
        let (out, ticket) = escalation(&input, None, "t-2", now()).unwrap();
        assert_eq!(out["priority"], "p4", "{out:#}");
        assert_eq!(out["escalated"], false);
        assert_eq!(out["queue"], "tier2");
        assert_eq!(out["sla_hours"], 72);
        assert_eq!(out["score"], 0.0);
        assert_eq!(ticket.status, Status::Open);
    }

    /// The score is the documented sum: sentiment -0.5 (20) + refund (12) + premium (14) + reason (5) = 51 -> p2.
    #[test]
    fn score_is_documented_sum() {
        let a = assess(&Factors {
            intent: Some(Intent::Refund),
            sentiment: Some(-0.5),
            tier: Tier::Premium,
            text: "customer asked twice",
            reason_given: true,
            previously_escalated: false,
        });
        assert_eq!(a.score, 51.0);
        assert_eq!(a.priority, Priority::P2);
        assert_eq!(a.queue, Queue::Tier3);
        assert_eq!(a.sla_hours, 4);
        assert_eq!(a.reasons.len(), 4);
        let risk = assess(&Factors {
            text: "I will file a chargeback",
            ..Factors::default()
        });
        assert_eq!(risk.score, RISK_WORDS_POINTS);
        // "pressure" is not the risk word "press".
        assert_eq!(
            assess(&Factors {
                text: "pressure",
                ..Factors::default()
            })
            .score,
            0.0
        );
    }

    /// Given intent and sentiment are used as is; a stored ticket is updated, not replaced.
    #[test]
    fn updates_existing_ticket_and_keeps_priority() {
        let input = json!({
            "intent": "billing", "sentiment": {"score": -0.9, "label": "negative"},
            "tier": "enterprise", "customer_id": "acme", "ticket_id": "t-9",
            "reason": "double charge for the third month",
        });
        let (_, first) = escalation(&input, None, "unused", now()).unwrap();
        assert_eq!(first.ticket_id, "t-9");
        assert_eq!(first.priority, Some(Priority::P1)); // 36 + 10 + 22 + 5 = 73
        let calmer = json!({
            "intent": "billing", "sentiment": 0.2, "tier": "enterprise",
            "customer_id": "acme", "ticket_id": "t-9",
        });
        let later = now() + Duration::hours(2);
        let (out, second) = escalation(&calmer, Some(&first), "unused", later).unwrap();
        // 10 + 22 + 10 (repeat) = 42 -> p3, but the earlier p1 is kept.
        assert_eq!(out["priority"], "p1");
        assert_eq!(second.created_at, now());
        assert_eq!(second.updated_at, later);
        assert_eq!(second.history.len(), first.history.len() + 1);
    }

    /// Bad inputs are rejected as InvalidInput.
    #[test]
    fn rejects_bad_input() {
        let cases = [
            json!({"tier": "gold", "customer_id": "c", "intent": "billing"}),
            json!({"tier": "free", "customer_id": "c"}),
            json!({"tier": "free", "customer_id": " ", "intent": "billing"}),
            json!({"tier": "free", "customer_id": "c", "intent": "billing", "sentiment": -3}),
            json!({"tier": "free", "customer_id": "c", "intent": "billing", "extra": 1}),
        ];
        for c in cases {
            assert!(
                matches!(
                    escalation(&c, None, "t", now()),
                    Err(LogicError::InvalidInput(_))
                ),
                "{c}"
            );
        }
    }
}
