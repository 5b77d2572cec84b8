//! Lexicon-based sentiment scoring.
//!
//! Each lexicon word or phrase has a valence in about [-3.5, 3.5]. A word's
//! valence is
//! - multiplied by the factor of an intensifier or diminisher among the two
//!   words before it (`very` 1.4, `slightly` 0.5, ...);
//! - multiplied by -0.5 when a negator (`not`, `never`, `don't`, ...) is among
//!   the three words before it: "not good" is mildly negative, "not bad"
//!   mildly positive;
//! - multiplied by 1.5 when written in capitals (at least 3 letters) in a
//!   message that is not all capitals; a message written entirely in capitals
//!   gets 1.3 on every word instead;
//! - multiplied by 0.5 before the last `but` and by 1.5 after it.
//!
//! The sum `s` gains `0.3 * sign(s)` per exclamation mark (at most 4) and is
//! squashed into (-1, 1) by `s / sqrt(s^2 + 15)`. Labels: score >= 0.2 is
//! positive, <= -0.2 negative, anything between neutral.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::LogicError;
use super::text;
use agentry_agent_kit::bad_data;

const LEXICON_JSON: &str = agentry_agent_kit::data_file!("sentiment.json");

/// Score above which a message is positive (and below whose negation it is negative).
pub const LABEL_THRESHOLD: f64 = 0.2;
const NORMALISER: f64 = 15.0;
const NEGATION_FACTOR: f64 = -0.5;
const NEGATION_WINDOW: usize = 3;
const INTENSIFIER_WINDOW: usize = 2;
const CAPS_FACTOR: f64 = 1.5;
const SHOUTING_FACTOR: f64 = 1.3;
const EXCLAMATION_BOOST: f64 = 0.3;
const MAX_EXCLAMATIONS: usize = 4;

/// The label of a sentiment score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Negative,
    Neutral,
    Positive,
}

/// A sentiment score in [-1, 1] and its label.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    pub score: f64,
    pub label: Label,
}

impl Sentiment {
    /// Builds a sentiment from a score, clamping it to [-1, 1].
    pub fn from_score(score: f64) -> Sentiment {
        let score = if score.is_finite() {
            score.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        let label = if score >= LABEL_THRESHOLD {
            Label::Positive
        } else if score <= -LABEL_THRESHOLD {
            Label::Negative
        } else {
            Label::Neutral
        };
        Sentiment { score, label }
    }
}

#[derive(Debug, Deserialize)]
struct Lexicon {
    words: HashMap<String, f64>,
    /// Multi-word entries, matched on consecutive lowercase words.
    phrases: HashMap<String, f64>,
    intensifiers: HashMap<String, f64>,
    negators: Vec<String>,
}

static LEXICON: OnceLock<Result<Lexicon, LogicError>> = OnceLock::new();

fn lexicon() -> Result<&'static Lexicon, LogicError> {
    LEXICON
        .get_or_init(|| {
            serde_json::from_str(LEXICON_JSON).map_err(|e| bad_data("sentiment.json", e))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Words of the message with their original spelling (for capitals) and
/// lowercased (for lookup); apostrophes are folded like [`text::words`].
fn cased_words(message: &str) -> Vec<(String, String)> {
    message
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '\u{2019}'))
        .map(|w| w.replace(['\'', '\u{2019}'], ""))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = text::words(&w).concat();
            (w, lower)
        })
        .collect()
}

fn is_caps(word: &str) -> bool {
    let letters: Vec<char> = word.chars().filter(|c| c.is_alphabetic()).collect();
    letters.len() >= 3 && letters.iter().all(|c| c.is_uppercase())
}

