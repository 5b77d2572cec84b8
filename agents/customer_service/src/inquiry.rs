//! The `customer_inquiry` capability: classify, score sentiment, use the
//! conversation's memory, retrieve an FAQ answer and suggest what to do next.

use serde::Deserialize;
use serde_json::{Value, json};

use super::LogicError;
use super::escalation::{self, Factors};
use super::faq;
use super::intent::{self, Intent};
use super::memory::{self, Conversation, Turn};
use super::resolution;
use super::sentiment;
use super::text;
use super::ticket::{Priority, Tier};

/// Longest accepted message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 5000;
/// A message with at most this many content terms may be a follow-up when it
/// has a follow-up cue (`and`, `that`, `what about`, ...) or the classifier's
/// confidence is below [`LOW_CONFIDENCE`].
pub const FOLLOWUP_MAX_TERMS: usize = 6;
/// Weight of the previous turn's intent when a short follow-up is classified:
/// `p'(c) = (1 - w) * p(c) + w * [c == previous intent]`. The previous intent
/// wins unless the classifier prefers another intent by more than
/// `w / (1 - w)` (about 0.54) in probability.
pub const CONTEXT_WEIGHT: f64 = 0.35;

/// Intents for which a remembered order number is relevant.
const ORDER_INTENTS: [Intent; 5] = [
    Intent::ShippingStatus,
    Intent::Refund,
    Intent::Cancellation,
    Intent::Billing,
    Intent::Complaint,
];
/// Words that refer to an order without naming it.
const ORDER_WORDS: &[&str] = &[
    "order", "orders", "package", "parcel", "delivery", "shipment", "item",
];
/// Words that mark a message as continuing the previous one.
const FOLLOWUP_CUES: &[&str] = &[
    "and", "also", "about", "that", "it", "this", "those", "them", "then", "same", "still",
    "again", "too",
];
/// Below this classifier confidence a short message inherits the previous
/// intent even without a follow-up cue.
pub const LOW_CONFIDENCE: f64 = 0.3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    message: String,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    tier: Option<Tier>,
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// 64-bit FNV-1a, for a stable conversation id when the caller gives none.
fn fnv1a(text_: &str) -> u64 {
    text_.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The id of the conversation an input continues, as [`customer_inquiry`]
/// chooses it for a conversation not seen before: `conversation_id`, else
/// `cust-<customer_id>`, else `conv-<hash of the message>`. The caller loads
/// the memory stored under this id. `None` when the input is malformed.
pub fn conversation_id(input: &Value) -> Option<String> {
    let input: Input = serde_json::from_value(input.clone()).ok()?;
    input
        .conversation_id
        .filter(|id| !id.is_empty())
        .or_else(|| input.customer_id.map(|c| format!("cust-{c}")))
        .or_else(|| {
            let message = input.message.trim();
            (!message.is_empty()).then(|| format!("conv-{:016x}", fnv1a(message)))
        })
}

/// The `customer_inquiry` capability.
///
/// `memory` is the stored conversation (`Conversation::default()` for a new
/// one); the returned conversation, with this turn appended, replaces it.
/// The conversation id is `input.conversation_id`, else the stored id, else
/// `cust-<customer_id>`, else `conv-<hash of the message>`.
pub fn customer_inquiry(
    input: &Value,
    memory: &Conversation,
) -> Result<(Value, Conversation), LogicError> {
    let input: Input = agentry_agent_kit::input::decode(input)?;
    let message = input.message.trim();
    if message.is_empty() {
        return Err(LogicError::InvalidInput("message is empty".into()));
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(LogicError::InvalidInput(format!(
            "message is longer than {MAX_MESSAGE_CHARS} characters"
        )));
    }
    if let Some(id) = input.conversation_id.as_deref()
        && !memory.id.is_empty()
        && memory.id != id
    {
        return Err(LogicError::InvalidInput(format!(
            "conversation_id `{id}` does not match the stored conversation `{}`",
            memory.id
        )));
    }
    let tier = input.tier.unwrap_or_default();

    // Intent, with the previous turn as a prior for short follow-ups.
    let prediction = intent::classify(message)?;
    let n_terms = text::terms(message).len();
    let words = text::words(message);
    let follow_up = n_terms <= FOLLOWUP_MAX_TERMS
        && (prediction.confidence < LOW_CONFIDENCE
            || words.iter().any(|w| FOLLOWUP_CUES.contains(&w.as_str())));
    let mut intent = prediction.intent;
    let mut confidence = prediction.confidence;
    let mut used_context = false;
    let mut context_parts: Vec<&str> = Vec::new();
    if let Some(prev) = memory.last()
        && follow_up
    {
        let mut best = (prediction.intent, f64::NEG_INFINITY);
        for c in Intent::ALL {
            let prior = if c == prev.intent { 1.0 } else { 0.0 };
            let p = (1.0 - CONTEXT_WEIGHT) * prediction.probability(c) + CONTEXT_WEIGHT * prior;
            if p > best.1 {
                best = (c, p);
            }
        }
        intent = best.0;
        confidence = best.1;
        if intent != prediction.intent {
            used_context = true;
            context_parts.push("intent");
        }
    }

    let sentiment = sentiment::score(message)?;

    // Entities, filled from memory when the message refers to them.
    let mut entities = memory::extract(message);
    if entities.order_number.is_none()
        && (ORDER_INTENTS.contains(&intent)
            || words.iter().any(|w| ORDER_WORDS.contains(&w.as_str())))
        && let Some(order) = memory.remembered_order()
    {
        entities.order_number = Some(order.to_string());
        used_context = true;
        context_parts.push("order_number");
    }
    if entities.email.is_none()
        && intent == Intent::AccountAccess
        && let Some(email) = memory.remembered_email()
    {
        entities.email = Some(email.to_string());
        used_context = true;
        context_parts.push("email");
    }

    // FAQ answer or a clarifying question.
    let faq = faq::bundled()?;
    let best = faq.best(message, Some(intent));
    let answer_confidence = best.as_ref().map_or(0.0, |m| m.confidence);
    let answered = best.filter(|m| m.confidence >= faq::ANSWER_THRESHOLD);
    let plan = resolution::plan(intent)?;

    let assessment = escalation::assess(&Factors {
        intent: Some(intent),
        sentiment: Some(sentiment.score),
        tier,
        text: message,
        reason_given: false,
        previously_escalated: false,
    });
    let suggested_action = if assessment.priority <= Priority::P2 {
        "escalate"
    } else if intent == Intent::Greeting {
        "answer"
    } else if let Some(m) = &answered
        && memory.last().and_then(|t| t.faq_id.as_deref()) != Some(m.entry.id.as_str())
        && (plan.self_service || entities.order_number.is_none())
    {
        "answer"
    } else {
        "resolve"
    };

    let conversation_id = input
        .conversation_id
        .clone()
        .filter(|id| !id.is_empty())
        .or_else(|| (!memory.id.is_empty()).then(|| memory.id.clone()))
        .or_else(|| input.customer_id.as_ref().map(|c| format!("cust-{c}")))
        .unwrap_or_else(|| format!("conv-{:016x}", fnv1a(message)));

    let mut next = memory.clone();
    next.id = conversation_id.clone();
    if input.customer_id.is_some() {
        next.customer_id = input.customer_id.clone();
    }
    next.push(Turn {
        text: message.to_string(),
        intent,
        confidence: round4(confidence),
        entities: entities.clone(),
        faq_id: answered.as_ref().map(|m| m.entry.id.clone()),
        sentiment: round4(sentiment.score),
    });

    let output = json!({
        "conversation_id": conversation_id,
        "intent": intent,
        "confidence": round4(confidence),
        "classifier": {"intent": prediction.intent, "confidence": round4(prediction.confidence)},
        "sentiment": {"score": round4(sentiment.score), "label": sentiment.label},
        "answer": answered.as_ref().map(|m| m.entry.answer.clone()),
        "faq_id": answered.as_ref().map(|m| m.entry.id.clone()),
        "answer_confidence": round4(answer_confidence),
        "clarifying_question": answered.is_none().then(|| plan.clarify.clone()),
        "entities": entities,
        "used_context": used_context,
        "context": context_parts,
        "suggested_action": suggested_action,
        "escalation": {"priority": assessment.priority, "score": assessment.score},
        "turn": next.turns.len(),
    });
    Ok((output, next))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ask(message: &str, memory: &Conversation) -> (Value, Conversation) {
        customer_inquiry(
            &json!({"message": message, "conversation_id": "c-1", "tier": "standard"}),
            memory,
        )
        .unwrap()
    }

    /// A clear question gets its FAQ answer and the answer action.
    #[test]
    fn answers_a_clear_question() {
        let (out, mem) = ask("How long does a refund take?", &Conversation::default());
        assert_eq!(out["intent"], "refund", "{out:#}");
        assert_eq!(out["faq_id"], "refund-timing");
        assert_eq!(out["suggested_action"], "answer");
        assert_eq!(out["used_context"], false);
        assert_eq!(out["conversation_id"], "c-1");
        assert!(out["clarifying_question"].is_null());
        assert_eq!(mem.turns.len(), 1);
        assert_eq!(mem.id, "c-1");
    }

    /// "what about my order?" uses the order number remembered from an earlier turn.
    #[test]
    fn follow_up_uses_remembered_order_number() {
        let (_, mem) = ask(
            "I returned order #4471092 two weeks ago and I still have no refund",
            &Conversation::default(),
        );
        assert_eq!(mem.remembered_order(), Some("4471092"));
        let (out, mem) = ask("what about my order?", &mem);
        assert_eq!(out["entities"]["order_number"], "4471092", "{out:#}");
        assert_eq!(out["used_context"], true);
        assert!(
            out["context"]
                .as_array()
                .unwrap()
                .contains(&json!("order_number"))
        );
        assert_eq!(mem.turns.len(), 2);
        assert_eq!(
            mem.turns[1].entities.order_number.as_deref(),
            Some("4471092")
        );
    }

    /// An ambiguous short follow-up inherits the previous intent and picks that intent's FAQ.
    #[test]
    fn ambiguous_follow_up_inherits_intent() {
        let (first, mem) = ask(
            "I want a refund for the blender, it arrived broken",
            &Conversation::default(),
        );
        assert_eq!(first["intent"], "refund");
        let (out, _) = ask("and how long does that take?", &mem);
        assert_eq!(out["intent"], "refund", "{out:#}");
        assert_eq!(out["faq_id"], "refund-timing");

        let (first, mem) = ask("has my package shipped yet?", &Conversation::default());
        assert_eq!(first["intent"], "shipping_status");
        let (out, _) = ask("and how long does that take?", &mem);
        assert_eq!(out["intent"], "shipping_status", "{out:#}");
        assert_eq!(out["faq_id"], "shipping-times");
    }

    /// A new topic without a follow-up cue is not overridden by the previous intent.
    #[test]
    fn new_topic_wins_over_context() {
        let (_, mem) = ask("where is my parcel?", &Conversation::default());
        let (out, _) = ask("I forgot my password", &mem);
        assert_eq!(out["intent"], "account_access", "{out:#}");
        assert_eq!(out["used_context"], false);
        let (_, mem) = ask("my app crashes", &Conversation::default());
        let (out, _) = ask("Do you ship to Canada?", &mem);
        assert_eq!(out["intent"], "shipping_status", "{out:#}");
        assert_eq!(out["used_context"], false);
    }

    /// The same FAQ answer twice in a row did not help: suggest resolving instead.
    #[test]
    fn repeated_answer_turns_into_resolve() {
        let (first, mem) = ask("my app crashes", &Conversation::default());
        assert_eq!(first["suggested_action"], "answer", "{first:#}");
        let (out, _) = ask("it still crashes!!", &mem);
        assert_eq!(out["faq_id"], first["faq_id"], "{out:#}");
        assert_eq!(out["suggested_action"], "resolve");
    }

    /// Thanks at the end of a conversation stay a greeting with a reply.
    #[test]
    fn thanks_is_answered() {
        let (_, mem) = ask("How long does a refund take?", &Conversation::default());
        let (out, _) = ask("thanks!", &mem);
        assert_eq!(out["intent"], "greeting", "{out:#}");
        assert_eq!(out["suggested_action"], "answer");
        assert_eq!(out["faq_id"], "greeting-thanks");
    }

    /// A very angry enterprise message is escalated.
    #[test]
    fn angry_enterprise_message_escalates() {
        let (out, _) = customer_inquiry(
            &json!({
                "message": "This is the WORST service I have ever had!!! Nobody answers and I am furious. Cancel everything.",
                "customer_id": "acme",
                "tier": "enterprise"
            }),
            &Conversation::default(),
        )
        .unwrap();
        assert_eq!(out["suggested_action"], "escalate", "{out:#}");
        assert_eq!(out["sentiment"]["label"], "negative");
        assert_eq!(out["conversation_id"], "cust-acme");
    }

    /// A vague message gets a clarifying question instead of an answer.
    #[test]
    fn vague_message_gets_clarifying_question() {
        let (out, _) = ask("hmm", &Conversation::default());
        assert!(out["answer"].is_null(), "{out:#}");
        assert!(out["clarifying_question"].is_string());
    }

    /// Bad inputs are InvalidInput; a mismatched conversation id is refused.
    #[test]
    fn rejects_bad_input() {
        let mem = Conversation {
            id: "other".into(),
            ..Conversation::default()
        };
        assert!(matches!(
            customer_inquiry(&json!({"message": "hi", "conversation_id": "c-1"}), &mem),
            Err(LogicError::InvalidInput(_))
        ));
        for bad in [
            json!({}),
            json!({"message": ""}),
            json!({"message": "hi", "tier": "gold"}),
            json!({"message": "x".repeat(MAX_MESSAGE_CHARS + 1)}),
        ] {
            assert!(matches!(
                customer_inquiry(&bad, &Conversation::default()),
                Err(LogicError::InvalidInput(_))
            ));
        }
    }

    /// The memory id chosen up front is the id the inquiry answers with.
    #[test]
    fn conversation_id_matches_the_output() {
        for input in [
            json!({"message": "hi", "conversation_id": "c-9", "customer_id": "acme"}),
            json!({"message": "hi", "customer_id": "acme"}),
            json!({"message": "  where is my parcel?  "}),
        ] {
            let (out, _) = customer_inquiry(&input, &Conversation::default()).unwrap();
            assert_eq!(
                conversation_id(&input).as_deref(),
                out["conversation_id"].as_str(),
                "{input}"
            );
        }
        assert_eq!(conversation_id(&json!({"nope": 1})), None);
    }

    /// Without ids the conversation id is a stable hash of the first message.
    #[test]
    fn conversation_id_is_deterministic() {
        let a = customer_inquiry(&json!({"message": "hello"}), &Conversation::default()).unwrap();
        let b = customer_inquiry(&json!({"message": "hello"}), &Conversation::default()).unwrap();
        assert_eq!(a.0["conversation_id"], b.0["conversation_id"]);
        assert!(
            a.0["conversation_id"]
                .as_str()
                .unwrap()
                .starts_with("conv-")
        );
    }
}
