//! FAQ retrieval with Okapi BM25 (k1 = 1.2, b = 0.75) over each entry's
//! question and answer.
//!
//! `idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))`, and a document's score
//! is the sum over the distinct query terms of
//! `idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |D| / avgdl))`.
//! Entries of the intent the caller is confident about get their score
//! multiplied by [`INTENT_BOOST`].
//!
//! Answer confidence combines the strength of the best score and its margin
//! over the runner-up: `strength = s1 / (s1 + STRENGTH_HALF)`,
//! `margin = (s1 - s2) / s1`, `confidence = strength * (0.5 + 0.5 * margin)`.
//! Below [`ANSWER_THRESHOLD`] no answer is given.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::LogicError;
use super::intent::Intent;
use super::text;
use agentry_agent_kit::bad_data;

const FAQ_JSON: &str = agentry_agent_kit::data_file!("faq.json");

/// BM25 term-frequency saturation.
pub const K1: f64 = 1.2;
/// BM25 length normalisation.
pub const B: f64 = 0.75;
/// Score multiplier for entries of the hinted intent.
pub const INTENT_BOOST: f64 = 1.3;
/// Score at which `strength` is one half.
pub const STRENGTH_HALF: f64 = 4.0;
/// Minimum answer confidence for returning an answer.
pub const ANSWER_THRESHOLD: f64 = 0.3;

/// One question/answer pair.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entry {
    pub id: String,
    pub intent: Intent,
    pub question: String,
    pub answer: String,
}

/// A BM25 index over a set of documents (term lists).
#[derive(Debug, Clone)]
pub struct Index {
    docs: Vec<HashMap<String, f64>>,
    lengths: Vec<f64>,
    avg_len: f64,
    doc_freq: HashMap<String, f64>,
}

impl Index {
    /// Indexes documents given as term lists.
    pub fn new(documents: &[Vec<String>]) -> Index {
        let mut docs = Vec::with_capacity(documents.len());
        let mut lengths = Vec::with_capacity(documents.len());
        let mut doc_freq: HashMap<String, f64> = HashMap::new();
        for terms in documents {
            let mut tf: HashMap<String, f64> = HashMap::new();
            for t in terms {
                *tf.entry(t.clone()).or_insert(0.0) += 1.0;
            }
            for t in tf.keys() {
                *doc_freq.entry(t.clone()).or_insert(0.0) += 1.0;
            }
            docs.push(tf);
            lengths.push(terms.len() as f64);
        }
        let avg_len = if lengths.is_empty() {
            0.0
        } else {
            lengths.iter().sum::<f64>() / lengths.len() as f64
        };
        Index {
            docs,
            lengths,
            avg_len,
            doc_freq,
        }
    }

    fn idf(&self, term: &str) -> f64 {
        let n = self.doc_freq.get(term).copied().unwrap_or(0.0);
        let total = self.docs.len() as f64;
        (1.0 + (total - n + 0.5) / (n + 0.5)).ln()
    }

    /// BM25 score of every document for the query terms (duplicates count once).
    pub fn scores(&self, query: &[String]) -> Vec<f64> {
        let mut unique: Vec<&String> = query.iter().collect();
        unique.sort();
        unique.dedup();
        let mut out = vec![0.0; self.docs.len()];
        if self.avg_len == 0.0 {
            return out;
        }
        for term in unique {
            let idf = self.idf(term);
            for (d, doc) in self.docs.iter().enumerate() {
                if let Some(&tf) = doc.get(term.as_str()) {
                    let norm = K1 * (1.0 - B + B * self.lengths[d] / self.avg_len);
                    out[d] += idf * tf * (K1 + 1.0) / (tf + norm);
                }
            }
        }
        out
    }
}

/// The bundled FAQ and its index.
#[derive(Debug)]
pub struct Faq {
    entries: Vec<Entry>,
    index: Index,
}

/// The best FAQ entry for a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a> {
    pub entry: &'a Entry,
    pub score: f64,
    pub confidence: f64,
}

impl Faq {
    /// Builds an index over the given entries.
    pub fn new(entries: Vec<Entry>) -> Faq {
        let docs: Vec<Vec<String>> = entries
            .iter()
            .map(|e| text::terms(&format!("{} {}", e.question, e.answer)))
            .collect();
        Faq {
            index: Index::new(&docs),
            entries,
        }
    }

