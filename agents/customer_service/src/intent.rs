//! Intent classification: a multinomial logistic regression over TF-IDF
//! features, trained at first use from the training split of the bundled `intents.jsonl`.
//!
//! Split: examples are numbered in file order from 0; every example whose
//! index is `4 (mod 5)` is held out for evaluation and never seen in
//! training.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::LogicError;
use super::text;
use agentry_agent_kit::bad_data;

/// What a customer message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Billing,
    Refund,
    ShippingStatus,
    AccountAccess,
    TechnicalIssue,
    Cancellation,
    ProductInfo,
    Complaint,
    Greeting,
}

impl Intent {
    /// Every intent, in a fixed order.
    pub const ALL: [Intent; 9] = [
        Intent::Billing,
        Intent::Refund,
        Intent::ShippingStatus,
        Intent::AccountAccess,
        Intent::TechnicalIssue,
        Intent::Cancellation,
        Intent::ProductInfo,
        Intent::Complaint,
        Intent::Greeting,
    ];

    /// The wire name (`shipping_status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Billing => "billing",
            Intent::Refund => "refund",
            Intent::ShippingStatus => "shipping_status",
            Intent::AccountAccess => "account_access",
            Intent::TechnicalIssue => "technical_issue",
            Intent::Cancellation => "cancellation",
            Intent::ProductInfo => "product_info",
            Intent::Complaint => "complaint",
            Intent::Greeting => "greeting",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Intent {
    type Err = LogicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Intent::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| LogicError::InvalidInput(format!("unknown intent `{s}`")))
    }
}

/// One labelled example of the bundled data set.
#[derive(Debug, Clone, Deserialize)]
pub struct Example {
    pub text: String,
    pub intent: Intent,
}

const INTENTS_JSONL: &str = agentry_agent_kit::data_file!("intents.jsonl");

/// Every `HOLDOUT_EVERY`-th example (index `HOLDOUT_EVERY - 1` mod it) is test data.
pub const HOLDOUT_EVERY: usize = 5;

/// Model hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Weight of a word bigram feature (a unigram weighs 1).
    pub bigram_weight: f64,
    /// Weight of a character trigram feature.
    pub trigram_weight: f64,
    /// Passes of stochastic gradient descent over the training data.
    pub epochs: usize,
    /// Initial learning rate (decays as `lr / (1 + epoch / 4)`).
    pub learning_rate: f64,
    /// L2 penalty on the weights.
    pub l2: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            bigram_weight: text::BIGRAM_WEIGHT,
            trigram_weight: text::TRIGRAM_WEIGHT,
            epochs: 20,
            learning_rate: 0.5,
            l2: 1e-4,
        }
    }
}

/// Parses the bundled data set in file order.
pub fn dataset() -> Result<Vec<Example>, LogicError> {
    INTENTS_JSONL
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .map_err(|e| bad_data(format!("intents.jsonl line {}", n + 1), e))
        })
        .collect()
}

/// Splits examples into (train, test) by position.
pub fn split(examples: &[Example]) -> (Vec<&Example>, Vec<&Example>) {
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (i, e) in examples.iter().enumerate() {
        if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 {
            test.push(e);
        } else {
            train.push(e);
        }
    }
    (train, test)
}

/// A trained multinomial logistic regression over L2-normalised TF-IDF
/// vectors of the [`text::weighted_features`].
#[derive(Debug, Clone)]
pub struct Classifier {
    vocab: HashMap<String, usize>,
    idf: Vec<f64>,
    weights: Vec<[f64; 9]>,
    bias: [f64; 9],
    n_train: usize,
    params: Params,
}

/// The classifier's view of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub intent: Intent,
    pub confidence: f64,
    /// Probability of each intent, indexed like [`Intent::ALL`].
    pub distribution: [f64; 9],
    /// Number of known features in the message (0: no evidence at all).
    pub n_features: usize,
}

impl Prediction {
    /// Probability assigned to one intent.
    pub fn probability(&self, intent: Intent) -> f64 {
        self.distribution[intent.index()]
    }
}

fn softmax(logits: &[f64; 9]) -> [f64; 9] {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut out = [0.0; 9];
    let mut sum = 0.0;
    for (o, l) in out.iter_mut().zip(logits) {
        *o = (l - max).exp();
        sum += *o;
    }
    for o in &mut out {
        *o /= sum;
    }
    out
}

/// A deterministic permutation source (64-bit LCG), so training is reproducible.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

