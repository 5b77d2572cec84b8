//! The kit every built-in agent crate (`agents/*`) builds on.
//!
//! - [`LogicError`]: the one error type of pure agent logic; it knows its
//!   code and becomes a permanent [`TaskError`](agentry::agent::TaskError).
//! - [`input::decode`]: a capability input into a `serde`-derived struct;
//!   the error names the JSON path of the offending value.
//! - [`fields::Fields`]: a field-by-field reader for foreign payloads read
//!   leniently (a forecast handed to the planning agent).
//! - [`num`], [`opt_num`]: `f64` to JSON numbers (NaN and infinities as `null`).
//! - [`time`]: RFC 3339 and Open-Meteo date-times through `chrono`.
//! - [`run_blocking`]: CPU-bound logic on the blocking pool.
//! - [`data_file!`]: a bundled data file of the calling crate, embedded.
//!
//! Nothing here reads the clock; only [`run_blocking`] touches the runtime.

mod blocking;
mod error;
pub mod fields;
pub mod input;
pub mod time;

pub use blocking::run_blocking;
pub use error::{Cause, LogicError, bad_data, invalid, missing_data};
pub use fields::{Fields, kind_of};

use serde_json::Value;

/// The bundled data file `name` from the calling crate's `data/` folder,
/// embedded at compile time as a `&'static str`.
#[macro_export]
macro_rules! data_file {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/", $name))
    };
}

/// A finite `f64` as a JSON number; NaN and infinities become `null`.
pub fn num(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// An optional `f64` as a JSON number or `null`.
pub fn opt_num(value: Option<f64>) -> Value {
    value.map_or(Value::Null, num)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_are_null() {
        assert_eq!(num(1.5), serde_json::json!(1.5));
        assert_eq!(num(f64::NAN), Value::Null);
        assert_eq!(opt_num(Some(f64::INFINITY)), Value::Null);
        assert_eq!(opt_num(None), Value::Null);
    }

    #[test]
    fn data_file_reads_the_callers_data_folder() {
        let text = data_file!("probe.txt");
        assert_eq!(text.trim(), "kit data_file! probe");
    }
}
