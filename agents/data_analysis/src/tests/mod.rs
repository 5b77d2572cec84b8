#![allow(clippy::unwrap_used, clippy::float_cmp, clippy::excessive_precision)]

use super::{LogicError, data_processing, statistical_analysis, visualization};

mod charts;
mod nist;
mod processing;
mod stats;

/// Asserts |actual - expected| <= rel * |expected| (absolute when expected is 0).
#[track_caller]
fn close(actual: f64, expected: f64, rel: f64) {
    let err = if expected == 0.0 {
        actual.abs()
    } else {
        ((actual - expected) / expected).abs()
    };
    assert!(
        err <= rel,
        "{actual:e} vs {expected:e}: error {err:e} > {rel:e}"
    );
}

/// The numbers of a JSON value at a pointer.
#[track_caller]
fn f(value: &serde_json::Value, pointer: &str) -> f64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value}"))
}