    /// Every entry.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries ranked by score (best first, ties by id), zero scores left out.
    pub fn search(&self, query: &str, intent_hint: Option<Intent>) -> Vec<(&Entry, f64)> {
        let scores = self.index.scores(&text::terms(query));
        let mut ranked: Vec<(&Entry, f64)> = self
            .entries
            .iter()
            .zip(scores)
            .filter(|(_, s)| *s > 0.0)
            .map(|(e, s)| {
                if Some(e.intent) == intent_hint {
                    (e, s * INTENT_BOOST)
                } else {
                    (e, s)
                }
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
        ranked
    }

    /// The best entry and its confidence, whether or not it clears the threshold.
    pub fn best(&self, query: &str, intent_hint: Option<Intent>) -> Option<Match<'_>> {
        let ranked = self.search(query, intent_hint);
        let (entry, s1) = *ranked.first()?;
        let s2 = ranked.get(1).map_or(0.0, |r| r.1);
        Some(Match {
            entry,
            score: s1,
            confidence: confidence(s1, s2),
        })
    }

    /// Looks an entry up by id.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }
}

/// Answer confidence from the best and second-best scores.
pub fn confidence(best: f64, second: f64) -> f64 {
    if best <= 0.0 {
        return 0.0;
    }
    let strength = best / (best + STRENGTH_HALF);
    let margin = ((best - second) / best).clamp(0.0, 1.0);
    strength * (0.5 + 0.5 * margin)
}

static FAQ: OnceLock<Result<Faq, LogicError>> = OnceLock::new();

/// The bundled FAQ.
pub fn bundled() -> Result<&'static Faq, LogicError> {
    FAQ.get_or_init(|| {
        let entries: Vec<Entry> =
            serde_json::from_str(FAQ_JSON).map_err(|e| bad_data("faq.json", e))?;
        Ok(Faq::new(entries))
    })
    .as_ref()
    .map_err(Clone::clone)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn terms(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// BM25 scores equal values computed by hand from the formula.
    #[test]
    fn bm25_matches_hand_computation() {
        let index = Index::new(&[
            terms(&["refund", "money", "back"]),
            terms(&["refund", "take", "long", "refund"]),
            terms(&["ship", "take", "long", "day", "day"]),
        ]);
        // N = 3, avgdl = 4; idf(refund) = ln(1 + 1.5/2.5), idf(long) = ln(1 + 1.5/2.5),
        // idf(day) = ln(1 + 2.5/1.5).
        let s = index.scores(&terms(&["refund", "long"]));
        let expected = [0.523548346501579, 1.1162586194586221, 0.42639504508891485];
        for (got, want) in s.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{s:?}");
        }
        let s = index.scores(&terms(&["day", "day"]));
        assert_eq!(s[0], 0.0);
        assert!((s[2] - 1.2600434199274733).abs() < 1e-12);
    }

    /// The bundled FAQ has at least 25 entries covering every intent, with unique ids.
    #[test]
    fn bundled_faq_is_complete() {
        let faq = bundled().unwrap();
        assert!(faq.entries().len() >= 25);
        for intent in Intent::ALL {
            assert!(faq.entries().iter().any(|e| e.intent == intent), "{intent}");
        }
        let mut ids: Vec<&str> = faq.entries().iter().map(|e| e.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), faq.entries().len());
    }

    /// Queries rank the entry that answers them first.
    #[test]
    fn ranks_relevant_entries_first() {
        let faq = bundled().unwrap();
        let cases = [
            ("how long does a refund take", "refund-timing"),
            ("how do I reset my password", "account-reset-password"),
            ("how can I track my package", "shipping-track"),
            ("do you accept paypal", "billing-payment-methods"),
            ("how do I cancel my subscription", "cancel-subscription"),
            ("is there a warranty", "product-warranty"),
        ];
        for (q, id) in cases {
            let best = faq.best(q, None).unwrap();
            assert_eq!(best.entry.id, id, "{q}");
            assert!(best.confidence >= ANSWER_THRESHOLD, "{q}: {best:?}");
        }
    }

    /// The intent hint breaks a tie between two entries on different intents.
    #[test]
    fn intent_hint_boosts_matching_entries() {
        let faq = bundled().unwrap();
        let q = "how long does that take";
        assert_eq!(
            faq.best(q, Some(Intent::Refund)).unwrap().entry.id,
            "refund-timing"
        );
        assert_eq!(
            faq.best(q, Some(Intent::ShippingStatus)).unwrap().entry.id,
            "shipping-times"
        );
    }

    /// Off-topic queries score nothing or fall below the threshold.
    #[test]
    fn off_topic_query_has_no_confident_answer() {
        let faq = bundled().unwrap();
        let weak = faq.best("purple elephant", None);
        assert!(weak.is_none_or(|m| m.confidence < ANSWER_THRESHOLD));
    }

    /// Confidence grows with the margin and the strength of the best score.
    #[test]
    fn confidence_uses_margin_and_strength() {
        assert_eq!(confidence(0.0, 0.0), 0.0);
        assert!((confidence(4.0, 0.0) - 0.5).abs() < 1e-12);
        assert!((confidence(4.0, 4.0) - 0.25).abs() < 1e-12);
        assert!(confidence(8.0, 2.0) > confidence(8.0, 6.0));
    }
}
