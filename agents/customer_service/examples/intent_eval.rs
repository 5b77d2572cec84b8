//! Prints the held-out evaluation of customer_service's intent classifier:
//! accuracy, per-intent precision and recall, the misclassified messages,
//! and a 5-fold cross-validation inside the training split.
//!
//! Run: `cargo run --release -p agentry-customer-service --example intent_eval`

use std::process::ExitCode;
use std::time::Instant;

use agentry_customer_service::{evaluate, intent};

fn main() -> ExitCode {
    let started = Instant::now();
    let report = match evaluate() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("evaluation failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let elapsed = started.elapsed();
    println!(
        "intent classifier: logistic regression over TF-IDF features, {} train / {} held-out examples",
        report.n_train, report.n_test
    );
    println!(
        "held-out accuracy: {:.4} ({} of {} correct)",
        report.accuracy,
        report.n_test - report.errors.len(),
        report.n_test
    );
    println!(
        "{:<16} {:>9} {:>7} {:>8}",
        "intent", "precision", "recall", "support"
    );
    for (intent, s) in &report.per_intent {
        println!(
            "{:<16} {:>9.3} {:>7.3} {:>8}",
            intent.as_str(),
            s.precision,
            s.recall,
            s.support
        );
    }
    if !report.errors.is_empty() {
        println!("misclassified:");
        for (text, expected, got) in &report.errors {
            println!("  [{expected} -> {got}] {text}");
        }
    }
    println!("train + evaluate took {} ms", elapsed.as_millis());
    match intent::cross_validate(intent::Params::default(), 5) {
        Ok(cv) => println!("5-fold cross-validation inside the training split: {cv:.4}"),
        Err(e) => {
            eprintln!("cross-validation failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
