//! Tokenizer shared by the intent classifier and FAQ retrieval: lowercasing,
//! apostrophe folding, a small stop-word list, a light suffix stemmer and
//! word bigrams.

/// Words that carry no intent or topic on their own. Question words
/// (`how`, `where`, `when`), negations and greetings are deliberately kept.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "i", "me", "my", "mine", "myself", "we", "us", "our", "you", "your", "is",
    "am", "are", "was", "were", "be", "been", "being", "to", "of", "and", "or", "in", "on", "at",
    "for", "from", "by", "with", "it", "its", "this", "that", "these", "those", "there", "here",
    "do", "does", "did", "have", "has", "had", "im", "ive", "id", "ill", "would", "could",
    "should", "will", "shall", "can", "so", "just", "please", "pls", "plz", "some", "any", "as",
    "if", "then", "than", "also", "too", "very", "really", "about", "into", "up", "out", "what",
    "which", "who", "whom", "they", "them", "their", "he", "she", "his", "her", "him",
];

/// Lowercased alphanumeric words; apostrophes are dropped inside words
/// (`don't` -> `dont`), every other non-alphanumeric character separates words.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            current.extend(ch.to_lowercase());
        } else if (ch == '\'' || ch == '\u{2019}') && !current.is_empty() {
            // folded: "don't" -> "dont"
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn is_vowel(b: u8) -> bool {
    matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

fn has_vowel(s: &str) -> bool {
    s.bytes().any(is_vowel)
}

/// Undoes a doubled final consonant left by suffix stripping
/// (`shipp` -> `ship`, `cancell` -> `cancel`); a final `ss` is kept.
fn undouble(mut s: String) -> String {
    let b = s.as_bytes();
    let n = b.len();
    if n >= 4 && b[n - 1] == b[n - 2] && !is_vowel(b[n - 1]) && b[n - 1] != b's' {
        s.pop();
    }
    s
}

/// A light English stemmer: plural `s`/`ies`, `ing`, `ed`, `ly`, `ation`
/// and a final `e`, so that `charge`, `charges`, `charged` and `charging` all
/// become `charg`, and `cancellation`, `cancelled`, `cancel` become `cancel`.
/// Tokens with digits are returned unchanged.
pub fn stem(word: &str) -> String {
    if !word.is_ascii() || word.bytes().any(|b| b.is_ascii_digit()) || word.len() <= 3 {
        return word.to_string();
    }
    let mut w = word.to_string();
    if w.len() > 4 && w.ends_with("ies") {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.ends_with('s')
        && !w.ends_with("ss")
        && !w.ends_with("us")
        && !w.ends_with("is")
        && w.len() > 3
    {
        w.pop();
    }
    for suffix in ["ation", "ing", "ed", "ly"] {
        if w.len() >= suffix.len() + 3 && w.ends_with(suffix) {
            let base = &w[..w.len() - suffix.len()];
            if has_vowel(base) {
                w = undouble(base.to_string());
                break;
            }
        }
    }
    if w.len() > 4 && w.ends_with('e') {
        w.pop();
    }
    w
}

/// Whether a (lowercased) word is on the stop-word list.
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// Stemmed content words: stop words removed, numbers of 5 or more digits
/// folded to the single token `<num>` so that order numbers do not become
/// vocabulary.
pub fn terms(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| !is_stop_word(w))
        .map(|w| {
            if w.len() >= 5 && w.bytes().all(|b| b.is_ascii_digit()) {
                "<num>".to_string()
            } else {
                stem(&w)
            }
        })
        .collect()
}

/// Relative weight of one word bigram feature (a unigram weighs 1).
pub const BIGRAM_WEIGHT: f64 = 0.5;
/// Relative weight of one character trigram feature.
pub const TRIGRAM_WEIGHT: f64 = 0.3;

/// Classifier features with weights: the stemmed terms (weight 1), bigrams
/// of consecutive terms (`refund_take`) and character trigrams of each term
/// (`#ch`, `cha`, ...), marked with a `~` prefix so that misspellings still
/// share evidence. A weight of 0 leaves that kind of feature out.
pub fn weighted_features(
    text: &str,
    bigram_weight: f64,
    trigram_weight: f64,
) -> Vec<(String, f64)> {
    let terms = terms(text);
    let mut out = Vec::with_capacity(terms.len() * 6);
    if bigram_weight > 0.0 {
        for pair in terms.windows(2) {
            out.push((format!("{}_{}", pair[0], pair[1]), bigram_weight));
        }
    }
    if trigram_weight > 0.0 {
        for term in &terms {
            let padded: Vec<char> = format!("#{term}#").chars().collect();
            if padded.len() >= 4 {
                for tri in padded.windows(3) {
                    let mut f = String::with_capacity(4);
                    f.push('~');
                    f.extend(tri.iter());
                    out.push((f, trigram_weight));
                }
            }
        }
    }
    out.extend(terms.into_iter().map(|t| (t, 1.0)));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Inflected forms of one word share a stem.
    #[test]
    fn stems_conflate_inflections() {
        for w in ["charge", "charges", "charged", "charging"] {
            assert_eq!(stem(w), "charg", "{w}");
        }
        for w in ["cancel", "cancelled", "cancelling", "cancellation"] {
            assert_eq!(stem(w), "cancel", "{w}");
        }
        for w in ["ship", "shipped", "shipping", "ships"] {
            assert_eq!(stem(w), "ship", "{w}");
        }
        assert_eq!(stem("deliveries"), "delivery");
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("12345"), "12345");
    }

    /// Words split on punctuation, apostrophes fold, stop words drop, long numbers fold.
    #[test]
    fn terms_normalise_text() {
        assert_eq!(words("Don't CHARGE me!!"), vec!["dont", "charge", "me"]);
        assert_eq!(
            terms("Where is my order #1234567?"),
            vec!["wher", "order", "<num>"]
        );
    }

    /// Features hold unigrams, bigrams and marked character trigrams.
    #[test]
    fn features_include_bigrams_and_trigrams() {
        let f: Vec<String> = weighted_features("refund take", BIGRAM_WEIGHT, TRIGRAM_WEIGHT)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert!(f.contains(&"refund".to_string()));
        assert!(f.contains(&"refund_take".to_string()));
        assert!(f.contains(&"~#re".to_string()));
        assert!(f.contains(&"~nd#".to_string()));
    }
}