impl Classifier {
    /// Trains on the given examples with the default parameters.
    pub fn train<'a>(examples: impl IntoIterator<Item = &'a Example>) -> Classifier {
        Classifier::train_with(examples, Params::default())
    }

    /// Trains on the given examples.
    pub fn train_with<'a>(
        examples: impl IntoIterator<Item = &'a Example>,
        params: Params,
    ) -> Classifier {
        let raw: Vec<(Vec<(String, f64)>, usize)> = examples
            .into_iter()
            .map(|e| {
                let f =
                    text::weighted_features(&e.text, params.bigram_weight, params.trigram_weight);
                (f, e.intent.index())
            })
            .collect();
        let mut vocab: HashMap<String, usize> = HashMap::new();
        let mut df: Vec<f64> = Vec::new();
        for (features, _) in &raw {
            let mut seen = Vec::new();
            for (f, _) in features {
                let next = vocab.len();
                let id = *vocab.entry(f.clone()).or_insert(next);
                if id == df.len() {
                    df.push(0.0);
                }
                if !seen.contains(&id) {
                    seen.push(id);
                    df[id] += 1.0;
                }
            }
        }
        let n = raw.len() as f64;
        let idf: Vec<f64> = df
            .iter()
            .map(|d| ((1.0 + n) / (1.0 + d)).ln() + 1.0)
            .collect();
        let mut model = Classifier {
            vocab,
            idf,
            weights: vec![[0.0; 9]; df.len()],
            bias: [0.0; 9],
            n_train: raw.len(),
            params,
        };
        let docs: Vec<(Vec<(usize, f64)>, usize)> =
            raw.iter().map(|(f, c)| (model.vectorize(f), *c)).collect();
        let mut order: Vec<usize> = (0..docs.len()).collect();
        let mut rng = Lcg(0x5eed_cafe);
        for epoch in 0..params.epochs {
            rng.shuffle(&mut order);
            let lr = params.learning_rate / (1.0 + epoch as f64 / 4.0);
            for &i in &order {
                let (x, y) = &docs[i];
                let p = softmax(&model.logits(x));
                let mut grad = p;
                grad[*y] -= 1.0;
                for &(j, v) in x {
                    let w = &mut model.weights[j];
                    for (wc, gc) in w.iter_mut().zip(&grad) {
                        *wc -= lr * (gc * v + params.l2 * *wc);
                    }
                }
                for (b, gc) in model.bias.iter_mut().zip(&grad) {
                    *b -= lr * gc;
                }
            }
        }
        model
    }

    /// TF-IDF vector of known features, L2-normalised.
    fn vectorize(&self, features: &[(String, f64)]) -> Vec<(usize, f64)> {
        let mut v: Vec<(usize, f64)> = Vec::with_capacity(features.len());
        for (f, w) in features {
            if let Some(&id) = self.vocab.get(f) {
                match v.iter_mut().find(|(j, _)| *j == id) {
                    Some(entry) => entry.1 += w * self.idf[id],
                    None => v.push((id, w * self.idf[id])),
                }
            }
        }
        let norm = v.iter().map(|(_, x)| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            for (_, x) in &mut v {
                *x /= norm;
            }
        }
        v
    }

    fn logits(&self, x: &[(usize, f64)]) -> [f64; 9] {
        let mut z = self.bias;
        for &(j, v) in x {
            for (zc, wc) in z.iter_mut().zip(&self.weights[j]) {
                *zc += wc * v;
            }
        }
        z
    }

    /// Number of training examples.
    pub fn n_train(&self) -> usize {
        self.n_train
    }

    /// Classifies a message. Features never seen in training carry no
    /// evidence; a message without any known feature gets the bias only.
    pub fn predict(&self, message: &str) -> Prediction {
        let p = self.params;
        let features = text::weighted_features(message, p.bigram_weight, p.trigram_weight);
        let x = self.vectorize(&features);
        let distribution = softmax(&self.logits(&x));
        let mut best = 0;
        for c in 1..9 {
            if distribution[c] > distribution[best] {
                best = c;
            }
        }
        Prediction {
            intent: Intent::ALL[best],
            confidence: distribution[best],
            distribution,
            n_features: x.len(),
        }
    }
}

static MODEL: OnceLock<Result<Classifier, LogicError>> = OnceLock::new();

