//! Conversation memory (stored by the caller, e.g. in Redis, as JSON) and
//! entity extraction.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::intent::Intent;

/// Turns kept per conversation; older turns are dropped first.
pub const MAX_TURNS: usize = 10;
/// Characters of a message kept in a turn.
pub const MAX_TURN_TEXT: usize = 500;

/// Things a message names that later turns may refer to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entities {
    /// Digits of an order number (`#1234567` -> `1234567`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Entities {
    /// Whether no entity is set.
    pub fn is_empty(&self) -> bool {
        self.order_number.is_none() && self.email.is_none()
    }
}

/// One customer message and what was understood from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub text: String,
    pub intent: Intent,
    pub confidence: f64,
    #[serde(default)]
    pub entities: Entities,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faq_id: Option<String>,
    #[serde(default)]
    pub sentiment: f64,
}

/// The remembered past of one conversation, oldest turn first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Empty for a conversation not seen before.
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub turns: Vec<Turn>,
    /// The task request that added the newest turn (set by the agent, so a
    /// redelivered task replaces its own turn instead of adding it twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_id: Option<String>,
}

impl Conversation {
    /// Appends a turn (text truncated to [`MAX_TURN_TEXT`] characters) and
    /// drops the oldest turns beyond [`MAX_TURNS`].
    pub fn push(&mut self, mut turn: Turn) {
        if turn.text.chars().count() > MAX_TURN_TEXT {
            turn.text = turn.text.chars().take(MAX_TURN_TEXT).collect();
        }
        self.turns.push(turn);
        if self.turns.len() > MAX_TURNS {
            let excess = self.turns.len() - MAX_TURNS;
            self.turns.drain(..excess);
        }
    }

    /// The most recent turn.
    pub fn last(&self) -> Option<&Turn> {
        self.turns.last()
    }

    /// The most recently mentioned order number.
    pub fn remembered_order(&self) -> Option<&str> {
        self.turns
            .iter()
            .rev()
            .find_map(|t| t.entities.order_number.as_deref())
    }

    /// The most recently mentioned email address.
    pub fn remembered_email(&self) -> Option<&str> {
        self.turns
            .iter()
            .rev()
            .find_map(|t| t.entities.email.as_deref())
    }
}

/// Compiled constant patterns; `None` only if a literal failed to compile,
/// which the tests rule out (extraction then finds nothing).
fn email_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").ok()
    })
    .as_ref()
}

fn order_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"#?\b(\d{5,})\b").ok())
        .as_ref()
}

/// Extracts the first order number (5 or more digits, optional `#`) and the
/// first email address. Digits inside an email address are not an order number.
pub fn extract(message: &str) -> Entities {
    let (Some(email_re), Some(order_re)) = (email_re(), order_re()) else {
        return Entities::default();
    };
    let email = email_re.find(message).map(|m| m.as_str().to_lowercase());
    let without_email = email_re.replace_all(message, " ");
    let order_number = order_re
        .captures(&without_email)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_string());
    Entities {
        order_number,
        email,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The constant patterns compile.
    #[test]
    fn patterns_compile() {
        assert!(email_re().is_some() && order_re().is_some());
    }

    /// Order numbers and emails are found; digits in an email are not an order.
    #[test]
    fn extracts_entities() {
        let e = extract("My order #4839201 never came, reach me at Jo.Doe+x@Mail.example.com");
        assert_eq!(e.order_number.as_deref(), Some("4839201"));
        assert_eq!(e.email.as_deref(), Some("jo.doe+x@mail.example.com"));
        let e = extract("email is user12345@example.org");
        assert_eq!(e.order_number, None);
        assert_eq!(extract("order 1234 is short").order_number, None);
        assert!(extract("hello").is_empty());
    }

    /// The memory keeps the newest MAX_TURNS turns and remembers the latest order.
    #[test]
    fn memory_is_capped_and_remembers() {
        let mut c = Conversation::default();
        for i in 0..(MAX_TURNS + 3) {
            c.push(Turn {
                text: "x".repeat(MAX_TURN_TEXT + 10),
                intent: Intent::Refund,
                confidence: 0.9,
                entities: Entities {
                    order_number: (i == 5).then(|| "5555555".to_string()),
                    email: None,
                },
                faq_id: None,
                sentiment: 0.0,
            });
        }
        assert_eq!(c.turns.len(), MAX_TURNS);
        assert_eq!(c.turns[0].text.chars().count(), MAX_TURN_TEXT);
        assert_eq!(c.remembered_order(), Some("5555555"));
        assert_eq!(c.remembered_email(), None);
    }
}