/// Scores a message.
pub fn score(message: &str) -> Result<Sentiment, LogicError> {
    let lex = lexicon()?;
    let words = cased_words(message);
    let lower: Vec<&str> = words.iter().map(|(_, l)| l.as_str()).collect();
    let alpha_words = words
        .iter()
        .filter(|(w, _)| w.chars().any(char::is_alphabetic));
    let shouting = alpha_words.clone().count() >= 2
        && alpha_words.clone().any(|(w, _)| is_caps(w))
        && alpha_words
            .filter(|(w, _)| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
            .all(|(w, _)| {
                w.chars()
                    .filter(|c| c.is_alphabetic())
                    .all(char::is_uppercase)
            });
    let last_but = lower.iter().rposition(|w| *w == "but");

    // (position of the first word, number of words, valence)
    let mut hits: Vec<(usize, usize, f64)> = Vec::new();
    let mut i = 0;
    while i < lower.len() {
        let mut matched = false;
        for len in (2..=3).rev() {
            if i + len <= lower.len() {
                let phrase = lower[i..i + len].join(" ");
                if let Some(&v) = lex.phrases.get(&phrase) {
                    hits.push((i, len, v));
                    i += len;
                    matched = true;
                    break;
                }
            }
        }
        if matched {
            continue;
        }
        if let Some(&v) = lex.words.get(lower[i]) {
            hits.push((i, 1, v));
        }
        i += 1;
    }

    let mut sum = 0.0;
    for (pos, len, mut v) in hits {
        for back in 1..=INTENSIFIER_WINDOW.min(pos) {
            if let Some(&f) = lex.intensifiers.get(lower[pos - back]) {
                v *= f;
                break;
            }
        }
        // A phrase that itself starts with a negation ("not happy") is not negated again.
        let phrase_negated = len > 1 && lex.negators.iter().any(|n| n == lower[pos]);
        if !phrase_negated
            && (1..=NEGATION_WINDOW.min(pos))
                .any(|back| lex.negators.iter().any(|n| n == lower[pos - back]))
        {
            v *= NEGATION_FACTOR;
        }
        if shouting {
            v *= SHOUTING_FACTOR;
        } else if words[pos..pos + len].iter().any(|(w, _)| is_caps(w)) {
            v *= CAPS_FACTOR;
        }
        if let Some(b) = last_but {
            v *= if pos < b { 0.5 } else { 1.5 };
        }
        sum += v;
    }
    let bangs = message.matches('!').count().min(MAX_EXCLAMATIONS) as f64;
    if sum != 0.0 {
        sum += sum.signum() * EXCLAMATION_BOOST * bangs;
    }
    Ok(Sentiment::from_score(sum / (sum * sum + NORMALISER).sqrt()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(m: &str) -> f64 {
        score(m).unwrap().score
    }

    /// Plain positive, negative and neutral messages get the right labels.
    #[test]
    fn labels_basic_messages() {
        assert_eq!(
            score("This is great, thank you").unwrap().label,
            Label::Positive
        );
        assert_eq!(
            score("The service was terrible").unwrap().label,
            Label::Negative
        );
        let neutral = score("Where is my order 123456?").unwrap();
        assert_eq!(neutral.label, Label::Neutral);
        assert_eq!(neutral.score, 0.0);
    }

    /// Single-word score follows the formula: terrible = -3.2 -> -3.2/sqrt(3.2^2+15).
    #[test]
    fn squashing_matches_formula() {
        let expected = -3.2 / (3.2f64 * 3.2 + 15.0).sqrt();
        assert!((s("terrible") - expected).abs() < 1e-12);
    }

    /// Negation flips and dampens: "not good" is mildly negative, "not bad" mildly positive.
    #[test]
    fn negation_flips_and_dampens() {
        assert!(s("this is not good") < 0.0);
        assert!(s("this is not good") > s("this is bad"));
        assert!(s("not bad at all") > 0.0);
        assert!(s("I'm not happy") < -0.2);
    }

    /// Intensifiers strengthen, diminishers weaken.
    #[test]
    fn intensifiers_scale() {
        assert!(s("very disappointed") < s("disappointed"));
        assert!(s("extremely disappointed") < s("very disappointed"));
        assert!(s("slightly disappointed") > s("disappointed"));
    }

    /// Exclamation marks and capitals amplify.
    #[test]
    fn exclamation_and_caps_amplify() {
        assert!(s("this is terrible!!!") < s("this is terrible"));
        assert!(s("this is TERRIBLE") < s("this is terrible"));
        assert!(s("THIS IS TERRIBLE") < s("this is terrible"));
        assert!(s("great!!") > s("great"));
    }

    /// The clause after "but" dominates.
    #[test]
    fn but_clause_dominates() {
        assert!(s("the product is good but the delivery was terrible") < -0.2);
        assert!(s("the delivery was late but the support was excellent") > 0.2);
    }

    /// An angry message is strongly negative; phrases are matched.
    #[test]
    fn angry_message_is_strongly_negative() {
        let angry = score("I am FURIOUS!!! Worst service ever, a complete waste of time").unwrap();
        assert_eq!(angry.label, Label::Negative);
        assert!(angry.score < -0.8, "{angry:?}");
        assert!(s("I'm fed up") < -0.5);
    }
}