/// The model trained on the training split, built once per process.
pub fn model() -> Result<&'static Classifier, LogicError> {
    MODEL
        .get_or_init(|| {
            let examples = dataset()?;
            let (train, _) = split(&examples);
            Ok(Classifier::train(train))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Classifies a message with the bundled model.
pub fn classify(message: &str) -> Result<Prediction, LogicError> {
    Ok(model()?.predict(message))
}

/// Mean accuracy of `k`-fold cross-validation inside the training split
/// (the held-out split is not touched): for choosing [`Params`].
pub fn cross_validate(params: Params, k: usize) -> Result<f64, LogicError> {
    let examples = dataset()?;
    let (train, _) = split(&examples);
    let k = k.max(2);
    let mut correct = 0usize;
    for fold in 0..k {
        let fit: Vec<&Example> = train
            .iter()
            .enumerate()
            .filter(|(i, _)| i % k != fold)
            .map(|(_, e)| *e)
            .collect();
        let model = Classifier::train_with(fit, params);
        correct += train
            .iter()
            .enumerate()
            .filter(|(i, e)| i % k == fold && model.predict(&e.text).intent == e.intent)
            .count();
    }
    Ok(correct as f64 / train.len() as f64)
}

/// Precision and recall of one intent on the test split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntentScore {
    pub precision: f64,
    pub recall: f64,
    pub support: usize,
}

/// Held-out evaluation of the bundled model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub accuracy: f64,
    pub per_intent: BTreeMap<Intent, IntentScore>,
    pub n_train: usize,
    pub n_test: usize,
    /// Test messages that were misclassified: (text, expected, predicted).
    pub errors: Vec<(String, Intent, Intent)>,
}

/// Trains on the training split and scores the held-out split.
pub fn evaluate() -> Result<EvalReport, LogicError> {
    let examples = dataset()?;
    let (train, test) = split(&examples);
    let model = Classifier::train(train.iter().copied());
    let mut tp = [0usize; 9];
    let mut predicted = [0usize; 9];
    let mut actual = [0usize; 9];
    let mut errors = Vec::new();
    for e in &test {
        let p = model.predict(&e.text);
        predicted[p.intent.index()] += 1;
        actual[e.intent.index()] += 1;
        if p.intent == e.intent {
            tp[e.intent.index()] += 1;
        } else {
            errors.push((e.text.clone(), e.intent, p.intent));
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_intent = Intent::ALL
        .into_iter()
        .map(|i| {
            let c = i.index();
            (
                i,
                IntentScore {
                    precision: ratio(tp[c], predicted[c]),
                    recall: ratio(tp[c], actual[c]),
                    support: actual[c],
                },
            )
        })
        .collect();
    Ok(EvalReport {
        accuracy: ratio(tp.iter().sum(), test.len()),
        per_intent,
        n_train: model.n_train(),
        n_test: test.len(),
        errors,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The held-out accuracy of the bundled model is at least 85 %.
    #[test]
    fn held_out_accuracy_at_least_85_percent() {
        let report = evaluate().unwrap();
        assert_eq!(report.n_train + report.n_test, dataset().unwrap().len());
        assert!(report.n_test >= 60, "{}", report.n_test);
        assert!(report.accuracy >= 0.85, "{report:#?}");
    }

    /// The split is positional: train and test never share an example.
    #[test]
    fn split_is_disjoint_and_deterministic() {
        let examples = dataset().unwrap();
        assert!(examples.len() >= 300);
        let (train, test) = split(&examples);
        assert_eq!(test.len(), examples.len() / 5);
        for t in &test {
            assert!(!train.iter().any(|x| std::ptr::eq(*x, *t)));
        }
        let (_, test2) = split(&examples);
        assert_eq!(
            test.iter().map(|e| &e.text).collect::<Vec<_>>(),
            test2.iter().map(|e| &e.text).collect::<Vec<_>>()
        );
    }

    /// Clear messages are classified with high confidence, distributions sum to one.
    #[test]
    fn classifies_clear_messages() {
        let p = classify("I forgot my password and cannot log in").unwrap();
        assert_eq!(p.intent, Intent::AccountAccess);
        assert!(p.confidence > 0.6, "{p:?}");
        assert!((p.distribution.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(
            classify("where is my parcel, tracking shows nothing")
                .unwrap()
                .intent,
            Intent::ShippingStatus
        );
    }

    /// A message with no known word falls back to the prior and low confidence.
    #[test]
    fn unknown_words_give_low_confidence() {
        let p = classify("zzzz qqqq").unwrap();
        assert!(p.confidence < 0.3, "{p:?}");
    }
}
